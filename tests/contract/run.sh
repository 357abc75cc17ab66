#!/usr/bin/env bash
# Contract fuzzing: schemathesis (PyPI) against the /openapi.json served by a running instance on
# loopback, with an admin key bootstrapped through `infoaudit keys create`. Runs every check
# (`--checks all`): any 5xx, any undocumented status code, content type or header, any response that
# violates its schema, a schema-valid request rejected or a schema-violating one accepted fails the
# run. The one exception (and why) is in tests/contract/schemathesis.toml.
#   bash tests/contract/run.sh            (MAX_EXAMPLES=25, SEED=20261128 by default)
#   PLAIN=1 bash tests/contract/run.sh    the published document alone (no configuration, no
#                                         hooks): only what JSON Schema cannot state may remain
# Key revocation is left out: the stateful phase would revoke the run's own key from the list.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${CONTRACT_VENV:-target/contract-venv}
if [ ! -x "$venv/bin/schemathesis" ]; then
  echo "== installing schemathesis into $venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q -c .ci/constraints.txt "schemathesis==4.32.5"
fi
cargo build --locked --bin infoaudit
work=$(mktemp -d /tmp/infoaudit-contract.XXXXXX); chmod 755 "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
key=$(./target/debug/infoaudit keys create --name contract --scopes admin,ingest,read,gate --data-dir "$work/data" | grep -o 'ia_[A-Za-z0-9_]*' | head -n1)
[ -n "$key" ] || { echo "could not create the contract key"; exit 1; }
INFOAUDIT_ADDR=127.0.0.1:$port ./target/debug/infoaudit serve --data-dir "$work/data" >"$work/log" 2>&1 &
pid=$!
cleanup() { kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 1 120); do curl -sf "$url/readyz" >/dev/null && break; sleep 0.5; done
curl -sf "$url/readyz" >/dev/null || { echo "the service did not start:"; tail -n 50 "$work/log"; exit 1; }
status=0
if [ "${PLAIN:-0}" = 1 ]; then
  # The published document alone: no configuration, no hooks, every check. What it may still
  # report is only what JSON Schema cannot state (checked below; listed in the README).
  "$venv/bin/schemathesis" run "$url/openapi.json" \
    -H "Authorization: Bearer $key" --checks all \
    --exclude-operation-id revoke_key \
    --max-examples "${MAX_EXAMPLES:-25}" --seed "${SEED:-20261207}" --no-color \
    --report junit --report-dir "$work/report" || true
  python3 - "$work/report" <<'PY' || status=$?
import glob, sys, xml.etree.ElementTree as ET
# Schema-valid requests the service must refuse for rules JSON Schema cannot state: a batch's
# columns of equal length (and its query options only for NDJSON, CSV and Arrow bodies), labels
# as many as ids and within the batch's classes. Schemathesis has no NDJSON serializer of its own
# (tests/contract/hooks.py gives it one in the configured run).
allowed_ops = ("POST /v1/models/{model}/labels", "POST /v1/models/{model}/versions/{version}/batches")
allowed = ("Schema-valid request rejected", "Serialization not possible")
bad, seen = [], 0
for f in glob.glob(sys.argv[1] + "/*.xml"):
    for tc in ET.parse(f).getroot().iter("testcase"):
        seen += 1
        for problem in list(tc.iter("failure")) + list(tc.iter("error")):
            text = (problem.get("message") or "") + "\n" + (problem.text or "")
            op_ok = tc.get("name") in allowed_ops or any(o in text for o in allowed_ops)
            # A refusal must be the validation problem (422 with pointers), nothing else.
            refused_ok = "Schema-valid request rejected" not in text or (
                "[422]" in text and "problems/validation" in text)
            kinds = [a for a in allowed if a in text]
            if not (op_ok and kinds and refused_ok):
                bad.append(f"{tc.get('name')}: {text.strip()[:600]}")
print(f"== plain schemathesis run: {seen} test cases, {len(bad)} finding(s) beyond what JSON Schema cannot state")
for b in bad:
    print("  " + b)
sys.exit(1 if bad or seen == 0 else 0)
PY
  exit "$status"
fi
PYTHONPATH=tests/contract SCHEMATHESIS_HOOKS=hooks "$venv/bin/schemathesis" \
  --config-file tests/contract/schemathesis.toml run "$url/openapi.json" \
  -H "Authorization: Bearer $key" \
  ${CHECKS:+--checks "$CHECKS"} \
  --exclude-operation-id revoke_key \
  --max-examples "${MAX_EXAMPLES:-25}" --seed "${SEED:-20261128}" --no-color \
  --report junit --report-dir "$work/report" || status=$?
# A run that exercised nothing passes nothing: every documented operation but the excluded one
# must have been tested (the JUnit report has a test case per operation).
if [ "$status" = 0 ]; then
  python3 - "$work/report" openapi/openapi.json <<'PY' || status=$?
import glob, json, sys, xml.etree.ElementTree as ET
cases = set()
for f in glob.glob(sys.argv[1] + "/*.xml"):
    for tc in ET.parse(f).getroot().iter("testcase"):
        if tc.find("skipped") is None:
            cases.add(tc.get("name"))
doc = json.load(open(sys.argv[2]))
ops = [(m.upper(), p, o.get("operationId")) for p, item in doc["paths"].items()
       for m, o in item.items() if m in ("get", "put", "post", "patch", "delete")]
expected = [o for o in ops if o[2] != "revoke_key"]
missing = [f"{m} {p}" for m, p, _ in expected if f"{m} {p}" not in cases]
print(f"== schemathesis tested {len(expected) - len(missing)} of the {len(expected)} documented operations")
if missing:
    print("not exercised:", *missing, sep="\n  ")
    sys.exit(1)
PY
fi
if [ "$status" != 0 ]; then
  echo "== service log (last 40 lines)"; tail -n 40 "$work/log"
fi
exit "$status"
