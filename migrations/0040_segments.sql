-- Segments: per result, the estimator's value on each value of each segment key of its batch
-- (one row each, for `estimator{key=value}` metrics), and the per-key summary with the
-- decomposition of the information by segment (results.segments, nats, as the API shows it).

ALTER TABLE results ADD COLUMN segments jsonb;

CREATE TABLE result_segments (
    result_id   uuid NOT NULL REFERENCES results(id) ON DELETE CASCADE,
    key         text NOT NULL,
    value       text NOT NULL,
    n           bigint NOT NULL,
    share       float8 NOT NULL,                -- P(s): share of the samples (of the weight)
    estimate    float8 NOT NULL,                -- nats, raw (may be -Infinity)
    ci_low      float8,
    ci_high     float8,
    details     jsonb NOT NULL,
    sufficient  jsonb,
    diagnostics jsonb,
    PRIMARY KEY (result_id, key, value)
);

-- History and gates read one (key, value) series over a model's results.
CREATE INDEX result_segments_key_value ON result_segments (key, value, result_id);
