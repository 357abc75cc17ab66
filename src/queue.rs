//! The durable job queue in PostgreSQL: at-least-once delivery, exactly-once effect.
//!
//! - Jobs are inserted in the ingestion transaction; `(batch, estimator, version, params_hash)` is
//!   unique, so enqueueing twice returns the existing job.
//! - A worker claims with `FOR UPDATE SKIP LOCKED` and gets a lease (owner, random token, expiry);
//!   no row lock is held while computing.
//! - Heartbeats extend the lease and report progress; every write a worker makes afterwards is
//!   fenced on `(id, lease_token, state = 'running')`, so a worker whose lease was taken back can
//!   no longer change the job.
//! - The reaper requeues jobs whose lease expired (their worker died) with backoff, and fails them
//!   after `max_rescues` so a poison batch cannot crash-loop the pool.
//! - The result row is inserted in the same transaction that marks the job succeeded.

use std::time::Duration;

use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::domain::estimators::JobSpec;
use crate::error::Problem;

/// The NOTIFY channel that wakes workers.
pub use crate::store::wake::{notify, CHANNEL};

/// Queue timing.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub lease: Duration,
    /// First retry delay; doubles per attempt up to `backoff_cap`.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// A job whose worker died this many times is failed.
    pub max_rescues: i32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            lease: Duration::from_secs(30),
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(300),
            max_rescues: 3,
        }
    }
}

impl QueueConfig {
    /// Capped exponential backoff with up to 10 % jitter, for the `n`-th retry (1-based).
    pub fn backoff(&self, n: i32) -> Duration {
        let exp = self.backoff_base.as_secs_f64() * 2f64.powi((n - 1).clamp(0, 30));
        let capped = exp.min(self.backoff_cap.as_secs_f64());
        let jitter = 1.0 + 0.1 * (Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
        Duration::from_secs_f64(capped * jitter)
    }
}

/// A job row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub id: Uuid,
    pub batch_id: Uuid,
    pub estimator: String,
    pub estimator_version: String,
    pub params: Value,
    pub state: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub rescues: i32,
    pub progress: f64,
    pub error: Option<Value>,
    pub lease_token: Option<Uuid>,
    pub cancel_requested_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub request_id: Option<String>,
}

pub const JOB_COLUMNS: &str = "id, batch_id, estimator, estimator_version, params, state, attempts, \
    max_attempts, rescues, progress, error, lease_token, cancel_requested_at, created_at, started_at, finished_at, \
    request_id";

/// Insert the jobs of a batch (existing identical jobs are kept, not duplicated) and return every
/// job matching the specs. Wakes workers when the transaction commits.
pub async fn enqueue(
    tx: &mut Transaction<'_, Postgres>,
    batch_id: Uuid,
    specs: &[JobSpec],
    request_id: Option<&str>,
) -> sqlx::Result<Vec<JobRow>> {
    let mut out = Vec::with_capacity(specs.len());
    for s in specs {
        sqlx::query(
            "INSERT INTO jobs (id, batch_id, estimator, estimator_version, params, params_hash, request_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (batch_id, estimator, estimator_version, params_hash) DO NOTHING",
        )
        .bind(Uuid::now_v7())
        .bind(batch_id)
        .bind(&s.estimator)
        .bind(&s.estimator_version)
        .bind(&s.params)
        .bind(&s.params_hash)
        .bind(request_id)
        .execute(&mut **tx)
        .await?;
        let row: JobRow = sqlx::query_as(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE batch_id = $1 AND estimator = $2
             AND estimator_version = $3 AND params_hash = $4"
        ))
        .bind(batch_id)
        .bind(&s.estimator)
        .bind(&s.estimator_version)
        .bind(&s.params_hash)
        .fetch_one(&mut **tx)
        .await?;
        out.push(row);
    }
    if out.iter().any(|j| j.state == "queued") {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(&mut **tx)
            .await?;
    }
    Ok(out)
}

/// Claim the next due job, giving it a fresh lease.
pub async fn claim(pool: &PgPool, owner: &str, cfg: &QueueConfig) -> sqlx::Result<Option<JobRow>> {
    claim_where(pool, owner, cfg, Pick::Any).await
}

/// Which due jobs a claim may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Any,
    /// Jobs never taken back from a dead worker (`rescues = 0`).
    Fresh,
    /// Jobs that were running when a worker died (`rescues > 0`): each may be the one that
    /// killed it, so a worker pool runs it alone.
    Rescued,
}

