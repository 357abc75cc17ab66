//! Pure numeric core: information-theoretic estimators over plain slices and ndarray views.
//!
//! Conventions shared by every estimator in this module tree:
//! - natural logarithms everywhere (nats); unit conversion happens at the API edge;
//! - the primary `value` is the raw estimate (never clipped at 0), possibly `-inf` where that is
//!   the mathematically correct answer (semantic MI with a falsified used pair);
//! - `details` never contains NaN or infinities: such numbers are written as `null` together with
//!   a `*_reason` string;
//! - sample weights are normalised so that they sum to N (the number of samples), so a weighted
//!   table has the same total mass as an unweighted one;
//! - every random choice comes from [`rng::SplitMix64`] seeded by the estimator's `seed` param.

pub mod bootstrap;
pub mod ce_bound;
pub mod contingency;
pub mod cost;
pub mod implied;
pub mod paired;
pub mod pointwise;
pub mod probabilities;
pub mod rg;
pub mod rng;
pub mod segmented;
pub mod semantic;
pub mod shannon;
pub mod simd;
pub mod special;
// continuous and neural MI (issue 4)
pub mod knn;
pub mod ksg;
pub mod neural;
pub mod samplers;
#[cfg(test)]
mod tests_continuous;

#[cfg(test)]
mod coverage;
#[cfg(test)]
mod tests_coverage;
#[cfg(test)]
mod tests_fixtures;
#[cfg(test)]
mod tests_weights;

use serde::Serialize;
use serde_json::Value;

/// Cooperative control from the worker: progress in [0,1] and a cancellation probe.
pub struct Control<'a> {
    pub progress: &'a (dyn Fn(f64) + Sync),
    pub cancelled: &'a (dyn Fn() -> bool + Sync),
}

fn no_progress(_: f64) {}
fn never_cancelled() -> bool {
    false
}

impl Control<'_> {
    /// A control that reports nowhere and is never cancelled (tests, synchronous use).
    pub fn none() -> Control<'static> {
        Control {
            progress: &no_progress,
            cancelled: &never_cancelled,
        }
    }

    /// Report progress (clamped to [0,1]) and return `Err(Cancelled)` if the job was cancelled.
    pub fn tick(&self, fraction: f64) -> Result<(), EstimateError> {
        (self.progress)(fraction.clamp(0.0, 1.0));
        if (self.cancelled)() {
            Err(EstimateError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// Errors of the numeric core.
#[derive(Debug, thiserror::Error)]
pub enum EstimateError {
    /// The worker asked us to stop.
    #[error("cancelled")]
    Cancelled,
    /// Permanent failure (invalid or degenerate input); the message is shown to users.
    #[error("{0}")]
    Invalid(String),
}

impl EstimateError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        EstimateError::Invalid(msg.into())
    }
}

/// An uncertainty interval (nats).
#[derive(Debug, Clone, Serialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
    pub level: f64,
    pub method: String,
    pub replicates: usize,
}

/// How far a result can be trusted, from the checks an expert would run on it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Default,
    Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Reliability {
    /// No check found a problem: the interval's coverage was measured at ≥ 0.93 in this regime.
    #[default]
    Ok,
    /// A check found something to look at; the value stands (gates show it, verdicts unchanged).
    Caution,
    /// The value or its interval cannot be trusted here; gates treat the metric as inconclusive.
    Unreliable,
}

/// One finding of the checks.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Reason {
    /// A stable machine-readable code, e.g. `undersampled_table`.
    pub code: String,
    pub severity: Reliability,
    pub message: String,
}

/// The trust report of a result: the worst severity among its reasons.
#[derive(Debug, Clone, PartialEq, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Diagnostics {
    pub reliability: Reliability,
    pub reasons: Vec<Reason>,
}

impl Diagnostics {
    /// Add a finding; the reliability becomes the worst seen.
    pub fn add(&mut self, severity: Reliability, code: &str, message: impl Into<String>) {
        self.reliability = self.reliability.max(severity);
        self.reasons.push(Reason {
            code: code.to_string(),
            severity,
            message: message.into(),
        });
    }

