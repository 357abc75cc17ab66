//! Two versions side by side: each metric's values, the difference with its interval (paired when
//! both were evaluated on the same samples), and the segment values ranked by their contribution
//! to the change.

use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::judge::{difference, Judge, Observed, Reads};
use super::pool::Source;
use super::rules::{Delta, Input};
use crate::domain::metric::MetricRef;
use crate::domain::unit::Unit;
use crate::error::Result;

#[derive(Debug, Serialize, ToSchema)]
pub struct Side {
    pub value: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub n: Option<u64>,
    pub source: Option<Source>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MetricComparison {
    pub metric: String,
    pub baseline: Side,
    pub candidate: Side,
    /// candidate − baseline with its interval: `paired` when both versions were evaluated on the
    /// same samples (a paired bootstrap), else `independent` (or `pooled` when a side pools
    /// several batches).
    pub delta: Option<Delta>,
    /// delta.value / |baseline| (null when the baseline is 0); the same as `delta.relative`.
    pub relative_delta: Option<f64>,
    /// Whether the two intervals overlap (null without both intervals).
    pub ci_overlap: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Comparison {
    pub model: String,
    pub baseline_version: String,
    pub candidate_version: String,
    pub unit: Unit,
    pub metrics: Vec<MetricComparison>,
    /// Per estimator and segment key carried by both versions' latest segmented batches: the
    /// segment values ranked by their contribution to the change of the information,
    /// P_c(s)·I_c(s) − P_b(s)·I_b(s), most negative (the segment that lost the most) first.
    pub segments: Vec<SegmentRanking>,
}

/// The segment values of one key ranked by their contribution to the change.
#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentRanking {
    pub estimator: String,
    pub key: String,
    /// The batches whose per-segment results were compared (each side's latest with segments).
    pub baseline_batch_id: Uuid,
    pub candidate_batch_id: Uuid,
    /// Σ_s P(s) I_s on each side (I(Y;Ŷ|S) for `shannon_mi`) and its change, in `unit`.
    pub baseline_conditional: Option<f64>,
    pub candidate_conditional: Option<f64>,
    /// The values ranked, the one that lost the most first; at most the 100 that changed most
    /// (by |change|).
    pub items: Vec<crate::estimate::segmented::SegmentChange>,
    /// Ranked values left out of `items` (those that changed least).
    #[serde(skip_serializing_if = "is_zero")]
    pub items_omitted: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The `max` changes largest in size, in their ranked order, and how many were left out.
fn largest_changes(
    ranked: Vec<crate::estimate::segmented::SegmentChange>,
    max: usize,
) -> (Vec<crate::estimate::segmented::SegmentChange>, u64) {
    if ranked.len() <= max {
        return (ranked, 0);
    }
    let size = |c: &crate::estimate::segmented::SegmentChange| {
        c.change.filter(|x| x.is_finite()).map_or(-1.0, f64::abs)
    };
    let mut order: Vec<usize> = (0..ranked.len()).collect();
    order.sort_by(|&a, &b| {
        size(&ranked[b])
            .total_cmp(&size(&ranked[a]))
            .then(a.cmp(&b))
    });
    let mut keep = vec![false; ranked.len()];
    for &i in &order[..max] {
        keep[i] = true;
    }
    let omitted = (ranked.len() - max) as u64;
    let items = ranked
        .into_iter()
        .zip(keep)
        .filter_map(|(c, k)| k.then_some(c))
        .collect();
    (items, omitted)
}

/// Each side's latest segmented result per estimator, and the rankings of the keys both carry.
pub async fn segment_rankings(
    c: &mut sqlx::PgConnection,
    bid: Uuid,
    cid: Uuid,
    unit: Unit,
) -> Result<Vec<SegmentRanking>> {
    use crate::estimate::segmented::{rank_changes, scale_segments, Segments};
    let rows: Vec<(Uuid, String, Uuid, serde_json::Value)> = sqlx::query_as(
        "SELECT DISTINCT ON (version_id, estimator) version_id, estimator, batch_id, segments
         FROM results WHERE version_id = ANY($1) AND segments IS NOT NULL
         ORDER BY version_id, estimator, computed_at DESC, id DESC",
    )
    .bind([bid, cid].as_slice())
    .fetch_all(&mut *c)
    .await?;
    let mut sides: HashMap<(Uuid, String), (Uuid, Segments)> = HashMap::new();
    for (v, e, batch, seg) in rows {
        if let Ok(s) = serde_json::from_value::<Segments>(seg) {
            sides.insert((v, e), (batch, scale_segments(&s, unit.factor())));
        }
    }
    let mut estimators: Vec<&String> = sides.keys().map(|(_, e)| e).collect();
    estimators.sort();
    estimators.dedup();
    let mut out = Vec::new();
    for e in estimators {
        let (Some((bb, bs)), Some((cb, cs))) =
            (sides.get(&(bid, e.clone())), sides.get(&(cid, e.clone())))
        else {
            continue;
        };
        for (key, b) in bs {
            let Some(c) = cs.get(key) else { continue };
            let cond = |k: &crate::estimate::segmented::KeySegments| {
                k.decomposition.as_ref().and_then(|d| d.conditional_mi)
            };
            let (items, items_omitted) =
                largest_changes(rank_changes(b, c), crate::estimate::segmented::SHOWN_VALUES);
            out.push(SegmentRanking {
                estimator: e.clone(),
                key: key.clone(),
                baseline_batch_id: *bb,
                candidate_batch_id: *cb,
                baseline_conditional: cond(b),
                candidate_conditional: cond(c),
                items,
                items_omitted,
            });
        }
    }
    Ok(out)
}

/// Compare a baseline and a candidate version of `model` on every estimator either has results
/// for, and rank the segment values both carry.
pub async fn compare_versions(
    judge: &Judge<'_>,
    model: String,
    (bid, bname): (Uuid, String),
    (cid, cname): (Uuid, String),
    unit: Unit,
) -> Result<Comparison> {
    let estimators: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT estimator FROM results WHERE version_id = $1 OR version_id = $2 ORDER BY estimator",
    )
    .bind(bid)
    .bind(cid)
    .fetch_all(judge.pool)
    .await?;
    let mut metrics = Vec::new();
    let plain: Vec<MetricRef> = estimators.iter().map(|e| MetricRef::of(e)).collect();
    let reads = Reads::load(judge, &[bid, cid], &plain).await?;
    for e in estimators {
        let m = MetricRef::of(&e);
        let side = |o: Observed| match o.input {
            Input::Value(v) => Side {
                value: v.value.is_finite().then_some(v.value),
                ci_low: v.ci_low,
                ci_high: v.ci_high,
                n: Some(v.n),
                source: o.source,
            },
            _ => Side {
                value: None,
                ci_low: None,
                ci_high: None,
                n: None,
                source: None,
            },
        };
        let (bo, co) = (
            reads.observe((bid, &bname), &m, unit),
            reads.observe((cid, &cname), &m, unit),
        );
        let delta = difference(judge, &m, &co, &bo, unit).await?;
        let b = side(bo);
        let c = side(co);
        let relative_delta = delta.as_ref().and_then(|d| d.relative);
        let ci_overlap = match (b.ci_low, b.ci_high, c.ci_low, c.ci_high) {
            (Some(bl), Some(bh), Some(cl), Some(ch)) => Some(bl <= ch && cl <= bh),
            _ => None,
        };
        metrics.push(MetricComparison {
            metric: e,
            baseline: b,
            candidate: c,
            delta,
            relative_delta,
            ci_overlap,
        });
    }
    let mut conn = judge.pool.acquire().await?;
    let segments = segment_rankings(&mut conn, bid, cid, unit).await?;
    Ok(Comparison {
        model,
        baseline_version: bname,
        candidate_version: cname,
        unit,
        metrics,
        segments,
    })
}