/// Claim the oldest due job of the kind `pick` names.
pub async fn claim_where(
    pool: &PgPool,
    owner: &str,
    cfg: &QueueConfig,
    pick: Pick,
) -> sqlx::Result<Option<JobRow>> {
    let filter = match pick {
        Pick::Any => "",
        Pick::Fresh => "AND rescues = 0",
        Pick::Rescued => "AND rescues > 0",
    };
    sqlx::query_as(&format!(
        "WITH c AS (
             SELECT id FROM jobs WHERE state = 'queued' AND run_at <= now() {filter}
             ORDER BY run_at, id FOR UPDATE SKIP LOCKED LIMIT 1)
         UPDATE jobs j SET state = 'running', attempts = j.attempts + 1, lease_owner = $1,
             lease_token = $2, lease_expires_at = now() + make_interval(secs => $3),
             started_at = coalesce(j.started_at, now()), progress = 0
         FROM c WHERE j.id = c.id
         RETURNING {}",
        JOB_COLUMNS
            .split(", ")
            .map(|c| format!("j.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .bind(owner)
    .bind(Uuid::new_v4())
    .bind(cfg.lease.as_secs_f64())
    .fetch_optional(pool)
    .await
}

/// Whether a rescued job is due (see [`Pick::Rescued`]); a partial index keeps this cheap.
pub async fn rescued_due(pool: &PgPool) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'queued' AND rescues > 0 AND run_at <= now())",
    )
    .fetch_one(pool)
    .await
}

/// What a heartbeat learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Lease extended; `cancel` is true when someone asked to cancel the job.
    Alive { cancel: bool },
    /// The lease is gone (reaped, cancelled, or finished elsewhere): stop and drop the result.
    Lost,
}

pub async fn heartbeat(
    pool: &PgPool,
    id: Uuid,
    token: Uuid,
    progress: f64,
    cfg: &QueueConfig,
) -> sqlx::Result<Beat> {
    let cancel: Option<bool> = sqlx::query_scalar(
        "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3), progress = $4
         WHERE id = $1 AND lease_token = $2 AND state = 'running'
         RETURNING cancel_requested_at IS NOT NULL",
    )
    .bind(id)
    .bind(token)
    .bind(cfg.lease.as_secs_f64())
    .bind(progress.clamp(0.0, 1.0))
    .fetch_optional(pool)
    .await?;
    Ok(match cancel {
        Some(cancel) => Beat::Alive { cancel },
        None => Beat::Lost,
    })
}

/// A computed result, ready to store.
#[derive(Debug, Clone)]
pub struct NewResult {
    pub value: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub ci_level: Option<f64>,
    pub ci_method: Option<String>,
    pub n: i64,
    pub details: Value,
    pub sufficient: Option<Value>,
    /// The trust report (`estimate::Diagnostics` as JSON).
    pub diagnostics: Value,
    /// Per segment key: its values and the decomposition (`estimate::segmented::Segments`,
    /// nats); `None` when the batch has no segments.
    pub segments: Option<Value>,
    /// One row per computed segment value, for `estimator{key=value}` metrics.
    pub segment_rows: Vec<crate::estimate::segmented::SegmentRow>,
}

/// Mark the job succeeded and write its result, in one transaction fenced on the lease token.
/// Returns false (and writes nothing) when the lease was lost.
pub async fn finish(pool: &PgPool, job: &JobRow, result: &NewResult) -> sqlx::Result<bool> {
    let token = job.lease_token.expect("a claimed job has a lease token");
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "UPDATE jobs SET state = 'succeeded', progress = 1, finished_at = now(), error = NULL,
             ran_by = lease_owner, lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
         WHERE id = $1 AND lease_token = $2 AND state = 'running'",
    )
    .bind(job.id)
    .bind(token)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if done == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO results (id, job_id, batch_id, model_id, version_id, estimator, estimator_version,
             params, value, ci_low, ci_high, ci_level, ci_method, n, details, sufficient, diagnostics,
             segments)
         SELECT $1, j.id, j.batch_id, b.model_id, b.version_id, j.estimator, j.estimator_version,
             j.params, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12
         FROM jobs j JOIN batches b ON b.id = j.batch_id WHERE j.id = $2
         ON CONFLICT (job_id) DO NOTHING RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(job.id)
    .bind(result.value)
    .bind(result.ci_low)
    .bind(result.ci_high)
    .bind(result.ci_level)
    .bind(&result.ci_method)
    .bind(result.n)
    .bind(&result.details)
    .bind(&result.sufficient)
    .bind(&result.diagnostics)
    .bind(&result.segments)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(id) = inserted.filter(|_| !result.segment_rows.is_empty()) {
        insert_segment_rows(&mut tx, id, &result.segment_rows).await?;
    }
    crate::store::triggers::on_job_finished(&mut tx, job.id).await?;
    tx.commit().await?;
    Ok(true)
}

