//! Segments: an estimator's value per value of a categorical per-sample column S (region, device,
//! tier), and the decomposition of the information by segment.
//!
//! For a segment value s with probability P(s) (its share of the samples, or of the weight when
//! the batch is weighted) and the estimator's value I_s on the samples of s:
//! - the conditional information I(Y;Ŷ|S) = Σ_s P(s) I_s (Cover & Thomas, *Elements of
//!   Information Theory*, 2nd ed., eq. 2.60: conditional mutual information is the P(s)-weighted
//!   average of the per-value mutual informations);
//! - each segment's contribution P(s) I_s and its share of Σ_s P(s) I_s;
//! - I(Y;S), the information the segment carries about the label, from the Y×S table with the
//!   same jackknife bias correction and standard error as `shannon_mi`;
//! - on the plug-in (empirical-distribution) values the chain rule
//!   I(Y; Ŷ,S) = I(Y;S) + I(Y;Ŷ|S) (Cover & Thomas, Theorem 2.5.2) holds exactly, so
//!   `details.plug_in` reports the three terms and I(Y;Ŷ) for the interaction
//!   I(Y;Ŷ) − I(Y;Ŷ|S).
//!
//! The interval of Σ_s P(s) I_s treats the segments as independent (they are disjoint sets of
//! samples; P(s) is taken as fixed): se² = Σ_s P(s)² se_s² with se_s = half the width of segment
//! s's interval over z, and the interval is value ± z·se (normal approximation), so the value is
//! its centre. Pure: no I/O.

use super::contingency::Table;
use super::shannon::{corrected_mi, plugin_mi};
use super::{num, Reliability};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// One segment value's result as stored with the result (nats) and returned (in the unit asked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SegmentValue {
    /// The segment value (`__other__`: the values beyond the cap, grouped).
    pub value: String,
    /// Samples with this value.
    pub n: u64,
    /// P(s): the value's share of the samples (of the weight when the batch is weighted).
    pub share: f64,
    /// The estimator's primary value on this segment's samples; `null` when skipped or not
    /// finite (see `estimate_special`).
    pub estimate: Option<f64>,
    /// `"-Infinity"` when the value is −∞ (semantic MI with a falsified used pair).
    pub estimate_special: Option<String>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// P(s)·I_s: this segment's term of the conditional information Σ_s P(s) I_s.
    pub contribution: Option<f64>,
    /// contribution / Σ_s P(s) I_s (null when the sum is 0 or not finite).
    pub contribution_share: Option<f64>,
    /// The segment result's trust report's verdict.
    pub reliability: Option<Reliability>,
    /// Why this segment has no value (too few samples for the estimator, no weight, …).
    pub skipped: Option<String>,
}

/// The plug-in (empirical) terms of the chain rule I(Y;Ŷ,S) = I(Y;S) + I(Y;Ŷ|S), exact on the
/// batch's own table (nats inside).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlugIn {
    /// I(Y;Ŷ) on the whole batch.
    pub i_y_yhat: f64,
    /// I(Y;S).
    pub i_y_s: f64,
    /// I(Y;Ŷ|S) = Σ_s P(s) I_s(Y;Ŷ) with the segments' plug-in values.
    pub i_y_yhat_given_s: f64,
    /// I(Y;Ŷ,S), the joint.
    pub i_y_yhat_and_s: f64,
    /// I(Y;Ŷ) − I(Y;Ŷ|S): positive when the segment explains part of what the prediction tells
    /// (redundancy), negative when the prediction tells more within segments (synergy).
    pub interaction: f64,
}

/// The decomposition of an estimator's information by the values of one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Decomposition {
    /// Σ_s P(s) I_s over the segment values; null when a segment was skipped or is not finite
    /// (see `reason`). For `shannon_mi` this is the conditional information I(Y;Ŷ|S); for
    /// `semantic_mi`, `ce_bound` and `implied_mi` it is the segment-weighted average of the
    /// estimator, not a conditional mutual information (`quantity` says which).
    pub conditional_mi: Option<f64>,
    /// What `conditional_mi` is.
    #[serde(default)]
    pub quantity: String,
    /// The worst reliability of the segment values that entered the sum (its interval is no
    /// better than theirs); `unreliable` when one was skipped.
    #[serde(default)]
    pub reliability: Option<crate::estimate::Reliability>,
    pub conditional_ci_low: Option<f64>,
    pub conditional_ci_high: Option<f64>,
    /// The estimator's value on the whole batch, for comparison with `conditional_mi`.
    pub whole: Option<f64>,
    /// I(Y;S), jackknife bias-corrected as `shannon_mi` (single-label batches).
    pub i_y_s: Option<f64>,
    pub i_y_s_ci_low: Option<f64>,
    pub i_y_s_ci_high: Option<f64>,
    /// The plug-in chain-rule terms (`shannon_mi` on single-label batches).
    pub plug_in: Option<PlugIn>,
    /// How the intervals were computed.
    pub method: String,
    /// Why `conditional_mi` is null, when it is.
    pub reason: Option<String>,
}

