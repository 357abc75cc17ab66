-- Gate policies (versioned, immutable rows), stored decisions, and indexes for history queries.

CREATE TABLE gate_policies (
    model_id    uuid NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    name        text NOT NULL,
    version     integer NOT NULL,
    rules       jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_id, name, version)
);

CREATE TABLE gate_decisions (
    id              uuid PRIMARY KEY,
    model_id        uuid NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    version_id      uuid NOT NULL REFERENCES model_versions(id) ON DELETE CASCADE,
    policy_name     text,
    policy_version  integer,
    verdict         text NOT NULL CHECK (verdict IN ('pass', 'warn', 'fail', 'inconclusive', 'pending')),
    decision        jsonb NOT NULL,     -- the whole decision as returned (rules, baselines, digests)
    evaluated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gate_decisions_model ON gate_decisions (model_id, evaluated_at, id);

-- Alias moves, for history markers.
CREATE TABLE alias_events (
    id          bigserial PRIMARY KEY,
    model_id    uuid NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    alias       text NOT NULL,
    version_id  uuid REFERENCES model_versions(id) ON DELETE SET NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alias_events_model ON alias_events (model_id, at);

-- History: one metric of one model over time, covering the values read (index-only scans).
DROP INDEX results_model_estimator;
CREATE INDEX results_history ON results (model_id, estimator, computed_at, id)
    INCLUDE (version_id, batch_id, value, ci_low, ci_high);
