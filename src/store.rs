//! SQL for models, versions, batches and results (the queue's SQL is in `queue`).

use std::collections::HashMap;

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
    b.label_coverage_required, b.pending_jobs, b.released_at
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

// ---------------------------------------------------------------------------------------------
// Gates, aliases, history.

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MetricRow {
    pub version_id: Uuid,
    pub estimator: String,
    pub batch_id: Uuid,
    pub digest: String,
    pub labels_digest: Option<String>,
    pub estimator_version: String,
    pub params: Value,
    pub value: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub ci_level: Option<f64>,
    pub n: i64,
    pub details: Value,
    pub sufficient: Option<Value>,
    pub diagnostics: Option<Value>,
}

impl MetricRow {
    pub fn point(&self) -> crate::gate::Point {
        crate::gate::Point {
            estimator_version: self.estimator_version.clone(),
            params: self.params.clone(),
            value: self.value,
            ci_low: self.ci_low,
            ci_high: self.ci_high,
            ci_level: self.ci_level,
            n: self.n.max(0) as u64,
            details: self.details.clone(),
            sufficient: self.sufficient.clone(),
            diagnostics: self
                .diagnostics
                .as_ref()
                .and_then(|d| serde_json::from_value(d.clone()).ok()),
        }
    }
}

/// Every result of the given estimators for the given versions, oldest first (one statement
/// for all of them).
pub async fn metric_rows(
    pool: &PgPool,
    versions: &[Uuid],
    estimators: &[String],
) -> sqlx::Result<Vec<MetricRow>> {
    sqlx::query_as(
        "SELECT r.version_id, r.estimator, r.batch_id, b.digest, b.labels_digest, r.estimator_version, r.params, r.value, r.ci_low,
                r.ci_high, r.ci_level, r.n, r.details, r.sufficient, r.diagnostics
         FROM results r JOIN batches b ON b.id = r.batch_id
         WHERE r.version_id = ANY($1) AND r.estimator = ANY($2) ORDER BY r.computed_at, r.id",
    )
    .bind(versions)
    .bind(estimators)
    .fetch_all(pool)
    .await
}

/// The relation a metric reads, aliased by the caller: `results`, or for a segment metric
/// (`estimator{key=value}`) the results joined with that segment's rows, with the segment's
/// `value` (estimate), interval, `n`, `details`, `sufficient` and `diagnostics` in place of the
/// whole batch's. The key is `[A-Za-z0-9_]` and the value is written as hex, so nothing from the
/// request reaches the SQL text unescaped.
pub fn results_source(m: &crate::gate::MetricRef) -> String {
    match &m.segment {
        None => "results".into(),
        Some((k, v)) => {
            debug_assert!(crate::domain::segments::valid_key(k));
            let key: String = k
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let hex: String = v.bytes().map(|b| format!("{b:02x}")).collect();
            format!(
                "(SELECT r.id, r.job_id, r.batch_id, r.model_id, r.version_id, r.estimator,
                    r.estimator_version, r.params, s.estimate AS value, s.ci_low, s.ci_high,
                    r.ci_level, r.ci_method, s.n, s.details, s.sufficient, s.diagnostics,
                    r.computed_at
                 FROM results r JOIN result_segments s ON s.result_id = r.id
                 WHERE s.key = '{key}' AND s.value = convert_from(decode('{hex}', 'hex'), 'UTF8'))"
            )
        }
    }
}

/// Every result of one segment metric's series for the given versions, oldest first (as
/// [`metric_rows`], with `estimator` set to the series name `estimator{key=value}`).
pub async fn segment_metric_rows(
    pool: &PgPool,
    versions: &[Uuid],
    metric: &crate::gate::MetricRef,
) -> sqlx::Result<Vec<MetricRow>> {
    let mut rows: Vec<MetricRow> = sqlx::query_as(&format!(
        "SELECT r.version_id, r.estimator, r.batch_id, b.digest, b.labels_digest, r.estimator_version, r.params, r.value, r.ci_low,
                r.ci_high, r.ci_level, r.n, r.details, r.sufficient, r.diagnostics
         FROM {} r JOIN batches b ON b.id = r.batch_id
         WHERE r.version_id = ANY($1) AND r.estimator = $2 ORDER BY r.computed_at, r.id",
        results_source(metric)
    ))
    .bind(versions)
    .bind(&metric.estimator)
    .fetch_all(pool)
    .await?;
    let series = metric.series();
    for r in &mut rows {
        r.estimator = series.clone();
    }
    Ok(rows)
}

