//! Response bodies.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::unit::Unit;
use crate::error::Problem;
use crate::queue::JobRow;
use crate::store::{BatchRow, ModelRow, ResultRow, VersionRow};

/// A page of items and the cursor of the next page (`null` on the last page).
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// An estimator job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Job {
    pub id: Uuid,
    pub batch_id: Uuid,
    pub estimator: String,
    /// Parameters with every default filled in.
    #[schema(value_type = Object)]
    pub params: Value,
    pub estimator_version: String,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    #[schema(example = "queued")]
    pub state: String,
    /// Times a worker has claimed it.
    pub attempts: i32,
    /// Times it was taken back from a worker that stopped responding.
    pub rescues: i32,
    /// 0..1, reported while it runs.
    pub progress: f64,
    /// Why it failed (a problem document), or the last transient error before a retry.
    #[schema(value_type = Option<Problem>)]
    pub error: Option<Value>,
    /// Whether cancellation was requested.
    pub cancel_requested: bool,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `x-request-id` of the request that enqueued it (also on the worker's log lines).
    pub request_id: Option<String>,
}

impl From<JobRow> for Job {
    fn from(j: JobRow) -> Self {
        Job {
            id: j.id,
            batch_id: j.batch_id,
            estimator: j.estimator,
            params: j.params,
            estimator_version: j.estimator_version,
            state: j.state,
            attempts: j.attempts,
            rescues: j.rescues,
            progress: j.progress,
            error: j.error,
            cancel_requested: j.cancel_requested_at.is_some(),
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            request_id: j.request_id,
        }
    }
}

/// Scale the information-valued numbers of a details object (recursively).
pub fn convert_details(v: &Value, factor: f64) -> Value {
    fn scale_all(v: &Value, f: f64) -> Value {
        match v {
            Value::Number(n) => n
                .as_f64()
                .map(|x| serde_json::json!(x * f))
                .unwrap_or_else(|| v.clone()),
            Value::Array(a) => Value::Array(a.iter().map(|x| scale_all(x, f)).collect()),
            other => other.clone(),
        }
    }
    fn walk(v: &Value, f: f64) -> Value {
        match v {
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| {
                        let y = if crate::domain::estimators::is_information(k) && !x.is_object() {
                            scale_all(x, f)
                        } else {
                            walk(x, f)
                        };
                        (k.clone(), y)
                    })
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(|x| walk(x, f)).collect()),
            other => other.clone(),
        }
    }
    if factor == 1.0 {
        return v.clone();
    }
    walk(v, factor)
}

/// An estimator's result for one batch.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EstimateResult {
    pub id: Uuid,
    pub job_id: Uuid,
    pub batch_id: Uuid,
    pub model: String,
    pub version: String,
    pub estimator: String,
    pub estimator_version: String,
    #[schema(value_type = Object)]
    pub params: Value,
    /// The primary statistic in `unit`; `null` when it is not a finite number (see `value_special`).
    pub value: Option<f64>,
    /// `"-Infinity"` (or `"Infinity"`, `"NaN"`) when `value` is not finite: semantic MI is −∞
    /// when a prediction that was used is never true for its sample.
    pub value_special: Option<String>,
    /// `bits` or `nats`.
    pub unit: Unit,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// Interval level, e.g. 0.95.
    pub ci_level: Option<f64>,
    /// How the interval was computed.
    pub ci_method: Option<String>,
    /// Samples used.
    pub n: i64,
    /// Secondary named statistics and breakdowns (information values in `unit`).
    #[schema(value_type = Object)]
    pub details: Value,
    /// The trust report: `reliability` (`ok`, `caution`, `unreliable`) and the `reasons` found by
    /// the estimator's checks (samples per cell and the bias corrections for tables; ties,
    /// dimension and N-dependence for k-NN; saturation, convergence and overfitting for neural
    /// bounds). Gates treat `unreliable` as inconclusive. Null for results stored before these
    /// checks existed.
    pub diagnostics: Option<crate::estimate::Diagnostics>,
    pub computed_at: DateTime<Utc>,
    /// Present when the batch carries segments: per key, the estimator on each segment value's
    /// samples (`estimate`, its interval, `share` = P(s), `contribution` = P(s)·I_s and its
    /// share) and, for the estimators averaging over samples, the `decomposition`:
    /// `conditional_mi` = Σ_s P(s) I_s (I(Y;Ŷ|S) for `shannon_mi`), I(Y;S), and for `shannon_mi`
    /// the plug-in chain rule I(Y;Ŷ,S) = I(Y;S) + I(Y;Ŷ|S). Information values in `unit`.
    pub segments: Option<crate::estimate::segmented::Segments>,
}

