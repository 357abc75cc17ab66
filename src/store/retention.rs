//! Retention: per-model policies, holds, and purging raw data and results past their age.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// A model's retention policy (days; `None`: kept forever / no minimum).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct RetentionRow {
    pub data_days: Option<i32>,
    pub results_days: Option<i32>,
    pub min_days: Option<i32>,
}

pub async fn get_retention(
    pool: &PgPool,
    model_id: Uuid,
) -> sqlx::Result<Option<(RetentionRow, DateTime<Utc>)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        data_days: Option<i32>,
        results_days: Option<i32>,
        min_days: Option<i32>,
        updated_at: DateTime<Utc>,
    }
    let row: Option<Row> = sqlx::query_as(
        "SELECT data_days, results_days, min_days, updated_at FROM model_retention WHERE model_id = $1",
    )
    .bind(model_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| {
        (
            RetentionRow {
                data_days: r.data_days,
                results_days: r.results_days,
                min_days: r.min_days,
            },
            r.updated_at,
        )
    }))
}

pub async fn put_retention(
    pool: &PgPool,
    model_id: Uuid,
    r: &RetentionRow,
) -> sqlx::Result<DateTime<Utc>> {
    sqlx::query_scalar(
        "INSERT INTO model_retention (model_id, data_days, results_days, min_days)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (model_id) DO UPDATE SET data_days = $2, results_days = $3, min_days = $4,
             updated_at = now()
         RETURNING updated_at",
    )
    .bind(model_id)
    .bind(r.data_days)
    .bind(r.results_days)
    .bind(r.min_days)
    .fetch_one(pool)
    .await
}

/// Until when a batch is held by its model's minimum holding period (`None`: not held).
pub async fn held_until(pool: &PgPool, batch_id: Uuid) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar(
        "SELECT b.created_at + make_interval(days => r.min_days) FROM batches b
         JOIN model_retention r ON r.model_id = b.model_id
         WHERE b.id = $1 AND r.min_days IS NOT NULL
           AND b.created_at + make_interval(days => r.min_days) > now()",
    )
    .bind(batch_id)
    .fetch_optional(pool)
    .await
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub batches: u64,
    pub results: u64,
}

/// Apply every model's retention policy, `chunk` rows per statement (each statement its own
/// short transaction, no `RETURNING`): raw data of batches older than `max(data_days, min_days)`
/// whose jobs are all finished, then results older than `max(results_days, min_days)`. Only one
/// process purges at a time (an advisory lock); the others skip the pass.
pub async fn purge_retention(pool: &PgPool, chunk: u32) -> sqlx::Result<Purged> {
    const LOCK: i64 = 0x1a_7e_7e_47; // "retention"
    let mut conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LOCK)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        return Ok(Purged::default());
    }
    let result = purge_locked(&mut conn, chunk.max(1) as i64).await;
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK)
        .execute(&mut *conn)
        .await;
    result
}

async fn purge_locked(conn: &mut sqlx::PgConnection, chunk: i64) -> sqlx::Result<Purged> {
    let policies: Vec<(Uuid, Option<i32>, Option<i32>)> = sqlx::query_as(
        "SELECT model_id,
                CASE WHEN data_days IS NULL THEN NULL ELSE greatest(data_days, coalesce(min_days, 0)) END,
                CASE WHEN results_days IS NULL THEN NULL ELSE greatest(results_days, coalesce(min_days, 0)) END
         FROM model_retention WHERE data_days IS NOT NULL OR results_days IS NOT NULL",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Purged::default();
    for (model_id, data_days, results_days) in policies {
        if let Some(days) = data_days {
            loop {
                let n = sqlx::query(
                    "WITH b AS (
                         SELECT id FROM batches
                         WHERE model_id = $1 AND data_purged_at IS NULL
                           AND created_at < now() - make_interval(days => $2)
                           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.batch_id = batches.id
                                           AND j.state IN ('queued', 'running'))
                           -- Held while jobs wait for labels: released, they need the data.
                           AND pending_jobs IS NULL
                         ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED),
                     gone AS (DELETE FROM batch_data WHERE batch_id IN (SELECT id FROM b)),
                     -- Sample ids and their labels are raw data too.
                     ids_gone AS (DELETE FROM sample_ids WHERE batch_id IN (SELECT id FROM b))
                     UPDATE batches SET data_purged_at = now() WHERE id IN (SELECT id FROM b)",
                )
                .bind(model_id)
                .bind(days)
                .bind(chunk)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                out.batches += n;
                if (n as i64) < chunk {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        if let Some(days) = results_days {
            loop {
                let n = sqlx::query(
                    "DELETE FROM results WHERE id IN (
                         SELECT id FROM results WHERE model_id = $1
                           AND computed_at < now() - make_interval(days => $2)
                         ORDER BY computed_at LIMIT $3)",
                )
                .bind(model_id)
                .bind(days)
                .bind(chunk)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                out.results += n;
                if (n as i64) < chunk {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            loop {
                let n = sqlx::query(
                    "UPDATE batches SET results_purged_at = now() WHERE id IN (
                         SELECT b.id FROM batches b WHERE b.model_id = $1
                           AND b.results_purged_at IS NULL
                           AND b.created_at < now() - make_interval(days => $2)
                           AND NOT EXISTS (SELECT 1 FROM results r WHERE r.batch_id = b.id)
                           AND EXISTS (SELECT 1 FROM jobs j WHERE j.batch_id = b.id AND j.state = 'succeeded')
                         LIMIT $3)",
                )
                .bind(model_id)
                .bind(days)
                .bind(chunk)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if (n as i64) < chunk {
                    break;
                }
            }
        }
    }
    Ok(out)
}
