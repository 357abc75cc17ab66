-- infoaudit schema: models, versions, aliases, batches with their stored data, the job queue, results.

CREATE TABLE models (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE model_versions (
    id          uuid PRIMARY KEY,
    model_id    uuid NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (model_id, name)
);

CREATE TABLE aliases (
    model_id    uuid NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    alias       text NOT NULL,
    version_id  uuid NOT NULL REFERENCES model_versions(id) ON DELETE CASCADE,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_id, alias)
);

CREATE TABLE batches (
    id              uuid PRIMARY KEY,
    model_id        uuid NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    version_id      uuid NOT NULL REFERENCES model_versions(id) ON DELETE CASCADE,
    task            text NOT NULL CHECK (task IN ('multiclass', 'multilabel', 'pairs', 'regression')),
    n               bigint NOT NULL CHECK (n >= 2),
    classes         jsonb NOT NULL DEFAULT '[]',
    digest          text NOT NULL,           -- sha256 (hex) of the canonical stored data
    size_bytes      bigint NOT NULL,
    content_type    text NOT NULL,
    metadata        jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX batches_version_created ON batches (version_id, created_at, id);

-- The batch payload lives apart from its metadata so listing batches never touches it, in
-- chunks of a few MiB so no single bind or row is huge. EXTERNAL: stored out of line without
-- compression (numeric arrays barely compress).
CREATE TABLE batch_data (
    batch_id    uuid NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    seq         integer NOT NULL,
    body        bytea NOT NULL,
    PRIMARY KEY (batch_id, seq)
);
ALTER TABLE batch_data ALTER COLUMN body SET STORAGE EXTERNAL;

CREATE TABLE idempotency_keys (
    key             text PRIMARY KEY,
    request_hash    text NOT NULL,
    batch_id        uuid NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

CREATE TABLE jobs (
    id                  uuid PRIMARY KEY,
    batch_id            uuid NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    estimator           text NOT NULL,
    estimator_version   text NOT NULL,
    params              jsonb NOT NULL,
    params_hash         text NOT NULL,
    state               text NOT NULL DEFAULT 'queued'
                        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempts            integer NOT NULL DEFAULT 0,   -- claims so far
    max_attempts        integer NOT NULL DEFAULT 5,   -- transient failures allowed
    rescues             integer NOT NULL DEFAULT 0,   -- times the reaper took it back from a dead worker
    run_at              timestamptz NOT NULL DEFAULT now(),
    lease_owner         text,
    lease_token         uuid,
    lease_expires_at    timestamptz,
    cancel_requested_at timestamptz,
    progress            double precision NOT NULL DEFAULT 0,
    error               jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    UNIQUE (batch_id, estimator, estimator_version, params_hash)
);
CREATE INDEX jobs_queued ON jobs (run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_running_lease ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_state_created ON jobs (state, created_at, id);

CREATE TABLE results (
    id                  uuid PRIMARY KEY,
    job_id              uuid NOT NULL UNIQUE REFERENCES jobs(id) ON DELETE CASCADE,
    batch_id            uuid NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    model_id            uuid NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    version_id          uuid NOT NULL REFERENCES model_versions(id) ON DELETE CASCADE,
    estimator           text NOT NULL,
    estimator_version   text NOT NULL,
    params              jsonb NOT NULL,
    value               double precision NOT NULL,  -- nats, raw (may be -Infinity)
    ci_low              double precision,
    ci_high             double precision,
    ci_level            double precision,
    ci_method           text,
    n                   bigint NOT NULL,
    details             jsonb NOT NULL,
    sufficient          jsonb,
    computed_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX results_version_estimator ON results (version_id, estimator, computed_at);
CREATE INDEX results_model_estimator ON results (model_id, estimator, computed_at);
CREATE INDEX results_batch ON results (batch_id);
