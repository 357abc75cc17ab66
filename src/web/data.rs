//! The dashboard's SQL. Every query that can touch a model's results goes through an index:
//! `results_history` (model, estimator, time) for the history chart, `results_version_estimator`
//! for the latest value per version, `batches_version_created` for batch lists and counts.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::domain::estimators::Kind;
use crate::domain::metric::MetricRef;

/// A read-only transaction for one page: one consistent snapshot, and no JIT compilation (the
/// planner's estimates for the lateral joins can pass `jit_above_cost`, and compiling costs far
/// more than these index lookups).
pub async fn snapshot(pool: &PgPool) -> sqlx::Result<Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SET LOCAL jit = off").execute(&mut *tx).await?;
    Ok(tx)
}

pub fn estimator_ids() -> Vec<String> {
    Kind::ALL.iter().map(|k| k.id().to_string()).collect()
}

#[derive(Debug, sqlx::FromRow)]
pub struct ModelSummary {
    pub name: String,
    pub version_count: i64,
    pub batch_count: i64,
    pub last_upload_at: Option<DateTime<Utc>>,
    pub latest_version_id: Option<Uuid>,
    pub latest_version: Option<String>,
    pub verdict: Option<String>,
    pub verdict_version: Option<String>,
    pub verdict_at: Option<DateTime<Utc>>,
}

