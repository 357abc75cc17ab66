//! Paired differences: two models scored on the same samples (the same labels, in the same
//! order, with the same weights). Δ = candidate − baseline, with a paired bootstrap: each
//! replicate draws one multiset of sample indices and recomputes both statistics on it, so the
//! sampling noise of the evaluation set, shared by both, cancels in Δ. A model compared with
//! itself gives Δ = 0 in every replicate: a zero-width interval.
//!
//! The interval is Δ̂ ± z·sd(Δ*) (normal, centred on the reported difference).

use super::rng::SplitMix64;
use super::{ClassInput, Control, EstimateError};
use ndarray::Array2;

/// A paired difference and its interval (nats).
#[derive(Debug, Clone, PartialEq)]
pub struct PairedDelta {
    pub value: f64,
    pub low: f64,
    pub high: f64,
    pub level: f64,
    pub replicates: usize,
}

/// One side's data, owned (a resample).
struct Owned {
    labels: Vec<u32>,
    predictions: Vec<u32>,
    probabilities: Option<Array2<f64>>,
    weights: Option<Vec<f64>>,
}

impl Owned {
    /// A view of the resample with `k` classes and the side's truth matrix.
    fn input<'a>(
        &'a self,
        k: usize,
        truth_matrix: Option<ndarray::ArrayView2<'a, f64>>,
    ) -> ClassInput<'a> {
        ClassInput {
            labels: &self.labels,
            predictions: &self.predictions,
            k,
            probabilities: self.probabilities.as_ref().map(|q| q.view()),
            weights: self.weights.as_deref(),
            truth_matrix,
        }
    }
}

fn gather(input: &ClassInput<'_>, idx: &[usize]) -> Owned {
    Owned {
        labels: idx.iter().map(|&i| input.labels[i]).collect(),
        predictions: idx.iter().map(|&i| input.predictions[i]).collect(),
        probabilities: input.probabilities.map(|q| q.select(ndarray::Axis(0), idx)),
        weights: input.weights.map(|w| idx.iter().map(|&i| w[i]).collect()),
    }
}

