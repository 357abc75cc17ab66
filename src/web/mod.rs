//! The built-in dashboard: server-rendered HTML pages with server-side SVG charts, served by the
//! same router as the API (so a middleware on the router, e.g. authentication, covers them too).
//! Nothing is read from disk at run time and no script runs in the browser.
//!
//! - `/` — models: versions, the newest version's headline metrics, last upload, last verdict.
//! - `/models/{model}?metric=` — history chart, versions with their metrics, gate decisions,
//!   policies, recent batches.
//! - `/batches/{id}` — the batch, its jobs, its results: confusion heat map, per-class bars,
//!   most misleading samples, the R(G) curve; labels sent later and what waits for them.
//! - `/incidents`, `/incidents/{id}` — monitors' incidents (firing first), one incident's rule
//!   messages and the deliveries of its messages.
//!
//! Information values are shown in bits.

mod batch;
mod chart;
pub mod data;
pub mod html;
mod incidents;
mod model;
mod segments;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use crate::api::state::AppState;
use html::{crumb, page, respond, E};

/// The dashboard's routes (not part of the OpenAPI document).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/models/{model}", get(model_page))
        .route("/batches/{id}", get(batch_page))
        .route("/incidents", get(incidents_page))
        .route("/incidents/{id}", get(incident_page))
}

/// What a page handler can fail with: rendered as an HTML page.
#[derive(Debug)]
pub enum WebError {
    NotFound(String),
    Internal(anyhow::Error),
}

impl From<sqlx::Error> for WebError {
    fn from(e: sqlx::Error) -> Self {
        WebError::Internal(e.into())
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::NotFound(what) => {
                let body = format!(
                    "<section class=\"empty\"><h1>Not found</h1><p>{}</p><p><a href=\"/\">All models</a></p></section>",
                    E(&what)
                );
                respond(
                    StatusCode::NOT_FOUND,
                    page("Not found", &[crumb("not found", None)], None, &body),
                )
            }
            WebError::Internal(e)
                if e.chain().any(|c| {
                    c.downcast_ref::<sqlx::Error>()
                        .is_some_and(crate::error::is_unavailable)
                }) =>
            {
                tracing::warn!(error = %format!("{e:#}"), "dashboard page: database unavailable");
                crate::metrics::database_unavailable_answer();
                let body = "<section class=\"empty\"><h1>Temporarily unavailable</h1>\
                    <p>The database cannot be reached at the moment; this page will work again \
                    once it is back. Try again in a few seconds.</p></section>";
                let mut resp = respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    page("Unavailable", &[crumb("unavailable", None)], None, body),
                );
                resp.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(crate::error::DATABASE_RETRY_AFTER),
                );
                resp
            }
            WebError::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "dashboard page failed");
                let body = "<section class=\"empty\"><h1>Something went wrong</h1>\
                    <p>The page could not be rendered; the error is in the service log.</p></section>";
                respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    page("Error", &[crumb("error", None)], None, body),
                )
            }
        }
    }
}

type WebResult = Result<Response, WebError>;

#[derive(Debug, Deserialize)]
pub struct IndexQuery {
    /// The page after this model name.
    pub after: Option<String>,
}

/// The models page: a key limited to some models sees only those.
async fn index(
    State(state): State<AppState>,
    principal: Option<axum::Extension<crate::auth::Principal>>,
    Query(q): Query<IndexQuery>,
) -> WebResult {
    let only = principal.and_then(|p| p.0.models);
    model::index(&state, only.as_deref(), q.after.as_deref()).await
}

#[derive(Debug, Deserialize)]
pub struct ModelQuery {
    pub metric: Option<String>,
}

async fn model_page(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ModelQuery>,
) -> WebResult {
    model::model(&state, &name, q.metric.as_deref()).await
}

/// Incidents: a key limited to some models sees only theirs.
async fn incidents_page(
    State(state): State<AppState>,
    principal: Option<axum::Extension<crate::auth::Principal>>,
) -> WebResult {
    let only = principal.and_then(|p| p.0.models);
    incidents::list(&state, only.as_deref()).await
}

async fn incident_page(State(state): State<AppState>, Path(id): Path<String>) -> WebResult {
    let Ok(uuid) = uuid::Uuid::parse_str(&id) else {
        return Err(WebError::NotFound(format!("There is no incident {id}.")));
    };
    incidents::one(&state, uuid).await
}

async fn batch_page(State(state): State<AppState>, Path(id): Path<String>) -> WebResult {
    let Ok(uuid) = uuid::Uuid::parse_str(&id) else {
        return Err(WebError::NotFound(format!("There is no batch {id}.")));
    };
    batch::batch(&state, uuid).await
}