/// Models by name with their newest version and last gate decision (at most `limit`, after the
/// name `after`). The models shown on the index: every model, or only `only` (a key limited to
/// some models). Counts come from per-model index ranges (`model_versions_model_created`,
/// `batches_model_created_all`), not from a probe per version.
pub async fn models(
    c: &mut PgConnection,
    only: Option<&[String]>,
    after: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<ModelSummary>> {
    sqlx::query_as(
        "SELECT m.name,
                (SELECT count(*) FROM model_versions v WHERE v.model_id = m.id) AS version_count,
                (SELECT count(*) FROM batches b WHERE b.model_id = m.id) AS batch_count,
                (SELECT max(b.created_at) FROM batches b WHERE b.model_id = m.id) AS last_upload_at,
                lv.id AS latest_version_id, lv.name AS latest_version,
                ld.verdict, ld.version AS verdict_version, ld.evaluated_at AS verdict_at
         FROM models m
         LEFT JOIN LATERAL (
             SELECT v.id, v.name FROM model_versions v WHERE v.model_id = m.id
             ORDER BY v.created_at DESC, v.id DESC LIMIT 1) lv ON true
         LEFT JOIN LATERAL (
             SELECT d.verdict, v.name AS version, d.evaluated_at
             FROM gate_decisions d JOIN model_versions v ON v.id = d.version_id
             WHERE d.model_id = m.id ORDER BY d.evaluated_at DESC, d.id DESC LIMIT 1) ld ON true
         WHERE ($2::text[] IS NULL OR m.name = ANY($2)) AND ($3::text IS NULL OR m.name > $3)
         ORDER BY m.name LIMIT $1",
    )
    .bind(limit)
    .bind(only)
    .bind(after)
    .fetch_all(&mut *c)
    .await
}

pub async fn model(c: &mut PgConnection, name: &str) -> sqlx::Result<Option<(Uuid, String)>> {
    sqlx::query_as("SELECT id, name FROM models WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *c)
        .await
}

/// The latest result of one estimator for one version (values in nats).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Latest {
    pub version_id: Uuid,
    pub estimator: String,
    pub value: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub batch_id: Uuid,
    pub computed_at: DateTime<Utc>,
    pub efficiency: Option<f64>,
}

/// The latest result per (version, estimator), one backward index probe each.
pub async fn latest(c: &mut PgConnection, versions: &[Uuid]) -> sqlx::Result<Vec<Latest>> {
    latest_of(c, versions, &estimator_ids()).await
}

/// [`latest`] for some estimators only.
pub async fn latest_of(
    c: &mut PgConnection,
    versions: &[Uuid],
    estimators: &[String],
) -> sqlx::Result<Vec<Latest>> {
    if versions.is_empty() {
        return Ok(vec![]);
    }
    sqlx::query_as(
        "SELECT v.vid AS version_id, e.est AS estimator, r.value, r.ci_low, r.ci_high, r.batch_id,
                r.computed_at,
                CASE WHEN jsonb_typeof(r.details -> 'efficiency') = 'number'
                     THEN (r.details ->> 'efficiency')::float8 END AS efficiency
         FROM unnest($1::uuid[]) AS v(vid)
         CROSS JOIN unnest($2::text[]) AS e(est)
         CROSS JOIN LATERAL (
             SELECT value, ci_low, ci_high, batch_id, computed_at, details FROM results r
             WHERE r.version_id = v.vid AND r.estimator = e.est
             ORDER BY r.computed_at DESC LIMIT 1) r",
    )
    .bind(versions)
    .bind(estimators)
    .fetch_all(&mut *c)
    .await
}

#[derive(Debug, sqlx::FromRow)]
pub struct VersionInfo {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub batch_count: i64,
    pub last_upload: Option<DateTime<Utc>>,
    pub aliases: Vec<String>,
}

/// A model's versions, newest first (at most `limit`), with batch counts and last upload from
/// the batch index alone (no heap reads, so no sample totals).
pub async fn versions(
    c: &mut PgConnection,
    model_id: Uuid,
    limit: i64,
) -> sqlx::Result<Vec<VersionInfo>> {
    sqlx::query_as(
        "SELECT v.id, v.name, v.created_at, s.batch_count, s.last_upload,
                ARRAY(SELECT a.alias FROM aliases a WHERE a.version_id = v.id ORDER BY a.alias) AS aliases
         FROM model_versions v
         CROSS JOIN LATERAL (
             SELECT count(*) AS batch_count, max(b.created_at) AS last_upload
             FROM batches b WHERE b.version_id = v.id) s
         WHERE v.model_id = $1
         ORDER BY v.created_at DESC, v.id DESC LIMIT $2",
    )
    .bind(model_id)
    .bind(limit)
    .fetch_all(&mut *c)
    .await
}

/// The names of some versions, oldest first.
pub async fn version_names(
    c: &mut PgConnection,
    ids: &[Uuid],
) -> sqlx::Result<Vec<(Uuid, String)>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    sqlx::query_as("SELECT id, name FROM model_versions WHERE id = ANY($1) ORDER BY created_at, id")
        .bind(ids)
        .fetch_all(&mut *c)
        .await
}

/// Estimators that have at least one result for the model.
pub async fn estimators_with_results(
    c: &mut PgConnection,
    model_id: Uuid,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT e.est FROM unnest($2::text[]) WITH ORDINALITY AS e(est, i)
         WHERE EXISTS (SELECT 1 FROM results r WHERE r.model_id = $1 AND r.estimator = e.est)
         ORDER BY e.i",
    )
    .bind(model_id)
    .bind(estimator_ids())
    .fetch_all(&mut *c)
    .await
}

/// One downsampled group of a metric's history (values in nats for information metrics).
#[derive(Debug, sqlx::FromRow)]
pub struct HistGroup {
    pub version_id: Uuid,
    pub t_first: f64,
    pub t_last: f64,
    pub t_mean: f64,
    pub min: Option<f64>,
    pub mean: Option<f64>,
    pub max: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub count: i64,
    pub neg_inf: i64,
}

/// Results read per (time bucket, version) for a statistic kept in `details` (the JSON lives in
/// the heap, often TOASTed; the value, in the index).
pub const STATISTIC_SAMPLE: i32 = 12;

