#!/usr/bin/env bash
# The upload rate at the backpressure ceiling: CLIENTS uploaders send small batches (N = 1000,
# K = 10 probabilities, the default estimators: 4 jobs each) back to back to the release binary
# on a fresh embedded cluster with --max-queued-jobs CEILING, while a sampler records the queue
# depth. Reports the accepted (202) rate, the shed (503) rate, their latencies, the deepest queue
# seen, and checks every 202 is stored with its jobs.
#   cargo build --release --bin infoaudit --bench load && bash benches/backpressure.sh [REQUESTS] [CLIENTS] [CEILING] [WORKERS]
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-6000}; CLIENTS=${2:-32}; CEILING=${3:-400}; WORKERS=${4:-2}
PORT=${PORT:-18384}
. benches/service.sh
start_service backpressure --role all --workers "$WORKERS" --max-queued-jobs "$CEILING"
python3 - "$work/batch.json" <<'PY'
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
json.dump({"task": "multiclass", "labels": labels, "probabilities": probs}, open(sys.argv[1], "w"), separators=(",", ":"))
PY
load=$(ls -t target/release/deps/load-* 2>/dev/null | grep -v '\.d$' | head -n1 || true)
[ -x "$load" ] || { echo "build the load generator first: cargo build --release --bench load"; exit 1; }
( while sleep 0.5; do db_sql -c "select count(*) from jobs where state = 'queued'" 2>/dev/null || true; done ) >"$work/depth" &
sampler=$!
start=$(date +%s.%N)
"$load" "$URL" "/v1/models/bp/versions/v1/batches" --post-file "$work/batch.json" \
  --clients "$CLIENTS" --requests "$REQUESTS" | tee "$work/out"
end=$(date +%s.%N)
kill $sampler 2>/dev/null || true
accepted=$(grep -o '202: [0-9]*' "$work/out" | awk '{print $2}'); accepted=${accepted:-0}
shed=$(grep -o '503: [0-9]*' "$work/out" | awk '{print $2}'); shed=${shed:-0}
secs=$(python3 -c "print(f'{$end - $start:.1f}')")
deepest=$(sort -n "$work/depth" | tail -n1)
stored=$(db_sql -c "select count(*) from batches")
echo "ceiling $CEILING queued jobs, $WORKERS workers, $CLIENTS clients, ${secs} s: accepted $accepted ($(python3 -c "print(f'{$accepted / $secs:.1f}')")/s), shed $shed ($(python3 -c "print(f'{$shed / $secs:.1f}')")/s); deepest queue seen $deepest; batches stored $stored; 503s counted by the service: $(curl -s "$URL/metrics" | grep 'uploads_shed_total{reason="queued_jobs"}' | awk '{print $2}')"
[ "$stored" = "$accepted" ] || { echo "MISMATCH: stored batches differ from 202s"; exit 1; }
