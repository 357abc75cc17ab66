#!/usr/bin/env bash
# Version summary latency over many batches: the pooled value reads every batch's sufficient
# statistics, so the first answer after a change costs O(batches); later answers are served from
# the cache while the model's results are unchanged.
#   cargo build --release && bash benches/summary.sh [BATCHES]
set -euo pipefail
cd "$(dirname "$0")/.."
BATCHES=${1:-6000}; PORT=${PORT:-18283}
. benches/service.sh
start_service summary
python3 -c "import json,random; random.seed(1); n=2000; y=[random.randrange(10) for _ in range(n)]; p=[v if random.random()<0.7 else random.randrange(10) for v in y]; print(json.dumps({'task':'multiclass','labels':y,'predictions':p,'estimators':['shannon_mi']}))" \
  | curl -sf -o /dev/null -H 'content-type: application/json' --data-binary @- "$URL/v1/models/sum/versions/v1/batches"
for _ in $(seq 1 120); do
  [ "$(curl -sf "$URL/v1/models/sum/versions/v1" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["metrics"]))')" = 1 ] && break; sleep 0.5
done
# BATCHES − 1 more batches of the version, each with a copy of the first one's result (real
# sufficient statistics: a 10×10 table), written straight into PostgreSQL.
db_sql -v ON_ERROR_STOP=1 <<SQL
CREATE TEMP TABLE seed AS SELECT gen_random_uuid() AS batch, gen_random_uuid() AS job, i
FROM generate_series(2, $BATCHES) i;
INSERT INTO batches (id, model_id, version_id, task, n, digest, size_bytes, content_type, metadata)
SELECT s.batch, b.model_id, b.version_id, b.task, b.n, b.digest, b.size_bytes, b.content_type, '{}'
FROM seed s, (SELECT * FROM batches LIMIT 1) b;
INSERT INTO jobs (id, batch_id, estimator, estimator_version, params, params_hash, state)
SELECT s.job, s.batch, j.estimator, j.estimator_version, j.params, j.params_hash, 'succeeded'
FROM seed s, (SELECT * FROM jobs LIMIT 1) j;
INSERT INTO results (id, job_id, batch_id, model_id, version_id, estimator, estimator_version, params,
                     value, ci_low, ci_high, ci_level, ci_method, n, details, sufficient, computed_at)
SELECT gen_random_uuid(), s.job, s.batch, r.model_id, r.version_id, r.estimator, r.estimator_version,
       r.params, r.value, r.ci_low, r.ci_high, r.ci_level, r.ci_method, r.n, r.details, r.sufficient,
       r.computed_at + s.i * interval '1 second'
FROM seed s, (SELECT * FROM results LIMIT 1) r;
VACUUM ANALYZE results;
SQL
for i in 1 2 3; do
  curl -s -o /dev/null -w "summary over $BATCHES batches, answer $i: %{time_total} s\n" "$URL/v1/models/sum/versions/v1"
done
# A change of results (a deleted batch) makes the next answer compute again.
b=$(db_sql -c "SELECT id FROM batches ORDER BY created_at DESC LIMIT 1")
curl -sf -o /dev/null -X DELETE "$URL/v1/batches/$b"
for i in 1 2; do
  curl -s -o /dev/null -w "after a deletion, answer $i: %{time_total} s\n" "$URL/v1/models/sum/versions/v1"
done
curl -s "$URL/v1/models/sum/versions/v1" | python3 -c 'import json,sys; m=json.load(sys.stdin)["metrics"][0]; print("pooled_batches", m["pooled_batches"], "pooled", m["pooled"], "latest", m["latest"]["value"])'
