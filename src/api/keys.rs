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
pub async fn list_keys(State(state): State<AppState>) -> Result<Json<Vec<ApiKey>>> {
    let keys = sqlx::query_as(
        "SELECT id, name, prefix, scopes, models, created_at, last_used_at FROM api_keys
         WHERE revoked_at IS NULL ORDER BY created_at DESC",
    )
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
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub async fn revoke_key(State(state): State<AppState>, Path(id): Path<Uuid>) -> Result<StatusCode> {
    let n =
        sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .execute(&state.pool)
            .await?
            .rows_affected();
    if n == 0 {
        return Err(Error::NotFound(format!("API key {id} not found")));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    pub next: Option<String>,
    pub error: Option<String>,
}

fn safe_next(next: Option<&str>) -> String {
    // Only local paths: never an open redirect.
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
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

/// Check the key and keep it in an HttpOnly, SameSite=Strict cookie.
pub async fn login(State(state): State<AppState>, Form(f): Form<LoginForm>) -> Result<Response> {
    let next = safe_next(f.next.as_deref());
    if auth::verify(&state.pool, f.key.trim()).await?.is_none() {
        return Ok(Redirect::to(&format!("/login?error=1&next={next}")).into_response());
    }
    let cookie = format!(
        "{}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200",
        auth::COOKIE,
        f.key.trim()
    );
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response())
}

/// Forget the key.
pub async fn logout() -> Response {
    let cookie = format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        auth::COOKIE
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}