/// The per-segment rows of a result, in the result's transaction (one statement per 1000 rows).
async fn insert_segment_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    result_id: Uuid,
    rows: &[crate::estimate::segmented::SegmentRow],
) -> sqlx::Result<()> {
    for chunk in rows.chunks(1000) {
        let mut keys = Vec::with_capacity(chunk.len());
        let mut values = Vec::with_capacity(chunk.len());
        let mut ns = Vec::with_capacity(chunk.len());
        let mut shares = Vec::with_capacity(chunk.len());
        let mut estimates = Vec::with_capacity(chunk.len());
        let mut lows = Vec::with_capacity(chunk.len());
        let mut highs = Vec::with_capacity(chunk.len());
        let mut details = Vec::with_capacity(chunk.len());
        let mut sufficient = Vec::with_capacity(chunk.len());
        let mut diagnostics = Vec::with_capacity(chunk.len());
        for r in chunk {
            keys.push(r.key.as_str());
            values.push(r.value.as_str());
            ns.push(r.n as i64);
            shares.push(r.share);
            estimates.push(r.estimate);
            lows.push(r.ci_low);
            highs.push(r.ci_high);
            details.push(r.details.clone());
            sufficient.push(r.sufficient.clone().unwrap_or(Value::Null));
            diagnostics.push(r.diagnostics.clone());
        }
        sqlx::query(
            "INSERT INTO result_segments (result_id, key, value, n, share, estimate, ci_low, ci_high,
                 details, sufficient, diagnostics)
             SELECT $1, k, v, n, s, e, lo, hi, d, nullif(su, 'null'::jsonb), dg
             FROM unnest($2::text[], $3::text[], $4::int8[], $5::float8[], $6::float8[],
                         $7::float8[], $8::float8[], $9::jsonb[], $10::jsonb[], $11::jsonb[])
                  AS x(k, v, n, s, e, lo, hi, d, su, dg)",
        )
        .bind(result_id)
        .bind(&keys)
        .bind(&values)
        .bind(&ns)
        .bind(&shares)
        .bind(&estimates)
        .bind(&lows)
        .bind(&highs)
        .bind(&details)
        .bind(&sufficient)
        .bind(&diagnostics)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// A permanent failure: the job ends `failed` with the problem. Fenced.
pub async fn fail(pool: &PgPool, job: &JobRow, problem: &Problem) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let n = sqlx::query(
        "UPDATE jobs SET state = 'failed', finished_at = now(), error = $3,
             ran_by = lease_owner, lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
         WHERE id = $1 AND lease_token = $2 AND state = 'running'",
    )
    .bind(job.id)
    .bind(job.lease_token)
    .bind(serde_json::to_value(problem).expect("problem serialises"))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 1 {
        crate::store::triggers::on_job_finished(&mut tx, job.id).await?;
    }
    tx.commit().await?;
    Ok(n == 1)
}

