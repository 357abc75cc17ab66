//! API keys with scopes and optional model restriction.
//!
//! A key looks like `ia_<prefix>_<secret>`; only the prefix and a sha256 digest of the whole key
//! are stored, and digests are compared in constant time. Keys carry scopes (`ingest`, `read`,
//! `gate`, `admin`; `admin` implies the others) and may be limited to a list of models, which is
//! enforced on every route that names a model directly or through a batch, job or decision id.
//!
//! Authentication is required when the service runs with `--require-auth` or as soon as any key
//! exists; with neither (the local default) every call is allowed. Health, metrics, the API
//! document and the login page never need a key. A missing or invalid key gives 401, a valid key
//! lacking the scope or the model 403.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Method, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::state::AppState;
use crate::error::Error;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Upload batches, add and cancel jobs.
    Ingest,
    /// Read everything.
    Read,
    /// Evaluate gates.
    Gate,
    /// Everything, including keys, policies, aliases and deletes.
    Admin,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        Some(match s {
            "ingest" => Scope::Ingest,
            "read" => Scope::Read,
            "gate" => Scope::Gate,
            "admin" => Scope::Admin,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Gate => "gate",
            Scope::Admin => "admin",
        }
    }
}

/// The caller, as established by its key.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: Uuid,
    pub scopes: Vec<Scope>,
    /// `None`: every model.
    pub models: Option<Vec<String>>,
}

impl Principal {
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }
    pub fn allows_model(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x == model))
    }
}

/// A new key: the secret (shown once) and what is stored.
pub struct NewKey {
    pub key: String,
    pub prefix: String,
    pub hash: String,
}

pub fn generate() -> NewKey {
    let prefix = Uuid::new_v4().simple().to_string()[..12].to_string();
    let secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let key = format!("ia_{prefix}_{secret}");
    let hash = digest(&key);
    NewKey { key, prefix, hash }
}

fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Whether a presented key matches a stored digest (hashed, then compared in constant time).
fn key_matches(stored: &str, presented: &str) -> bool {
    ct_eq(digest(presented).as_bytes(), stored.as_bytes())
}

/// Constant-time equality of two byte strings of equal length.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Create a key (returns its id and the secret, shown once).
pub async fn create_key(
    pool: &PgPool,
    name: &str,
    scopes: &[Scope],
    models: Option<&[String]>,
) -> sqlx::Result<(Uuid, NewKey)> {
    let k = generate();
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO api_keys (id, name, prefix, key_hash, scopes, models) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(id)
        .bind(name)
        .bind(&k.prefix)
        .bind(&k.hash)
        .bind(scopes.iter().map(|s| s.as_str().to_string()).collect::<Vec<_>>())
        .bind(models.map(|m| m.to_vec()))
        .execute(pool)
        .await?;
    Ok((id, k))
}

/// How long a dashboard session lasts.
pub const SESSION_SECONDS: i64 = 12 * 3600;

/// Start a dashboard session for a key: a random token (returned, for the cookie) whose digest
/// is stored with the key's id. Expired sessions are removed on the way.
pub async fn create_session(pool: &PgPool, key_id: Uuid) -> sqlx::Result<String> {
    let token = format!("s_{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    sqlx::query("DELETE FROM sessions WHERE expires_at < now()")
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO sessions (token_hash, key_id, expires_at)
         VALUES ($1, $2, now() + make_interval(secs => $3))",
    )
    .bind(digest(&token))
    .bind(key_id)
    .bind(SESSION_SECONDS as f64)
    .execute(pool)
    .await?;
    Ok(token)
}

/// End a dashboard session.
pub async fn end_session(pool: &PgPool, token: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(digest(token))
        .execute(pool)
        .await?;
    Ok(())
}

