//! A model's information over time, and its relation to business KPIs.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{path_name, query_name, PageQuery};
use super::state::AppState;
use super::views::finite;
use crate::domain::metric::MetricRef;
use crate::domain::unit::Unit;
use crate::error::{Error, Problem, Result};
use crate::{stats, store};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// `estimator[.statistic][{key=value}]`, e.g. `semantic_mi`, `shannon_mi.nmi`, or one
    /// segment value's series `semantic_mi{region=eu}` (`{key=value}` names a segment key of the
    /// batches and one of its values, `__other__` for the values beyond the cap). A segment value
    /// never seen gives an empty history.
    #[param(
        pattern = r#"^(shannon_mi|semantic_mi|ce_bound|implied_mi|rg_curve|ksg|mixed_ksg|infonce|mine|nwj|smile)(\.[A-Za-z0-9_]+)?(\{[A-Za-z][A-Za-z0-9_]{0,31}=[^{}=,"\x00-\x1f\x7f-\x9f]{1,64}\})?$"#
    )]
    pub metric: String,
    /// Only this version (name or alias).
    pub version: Option<String>,
    /// From this time (RFC 3339, inclusive).
    pub from: Option<DateTime<Utc>>,
    /// Up to this time (RFC 3339, exclusive).
    pub to: Option<DateTime<Utc>>,
    /// Downsample server-side to at most this many time buckets (1–10000). Buckets are equal
    /// width; when a bucket spans a minute or more they are aligned to whole UTC minutes, hours or
    /// days (the range's start rounded down), so they are read from pre-aggregated cells.
    #[param(minimum = 1, maximum = 10000)]
    pub buckets: Option<u32>,
    /// `bits` (default) or `nats`.
    pub unit: Option<Unit>,
    /// Page size for raw points, 1–1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Cursor from the previous page (raw points only).
    pub cursor: Option<String>,
}

/// One result in time.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPoint {
    pub t: DateTime<Utc>,
    pub version: String,
    pub batch_id: Uuid,
    pub value: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
}