/// The downsampling query of [`history`]: `$1` model, `$2` estimator, `$3` buckets, `$4` start
/// (seconds since the epoch), `$5` span in seconds; with `statistic`, `$6` the `details` key and
/// `$7` the sample size per group.
///
/// An estimator's value: each row's time and finite value are computed once (the fenced
/// subquery, an index-only scan of `results_history`), then grouped per bucket and version.
/// A statistic: the rows are bucketed from the index alone (ids collected in time order), and only
/// up to `$7` evenly spread results per group are fetched for their `details` (`count` still
/// counts every result).
pub fn history_sql(statistic: bool) -> String {
    history_sql_from(statistic, "results")
}

/// [`history_sql`] over another relation with the columns of `results` (a segment metric's,
/// [`store::results_source`]).
pub fn history_sql_from(statistic: bool, src: &str) -> String {
    let finite = |x: &str| format!("CASE WHEN {x} > '-Infinity' AND {x} < 'Infinity' THEN {x} END");
    if statistic {
        let v = "(r.details ->> $6)::float8";
        return format!(
            "WITH g AS (
                SELECT k, version_id, min(e) AS t_first, max(e) AS t_last, avg(e) AS t_mean,
                       count(*) AS n, array_agg(id) AS ids
                FROM (SELECT id, version_id, e,
                             least(greatest(floor($3 * (e - $4) / $5)::int, 0), $3 - 1) AS k
                      FROM (SELECT r.id, r.version_id, date_part('epoch', r.computed_at) AS e
                            FROM {src} r WHERE r.model_id = $1 AND r.estimator = $2
                            OFFSET 0) r) x
                GROUP BY k, version_id)
             SELECT g.version_id, g.t_first, g.t_last, g.t_mean, s.min, s.mean, s.max,
                    NULL::float8 AS ci_low, NULL::float8 AS ci_high, g.n AS count, 0::bigint AS neg_inf
             FROM g CROSS JOIN LATERAL (
                SELECT min(v) AS min, avg(v) AS mean, max(v) AS max
                FROM (SELECT {} AS v FROM {src} r
                      WHERE r.id = ANY (ARRAY(
                                SELECT g.ids[1 + (i * g.n) / least(g.n, $7)]
                                FROM generate_series(0, least(g.n, $7) - 1) i))
                        AND jsonb_typeof(r.details -> $6) = 'number') y) s
             ORDER BY g.t_mean",
            finite(v)
        );
    }
    format!(
        "SELECT version_id, min(e) AS t_first, max(e) AS t_last, avg(e) AS t_mean,
                min(v) AS min, avg(v) AS mean, max(v) AS max,
                avg(lo) AS ci_low, avg(hi) AS ci_high,
                count(*) AS count, count(*) FILTER (WHERE neg_inf) AS neg_inf
         FROM (SELECT r.version_id, date_part('epoch', r.computed_at) AS e,
                      {} AS v, {} AS lo, {} AS hi, r.value = '-Infinity' AS neg_inf
               FROM {src} r
               WHERE r.model_id = $1 AND r.estimator = $2
               OFFSET 0) x
         GROUP BY least(greatest(floor($3 * (e - $4) / $5)::int, 0), $3 - 1), version_id
         ORDER BY t_mean",
        finite("r.value"),
        finite("r.ci_low"),
        finite("r.ci_high"),
    )
}

/// Results of a metric above which its chart is read from the rollup cells (at or below it, from
/// the rows themselves: buckets of any width, each result at its own time).
pub const CELLS_ABOVE: i64 = 20_000;

/// Results read for a statistic over the whole chart when it is drawn from cells (per point, at
/// most [`STATISTIC_SAMPLE`] and at least one).
pub const STATISTIC_TOTAL: i32 = 2_400;

/// How a chart is read from the rollup cells: cells of `unit` seconds, buckets of `width` seconds
/// (a whole number of cells) from `start` (epoch seconds, a cell boundary).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellPlan {
    pub unit: i32,
    pub width: f64,
    pub start: f64,
}