/// The principal of a live session (its key not revoked); `None` otherwise.
pub async fn verify_session(pool: &PgPool, token: &str) -> sqlx::Result<Option<Principal>> {
    if !token.starts_with("s_") {
        return Ok(None);
    }
    type Row = (Uuid, Vec<String>, Option<Vec<String>>);
    // The token's digest is the lookup key: an equality on a digest reveals nothing of the token.
    let row: Option<Row> = sqlx::query_as(
        "SELECT k.id, k.scopes, k.models FROM sessions s JOIN api_keys k ON k.id = s.key_id
         WHERE s.token_hash = $1 AND s.expires_at > now() AND k.revoked_at IS NULL",
    )
    .bind(digest(token))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(id, scopes, models)| Principal {
        key_id: id,
        scopes: scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
        models,
    }))
}

/// Check a presented key; `None` when it is unknown, malformed or revoked.
pub async fn verify(pool: &PgPool, key: &str) -> sqlx::Result<Option<Principal>> {
    let Some(prefix) = key.strip_prefix("ia_").and_then(|r| r.split('_').next()) else {
        return Ok(None);
    };
    type KeyRow = (Uuid, String, Vec<String>, Option<Vec<String>>);
    let row: Option<KeyRow> = sqlx::query_as(
        "SELECT id, key_hash, scopes, models FROM api_keys WHERE prefix = $1 AND revoked_at IS NULL",
    )
    .bind(prefix)
    .fetch_optional(pool)
    .await?;
    // Hash even when the prefix is unknown, so timing does not tell the two apart.
    let Some((id, stored, scopes, models)) = row else {
        let _ = key_matches(&digest(key), key);
        return Ok(None);
    };
    if !key_matches(&stored, key) {
        return Ok(None);
    }
    Ok(Some(Principal {
        key_id: id,
        scopes: scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
        models,
    }))
}

/// The cookie the dashboard's login form sets: a session token, never the key.
pub const COOKIE: &str = "infoaudit_session";

/// What a request presents: an API key (`Authorization`), or a dashboard session (the cookie).
enum Credential {
    Key(String),
    Session(String),
}

fn presented(req: &Request<Body>) -> Option<Credential> {
    if let Some(v) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return Some(Credential::Key(
            v.strip_prefix("Bearer ").unwrap_or(v).trim().to_string(),
        ));
    }
    session_cookie(req.headers()).map(Credential::Session)
}

/// The session token of the dashboard's cookie, if any.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

async fn principal_of(pool: &PgPool, c: &Credential) -> sqlx::Result<Option<Principal>> {
    match c {
        Credential::Key(k) => verify(pool, k).await,
        Credential::Session(t) => verify_session(pool, t).await,
    }
}

/// Whether a request comes from this service's own pages: its `Origin` (or, without one, its
/// `Referer`) names the host the request was sent to, or the browser says `Sec-Fetch-Site:
/// same-origin`. A cross-site form posting to the service carries the other site's origin.
pub fn same_origin(headers: &axum::http::HeaderMap) -> bool {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let Some(host) = get("host") else {
        return false;
    };
    let authority = |url: &str| -> Option<String> {
        let rest = url.split_once("://")?.1;
        Some(rest.split(['/', '?', '#']).next()?.to_ascii_lowercase())
    };
    if let Some(origin) = get("origin") {
        return origin != "null"
            && authority(origin).as_deref() == Some(&host.to_ascii_lowercase());
    }
    if let Some(site) = get("sec-fetch-site") {
        return site == "same-origin";
    }
    match get("referer") {
        Some(r) => authority(r).as_deref() == Some(&host.to_ascii_lowercase()),
        None => false,
    }
}

/// Which scope a request needs, or `None` for public routes.
fn required_scope(method: &Method, path: &str) -> Option<Scope> {
    let public = [
        "/livez",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/login",
        "/logout",
    ];
    if public.contains(&path) || path.starts_with("/docs") || path.starts_with("/static/") {
        return None;
    }
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    Some(match (method, seg.as_slice()) {
        (_, ["v1", "api-keys", ..]) => Scope::Admin,
        (&Method::POST, ["v1", "models", _, "versions", _, "batches"]) => Scope::Ingest,
        (&Method::POST, ["v1", "batches", _, "jobs"]) => Scope::Ingest,
        (&Method::POST, ["v1", "batches", _, "release"]) => Scope::Ingest,
        (&Method::POST, ["v1", "models", _, "labels"]) => Scope::Ingest,
        (&Method::POST, ["v1", "jobs", _, "cancel"]) => Scope::Ingest,
        (&Method::POST, ["v1", "models", _, "versions", _, "gate"]) => Scope::Gate,
        (&Method::GET | &Method::HEAD, _) => Scope::Read,
        _ => Scope::Admin,
    })
}

