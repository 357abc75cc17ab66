-- API keys: only a short prefix and a sha256 digest of the whole key are stored.
CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    prefix      text NOT NULL UNIQUE,
    key_hash    text NOT NULL,
    scopes      text[] NOT NULL,
    models      text[],                 -- NULL: every model
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at  timestamptz
);
