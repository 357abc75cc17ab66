-- The dashboard's history chart from the rollup cells. A chart point is a (time bucket, version)
-- group: its first, last and mean time, the min, mean and max of the finite values, the mean of
-- the finite interval ends and the count of -Infinity results. The cells of 0006 kept the value
-- side only; they now keep the rest, so a point over whole cells is exact against the rows
-- (tests/api/rollups.rs compares them) and a model page over 10^6 results reads a few thousand
-- cells instead of every row.
ALTER TABLE result_rollups
    ADD COLUMN n_neg_inf bigint NOT NULL DEFAULT 0,          -- results that are -Infinity
    ADD COLUMN t_min     timestamptz,                        -- first and last computed_at
    ADD COLUMN t_max     timestamptz,
    ADD COLUMN t_sum     double precision NOT NULL DEFAULT 0, -- sum of (computed_at - cell), seconds
    ADD COLUMN lo_n      bigint NOT NULL DEFAULT 0,          -- finite ci_low: count and sum
    ADD COLUMN lo_sum    double precision NOT NULL DEFAULT 0,
    ADD COLUMN hi_n      bigint NOT NULL DEFAULT 0,          -- finite ci_high: count and sum
    ADD COLUMN hi_sum    double precision NOT NULL DEFAULT 0;

-- Covering again, with the new columns: both the history API and the chart are index-only scans.
ALTER TABLE result_rollups DROP CONSTRAINT result_rollups_pkey;
ALTER TABLE result_rollups ADD PRIMARY KEY (model_id, estimator, unit_s, cell, version_id)
    INCLUDE (n, n_finite, sum, min, max, n_neg_inf, t_min, t_max, t_sum, lo_n, lo_sum, hi_n, hi_sum);

-- One cell's aggregate over a set of result rows (the insert trigger's new rows, the rows left in
-- a cell after a delete, every row at migration).
CREATE FUNCTION rollup_finite(x double precision) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN x > '-Infinity'::float8 AND x < 'Infinity'::float8 THEN x END;

CREATE OR REPLACE FUNCTION results_rollup_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO result_rollups AS r
        (model_id, estimator, version_id, unit_s, cell, n, n_finite, sum, min, max,
         n_neg_inf, t_min, t_max, t_sum, lo_n, lo_sum, hi_n, hi_sum)
    SELECT i.model_id, i.estimator, i.version_id, u, c,
           count(*), count(i.v), coalesce(sum(i.v), 0), min(i.v), max(i.v),
           count(*) FILTER (WHERE i.value = '-Infinity'::float8),
           min(i.computed_at), max(i.computed_at),
           sum(date_part('epoch', i.computed_at - c)),
           count(i.lo), coalesce(sum(i.lo), 0), count(i.hi), coalesce(sum(i.hi), 0)
    FROM (SELECT model_id, estimator, version_id, computed_at, value,
                 rollup_finite(value) AS v, rollup_finite(ci_low) AS lo, rollup_finite(ci_high) AS hi
          FROM inserted) i,
         unnest(ARRAY[60, 3600, 86400]) AS u,
         LATERAL (SELECT date_bin(make_interval(secs => u), i.computed_at,
                                  timestamptz '1970-01-01 00:00:00+00') AS c) b
    GROUP BY i.model_id, i.estimator, i.version_id, u, c
    ON CONFLICT (model_id, estimator, unit_s, cell, version_id) DO UPDATE SET
        n = r.n + EXCLUDED.n,
        n_finite = r.n_finite + EXCLUDED.n_finite,
        sum = r.sum + EXCLUDED.sum,
        min = least(r.min, EXCLUDED.min),
        max = greatest(r.max, EXCLUDED.max),
        n_neg_inf = r.n_neg_inf + EXCLUDED.n_neg_inf,
        t_min = least(r.t_min, EXCLUDED.t_min),
        t_max = greatest(r.t_max, EXCLUDED.t_max),
        t_sum = r.t_sum + EXCLUDED.t_sum,
        lo_n = r.lo_n + EXCLUDED.lo_n,
        lo_sum = r.lo_sum + EXCLUDED.lo_sum,
        hi_n = r.hi_n + EXCLUDED.hi_n,
        hi_sum = r.hi_sum + EXCLUDED.hi_sum;
    UPDATE models SET results_generation = results_generation + 1
    WHERE id IN (SELECT DISTINCT model_id FROM inserted);
    RETURN NULL;
