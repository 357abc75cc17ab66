//! SQL for models, versions, batches and results (the queue's SQL is in `queue`).

pub mod cache;
pub mod labels;
pub mod reads;
pub mod retention;
pub mod triggers;
pub mod wake;

pub use reads::*;
pub use retention::*;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::domain::batch::Batch;
use crate::queue::{JobRow, JOB_COLUMNS};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ModelRow {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub version_count: i64,
    pub batch_count: i64,
    pub last_upload_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VersionRow {
    pub id: Uuid,
    pub model: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub batch_count: i64,
    pub n_total: i64,
    pub aliases: Vec<String>,
    /// The model's results generation when this was read.
    pub results_generation: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BatchRow {
    pub id: Uuid,
    pub model: String,
    pub version: String,
    pub task: String,
    pub n: i64,
    pub classes: Value,
    pub digest: String,
    pub size_bytes: i64,
    pub content_type: String,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    /// Default estimators left out for cost, with the reasons.
    pub estimators_skipped: Value,
    /// When retention dropped the raw data (results and sufficient statistics are kept).
    pub data_purged_at: Option<DateTime<Utc>>,
    /// When retention dropped the results.
    pub results_purged_at: Option<DateTime<Utc>>,
    pub has_ids: bool,
    pub labels_later: bool,
    pub labelled: i64,
    pub label_coverage_required: Option<f64>,
    pub pending_jobs: Option<Value>,
    pub released_at: Option<DateTime<Utc>>,
    pub released_labelled: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ResultRow {
    pub id: Uuid,
    pub job_id: Uuid,
    pub batch_id: Uuid,
    pub model: String,
    pub version: String,
    pub estimator: String,
    pub estimator_version: String,
    pub params: Value,
    pub value: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub ci_level: Option<f64>,
    pub ci_method: Option<String>,
    pub n: i64,
    pub details: Value,
    pub diagnostics: Option<Value>,
    pub computed_at: DateTime<Utc>,
    /// Per segment key (nats): `estimate::segmented::Segments`.
    pub segments: Option<Value>,
}

const BATCH_SELECT: &str =
    "SELECT b.id, m.name AS model, v.name AS version, b.task, b.n, b.classes,
    b.digest, b.size_bytes, b.content_type, b.metadata, b.created_at, b.estimators_skipped,
    b.data_purged_at, b.results_purged_at, b.has_ids, b.labels_later, b.labelled,
    b.label_coverage_required, b.pending_jobs, b.released_at, b.released_labelled
    FROM batches b JOIN models m ON m.id = b.model_id JOIN model_versions v ON v.id = b.version_id";

const RESULT_SELECT: &str = "SELECT r.id, r.job_id, r.batch_id, m.name AS model, v.name AS version,
    r.estimator, r.estimator_version, r.params, r.value, r.ci_low, r.ci_high, r.ci_level,
    r.ci_method, r.n, r.details, r.diagnostics, r.computed_at, r.segments
    FROM results r JOIN models m ON m.id = r.model_id JOIN model_versions v ON v.id = r.version_id";

/// Lock spaces of [`lock_definition`]: one per kind of versioned definition.
pub const GATE_POLICY_LOCKS: i64 = 11;
pub const MONITOR_LOCKS: i64 = 14;

/// Before writing a new version of one of a model's named definitions (a gate policy, a
/// monitor): find or create the model, hold it `FOR SHARE` (it cannot be deleted meanwhile), and
/// take a transaction lock on (model, name) in the `kind` lock space, so concurrent PUTs of one
/// definition take versions one after another. Returns the model's id.
pub async fn lock_definition(
    tx: &mut Transaction<'_, Postgres>,
    model: &str,
    kind: i64,
    name: &str,
) -> sqlx::Result<Uuid> {
    sqlx::query("INSERT INTO models (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(Uuid::now_v7())
        .bind(model)
        .execute(&mut **tx)
        .await?;
    let model_id: Uuid = sqlx::query_scalar("SELECT id FROM models WHERE name = $1 FOR SHARE")
        .bind(model)
        .fetch_one(&mut **tx)
        .await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, $2))")
        .bind(format!("{model_id}/{name}"))
        .bind(kind)
        .execute(&mut **tx)
        .await?;
    Ok(model_id)
}

/// Find or create the model and version (first use creates them). Never locks existing rows, so
/// concurrent uploads to one version do not queue behind each other.
pub async fn ensure_version(
    tx: &mut Transaction<'_, Postgres>,
    model: &str,
    version: &str,
) -> sqlx::Result<(Uuid, Uuid)> {
    // The usual case: both exist (one round trip).
    let found: Option<(Uuid, Option<Uuid>)> = sqlx::query_as(
        "SELECT m.id, v.id FROM models m
         LEFT JOIN model_versions v ON v.model_id = m.id AND v.name = $2
         WHERE m.name = $1",
    )
    .bind(model)
    .bind(version)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some((model_id, Some(version_id))) = found {
        return Ok((model_id, version_id));
    }
    sqlx::query("INSERT INTO models (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(Uuid::now_v7())
        .bind(model)
        .execute(&mut **tx)
        .await?;
    let model_id: Uuid = sqlx::query_scalar("SELECT id FROM models WHERE name = $1")
        .bind(model)
        .fetch_one(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO model_versions (id, model_id, name) VALUES ($1, $2, $3)
         ON CONFLICT (model_id, name) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(model_id)
    .bind(version)
    .execute(&mut **tx)
    .await?;
    let version_id: Uuid =
        sqlx::query_scalar("SELECT id FROM model_versions WHERE model_id = $1 AND name = $2")
            .bind(model_id)
            .bind(version)
            .fetch_one(&mut **tx)
            .await?;
    Ok((model_id, version_id))
}

/// What the ingestion transaction writes for one batch.
pub struct NewBatch<'a> {
    pub id: Uuid,
    pub model_id: Uuid,
    pub version_id: Uuid,
    pub task: crate::domain::batch::Task,
    pub n: usize,
    pub classes: &'a [String],
    /// The stored form, in parts (concatenated in order when read back).
    pub body: &'a [std::borrow::Cow<'a, [u8]>],
    pub digest: &'a str,
    pub labels_digest: Option<&'a str>,
    pub content_type: &'a str,
    pub metadata: &'a Value,
    pub estimators_skipped: &'a [crate::domain::estimators::Skipped],
    pub has_ids: bool,
    pub labels_later: bool,
    pub label_coverage_required: Option<f64>,
    pub pending_jobs: Option<Value>,
}

pub async fn insert_batch(
    tx: &mut Transaction<'_, Postgres>,
    b: &NewBatch<'_>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO batches (id, model_id, version_id, task, n, classes, digest, size_bytes,
             content_type, metadata, labels_digest, estimators_skipped, has_ids, labels_later,
            label_coverage_required, pending_jobs)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(b.id)
    .bind(b.model_id)
    .bind(b.version_id)
    .bind(b.task.as_str())
    .bind(b.n as i64)
    .bind(serde_json::json!(b.classes))
    .bind(b.digest)
    .bind(b.body.iter().map(|p| p.len()).sum::<usize>() as i64)
    .bind(b.content_type)
    .bind(b.metadata)
    .bind(b.labels_digest)
    .bind(serde_json::json!(b.estimators_skipped))
    .bind(b.has_ids)
    .bind(b.labels_later)
    .bind(b.label_coverage_required)
    .bind(&b.pending_jobs)
    .execute(&mut **tx)
    .await?;
    let chunks = b.body.iter().flat_map(|part| part.chunks(DATA_CHUNK));
    for (seq, chunk) in chunks.enumerate() {
        sqlx::query("INSERT INTO batch_data (batch_id, seq, body) VALUES ($1, $2, $3)")
            .bind(b.id)
            .bind(seq as i32)
            .bind(chunk)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

pub async fn get_batch(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<BatchRow>> {
    sqlx::query_as(&format!("{BATCH_SELECT} WHERE b.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Stored batch data is split into chunks of this many bytes.
const DATA_CHUNK: usize = 4 << 20;

/// The raw data of a batch was dropped by its model's retention policy.
#[derive(Debug, Clone, Copy)]
pub struct DataPurged(pub DateTime<Utc>);

impl std::fmt::Display for DataPurged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the batch's raw data was purged on {} by its model's retention policy; its results \
             and sufficient statistics are kept",
            self.0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

impl std::error::Error for DataPurged {}

pub async fn load_batch_data(pool: &PgPool, id: Uuid) -> anyhow::Result<Batch> {
    let (size, purged): (i64, Option<DateTime<Utc>>) =
        sqlx::query_as("SELECT size_bytes, data_purged_at FROM batches WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await?;
    if let Some(at) = purged {
        return Err(DataPurged(at).into());
    }
    // Decoded chunk by chunk into the batch's own arrays: one copy of the numbers, never the
    // encoded bytes whole as well.
    let mut decoder = crate::domain::batch::Decoder::new(usize::try_from(size.max(0))?);
    let mut rows = sqlx::query_scalar::<_, Vec<u8>>(
        "SELECT body FROM batch_data WHERE batch_id = $1 ORDER BY seq",
    )
    .bind(id)
    .fetch(pool);
    while let Some(chunk) = futures_util::TryStreamExt::try_next(&mut rows).await? {
        decoder.push(&chunk)?;
    }
    drop(rows);
    decoder.finish()
}

pub async fn batch_jobs(pool: &PgPool, batch_id: Uuid) -> sqlx::Result<Vec<JobRow>> {
    sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE batch_id = $1 ORDER BY created_at, id"
    ))
    .bind(batch_id)
    .fetch_all(pool)
    .await
}

pub async fn batch_results(pool: &PgPool, batch_id: Uuid) -> sqlx::Result<Vec<ResultRow>> {
    sqlx::query_as(&format!(
        "{RESULT_SELECT} WHERE r.batch_id = $1 ORDER BY r.computed_at, r.id"
    ))
    .bind(batch_id)
    .fetch_all(pool)
    .await
}

pub async fn get_job(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<JobRow>> {
    sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

pub async fn job_result(pool: &PgPool, job_id: Uuid) -> sqlx::Result<Option<ResultRow>> {
    sqlx::query_as(&format!("{RESULT_SELECT} WHERE r.job_id = $1"))
        .bind(job_id)
        .fetch_optional(pool)
        .await
}

/// Jobs, oldest first, after the keyset cursor `(created_at, id)`.
pub async fn list_jobs(
    pool: &PgPool,
    state: Option<&str>,
    model: Option<&str>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<JobRow>> {
    let cols = JOB_COLUMNS
        .split(", ")
        .map(|c| format!("j.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query_as(&format!(
        "SELECT {cols} FROM jobs j
         JOIN batches b ON b.id = j.batch_id JOIN models m ON m.id = b.model_id
         WHERE ($1::text IS NULL OR j.state = $1) AND ($2::text IS NULL OR m.name = $2)
           AND ($3::timestamptz IS NULL OR (j.created_at, j.id) > ($3, $4))
         ORDER BY j.created_at, j.id LIMIT $5"
    ))
    .bind(state)
    .bind(model)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit)
    .fetch_all(pool)
    .await
}

const MODEL_SELECT: &str = "SELECT m.id, m.name, m.created_at,
    (SELECT count(*) FROM model_versions v WHERE v.model_id = m.id) AS version_count,
    (SELECT count(*) FROM batches b WHERE b.model_id = m.id) AS batch_count,
    (SELECT max(b.created_at) FROM batches b WHERE b.model_id = m.id) AS last_upload_at
    FROM models m";

/// Models by name, after the cursor name.
pub async fn list_models(
    pool: &PgPool,
    after: Option<&str>,
    only: Option<&[String]>,
    limit: i64,
) -> sqlx::Result<Vec<ModelRow>> {
    sqlx::query_as(&format!(
        "{MODEL_SELECT} WHERE ($1::text IS NULL OR m.name > $1) AND ($3::text[] IS NULL OR m.name = ANY($3))
         ORDER BY m.name LIMIT $2"
    ))
    .bind(after)
    .bind(limit)
    .bind(only)
    .fetch_all(pool)
    .await
}

pub async fn get_model(pool: &PgPool, name: &str) -> sqlx::Result<Option<ModelRow>> {
    sqlx::query_as(&format!("{MODEL_SELECT} WHERE m.name = $1"))
        .bind(name)
        .fetch_optional(pool)
        .await
}

const VERSION_SELECT: &str = "SELECT v.id, m.name AS model, v.name, v.created_at,
    (SELECT count(*) FROM batches b WHERE b.version_id = v.id) AS batch_count,
    (SELECT coalesce(sum(b.n), 0)::bigint FROM batches b WHERE b.version_id = v.id) AS n_total,
    ARRAY(SELECT a.alias FROM aliases a WHERE a.version_id = v.id ORDER BY a.alias) AS aliases,
    m.results_generation
    FROM model_versions v JOIN models m ON m.id = v.model_id";

/// A model's versions, oldest first, after the keyset cursor.
pub async fn list_versions(
    pool: &PgPool,
    model: &str,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<VersionRow>> {
    sqlx::query_as(&format!(
        "{VERSION_SELECT} WHERE m.name = $1
           AND ($2::timestamptz IS NULL OR (v.created_at, v.id) > ($2, $3))
         ORDER BY v.created_at, v.id LIMIT $4"
    ))
    .bind(model)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub async fn get_version(
    pool: &PgPool,
    model: &str,
    version: &str,
) -> sqlx::Result<Option<VersionRow>> {
    sqlx::query_as(&format!(
        "{VERSION_SELECT} WHERE m.name = $1 AND v.name = $2"
    ))
    .bind(model)
    .bind(version)
    .fetch_optional(pool)
    .await
}

/// The latest result of each (estimator, params) of a version.
pub async fn latest_results(pool: &PgPool, version_id: Uuid) -> sqlx::Result<Vec<ResultRow>> {
    sqlx::query_as(&format!(
        "SELECT * FROM ({RESULT_SELECT} WHERE r.version_id = $1) x
         WHERE x.id IN (SELECT DISTINCT ON (estimator, params) id FROM results
                        WHERE version_id = $1 ORDER BY estimator, params, computed_at DESC, id DESC)
         ORDER BY x.estimator, x.computed_at"
    ))
    .bind(version_id)
    .fetch_all(pool)
    .await
}

/// Sufficient statistics of every result of a version for one estimator version and params
/// (results of other estimator versions store other statistics and are never pooled with them).
pub async fn sufficient_stats(
    pool: &PgPool,
    version_id: Uuid,
    estimator: &str,
    estimator_version: &str,
    params: &Value,
) -> sqlx::Result<Vec<Value>> {
    sqlx::query_scalar(
        "SELECT sufficient FROM results WHERE version_id = $1 AND estimator = $2 AND params = $3
           AND estimator_version = $4 AND sufficient IS NOT NULL",
    )
    .bind(version_id)
    .bind(estimator)
    .bind(params)
    .bind(estimator_version)
    .fetch_all(pool)
    .await
}

/// Look up an idempotency key: its request fingerprint and the batch it created.
pub async fn idempotency_lookup(
    tx: &mut Transaction<'_, Postgres>,
    key: &str,
) -> sqlx::Result<Option<(String, Uuid)>> {
    sqlx::query_as(
        "SELECT request_hash, batch_id FROM idempotency_keys
         WHERE key = $1 AND created_at > now() - interval '24 hours'",
    )
    .bind(key)
    .fetch_optional(&mut **tx)
    .await
}

pub async fn idempotency_store(
    tx: &mut Transaction<'_, Postgres>,
    key: &str,
    request_hash: &str,
    batch_id: Uuid,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO idempotency_keys (key, request_hash, batch_id) VALUES ($1, $2, $3)
         ON CONFLICT (key) DO UPDATE SET request_hash = $2, batch_id = $3, created_at = now()",
    )
    .bind(key)
    .bind(request_hash)
    .bind(batch_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
