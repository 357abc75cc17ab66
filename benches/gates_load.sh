#!/usr/bin/env bash
# History and gate latency under load (issue: p99 under 50 ms with 50 concurrent clients).
# Starts the release binary on a fresh embedded cluster, seeds ROWS result rows for one metric of
# one model straight into PostgreSQL, stores a 10-rule policy, then runs the load generator.
#   cargo build --release --bench load && bash benches/gates_load.sh [ROWS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-1000000}; PORT=${PORT:-18282}
. benches/service.sh
start_service gates
batch() { python3 -c "import json,random; random.seed($1); n=2000; y=[random.randrange(4) for _ in range(n)]; p=[v if random.random()<0.8 else random.randrange(4) for v in y]; print(json.dumps({'task':'multiclass','labels':y,'predictions':p,'estimators':['shannon_mi']}))"; }
for v in v1 v2; do batch ${v#v} | curl -sf -o /dev/null -H 'content-type: application/json' --data-binary @- "$URL/v1/models/load/versions/$v/batches"; done
curl -sf -o /dev/null -X PUT -H 'content-type: application/json' -d '{"version":"v1"}' "$URL/v1/models/load/aliases/production"
rules=$(python3 -c "import json; r=[{'metric':'shannon_mi','op':'gte','baseline':'production','max_regression':{'relative':0.02+i/100}} for i in range(5)]+[{'metric':m,'op':'gte','threshold':0.01} for m in ['shannon_mi.nmi','shannon_mi.ami','shannon_mi.miller_madow','shannon_mi','shannon_mi.jackknife']]; print(json.dumps({'rules':r}))")
curl -sf -o /dev/null -X PUT -H 'content-type: application/json' -d "$rules" "$URL/v1/models/load/gates/release"
sleep 3
seed_history "$ROWS"
echo "seeded: $(db_sql -c 'select count(*) from results') result rows"
# The load generator (built by `cargo build --release --bench load`).
load=$(ls -t target/release/deps/load-* 2>/dev/null | grep -v '\.d$' | head -n1 || true)
[ -x "$load" ] || { cargo build --release --bench load; load=$(ls -t target/release/deps/load-* | grep -v '\.d$' | head -n1 || true); }
hist="/v1/models/load/history?metric=shannon_mi&buckets=500"
# One uncached answer first (the cost of reading the cells), then 50 clients back to back
# (saturation: latency there is 50 / throughput) and at offered rates below saturation.
curl -s -o /dev/null -w "history, first (uncached) answer: %{time_total} s\n" "$URL$hist"
"$load" "$URL" "$hist" --clients 50 --requests 4000
"$load" "$URL" "$hist" --clients 50 --requests 8000 --rate 2000
for i in 1 2 3; do curl -s -o /dev/null -w "gate, one alone: %{time_total} s\n" -H "content-type: application/json" -d "{\"gate\":\"release\"}" "$URL/v1/models/load/versions/v2/gate"; done
"$load" "$URL" "/v1/models/load/versions/v2/gate" --post '{"gate":"release"}' --clients 50 --requests 2000
for rate in 200 300 500; do
  "$load" "$URL" "/v1/models/load/versions/v2/gate" --post '{"gate":"release"}' --clients 50 --requests 4000 --rate "$rate"
done
# The uncached cost again, with the cache bypassed by a different range each time.
for b in 499 498 497; do curl -s -o /dev/null -w "history buckets=$b (uncached): %{time_total} s\n" "$URL/v1/models/load/history?metric=shannon_mi&buckets=$b"; done
