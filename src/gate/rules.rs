//! Rule semantics, evaluated purely (no I/O) on resolved metric values.
//!
//! A rule compares one metric of the candidate version with a bound. The bound is the rule's
//! `threshold`, or is derived from a baseline version's value with `max_regression` /
//! `min_improvement`; when both a threshold and a baseline bound are given, both must hold.
//!
//! Direction comes from `op`: `gte`/`gt` mean "higher is better", `lte`/`lt` "lower is better".
//! For higher-is-better metrics, `max_regression {absolute: a, relative: r}` allows the candidate
//! to fall at most `a` (and at most `r·|baseline|`) below the baseline: bound = baseline − min(a,
//! r·|b|) when both are given (both limits must hold). `min_improvement` requires the candidate to
//! rise at least `a` (and `r·|baseline|`) above it: bound = baseline + max(a, r·|b|). For
//! lower-is-better metrics the signs flip. A zero baseline uses the absolute form only (a relative
//! change of zero is undefined); a rule with only a relative change and a zero baseline is
//! inconclusive.
//!
//! A baseline rule judges the *difference* Δ = candidate − baseline, with Δ's own interval:
//! `paired` when both versions were evaluated on the same samples (a paired bootstrap that
//! resamples the shared samples, so their noise cancels; a version against itself has Δ = 0 with
//! a zero-width interval and passes), else the two sides' intervals combined as independent
//! (`independent`, or `pooled` when a side pools several batches). The rule holds when Δ meets
//! the allowed change (Δ ≥ −allowance for `max_regression`, Δ ≥ requirement for
//! `min_improvement`, signs flipped for lower-is-better metrics). A `threshold` is judged on the
//! candidate's own value and interval; with both, both must hold (a definite miss decides, an
//! undecided part makes the rule inconclusive).
//!
//! `use` picks the statistic compared: `value` (default) compares the point value (of the
//! candidate, or of Δ), and is `inconclusive` when its interval straddles the bound (the data
//! cannot tell); `ci_low` / `ci_high` compare that end of the interval and never straddle (a
//! one-sided, deliberately conservative or lenient decision). Inclusive ops (`gte`, `lte`) pass at
//! equality, strict ones (`gt`, `lt`) fail at equality.
//!
//! Trust: a metric whose result (or whose baseline's result) is `unreliable` by its own checks
//! (`diagnostics`) makes the rule `inconclusive` with the reasons; `caution` is reported with the
//! outcome and changes nothing.
//!
//! A failing `warning` rule yields `warn`; the decision is `fail` if any critical rule fails, else
//! `pending` if any rule waits on unfinished jobs, else `inconclusive` if any critical rule is
//! inconclusive, else `warn` if any rule warns or a warning rule is inconclusive, else `pass`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::estimate::{Diagnostics, Reliability};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Gte,
    Gt,
    Lte,
    Lt,
}

impl Op {
    fn higher_is_better(self) -> bool {
        matches!(self, Op::Gte | Op::Gt)
    }
    fn holds(self, x: f64, bound: f64) -> bool {
        match self {
            Op::Gte => x >= bound,
            Op::Gt => x > bound,
            Op::Lte => x <= bound,
            Op::Lt => x < bound,
        }
    }
    fn symbol(self) -> &'static str {
        match self {
            Op::Gte => "≥",
            Op::Gt => ">",
            Op::Lte => "≤",
            Op::Lt => "<",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Use {
    #[default]
    Value,
    CiLow,
    CiHigh,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Critical,
    Warning,
}

/// A change relative to a baseline: absolute (in the metric's unit) and/or relative (a fraction
/// of |baseline|, e.g. 0.02 for 2 %).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Change {
    #[schema(minimum = 0)]
    pub absolute: Option<f64>,
    #[schema(minimum = 0)]
    pub relative: Option<f64>,
}

/// `min_samples`: any integral JSON number from 0 to i64::MAX (JSON Schema's `integer` includes
/// `300.0`; the bound is what the document states and what the database can hold).
fn min_samples<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error as _;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let out_of_range = || {
        D::Error::custom(format!(
            "min_samples {n} is not an integer from 0 to {}",
            i64::MAX
        ))
    };
    let v = match (n.as_u64(), n.as_f64()) {
        (Some(v), _) => v,
        (None, Some(f)) if f.fract() == 0.0 && (0.0..9.223_372_036_854_775e18).contains(&f) => {
            f as u64
        }
        _ => return Err(out_of_range()),
    };
    if v > i64::MAX as u64 {
        return Err(out_of_range());
    }
    Ok(Some(v))
}

