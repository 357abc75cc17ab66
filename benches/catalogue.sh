#!/usr/bin/env bash
# A catalogue at scale: MODELS models x VERSIONS versions x BATCHES batches (one shannon_mi result
# each), seeded straight into PostgreSQL, then the model list, the dashboard index, a model's
# versions (API and page) timed over five answers each.
#   cargo build --release && bash benches/catalogue.sh [MODELS] [VERSIONS] [BATCHES]
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=${1:-1000}; VERSIONS=${2:-100}; BATCHES=${3:-10}; PORT=${PORT:-18285}
. benches/service.sh
start_service catalogue
python3 -c "import json; print(json.dumps({'task':'multiclass','labels':[0,1,1,0]*50,'predictions':[0,1,0,0]*50,'estimators':['shannon_mi']}))" \
  | curl -sf -o /dev/null -H 'content-type: application/json' --data-binary @- "$URL/v1/models/m0000/versions/v000/batches"
sleep 3
db_sql -v ON_ERROR_STOP=1 <<SQL
INSERT INTO models (id, name, created_at)
SELECT gen_random_uuid(), 'm' || lpad(i::text, 4, '0'), now() - interval '1 year' FROM generate_series(1, $MODELS - 1) i;
INSERT INTO model_versions (id, model_id, name, created_at)
SELECT gen_random_uuid(), m.id, 'v' || lpad(j::text, 3, '0'), now() - interval '1 year' + j * interval '1 day'
FROM models m, generate_series(CASE WHEN m.name = 'm0000' THEN 1 ELSE 0 END, $VERSIONS - 1) j;
CREATE TEMP TABLE seed AS
SELECT gen_random_uuid() AS batch, gen_random_uuid() AS job, v.model_id, v.id AS version_id,
       v.created_at + k * interval '1 hour' AS at
FROM model_versions v, generate_series(1, $BATCHES) k WHERE v.name <> 'v000' OR v.model_id <> (SELECT id FROM models WHERE name = 'm0000');
INSERT INTO batches (id, model_id, version_id, task, n, digest, size_bytes, content_type, metadata, created_at)
SELECT s.batch, s.model_id, s.version_id, b.task, b.n, b.digest, b.size_bytes, b.content_type, '{}', s.at
FROM seed s, (SELECT * FROM batches LIMIT 1) b;
INSERT INTO jobs (id, batch_id, estimator, estimator_version, params, params_hash, state)
SELECT s.job, s.batch, j.estimator, j.estimator_version, j.params, j.params_hash, 'succeeded'
FROM seed s, (SELECT * FROM jobs LIMIT 1) j;
INSERT INTO results (id, job_id, batch_id, model_id, version_id, estimator, estimator_version, params,
                     value, ci_low, ci_high, ci_level, ci_method, n, details, sufficient, computed_at)
SELECT gen_random_uuid(), s.job, s.batch, s.model_id, s.version_id, r.estimator, r.estimator_version,
       r.params, r.value, r.ci_low, r.ci_high, r.ci_level, r.ci_method, r.n, r.details, r.sufficient, s.at
FROM seed s, (SELECT * FROM results LIMIT 1) r;
VACUUM ANALYZE;
SQL
echo "seeded: $(db_sql -c 'select count(*) from models') models, $(db_sql -c 'select count(*) from model_versions') versions, $(db_sql -c 'select count(*) from batches') batches"
page() {
  for i in 1 2 3 4 5; do curl -s -o /dev/null -w "%{time_total} " "$URL$1"; done; echo " s  $2"
}
page "/v1/models?limit=100" "model list, 100 a page"
page "/v1/models?limit=100&cursor=$(curl -s "$URL/v1/models?limit=100" | python3 -c 'import json,sys; print(json.load(sys.stdin)["next_cursor"])')" "model list, second page"
page / "dashboard index (500 models)"
page "/v1/models/m0500/versions?limit=100" "a model's versions, 100 a page"
page /models/m0500 "a model's page"