/// The cell size and bucket width for `buckets` buckets over `[lo, hi]` (epoch seconds): the
/// largest cell (a day, an hour, a minute) no wider than a bucket, and buckets a whole number of
/// such cells wide, so that a bucket's aggregate is exactly its cells' (at most `buckets` + 1
/// buckets).
pub fn cell_plan(lo: f64, hi: f64, buckets: i32) -> CellPlan {
    let target = (hi - lo).max(0.0) / buckets.max(1) as f64;
    let unit = [86_400, 3_600]
        .into_iter()
        .find(|&u| target >= u as f64)
        .unwrap_or(60);
    let u = unit as f64;
    let start = (lo / u).floor() * u;
    let width = ((hi - start) / buckets.max(1) as f64 / u).ceil().max(1.0) * u;
    CellPlan { unit, width, start }
}

/// The chart's groups from the rollup cells (see [`cell_plan`]); a statistic reads up to `$7`
/// results per group (at most `$8` over the chart), chosen at evenly spaced times within the
/// group (each the first result at or after its time, found in `results_version_estimator`).
pub fn cells_sql(statistic: bool) -> String {
    let groups = "SELECT version_id, min(t_min) AS t0, max(t_max) AS t1,
                         date_part('epoch', min(t_min)) AS t_first,
                         date_part('epoch', max(t_max)) AS t_last,
                         $4 + sum((date_part('epoch', cell) - $4) * n + t_sum) / sum(n)::float8 AS t_mean,
                         min(min) AS min, sum(sum) / nullif(sum(n_finite), 0)::float8 AS mean,
                         max(max) AS max,
                         sum(lo_sum) / nullif(sum(lo_n), 0)::float8 AS ci_low,
                         sum(hi_sum) / nullif(sum(hi_n), 0)::float8 AS ci_high,
                         sum(n)::bigint AS count, sum(n_neg_inf)::bigint AS neg_inf
                  FROM result_rollups
                  WHERE model_id = $1 AND estimator = $2 AND unit_s = $3
                  GROUP BY floor((date_part('epoch', cell) - $4) / $5), version_id";
    if !statistic {
        return format!(
            "SELECT version_id, t_first, t_last, t_mean, min, mean, max, ci_low, ci_high, count, neg_inf
             FROM ({groups}) g ORDER BY t_mean"
        );
    }
    format!(
        "WITH g AS ({groups}),
              m AS (SELECT greatest(1, least($7, $8 / greatest(count(*), 1)))::int AS m FROM g)
         SELECT g.version_id, g.t_first, g.t_last, g.t_mean, s.min, s.mean, s.max,
                NULL::float8 AS ci_low, NULL::float8 AS ci_high, g.count, 0::bigint AS neg_inf
         FROM g CROSS JOIN m CROSS JOIN LATERAL (
             SELECT min(v) AS min, avg(v) AS mean, max(v) AS max
             FROM (SELECT DISTINCT p.id, rollup_finite((p.details ->> $6)::float8) AS v
                   FROM generate_series(0, least(g.count, m.m) - 1) i
                   CROSS JOIN LATERAL (
                       SELECT r.id, r.details FROM results r
                       WHERE r.version_id = g.version_id AND r.estimator = $2
                         AND r.computed_at >= g.t0 + (g.t1 - g.t0)
                                              * (i::float8 / greatest(least(g.count, m.m) - 1, 1))
                       ORDER BY r.computed_at LIMIT 1) p
                   WHERE jsonb_typeof(p.details -> $6) = 'number') y) s
         ORDER BY g.t_mean"
    )
}

/// A metric's history downsampled in SQL: about `buckets` equal-width time buckets over the
/// metric's time span, min/mean/max (finite values only) and the mean interval per bucket and
/// version. Up to [`CELLS_ABOVE`] results this reads the rows (for an estimator's value, an
/// index-only scan of `results_history`); beyond, the rollup cells ([`cells_sql`]), with buckets
/// aligned to whole cells.
pub async fn history(
    c: &mut PgConnection,
    model_id: Uuid,
    metric: &MetricRef,
    buckets: i32,
) -> sqlx::Result<Vec<HistGroup>> {
    history_with(c, model_id, metric, buckets, CELLS_ABOVE).await
}

