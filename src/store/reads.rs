//! Reads of stored results for gates, aliases, history and the information export.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

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
pub fn results_source(m: &crate::domain::metric::MetricRef) -> String {
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
    metric: &crate::domain::metric::MetricRef,
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