/// Per key: the values (most frequent first, `__other__` last) and the decomposition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KeySegments {
    pub values: Vec<SegmentValue>,
    /// Values left out of this answer (the largest [`SHOWN_VALUES`] by sample count are shown;
    /// each value's series is `estimator{key=value}` in history). Absent when none were.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub values_omitted: u64,
    /// Present for the estimators whose value is an average over samples (`shannon_mi`,
    /// `semantic_mi`, `ce_bound`, `implied_mi`).
    pub decomposition: Option<Decomposition>,
}

/// Most values of one key an answer lists (the rest are counted in `values_omitted`).
pub const SHOWN_VALUES: usize = 100;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Key → its segments.
pub type Segments = BTreeMap<String, KeySegments>;

/// One stored per-segment result: what a metric `estimator{key=value}` reads.
#[derive(Debug, Clone)]
pub struct SegmentRow {
    pub key: String,
    pub value: String,
    pub n: u64,
    pub share: f64,
    /// Nats (may be −∞).
    pub estimate: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub details: serde_json::Value,
    pub sufficient: Option<serde_json::Value>,
    pub diagnostics: serde_json::Value,
}

pub const METHOD: &str = "conditional: sum of P(s) * I_s +/- z * sqrt(sum of P(s)^2 * se_s^2 + sum of P(s) * (I_s - sum)^2 / (N - 1)), se_s = half-width of segment s's interval / z (disjoint segments taken as independent), the second term the noise of the shares P(s) themselves (N: Kish's effective sample size when weighted); I(Y;S): jackknife bias-corrected plug-in +/- z * jackknife se";

/// One segment's value with its share and interval, as input to [`conditional`].
#[derive(Debug, Clone, Copy)]
pub struct Part {
    pub share: f64,
    pub value: f64,
    pub interval: Option<(f64, f64)>,
}

/// Σ_s P(s) I_s with its interval (see [`METHOD`]). `Err(reason)` when a part is not finite.
/// The interval is `None` when a part has none. `n` is the number of samples (Kish's effective
/// number when weighted): the shares P̂(s) are estimates too, and their noise adds
/// Σ_s P(s) (I_s − Σ)² / (N − 1) to the variance (holding them fixed covered 0.82–0.85 where
/// segments differ, against 0.95 with the term).
pub fn conditional(
    parts: &[Part],
    level: f64,
    n: f64,
) -> Result<(f64, Option<(f64, f64)>), String> {
    if let Some(p) = parts.iter().find(|p| !p.value.is_finite()) {
        return Err(format!(
            "a segment's value is {} (the weighted sum is not finite)",
            p.value
        ));
    }
    let value: f64 = parts.iter().map(|p| p.share * p.value).sum();
    let z = crate::stats::normal_quantile(0.5 + level / 2.0);
    let mut var = 0.0;
    for p in parts {
        let Some((lo, hi)) = p.interval.filter(|(l, h)| l.is_finite() && h.is_finite()) else {
            return Ok((value, None));
        };
        let se = (hi - lo).max(0.0) / (2.0 * z);
        var += p.share * p.share * se * se;
    }
    if n > 1.0 {
        var += parts
            .iter()
            .map(|p| p.share * (p.value - value).powi(2))
            .sum::<f64>()
            / (n - 1.0);
    }
    let half = z * var.sqrt();
    Ok((value, Some((value - half, value + half))))
}

/// Contribution P(s)·I_s and its share of the total for each part (`None` where not finite).
pub fn contributions(parts: &[Part]) -> Vec<(Option<f64>, Option<f64>)> {
    let total: f64 = parts.iter().map(|p| p.share * p.value).sum();
    parts
        .iter()
        .map(|p| {
            let c = p.share * p.value;
            let c = c.is_finite().then_some(c);
            let s = c.and_then(|c| {
                let s = c / total;
                (total != 0.0 && total.is_finite() && s.is_finite()).then_some(s)
            });
            (c, s)
        })
        .collect()
}