/// [`history`] with the threshold for cells given (tests compare both paths on few results).
pub async fn history_with(
    c: &mut PgConnection,
    model_id: Uuid,
    metric: &MetricRef,
    buckets: i32,
    cells_above: i64,
) -> sqlx::Result<Vec<HistGroup>> {
    let span: (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT min(computed_at), max(computed_at) FROM results WHERE model_id = $1 AND estimator = $2",
    )
    .bind(model_id)
    .bind(&metric.estimator)
    .fetch_one(&mut *c)
    .await?;
    let (Some(lo), Some(hi)) = span else {
        return Ok(vec![]);
    };
    let lo_s = lo.timestamp_micros() as f64 / 1e6;
    let hi_s = hi.timestamp_micros() as f64 / 1e6;
    if metric.segment.is_none() {
        // The day cells count every result of the metric (a few hundred cells a year).
        let total: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(n), 0)::bigint FROM result_rollups
             WHERE model_id = $1 AND estimator = $2 AND unit_s = 86400",
        )
        .bind(model_id)
        .bind(&metric.estimator)
        .fetch_one(&mut *c)
        .await?;
        if total > cells_above {
            let plan = cell_plan(lo_s, hi_s, buckets);
            let sql = cells_sql(metric.statistic.is_some());
            let q = sqlx::query_as(&sql)
                .bind(model_id)
                .bind(&metric.estimator)
                .bind(plan.unit)
                .bind(plan.start)
                .bind(plan.width);
            let q = match &metric.statistic {
                Some(s) => q
                    .bind(s.clone())
                    .bind(STATISTIC_SAMPLE)
                    .bind(STATISTIC_TOTAL),
                None => q,
            };
            return q.fetch_all(&mut *c).await;
        }
    }
    let secs = (hi_s - lo_s).max(1e-6);
    let sql = history_sql_from(
        metric.statistic.is_some(),
        &crate::store::results_source(metric),
    );
    let q = sqlx::query_as(&sql)
        .bind(model_id)
        .bind(&metric.estimator)
        .bind(buckets)
        .bind(lo_s)
        .bind(secs);
    let q = match &metric.statistic {
        Some(s) => q.bind(s.clone()).bind(STATISTIC_SAMPLE),
        None => q,
    };
    q.fetch_all(&mut *c).await
}

#[derive(Debug, sqlx::FromRow)]
pub struct AliasEvent {
    pub alias: String,
    pub version: Option<String>,
    pub at: DateTime<Utc>,
}

pub async fn alias_events(
    c: &mut PgConnection,
    model_id: Uuid,
    limit: i64,
) -> sqlx::Result<Vec<AliasEvent>> {
    sqlx::query_as(
        "SELECT e.alias, v.name AS version, e.at FROM alias_events e
         LEFT JOIN model_versions v ON v.id = e.version_id
         WHERE e.model_id = $1 ORDER BY e.at DESC, e.id DESC LIMIT $2",
    )
    .bind(model_id)
    .bind(limit)
    .fetch_all(&mut *c)
    .await
}

/// Stored decisions (as returned by the API), newest first.
pub async fn decisions(
    c: &mut PgConnection,
    model_id: Uuid,
    limit: i64,
) -> sqlx::Result<Vec<Value>> {
    sqlx::query_scalar(
        "SELECT decision FROM gate_decisions WHERE model_id = $1
         ORDER BY evaluated_at DESC, id DESC LIMIT $2",
    )
    .bind(model_id)
    .bind(limit)
    .fetch_all(&mut *c)
    .await
}