    /// The worst of several reports, each reason once (by code and message).
    pub fn worst_of<'a>(reports: impl IntoIterator<Item = &'a Diagnostics>) -> Diagnostics {
        let mut d = Diagnostics::default();
        for r in reports.into_iter().flat_map(|r| &r.reasons) {
            if !d
                .reasons
                .iter()
                .any(|x| x.code == r.code && x.message == r.message)
            {
                d.add(r.severity, &r.code, r.message.clone());
            }
        }
        d
    }

    /// Merge another report into this one.
    pub fn extend(&mut self, other: Diagnostics) {
        for r in other.reasons {
            self.add(r.severity, &r.code, r.message);
        }
    }
}

/// Checks shared by estimators with a bootstrap interval: the value lies outside its own interval
/// (a skewed, biased bootstrap distribution), and the rarest label has few samples.
pub(crate) fn bootstrap_checks(
    d: &mut Diagnostics,
    value: f64,
    interval: Option<&Interval>,
    class_counts: &[f64],
) {
    if let Some(iv) = interval {
        if value.is_finite() && !(iv.low <= value && value <= iv.high) {
            d.add(Reliability::Caution, "value_outside_interval", format!(
                "the value {value:.4} lies outside its bootstrap interval [{:.4}, {:.4}]: the bootstrap distribution is skewed by bias",
                iv.low, iv.high
            ));
        }
    }
    let total: f64 = class_counts.iter().sum();
    small_sample_check(d, total);
    let rare = class_counts
        .iter()
        .filter(|&&c| c > 0.0)
        .fold(f64::INFINITY, |a, &b| a.min(b));
    if rare.is_finite() && rare < 5.0 {
        d.add(Reliability::Caution, "rare_label", format!(
            "a label occurs only {rare:.1} times (weighted): its terms are noisy and the bootstrap undercovers"
        ));
    }
}

/// Below this many (effective) samples the discrete estimators' normal and bootstrap intervals
/// covered 0.885–0.93 instead of 0.95 in the coverage study (skewed, biased sampling
/// distributions; the LBI truth matrix at N = 200: 0.75): a `caution`.
pub(crate) const SMALL_SAMPLE: f64 = 1000.0;

pub(crate) fn small_sample_check(d: &mut Diagnostics, n_eff: f64) {
    if n_eff < SMALL_SAMPLE {
        d.add(Reliability::Caution, "small_sample", format!(
            "{n_eff:.0} (effective) samples: below {SMALL_SAMPLE:.0}, 95 % intervals of this kind covered 0.885-0.93 in the coverage study at N = 100-300 (semantic_mi's LBI mode 0.75 at N = 200)"
        ));
    }
}

/// The result of one estimator run.
#[derive(Debug, Clone)]
pub struct Output {
    /// Primary statistic in nats, raw (never clipped at 0); may be `-inf` where correct.
    pub value: f64,
    /// Uncertainty interval in nats.
    pub interval: Option<Interval>,
    /// Number of samples used.
    pub n: usize,
    /// Secondary statistics (nats) and breakdowns; never NaN/inf (those become `null` + a reason).
    pub details: Value,
    /// Mergeable sufficient statistics for [`pool`], `None` when the estimator is not mergeable.
    pub sufficient: Option<Value>,
    /// The trust report.
    pub diagnostics: Diagnostics,
}

/// Plain single-label inputs built by the worker.
pub struct ClassInput<'a> {
    /// True class index per sample, `< k`.
    pub labels: &'a [u32],
    /// Hard prediction per sample, `< k`.
    pub predictions: &'a [u32],
    pub k: usize,
    /// N×K class probabilities, rows summing to ~1.
    pub probabilities: Option<ndarray::ArrayView2<'a, f64>>,
    /// Non-negative sample weights.
    pub weights: Option<&'a [f64]>,
    /// K×K truth matrix, `T[true][pred]` in [0,1].
    pub truth_matrix: Option<ndarray::ArrayView2<'a, f64>>,
}

/// Plain multi-label inputs built by the worker.
pub struct MultilabelInput<'a> {
    /// N×L in {0,1} (soft values in [0,1] are allowed for the semantic estimator).
    pub labels: ndarray::ArrayView2<'a, f64>,
    /// N×L scores in [0,1].
    pub scores: ndarray::ArrayView2<'a, f64>,
    pub weights: Option<&'a [f64]>,
}

