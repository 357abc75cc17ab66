//! API key management, and the dashboard's login form.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, Json};

use super::extract::StrictJson;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::state::AppState;
use crate::auth::{self, Scope};
use crate::domain::names::Name;
use crate::error::{Error, Problem, Result};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "ci-pipeline", "scopes": ["ingest", "gate"], "models": ["fraud"]}))]
pub struct NewKeyRequest {
    /// 1–200 characters, not all blank.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    pub name: String,
    /// `ingest`, `read`, `gate`, `admin` (admin implies the others).
    #[schema(min_items = 1)]
    pub scopes: Vec<Scope>,
    /// Limit the key to these models (default: every model).
    #[schema(value_type = Option<Vec<super::extract::NameString>>)]
    pub models: Option<Vec<String>>,
}

/// A key as listed: never the secret, only its prefix.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    /// The visible start of the key (`ia_<prefix>_…`).
    pub prefix: String,
    pub scopes: Vec<String>,
    pub models: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A newly created key: `key` is shown this once and cannot be recovered.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub info: ApiKey,
    pub key: String,
}

/// Create an API key (admin). The secret is in the response only.
#[utoipa::path(
    post,
    path = "/v1/api-keys",
    tag = "keys",
    request_body = NewKeyRequest,
    responses(
        (status = 201, body = CreatedKey),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_key(
    State(state): State<AppState>,
    principal: Option<axum::Extension<auth::Principal>>,
    StrictJson(req): StrictJson<NewKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKey>)> {
    if req.name.trim().is_empty() || req.name.chars().count() > 200 {
        return Err(Error::field("/name", "must be 1–200 characters"));
    }
    if req.name.chars().any(char::is_control) {
        return Err(Error::field(
            "/name",
            "must not contain control characters (U+0000–U+001F, U+007F–U+009F)",
        ));
    }
    if req.scopes.is_empty() {
        return Err(Error::field("/scopes", "at least one scope is required"));
    }
    if let Some(models) = &req.models {
        for (i, m) in models.iter().enumerate() {
            Name::parse(m).map_err(|e| Error::field(format!("/models/{i}"), e))?;
        }
    }
    // A key creates only keys within its own scopes and models: a key limited to some models
    // cannot mint a wider one.
    if let Some(axum::Extension(p)) = &principal {
        if let Some(s) = req.scopes.iter().find(|s| !p.allows(**s)) {
            return Err(Error::Forbidden(format!(
                "this key lacks the {} scope, so it cannot give it to a new key",
                s.as_str()
            )));
        }
        if let Some(own) = &p.models {
            match &req.models {
                None => {
                    return Err(Error::Forbidden(format!(
                        "this key is limited to models {own:?}: a new key must name its models (`models`), within those"
                    )))
                }
                Some(ms) => {
                    if let Some(m) = ms.iter().find(|m| !own.contains(m)) {
                        return Err(Error::Forbidden(format!(
                            "this key is not allowed to use model {m}, so it cannot give it to a new key"
                        )));
                    }
                }
            }
        }
    }
    let (id, k) =
        auth::create_key(&state.pool, &req.name, &req.scopes, req.models.as_deref()).await?;
    let info = get(&state, id).await?;
    Ok((StatusCode::CREATED, Json(CreatedKey { info, key: k.key })))
}

async fn get(state: &AppState, id: Uuid) -> Result<ApiKey> {
    sqlx::query_as("SELECT id, name, prefix, scopes, models, created_at, last_used_at FROM api_keys WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .fetch_optional(&state.pool)
        .await?
        .ok_or_else(|| Error::NotFound(format!("API key {id} not found")))
}

/// Active API keys (admin), newest first.
#[utoipa::path(
    get,
    path = "/v1/api-keys",
    tag = "keys",
    responses((status = 200, body = Vec<ApiKey>), (status = 401, body = Problem, content_type = "application/problem+json"))
)]
pub async fn list_keys(
    State(state): State<AppState>,
    principal: Option<axum::Extension<auth::Principal>>,
) -> Result<Json<Vec<ApiKey>>> {
    // A key limited to some models sees only the keys limited to models among its own.
    let only = principal.and_then(|p| p.0.models);
    let keys = sqlx::query_as(
        "SELECT id, name, prefix, scopes, models, created_at, last_used_at FROM api_keys
         WHERE revoked_at IS NULL
           AND ($1::text[] IS NULL OR (models IS NOT NULL AND models <@ $1))
         ORDER BY created_at DESC",
    )
    .bind(only)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(keys))
}