/// A monitor on the model page: name, target, status, severity, last verdict, last evaluated.
pub type MonitorRow = (
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
);

/// The model's monitors and where each stands, by name.
pub async fn monitors(c: &mut PgConnection, model_id: Uuid) -> sqlx::Result<Vec<MonitorRow>> {
    sqlx::query_as(
        "SELECT name, target_kind, target, status, severity, last_verdict, last_evaluated_at
         FROM monitor_state WHERE model_id = $1 ORDER BY name",
    )
    .bind(model_id)
    .fetch_all(&mut *c)
    .await
}

/// Incidents of the model, the firing ones first, then the newest (at most `limit`): id,
/// monitor, state, severity, version, opened, resolved.
pub type IncidentRow = (
    Uuid,
    String,
    String,
    String,
    Option<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

pub async fn incidents(
    c: &mut PgConnection,
    model_id: Uuid,
    limit: i64,
) -> sqlx::Result<Vec<IncidentRow>> {
    sqlx::query_as(
        "SELECT id, monitor, state, severity, version, opened_at, resolved_at FROM incidents
         WHERE model_id = $1 ORDER BY state = 'firing' DESC, opened_at DESC, id DESC LIMIT $2",
    )
    .bind(model_id)
    .bind(limit)
    .fetch_all(&mut *c)
    .await
}

/// One incident row of the list.
#[derive(Debug, sqlx::FromRow)]
pub struct IncidentLine {
    pub id: Uuid,
    pub model: String,
    pub monitor: String,
    pub state: String,
    pub severity: String,
    pub version: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub deliveries: i64,
    pub dead: i64,
}

/// Incidents of every model (or of `only`), the firing ones first, then the newest, with how
/// many messages were written for each and how many could not be delivered.
pub async fn all_incidents(
    c: &mut PgConnection,
    only: Option<&[String]>,
    limit: i64,
) -> sqlx::Result<Vec<IncidentLine>> {
    sqlx::query_as(
        "SELECT i.id, m.name AS model, i.monitor, i.state, i.severity, i.version, i.opened_at,
                i.resolved_at, d.deliveries, d.dead
         FROM incidents i JOIN models m ON m.id = i.model_id
         CROSS JOIN LATERAL (
             SELECT count(*) AS deliveries, count(*) FILTER (WHERE d.state = 'dead') AS dead
             FROM webhook_deliveries d WHERE d.incident_id = i.id) d
         WHERE $2::text[] IS NULL OR m.name = ANY($2)
         ORDER BY i.state = 'firing' DESC, i.opened_at DESC, i.id DESC LIMIT $1",
    )
    .bind(limit)
    .bind(only)
    .fetch_all(&mut *c)
    .await
}

/// One incident with its model's name and the decision that last changed it.
#[derive(Debug, sqlx::FromRow)]
pub struct IncidentDetail {
    pub model: String,
    pub monitor: String,
    pub state: String,
    pub severity: String,
    pub version: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub last_decision_id: Uuid,
    pub decision: Option<Value>,
}

pub async fn incident(c: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<IncidentDetail>> {
    sqlx::query_as(
        "SELECT m.name AS model, i.monitor, i.state, i.severity, i.version, i.opened_at,
                i.resolved_at, i.last_decision_id,
                (SELECT d.decision FROM gate_decisions d WHERE d.id = i.last_decision_id) AS decision
         FROM incidents i JOIN models m ON m.id = i.model_id WHERE i.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *c)
    .await
}

/// A message written for an incident (the secret is not read).
#[derive(Debug, sqlx::FromRow)]
pub struct Delivery {
    pub event: String,
    pub channel: String,
    pub kind: String,
    pub url: String,
    pub state: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

pub async fn deliveries(c: &mut PgConnection, incident: Uuid) -> sqlx::Result<Vec<Delivery>> {
    sqlx::query_as(
        "SELECT event, channel, kind, url, state, attempts, last_status, last_error, created_at,
                delivered_at
         FROM webhook_deliveries WHERE incident_id = $1 ORDER BY created_at, id",
    )
    .bind(incident)
    .fetch_all(&mut *c)
    .await
}

/// The current version of each gate policy of a model.
pub async fn policies(
    c: &mut PgConnection,
    model_id: Uuid,
) -> sqlx::Result<Vec<(String, i32, Value)>> {
    sqlx::query_as(
        "SELECT DISTINCT ON (name) name, version, rules FROM gate_policies WHERE model_id = $1
         ORDER BY name, version DESC",
    )
    .bind(model_id)
    .fetch_all(&mut *c)
    .await
}

#[derive(Debug, sqlx::FromRow)]
pub struct BatchLine {
    pub id: Uuid,
    pub version: String,
    pub task: String,
    pub n: i64,
    pub created_at: DateTime<Utc>,
    pub jobs: i64,
    pub unfinished: i64,
    pub failed: i64,
}

/// A model's newest batches (through each version's batch index), with their job counts. The
/// newest `limit` batches are chosen first, so jobs are counted for those batches only (not for
/// every version's newest ones).
pub async fn recent_batches(
    c: &mut PgConnection,
    model_id: Uuid,
    limit: i64,
) -> sqlx::Result<Vec<BatchLine>> {
    sqlx::query_as(
        "SELECT b.id, v.name AS version, b.task, b.n, b.created_at,
                j.jobs, j.unfinished, j.failed
         FROM (SELECT b.id, b.version_id, b.task, b.n, b.created_at
               FROM model_versions v
               CROSS JOIN LATERAL (SELECT b.id, b.version_id, b.task, b.n, b.created_at
                                   FROM batches b WHERE b.version_id = v.id
                                   ORDER BY b.created_at DESC, b.id DESC LIMIT $2) b
               WHERE v.model_id = $1
               ORDER BY b.created_at DESC, b.id DESC LIMIT $2) b
         JOIN model_versions v ON v.id = b.version_id
         CROSS JOIN LATERAL (
             SELECT count(*) AS jobs,
                    count(*) FILTER (WHERE j.state IN ('queued', 'running')) AS unfinished,
                    count(*) FILTER (WHERE j.state = 'failed') AS failed
             FROM jobs j WHERE j.batch_id = b.id) j
         ORDER BY b.created_at DESC, b.id DESC",
    )
    .bind(model_id)
    .bind(limit)
    .fetch_all(&mut *c)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_plans_use_whole_cells_and_at_most_one_bucket_more() {
        const DAY: f64 = 86_400.0;
        // A year in 240 buckets: day cells, two days a bucket.
        let p = cell_plan(1.7e9, 1.7e9 + 365.0 * DAY, 240);
        assert_eq!(p.unit, 86_400);
        assert_eq!(p.width, 2.0 * DAY);
        assert!(p.start <= 1.7e9 && p.start % DAY == 0.0);
        // Ten minutes: minute cells, one a bucket.
        let p = cell_plan(1000.5, 1600.5, 240);
        assert_eq!((p.unit, p.width, p.start), (60, 60.0, 960.0));
        // One instant.
        let p = cell_plan(5.0, 5.0, 240);
        assert_eq!((p.unit, p.width, p.start), (60, 60.0, 0.0));
        for (lo, hi, b) in [
            (0.0, 3.0e7, 240),
            (123.4, 9.9e6, 7),
            (1e9, 1e9 + 86_399.0, 240),
        ] {
            let p = cell_plan(lo, hi, b);
            let u = p.unit as f64;
            assert_eq!(p.width % u, 0.0, "{p:?}");
            assert!(p.width >= (hi - lo) / b as f64, "{p:?}");
            let count = ((hi - p.start) / p.width).floor() as i32 + 1;
            assert!(count <= b + 1, "{count} buckets for {p:?}");
        }
    }
}