/// I(Y;S) from labels and segment codes: (jackknife value clipped to [0, ln min(K, segments)], plug-in, interval at `level`).
pub fn label_segment_mi(
    labels: &[u32],
    k: usize,
    codes: &[u32],
    segments: usize,
    weights: Option<&[f64]>,
    level: f64,
) -> (f64, f64, Option<(f64, f64)>) {
    let t = Table::from_pairs(labels, codes, k, segments, weights);
    let w2 = weights.map(|w| {
        let sq: Vec<f64> = w.iter().map(|v| v * v).collect();
        aligned(
            &t,
            &Table::from_pairs(labels, codes, k, segments, Some(&sq)),
        )
    });
    let c = corrected_mi(&t, w2.as_deref());
    if !c.value.is_finite() {
        return (c.value, c.plug_in, None);
    }
    // The same value and interval as shannon_mi's (clipped to [0, ln min(K, segments)], widened
    // near independence and on sparse tables), so I(Y;S) = 0 sits inside it when the segment
    // says nothing of the label.
    let (value, iv, _) = super::shannon::mi_interval(
        &t,
        &c,
        k.min(segments).max(1),
        level,
        SEGMENT_REPLICATES,
        0x5e9_1b5,
    );
    (value, c.plug_in, iv.map(|i| (i.low, i.high)))
}

/// Parametric bootstrap draws behind the I(Y;S) interval.
const SEGMENT_REPLICATES: usize = 200;

/// The masses of `other` (a table with the same or fewer occupied cells) aligned on `t`'s cells.
fn aligned(t: &Table, other: &Table) -> Vec<f64> {
    let mut map = std::collections::HashMap::with_capacity(other.nnz());
    for i in 0..other.nnz() {
        map.insert((other.rows[i], other.cols[i]), other.counts[i]);
    }
    (0..t.nnz())
        .map(|i| map.get(&(t.rows[i], t.cols[i])).copied().unwrap_or(0.0))
        .collect()
}

/// Plug-in I(Y;Ŷ,S): the MI between the label and the pair (prediction, segment).
pub fn plugin_joint(
    labels: &[u32],
    predictions: &[u32],
    k: usize,
    codes: &[u32],
    segments: usize,
    weights: Option<&[f64]>,
) -> f64 {
    let joint: Vec<u32> = predictions
        .iter()
        .zip(codes)
        .map(|(&p, &s)| s * k as u32 + p)
        .collect();
    plugin_mi(&Table::from_pairs(labels, &joint, k, k * segments, weights))
}

/// Plug-in I(Y;Ŷ) of one set of samples.
pub fn plugin_pairs(labels: &[u32], predictions: &[u32], k: usize, weights: Option<&[f64]>) -> f64 {
    plugin_mi(&Table::from_pairs(labels, predictions, k, k, weights))
}

/// A finite value or `None`, with the special word for the others.
pub fn finite_or_special(x: f64) -> (Option<f64>, Option<String>) {
    if x.is_finite() {
        (Some(x), None)
    } else if x.is_nan() {
        (None, Some("NaN".into()))
    } else if x > 0.0 {
        (None, Some("Infinity".into()))
    } else {
        (None, Some("-Infinity".into()))
    }
}

impl SegmentValue {
    /// The same in units of `factor` per nat.
    pub fn scaled(&self, f: f64) -> SegmentValue {
        let s = |x: Option<f64>| x.map(|x| x * f);
        SegmentValue {
            estimate: s(self.estimate),
            ci_low: s(self.ci_low),
            ci_high: s(self.ci_high),
            contribution: s(self.contribution),
            ..self.clone()
        }
    }
}

impl Decomposition {
    pub fn scaled(&self, f: f64) -> Decomposition {
        let s = |x: Option<f64>| x.map(|x| x * f);
        Decomposition {
            conditional_mi: s(self.conditional_mi),
            conditional_ci_low: s(self.conditional_ci_low),
            conditional_ci_high: s(self.conditional_ci_high),
            whole: s(self.whole),
            i_y_s: s(self.i_y_s),
            i_y_s_ci_low: s(self.i_y_s_ci_low),
            i_y_s_ci_high: s(self.i_y_s_ci_high),
            plug_in: self.plug_in.as_ref().map(|p| PlugIn {
                i_y_yhat: p.i_y_yhat * f,
                i_y_s: p.i_y_s * f,
                i_y_yhat_given_s: p.i_y_yhat_given_s * f,
                i_y_yhat_and_s: p.i_y_yhat_and_s * f,
                interaction: p.interaction * f,
            }),
            method: self.method.clone(),
            reason: self.reason.clone(),
            quantity: self.quantity.clone(),
            reliability: self.reliability,
        }
    }
}