/// The sufficient statistics of each segment value of a version's results of one estimator
/// version and params: `(key, value, sufficient)` for [`crate::estimate::pool`].
pub async fn segment_sufficient_stats(
    pool: &PgPool,
    version_id: Uuid,
    estimator: &str,
    estimator_version: &str,
    params: &Value,
) -> sqlx::Result<Vec<(String, String, Option<Value>)>> {
    sqlx::query_as(
        "SELECT s.key, s.value, s.sufficient FROM results r JOIN result_segments s ON s.result_id = r.id
         WHERE r.version_id = $1 AND r.estimator = $2 AND r.params = $3 AND r.estimator_version = $4
         ORDER BY s.key, s.value",
    )
    .bind(version_id)
    .bind(estimator)
    .bind(params)
    .bind(estimator_version)
    .fetch_all(pool)
    .await
}

/// Jobs of a version that are queued or running.
pub async fn unfinished_jobs(pool: &PgPool, version_id: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM jobs j JOIN batches b ON b.id = j.batch_id
         WHERE b.version_id = $1 AND j.state IN ('queued', 'running')",
    )
    .bind(version_id)
    .fetch_one(pool)
    .await
}

/// Queued or running jobs per (version, estimator), for the given versions and estimators;
/// pairs with none are absent.
pub async fn unfinished_jobs_by_estimator(
    pool: &PgPool,
    versions: &[Uuid],
    estimators: &[String],
) -> sqlx::Result<Vec<(Uuid, String, i64)>> {
    sqlx::query_as(
        "SELECT b.version_id, j.estimator, count(*) FROM jobs j JOIN batches b ON b.id = j.batch_id
         WHERE b.version_id = ANY($1) AND j.estimator = ANY($2)
           AND j.state IN ('queued', 'running')
         GROUP BY b.version_id, j.estimator",
    )
    .bind(versions)
    .bind(estimators)
    .fetch_all(pool)
    .await
}

/// Everything a gate evaluation reads about a model before its results, in one statement.
pub struct GateContext {
    pub model_id: Uuid,
    /// The version of that name (not alias), when it exists.
    pub version: Option<(Uuid, String)>,
    /// The latest version of the named policy and its rules, when asked for and stored.
    pub policy: Option<(i32, Value)>,
    /// Every alias of the model and the version it names.
    pub aliases: HashMap<String, (Uuid, String)>,
}

/// The model named `model`, its version `version`, the latest version of policy `policy` and its
/// aliases (`None` when the model does not exist).
pub async fn gate_context(
    pool: &PgPool,
    model: &str,
    version: &str,
    policy: Option<&str>,
) -> sqlx::Result<Option<GateContext>> {
    type Row = (
        Uuid,
        Option<Uuid>,
        Option<String>,
        Option<i32>,
        Option<Value>,
        Option<Vec<String>>,
        Option<Vec<Uuid>>,
        Option<Vec<String>>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT m.id, v.id, v.name, p.version, p.rules, a.aliases, a.ids, a.names
         FROM models m
         LEFT JOIN model_versions v ON v.model_id = m.id AND v.name = $2
         LEFT JOIN LATERAL (
             SELECT version, rules FROM gate_policies
             WHERE model_id = m.id AND name = $3 ORDER BY version DESC LIMIT 1) p ON true
         LEFT JOIN LATERAL (
             SELECT array_agg(al.alias) AS aliases, array_agg(av.id) AS ids,
                    array_agg(av.name) AS names
             FROM aliases al JOIN model_versions av ON av.id = al.version_id
             WHERE al.model_id = m.id) a ON true
         WHERE m.name = $1",
    )
    .bind(model)
    .bind(version)
    .bind(policy)
    .fetch_optional(pool)
    .await?;
    Ok(
        row.map(|(model_id, vid, vname, pv, rules, al, ids, names)| {
            let aliases = al
                .unwrap_or_default()
                .into_iter()
                .zip(
                    ids.unwrap_or_default()
                        .into_iter()
                        .zip(names.unwrap_or_default()),
                )
                .collect();
            GateContext {
                model_id,
                version: vid.zip(vname),
                policy: pv.zip(rules),
                aliases,
            }
        }),
    )
}

/// A model that a stored gate policy or a live monitor watches, with what `/metrics` needs to
/// decide which of its results to export.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WatchedModel {
    pub model: String,
    /// `[{"name": …, "rules": […]}]`: the latest version of each gate policy.
    pub policies: Value,
    /// `[spec, …]`: the latest version of each monitor not deleted.
    pub monitors: Value,
    /// The model's newest version.
    pub newest_id: Option<Uuid>,
    pub newest_name: Option<String>,
    /// `[{"alias": …, "id": …, "name": …}]`: every alias and the version it names.
    pub aliases: Value,
    /// `[{"id": …, "name": …}]`: the versions named by a monitor's `target.version`.
    pub named: Value,
}

