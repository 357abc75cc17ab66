//! A gate evaluation against the database: read each (version, metric) the rules need once,
//! observe the candidate and its baselines (latest or pooled), compute the differences (paired
//! when both sides were evaluated on the same samples), and decide. The gate route, the monitors'
//! evaluations and the comparison share it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::pool::{observe, Point, Source};
use super::rules::{
    decide, evaluate, independent_delta, Delta, DeltaMethod, Input, Op, Rule, RuleOutcome, Use,
    Verdict,
};
use crate::domain::metric::MetricRef;
use crate::domain::unit::Unit;
use crate::error::{Error, Result};
use crate::estimate::paired::PairedDelta;
use crate::estimate::EstimateError;
use crate::store;
use crate::store::cache::GenerationCache;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyRef {
    pub name: String,
    pub version: i32,
}

/// A batch whose result entered a decision.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchRef {
    pub version: String,
    pub batch_id: Uuid,
    pub digest: String,
}

/// One rule's outcome within a decision.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DecisionRule {
    #[serde(flatten)]
    pub outcome: RuleOutcome,
    pub op: Op,
    #[serde(rename = "use")]
    pub use_: Use,
    /// How the candidate's value was obtained.
    pub source: Option<Source>,
}

/// A stored, immutable gate decision.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Decision {
    pub id: Uuid,
    /// `pass`, `warn`, `fail`, `inconclusive` or `pending`.
    pub verdict: Verdict,
    pub rules: Vec<DecisionRule>,
    pub model: String,
    pub version: String,
    /// The stored policy used, or null for inline rules.
    pub policy: Option<PolicyRef>,
    /// Unit of every value and threshold in the decision.
    pub unit: Unit,
    /// The batches (with digests) whose results were judged, candidate and baselines.
    pub batches: Vec<BatchRef>,
    pub evaluated_at: DateTime<Utc>,
    /// The monitor whose evaluation this is (absent for a gate called by a client).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<MonitorRef>,
}

/// The monitor (and its version) that made a decision.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MonitorRef {
    pub name: String,
    pub version: i32,
}

pub(crate) struct Observed {
    pub(crate) input: Input,
    pub(crate) source: Option<Source>,
    pub(crate) batches: Vec<BatchRef>,
    /// The results that entered the value: (batch, labels digest, params), oldest first.
    pub(crate) used: Vec<(Uuid, Option<String>, serde_json::Value)>,
}

/// What one request has read: per (version, estimator), the unfinished jobs and the result rows
/// (oldest first), loaded up front in two statements; rules on the same estimator (its value and
/// its statistics) share the rows.
pub(crate) struct Reads(HashMap<(Uuid, String), (i64, Vec<store::MetricRow>)>);

impl Reads {
    /// Read every pair of `versions` × the series of `metrics` (an estimator's results, or one
    /// segment value's: `estimator{key=value}`).
    pub(crate) async fn load(
        j: &Judge<'_>,
        versions: &[Uuid],
        metrics: &[MetricRef],
    ) -> Result<Reads> {
        let mut estimators: Vec<String> = metrics.iter().map(|m| m.estimator.clone()).collect();
        estimators.sort();
        estimators.dedup();
        let plain: Vec<String> = estimators
            .iter()
            .filter(|e| {
                metrics
                    .iter()
                    .any(|m| &m.estimator == *e && m.segment.is_none())
            })
            .cloned()
            .collect();
        let (unfinished, rows) = tokio::try_join!(
            store::unfinished_jobs_by_estimator(j.pool, versions, &estimators),
            store::metric_rows(j.pool, versions, &plain),
        )?;
        let mut segmented: Vec<MetricRef> = metrics
            .iter()
            .filter(|m| m.segment.is_some())
            .map(|m| MetricRef {
                statistic: None,
                ..m.clone()
            })
            .collect();
        segmented.sort_by_key(|m| m.series());
        segmented.dedup();
        let mut map: HashMap<_, (i64, Vec<store::MetricRow>)> = HashMap::new();
        for (v, e, n) in unfinished {
            for m in segmented.iter().filter(|m| m.estimator == e) {
                map.entry((v, m.series())).or_default().0 = n;
            }
            map.entry((v, e)).or_default().0 = n;
        }
        for row in rows {
            map.entry((row.version_id, row.estimator.clone()))
                .or_default()
                .1
                .push(row);
        }
        for m in &segmented {
            for row in store::segment_metric_rows(j.pool, versions, m).await? {
                map.entry((row.version_id, row.estimator.clone()))
                    .or_default()
                    .1
                    .push(row);
            }
        }
        Ok(Reads(map))
    }

