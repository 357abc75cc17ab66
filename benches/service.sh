# Sourced by the load scripts: start the release binary on a fresh embedded cluster and stop it
# (and remove its data) on exit.
#   start_service NAME [serve arguments...]   sets work, pid and URL (from PORT); waits for /readyz
#   db_sql [psql arguments...]                psql on the service's database
start_service() {
  local name=$1; shift
  URL="http://127.0.0.1:$PORT"
  work=$(mktemp -d "/tmp/infoaudit-$name.XXXXXX"); chmod 755 "$work"
  INFOAUDIT_ADDR=127.0.0.1:$PORT ./target/release/infoaudit serve "$@" --data-dir "$work/data" >"$work/log" 2>&1 &
  pid=$!
  trap 'kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
  for _ in $(seq 1 120); do curl -sf "$URL/readyz" >/dev/null && return; sleep 0.5; done
  echo "the service did not become ready; log: $work/log" >&2; return 1
}
db_sql() { psql "postgresql://postgres@localhost/infoaudit?host=$work/data/postgres" -qtA "$@"; }
