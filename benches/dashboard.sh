#!/usr/bin/env bash
# Dashboard latency over a long-lived model: the model page and the version summary with ROWS
# results of one metric (seeded as in gates_load.sh), then the same with one more result stored
# (the page must not recompute from the rows after each write).
#   cargo build --release && bash benches/dashboard.sh [ROWS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-1000000}; PORT=${PORT:-18284}
. benches/service.sh
start_service dashboard
batch() { python3 -c "
import json, random
random.seed($1); n = 2000
y = [random.randrange(4) for _ in range(n)]
p = []
for v in y:
    w = [random.random() for _ in range(4)]; w[v] += 2.0; t = sum(w); p.append([x / t for x in w])
print(json.dumps({'task': 'multiclass', 'labels': y, 'probabilities': p, 'estimators': ['shannon_mi', 'semantic_mi', 'ce_bound']}))"; }
for v in v1 v2; do batch ${v#v} | curl -sf -o /dev/null -H 'content-type: application/json' --data-binary @- "$URL/v1/models/load/versions/$v/batches"; done
sleep 3
seed_history "$ROWS"
echo "seeded: $(db_sql -c 'select count(*) from results') result rows"
page() {
  for i in 1 2 3 4 5; do curl -s -o /dev/null -w "%{time_total} " "$URL$1"; done; echo " s  $2"
}
page /models/load "model page (default chart: semantic_mi, 2 results)"
page "/models/load?metric=shannon_mi" "model page, the chart of 10^6 results"
page "/models/load?metric=shannon_mi.nmi" "model page, a statistic's chart"
page / "models index"
page /v1/models/load/versions/v2 "version summary"
# One more result of the metric: every read above sees a new generation.
batch 3 | curl -sf -o /dev/null -H 'content-type: application/json' --data-binary @- "$URL/v1/models/load/versions/v2/batches"
sleep 3
page /models/load "model page after a new result"
page /v1/models/load/versions/v2 "version summary after a new result"
