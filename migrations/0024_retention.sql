-- Retention per model: raw batch data dropped after data_days (results and their sufficient
-- statistics kept, so pooled values and history stay exact), results dropped after
-- results_days, and a minimum holding period that neither purges nor deletes shorten.
CREATE TABLE model_retention (
    model_id     uuid PRIMARY KEY REFERENCES models(id) ON DELETE CASCADE,
    data_days    integer CHECK (data_days >= 0),
    results_days integer CHECK (results_days >= 0),
    min_days     integer CHECK (min_days >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- When retention dropped a batch's raw data, or its results.
ALTER TABLE batches ADD COLUMN data_purged_at timestamptz;
ALTER TABLE batches ADD COLUMN results_purged_at timestamptz;

-- The purges walk a model's oldest rows in bounded chunks.
CREATE INDEX batches_model_created ON batches (model_id, created_at) WHERE data_purged_at IS NULL;
CREATE INDEX results_model_computed ON results (model_id, computed_at);