/// The model a request concerns, when it names one (directly or through an id).
async fn model_of(pool: &PgPool, path: &str) -> sqlx::Result<Option<Option<String>>> {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let by_id = |sql: &'static str, id: &str| {
        let id = Uuid::parse_str(id).ok();
        async move {
            match id {
                Some(id) => {
                    sqlx::query_scalar::<_, String>(sql)
                        .bind(id)
                        .fetch_optional(pool)
                        .await
                }
                None => Ok(None),
            }
        }
    };
    Ok(match seg.as_slice() {
        ["v1", "models", m, ..] | ["models", m, ..] => Some(Some(m.to_string())),
        ["v1", "batches", id, ..] | ["batches", id, ..] => Some(
            by_id("SELECT m.name FROM batches b JOIN models m ON m.id = b.model_id WHERE b.id = $1", id).await?,
        ),
        ["v1", "jobs", id, ..] => Some(
            by_id(
                "SELECT m.name FROM jobs j JOIN batches b ON b.id = j.batch_id JOIN models m ON m.id = b.model_id WHERE j.id = $1",
                id,
            )
            .await?,
        ),
        ["incidents", id] => Some(
            by_id("SELECT m.name FROM incidents i JOIN models m ON m.id = i.model_id WHERE i.id = $1", id).await?,
        ),
        ["v1", "gate-decisions", id] => Some(
            by_id("SELECT m.name FROM gate_decisions d JOIN models m ON m.id = d.model_id WHERE d.id = $1", id).await?,
        ),
        _ => None,
    })
}

/// Whether any key exists (then keys are required even without `--require-auth`).
pub async fn any_key(pool: &PgPool) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL)")
        .fetch_one(pool)
        .await
}

/// Percent-encode a query value (everything but unreserved characters and `/`).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The authentication and authorisation middleware.
pub async fn middleware(
    State(state): State<AppState>,
    mut req: Request<Body>,
    next: Next,
) -> Response {
    match authorise(&state, &mut req).await {
        Ok(()) => next.run(req).await,
        Err(e) => {
            let html = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("text/html"));
            if html && matches!(e, Error::Unauthorized(_)) && !req.uri().path().starts_with("/v1/")
            {
                // A person at the dashboard: send them to the login form.
                return axum::response::Redirect::to(&format!(
                    "/login?next={}",
                    query_escape(req.uri().path())
                ))
                .into_response();
            }
            e.into_response()
        }
    }
}