/// A value pooled over several batches.
#[derive(Debug, Clone, PartialEq)]
pub struct Pooled {
    /// The pooled primary statistic in nats.
    pub value: f64,
    /// Its interval (nats) where the pooled statistics determine one exactly (`shannon_mi`
    /// multiclass: the jackknife interval of the concatenated batches); `None` otherwise.
    pub interval: Option<(f64, f64)>,
    /// The trust report of the pooled value where the pooled statistics determine one.
    pub diagnostics: Option<Diagnostics>,
}

/// Pooled value over several batches' `sufficient` statistics (exact, not an average of
/// averages): the same statistic the estimator reports for one batch, computed on the summed
/// statistics. `level` is the interval level. `None` when the estimator is not mergeable, the
/// list is empty, or the statistics are malformed/incompatible. Callers pool results of one
/// estimator version only (versions differ in what they store).
pub fn pool(estimator_id: &str, sufficient: &[Value], level: f64) -> Option<Pooled> {
    if sufficient.is_empty() {
        return None;
    }
    let value_only = |v: Option<f64>| {
        v.map(|value| Pooled {
            value,
            interval: None,
            diagnostics: None,
        })
    };
    match estimator_id {
        "shannon_mi" => shannon::pool_sufficient(sufficient, level),
        "semantic_mi" => value_only(semantic::pool_sufficient(sufficient)),
        "ce_bound" => value_only(ce_bound::pool_sufficient(sufficient)),
        "implied_mi" => value_only(implied::pool_sufficient(sufficient)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// A finite number as JSON, or `null` for NaN/inf.
pub(crate) fn num(x: f64) -> Value {
    if x.is_finite() {
        serde_json::json!(x)
    } else {
        Value::Null
    }
}

/// Validate a weight vector of length `n` and return weights normalised to sum to `n`.
/// `None` means unit weights.
pub(crate) fn normalized_weights(
    weights: Option<&[f64]>,
    n: usize,
) -> Result<Option<Vec<f64>>, EstimateError> {
    let Some(w) = weights else {
        return Ok(None);
    };
    if w.len() != n {
        return Err(EstimateError::invalid(format!(
            "weights has {} entries but there are {} samples",
            w.len(),
            n
        )));
    }
    let mut total = 0.0;
    for (i, &x) in w.iter().enumerate() {
        if !x.is_finite() || x < 0.0 {
            return Err(EstimateError::invalid(format!(
                "weight of sample {i} is {x}; weights must be finite and non-negative"
            )));
        }
        total += x;
    }
    if total <= 0.0 {
        return Err(EstimateError::invalid(
            "all sample weights are zero; at least one sample must have positive weight",
        ));
    }
    let scale = n as f64 / total;
    Ok(Some(w.iter().map(|&x| x * scale).collect()))
}

/// Validate labels/predictions of a [`ClassInput`].
pub(crate) fn check_class_input(input: &ClassInput<'_>) -> Result<usize, EstimateError> {
    let n = input.labels.len();
    if n == 0 {
        return Err(EstimateError::invalid("the batch has no samples"));
    }
    if input.predictions.len() != n {
        return Err(EstimateError::invalid(format!(
            "labels has {} entries but predictions has {}",
            n,
            input.predictions.len()
        )));
    }
    if input.k == 0 {
        return Err(EstimateError::invalid(
            "the number of classes k must be at least 1",
        ));
    }
    if let Some((i, &v)) = input
        .labels
        .iter()
        .enumerate()
        .find(|(_, &v)| v as usize >= input.k)
    {
        return Err(EstimateError::invalid(format!(
            "label of sample {i} is {v}, outside 0..{}",
            input.k
        )));
    }
    if let Some((i, &v)) = input
        .predictions
        .iter()
        .enumerate()
        .find(|(_, &v)| v as usize >= input.k)
    {
        return Err(EstimateError::invalid(format!(
            "prediction of sample {i} is {v}, outside 0..{}",
            input.k
        )));
    }
    Ok(n)
}

/// Validate the shared `bootstrap` / `confidence` parameters.
pub(crate) fn check_bootstrap_params(bootstrap: usize, confidence: f64) -> Result<(), String> {
    if bootstrap > 10_000 {
        return Err(format!(
            "bootstrap must be between 0 and 10000 replicates (got {bootstrap})"
        ));
    }
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(format!(
            "confidence must be strictly between 0 and 1 (got {confidence})"
        ));
    }
    Ok(())
}

/// Validate a `mode` string against the allowed values.
pub(crate) fn check_choice(name: &str, value: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{name} must be one of {} (got \"{value}\")",
            allowed
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}
