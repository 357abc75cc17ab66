#!/usr/bin/env bash
# Time to 202 and peak RSS of the API process for one large upload, in any body format.
#   cargo build --release && bash benches/ingest_large.sh [FORMAT] [MB]
#   N=1000000 K=100 bash benches/ingest_large.sh arrow      (a sample count instead of a size)
# FORMAT: json (default; columnar), ndjson, csv, arrow (Arrow IPC stream, float64), arrow32
# (float32 probabilities), each optionally with -gzip or -zstd (ndjson-zstd, arrow-zstd, ...).
# MB: the size of the (uncompressed) text, default 93 (10^6 samples of K = 10 as JSON); N, when
# set, is the number of samples instead (a multiple of 100,000). K: classes, default 10.
# The body repeats a block of 100,000 generated samples (K probabilities, 6 decimals), so every
# size has the same numbers per byte. A fresh server is started per run, so the peak RSS (VmHWM)
# belongs to this upload alone. The upload limit is raised to fit. Arrow bodies need pyarrow and
# numpy in $PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
FORMAT=${1:-json}; MB=${2:-93}; K=${K:-10}; N=${N:-}; PORT=${PORT:-18181}; PYTHON=${PYTHON:-python3}
work=$(mktemp -d /tmp/infoaudit-ingest.XXXXXX); chmod 755 "$work"
base=${FORMAT%%-*}; coding=${FORMAT#"$base"}; coding=${coding#-}
body="$work/body.$base"
"$PYTHON" - "$base" "$K" "$MB" "$body" "$N" <<'PY'
import json, random, sys
fmt, k, mb, out, n_given = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
random.seed(1)
labels, probs = [], []
for _ in range(100_000):
    y = random.randrange(k)
    row = [random.random() for _ in range(k)]
    row[random.randrange(k) if random.random() < 0.3 else y] += 2.0
    s = sum(row)
    labels.append(y); probs.append([round(v / s, 6) for v in row])
target = int(mb * 1e6)
if fmt in ("arrow", "arrow32"):
    import numpy as np, pyarrow as pa
    reps = int(n_given) // len(labels) if n_given else max(1, round(target / (len(labels) * (k * 8 + 8))))
    dtype = np.float32 if fmt == "arrow32" else np.float64
    p = np.asarray(probs, dtype=dtype).reshape(-1)
    batch = pa.record_batch({
        "label": pa.array(labels, type=pa.int64()),
        "probabilities": pa.FixedSizeListArray.from_arrays(pa.array(p), k),
    })
    with pa.OSFile(out, "wb") as f, pa.ipc.new_stream(f, batch.schema) as w:
        for _ in range(reps):
            w.write_batch(batch)
    print(reps * len(labels), file=open(out + ".n", "w"))
    sys.exit(0)
if fmt == "ndjson":
    block = "".join(json.dumps({"label": y, "probabilities": p}, separators=(",", ":")) + "\n" for y, p in zip(labels, probs))
    head, tail, sep = "", "", ""
elif fmt == "csv":
    block = "".join(f"{y}," + ",".join(repr(v) for v in p) + "\n" for y, p in zip(labels, probs))
    head, tail, sep = "label," + ",".join(f"p_{i}" for i in range(k)) + "\n", "", ""
else:
    # Columnar JSON: labels first, then the matrix; built from the same repeated block.
    reps = int(n_given) // len(labels) if n_given else max(1, round(target / (len(json.dumps(labels)) + len(json.dumps(probs, separators=(",", ":"))))))
    with open(out, "w") as f:
        f.write('{"task":"multiclass","estimators":["shannon_mi"],"labels":[')
        f.write(",".join([",".join(map(str, labels))] * reps))
        f.write('],"probabilities":[')
        rows = ",".join("[" + ",".join(repr(v) for v in p) + "]" for p in probs)
        f.write(",".join([rows] * reps))
        f.write("]}")
    print(reps * len(labels), file=open(out + ".n", "w"))
    sys.exit(0)
reps = int(n_given) // len(labels) if n_given else max(1, round(target / len(block)))
with open(out, "w") as f:
    f.write(head)
    for _ in range(reps):
        f.write(block)
print(reps * len(labels), file=open(out + ".n", "w"))
PY
n=$(cat "$body.n")
case "$coding" in
  gzip) gzip -1 -c "$body" > "$body.gz"; send="$body.gz"; enc=(-H 'content-encoding: gzip');;
  zstd) zstd -q -3 -c "$body" > "$body.zst"; send="$body.zst"; enc=(-H 'content-encoding: zstd');;
  *) send="$body"; enc=();;
esac
case "$base" in
  ndjson) ct=application/x-ndjson; query='?task=multiclass&estimators=shannon_mi';;
  csv) ct=text/csv; query='?estimators=shannon_mi';;
  arrow|arrow32) ct=application/vnd.apache.arrow.stream; query='?task=multiclass&estimators=shannon_mi';;
  *) ct=application/json; query='';;
esac
text=$(stat -c %s "$body"); wire=$(stat -c %s "$send")
limit=$(( text * 2 + 1048576 ))
INFOAUDIT_ADDR=127.0.0.1:$PORT ./target/release/infoaudit serve --role api --data-dir "$work/data" \
  --max-upload-bytes "$limit" >"$work/log" 2>&1 &
pid=$!
trap 'kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.5; done
before=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
curl -s -o "$work/resp" -w "upload ($FORMAT): HTTP %{http_code} in %{time_total} s\n" \
  -H "content-type: $ct" "${enc[@]}" --data-binary @"$send" \
  "http://127.0.0.1:$PORT/v1/models/ingest-bench/versions/v1/batches$query"
head -c 300 "$work/resp"; echo
hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
grep "batch accepted" "$work/log" | tail -1 | sed "s/\x1b\[[0-9;]*m//g" | grep -o "read_ms=[0-9]* store_ms=[0-9]*" || true
numeric=$(( n * (K * 8 + 4) ))
python3 - <<PY
mib = 1 << 20
print(f"N = $n samples; text {$text / 1e6:.0f} MB, on the wire {$wire / 1e6:.0f} MB; numbers (f64 + u32 label) {$numeric / 1e6:.0f} MB")
print(f"RSS before {$before / 1024:.0f} MiB; peak {$hwm / 1024:.0f} MiB = {$hwm * 1024 / $numeric:.2f}x the numbers, {$hwm * 1024 / $text:.2f}x the text")
PY
