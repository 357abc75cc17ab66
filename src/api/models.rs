//! Models, their versions, and a version's latest information per metric.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use uuid::Uuid;

use super::extract::{path_name, PageQuery, UnitQuery};
use super::state::AppState;
use super::views::{EstimateResult, Metric, Model, Page, Version, VersionSummary};
use crate::domain::unit::Unit;
use crate::error::{Error, Problem, Result};
use crate::{estimate, store};

fn page<T: utoipa::ToSchema, R>(
    mut rows: Vec<R>,
    limit: i64,
    cursor: impl Fn(&R) -> String,
    map: impl Fn(R) -> T,
) -> Page<T> {
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(&cursor)
    } else {
        None
    };
    Page {
        items: rows.into_iter().map(map).collect(),
        next_cursor,
    }
}

/// Models, by name.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "models",
    params(PageQuery),
    responses(
        (status = 200, body = Page<Model>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_models(
    State(state): State<AppState>,
    principal: Option<axum::Extension<crate::auth::Principal>>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<Model>>> {
    let limit = q.limit()?;
    let after = super::cursor::decode_name(q.cursor.as_deref())?;
    let only = principal.and_then(|p| p.0.models);
    let rows =
        store::list_models(&state.pool, after.as_deref(), only.as_deref(), limit + 1).await?;
    Ok(Json(page(rows, limit, |m| m.name.clone(), Model::from)))
}

/// A model.
#[utoipa::path(
    get,
    path = "/v1/models/{model}",
    tag = "models",
    params(("model" = String, Path, description = "Model name")),
    responses(
        (status = 200, body = Model),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_model(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Model>> {
    let name = path_name("model", &model)?;
    let m = store::get_model(&state.pool, name.as_str())
        .await?
        .ok_or_else(|| Error::NotFound(format!("model {name} not found")))?;
    Ok(Json(m.into()))
}

/// A model's versions, oldest first.
#[utoipa::path(
    get,
    path = "/v1/models/{model}/versions",
    tag = "models",
    params(("model" = String, Path, description = "Model name"), PageQuery),
    responses(
        (status = 200, body = Page<Version>),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_versions(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<Version>>> {
    let name = path_name("model", &model)?;
    if store::get_model(&state.pool, name.as_str())
        .await?
        .is_none()
    {
        return Err(Error::NotFound(format!("model {name} not found")));
    }
    let limit = q.limit()?;
    let after = q.after_time()?;
    let rows = store::list_versions(&state.pool, name.as_str(), after, limit + 1).await?;
    Ok(Json(page(
        rows,
        limit,
        |v| super::cursor::encode_time(v.created_at, v.id),
        Version::from,
    )))
}

/// A version with, per metric (estimator and parameters), its latest result and — for
/// mergeable estimators — the exact pooled value over all of the version's batches.
#[utoipa::path(
    get,
    path = "/v1/models/{model}/versions/{version}",
    tag = "models",
    params(
        ("model" = String, Path, description = "Model name"),
        ("version" = String, Path, description = "Version name"),
        UnitQuery,
    ),
    responses(
        (status = 200, body = VersionSummary),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_version(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
    Query(q): Query<UnitQuery>,
) -> Result<Json<VersionSummary>> {
    let m = path_name("model", &model)?;
    let v = path_name("version", &version)?;
    let row = store::get_version(&state.pool, m.as_str(), v.as_str())
        .await?
        .ok_or_else(|| Error::NotFound(format!("version {v} of model {m} not found")))?;
    let unit = q.unit.unwrap_or_default();
    // Pooling reads every batch's sufficient statistics: kept while the model's results stay
    // the same (the generation was read with the version, before computing).
    let key = format!("{}|{unit:?}", row.id);
    let metrics = match state.caches.summaries.get(&key, row.results_generation) {
        Some(m) => m,
        None => {
            let m = Arc::new(version_metrics(&state, row.id, unit).await?);
            state
                .caches
                .summaries
                .put(key, row.results_generation, m.clone());
            m
        }
    };
    let metrics = Vec::clone(&metrics);
    Ok(Json(VersionSummary {
        version: row.into(),
        unit,
        metrics,
    }))
}

/// Per metric of a version, its latest result and the pooled value over its batches.
async fn version_metrics(state: &AppState, version_id: Uuid, unit: Unit) -> Result<Vec<Metric>> {
    let mut metrics = Vec::new();
    for r in store::latest_results(&state.pool, version_id).await? {
        let stats = store::sufficient_stats(
            &state.pool,
            version_id,
            &r.estimator,
            &r.estimator_version,
            &r.params,
        )
        .await?;
        let pooled = estimate::pool(&r.estimator, &stats, r.ci_level.unwrap_or(0.95))
            .and_then(|p| super::views::finite(p.value * unit.factor()));
        // Per segment value: pooled over the batches that carry it.
        type Stats = Vec<Option<serde_json::Value>>;
        let mut by_value: std::collections::BTreeMap<(String, String), Stats> =
            std::collections::BTreeMap::new();
        for (k, v, suff) in store::segment_sufficient_stats(
            &state.pool,
            version_id,
            &r.estimator,
            &r.estimator_version,
            &r.params,
        )
        .await?
        {
            by_value.entry((k, v)).or_default().push(suff);
        }
        // At most the latest batch's largest values per key are pooled and listed (its order:
        // by sample count); the others are counted.
        let shown: std::collections::HashSet<(String, String)> = r
            .segments
            .as_ref()
            .and_then(|s| {
                serde_json::from_value::<crate::estimate::segmented::Segments>(s.clone()).ok()
            })
            .map(|s| {
                s.into_iter()
                    .flat_map(|(k, ks)| {
                        ks.values
                            .into_iter()
                            .take(crate::estimate::segmented::SHOWN_VALUES)
                            .map(move |v| (k.clone(), v.value))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let total_values = by_value.len();
        let segments: Vec<super::views::SegmentMetric> = by_value
            .into_iter()
            .filter(|(kv, _)| shown.contains(kv))
            .map(|((key, value), stats)| {
                let stats: Option<Vec<serde_json::Value>> = stats.into_iter().collect();
                let batches = stats.as_ref().map_or(0, |s| s.len() as i64);
                let pooled = stats
                    .and_then(|s| estimate::pool(&r.estimator, &s, r.ci_level.unwrap_or(0.95)))
                    .and_then(|p| super::views::finite(p.value * unit.factor()));
                super::views::SegmentMetric {
                    metric: crate::domain::metric::MetricRef {
                        estimator: r.estimator.clone(),
                        statistic: None,
                        segment: Some((key.clone(), value.clone())),
                    }
                    .to_string(),
                    key,
                    value,
                    pooled_batches: if pooled.is_some() { batches } else { 0 },
                    pooled,
                }
            })
            .collect();
        let segments_omitted = (total_values - segments.len()) as u64;
        metrics.push(Metric {
            segments,
            segments_omitted,
            estimator: r.estimator.clone(),
            params: r.params.clone(),
            pooled_batches: if pooled.is_some() {
                stats.len() as i64
            } else {
                0
            },
            pooled,
            latest: EstimateResult::new(r, unit),
        });
    }
    Ok(metrics)
}
