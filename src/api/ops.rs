//! Liveness and readiness.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::error::{Error, Problem, Result};

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The process is up (checks nothing else).
#[utoipa::path(get, path = "/livez", tag = "operations", responses((status = 200, body = Health)))]
pub async fn livez() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Ready for traffic: the database answers, every migration is applied, and the service is not
/// shutting down.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, body = Health),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<(StatusCode, Json<Health>)> {
    if state.draining.load(Ordering::Relaxed) {
        return Err(Error::Unavailable("shutting down".into()));
    }
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&state.pool)
        .await
        .map_err(|e| Error::Unavailable(format!("database unreachable: {e}")))?;
    let expected = crate::db::MIGRATOR.iter().count() as i64;
    if applied < expected {
        return Err(Error::Unavailable(format!(
            "{applied} of {expected} migrations applied"
        )));
    }
    Ok((StatusCode::OK, Json(Health { status: "ok" })))
}