/// Every model with a gate policy or a live monitor (one statement), by model name.
pub async fn watched_models(pool: &PgPool) -> sqlx::Result<Vec<WatchedModel>> {
    sqlx::query_as(
        "WITH p AS (
             SELECT DISTINCT ON (model_id, name) model_id, name, rules FROM gate_policies
             ORDER BY model_id, name, version DESC),
         mon AS (
             SELECT DISTINCT ON (model_id, name) model_id, spec FROM monitors WHERE deleted_at IS NULL
             ORDER BY model_id, name, version DESC),
         ids AS (SELECT model_id FROM p UNION SELECT model_id FROM mon)
         SELECT md.name AS model,
                coalesce((SELECT jsonb_agg(jsonb_build_object('name', p.name, 'rules', p.rules))
                          FROM p WHERE p.model_id = md.id), '[]') AS policies,
                coalesce((SELECT jsonb_agg(mon.spec) FROM mon WHERE mon.model_id = md.id), '[]') AS monitors,
                nv.id AS newest_id, nv.name AS newest_name,
                coalesce((SELECT jsonb_agg(jsonb_build_object('alias', al.alias, 'id', av.id, 'name', av.name))
                          FROM aliases al JOIN model_versions av ON av.id = al.version_id
                          WHERE al.model_id = md.id), '[]') AS aliases,
                coalesce((SELECT jsonb_agg(jsonb_build_object('id', v.id, 'name', v.name))
                          FROM model_versions v WHERE v.model_id = md.id AND v.name IN (
                              SELECT mon.spec -> 'target' ->> 'version' FROM mon
                              WHERE mon.model_id = md.id)), '[]') AS named
         FROM ids JOIN models md ON md.id = ids.model_id
         LEFT JOIN LATERAL (
             SELECT id, name FROM model_versions WHERE model_id = md.id
             ORDER BY created_at DESC, id DESC LIMIT 1) nv ON true
         ORDER BY md.name",
    )
    .fetch_all(pool)
    .await
}

/// The most recent result of a (version, estimator) pair.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LatestResult {
    pub version_id: Uuid,
    pub estimator: String,
    /// Nats.
    pub value: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub details: Value,
    pub computed_at: DateTime<Utc>,
}

/// The most recent result of each of the given estimators for each of the given versions (pairs
/// without a result are absent).
pub async fn latest_results_of(
    pool: &PgPool,
    versions: &[Uuid],
    estimators: &[String],
) -> sqlx::Result<Vec<LatestResult>> {
    sqlx::query_as(
        "SELECT DISTINCT ON (version_id, estimator) version_id, estimator, value, ci_low, ci_high,
                details, computed_at
         FROM results WHERE version_id = ANY($1) AND estimator = ANY($2)
         ORDER BY version_id, estimator, computed_at DESC, id DESC",
    )
    .bind(versions)
    .bind(estimators)
    .fetch_all(pool)
    .await
}

pub async fn model_id(pool: &PgPool, name: &str) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT id FROM models WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await
}

/// A model's id and its results generation (bumped whenever a result is added or removed).
pub async fn model_generation(pool: &PgPool, name: &str) -> sqlx::Result<Option<(Uuid, i64)>> {
    sqlx::query_as("SELECT id, results_generation FROM models WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await
}

/// A version of a model by name (not alias).
pub async fn version_by_name(
    pool: &PgPool,
    model_id: Uuid,
    name: &str,
) -> sqlx::Result<Option<(Uuid, String)>> {
    sqlx::query_as("SELECT id, name FROM model_versions WHERE model_id = $1 AND name = $2")
        .bind(model_id)
        .bind(name)
        .fetch_optional(pool)
        .await
}

/// Resolve a version reference: an alias, then a version name; `previous` is the version created
/// just before `relative_to`.
pub async fn resolve_version(
    pool: &PgPool,
    model_id: Uuid,
    reference: &str,
    relative_to: Option<Uuid>,
) -> sqlx::Result<Option<(Uuid, String)>> {
    if reference == "previous" {
        let Some(rel) = relative_to else {
            return Ok(None);
        };
        return sqlx::query_as(
            "SELECT v.id, v.name FROM model_versions v, model_versions c
             WHERE c.id = $2 AND v.model_id = $1 AND (v.created_at, v.id) < (c.created_at, c.id)
             ORDER BY v.created_at DESC, v.id DESC LIMIT 1",
        )
        .bind(model_id)
        .bind(rel)
        .fetch_optional(pool)
        .await;
    }
    let alias: Option<(Uuid, String)> = sqlx::query_as(
        "SELECT v.id, v.name FROM aliases a JOIN model_versions v ON v.id = a.version_id
         WHERE a.model_id = $1 AND a.alias = $2",
    )
    .bind(model_id)
    .bind(reference)
    .fetch_optional(pool)
    .await?;
    match alias {
        Some(a) => Ok(Some(a)),
        None => version_by_name(pool, model_id, reference).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Retention.

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
