-- Monitors: versioned definitions, their evaluation queue, incidents and the webhook outbox.

CREATE TABLE monitors (
    model_id    uuid NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    name        text NOT NULL,
    version     integer NOT NULL,
    spec        jsonb NOT NULL,             -- the definition as accepted (no secrets)
    secrets     jsonb NOT NULL,             -- {channel name: signing secret}
    deleted_at  timestamptz,                -- set on every version by DELETE
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_id, name, version)
);

-- One row per live monitor: what the triggers need in SQL, and the incident state.
CREATE TABLE monitor_state (
    model_id            uuid NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    name                text NOT NULL,
    target_kind         text NOT NULL CHECK (target_kind IN ('alias', 'version', 'latest')),
    target              text,
    on_result           boolean NOT NULL,
    on_alias_change     boolean NOT NULL,
    every_seconds       double precision,
    next_run_at         timestamptz,
    status              text NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'firing')),
    severity            text,
    incident_id         uuid,
    last_decision_id    uuid,
    last_verdict        text,
    last_evaluated_at   timestamptz,
    last_fired_message_at timestamptz,
    PRIMARY KEY (model_id, name)
);
CREATE INDEX monitor_state_due ON monitor_state (next_run_at) WHERE next_run_at IS NOT NULL;

-- Evaluations to run: the same lease and fencing pattern as jobs.
CREATE TABLE monitor_jobs (
    id                  uuid PRIMARY KEY,
    model_id            uuid NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    monitor             text NOT NULL,
    trigger             text NOT NULL CHECK (trigger IN ('on_result', 'on_alias_change', 'every', 'manual')),
    trigger_key         text NOT NULL,      -- the event: a batch, an alias move, a schedule slot
    version_id          uuid,               -- the version the event concerns (on_result)
    state               text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts            integer NOT NULL DEFAULT 0,
    run_at              timestamptz NOT NULL DEFAULT now(),
    lease_owner         text,
    lease_token         uuid,
    lease_expires_at    timestamptz,
    decision_id         uuid,
    error               text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz,
    UNIQUE (model_id, monitor, trigger_key)
);
CREATE INDEX monitor_jobs_due ON monitor_jobs (run_at, id) WHERE state = 'queued';
CREATE INDEX monitor_jobs_running ON monitor_jobs (lease_expires_at) WHERE state = 'running';

CREATE TABLE incidents (
    id                  uuid PRIMARY KEY,
    model_id            uuid NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    monitor             text NOT NULL,
    state               text NOT NULL CHECK (state IN ('firing', 'resolved')),
    severity            text NOT NULL,
    version             text,
    notified            boolean NOT NULL,   -- whether its opening was sent (else cooldown held it)
    opened_at           timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    resolved_at         timestamptz,
    first_decision_id   uuid NOT NULL,
    last_decision_id    uuid NOT NULL
);
CREATE INDEX incidents_model ON incidents (model_id, opened_at DESC, id DESC);
CREATE INDEX incidents_open ON incidents (model_id) WHERE state = 'firing';

ALTER TABLE gate_decisions ADD COLUMN monitor text;

-- The transactional outbox: written with the incident change; its id is the webhook-id.
CREATE TABLE webhook_deliveries (
    id                  uuid PRIMARY KEY,
    model_id            uuid NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    monitor             text NOT NULL,
    channel             text NOT NULL,
    kind                text NOT NULL CHECK (kind IN ('webhook', 'slack')),
    url                 text NOT NULL,
    secret              text NOT NULL,
    event               text NOT NULL,
    incident_id         uuid,
    decision_id         uuid,
    payload             jsonb NOT NULL,
    state               text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivering', 'delivered', 'dead')),
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    retry_from          timestamptz NOT NULL DEFAULT now(),   -- the 24 h of retries count from here
    lease_owner         text,
    lease_token         uuid,
    lease_expires_at    timestamptz,
    last_status         integer,
    last_error          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    delivered_at        timestamptz
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_leased ON webhook_deliveries (lease_expires_at) WHERE state = 'delivering';
CREATE INDEX webhook_deliveries_monitor ON webhook_deliveries (model_id, monitor, created_at DESC, id DESC);

CREATE TABLE webhook_attempts (
    delivery_id     uuid NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    n               integer NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    status          integer,
    latency_ms      double precision NOT NULL,
    error           text,
    PRIMARY KEY (delivery_id, n)
);
