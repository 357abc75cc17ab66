//! Monitors: watch a model's production version and notify on regressions, reliably.
//!
//! - **Triggers** enqueue an evaluation (`monitor_jobs`) in the transaction of the event that
//!   causes it: the result that finishes a batch of the target ([`on_job_finished`], called by
//!   the queue), an alias move ([`on_alias_change`]), a schedule slot claimed by one process
//!   ([`schedule_due`]: a row lock and an update of `next_run_at`).
//! - **Evaluations** are claimed with a lease like estimator jobs; the gate evaluation of
//!   `api::gates` judges the rules on the monitor's window; the decision (marked with the
//!   monitor), the incident change ([`incident::step`]) and the messages (`webhook_deliveries`,
//!   the outbox) are written in one transaction fenced on the lease.
//! - **Deliveries** are claimed with a lease, POSTed with Standard Webhooks signatures, every
//!   attempt recorded; failures retry with exponential backoff and jitter for 24 h, then the
//!   message is dead-lettered. At least once, with a stable `webhook-id`.

pub mod deliver;
pub mod incident;
pub mod run;
pub mod spec;

use std::time::Duration;

use sqlx::{Postgres, Transaction};
use uuid::Uuid;

/// Monitor settings of a worker pool.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// Deliver to loopback, private and link-local addresses (off in production).
    pub allow_private: bool,
    /// The service's public base URL, for links in messages.
    pub public_url: String,
    /// One HTTP attempt's limit.
    pub timeout: Duration,
    /// First retry delay; doubles per attempt (with jitter) up to `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// A message still undelivered this long after it was written is dead-lettered.
    pub give_up_after: Duration,
    /// Evaluation and delivery tasks per pool.
    pub evaluators: usize,
    pub deliverers: usize,
    /// An evaluation or delivery lease.
    pub lease: Duration,
    /// How often idle loops look without a wake-up, and schedules are checked.
    pub poll_interval: Duration,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            allow_private: false,
            public_url: "http://127.0.0.1:8080".into(),
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(5),
            retry_cap: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(24 * 3600),
            evaluators: 1,
            deliverers: 4,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl MonitorConfig {
    /// The delay before retry `n` (1-based): base·2^(n−1), capped, times a jitter in [0.5, 1.5).
    pub fn retry_delay(&self, n: i32) -> Duration {
        let exp = self.retry_base.as_secs_f64() * 2f64.powi((n - 1).clamp(0, 30));
        let capped = exp.min(self.retry_cap.as_secs_f64());
        let jitter = 0.5 + (Uuid::new_v4().as_u128() % 10_000) as f64 / 10_000.0;
        Duration::from_secs_f64(capped * jitter)
    }
}

/// Called in the transaction that records a job's end (success or failure): when it was the
/// last unfinished job of its batch, enqueue an evaluation of every `on_result` monitor whose
/// target is the batch's version. The batch row is locked so that two jobs of one batch
/// finishing at the same time cannot both believe the other is still running.
pub async fn on_job_finished(
    tx: &mut Transaction<'_, Postgres>,
    job_id: Uuid,
) -> sqlx::Result<u64> {
    let row: Option<(Uuid, Uuid, Uuid)> = sqlx::query_as(
        "SELECT b.id, b.model_id, b.version_id FROM jobs j JOIN batches b ON b.id = j.batch_id
         WHERE j.id = $1 AND EXISTS (SELECT 1 FROM monitor_state m WHERE m.model_id = b.model_id AND m.on_result)",
    )
    .bind(job_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((batch_id, model_id, version_id)) = row else {
        return Ok(0);
    };
    sqlx::query("SELECT 1 FROM batches WHERE id = $1 FOR NO KEY UPDATE")
        .bind(batch_id)
        .execute(&mut **tx)
        .await?;
    let unfinished: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE batch_id = $1 AND state IN ('queued', 'running') AND id <> $2",
    )
    .bind(batch_id)
    .bind(job_id)
    .fetch_one(&mut **tx)
    .await?;
    if unfinished > 0 {
        return Ok(0);
    }
    let n = sqlx::query(
        "INSERT INTO monitor_jobs (id, model_id, monitor, trigger, trigger_key, version_id)
         SELECT gen_random_uuid(), m.model_id, m.name, 'on_result', 'batch:' || $2::text, $3
         FROM monitor_state m
         WHERE m.model_id = $1 AND m.on_result AND CASE m.target_kind
             WHEN 'alias' THEN EXISTS (SELECT 1 FROM aliases a WHERE a.model_id = m.model_id AND a.alias = m.target AND a.version_id = $3)
             WHEN 'version' THEN EXISTS (SELECT 1 FROM model_versions v WHERE v.id = $3 AND v.name = m.target)
             ELSE $3 = (SELECT v.id FROM model_versions v WHERE v.model_id = m.model_id ORDER BY v.created_at DESC, v.id DESC LIMIT 1)
           END
         ON CONFLICT (model_id, monitor, trigger_key) DO NOTHING",
    )
    .bind(model_id)
    .bind(batch_id.to_string())
    .bind(version_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if n > 0 {
        crate::queue::notify(&mut **tx).await?;
    }
    Ok(n)
}

/// Called in the transaction of an alias move (or removal): enqueue an evaluation of every
/// `on_alias_change` monitor that follows the alias.
pub async fn on_alias_change(
    tx: &mut Transaction<'_, Postgres>,
    model_id: Uuid,
    alias: &str,
) -> sqlx::Result<u64> {
    let event = Uuid::now_v7();
    let n = sqlx::query(
        "INSERT INTO monitor_jobs (id, model_id, monitor, trigger, trigger_key)
         SELECT gen_random_uuid(), model_id, name, 'on_alias_change', 'alias:' || $3::text
         FROM monitor_state WHERE model_id = $1 AND on_alias_change AND target_kind = 'alias' AND target = $2
         ON CONFLICT (model_id, monitor, trigger_key) DO NOTHING",
    )
    .bind(model_id)
    .bind(alias)
    .bind(event.to_string())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if n > 0 {
        crate::queue::notify(&mut **tx).await?;
    }
    Ok(n)
}

/// Enqueue the evaluations whose schedule slot is due, each slot once across every process
/// (the monitor's row is locked and its next slot written in the same statement).
pub async fn schedule_due(pool: &sqlx::PgPool) -> sqlx::Result<u64> {
    let n = sqlx::query(
        "WITH due AS (
             SELECT model_id, name, next_run_at, every_seconds FROM monitor_state
             WHERE next_run_at <= now() FOR UPDATE SKIP LOCKED),
         moved AS (
             UPDATE monitor_state s SET next_run_at = greatest(
                 due.next_run_at + make_interval(secs => due.every_seconds),
                 now() + make_interval(secs => due.every_seconds / 2))
             FROM due WHERE s.model_id = due.model_id AND s.name = due.name
             RETURNING s.model_id, s.name, due.next_run_at AS slot)
         INSERT INTO monitor_jobs (id, model_id, monitor, trigger, trigger_key)
         SELECT gen_random_uuid(), model_id, name, 'every', 'every:' || slot::text
         FROM moved
         ON CONFLICT (model_id, monitor, trigger_key) DO NOTHING",
    )
    .execute(pool)
    .await?
    .rows_affected();
    if n > 0 {
        crate::queue::notify(pool).await?;
    }
    Ok(n)
}