/// Revoke an API key (admin).
#[utoipa::path(
    delete,
    path = "/v1/api-keys/{id}",
    tag = "keys",
    params(("id" = Uuid, Path)),
    responses(
        (status = 204),
        (status = 403, description = "The key to revoke reaches models this key does not", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_key(
    State(state): State<AppState>,
    principal: Option<axum::Extension<auth::Principal>>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    let only = principal.and_then(|p| p.0.models);
    // One statement: the key is revoked only if it is within the caller's models.
    let row: Option<(bool,)> = sqlx::query_as(
        "WITH k AS (SELECT id, models FROM api_keys WHERE id = $1 AND revoked_at IS NULL),
              r AS (UPDATE api_keys SET revoked_at = now() WHERE id IN (
                        SELECT id FROM k WHERE $2::text[] IS NULL OR (models IS NOT NULL AND models <@ $2))
                    RETURNING id)
         SELECT EXISTS (SELECT 1 FROM r) FROM k",
    )
    .bind(id)
    .bind(only.as_deref())
    .fetch_optional(&state.pool)
    .await?;
    match row {
        None => Err(Error::NotFound(format!("API key {id} not found"))),
        Some((true,)) => Ok(StatusCode::NO_CONTENT),
        Some((false,)) => Err(Error::Forbidden(
            "this key is limited to some models and may not revoke a key that reaches others"
                .into(),
        )),
    }
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    pub next: Option<String>,
    pub error: Option<String>,
}

/// Where the login form may send a person back to: a path of this service, or `/`. Only a path
/// that starts with one `/` and holds nothing but the characters of a URL's path and query
/// (no whitespace or control characters, which browsers strip — `/<TAB>/example.com` resolves to
/// another site —, no `\\`), so never an open redirect and always a valid `Location`.
pub fn safe_next(next: Option<&str>) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~/?#[]@!$&'()*+,;=%:".contains(c);
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && n.len() <= 2048
                && n.chars().all(allowed) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The dashboard's login form.
pub async fn login_form(Query(q): Query<LoginQuery>) -> Html<String> {
    let next = escape(&safe_next(q.next.as_deref()));
    let error = if q.error.is_some() {
        "<p class=\"err\">That key is not valid.</p>"
    } else {
        ""
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>infoaudit · sign in</title>\
         <style>body{{font:16px system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem}}\
         input{{width:100%;padding:.5rem;font:inherit;margin:.5rem 0}}button{{padding:.5rem 1rem;font:inherit}}\
         .err{{color:#b00020}}</style></head><body><h1>infoaudit</h1>\
         <form method=\"post\" action=\"/login\"><label for=\"key\">API key</label>\
         <input id=\"key\" name=\"key\" type=\"password\" autocomplete=\"off\" required>\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">{error}<button type=\"submit\">Sign in</button></form>\
         <p>Keys are created with <code>infoaudit keys create</code> or <code>POST /v1/api-keys</code>.</p></body></html>"
    ))
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    pub key: String,
    pub next: Option<String>,
}

/// Whether the request reached the service over HTTPS (directly behind a proxy that says so, or
/// because the public URL is https): then the cookie is marked `Secure`.
fn over_https(state: &AppState, headers: &axum::http::HeaderMap) -> bool {
    state.limits.public_https
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn session_cookie(value: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{}",
        auth::COOKIE,
        if secure { "; Secure" } else { "" }
    )
}

/// Check the key and start a session: the cookie (HttpOnly, SameSite=Strict, `Secure` over
/// HTTPS) carries a random session token, never the key; revoking the key ends the session.
pub async fn login(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response> {
    let next = safe_next(f.next.as_deref());
    // A login form posted from another site would sign the browser in with the other site's key.
    if headers.contains_key(header::ORIGIN) && !auth::same_origin(&headers) {
        return Err(Error::Forbidden(
            "the login form must be posted from this service's own page".into(),
        ));
    }
    let Some(p) = auth::verify(&state.pool, f.key.trim()).await? else {
        return Ok(Redirect::to(&format!(
            "/login?error=1&next={}",
            auth::query_escape(&next)
        ))
        .into_response());
    };
    let token = auth::create_session(&state.pool, p.key_id).await?;
    let cookie = session_cookie(&token, auth::SESSION_SECONDS, over_https(&state, &headers));
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response())
}

/// End the session and forget the cookie.
pub async fn logout(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response> {
    if let Some(token) = auth::session_cookie(&headers) {
        auth::end_session(&state.pool, &token).await?;
    }
    let cookie = session_cookie("", 0, over_https(&state, &headers));
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response())
}
