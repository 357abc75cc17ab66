#!/usr/bin/env bash
# Time to 202 and peak RSS of the API process for one large upload
# (default N = 1,000,000 multiclass samples with K = 10 probabilities, ≈ 93 MB of JSON).
#   cargo build --release && bash benches/ingest_large.sh [N] [K]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}; K=${2:-10}; PORT=${PORT:-18181}
work=$(mktemp -d /tmp/infoaudit-ingest.XXXXXX); chmod 755 "$work"
body="$work/body.json"
python3 - "$N" "$K" "$body" <<'PY'
import json, random, sys
n, k, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
random.seed(1)
labels, probs = [], []
for _ in range(n):
    y = random.randrange(k)
    row = [random.random() for _ in range(k)]
    row[random.randrange(k) if random.random() < 0.3 else y] += 2.0
    s = sum(row)
    labels.append(y); probs.append([round(v / s, 6) for v in row])
with open(out, "w") as f:
    json.dump({"task": "multiclass", "labels": labels, "probabilities": probs,
               "estimators": ["shannon_mi"]}, f, separators=(",", ":"))
PY
size=$(stat -c %s "$body")
INFOAUDIT_ADDR=127.0.0.1:$PORT ./target/release/infoaudit serve --role api --data-dir "$work/data" >"$work/log" 2>&1 &
pid=$!
trap 'kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.5; done
base=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
for i in 1 2 3; do
  curl -s -o /dev/null -w "upload $i: HTTP %{http_code} in %{time_total} s\n" \
    -H 'content-type: application/json' --data-binary @"$body" \
    "http://127.0.0.1:$PORT/v1/models/ingest-bench/versions/v$i/batches"
done
hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
echo "body: $size bytes; RSS before: $((base / 1024)) MiB; peak RSS: $((hwm / 1024)) MiB ($(python3 -c "print(round($hwm*1024/$size, 2))") x the body)"