/// A time bucket of downsampled history (finite values only in min/mean/max; `count` counts all).
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryBucket {
    pub t_start: DateTime<Utc>,
    pub t_end: DateTime<Utc>,
    pub min: Option<f64>,
    pub mean: Option<f64>,
    pub max: Option<f64>,
    pub count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct History {
    pub metric: String,
    pub unit: Unit,
    /// Raw points (without `buckets`), oldest first.
    pub items: Vec<HistoryPoint>,
    /// Downsampled buckets (with `buckets`).
    pub buckets: Vec<HistoryBucket>,
    pub next_cursor: Option<String>,
}

/// The SQL expression of a metric's value over `results r` (nats); a statistic's name is bound
/// as parameter `$idx`.
fn value_sql(m: &MetricRef, idx: usize) -> (String, Option<String>) {
    match &m.statistic {
        None => ("r.value".into(), None),
        Some(s) => (format!("(r.details ->> ${idx})::float8"), Some(s.clone())),
    }
}

/// A metric's history: raw points (cursor-paged), or with `buckets=B` at most B equal-width time
/// buckets of {t_start, t_end, min, mean, max, count}.
///
/// With buckets of a minute or longer, the bucket edges are aligned to whole UTC minutes, hours or
/// days (the first starts at the range's start rounded down; `t_start`/`t_end` are clipped to the
/// range asked for), and the primary value is read from per-cell rollups kept as results arrive,
/// so the cost grows with the number of cells, not of results. Statistics (`estimator.statistic`)
/// and finer buckets are computed from the result rows.
#[utoipa::path(
    get,
    path = "/v1/models/{model}/history",
    tag = "history",
    params(("model" = String, Path), HistoryQuery),
    responses(
        (status = 200, body = History),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn history(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Response> {
    let name = path_name("model", &model)?;
    query_name("version", q.version.as_deref())?;
    let (model_id, generation) = store::model_generation(&state.pool, name.as_str())
        .await?
        .ok_or_else(|| Error::NotFound(format!("model {name} not found")))?;
    let version_id = match &q.version {
        Some(v) => Some(
            store::resolve_version(&state.pool, model_id, v, None)
                .await?
                .ok_or_else(|| Error::NotFound(format!("no version or alias {v:?}")))?
                .0,
        ),
        None => None,
    };
    // Downsampled answers are cached per query while the model's results stay the same (the
    // generation is read before computing, so a cached answer is never older than its key).
    let key = q.buckets.map(|b| {
        format!(
            "{model_id}|{}|{version_id:?}|{:?}|{:?}|{b}|{:?}",
            q.metric, q.from, q.to, q.unit
        )
    });
    if let Some(body) = key
        .as_ref()
        .and_then(|k| state.caches.history.get(k, generation))
    {
        return Ok(json_body(body));
    }
    let h = compute_history(&state, model_id, version_id, &q).await?;
    let body = Bytes::from(serde_json::to_vec(&h).map_err(|e| Error::Internal(e.into()))?);
    if let Some(k) = key {
        state.caches.history.put(k, generation, body.clone());
    }
    Ok(json_body(body))
}

fn json_body(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn compute_history(
    state: &AppState,
    model_id: Uuid,
    version_id: Option<Uuid>,
    q: &HistoryQuery,
) -> Result<History> {
    let metric = MetricRef::parse(&q.metric).map_err(Error::BadRequest)?;
    let unit = q.unit.unwrap_or_default();
    let f = match &metric.statistic {
        Some(s) if !crate::domain::estimators::is_information(s) => 1.0,
        _ => unit.factor(),
    };
    if let Some(b) = q.buckets {
        let (expr, stat) = value_sql(&metric, 7);
        let src = store::results_source(&metric);
        if !(1..=10_000).contains(&b) {
            return Err(Error::BadRequest(
                "buckets must be between 1 and 10000".into(),
            ));
        }
        if metric.statistic.is_none() && metric.segment.is_none() {
            if let Some(buckets) =
                rollup_buckets(&state.pool, model_id, &metric.estimator, version_id, q, b).await?
            {
                return Ok(History {
                    metric: metric.to_string(),
                    unit,
                    items: vec![],
                    buckets: buckets
                        .into_iter()
                        .map(|x| HistoryBucket {
                            min: x.min.map(|v| v * f),
                            mean: x.mean.map(|v| v * f),
                            max: x.max.map(|v| v * f),
                            ..x
                        })
                        .collect(),
                    next_cursor: None,
                });
            }
        }
        let sql = format!(
            "WITH r AS (
                SELECT r.computed_at AS t, {expr} AS v FROM {src} r
                WHERE r.model_id = $1 AND r.estimator = $2
                  AND ($3::uuid IS NULL OR r.version_id = $3)
                  AND ($4::timestamptz IS NULL OR r.computed_at >= $4)
                  AND ($5::timestamptz IS NULL OR r.computed_at < $5)
                  AND ($7::text IS NULL OR r.details ? $7)),
             span AS (SELECT coalesce($4, min(t)) AS lo, coalesce($5, max(t) + interval '1 microsecond') AS hi FROM r),
             b AS (
                SELECT least(greatest(floor($6 * extract(epoch FROM (r.t - span.lo))
                         / nullif(extract(epoch FROM (span.hi - span.lo)), 0))::int, 0), $6 - 1) AS k, r.v
                FROM r, span)
             SELECT b.k, span.lo + (span.hi - span.lo) * b.k / $6 AS t_start,
                    span.lo + (span.hi - span.lo) * (b.k + 1) / $6 AS t_end,
                    min(b.v) FILTER (WHERE b.v > '-Infinity' AND b.v < 'Infinity') AS min,
                    avg(b.v) FILTER (WHERE b.v > '-Infinity' AND b.v < 'Infinity') AS mean,
                    max(b.v) FILTER (WHERE b.v > '-Infinity' AND b.v < 'Infinity') AS max,
                    count(*) AS count
             FROM b, span GROUP BY b.k, span.lo, span.hi ORDER BY b.k"
        );
        #[allow(clippy::type_complexity)]
        let rows: Vec<(
            i32,
            DateTime<Utc>,
            DateTime<Utc>,
            Option<f64>,
            Option<f64>,
            Option<f64>,
            i64,
        )> = sqlx::query_as(&sql)
            .bind(model_id)
            .bind(&metric.estimator)
            .bind(version_id)
            .bind(q.from)
            .bind(q.to)
            .bind(b as i32)
            .bind(stat)
            .fetch_all(&state.pool)
            .await?;
        let buckets = rows
            .into_iter()
            .map(|(_, t_start, t_end, min, mean, max, count)| HistoryBucket {
                t_start,
                t_end,
                min: min.map(|x| x * f),
                mean: mean.map(|x| x * f),
                max: max.map(|x| x * f),
                count,
            })
            .collect();
        return Ok(History {
            metric: metric.to_string(),
            unit,
            items: vec![],
            buckets,
            next_cursor: None,
        });
    }
    let (expr, stat) = value_sql(&metric, 9);
    let src = store::results_source(&metric);
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let limit = page.limit()?;
    let after = page.after_time()?;
    let sql = format!(
        "SELECT r.computed_at, r.id, v.name, r.batch_id, {expr}, r.ci_low, r.ci_high
         FROM {src} r JOIN model_versions v ON v.id = r.version_id
         WHERE r.model_id = $1 AND r.estimator = $2
           AND ($3::uuid IS NULL OR r.version_id = $3)
           AND ($4::timestamptz IS NULL OR r.computed_at >= $4)
           AND ($5::timestamptz IS NULL OR r.computed_at < $5)
           AND ($6::timestamptz IS NULL OR (r.computed_at, r.id) > ($6, $7))
           AND ($9::text IS NULL OR r.details ? $9)
         ORDER BY r.computed_at, r.id LIMIT $8"
    );
    type Row = (
        DateTime<Utc>,
        Uuid,
        String,
        Uuid,
        Option<f64>,
        Option<f64>,
        Option<f64>,
    );
    let mut rows: Vec<Row> = sqlx::query_as(&sql)
        .bind(model_id)
        .bind(&metric.estimator)
        .bind(version_id)
        .bind(q.from)
        .bind(q.to)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(limit + 1)
        .bind(stat.clone())
        .fetch_all(&state.pool)
        .await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| super::cursor::encode_time(r.0, r.1))
    } else {
        None
    };
    let ci = |x: Option<f64>| {
        if stat.is_some() {
            None
        } else {
            x.and_then(|x| finite(x * f))
        }
    };
    let items = rows
        .into_iter()
        .map(|(t, _, version, batch_id, v, lo, hi)| HistoryPoint {
            t,
            version,
            batch_id,
            value: v.and_then(|x| finite(x * f)),
            ci_low: ci(lo),
            ci_high: ci(hi),
        })
        .collect();
    Ok(History {
        metric: metric.to_string(),
        unit,
        items,
        buckets: vec![],
        next_cursor,
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KpiQuery {
    /// One metric (`estimator[.statistic][{key=value}]`, e.g. `semantic_mi{region=eu}` for one
    /// segment value's results); default: every estimator's value.
    #[param(
        pattern = r#"^(shannon_mi|semantic_mi|ce_bound|implied_mi|rg_curve|ksg|mixed_ksg|infonce|mine|nwj|smile)(\.[A-Za-z0-9_]+)?(\{[A-Za-z][A-Za-z0-9_]{0,31}=[^{}=,"\x00-\x1f\x7f-\x9f]{1,64}\})?$"#
    )]
    pub metric: Option<String>,
    /// One KPI name (a key of the batches' `metadata.kpis`); default: every KPI found.
    pub kpi: Option<String>,
    /// Interval level for the correlations, strictly between 0 and 1 (default 0.95).
    #[param(exclusive_minimum = 0.0, exclusive_maximum = 1.0)]
    pub level: Option<f64>,
}

/// A correlation with its Fisher-z interval.
#[derive(Debug, Serialize, ToSchema)]
pub struct Correlation {
    pub r: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KpiCorrelation {
    pub metric: String,
    pub kpi: String,
    /// Batches having both the metric and the KPI.
    pub n: usize,
    pub spearman: Correlation,
    pub pearson: Correlation,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KpiReport {
    pub model: String,
    pub level: f64,
    pub items: Vec<KpiCorrelation>,
}

/// How each information metric tracks each business KPI across the model's batches (all
/// versions): Spearman's rank and Pearson's linear correlation with Fisher-z intervals
/// (Spearman's standard error scaled by √1.06) and N. KPIs come from numeric values in a batch's
/// `metadata.kpis`, e.g. `{"kpis": {"conversion": 0.031}}`.
#[utoipa::path(
    get,
    path = "/v1/models/{model}/kpi-correlation",
    tag = "history",
    params(("model" = String, Path), KpiQuery),
    responses((status = 200, body = KpiReport), (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub async fn kpi_correlation(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Query(q): Query<KpiQuery>,
) -> Result<Json<KpiReport>> {
    let name = path_name("model", &model)?;
    let model_id = store::model_id(&state.pool, name.as_str())
        .await?
        .ok_or_else(|| Error::NotFound(format!("model {name} not found")))?;
    let level = q.level.unwrap_or(0.95);
    if !(level > 0.0 && level < 1.0) {
        return Err(Error::BadRequest("level must be between 0 and 1".into()));
    }
    let metric = q
        .metric
        .as_deref()
        .map(MetricRef::parse)
        .transpose()
        .map_err(Error::BadRequest)?;
    // Latest result per (batch, estimator), with the batch's KPIs.
    let src = metric
        .as_ref()
        .map_or_else(|| "results".to_string(), store::results_source);
    let rows: Vec<(Uuid, String, f64, serde_json::Value, serde_json::Value)> = sqlx::query_as(&format!(
        "SELECT DISTINCT ON (r.batch_id, r.estimator) r.batch_id, r.estimator, r.value, r.details, b.metadata -> 'kpis'
         FROM {src} r JOIN batches b ON b.id = r.batch_id
         WHERE r.model_id = $1 AND jsonb_typeof(b.metadata -> 'kpis') = 'object'
           AND ($2::text IS NULL OR r.estimator = $2)
         ORDER BY r.batch_id, r.estimator, r.computed_at DESC",
    ))
    .bind(model_id)
    .bind(metric.as_ref().map(|m| m.estimator.clone()))
    .fetch_all(&state.pool)
    .await?;
    use std::collections::BTreeMap;
    // (metric, kpi) → pairs
    let mut pairs: BTreeMap<(String, String), (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for (_, estimator, value, details, kpis) in rows {
        let (label, v) = match &metric {
            Some(
                m @ MetricRef {
                    statistic: Some(s), ..
                },
            ) => (m.to_string(), details.get(s).and_then(|x| x.as_f64())),
            Some(m) => (m.to_string(), Some(value)),
            None => (estimator.clone(), Some(value)),
        };
        let Some(v) = v.filter(|v| v.is_finite()) else {
            continue;
        };
        let Some(obj) = kpis.as_object() else {
            continue;
        };
        for (k, kv) in obj {
            if q.kpi.as_ref().is_some_and(|want| want != k) {
                continue;
            }
            if let Some(x) = kv.as_f64().filter(|x| x.is_finite()) {
                let e = pairs.entry((label.clone(), k.clone())).or_default();
                e.0.push(v);
                e.1.push(x);
            }
        }
    }
    let items = pairs
        .into_iter()
        .map(|((metric, kpi), (x, y))| {
            let corr = |r: Option<f64>, scale: f64| {
                let ci = r.and_then(|r| stats::correlation_interval(r, x.len(), level, scale));
                Correlation {
                    r,
                    ci_low: ci.map(|c| c.0),
                    ci_high: ci.map(|c| c.1),
                }
            };
            KpiCorrelation {
                n: x.len(),
                spearman: corr(stats::spearman(&x, &y), 1.06f64.sqrt()),
                pearson: corr(stats::pearson(&x, &y), 1.0),
                metric,
                kpi,
            }
        })
        .collect();
    Ok(Json(KpiReport {
        model: name.to_string(),
        level,
        items,
    }))
}

/// One bucket aggregated from cells: index, count, finite count, finite sum, min, max.
type CellRow = (i64, i64, i64, f64, Option<f64>, Option<f64>);

/// How a downsampled history is read from the rollup cells.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RollupPlan {
    /// Cell size in seconds (60, 3600 or 86400).
    unit: i64,
    /// Start of bucket 0 (the range start rounded down to the unit), epoch seconds.
    origin: i64,
    /// Bucket width in seconds, a multiple of `unit`.
    step: i64,
    /// Whole cells read from the rollups: `[cell_lo, cell_hi)`, epoch seconds. Outside them, up to
    /// the range's ends, rows are read one by one (only where the caller cut the range mid-cell).
    cell_lo: i64,
    cell_hi: i64,
}

/// Plan aligned buckets over `[lo, hi)` (microseconds since the epoch): `None` when a bucket
/// would be narrower than a minute (rows are then read directly).
fn rollup_plan(
    lo_us: i64,
    hi_us: i64,
    buckets: u32,
    lo_given: bool,
    hi_given: bool,
) -> Option<RollupPlan> {
    if hi_us <= lo_us || buckets == 0 {
        return None;
    }
    let width_s = (hi_us - lo_us) as f64 / 1e6 / f64::from(buckets);
    let unit = [86_400i64, 3_600, 60]
        .into_iter()
        .find(|u| width_s >= *u as f64)?;
    let floor = |us: i64| us.div_euclid(unit * 1_000_000) * unit;
    let ceil = |us: i64| {
        let f = floor(us);
        if f * 1_000_000 == us {
            f
        } else {
            f + unit
        }
    };
    let origin = floor(lo_us);
    let span_s = (hi_us - origin * 1_000_000) as f64 / 1e6;
    let cells_per_bucket = (span_s / f64::from(buckets) / unit as f64).ceil().max(1.0) as i64;
    let step = cells_per_bucket * unit;
    let cell_lo = if lo_given { ceil(lo_us) } else { origin };
    let cell_hi = if hi_given { floor(hi_us) } else { ceil(hi_us) };
    Some(RollupPlan {
        unit,
        origin,
        step,
        cell_lo,
        cell_hi: cell_hi.max(cell_lo),
    })
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

/// Downsampled history of an estimator's primary value from the rollup cells (plus the rows of
/// the partial cells at a caller-given edge). `None` when the buckets are finer than a minute.
async fn rollup_buckets(
    pool: &sqlx::PgPool,
    model_id: Uuid,
    estimator: &str,
    version_id: Option<Uuid>,
    q: &HistoryQuery,
    buckets: u32,
) -> Result<Option<Vec<HistoryBucket>>> {
    let (lo, hi) = match (q.from, q.to) {
        (Some(lo), Some(hi)) => (lo, hi),
        _ => {
            let span: (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = sqlx::query_as(
                "SELECT min(computed_at), max(computed_at) FROM results
                 WHERE model_id = $1 AND estimator = $2 AND ($3::uuid IS NULL OR version_id = $3)",
            )
            .bind(model_id)
            .bind(estimator)
            .bind(version_id)
            .fetch_one(pool)
            .await?;
            match span {
                (Some(first), Some(last)) => (
                    q.from.unwrap_or(first),
                    q.to.unwrap_or(last + chrono::Duration::microseconds(1)),
                ),
                _ => return Ok(Some(vec![])),
            }
        }
    };
    let Some(plan) = rollup_plan(
        lo.timestamp_micros(),
        hi.timestamp_micros(),
        buckets,
        q.from.is_some(),
        q.to.is_some(),
    ) else {
        return Ok(None);
    };
    let rows: Vec<CellRow> = sqlx::query_as(
        "WITH cells AS (
            SELECT cell AS t, n, n_finite, sum, min, max FROM result_rollups
            WHERE model_id = $1 AND estimator = $2 AND unit_s = $3
              AND ($4::uuid IS NULL OR version_id = $4) AND cell >= $5 AND cell < $6
            UNION ALL
            SELECT computed_at, 1, fin::int, CASE WHEN fin THEN value ELSE 0 END,
                   CASE WHEN fin THEN value END, CASE WHEN fin THEN value END
            FROM (SELECT computed_at, value,
                         (value > '-Infinity'::float8 AND value < 'Infinity'::float8) AS fin
                  FROM results
                  WHERE model_id = $1 AND estimator = $2 AND ($4::uuid IS NULL OR version_id = $4)
                    AND ((computed_at >= $7 AND computed_at < $5)
                      OR (computed_at >= $6 AND computed_at < $8))) edge)
         SELECT floor(extract(epoch FROM (t - $9))::float8 / $10)::int8 AS k,
                sum(n)::int8, sum(n_finite)::int8, sum(sum), min(min), max(max)
         FROM cells GROUP BY k ORDER BY k",
    )
    .bind(model_id)
    .bind(estimator)
    .bind(plan.unit as i32)
    .bind(version_id)
    .bind(at(plan.cell_lo))
    .bind(at(plan.cell_hi))
    .bind(lo)
    .bind(hi)
    .bind(at(plan.origin))
    .bind(plan.step as f64)
    .fetch_all(pool)
    .await?;
    Ok(Some(
        rows.into_iter()
            .map(|(k, n, n_finite, sum, min, max)| {
                let start = at(plan.origin + k * plan.step);
                let end = at(plan.origin + (k + 1) * plan.step);
                HistoryBucket {
                    t_start: start.max(lo),
                    t_end: end.min(hi),
                    min,
                    mean: (n_finite > 0).then(|| sum / n_finite as f64),
                    max,
                    count: n,
                }
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn plans_align_buckets_to_whole_cells_and_never_exceed_the_count() {
        // 10 minutes from 00:00 in 5 buckets: 2-minute buckets of minute cells.
        let p = rollup_plan(0, 600 * S, 5, true, true).unwrap();
        assert_eq!(
            (p.unit, p.origin, p.step, p.cell_lo, p.cell_hi),
            (60, 0, 120, 0, 600)
        );
        // Sub-minute buckets are not planned.
        assert_eq!(rollup_plan(0, 299 * S, 5, true, true), None);
        // A year of data in 500 buckets: hour cells, whole-hour buckets, at most 500 of them.
        for (lo, hi) in [
            (17 * S + 3, 365 * 86_400 * S),
            (-86_399 * S, 86_400 * 900 * S + 1),
        ] {
            for b in [1u32, 7, 500, 10_000] {
                if let Some(p) = rollup_plan(lo, hi, b, false, false) {
                    assert_eq!(p.step % p.unit, 0);
                    assert_eq!(p.origin % p.unit, 0);
                    assert!(p.origin * S <= lo);
                    let count = (hi - p.origin * S + p.step * S - 1) / (p.step * S);
                    assert!(count <= i64::from(b), "{b} buckets: {count} {p:?}");
                    assert!(p.step as f64 >= (hi - lo) as f64 / 1e6 / f64::from(b) - 1e-9);
                }
            }
        }
        // A caller-given edge inside a cell: that cell is read row by row.
        let p = rollup_plan(90 * S, 3_690 * S, 2, true, true).unwrap();
        assert_eq!(
            (p.unit, p.origin, p.cell_lo, p.cell_hi),
            (60, 60, 120, 3_660)
        );
        let p = rollup_plan(90 * S, 3_690 * S, 2, false, false).unwrap();
        assert_eq!((p.cell_lo, p.cell_hi), (60, 3_720));
    }
}