/// A transient failure: retried after a capped backoff, or failed once attempts are used up.
pub async fn retry_later(
    pool: &PgPool,
    job: &JobRow,
    problem: &Problem,
    cfg: &QueueConfig,
) -> sqlx::Result<bool> {
    let delay = cfg.backoff(job.attempts);
    let n = sqlx::query(
        "UPDATE jobs SET
             state = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END,
             finished_at = CASE WHEN attempts >= max_attempts THEN now() END,
             run_at = now() + make_interval(secs => $4), error = $3,
             lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
         WHERE id = $1 AND lease_token = $2 AND state = 'running'",
    )
    .bind(job.id)
    .bind(job.lease_token)
    .bind(serde_json::to_value(problem).expect("problem serialises"))
    .bind(delay.as_secs_f64())
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// The job stopped because it was cancelled. Fenced.
pub async fn mark_cancelled(pool: &PgPool, job: &JobRow) -> sqlx::Result<bool> {
    let n = sqlx::query(
        "UPDATE jobs SET state = 'cancelled', finished_at = now(),
             lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
         WHERE id = $1 AND lease_token = $2 AND state = 'running'",
    )
    .bind(job.id)
    .bind(job.lease_token)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Give the job back untouched (graceful shutdown): queued again at once, the claim not counted.
pub async fn release(pool: &PgPool, job: &JobRow) -> sqlx::Result<bool> {
    let n = sqlx::query(
        "UPDATE jobs SET state = 'queued', run_at = now(), attempts = greatest(attempts - 1, 0),
             progress = 0, lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
         WHERE id = $1 AND lease_token = $2 AND state = 'running'",
    )
    .bind(job.id)
    .bind(job.lease_token)
    .execute(pool)
    .await?
    .rows_affected();
    if n == 1 {
        notify(pool).await?;
    }
    Ok(n == 1)
}

/// Take back jobs whose lease expired: requeue them with backoff, or fail them after
/// `max_rescues`; a job whose cancellation was requested ends cancelled. Returns how many.
pub async fn reap(pool: &PgPool, cfg: &QueueConfig) -> sqlx::Result<u64> {
    let problem = Problem::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "worker-lost",
        "The job's worker stopped",
        format!(
            "the worker running this job stopped responding {} times; the job is not retried again",
            cfg.max_rescues
        ),
    );
    let n = rescue(pool, cfg, None, &problem, false).await?;
    if n > 0 {
        crate::metrics::jobs_reaped(n);
        tracing::warn!(
            jobs = n,
            "reaped jobs whose worker stopped renewing its lease"
        );
    }
    Ok(n)
}

/// Take back at once, without waiting for their leases to expire, the running jobs of a worker
/// pool known to be dead (a worker process that crashed): each counts as a rescue, is requeued
/// with backoff or failed after `max_rescues`, and carries `problem` as its error.
pub async fn rescue_owner(
    pool: &PgPool,
    cfg: &QueueConfig,
    pool_id: &str,
    problem: &Problem,
) -> sqlx::Result<u64> {
    rescue(pool, cfg, Some(pool_id), problem, true).await
}

async fn rescue(
    pool: &PgPool,
    cfg: &QueueConfig,
    pool_id: Option<&str>,
    problem: &Problem,
    always_record: bool,
) -> sqlx::Result<u64> {
    let n = sqlx::query(
        "WITH expired AS (
             SELECT id FROM jobs WHERE state = 'running'
               AND CASE WHEN $4::text IS NULL THEN lease_expires_at < now()
                        ELSE lease_owner LIKE $4 || '/%' END
             FOR UPDATE SKIP LOCKED)
         UPDATE jobs j SET
             rescues = j.rescues + 1,
             state = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled'
                          WHEN j.rescues + 1 >= $1 THEN 'failed' ELSE 'queued' END,
             finished_at = CASE WHEN j.cancel_requested_at IS NOT NULL OR j.rescues + 1 >= $1
                                THEN now() END,
             error = CASE WHEN j.cancel_requested_at IS NULL AND (j.rescues + 1 >= $1 OR $5) THEN $2
                          ELSE j.error END,
             run_at = now() + make_interval(secs => $3 * power(2, least(j.rescues, 10))),
             lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, progress = 0
         FROM expired WHERE j.id = expired.id",
    )
    .bind(cfg.max_rescues)
    .bind(serde_json::to_value(problem).expect("problem serialises"))
    .bind(
        cfg.backoff_base
            .as_secs_f64()
            .min(cfg.backoff_cap.as_secs_f64()),
    )
    .bind(pool_id.map(|p| {
        p.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    }))
    .bind(always_record)
    .execute(pool)
    .await?
    .rows_affected();
    if n > 0 {
        notify(pool).await?;
    }
    Ok(n)
}

/// Request cancellation: a queued job is cancelled at once, a running one is asked to stop
/// (its worker sees it at the next heartbeat). Idempotent; finished jobs are left as they are.
pub async fn cancel(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<JobRow>> {
    sqlx::query_as(&format!(
        "UPDATE jobs SET
             state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
             finished_at = CASE WHEN state = 'queued' THEN now() ELSE finished_at END,
             cancel_requested_at = CASE WHEN state IN ('queued', 'running')
                                        THEN coalesce(cancel_requested_at, now())
                                        ELSE cancel_requested_at END
         WHERE id = $1
         RETURNING {JOB_COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let cfg = QueueConfig {
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(10),
            ..QueueConfig::default()
        };
        let s = |n| cfg.backoff(n).as_secs_f64();
        assert!((2.0..=2.2).contains(&s(1)));
        assert!((4.0..=4.4).contains(&s(2)));
        assert!((8.0..=8.8).contains(&s(3)));
        assert!((10.0..=11.0).contains(&s(4)));
        assert!((10.0..=11.0).contains(&s(40)));
    }
}