/// Stored segments (nats) in units of `factor` per nat.
pub fn scale_segments(s: &Segments, f: f64) -> Segments {
    s.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                KeySegments {
                    values: v.values.iter().map(|x| x.scaled(f)).collect(),
                    values_omitted: v.values_omitted,
                    decomposition: v.decomposition.as_ref().map(|d| d.scaled(f)),
                },
            )
        })
        .collect()
}

/// The segments as an answer lists them: per key the first [`SHOWN_VALUES`] values (they are
/// ordered by sample count), the rest counted; the decomposition covers every value.
pub fn shown_segments(mut s: Segments) -> Segments {
    for k in s.values_mut() {
        if k.values.len() > SHOWN_VALUES {
            k.values_omitted += (k.values.len() - SHOWN_VALUES) as u64;
            k.values.truncate(SHOWN_VALUES);
        }
    }
    s
}

/// One side of a segment in a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SideOfSegment {
    pub share: f64,
    pub estimate: Option<f64>,
    pub contribution: Option<f64>,
}

/// One segment value's contribution to the change of Σ_s P(s) I_s between two versions.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SegmentChange {
    /// The segment value.
    pub value: String,
    /// Absent when the side's batch had no samples with this value (contribution 0).
    pub baseline: Option<SideOfSegment>,
    pub candidate: Option<SideOfSegment>,
    /// P_c(s)·I_c(s) − P_b(s)·I_b(s): negative when the segment lost information.
    pub change: Option<f64>,
    /// change / Σ_s change (the change of the conditional information); null when that sum is 0
    /// or not finite.
    pub change_share: Option<f64>,
}

/// The segment values of one key ranked by their contribution to the change between a baseline
/// and a candidate, most negative (the segment that lost the most) first; values without a
/// finite change last. A value absent on one side contributes 0 there, so the changes sum to
/// the change of Σ_s P(s) I_s.
pub fn rank_changes(baseline: &KeySegments, candidate: &KeySegments) -> Vec<SegmentChange> {
    let side = |k: &KeySegments, name: &str| {
        k.values
            .iter()
            .find(|v| v.value == name)
            .map(|v| SideOfSegment {
                share: v.share,
                estimate: v.estimate,
                contribution: v.contribution,
            })
    };
    let mut names: Vec<&str> = candidate.values.iter().map(|v| v.value.as_str()).collect();
    for v in &baseline.values {
        if !names.contains(&v.value.as_str()) {
            names.push(&v.value);
        }
    }
    let mut out: Vec<SegmentChange> = names
        .into_iter()
        .map(|name| {
            let (b, c) = (side(baseline, name), side(candidate, name));
            let contribution = |s: &Option<SideOfSegment>| match s {
                None => Some(0.0),
                Some(s) => s.contribution,
            };
            let change = match (contribution(&c), contribution(&b)) {
                (Some(x), Some(y)) => Some(x - y).filter(|d| d.is_finite()),
                _ => None,
            };
            SegmentChange {
                value: name.to_string(),
                baseline: b,
                candidate: c,
                change,
                change_share: None,
            }
        })
        .collect();
    let total: f64 = out.iter().filter_map(|c| c.change).sum();
    if total != 0.0 && total.is_finite() && out.iter().all(|c| c.change.is_some()) {
        for c in &mut out {
            c.change_share = c.change.map(|x| x / total);
        }
    }
    out.sort_by(|a, b| match (a.change, b.change) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.value.cmp(&b.value),
    });
    out
}