async fn authorise(state: &AppState, req: &mut Request<Body>) -> Result<(), Error> {
    let path = req.uri().path().to_string();
    let Some(scope) = required_scope(req.method(), &path) else {
        // Public routes need no key, but a valid one is still known to them (`/metrics` shows
        // a key the information series of its models).
        if let Some(c) = presented(req) {
            if let Some(p) = principal_of(&state.pool, &c).await? {
                req.extensions_mut().insert(p);
            }
        }
        return Ok(());
    };
    let credential = presented(req);
    // A cookie is sent by the browser whatever page caused the request: a write authorised by
    // it alone must come from this service's own pages (CSRF).
    if matches!(credential, Some(Credential::Session(_)))
        && !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && !same_origin(req.headers())
    {
        return Err(Error::Forbidden(
            "a request authorised by the dashboard's cookie must come from the dashboard (its Origin is another site, or absent); send the key as Authorization: Bearer <key>".into(),
        ));
    }
    let principal = match &credential {
        Some(c) => Some(principal_of(&state.pool, c).await?.ok_or_else(|| {
            Error::Unauthorized(match c {
                Credential::Key(_) => "the API key is invalid or revoked".into(),
                Credential::Session(_) => {
                    "the dashboard session has ended; sign in again at /login".into()
                }
            })
        })?),
        None => None,
    };
    let Some(p) = principal else {
        if state.require_auth || any_key(&state.pool).await? {
            return Err(Error::Unauthorized(
                "an API key is required: send Authorization: Bearer <key>".into(),
            ));
        }
        return Ok(());
    };
    if !p.allows(scope) {
        return Err(Error::Forbidden(format!(
            "this key lacks the {} scope",
            scope.as_str()
        )));
    }
    if p.models.is_some() {
        match model_of(&state.pool, &path).await? {
            Some(Some(m)) if !p.allows_model(&m) => {
                return Err(Error::Forbidden(format!(
                    "this key is not allowed to use model {m}"
                )));
            }
            // An unknown id: let the handler answer 404.
            Some(_) => {}
            // Routes spanning every model: a restricted key sees only its models (handlers filter
            // by the principal), and needs `?model=` where the handler cannot filter.
            None => {}
        }
    }
    sqlx::query("UPDATE api_keys SET last_used_at = now() WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')")
        .bind(p.key_id)
        .execute(&state.pool)
        .await?;
    req.extensions_mut().insert(p);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored form verifies the key, refuses every one-character change of it (each
    /// position, each alphabet neighbour), and reveals no part of the secret: no 6-character
    /// piece of the secret occurs in it, and it is a fixed-length digest (sha256 hex) whatever
    /// the key.
    #[test]
    fn stored_digests_verify_only_the_key_and_hide_the_secret() {
        let a = generate();
        let b = generate();
        assert_ne!(a.key, b.key);
        assert!(a.key.starts_with(&format!("ia_{}_", a.prefix)));
        assert!(key_matches(&a.hash, &a.key));
        assert!(!key_matches(&a.hash, &b.key));
        assert!(!key_matches(&b.hash, &a.key));
        let bytes = a.key.as_bytes();
        for i in 0..bytes.len() {
            for delta in [1u8, 2] {
                let mut k = bytes.to_vec();
                k[i] = if k[i].is_ascii_alphanumeric() && k[i] != b'z' && k[i] != b'9' {
                    k[i] + delta
                } else {
                    b'a'
                };
                let changed = String::from_utf8(k).unwrap();
                if changed != a.key {
                    assert!(!key_matches(&a.hash, &changed), "position {i}");
                }
            }
        }
        assert!(!key_matches(&a.hash, &a.key[..a.key.len() - 1]));
        let secret = &a.key["ia_".len() + a.prefix.len() + 1..];
        assert!(secret.len() >= 64);
        for w in secret.as_bytes().windows(6) {
            let piece = std::str::from_utf8(w).unwrap();
            assert!(!a.hash.contains(piece), "the digest contains {piece}");
        }
        assert_eq!(a.hash.len(), 64);
        assert!(a.hash.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn constant_time_comparison_is_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn routes_map_to_scopes() {
        let s = |m: &Method, p: &str| required_scope(m, p);
        assert_eq!(s(&Method::GET, "/livez"), None);
        assert_eq!(s(&Method::GET, "/docs/index.html"), None);
        assert_eq!(
            s(&Method::POST, "/v1/models/a/versions/b/batches"),
            Some(Scope::Ingest)
        );
        assert_eq!(
            s(&Method::POST, "/v1/models/a/versions/b/gate"),
            Some(Scope::Gate)
        );
        assert_eq!(s(&Method::GET, "/v1/models/a"), Some(Scope::Read));
        assert_eq!(s(&Method::PUT, "/v1/models/a/gates/g"), Some(Scope::Admin));
        assert_eq!(s(&Method::DELETE, "/v1/batches/x"), Some(Scope::Admin));
        assert_eq!(s(&Method::GET, "/v1/api-keys"), Some(Scope::Admin));
        assert_eq!(s(&Method::GET, "/models/a"), Some(Scope::Read));
    }
}