/// The paired bootstrap of `statistic(candidate) − statistic(baseline)`. Both inputs must have
/// the same labels and weights (the same samples); `statistic(input, is_candidate)` computes the
/// reported value of one side (with its own interval switched off). `replicates` ≥ 2.
pub fn paired_bootstrap(
    cand: &ClassInput<'_>,
    base: &ClassInput<'_>,
    statistic: impl Fn(&ClassInput<'_>, bool) -> Result<f64, EstimateError>,
    replicates: usize,
    level: f64,
    seed: u64,
    ctl: &Control<'_>,
) -> Result<PairedDelta, EstimateError> {
    let n = cand.labels.len();
    if base.labels != cand.labels || base.weights != cand.weights || base.k != cand.k {
        return Err(EstimateError::invalid(
            "a paired comparison needs the same samples (labels and weights) on both sides",
        ));
    }
    if n < 2 || replicates < 2 {
        return Err(EstimateError::invalid(
            "a paired comparison needs at least 2 samples and 2 replicates",
        ));
    }
    let value = statistic(cand, true)? - statistic(base, false)?;
    let mut g = SplitMix64::new(seed);
    let mut idx = vec![0usize; n];
    let mut deltas = Vec::with_capacity(replicates);
    for r in 0..replicates {
        ctl.tick(r as f64 / replicates as f64)?;
        for i in idx.iter_mut() {
            *i = g.below(n);
        }
        let (c, b) = (gather(cand, &idx), gather(base, &idx));
        let ci = c.input(cand.k, cand.truth_matrix.map(|t| t.reborrow()));
        let bi = b.input(base.k, base.truth_matrix.map(|t| t.reborrow()));
        let d = statistic(&ci, true)? - statistic(&bi, false)?;
        if d.is_finite() {
            deltas.push(d);
        }
    }
    ctl.tick(1.0)?;
    if deltas.len() < 2 || !value.is_finite() {
        return Err(EstimateError::invalid(
            "the paired difference is not finite on this data",
        ));
    }
    let m = deltas.iter().sum::<f64>() / deltas.len() as f64;
    let sd =
        (deltas.iter().map(|d| (d - m).powi(2)).sum::<f64>() / (deltas.len() - 1) as f64).sqrt();
    let z = crate::stats::normal_quantile(0.5 + level / 2.0);
    Ok(PairedDelta {
        value,
        low: value - z * sd,
        high: value + z * sd,
        level,
        replicates: deltas.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::coverage::World;
    use super::super::{semantic, shannon};
    use super::*;

    fn shannon_value(i: &ClassInput<'_>, _: bool) -> Result<f64, EstimateError> {
        let p = shannon::Params {
            bootstrap: 0,
            ..Default::default()
        };
        Ok(shannon::shannon_mi(i, &p, &Control::none())?.value)
    }

    /// A model against itself: Δ = 0 with a zero-width interval. Two models on the same samples:
    /// Δ̂ is the difference of the two reported values, and the paired interval is far narrower
    /// than combining the two sides' own intervals as if independent.
    fn side<'a>(ys: &'a [u32], p: &'a [u32]) -> ClassInput<'a> {
        ClassInput {
            labels: ys,
            predictions: p,
            k: 10,
            probabilities: None,
            weights: None,
            truth_matrix: None,
        }
    }

    #[test]
    fn paired_differences_cancel_the_shared_noise() {
        let w = World::new(60, 10, 2.0, 1.0, 3);
        let (ys, ps, q) = w.sample(3000, 11);
        // A second, worse model: every 7th prediction moved to the next class.
        let ps2: Vec<u32> = ps
            .iter()
            .enumerate()
            .map(|(i, &p)| if i % 7 == 0 { (p + 1) % 10 } else { p })
            .collect();
        let a = side(&ys, &ps);
        let b = side(&ys, &ps2);
        let same = paired_bootstrap(&a, &a, shannon_value, 100, 0.95, 1, &Control::none()).unwrap();
        assert_eq!((same.value, same.low, same.high), (0.0, 0.0, 0.0));
        let d = paired_bootstrap(&b, &a, shannon_value, 400, 0.95, 2, &Control::none()).unwrap();
        // Δ is the difference of the values each model reports on its own (with its interval
        // computed: switching the interval off must not move the value).
        let pa = shannon::shannon_mi(&a, &shannon::Params::default(), &Control::none()).unwrap();
        let pb = shannon::shannon_mi(&b, &shannon::Params::default(), &Control::none()).unwrap();
        assert!((d.value - (pb.value - pa.value)).abs() < 1e-12, "{d:?}");
        assert!(d.low < d.value && d.value < d.high && d.high < 0.0, "{d:?}");
        // The bootstrap's spread against the delta method: the plug-in MI's influence function
        // is ln p(y,ŷ)/(p(y)p(ŷ)) − I, so the paired difference's standard error is the
        // standard deviation of the two models' per-sample log ratios' difference over √N.
        let log_ratios = |p: &[u32]| -> Vec<f64> {
            let (n, k) = (ys.len() as f64, 10);
            let mut joint = vec![0.0; k * k];
            let (mut py, mut pp) = (vec![0.0; k], vec![0.0; k]);
            for (&y, &q) in ys.iter().zip(p) {
                joint[y as usize * k + q as usize] += 1.0 / n;
                py[y as usize] += 1.0 / n;
                pp[q as usize] += 1.0 / n;
            }
            ys.iter()
                .zip(p)
                .map(|(&y, &q)| {
                    let (y, q) = (y as usize, q as usize);
                    (joint[y * k + q] / (py[y] * pp[q])).ln()
                })
                .collect()
        };
        let diff: Vec<f64> = log_ratios(&ps2)
            .iter()
            .zip(log_ratios(&ps))
            .map(|(b, a)| b - a)
            .collect();
        let n = diff.len() as f64;
        let mean = diff.iter().sum::<f64>() / n;
        let se = (diff.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n / n).sqrt();
        let boot_se = (d.high - d.low) / (2.0 * crate::stats::normal_quantile(0.975));
        assert!(
            (0.8..1.25).contains(&(boot_se / se)),
            "bootstrap se {boot_se} vs delta method {se}"
        );
        let half = |o: &super::super::Output| {
            let iv = o.interval.as_ref().unwrap();
            (iv.high - iv.low) / 2.0
        };
        let independent = (half(&pa).powi(2) + half(&pb).powi(2)).sqrt();
        let paired = (d.high - d.low) / 2.0;
        assert!(
            paired < 0.5 * independent,
            "paired {paired} vs independent {independent}"
        );
        // Different samples are refused.
        let mut other = ys.clone();
        other[0] = (other[0] + 1) % 10;
        let c = ClassInput {
            labels: &other,
            ..side(&ys, &ps)
        };
        assert!(paired_bootstrap(&c, &a, shannon_value, 10, 0.95, 1, &Control::none()).is_err());
        // Semantic MI with probabilities: a sharper model on the same samples.
        let sem = |i: &ClassInput<'_>, _: bool| -> Result<f64, EstimateError> {
            let p = semantic::Params {
                bootstrap: 0,
                ..Default::default()
            };
            Ok(semantic::semantic_mi(i, &p, &Control::none())?.value)
        };
        let q2 = q.mapv(|v| v.powf(1.3));
        let q2 = &q2 / &q2.sum_axis(ndarray::Axis(1)).insert_axis(ndarray::Axis(1));
        let qa = ClassInput {
            probabilities: Some(q.view()),
            ..side(&ys, &ps)
        };
        let qb = ClassInput {
            probabilities: Some(q2.view()),
            ..side(&ys, &ps)
        };
        let d = paired_bootstrap(&qb, &qa, sem, 100, 0.95, 3, &Control::none()).unwrap();
        let reported = |i: &ClassInput<'_>| {
            semantic::semantic_mi(i, &semantic::Params::default(), &Control::none())
                .unwrap()
                .value
        };
        assert!((d.value - (reported(&qb) - reported(&qa))).abs() < 1e-12);
        assert!(d.low < d.value && d.value < d.high);
    }
}