pub fn special(x: f64) -> Option<String> {
    if x.is_finite() {
        None
    } else if x.is_nan() {
        Some("NaN".into())
    } else if x > 0.0 {
        Some("Infinity".into())
    } else {
        Some("-Infinity".into())
    }
}

pub fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

impl EstimateResult {
    pub fn new(r: ResultRow, unit: Unit) -> Self {
        let f = unit.factor();
        let scale = |x: Option<f64>| x.and_then(|x| finite(x * f));
        EstimateResult {
            id: r.id,
            job_id: r.job_id,
            batch_id: r.batch_id,
            model: r.model,
            version: r.version,
            estimator: r.estimator,
            estimator_version: r.estimator_version,
            params: r.params,
            value: finite(r.value * f),
            value_special: special(r.value),
            unit,
            ci_low: scale(r.ci_low),
            ci_high: scale(r.ci_high),
            ci_level: r.ci_level,
            ci_method: r.ci_method,
            n: r.n,
            details: convert_details(&r.details, f),
            diagnostics: r.diagnostics.and_then(|d| serde_json::from_value(d).ok()),
            computed_at: r.computed_at,
            segments: r
                .segments
                .and_then(|s| serde_json::from_value(s).ok())
                .map(|s| {
                    crate::estimate::segmented::shown_segments(
                        crate::estimate::segmented::scale_segments(&s, f),
                    )
                }),
        }
    }
}

/// A stored batch (its data is at `/v1/batches/{id}/data`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Batch {
    pub id: Uuid,
    pub model: String,
    pub version: String,
    #[schema(example = "multiclass")]
    pub task: String,
    /// Number of samples.
    pub n: i64,
    #[schema(value_type = Vec<String>)]
    pub classes: Value,
    /// sha256 (hex) of the stored data in its canonical binary form.
    pub digest: String,
    /// Size of the stored data in bytes.
    pub size_bytes: i64,
    pub content_type: String,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    /// Default estimators left out of this batch's jobs because their estimated memory on this
    /// batch is over the per-job budget, each with the reason (empty when none was).
    #[schema(value_type = Vec<crate::domain::estimators::Skipped>)]
    pub estimators_skipped: Value,
    /// When the model's retention policy dropped this batch's raw data (`GET …/data` then
    /// answers 410; results and sufficient statistics are kept). `null` while it is kept.
    pub data_purged_at: Option<DateTime<Utc>>,
    /// When the model's retention policy dropped this batch's results.
    pub results_purged_at: Option<DateTime<Utc>>,
    /// Whether its samples carry ids (`GET …/samples` then has them).
    pub has_ids: bool,
    /// Present when the batch was uploaded without labels: they arrive by id through
    /// `POST /v1/models/{model}/labels`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels_later: Option<LabelsLater>,
}

/// The labels of a batch uploaded without them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LabelsLater {
    /// Samples whose label has arrived.
    pub labelled: i64,
    /// `labelled / n`.
    pub coverage: f64,
    /// The coverage that releases the label-dependent jobs.
    pub required: f64,
    /// The label-dependent estimators still waiting (empty once released).
    pub waiting: Vec<String>,
    /// When the waiting jobs were queued (coverage reached, or released on request).
    pub released_at: Option<DateTime<Utc>>,
    /// The labels the released jobs use: a release fixes them (those stored before it), so every
    /// label-dependent result of the batch is computed on the same samples. `null` before the
    /// release.
    pub released_labelled: Option<i64>,
    /// `released_labelled / n`.
    pub released_coverage: Option<f64>,
    /// Labels stored after the release: kept (they count in `labelled`) but not used by the
    /// released jobs. Upload the samples again (or in a new batch) to use them.
    pub labelled_after_release: i64,
}

impl From<BatchRow> for Batch {
    fn from(b: BatchRow) -> Self {
        Batch {
            id: b.id,
            model: b.model,
            version: b.version,
            task: b.task,
            n: b.n,
            classes: b.classes,
            digest: b.digest,
            size_bytes: b.size_bytes,
            content_type: b.content_type,
            metadata: b.metadata,
            created_at: b.created_at,
            estimators_skipped: b.estimators_skipped,
            data_purged_at: b.data_purged_at,
            results_purged_at: b.results_purged_at,
            has_ids: b.has_ids,
            labels_later: b.labels_later.then(|| LabelsLater {
                labelled: b.labelled,
                coverage: if b.n > 0 {
                    b.labelled as f64 / b.n as f64
                } else {
                    0.0
                },
                required: b.label_coverage_required.unwrap_or(1.0),
                waiting: b
                    .pending_jobs
                    .as_ref()
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|j| j.get("estimator").and_then(Value::as_str))
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
                released_at: b.released_at,
                released_labelled: b.released_labelled,
                released_coverage: b
                    .released_labelled
                    .filter(|_| b.n > 0)
                    .map(|r| r as f64 / b.n as f64),
                labelled_after_release: b.released_labelled.map_or(0, |r| (b.labelled - r).max(0)),
            }),
        }
    }
}

