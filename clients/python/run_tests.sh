#!/usr/bin/env bash
# The Python client's tests against a real service: builds the debug binary, bootstraps an admin
# key, starts the service on a free loopback port with its own embedded PostgreSQL in a temporary
# folder, installs the package (with its extras, pytest, scikit-learn and the MLflow tracking
# store's database layer) into a venv, runs pytest (test_cli.py compares `python -m infoaudit`
# with the binary, INFOAUDIT_BIN), and always stops the service and removes the folder.
#   bash clients/python/run_tests.sh [pytest args…]
# PYTHON_CLIENT_VENV: the venv to use or create (default target/python-client-venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
venv=${PYTHON_CLIENT_VENV:-target/python-client-venv}

if [ ! -x "$venv/bin/pytest" ] || ! "$venv/bin/python" -c 'import mlflow, sklearn, sqlalchemy, alembic, pyarrow, pandas, zstandard, hatchling' 2>/dev/null; then
  echo "== python client: creating $venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q -c .ci/constraints.txt hatchling "requests>=2.28" numpy "pandas>=2" \
    pyarrow zstandard mlflow-skinny sqlalchemy alembic pytest scikit-learn
fi
venv=$(cd "$venv" && pwd)
echo "== python client: installing ./clients/python into $venv"
"$venv/bin/pip" install -q --no-build-isolation --no-deps --force-reinstall ./clients/python

cargo build --locked --bin infoaudit
work=$(mktemp -d /tmp/infoaudit-pyclient.XXXXXX); chmod 755 "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
pid=""
pg_bin() {
  local d
  d=$(pg_config --bindir 2>/dev/null || true)
  if [ -n "$d" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return; fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5n -r); do
    if [ -x "$d/pg_ctl" ]; then echo "$d"; return; fi
  done
}
cleanup() {
  local rc=$?
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then echo "the service did not stop on SIGINT; killing it" >&2; kill -KILL "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
  fi
  # A cluster left behind (a killed service, or `keys create` alone) is stopped before removal.
  if [ -f "$work/data/postgres/postmaster.pid" ]; then
    local bin; bin=$(pg_bin)
    if [ -n "$bin" ]; then
      if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$bin/pg_ctl" -D "$work/data/postgres" -m fast -w stop >/dev/null 2>&1 || true
      else "$bin/pg_ctl" -D "$work/data/postgres" -m fast -w stop >/dev/null 2>&1 || true; fi
    fi
  fi
  if [ "$rc" != 0 ]; then echo "== service log (last 40 lines)"; tail -n 40 "$work/log" 2>/dev/null || true; fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
key=$(./target/debug/infoaudit keys create --name pyclient --scopes admin,ingest,read,gate --data-dir "$work/data" | grep -o 'ia_[A-Za-z0-9_]*' | head -n1)
[ -n "$key" ] || { echo "could not create the test key"; exit 1; }
INFOAUDIT_ADDR=127.0.0.1:$port ./target/debug/infoaudit serve --data-dir "$work/data" >"$work/log" 2>&1 &
pid=$!
for _ in $(seq 1 120); do curl -sf "$url/readyz" >/dev/null && break; sleep 0.5; done
curl -sf "$url/readyz" >/dev/null || { echo "the service did not start:"; tail -n 50 "$work/log"; exit 1; }
echo "== python client: pytest against $url"
cd "$ROOT/clients/python"
INFOAUDIT_URL="$url" INFOAUDIT_API_KEY="$key" INFOAUDIT_TEST_TMP="$work" INFOAUDIT_BIN="$ROOT/target/debug/infoaudit" \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider --basetemp "$work/pytest" "$@"