    /// Keep only the results of `version` from the batches in `window` (a monitor's window), and
    /// judge what is there: unfinished jobs of the version no longer make its rules pending.
    pub(crate) fn restrict(&mut self, version: Uuid, window: &std::collections::HashSet<Uuid>) {
        for ((v, _), (unfinished, rows)) in self.0.iter_mut() {
            if *v == version {
                *unfinished = 0;
                rows.retain(|r| window.contains(&r.batch_id));
            }
        }
    }

    /// The metric of a version, from what was loaded.
    pub(crate) fn observe(
        &self,
        version: (Uuid, &str),
        metric: &MetricRef,
        unit: Unit,
    ) -> Observed {
        static NONE: (i64, Vec<store::MetricRow>) = (0, Vec::new());
        let (unfinished, rows) = self.0.get(&(version.0, metric.series())).unwrap_or(&NONE);
        // The series of the latest result: the same parameters and estimator version.
        let latest = rows.last();
        let series: Vec<&store::MetricRow> = rows
            .iter()
            .filter(|r| {
                latest.is_some_and(|l| {
                    r.params == l.params && r.estimator_version == l.estimator_version
                })
            })
            .collect();
        let batches = series
            .iter()
            .map(|r| BatchRef {
                version: version.1.to_string(),
                batch_id: r.batch_id,
                digest: r.digest.clone(),
            })
            .collect();
        let mut out = Observed {
            input: Input::Missing,
            source: None,
            batches,
            used: Vec::new(),
        };
        if *unfinished > 0 {
            out.input = Input::Pending;
            return out;
        }
        let points: Vec<_> = rows.iter().map(point).collect();
        if let Some((o, src)) = observe(&points, metric, unit.factor()) {
            let used: Vec<&&store::MetricRow> = if src.kind == "pooled" {
                series.iter().collect()
            } else {
                series.last().into_iter().collect()
            };
            out.used = used
                .iter()
                .map(|r| (r.batch_id, r.labels_digest.clone(), r.params.clone()))
                .collect();
            out.input = Input::Value(o);
            out.source = Some(src);
        }
        out
    }
}

/// Estimators whose difference between two versions is computed paired when both were
/// evaluated on the same samples.
const PAIRABLE: [&str; 3] = ["shannon_mi", "semantic_mi", "ce_bound"];