/// JSON number or null (re-exported for the bridge).
pub fn json_num(x: f64) -> serde_json::Value {
    num(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Labels and predictions of a binary symmetric channel with error e, n samples, exactly
    /// (n·(1−e)/2 on each diagonal cell, n·e/2 off it).
    fn bsc(n: usize, e: f64) -> (Vec<u32>, Vec<u32>) {
        let wrong = (n as f64 * e / 2.0).round() as usize;
        let right = n / 2 - wrong;
        let (mut y, mut p) = (vec![], vec![]);
        for (a, b, c) in [(0, 0, right), (0, 1, wrong), (1, 1, right), (1, 0, wrong)] {
            y.extend(std::iter::repeat_n(a, c));
            p.extend(std::iter::repeat_n(b, c));
        }
        (y, p)
    }

    /// Closed form: the plug-in MI of an exact BSC table with uniform input is ln 2 − H_b(e)
    /// (Cover & Thomas, eq. 7.15 in nats).
    fn bsc_mi(e: f64) -> f64 {
        let hb = if e == 0.0 {
            0.0
        } else {
            -(e * e.ln() + (1.0 - e) * (1.0 - e).ln())
        };
        std::f64::consts::LN_2 - hb
    }

    #[test]
    fn segments_with_known_mi_decompose_exactly() {
        // Segment a: 3000 samples of a BSC(0.1); b: 1000 samples of a BSC(0.3); c: 2000 of a
        // noiseless channel. P = (1/2, 1/6, 1/3).
        let parts_def = [(3000usize, 0.1), (1000, 0.3), (2000, 0.0)];
        let (mut y, mut p, mut s) = (vec![], vec![], vec![]);
        let mut seg_plugin = vec![];
        for (code, &(n, e)) in parts_def.iter().enumerate() {
            let (yy, pp) = bsc(n, e);
            let v = plugin_pairs(&yy, &pp, 2, None);
            assert!((v - bsc_mi(e)).abs() < 1e-12, "segment {code}: {v}");
            seg_plugin.push(v);
            y.extend(yy);
            p.extend(pp);
            s.extend(std::iter::repeat_n(code as u32, n));
        }
        let n = y.len() as f64;
        let parts: Vec<Part> = parts_def
            .iter()
            .zip(&seg_plugin)
            .map(|(&(m, _), &v)| Part {
                share: m as f64 / n,
                value: v,
                interval: Some((v - 0.01, v + 0.01)),
            })
            .collect();
        let (cond, iv) = conditional(&parts, 0.95, n).unwrap();
        let expected = 0.5 * bsc_mi(0.1) + bsc_mi(0.3) / 6.0 + bsc_mi(0.0) / 3.0;
        assert!((cond - expected).abs() < 1e-12);
        let (lo, hi) = iv.unwrap();
        assert!(lo < cond && cond < hi);
        // se² = Σ P² (0.01/z)² + Σ P (I_s − cond)² / (N − 1): the segments' own noise and the
        // shares' (computed here term by term from the three parts).
        let z = crate::stats::normal_quantile(0.975);
        let within = (0.01 / z).powi(2) * (0.25f64 + 1.0 / 36.0 + 1.0 / 9.0);
        let between = (0.5 * (bsc_mi(0.1) - expected).powi(2)
            + (bsc_mi(0.3) - expected).powi(2) / 6.0
            + (bsc_mi(0.0) - expected).powi(2) / 3.0)
            / (n - 1.0);
        let half = z * (within + between).sqrt();
        assert!((hi - cond - half).abs() < 1e-12, "{} vs {half}", hi - cond);
        // Without the shares' noise (one sample: N − 1 = 0 drops it), the within part alone.
        let (_, iv1) = conditional(&parts, 0.95, 1.0).unwrap();
        assert!((iv1.unwrap().1 - cond - z * within.sqrt()).abs() < 1e-12);
        // Every segment has uniform labels, so I(Y;S) = 0 exactly on the plug-in.
        let (_, iys_plug, _) = label_segment_mi(&y, 2, &s, 3, None, 0.95);
        assert!(iys_plug.abs() < 1e-12);
        // Chain rule on plug-ins: I(Y;Ŷ,S) = I(Y;S) + Σ P(s) I_s.
        let joint = plugin_joint(&y, &p, 2, &s, 3, None);
        assert!((joint - (iys_plug + expected)).abs() < 1e-12);
        // Contributions sum to the conditional and their shares to 1.
        let c = contributions(&parts);
        let sum: f64 = c.iter().map(|x| x.0.unwrap()).sum();
        let shares: f64 = c.iter().map(|x| x.1.unwrap()).sum();
        assert!((sum - cond).abs() < 1e-12 && (shares - 1.0).abs() < 1e-12);
        assert!((c[0].0.unwrap() - 0.5 * bsc_mi(0.1)).abs() < 1e-12);
    }

    #[test]
    fn chain_rule_holds_on_plugins_when_the_segment_predicts_the_label() {
        // Segment-dependent label frequencies, so I(Y;S) > 0, with 3 classes and weights.
        let mut g = crate::estimate::rng::SplitMix64::new(7);
        let n = 5000;
        let (mut y, mut p, mut s, mut w) = (vec![], vec![], vec![], vec![]);
        for _ in 0..n {
            let seg = g.below(4) as u32;
            let label = if g.uniform() < 0.2 + 0.2 * seg as f64 {
                0
            } else {
                1 + g.below(2) as u32
            };
            let pred = if g.uniform() < 0.7 {
                label
            } else {
                g.below(3) as u32
            };
            y.push(label);
            p.push(pred);
            s.push(seg);
            w.push(0.5 + g.uniform());
        }
        for weights in [None, Some(w.as_slice())] {
            let (iys, iys_plug, iv) = label_segment_mi(&y, 3, &s, 4, weights, 0.95);
            assert!(iys_plug > 0.01, "{iys_plug}");
            let (lo, hi) = iv.unwrap();
            assert!(lo <= iys && iys <= hi);
            let total: f64 = weights.map_or(n as f64, |w| w.iter().sum());
            let mut cond = 0.0;
            for seg in 0..4u32 {
                let idx: Vec<usize> = (0..n).filter(|&i| s[i] == seg).collect();
                let yy: Vec<u32> = idx.iter().map(|&i| y[i]).collect();
                let pp: Vec<u32> = idx.iter().map(|&i| p[i]).collect();
                let ww: Option<Vec<f64>> = weights.map(|w| idx.iter().map(|&i| w[i]).collect());
                let share = ww.as_ref().map_or(idx.len() as f64, |w| w.iter().sum()) / total;
                cond += share * plugin_pairs(&yy, &pp, 3, ww.as_deref());
            }
            let joint = plugin_joint(&y, &p, 3, &s, 4, weights);
            assert!(
                (joint - (iys_plug + cond)).abs() < 1e-12,
                "{joint} vs {iys_plug} + {cond}"
            );
        }
    }

    fn key(values: &[(&str, f64, f64)]) -> KeySegments {
        KeySegments {
            values: values
                .iter()
                .map(|&(name, share, est)| SegmentValue {
                    value: name.into(),
                    n: 100,
                    share,
                    estimate: Some(est),
                    estimate_special: None,
                    ci_low: None,
                    ci_high: None,
                    contribution: Some(share * est),
                    contribution_share: None,
                    reliability: None,
                    skipped: None,
                })
                .collect(),
            values_omitted: 0,
            decomposition: None,
        }
    }

    #[test]
    fn the_segment_that_lost_the_most_comes_first() {
        let b = key(&[("eu", 0.5, 0.8), ("us", 0.3, 0.6), ("apac", 0.2, 0.5)]);
        let c = key(&[("eu", 0.5, 0.3), ("us", 0.3, 0.7), ("latam", 0.2, 0.4)]);
        let r = rank_changes(&b, &c);
        let names: Vec<&str> = r.iter().map(|x| x.value.as_str()).collect();
        // eu: 0.15 − 0.40 = −0.25; apac: 0 − 0.10 = −0.10; us: +0.03; latam: +0.08.
        assert_eq!(names, ["eu", "apac", "us", "latam"]);
        assert!((r[0].change.unwrap() + 0.25).abs() < 1e-12);
        assert!(r[1].candidate.is_none() && r[3].baseline.is_none());
        let total: f64 = r.iter().map(|x| x.change.unwrap()).sum();
        let cond = |k: &KeySegments| {
            k.values
                .iter()
                .map(|v| v.contribution.unwrap())
                .sum::<f64>()
        };
        assert!((total - (cond(&c) - cond(&b))).abs() < 1e-12);
        let shares: f64 = r.iter().map(|x| x.change_share.unwrap()).sum();
        assert!((shares - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_non_finite_segment_leaves_the_sum_undefined() {
        let parts = [
            Part {
                share: 0.5,
                value: 0.2,
                interval: None,
            },
            Part {
                share: 0.5,
                value: f64::NEG_INFINITY,
                interval: None,
            },
        ];
        assert!(conditional(&parts, 0.95, 1000.0).is_err());
        let c = contributions(&parts);
        assert_eq!(c[1], (None, None));
        assert_eq!(c[0].1, None, "the total is not finite: no shares");
    }
}