END $$;

-- Deletes recompute each touched cell from the rows that are left.
CREATE OR REPLACE FUNCTION results_rollup_remove() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    k record;
BEGIN
    FOR k IN
        SELECT DISTINCT d.model_id, d.estimator, d.version_id, u,
               date_bin(make_interval(secs => u), d.computed_at, timestamptz '1970-01-01 00:00:00+00') AS c
        FROM deleted d, unnest(ARRAY[60, 3600, 86400]) AS u
    LOOP
        DELETE FROM result_rollups
        WHERE model_id = k.model_id AND estimator = k.estimator AND unit_s = k.u
          AND cell = k.c AND version_id = k.version_id;
        INSERT INTO result_rollups
            (model_id, estimator, version_id, unit_s, cell, n, n_finite, sum, min, max,
             n_neg_inf, t_min, t_max, t_sum, lo_n, lo_sum, hi_n, hi_sum)
        SELECT k.model_id, k.estimator, k.version_id, k.u, k.c,
               count(*), count(i.v), coalesce(sum(i.v), 0), min(i.v), max(i.v),
               count(*) FILTER (WHERE i.value = '-Infinity'::float8),
               min(i.computed_at), max(i.computed_at),
               sum(date_part('epoch', i.computed_at - k.c)),
               count(i.lo), coalesce(sum(i.lo), 0), count(i.hi), coalesce(sum(i.hi), 0)
        FROM (SELECT computed_at, value, rollup_finite(value) AS v,
                     rollup_finite(ci_low) AS lo, rollup_finite(ci_high) AS hi
              FROM results
              WHERE model_id = k.model_id AND estimator = k.estimator AND version_id = k.version_id
                AND computed_at >= k.c AND computed_at < k.c + make_interval(secs => k.u)
                AND EXISTS (SELECT 1 FROM model_versions WHERE id = k.version_id)) i
        HAVING count(*) > 0;
    END LOOP;
    UPDATE models SET results_generation = results_generation + 1
    WHERE id IN (SELECT DISTINCT model_id FROM deleted);
    RETURN NULL;
END $$;

-- Every cell again, from the rows stored before this migration.
DELETE FROM result_rollups;
INSERT INTO result_rollups
    (model_id, estimator, version_id, unit_s, cell, n, n_finite, sum, min, max,
     n_neg_inf, t_min, t_max, t_sum, lo_n, lo_sum, hi_n, hi_sum)
SELECT i.model_id, i.estimator, i.version_id, u, c,
       count(*), count(i.v), coalesce(sum(i.v), 0), min(i.v), max(i.v),
       count(*) FILTER (WHERE i.value = '-Infinity'::float8),
       min(i.computed_at), max(i.computed_at),
       sum(date_part('epoch', i.computed_at - c)),
       count(i.lo), coalesce(sum(i.lo), 0), count(i.hi), coalesce(sum(i.hi), 0)
FROM (SELECT model_id, estimator, version_id, computed_at, value,
             rollup_finite(value) AS v, rollup_finite(ci_low) AS lo, rollup_finite(ci_high) AS hi
      FROM results) i,
     unnest(ARRAY[60, 3600, 86400]) AS u,
     LATERAL (SELECT date_bin(make_interval(secs => u), i.computed_at,
                              timestamptz '1970-01-01 00:00:00+00') AS c) b
GROUP BY i.model_id, i.estimator, i.version_id, u, c;

-- The model page's segment section asks for the two versions with the newest segmented results:
-- segmented results are found without reading every result of the model.
CREATE INDEX results_segmented ON results (model_id, computed_at) INCLUDE (version_id)
    WHERE segments IS NOT NULL;