/// Δ = candidate − baseline of one metric with its interval (in `unit`): paired when both sides'
/// results come from batches with the same samples (equal multisets of label digests), else the
/// two sides combined as independent (`pooled` when either side pools several batches). Paired
/// differences are computed from the stored batches (a paired bootstrap, 200 replicates, off
/// the async threads) and kept per process.
pub(crate) async fn difference(
    j: &Judge<'_>,
    metric: &MetricRef,
    cand: &Observed,
    base: &Observed,
    unit: Unit,
) -> Result<Option<Delta>> {
    let (Input::Value(c), Input::Value(b)) = (&cand.input, &base.input) else {
        return Ok(None);
    };
    let pooled = [cand, base]
        .iter()
        .any(|o| o.source.as_ref().is_some_and(|s| s.kind == "pooled"));
    let independent = || Some(independent_delta(c, b, pooled));
    // A segment's paired difference would need the batches restricted to the segment: its
    // sides are combined as independent.
    if metric.statistic.is_some()
        || metric.segment.is_some()
        || !PAIRABLE.contains(&metric.estimator.as_str())
    {
        return Ok(independent());
    }
    let order = |o: &Observed| -> Option<Vec<(String, Uuid, serde_json::Value)>> {
        let mut v: Vec<_> = o
            .used
            .iter()
            .map(|(id, d, p)| Some((d.clone()?, *id, p.clone())))
            .collect::<Option<_>>()?;
        v.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        Some(v)
    };
    let (Some(cs), Some(bs)) = (order(cand), order(base)) else {
        return Ok(independent());
    };
    if cs.is_empty() || cs.len() != bs.len() || cs.iter().zip(&bs).any(|(x, y)| x.0 != y.0) {
        return Ok(independent());
    }
    let key = format!(
        "{}|{}|{}|{}|{}",
        metric.estimator,
        cs.iter()
            .map(|x| x.1.to_string())
            .collect::<Vec<_>>()
            .join(","),
        bs.iter()
            .map(|x| x.1.to_string())
            .collect::<Vec<_>>()
            .join(","),
        cs[0].2,
        bs[0].2
    );
    let nats = match j.deltas.get(&key, 0) {
        Some(d) => d,
        None => {
            let mut cand_batches = Vec::with_capacity(cs.len());
            let mut base_batches = Vec::with_capacity(bs.len());
            // Raw data retention may have purged a side's batches: then the sides are combined
            // as independent (their results and intervals are kept).
            for (list, ids) in [(&mut cand_batches, &cs), (&mut base_batches, &bs)] {
                for (_, id, _) in ids.iter() {
                    match store::load_batch_data(j.pool, *id).await {
                        Ok(b) => list.push(b),
                        Err(e) if e.is::<store::DataPurged>() => return Ok(independent()),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            let (estimator, cp, bp) = (metric.estimator.clone(), cs[0].2.clone(), bs[0].2.clone());
            use sha2::Digest;
            let seed = u64::from_le_bytes(
                sha2::Sha256::digest(key.as_bytes())[..8]
                    .try_into()
                    .expect("8 bytes"),
            );
            let computed = tokio::task::spawn_blocking(move || {
                crate::compute::paired::paired_delta(
                    &estimator,
                    &cp,
                    &bp,
                    &cand_batches,
                    &base_batches,
                    0.95,
                    200,
                    seed,
                )
            })
            .await
            .unwrap_or_else(|e| {
                Err(EstimateError::invalid(format!(
                    "the paired comparison stopped: {e}"
                )))
            });
            match computed {
                Ok(d) => {
                    j.deltas.put(key, 0, d.clone());
                    d
                }
                Err(e) => {
                    tracing::warn!(error = %e, "paired comparison failed; combining the sides as independent");
                    return Ok(independent());
                }
            }
        }
    };
    let f = unit.factor();
    Ok(Some(Delta {
        value: nats.value * f,
        relative: (b.value != 0.0).then(|| nats.value * f / b.value.abs()),
        ci_low: Some(nats.low * f),
        ci_high: Some(nats.high * f),
        method: DeltaMethod::Paired,
    }))
}

/// What a gate evaluation needs beside its inputs: the database and the cache of paired
/// differences. The HTTP gate and the monitors' evaluations share it.
pub struct Judge<'a> {
    pub pool: &'a sqlx::PgPool,
    pub deltas: &'a GenerationCache<PairedDelta>,
}

/// A monitor's restriction of what is judged: the target version's results from these batches
/// only, and the monitor recorded on the decision.
pub struct MonitorScope {
    pub monitor: MonitorRef,
    pub batches: std::collections::HashSet<Uuid>,
}

impl<'a> Judge<'a> {
    /// Judge `rules` on a version (the rule semantics are `crate::gate`'s): resolve each
    /// distinct baseline once (an alias, then a version name; `previous` is the version created
    /// just before this one), read every (version, estimator) the rules need, and decide.
    /// Nothing is stored.
    #[allow(clippy::too_many_arguments)]
    pub async fn judge(
        &self,
        ctx: &store::GateContext,
        model: String,
        (version_id, version): (Uuid, String),
        policy: Option<PolicyRef>,
        rules: &[Rule],
        unit: Unit,
        scope: Option<MonitorScope>,
    ) -> Result<Decision> {
        let metrics = rules
            .iter()
            .map(|r| MetricRef::parse(&r.metric).map_err(|m| Error::field("/rules", m)))
            .collect::<Result<Vec<_>>>()?;
        let model_id = ctx.model_id;
        let mut baselines: HashMap<&str, Option<(Uuid, String)>> = HashMap::new();
        for b in rules.iter().filter_map(|r| r.baseline.as_deref()) {
            if baselines.contains_key(b) {
                continue;
            }
            let found = match ctx.aliases.get(b) {
                Some(v) if b != "previous" => Some(v.clone()),
                _ => store::resolve_version(self.pool, model_id, b, Some(version_id)).await?,
            };
            baselines.insert(b, found);
        }
        let mut versions = vec![version_id];
        versions.extend(baselines.values().flatten().map(|(id, _)| *id));
        versions.sort();
        versions.dedup();
        let mut reads = Reads::load(self, &versions, &metrics).await?;
        if let Some(s) = &scope {
            reads.restrict(version_id, &s.batches);
        }
        let mut outcomes = Vec::with_capacity(rules.len());
        let mut batches: Vec<BatchRef> = Vec::new();
        for (rule, metric) in rules.iter().zip(&metrics) {
            let cand = reads.observe((version_id, &version), metric, unit);
            let base = rule
                .baseline
                .as_deref()
                .and_then(|b| baselines[b].as_ref())
                .map(|(bid, bname)| (bname.clone(), reads.observe((*bid, bname), metric, unit)));
            let delta = match &base {
                Some((_, b)) if rule.max_regression.is_some() || rule.min_improvement.is_some() => {
                    difference(self, metric, &cand, b, unit).await?
                }
                _ => None,
            };
            let outcome = evaluate(
                rule,
                &cand.input,
                base.as_ref().map(|(n, o)| (n.as_str(), &o.input)),
                delta.as_ref(),
            );
            for b in cand
                .batches
                .iter()
                .chain(base.iter().flat_map(|(_, o)| o.batches.iter()))
            {
                if !batches.iter().any(|x| x.batch_id == b.batch_id) {
                    batches.push(b.clone());
                }
            }
            outcomes.push(DecisionRule {
                outcome,
                op: rule.op,
                use_: rule.use_,
                source: cand.source,
            });
        }
        let verdict = decide(
            &outcomes
                .iter()
                .map(|o| o.outcome.clone())
                .collect::<Vec<_>>(),
        );
        Ok(Decision {
            id: Uuid::now_v7(),
            verdict,
            rules: outcomes,
            model,
            version,
            policy,
            unit,
            batches,
            evaluated_at: Utc::now(),
            monitor: scope.map(|s| s.monitor),
        })
    }

    /// Store a decision (one insert), marked with its monitor when a monitor made it.
    pub async fn store<'e>(
        &self,
        e: impl sqlx::PgExecutor<'e>,
        model_id: Uuid,
        version_id: Uuid,
        decision: &Decision,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO gate_decisions (id, model_id, version_id, policy_name, policy_version, verdict, decision, evaluated_at, monitor)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(decision.id)
        .bind(model_id)
        .bind(version_id)
        .bind(decision.policy.as_ref().map(|p| p.name.clone()))
        .bind(decision.policy.as_ref().map(|p| p.version))
        .bind(decision.verdict.as_str())
        .bind(serde_json::to_value(decision).expect("decision serialises"))
        .bind(decision.evaluated_at)
        .bind(decision.monitor.as_ref().map(|m| m.name.clone()))
        .execute(e)
        .await?;
        Ok(())
    }
}

/// A stored result row as the pooling reads it.
fn point(r: &store::MetricRow) -> Point {
    Point {
        estimator_version: r.estimator_version.clone(),
        params: r.params.clone(),
        value: r.value,
        ci_low: r.ci_low,
        ci_high: r.ci_high,
        ci_level: r.ci_level,
        n: r.n.max(0) as u64,
        details: r.details.clone(),
        sufficient: r.sufficient.clone(),
        diagnostics: r
            .diagnostics
            .as_ref()
            .and_then(|d| serde_json::from_value(d.clone()).ok()),
    }
}
