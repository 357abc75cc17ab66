#!/usr/bin/env bash
# Labels that arrive later, at scale: one batch of N samples with ids and without labels, then
# all N labels by id in one request, then the released jobs (which join the labels by id).
#   cargo build --release && bash benches/late_labels.sh
#   N=1000000 K=10 bash benches/late_labels.sh       (the defaults)
# INFOAUDIT_BIN: the binary (default $CARGO_TARGET_DIR/release/infoaudit, else target/release).
# Reported: the upload (ids registered in the same transaction) and its time to 202; the labels
# request's time to 202 and the peak RSS (VmHWM) of a fresh API process that served only it; the
# released shannon_mi job's run time on the labels-later batch next to the same job on a labelled
# twin batch (the difference is the join). Needs python3 and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000000}; K=${K:-10}; PORT=${PORT:-18183}
BIN=${INFOAUDIT_BIN:-${CARGO_TARGET_DIR:-target}/release/infoaudit}
work=$(mktemp -d /tmp/infoaudit-labels.XXXXXX); chmod 755 "$work"
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
wait_jobs() {  # batch id: wait until every job is done
  for _ in $(seq 1 1200); do
    left=$(curl -sf "http://127.0.0.1:$PORT/v1/batches/$1" | python3 -c '
import json, sys
b = json.load(sys.stdin)
bad = [j for j in b["jobs"] if j["state"] in ("failed", "cancelled")]
if bad: sys.exit("a job failed: %s" % bad[0])
print(sum(j["state"] != "succeeded" for j in b["jobs"]))')
    [ "$left" = 0 ] && return; sleep 1
  done
  echo "jobs did not finish"; exit 1
}
job_seconds() {  # batch id, estimator: the job's run time
  curl -sf "http://127.0.0.1:$PORT/v1/batches/$1" | python3 -c '
import json, sys
from datetime import datetime
j = next(j for j in json.load(sys.stdin)["jobs"] if j["estimator"] == sys.argv[1])
t = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
d = t(j["finished_at"]) - t(j["started_at"])
print("%.2f" % d.total_seconds())' "$2"
}

# Bodies: the batch with ids and without labels (NDJSON), its labels (NDJSON), and the twin
# with labels (NDJSON); a block of 100,000 generated samples repeated with distinct ids.
python3 - "$K" "$N" "$work" <<'PY'
import json, random, sys
k, n, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
random.seed(1)
block = []
for _ in range(100_000):
    y = random.randrange(k)
    row = [random.random() for _ in range(k)]
    row[random.randrange(k) if random.random() < 0.3 else y] += 2.0
    s = sum(row)
    block.append((y, "[" + ",".join(repr(round(v / s, 6)) for v in row) + "]"))
with open(f"{work}/batch.ndjson", "w") as b, open(f"{work}/labels.ndjson", "w") as l, \
        open(f"{work}/twin.ndjson", "w") as t:
    for i in range(n):
        y, p = block[i % len(block)]
        b.write(f'{{"id":"req-{i:07d}","probabilities":{p}}}\n')
        l.write(f'{{"id":"req-{i:07d}","label":{y}}}\n')
        t.write(f'{{"label":{y},"probabilities":{p}}}\n')
PY
est='estimators=%5B%7B%22id%22%3A%22shannon_mi%22%2C%22params%22%3A%7B%22bootstrap%22%3A0%7D%7D%5D'
upload() {  # model, file: prints "batch_id seconds"
  curl -sf -o "$work/resp" -w '%{time_total}\n' -H 'content-type: application/x-ndjson' \
    --data-binary @"$work/$2" "http://127.0.0.1:$PORT/v1/models/$1/versions/v1/batches?$est" > "$work/t"
  echo "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["batch"]["id"])' "$work/resp") $(cat "$work/t")"
}
serve api
read -r late up_late < <(upload labels-bench batch.ndjson)
read -r twin up_twin < <(upload labels-twin twin.ndjson)
stop
serve api
before=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
post=$(curl -sf -o "$work/out" -w '%{time_total}' -H 'content-type: application/x-ndjson' \
  --data-binary @"$work/labels.ndjson" "http://127.0.0.1:$PORT/v1/models/labels-bench/labels")
hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
stop
python3 - "$work/out" "$N" <<'PY'
import json, sys
o = json.load(open(sys.argv[1]))
b = o["batches"][0]
assert o["stored"] == int(sys.argv[2]) and b["coverage"] == 1.0 and b["released"], o
PY
serve all
wait_jobs "$late"; wait_jobs "$twin"
j_late=$(job_seconds "$late" shannon_mi); j_twin=$(job_seconds "$twin" shannon_mi)
v_late=$(curl -sf "http://127.0.0.1:$PORT/v1/batches/$late" | python3 -c 'import json,sys; print(next(r["value"] for r in json.load(sys.stdin)["results"] if r["estimator"]=="shannon_mi"))')
v_twin=$(curl -sf "http://127.0.0.1:$PORT/v1/batches/$twin" | python3 -c 'import json,sys; print(next(r["value"] for r in json.load(sys.stdin)["results"] if r["estimator"]=="shannon_mi"))')
stop
echo "N = $N, K = $K, binary $BIN"
echo "upload with ids, no labels: ${up_late} s to 202   (labelled twin without ids: ${up_twin} s)"
echo "labels by id, one NDJSON request: ${post} s to 202; API process RSS $((before / 1024)) MiB before, peak $((hwm / 1024)) MiB"
echo "released shannon_mi (join + estimate): ${j_late} s   (twin, labels stored with it: ${j_twin} s)"
echo "values: joined ${v_late} bits = twin ${v_twin} bits"
[ "$v_late" = "$v_twin" ] || { echo "the joined result differs from the twin's"; exit 1; }
