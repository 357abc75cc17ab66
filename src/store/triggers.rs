//! Monitor triggers, enqueued in the transaction of the event that causes them: the result that
//! finishes a batch of a monitor's target ([`on_job_finished`], called by the queue's finish), an
//! alias move ([`on_alias_change`]), a schedule slot claimed by one process ([`schedule_due`]).

use sqlx::{Postgres, Transaction};
use uuid::Uuid;

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
        super::wake::notify(&mut **tx).await?;
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
        super::wake::notify(&mut **tx).await?;
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
        super::wake::notify(pool).await?;
    }
    Ok(n)
}
