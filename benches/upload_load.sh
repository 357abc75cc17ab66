#!/usr/bin/env bash
# Sustained upload rate of small batches (N = 1000 samples, K = 10 probabilities) with CLIENTS
# concurrent uploaders, and read latency measured at the same time, against the release binary on
# a fresh embedded cluster (loopback only). Afterwards checks that every 202 is stored with its jobs.
#   cargo build --release --bin infoaudit --bench load && bash benches/upload_load.sh [REQUESTS] [CLIENTS] [ESTIMATORS]
# ESTIMATORS: a JSON array for the batch (default ["shannon_mi"]); "default" leaves it out (every
# applicable estimator).
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-6000}; CLIENTS=${2:-32}; ESTIMATORS=${3:-'["shannon_mi"]'}
PORT=${PORT:-18383}
. benches/service.sh
start_service upload --role "${ROLE:-all}"
python3 - "$work/batch.json" "$ESTIMATORS" <<'PY'
import json, random, sys
random.seed(7)
n, k = 1000, 10
labels, probs = [], []
for _ in range(n):
    y = random.randrange(k)
    row = [random.random() for _ in range(k)]
    row[y if random.random() < 0.7 else random.randrange(k)] += 3.0
    s = sum(row)
    labels.append(y); probs.append([round(v / s, 6) for v in row])
body = {"task": "multiclass", "labels": labels, "probabilities": probs}
if sys.argv[2] != "default":
    body["estimators"] = json.loads(sys.argv[2])
json.dump(body, open(sys.argv[1], "w"), separators=(",", ":"))
PY
echo "batch body: $(stat -c %s "$work/batch.json") bytes; estimators: $ESTIMATORS"
curl -sf -o /dev/null -H 'content-type: application/json' --data-binary @"$work/batch.json" "$URL/v1/models/load/versions/v1/batches"
load=$(ls -t target/release/deps/load-* 2>/dev/null | grep -v '\.d$' | head -n1 || true)
[ -x "$load" ] || { echo "build the load generator first: cargo build --release --bench load"; exit 1; }
"$load" "$URL" "/v1/models/load/versions/v1/batches" --post-file "$work/batch.json" \
  --clients "$CLIENTS" --requests "$REQUESTS" --read "/v1/models/load/versions/v1" --read-clients 4 | tee "$work/out"
accepted=$(grep -o '202: [0-9]*' "$work/out" | head -n1 | awk '{print $2}')
stored=$(db_sql -c "select count(*) from batches")
echo "202s: $accepted (+1 warm-up); batches stored: $stored; jobs: $(db_sql -c 'select count(*) from jobs'); batches without jobs: $(db_sql -c 'select count(*) from batches b where not exists (select 1 from jobs j where j.batch_id = b.id)')"
[ "$stored" = "$((accepted + 1))" ] || { echo "MISMATCH: stored batches differ from 202s"; exit 1; }
