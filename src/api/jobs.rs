//! Reading and cancelling jobs.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::extract::{query_name, PageQuery, UnitQuery};
use super::state::AppState;
use super::views::{EstimateResult, Job, JobDetail, Page};
use crate::error::{Error, Problem, Result};
use crate::{queue, store};

fn not_found(id: Uuid) -> Error {
    Error::NotFound(format!("job {id} not found"))
}

/// A job: state, attempts, progress, error, and its result once it succeeded.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id"), UnitQuery),
    responses(
        (status = 200, body = JobDetail),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_job(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(q): Query<UnitQuery>,
) -> Result<Json<JobDetail>> {
    let job = store::get_job(&state.pool, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let result = store::job_result(&state.pool, id).await?;
    Ok(Json(JobDetail {
        job: job.into(),
        result: result.map(|r| EstimateResult::new(r, q.unit.unwrap_or_default())),
    }))
}

/// Cancel a job (idempotent). A queued job is cancelled at once; a running one is asked to stop
/// and ends `cancelled` when its worker notices (within a third of the lease). Finished jobs are
/// returned unchanged.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/cancel",
    tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, body = Job, description = "The job after the request"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel_job(State(state): State<AppState>, Path(id): Path<Uuid>) -> Result<Json<Job>> {
    let job = queue::cancel(&state.pool, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(Json(job.into()))
}

/// The states `?state=` accepts (the document's pattern lists the same ones).
pub const JOB_STATES: [&str; 5] = ["queued", "running", "succeeded", "failed", "cancelled"];

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobFilter {
    /// Only jobs in this state: queued, running, succeeded, failed, cancelled.
    #[param(pattern = "^(queued|running|succeeded|failed|cancelled)$")]
    pub state: Option<String>,
    /// Only jobs of this model.
    pub model: Option<String>,
}

/// Jobs, oldest first, optionally filtered by state and model.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = "jobs",
    params(JobFilter, PageQuery),
    responses(
        (status = 200, body = Page<Job>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_jobs(
    State(state): State<AppState>,
    principal: Option<axum::Extension<crate::auth::Principal>>,
    Query(f): Query<JobFilter>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<Job>>> {
    query_name("model", f.model.as_deref())?;
    if let Some(p) = principal.filter(|p| p.models.is_some()) {
        match &f.model {
            Some(m) if p.allows_model(m) => {}
            Some(m) => {
                return Err(Error::Forbidden(format!(
                    "this key is not allowed to use model {m}"
                )))
            }
            None => {
                return Err(Error::Forbidden(
                    "this key is limited to some models: give ?model=".into(),
                ))
            }
        }
    }
    if let Some(s) = &f.state {
        if !JOB_STATES.contains(&s.as_str()) {
            return Err(Error::BadRequest(format!(
                "state {s:?} is not one of queued, running, succeeded, failed, cancelled"
            )));
        }
    }
    let limit = page.limit()?;
    let after = page.after_time()?;
    let mut rows = store::list_jobs(
        &state.pool,
        f.state.as_deref(),
        f.model.as_deref(),
        after,
        limit + 1,
    )
    .await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last()
            .map(|j| super::cursor::encode_time(j.created_at, j.id))
    } else {
        None
    };
    Ok(Json(Page {
        items: rows.into_iter().map(Job::from).collect(),
        next_cursor,
    }))
}
