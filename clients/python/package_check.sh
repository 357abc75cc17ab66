#!/usr/bin/env bash
# The Python client as a package people install: `mypy --strict` on the package (in a venv with
# every extra, so numpy's and the others' own type information is checked against), then a wheel
# and an sdist (`python -m build`, with the pinned hatchling), their contents, and the wheel
# installed without extras into a fresh venv where `python -m infoaudit` must answer --help.
# Needs no service and no Rust build. Everything temporary is removed, also on failure.
#   bash clients/python/package_check.sh
# PYTHON_CLIENT_VENV: the venv for mypy and build (default target/python-client-venv, the one
# run_tests.sh uses: the same pinned packages plus mypy, types-requests and build).
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${PYTHON_CLIENT_VENV:-target/python-client-venv}
constraints=$(pwd)/.ci/constraints.txt

make_venv() {
  if ! python3 -m venv "$1" 2>/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$1"
  fi
}

t0=$SECONDS
if [ ! -x "$venv/bin/python" ]; then
  echo "== package check: creating $venv"
  make_venv "$venv"
fi
echo "== package check: installing mypy, build and the package's dependencies into $venv"
# The extras are here for mypy: numpy, zstandard and mlflow ship their own types.
"$venv/bin/pip" install -q -c "$constraints" mypy types-requests build hatchling "requests>=2.28" numpy \
  "pandas>=2" pyarrow zstandard mlflow-skinny
venv=$(cd "$venv" && pwd)

work=$(mktemp -d /tmp/infoaudit-pkgcheck.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== package check: mypy --strict ($("$venv/bin/mypy" --version))"
# Configured in clients/python/pyproject.toml ([tool.mypy]: strict, files); --strict again so the
# check cannot be loosened there by accident. Its cache goes to the temporary folder.
(cd clients/python && "$venv/bin/mypy" --strict --cache-dir "$work/mypy-cache")

echo "== package check: python -m build --sdist --wheel"
# --no-isolation: the build backend is the venv's pinned hatchling (an isolated build would fetch
# whatever hatchling is newest).
"$venv/bin/python" -m build --no-isolation --sdist --wheel --outdir "$work/dist" clients/python >"$work/build.log" 2>&1 ||
  { cat "$work/build.log"; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' clients/python/pyproject.toml | head -n1)
wheel="$work/dist/infoaudit-$version-py3-none-any.whl"
sdist="$work/dist/infoaudit-$version.tar.gz"
[ -f "$wheel" ] || { echo "no wheel $wheel; built:"; ls -l "$work/dist"; exit 1; }
[ -f "$sdist" ] || { echo "no sdist $sdist; built:"; ls -l "$work/dist"; exit 1; }
ls -l "$work/dist" | awk 'NR > 1 {print "   ", $NF, $5, "bytes"}'

echo "== package check: the wheel's and the sdist's contents"
"$venv/bin/python" - "$wheel" "$sdist" "$version" <<'EOF'
import sys, tarfile, zipfile

wheel, sdist, version = sys.argv[1:]
modules = ["__init__.py", "__main__.py", "cli.py", "_client.py", "_encode.py", "_http.py", "errors.py",
           "mlflow.py", "models.py", "py.typed"]
names = set(zipfile.ZipFile(wheel).namelist())
missing = [m for m in modules if f"infoaudit/{m}" not in names]
assert not missing, f"the wheel lacks {missing}: {sorted(names)}"
dist_info = f"infoaudit-{version}.dist-info"
assert f"{dist_info}/METADATA" in names, sorted(names)
assert not [n for n in names if n.startswith("tests/") or "/tests/" in n], "tests in the wheel"
meta = zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode()
assert "Requires-Dist: requests>=2.28" in meta, meta
assert "Provides-Extra: pandas" in meta, meta
entry = zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode()
assert "infoaudit-client = infoaudit.cli:main" in entry, entry

members = set(tarfile.open(sdist).getnames())
root = f"infoaudit-{version}"
for need in ["pyproject.toml", "README.md", "PKG-INFO", "src/infoaudit/__init__.py",
             "src/infoaudit/__main__.py", "src/infoaudit/cli.py", "src/infoaudit/py.typed"]:
    assert f"{root}/{need}" in members, f"the sdist lacks {need}: {sorted(members)}"
print(f"    wheel: {len(names)} files; sdist: {len(members)} members")
EOF

echo "== package check: the wheel without extras in a fresh venv"
make_venv "$work/venv"
"$work/venv/bin/pip" install -q -c "$constraints" "$wheel"
cd "$work"  # not the source tree: the installed package is what is imported
"$work/venv/bin/python" -c 'import infoaudit, infoaudit.cli; assert infoaudit.__file__.startswith("'"$work/venv"'"), infoaudit.__file__; print("    import infoaudit", infoaudit.__version__)'
help_has() {  # help_has TEXT COMMAND...: the command exits 0 and its output names TEXT
  "${@:2}" >"$work/help.txt"
  grep -q -e "$1" "$work/help.txt" || { echo "$* --help does not mention $1:"; cat "$work/help.txt"; exit 1; }
}
help_has 'gate' "$work/venv/bin/python" -m infoaudit --help
help_has 'submit' "$work/venv/bin/python" -m infoaudit --help
help_has '--api-key' "$work/venv/bin/python" -m infoaudit gate --help
help_has '--idempotency-key' "$work/venv/bin/python" -m infoaudit submit --help
help_has 'gate' "$work/venv/bin/infoaudit-client" --help
# No extras: numpy, pandas, pyarrow, zstandard and mlflow are absent, and the package still imports.
"$work/venv/bin/python" -c 'import importlib.util as u; absent = [m for m in ("numpy", "pandas", "pyarrow", "zstandard", "mlflow") if u.find_spec(m)]; assert not absent, absent'
# Bad arguments exit 2 (as the binary's); an unreachable service 3.
rc=0; "$work/venv/bin/python" -m infoaudit gate --url http://127.0.0.1:9 --model m --version v 2>/dev/null || rc=$?
[ "$rc" = 2 ] || { echo "bad arguments exited $rc, not 2"; exit 1; }
rc=0; "$work/venv/bin/python" -m infoaudit gate --url http://127.0.0.1:9 --model m --version v --gate g 2>/dev/null || rc=$?
[ "$rc" = 3 ] || { echo "an unreachable service exited $rc, not 3"; exit 1; }
echo "== package check passed in $((SECONDS - t0)) s"
