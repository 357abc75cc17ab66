-- History rollups: per model, estimator, version and aligned time cell (1 minute, 1 hour, 1 day),
-- the count of results and the count, sum, min and max of their finite values. Maintained by
-- triggers on `results` (inserts add to the cell; deletes recompute the cell from the rows), so a
-- downsampled history over a million results reads a few thousand cells instead of every row.
CREATE TABLE result_rollups (
    model_id    uuid NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    estimator   text NOT NULL,
    version_id  uuid NOT NULL REFERENCES model_versions(id) ON DELETE CASCADE,
    unit_s      integer NOT NULL CHECK (unit_s IN (60, 3600, 86400)),
    cell        timestamptz NOT NULL,     -- date_bin(unit, computed_at, epoch)
    n           bigint NOT NULL,          -- results in the cell
    n_finite    bigint NOT NULL,          -- of which finite
    sum         double precision NOT NULL,-- sum of the finite values (nats)
    min         double precision,         -- of the finite values; NULL when none
    max         double precision,
    -- Covering: a history query is an index-only scan over the cells of its range.
    PRIMARY KEY (model_id, estimator, unit_s, cell, version_id) INCLUDE (n, n_finite, sum, min, max)
);

-- Bumped with every result added or removed: readers cache downsampled histories per generation.
ALTER TABLE models ADD COLUMN results_generation bigint NOT NULL DEFAULT 0;

-- Statement-level, over the transition tables: a bulk insert aggregates its rows per cell once.
CREATE FUNCTION results_rollup_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO result_rollups AS r
        (model_id, estimator, version_id, unit_s, cell, n, n_finite, sum, min, max)
    SELECT i.model_id, i.estimator, i.version_id, u,
           date_bin(make_interval(secs => u), i.computed_at, timestamptz '1970-01-01 00:00:00+00') AS c,
           count(*),
           count(*) FILTER (WHERE i.fin),
           coalesce(sum(i.value) FILTER (WHERE i.fin), 0),
           min(i.value) FILTER (WHERE i.fin),
           max(i.value) FILTER (WHERE i.fin)
    FROM (SELECT model_id, estimator, version_id, computed_at, value,
                 value > '-Infinity'::float8 AND value < 'Infinity'::float8 AS fin
          FROM inserted) i,
         unnest(ARRAY[60, 3600, 86400]) AS u
    GROUP BY i.model_id, i.estimator, i.version_id, u, c
    ON CONFLICT (model_id, estimator, unit_s, cell, version_id) DO UPDATE SET
        n = r.n + EXCLUDED.n,
        n_finite = r.n_finite + EXCLUDED.n_finite,
        sum = r.sum + EXCLUDED.sum,
        min = least(r.min, EXCLUDED.min),
        max = greatest(r.max, EXCLUDED.max);
    UPDATE models SET results_generation = results_generation + 1
    WHERE id IN (SELECT DISTINCT model_id FROM inserted);
    RETURN NULL;
END $$;

-- Deletes recompute each touched cell from the rows that are left.
CREATE FUNCTION results_rollup_remove() RETURNS trigger LANGUAGE plpgsql AS $$
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
        INSERT INTO result_rollups (model_id, estimator, version_id, unit_s, cell, n, n_finite, sum, min, max)
        SELECT k.model_id, k.estimator, k.version_id, k.u, k.c, count(*),
               count(*) FILTER (WHERE value > '-Infinity'::float8 AND value < 'Infinity'::float8),
               coalesce(sum(value) FILTER (WHERE value > '-Infinity'::float8 AND value < 'Infinity'::float8), 0),
               min(value) FILTER (WHERE value > '-Infinity'::float8 AND value < 'Infinity'::float8),
               max(value) FILTER (WHERE value > '-Infinity'::float8 AND value < 'Infinity'::float8)
        FROM results
        WHERE model_id = k.model_id AND estimator = k.estimator AND version_id = k.version_id
          AND computed_at >= k.c AND computed_at < k.c + make_interval(secs => k.u)
          AND EXISTS (SELECT 1 FROM model_versions WHERE id = k.version_id)
        HAVING count(*) > 0;
    END LOOP;
    UPDATE models SET results_generation = results_generation + 1
    WHERE id IN (SELECT DISTINCT model_id FROM deleted);
    RETURN NULL;
END $$;

CREATE TRIGGER results_rollup_add AFTER INSERT ON results
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION results_rollup_add();
CREATE TRIGGER results_rollup_remove AFTER DELETE ON results
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION results_rollup_remove();

-- Results stored before this migration.
INSERT INTO result_rollups (model_id, estimator, version_id, unit_s, cell, n, n_finite, sum, min, max)
SELECT model_id, estimator, version_id, u,
       date_bin(make_interval(secs => u), computed_at, timestamptz '1970-01-01 00:00:00+00') AS cell,
       count(*),
       count(*) FILTER (WHERE value > '-Infinity'::float8 AND value < 'Infinity'::float8),
       coalesce(sum(value) FILTER (WHERE value > '-Infinity'::float8 AND value < 'Infinity'::float8), 0),
       min(value) FILTER (WHERE value > '-Infinity'::float8 AND value < 'Infinity'::float8),
       max(value) FILTER (WHERE value > '-Infinity'::float8 AND value < 'Infinity'::float8)
FROM results, unnest(ARRAY[60, 3600, 86400]) AS u
GROUP BY model_id, estimator, version_id, u, cell;