/// One gate rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"metric": "semantic_mi", "op": "gte", "baseline": "production",
    "max_regression": {"relative": 0.02}, "use": "ci_low", "severity": "critical"}))]
pub struct Rule {
    /// `estimator[.statistic][{key=value}]` (e.g. `semantic_mi.efficiency`, `shannon_mi.nmi`,
    /// or one segment value's `semantic_mi{region=eu}`, judged on that segment's results: its
    /// value and interval, pooled over the version's batches as the whole metric is; a segment
    /// value the version's batches never carried has no data, like an unknown metric).
    #[schema(
        pattern = r#"^(shannon_mi|semantic_mi|ce_bound|implied_mi|rg_curve|ksg|mixed_ksg|infonce|mine|nwj|smile)(\.[A-Za-z0-9_]+)?(\{[A-Za-z][A-Za-z0-9_]{0,31}=[^{}=,"\x00-\x1f\x7f-\x9f]{1,64}\})?$"#
    )]
    pub metric: String,
    pub op: Op,
    /// Absolute bound, in the request's unit (bits unless `?unit=nats`).
    pub threshold: Option<f64>,
    /// Baseline: an alias, a version name, or `previous` (the version created before the candidate).
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")]
    pub baseline: Option<String>,
    pub max_regression: Option<Change>,
    pub min_improvement: Option<Change>,
    #[serde(rename = "use", default)]
    pub use_: Use,
    /// Fewer samples than this: inconclusive. An integer from 0 to 2^63 − 1 (an integral number
    /// such as `300.0` counts as one).
    #[schema(maximum = 9_223_372_036_854_775_807_u64)]
    #[serde(default, deserialize_with = "min_samples")]
    pub min_samples: Option<u64>,
    #[serde(default)]
    pub severity: Severity,
}

impl Rule {
    /// Check the rule's own consistency; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.metric.is_empty() {
            return Err("metric must not be empty".into());
        }
        let has_change = self.max_regression.is_some() || self.min_improvement.is_some();
        if self.threshold.is_none() && !has_change {
            return Err(
                "give a threshold, or a baseline with max_regression or min_improvement".into(),
            );
        }
        if has_change && self.baseline.is_none() {
            return Err("max_regression and min_improvement need a baseline".into());
        }
        if self.baseline.is_some() && !has_change {
            return Err("a baseline needs max_regression or min_improvement".into());
        }
        if self.max_regression.is_some() && self.min_improvement.is_some() {
            return Err("give max_regression or min_improvement, not both".into());
        }
        for (name, c) in [
            ("max_regression", self.max_regression),
            ("min_improvement", self.min_improvement),
        ] {
            if let Some(c) = c {
                if c.absolute.is_none() && c.relative.is_none() {
                    return Err(format!("{name} needs absolute, relative or both"));
                }
                for (part, v) in [("absolute", c.absolute), ("relative", c.relative)] {
                    if let Some(v) = v {
                        if !v.is_finite() || v < 0.0 {
                            return Err(format!("{name}.{part} must be a non-negative number"));
                        }
                    }
                }
            }
        }
        if let Some(t) = self.threshold {
            if !t.is_finite() {
                return Err("threshold must be a finite number".into());
            }
        }
        Ok(())
    }
}

/// A metric value as the gate sees it (already in the request's unit).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    pub value: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// The interval's level (0.95 when unknown).
    pub level: Option<f64>,
    pub n: u64,
    /// The result's trust report (`None` for results stored before estimators made one).
    pub diagnostics: Option<Diagnostics>,
}

