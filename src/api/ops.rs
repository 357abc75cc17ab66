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

/// Prometheus metrics: HTTP requests by route template and status, latency histograms, jobs by
/// state, oldest queued job age, job durations by estimator, lease renewals lost, gate verdicts.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String, description = "Prometheus text exposition format 0.0.4"))
)]
pub async fn metrics(State(state): State<AppState>) -> Result<axum::response::Response> {
    use axum::response::IntoResponse;
    let by_state: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM jobs GROUP BY state")
            .fetch_all(&state.pool)
            .await?;
    let oldest: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM now() - min(run_at))::float8 FROM jobs WHERE state = 'queued' AND run_at <= now()",
    )
    .fetch_one(&state.pool)
    .await?;
    let open_incidents: i64 =
        sqlx::query_scalar("SELECT count(*) FROM incidents WHERE state = 'firing'")
            .fetch_one(&state.pool)
            .await?;
    let body = crate::metrics::render(&crate::metrics::QueueSnapshot {
        by_state,
        oldest_queued_seconds: oldest.unwrap_or(0.0).max(0.0),
        open_incidents,
    });
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}
