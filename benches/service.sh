# Sourced by the load scripts: start the release binary on a fresh embedded cluster and stop it
# (and remove its data) on exit.
#   start_service NAME [serve arguments...]   sets work, pid and URL (from PORT); waits for /readyz
#   db_sql [psql arguments...]                psql on the service's database
start_service() {
  local name=$1; shift
  URL="http://127.0.0.1:$PORT"
  work=$(mktemp -d "/tmp/infoaudit-$name.XXXXXX"); chmod 755 "$work"
  INFOAUDIT_ADDR=127.0.0.1:$PORT ./target/release/infoaudit serve "$@" --data-dir "$work/data" >"$work/log" 2>&1 &
  pid=$!
  trap 'kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
  for _ in $(seq 1 120); do curl -sf "$URL/readyz" >/dev/null && return; sleep 0.5; done
  echo "the service did not become ready; log: $work/log" >&2; return 1
}
db_sql() { psql "postgresql://postgres@localhost/infoaudit?host=$work/data/postgres" -qtA "$@"; }

# ROWS results of one metric of model `load` over a year, spread over 1000 older versions of the
# model (one batch each), as a long-lived model accumulates them; needs one batch of the model
# already stored (its row is copied).
#   seed_history ROWS
seed_history() {
  db_sql -v ON_ERROR_STOP=1 <<SQL
INSERT INTO model_versions (id, model_id, name)
SELECT gen_random_uuid(), m.id, 'old-' || i FROM models m, generate_series(0, 999) i WHERE m.name = 'load';
CREATE TEMP TABLE seed_batches AS
SELECT gen_random_uuid() AS id, v.model_id, v.id AS version_id, (row_number() OVER ()) - 1 AS k
FROM model_versions v WHERE v.name LIKE 'old-%';
INSERT INTO batches (id, model_id, version_id, task, n, digest, size_bytes, content_type, metadata)
SELECT s.id, s.model_id, s.version_id, b.task, b.n, b.digest, b.size_bytes, b.content_type, '{}'
FROM seed_batches s, (SELECT * FROM batches LIMIT 1) b;
INSERT INTO jobs (id, batch_id, estimator, estimator_version, params, params_hash, state)
SELECT gen_random_uuid(), s.id, 'shannon_mi', 'hist', '{}', 'h' || i, 'succeeded'
FROM generate_series(1, $1) i JOIN seed_batches s ON s.k = i % 1000;
INSERT INTO results (id, job_id, batch_id, model_id, version_id, estimator, estimator_version, params, value, ci_low, ci_high, n, details, computed_at)
SELECT gen_random_uuid(), j.id, j.batch_id, b.model_id, b.version_id, 'shannon_mi', 'hist', '{"h":1}',
       0.5 + random() * 0.1, 0.45, 0.65, 2000, '{}', now() - interval '1 year' + (row_number() OVER ()) * interval '30 seconds'
FROM jobs j JOIN batches b ON b.id = j.batch_id WHERE j.estimator_version = 'hist';
-- What autovacuum does in a service that has been running: clean pages, fresh statistics.
VACUUM ANALYZE results;
VACUUM ANALYZE result_rollups;
VACUUM ANALYZE jobs;
SQL
}
