#!/usr/bin/env bash
# Monitor delivery under load: the time from the commit of a monitored batch's last result to
# the webhook receiver's 200 (p50, p99), while RATE small uploads per second arrive for another
# model; then KILLS SIGKILLs of the service (with messages in flight) and a count of messages
# written against distinct webhook-ids received (lost / duplicated).
#   cargo build --release --bin infoaudit --bench load && bash benches/monitor_latency.sh [RATE] [SECONDS] [FLIPS] [KILLS]
# The monitored model's production version gets FLIPS batches alternating weak/perfect over
# SECONDS seconds, so every batch changes the incident (one message each). The receiver is a
# Python ThreadingHTTPServer on loopback (the service runs with --webhook-allow-private).
# "Commit of the last result" is read as the latest `jobs.finished_at` of the batch (the time
# the finishing transaction started; its commit follows within the same statement batch).
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-300}; SECS=${2:-60}; FLIPS=${3:-40}; KILLS=${4:-3}
PORT=${PORT:-18384}; RPORT=${RPORT:-18385}
. benches/service.sh
ARGS=(--role all --webhook-allow-private --webhook-retry-seconds 0.5 --webhook-timeout-seconds 5)
start_service monitors "${ARGS[@]}"
python3 - "$RPORT" "$work/received" <<'PY' &
import http.server, sys, time
port, out = int(sys.argv[1]), sys.argv[2]
f = open(out, "a", buffering=1)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        t = time.time()
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
        f.write(f"{self.headers['webhook-id']} {t:.6f}\n")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
rpid=$!
trap 'kill $rpid 2>/dev/null; kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
python3 - "$work" <<'PY'
import json, random, sys
w = sys.argv[1]
def binary(wrong):
    labels, preds = [], []
    for _ in range(125):
        l = [0, 0, 0, 0, 1, 1, 1, 1]; p = list(l)
        for i in range(wrong): p[i] = 1 - p[i]
        labels += l; preds += p
    return {"task": "multiclass", "labels": labels, "predictions": preds, "estimators": ["shannon_mi"]}
json.dump(binary(0), open(f"{w}/good.json", "w")); json.dump(binary(3), open(f"{w}/bad.json", "w"))
random.seed(7); n, k = 200, 10; labels, probs = [], []
for _ in range(n):
    y = random.randrange(k); row = [random.random() for _ in range(k)]
    row[y if random.random() < 0.7 else random.randrange(k)] += 3.0; s = sum(row)
    labels.append(y); probs.append([round(v / s, 6) for v in row])
json.dump({"task": "multiclass", "labels": labels, "probabilities": probs, "estimators": ["shannon_mi"]},
          open(f"{w}/small.json", "w"), separators=(",", ":"))
PY
post() { curl -sf -o /dev/null -H 'content-type: application/json' --data-binary @"$work/$1.json" "$URL/v1/models/watched/versions/v1/batches"; }
drain() { for _ in $(seq 1 600); do [ "$(db_sql -c "select count(*) from jobs where state in ('queued','running')")" = 0 ] && return; sleep 0.2; done; }
post good; drain
curl -sf -o /dev/null -X PUT -H 'content-type: application/json' -d '{"version":"v1"}' "$URL/v1/models/watched/aliases/production"
curl -sf -o /dev/null -X PUT -H 'content-type: application/json' "$URL/v1/models/watched/monitors/watch" -d "{
  \"target\": {\"alias\": \"production\"}, \"rules\": [{\"metric\": \"shannon_mi\", \"op\": \"gte\", \"threshold\": 0.5}],
  \"window\": {\"batches\": 1}, \"triggers\": {\"on_result\": true, \"on_alias_change\": false},
  \"channels\": [{\"name\": \"bench\", \"type\": \"webhook\", \"url\": \"http://127.0.0.1:$RPORT/hook\"}],
  \"notify_on\": [\"fail\", \"recovered\"]}"
load=$(ls -t target/release/deps/load-* 2>/dev/null | grep -v '\.d$' | head -n1 || true)
[ -x "$load" ] || { echo "build the load generator first: cargo build --release --bench load"; exit 1; }
"$load" "$URL" "/v1/models/background/versions/v1/batches" --post-file "$work/small.json" \
  --clients 32 --requests $((RATE * SECS)) --rate "$RATE" > "$work/load.out" 2>&1 &
lpid=$!
gap=$(python3 -c "print($SECS / $FLIPS)")
for i in $(seq 1 "$FLIPS"); do
  if [ $((i % 2)) = 1 ]; then post bad; else post good; fi
  sleep "$gap"
done
wait $lpid; cat "$work/load.out"
for _ in $(seq 1 600); do [ "$(db_sql -c "select count(*) from webhook_deliveries where state <> 'delivered'")" = 0 ] && break; sleep 0.2; done
db_sql -F ' ' -c "select 'msg_' || replace(d.id::text, '-', ''), extract(epoch from (select max(j.finished_at) from jobs j
  where j.batch_id = (g.decision->'batches'->0->>'batch_id')::uuid)) from webhook_deliveries d join gate_decisions g on g.id = d.decision_id" > "$work/written"
python3 - "$work/written" "$work/received" <<'PY'
import sys
written = {l.split()[0]: float(l.split()[1]) for l in open(sys.argv[1]) if l.strip()}
first = {}
for l in open(sys.argv[2]):
    i, t = l.split(); first.setdefault(i, float(t))
lat = sorted((first[i] - t) * 1000 for i, t in written.items() if i in first)
pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"messages {len(written)}, delivered {len(lat)}; last result commit -> receiver 200, ms: p50 {pct(0.5):.1f} p99 {pct(0.99):.1f} max {lat[-1]:.1f}")
PY
# SIGKILLs: each right after a flip's upload (the message is written or about to be), then a restart.
before=$(wc -l < "$work/received")
for k in $(seq 1 "$KILLS"); do
  if [ $((k % 2)) = 1 ]; then post bad; else post good; fi
  sleep 0.3
  # The service processes only (the worker child too); the embedded PostgreSQL survives and the
  # restarted service adopts it.
  for c in $(pgrep -P "$pid" -x infoaudit || true); do kill -KILL "$c" 2>/dev/null || true; done
  kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
  INFOAUDIT_ADDR=127.0.0.1:$PORT ./target/release/infoaudit serve "${ARGS[@]}" --data-dir "$work/data" >>"$work/log" 2>&1 &
  pid=$!
  for _ in $(seq 1 120); do curl -sf "$URL/readyz" >/dev/null && break; sleep 0.5; done
done
drain
for _ in $(seq 1 900); do [ "$(db_sql -c "select count(*) from webhook_deliveries where state <> 'delivered'")" = 0 ] && break; sleep 0.2; done
written=$(db_sql -c "select count(*) from webhook_deliveries")
python3 - "$work/received" "$(db_sql -c "select string_agg('msg_' || replace(id::text, '-', ''), ' ') from webhook_deliveries")" <<'PY'
import sys, collections
got = collections.Counter(l.split()[0] for l in open(sys.argv[1]))
ids = set(sys.argv[2].split())
lost = [i for i in ids if i not in got]
print(f"after the kills: messages written {len(ids)}, distinct webhook-ids received {len(set(got) & ids)}, "
      f"lost {len(lost)}, unknown ids {len(set(got) - ids)}, repeated receipts (same id) {sum(c - 1 for c in got.values())}")
PY