/// What the evaluator knows about a rule's metric.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Value(Observed),
    /// Jobs for the metric are still queued or running.
    Pending,
    /// No result and nothing on the way.
    Missing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Inconclusive,
    Pending,
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Pending => "pending",
            Verdict::Fail => "fail",
        }
    }
}

/// One rule's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RuleOutcome {
    pub metric: String,
    pub verdict: Verdict,
    pub severity: Severity,
    pub value: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub n: Option<u64>,
    /// The bound the compared statistic had to meet.
    pub threshold: Option<f64>,
    pub baseline_version: Option<String>,
    pub baseline_value: Option<f64>,
    /// candidate − baseline with its interval and how it was obtained (rules with a baseline).
    pub delta: Option<Delta>,
    /// A one-line explanation.
    pub message: String,
    /// The trust report of the candidate's metric (and of the baseline's, its reasons prefixed
    /// `baseline:`): `unreliable` makes the rule inconclusive; `caution` is shown only.
    pub diagnostics: Option<Diagnostics>,
}

/// How the interval of a difference was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeltaMethod {
    /// Both sides were computed on the same samples (same labels and weights, by their
    /// digests): a paired bootstrap resampled the samples once per replicate for both.
    Paired,
    /// Different samples, one batch each: the two intervals combined as independent,
    /// Var(Δ) = se_c² + se_b² (normal approximation, se from each interval's half-width).
    Independent,
    /// Different samples with at least one side pooled over several batches: the pooled
    /// intervals combined as independent.
    Pooled,
}

/// candidate − baseline, with its interval.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"value": -0.012, "relative": -0.011, "ci_low": -0.019, "ci_high": -0.005, "method": "paired"}))]
pub struct Delta {
    pub value: f64,
    /// value / |baseline| (null when the baseline is 0).
    pub relative: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub method: DeltaMethod,
}

/// Δ of two observations taken as independent (see [`DeltaMethod::Independent`]); without a
/// two-sided interval on both sides, Δ has no interval.
pub fn independent_delta(c: &Observed, b: &Observed, pooled: bool) -> Delta {
    let z = crate::stats::normal_quantile(0.975);
    let se = |o: &Observed| match (o.ci_low, o.ci_high) {
        (Some(lo), Some(hi)) if lo.is_finite() && hi.is_finite() => {
            let level = o.level.unwrap_or(0.95);
            Some((hi - lo) / (2.0 * crate::stats::normal_quantile(0.5 + level / 2.0)))
        }
        _ => None,
    };
    let value = c.value - b.value;
    let ci = match (se(c), se(b)) {
        (Some(x), Some(y)) => {
            let s = (x * x + y * y).sqrt();
            (Some(value - z * s), Some(value + z * s))
        }
        _ => (None, None),
    };
    Delta {
        value,
        relative: (b.value != 0.0).then(|| value / b.value.abs()),
        ci_low: ci.0,
        ci_high: ci.1,
        method: if pooled {
            DeltaMethod::Pooled
        } else {
            DeltaMethod::Independent
        },
    }
}

/// One part of a rule: a statistic (with an optional interval) against a bound.
fn judge(
    stat: Option<f64>,
    interval: (Option<f64>, Option<f64>),
    use_: Use,
    op: Op,
    bound: f64,
) -> Result<bool, String> {
    let Some(stat) = stat else {
        return Err("there is no interval to compare".into());
    };
    if stat.is_nan() {
        return Err("the value is not a number".into());
    }
    if use_ == Use::Value {
        if let (Some(lo), Some(hi)) = interval {
            if lo < bound && bound < hi {
                return Err(format!(
                    "interval [{lo:.4}, {hi:.4}] straddles the bound {bound:.4}"
                ));
            }
        }
    }
    Ok(op.holds(stat, bound))
}