/// The answer to an upload: the batch and its queued jobs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Accepted {
    pub batch: Batch,
    pub jobs: Vec<Job>,
}

/// A batch with its jobs and their results.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchDetail {
    #[serde(flatten)]
    pub batch: Batch,
    pub jobs: Vec<Job>,
    pub results: Vec<EstimateResult>,
}

/// A job with its result once it has one.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: Job,
    pub result: Option<EstimateResult>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Model {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub version_count: i64,
    pub batch_count: i64,
    pub last_upload_at: Option<DateTime<Utc>>,
}

impl From<ModelRow> for Model {
    fn from(m: ModelRow) -> Self {
        Model {
            name: m.name,
            created_at: m.created_at,
            version_count: m.version_count,
            batch_count: m.batch_count,
            last_upload_at: m.last_upload_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Version {
    pub model: String,
    pub version: String,
    pub created_at: DateTime<Utc>,
    pub aliases: Vec<String>,
    pub batch_count: i64,
    /// Samples over all batches.
    pub n: i64,
}

impl From<VersionRow> for Version {
    fn from(v: VersionRow) -> Self {
        Version {
            model: v.model,
            version: v.name,
            created_at: v.created_at,
            aliases: v.aliases,
            batch_count: v.batch_count,
            n: v.n_total,
        }
    }
}

/// One metric of a version: the latest result and, for mergeable estimators, the exact pooled
/// value over all of the version's batches.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Metric {
    pub estimator: String,
    #[schema(value_type = Object)]
    pub params: Value,
    pub latest: EstimateResult,
    /// Pooled value over every batch of the version (from summed sufficient statistics), in `unit`.
    pub pooled: Option<f64>,
    /// Batches whose results entered `pooled`.
    pub pooled_batches: i64,
    /// Per segment value of the version's batches (when they carry segments): the metric's
    /// address and its value pooled over the batches carrying that value (mergeable
    /// estimators). The latest batch's per-segment values are in `latest.segments`. At most the
    /// latest batch's 100 largest values per key are listed.
    pub segments: Vec<SegmentMetric>,
    /// Segment values of the version's batches not listed in `segments` (their series are
    /// `estimator{key=value}` in history).
    #[serde(skip_serializing_if = "is_zero")]
    pub segments_omitted: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One segment value's metric in a version summary.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SegmentMetric {
    /// The address for history, gates and compare, e.g. `semantic_mi{region=eu}`.
    pub metric: String,
    pub key: String,
    pub value: String,
    /// Pooled over the batches carrying this value, in `unit` (null when not mergeable).
    pub pooled: Option<f64>,
    pub pooled_batches: i64,
}

/// A version with its latest information per metric.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VersionSummary {
    #[serde(flatten)]
    pub version: Version,
    pub unit: Unit,
    pub metrics: Vec<Metric>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_information_values_change_unit() {
        let d = serde_json::json!({
            "miller_madow": 1.0, "nmi": 0.5, "confusion": [[2, 1], [1, 2]],
            "per_label": [{"mi": 2.0, "label": 1, "h_true": 1.0}],
            "worst_samples": [{"index": 3, "value": -1.0}],
            "efficiency": 0.7, "aggregate": "binary_relevance_sum"
        });
        let b = convert_details(&d, 2.0);
        assert_eq!(b["miller_madow"], 2.0);
        assert_eq!(b["nmi"], 0.5);
        assert_eq!(b["confusion"], serde_json::json!([[2, 1], [1, 2]]));
        assert_eq!(b["per_label"][0]["mi"], 4.0);
        assert_eq!(b["per_label"][0]["label"], 1);
        assert_eq!(b["per_label"][0]["h_true"], 2.0);
        assert_eq!(b["worst_samples"][0]["value"], -2.0);
        assert_eq!(b["worst_samples"][0]["index"], 3);
        assert_eq!(b["efficiency"], 0.7);
        assert_eq!(b["aggregate"], "binary_relevance_sum");
        assert_eq!(convert_details(&d, 1.0), d);
    }

    #[test]
    fn non_finite_values_are_reported_in_words() {
        assert_eq!(special(f64::NEG_INFINITY).as_deref(), Some("-Infinity"));
        assert_eq!(special(f64::NAN).as_deref(), Some("NaN"));
        assert_eq!(special(0.3), None);
        assert_eq!(finite(f64::NEG_INFINITY), None);
    }
}
