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
    PRIMARY KEY (model_id, estimator, unit_s, cell, version_id)
);

CREATE FUNCTION results_rollup_add() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    u integer;
    fin boolean := NEW.value > '-Infinity'::float8 AND NEW.value < 'Infinity'::float8;
BEGIN
    FOREACH u IN ARRAY ARRAY[60, 3600, 86400] LOOP
        INSERT INTO result_rollups AS r
            (model_id, estimator, version_id, unit_s, cell, n, n_finite, sum, min, max)
        VALUES (NEW.model_id, NEW.estimator, NEW.version_id, u,
                date_bin(make_interval(secs => u), NEW.computed_at, timestamptz '1970-01-01 00:00:00+00'),
                1, CASE WHEN fin THEN 1 ELSE 0 END, CASE WHEN fin THEN NEW.value ELSE 0 END,
                CASE WHEN fin THEN NEW.value END, CASE WHEN fin THEN NEW.value END)
        ON CONFLICT (model_id, estimator, unit_s, cell, version_id) DO UPDATE SET
            n = r.n + 1,
            n_finite = r.n_finite + EXCLUDED.n_finite,
            sum = r.sum + EXCLUDED.sum,
            min = least(r.min, EXCLUDED.min),
            max = greatest(r.max, EXCLUDED.max);
    END LOOP;
    RETURN NULL;
END $$;

CREATE FUNCTION results_rollup_remove() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    u integer;
    c timestamptz;
BEGIN
    FOREACH u IN ARRAY ARRAY[60, 3600, 86400] LOOP
        c := date_bin(make_interval(secs => u), OLD.computed_at, timestamptz '1970-01-01 00:00:00+00');
        DELETE FROM result_rollups
        WHERE model_id = OLD.model_id AND estimator = OLD.estimator AND unit_s = u
          AND cell = c AND version_id = OLD.version_id;
        INSERT INTO result_rollups (model_id, estimator, version_id, unit_s, cell, n, n_finite, sum, min, max)
        SELECT OLD.model_id, OLD.estimator, OLD.version_id, u, c, count(*),
               count(*) FILTER (WHERE value > '-Infinity'::float8 AND value < 'Infinity'::float8),
               coalesce(sum(value) FILTER (WHERE value > '-Infinity'::float8 AND value < 'Infinity'::float8), 0),
               min(value) FILTER (WHERE value > '-Infinity'::float8 AND value < 'Infinity'::float8),
               max(value) FILTER (WHERE value > '-Infinity'::float8 AND value < 'Infinity'::float8)
        FROM results
        WHERE model_id = OLD.model_id AND estimator = OLD.estimator AND version_id = OLD.version_id
          AND computed_at >= c AND computed_at < c + make_interval(secs => u)
        HAVING count(*) > 0;
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER results_rollup_add AFTER INSERT ON results
    FOR EACH ROW EXECUTE FUNCTION results_rollup_add();
CREATE TRIGGER results_rollup_remove AFTER DELETE ON results
    FOR EACH ROW EXECUTE FUNCTION results_rollup_remove();

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
