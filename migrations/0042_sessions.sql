-- Dashboard sessions: the login form's cookie carries a random session token, never the API key.
-- Only a sha256 digest of the token is stored; revoking the key ends its sessions.
CREATE TABLE sessions (
    token_hash text PRIMARY KEY,
    key_id uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);
