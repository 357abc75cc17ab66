#!/usr/bin/env bash
# Per-sample export: throughput and the API process's peak RSS while it streams
# GET /v1/batches/{id}/samples for one large batch.
#   cargo build --release && bash benches/export_samples.sh
#   N=1000000 K=10 bash benches/export_samples.sh       (the defaults)
# INFOAUDIT_BIN: the binary (default $CARGO_TARGET_DIR/release/infoaudit, else target/release).
# One process (role all) takes the upload and runs semantic_mi, shannon_mi and ce_bound
# (bootstrap 0); then each export runs in a fresh API-role process on the same data directory,
# so its peak RSS (VmHWM) belongs to that export alone. Each export is written to a file, its rows
# counted and the (unweighted) mean of the information column compared with the stored plug-in
# value (semantic_mi and ce_bound: value; shannon_mi: details.plug_in). Needs python3 and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000000}; K=${K:-10}; PORT=${PORT:-18182}
BIN=${INFOAUDIT_BIN:-${CARGO_TARGET_DIR:-target}/release/infoaudit}
work=$(mktemp -d /tmp/infoaudit-export.XXXXXX); chmod 755 "$work"
pid=
stop() { if [ -n "$pid" ]; then kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; fi; }
trap 'stop; rm -rf "$work"' EXIT
serve() {
  INFOAUDIT_ADDR=127.0.0.1:$PORT "$BIN" serve --role "$1" --data-dir "$work/data" \
    --max-upload-bytes 2000000000 >>"$work/log" 2>&1 &
  pid=$!
  for _ in $(seq 1 240); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && return; sleep 0.5; done
  echo "server did not start"; tail -20 "$work/log"; exit 1
}

# The body: a block of 100,000 generated samples (K probabilities, 6 decimals) repeated.
python3 - "$K" "$N" "$work/body.json" <<'PY'
import json, random, sys
k, n, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
random.seed(1)
labels, probs = [], []
for _ in range(100_000):
    y = random.randrange(k)
    row = [random.random() for _ in range(k)]
    row[random.randrange(k) if random.random() < 0.3 else y] += 2.0
    s = sum(row)
    labels.append(y); probs.append([round(v / s, 6) for v in row])
reps = n // len(labels)
est = [{"id": e, "params": {"bootstrap": 0}} for e in ("semantic_mi", "shannon_mi", "ce_bound")]
with open(out, "w") as f:
    f.write('{"task":"multiclass","estimators":' + json.dumps(est) + ',"labels":[')
    f.write(",".join([",".join(map(str, labels))] * reps))
    f.write('],"probabilities":[')
    rows = ",".join("[" + ",".join(repr(v) for v in p) + "]" for p in probs)
    f.write(",".join([rows] * reps))
    f.write("]}")
PY

serve all
id=$(curl -sf -H 'content-type: application/json' --data-binary @"$work/body.json" \
  "http://127.0.0.1:$PORT/v1/models/export-bench/versions/v1/batches" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["batch"]["id"])')
rm -f "$work/body.json"
for _ in $(seq 1 600); do
  left=$(curl -sf "http://127.0.0.1:$PORT/v1/batches/$id" | python3 -c '
import json, sys
b = json.load(sys.stdin)
bad = [j for j in b["jobs"] if j["state"] in ("failed", "cancelled")]
if bad: sys.exit("a job failed: %s" % bad[0])
print(sum(j["state"] != "succeeded" for j in b["jobs"]))')
  [ "$left" = 0 ] && break; sleep 1
done
curl -sf "http://127.0.0.1:$PORT/v1/batches/$id?unit=nats" > "$work/detail.json"
stop

echo "N = $N, K = $K, batch $id, binary $BIN"
printf '%-12s %-7s %9s %8s %9s %9s %9s %10s %10s\n' estimator format MB first_s total_s rows/s MB/s rss_before peak_rss
for run in semantic_mi:ndjson semantic_mi:csv shannon_mi:ndjson ce_bound:csv; do
  est=${run%%:*}; fmt=${run#*:}
  serve api
  before=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
  read -r size first total < <(curl -sf -o "$work/out" -w '%{size_download} %{time_starttransfer} %{time_total}\n' \
    "http://127.0.0.1:$PORT/v1/batches/$id/samples?estimator=$est&format=$fmt&unit=nats")
  hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
  stop
  python3 - "$est" "$fmt" "$work/out" "$work/detail.json" "$N" "$size" "$first" "$total" "$before" "$hwm" <<'PY'
import csv, json, sys
est, fmt, out, detail, n, size, first, total, before, hwm = sys.argv[1:]
n, size, first, total = int(n), int(size), float(first), float(total)
res = next(r for r in json.load(open(detail))["results"] if r["estimator"] == est)
want = res["details"]["plug_in"] if est == "shannon_mi" else res["value"]
rows, acc = 0, 0.0
with open(out) as f:
    if fmt == "csv":
        for r in csv.DictReader(f):
            rows += 1; acc += float(r["information"])
    else:
        for line in f:
            rows += 1; acc += json.loads(line)["information"]
assert rows == n, (rows, n)
assert abs(acc / rows - want) < 1e-9 * max(1.0, abs(want)), (acc / rows, want)
print(f"{est:<12} {fmt:<7} {size / 1e6:9.1f} {first:8.2f} {total:9.2f} {n / total:9.0f} "
      f"{size / 1e6 / total:9.1f} {int(before) / 1024:7.0f} MiB {int(hwm) / 1024:6.0f} MiB"
      f"   mean {acc / rows:.12f} = stored {want:.12f}")
PY
  rm -f "$work/out"
done
