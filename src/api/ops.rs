//! Liveness and readiness.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::state::AppState;
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

/// How long `/readyz` waits for the database.
pub const READY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// Ready for traffic: the database answers within 2 s, every migration is applied, and the service is not
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
    // A probe answers promptly: a database that does not answer within READY_DEADLINE is down
    // for the probe's purpose (a request would wait up to `db::ACQUIRE_TIMEOUT`).
    let applied: i64 = match tokio::time::timeout(
        READY_DEADLINE,
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(&state.pool),
    )
    .await
    {
        Ok(r) => r.map_err(|e| Error::Unavailable(format!("database unreachable: {e}")))?,
        Err(_) => {
            return Err(Error::Unavailable(format!(
                "the database did not answer within {} s",
                READY_DEADLINE.as_secs()
            )))
        }
    };
    let expected = crate::db::MIGRATOR.iter().count() as i64;
    if applied < expected {
        return Err(Error::Unavailable(format!(
            "{applied} of {expected} migrations applied"
        )));
    }
    Ok((StatusCode::OK, Json(Health { status: "ok" })))
}

/// Prometheus metrics (text exposition format 0.0.4).
///
/// HTTP requests by route template and status, latency histograms, jobs by state, oldest queued
/// job age, job durations by estimator, lease renewals lost, gate verdicts, monitors, webhooks,
/// and the information itself: `infoaudit_information_value`, `_ci_low`, `_ci_high` and
/// `_result_timestamp_seconds` (labels `model`, `version`, `metric`, `unit`) hold the latest
/// result of each metric a stored gate policy or a live monitor uses, for the versions they judge
/// (a policy: the model's newest version and every aliased version; a monitor: its target),
/// in bits (or a unitless ratio); `infoaudit_model_alias_info{model, alias, version}` names the
/// aliases of those versions. At most `--metrics-max-information-series` series
/// (`infoaudit_information_series_dropped` counts the rest); read at most once per
/// `--metrics-cache-seconds`. When the database cannot be read the process's own metrics still
/// answer 200, without the queue and information gauges, and `infoaudit_information_export_up`
/// is 0.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String, description = "Prometheus text exposition format 0.0.4"))
)]
pub async fn metrics(
    State(state): State<AppState>,
    principal: Option<axum::Extension<crate::auth::Principal>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let queue = queue_snapshot(&state.pool).await;
    let information = match &queue {
        Ok(_) => information(&state).await,
        Err(e) => Err(anyhow::anyhow!("{e}")),
    };
    // While keys are required, model names and values are shown only to a key, for its models
    // (unless the operator chose `--metrics-public-information`).
    let information = match information {
        Ok(snap) if !state.limits.metrics_public_information => {
            let keyed =
                state.require_auth || crate::auth::any_key(&state.pool).await.unwrap_or(true);
            match (keyed, principal) {
                (false, _) => Ok(snap),
                (true, None) => Ok(std::sync::Arc::new(snap.withheld())),
                (true, Some(p)) if !p.allows(crate::auth::Scope::Read) => {
                    Ok(std::sync::Arc::new(snap.withheld()))
                }
                (true, Some(p)) => match &p.models {
                    None => Ok(snap),
                    Some(only) => Ok(std::sync::Arc::new(snap.only(only))),
                },
            }
        }
        other => other,
    };
    if let Err(e) = &information {
        tracing::warn!(error = %e, "metrics: the database could not be read; its gauges are left out");
    }
    let body = crate::metrics::render(queue.ok().as_ref(), information.ok().as_deref());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn queue_snapshot(pool: &sqlx::PgPool) -> sqlx::Result<crate::metrics::QueueSnapshot> {
    let by_state: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM jobs GROUP BY state")
            .fetch_all(pool)
            .await?;
    let oldest: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM now() - min(run_at))::float8 FROM jobs WHERE state = 'queued' AND run_at <= now()",
    )
    .fetch_one(pool)
    .await?;
    let open_incidents: i64 =
        sqlx::query_scalar("SELECT count(*) FROM incidents WHERE state = 'firing'")
            .fetch_one(pool)
            .await?;
    Ok(crate::metrics::QueueSnapshot {
        by_state,
        oldest_queued_seconds: oldest.unwrap_or(0.0).max(0.0),
        open_incidents,
    })
}

/// The information series, read at most once per `metrics_cache` (concurrent scrapes wait for
/// one read); a failed read is not kept.
async fn information(
    state: &AppState,
) -> anyhow::Result<std::sync::Arc<crate::metrics::InformationSnapshot>> {
    let mut cached = state.caches.information.lock().await;
    if let Some((at, snap)) = cached.as_ref() {
        if at.elapsed() < state.limits.metrics_cache {
            return Ok(snap.clone());
        }
    }
    let models = crate::store::watched_models(&state.pool).await?;
    let wanted = crate::monitor::export::plan(&models);
    let mut versions: Vec<uuid::Uuid> = wanted.iter().map(|w| w.version_id).collect();
    versions.sort();
    versions.dedup();
    let mut estimators: Vec<String> = wanted.iter().map(|w| w.estimator.clone()).collect();
    estimators.sort();
    estimators.dedup();
    let results = if wanted.is_empty() {
        Vec::new()
    } else {
        crate::store::latest_results_of(&state.pool, &versions, &estimators).await?
    };
    let snap = std::sync::Arc::new(crate::monitor::export::build(
        &models,
        &wanted,
        &results,
        state.limits.metrics_max_information_series,
    ));
    *cached = Some((std::time::Instant::now(), snap.clone()));
    Ok(snap)
}