/// Evaluate one rule. `baseline` is the resolved baseline version's name and metric input;
/// `paired` the paired difference where both sides were computed on the same samples (else the
/// difference is formed from the two sides as independent).
///
/// A baseline rule judges the difference Δ = candidate − baseline against the change it allows
/// (`max_regression`: Δ ≥ −allowance for higher-is-better metrics; `min_improvement`:
/// Δ ≥ requirement), using Δ's interval (`use: value` is inconclusive when it straddles;
/// `ci_low`/`ci_high` compare its ends). A threshold is judged on the candidate's own value and
/// interval. With both, both must hold.
pub fn evaluate(
    rule: &Rule,
    candidate: &Input,
    baseline: Option<(&str, &Input)>,
    paired: Option<&Delta>,
) -> RuleOutcome {
    let mut out = RuleOutcome {
        metric: rule.metric.clone(),
        verdict: Verdict::Inconclusive,
        severity: rule.severity,
        value: None,
        ci_low: None,
        ci_high: None,
        n: None,
        threshold: None,
        baseline_version: baseline.map(|b| b.0.to_string()),
        baseline_value: None,
        delta: None,
        message: String::new(),
        diagnostics: None,
    };
    let soften = |v: Verdict| match (v, rule.severity) {
        (Verdict::Fail, Severity::Warning) => Verdict::Warn,
        (v, _) => v,
    };
    let obs = match candidate {
        Input::Pending => {
            out.verdict = Verdict::Pending;
            out.message = format!("{}: jobs still running", rule.metric);
            return out;
        }
        Input::Missing => {
            out.message = format!("{}: no result for this version", rule.metric);
            return out;
        }
        Input::Value(o) => o.clone(),
    };
    out.diagnostics = obs.diagnostics.clone();
    out.value = Some(obs.value);
    out.ci_low = obs.ci_low;
    out.ci_high = obs.ci_high;
    out.n = Some(obs.n);
    if let Some(min) = rule.min_samples {
        if obs.n < min {
            out.message = format!(
                "{}: N = {} is below min_samples = {min}",
                rule.metric, obs.n
            );
            return out;
        }
    }
    let up = rule.op.higher_is_better();
    // The baseline part: the change Δ must make, and Δ itself.
    let change = rule
        .max_regression
        .map(|c| (c, true))
        .or(rule.min_improvement.map(|c| (c, false)));
    let mut delta_target: Option<(Delta, f64, String)> = None;
    if let Some((change, regression)) = change {
        let Some((name, b)) = baseline else {
            out.message = format!(
                "{}: the baseline {:?} does not resolve to a version",
                rule.metric,
                rule.baseline.as_deref().unwrap_or("")
            );
            return out;
        };
        let bobs = match b {
            Input::Value(o) => o.clone(),
            Input::Pending => {
                out.verdict = Verdict::Pending;
                out.message = format!("{}: baseline {name} still has jobs running", rule.metric);
                return out;
            }
            Input::Missing => {
                out.message = format!(
                    "{}: baseline {name} has no result for this metric",
                    rule.metric
                );
                return out;
            }
        };
        if let Some(d) = &bobs.diagnostics {
            let mut merged = out.diagnostics.take().unwrap_or_default();
            for r in &d.reasons {
                merged.add(r.severity, &r.code, format!("baseline: {}", r.message));
            }
            out.diagnostics = Some(merged);
        }
        let b = bobs.value;
        out.baseline_value = Some(b);
        let delta = paired
            .cloned()
            .unwrap_or_else(|| independent_delta(&obs, &bobs, false));
        let relative = if b == 0.0 {
            None
        } else {
            change.relative.map(|r| r * b.abs())
        };
        let allowed: Vec<f64> = change.absolute.into_iter().chain(relative).collect();
        out.delta = Some(delta.clone());
        if allowed.is_empty() {
            out.message = format!(
                "{}: baseline {name} is 0, so a relative change is undefined; add an absolute one",
                rule.metric
            );
            return out;
        }
        // Regression: the tighter (smaller) allowance; improvement: the larger requirement.
        let amount = if regression {
            allowed.iter().cloned().fold(f64::INFINITY, f64::min)
        } else {
            allowed.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
        };
        // The bound on Δ, in the direction of `op`.
        let target = match (regression, up) {
            (true, true) => -amount,
            (true, false) => amount,
            (false, true) => amount,
            (false, false) => -amount,
        };
        delta_target = Some((delta, target, name.to_string()));
    }
    // The threshold shown: the stricter of the absolute threshold and the baseline's bound.
    let mut bounds: Vec<f64> = rule.threshold.into_iter().collect();
    if let (Some((_, t, _)), Some(b)) = (&delta_target, out.baseline_value) {
        bounds.push(b + t);
    }
    if !bounds.is_empty() {
        out.threshold = Some(if up {
            bounds.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
        } else {
            bounds.iter().cloned().fold(f64::INFINITY, f64::min)
        });
    }
    if let Some(d) = out
        .diagnostics
        .as_ref()
        .filter(|d| d.reliability == Reliability::Unreliable)
    {
        let why: Vec<&str> = d
            .reasons
            .iter()
            .filter(|r| r.severity == Reliability::Unreliable)
            .map(|r| r.message.as_str())
            .collect();
        out.message = format!("{}: unreliable: {}", rule.metric, why.join("; "));
        return out;
    }
    let which = match rule.use_ {
        Use::Value => "value",
        Use::CiLow => "ci_low",
        Use::CiHigh => "ci_high",
    };
    let pick = |v: f64, lo: Option<f64>, hi: Option<f64>| match rule.use_ {
        Use::Value => Some(v),
        Use::CiLow => lo,
        Use::CiHigh => hi,
    };
    let mut parts: Vec<String> = Vec::new();
    let (mut failed, mut undecided) = (false, false);
    if let Some(t) = rule.threshold {
        let stat = pick(obs.value, obs.ci_low, obs.ci_high);
        match judge(stat, (obs.ci_low, obs.ci_high), rule.use_, rule.op, t) {
            Err(why) => {
                undecided = true;
                parts.push(why);
            }
            Ok(ok) => {
                failed |= !ok;
                parts.push(format!(
                    "{which} {:.4} {} {} {t:.4}",
                    stat.unwrap_or(f64::NAN),
                    if ok { "meets" } else { "misses" },
                    rule.op.symbol()
                ));
            }
        }
    }
    if let Some((delta, target, name)) = &delta_target {
        let stat = pick(delta.value, delta.ci_low, delta.ci_high);
        let method = match delta.method {
            DeltaMethod::Paired => "paired",
            DeltaMethod::Independent => "independent",
            DeltaMethod::Pooled => "pooled",
        };
        match judge(
            stat,
            (delta.ci_low, delta.ci_high),
            rule.use_,
            rule.op,
            *target,
        ) {
            Err(why) => {
                undecided = true;
                parts.push(format!("the difference from {name} ({method}): {why}"));
            }
            Ok(ok) => {
                failed |= !ok;
                parts.push(format!(
                    "difference from {name} ({method}) {which} {:+.4} {} {} {target:+.4} (baseline {:.4})",
                    stat.unwrap_or(f64::NAN),
                    if ok { "meets" } else { "misses" },
                    rule.op.symbol(),
                    out.baseline_value.unwrap_or(f64::NAN),
                ));
            }
        }
    }
    // A definite miss decides; otherwise an undecided part leaves the rule inconclusive.
    out.verdict = if failed {
        soften(Verdict::Fail)
    } else if undecided {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    };
    out.message = format!("{}: {}", rule.metric, parts.join("; "));
    out
}

/// The decision over all rules.
pub fn decide(outcomes: &[RuleOutcome]) -> Verdict {
    let critical = |v: Verdict| {
        outcomes
            .iter()
            .any(|o| o.severity == Severity::Critical && o.verdict == v)
    };
    if critical(Verdict::Fail) {
        Verdict::Fail
    } else if outcomes.iter().any(|o| o.verdict == Verdict::Pending) {
        Verdict::Pending
    } else if critical(Verdict::Inconclusive) {
        Verdict::Inconclusive
    } else if outcomes
        .iter()
        .any(|o| matches!(o.verdict, Verdict::Warn | Verdict::Inconclusive))
    {
        Verdict::Warn
    } else {
        Verdict::Pass
    }
}
