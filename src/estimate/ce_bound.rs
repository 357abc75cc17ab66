//! `ce_bound`: the Barber–Agakov / cross-entropy lower bound I(X;Y) ≥ Ĥ(Y) − CE
//! (estimators-anchors.md §3), with CE = −(1/W) Σ_k w_k ln max(q(y_k|x_k), clip).

use super::bootstrap::{basic_interval, block_bootstrap, random_blocks};
use super::probabilities::check_probabilities;
use super::rng::SplitMix64;
use super::special::entropy_of_counts;
use super::{
    check_bootstrap_params, check_class_input, normalized_weights, num, ClassInput, Control,
    EstimateError, Output,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub const VERSION: &str = "1.0.0";

const METHOD: &str = "basic bootstrap on H(Y) - CE, samples resampled with replacement (random equal blocks of samples when N > bootstrap_blocks)";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Bootstrap replicates (0 disables the interval; at most 10000).
    pub bootstrap: usize,
    /// Interval level in (0,1).
    pub confidence: f64,
    pub seed: u64,
    /// Floor applied to q(y|x) before the log (default 1e-12; in (0, 1e-3]).
    pub clip: f64,
    /// At most this many random blocks of samples are resampled.
    pub bootstrap_blocks: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            bootstrap: 200,
            confidence: 0.95,
            seed: 0,
            clip: 1e-12,
            bootstrap_blocks: 2000,
        }
    }
}

impl Params {
    pub fn validate(&self) -> Result<(), String> {
        check_bootstrap_params(self.bootstrap, self.confidence)?;
        if !(self.clip > 0.0 && self.clip <= 1e-3) {
            return Err(format!("clip must be in (0, 0.001] (got {})", self.clip));
        }
        if !(10..=1_000_000).contains(&self.bootstrap_blocks) {
            return Err(format!(
                "bootstrap_blocks must be between 10 and 1000000 (got {})",
                self.bootstrap_blocks
            ));
        }
        Ok(())
    }
}

/// Ĥ(Y) − CE for a classifier's probabilities (rows must sum to 1 within 1e-3, since the bound
/// needs a normalised q). `kl_marginal` = KL(P̂(Y) ‖ q̄) with q̄ the mean predicted distribution;
/// it equals SeMI − bound exactly when nothing is clipped (spec §2.10). `standard_error` is the
/// delta-method error of the CE mean only, sqrt(Σ w² (l − l̄)²)/W with l = ln q; the bootstrap
/// interval covers both terms. `sufficient`: per-class weights, Σ w ln q and the clip count.
pub fn ce_bound(
    input: &ClassInput<'_>,
    params: &Params,
    ctl: &Control<'_>,
) -> Result<Output, EstimateError> {
    params.validate().map_err(EstimateError::Invalid)?;
    let n = check_class_input(input)?;
    let k = input.k;
    let q = input
        .probabilities
        .ok_or_else(|| EstimateError::invalid("ce_bound needs class probabilities in the batch"))?;
    check_probabilities(&q, n, k)?;
    for (r, row) in q.rows().into_iter().enumerate() {
        let s: f64 = row.sum();
        if (s - 1.0).abs() > 1e-3 {
            return Err(EstimateError::invalid(format!(
                "probabilities of sample {r} sum to {s}; ce_bound needs rows that sum to 1 (within 0.001)"
            )));
        }
    }
    let w = normalized_weights(input.weights, n)?;
    ctl.tick(0.0)?;
    let mut rng = SplitMix64::new(params.seed);
    let (block, m) = if params.bootstrap > 0 {
        random_blocks(n, params.bootstrap_blocks, &mut rng)
    } else {
        (vec![0; n], 1)
    };
    let width = k + 1;
    let mut stats = vec![0.0; m * width];
    let mut class_w = vec![0.0; k];
    let mut q_sum = vec![0.0; k];
    let mut logs = Vec::with_capacity(n);
    let (lsum, clipped) = ce_pass(
        &q,
        input.labels,
        w.as_deref(),
        &block,
        params.clip,
        &mut stats,
        &mut class_w,
        &mut q_sum,
        &mut logs,
    );
    let wt: f64 = class_w.iter().sum();
    let h = entropy_of_counts(&class_w);
    let ce = -lsum / wt;
    let value = h - ce;
    let mean_l = lsum / wt;
    let se = (0..n)
        .map(|s| {
            let ws = w.as_ref().map_or(1.0, |w| w[s]);
            (ws * (logs[s] - mean_l)).powi(2)
        })
        .sum::<f64>()
        .sqrt()
        / wt;
    let kl = (0..k)
        .filter(|&j| class_w[j] > 0.0)
        .map(|j| {
            let p = class_w[j] / wt;
            p * (p / (q_sum[j] / wt)).ln()
        })
        .sum::<f64>();
    let interval = if params.bootstrap > 0 {
        let reps = block_bootstrap(&stats, width, params.bootstrap, &mut rng, ctl, |acc| {
            let tot: f64 = acc[..k].iter().sum();
            entropy_of_counts(&acc[..k]) + acc[k] / tot
        })?;
        basic_interval(value, &reps, params.confidence, METHOD)
    } else {
        None
    };
    let mut details = json!({
        "cross_entropy": num(ce),
        "h_labels": num(h),
        "kl_marginal": num(kl),
        "kl_marginal_note": "KL(P(Y) || mean predicted distribution) = semantic_mi - ce_bound when nothing is clipped",
        "semantic_mi": num(value + kl),
        "clipped": clipped,
        "clip": params.clip,
        "standard_error": num(se),
        "standard_error_note": "delta-method standard error of the cross-entropy mean only",
        "bootstrap_blocks_used": m,
        "weighted": w.is_some(),
    });
    if clipped > 0 {
        details["semantic_mi"] = Value::Null;
        details["semantic_mi_reason"] =
            json!("some true-class probabilities were clipped; see the semantic_mi estimator");
    }
    let sufficient = json!({
        "kind": "ce",
        "class_w": class_w,
        "logq_sum": lsum,
        "clipped": clipped,
    });
    let mut diagnostics = super::Diagnostics::default();
    super::bootstrap_checks(&mut diagnostics, value, interval.as_ref(), &class_w);
    if clipped > 0 {
        diagnostics.add(
            super::Reliability::Caution,
            "clipped_probabilities",
            format!(
                "{clipped} true-class probabilities were clipped at {}",
                params.clip
            ),
        );
    }
    Ok(Output {
        value,
        interval,
        n,
        details,
        sufficient: Some(sufficient),
        diagnostics,
    })
}

/// Pool `ce_bound` sufficient statistics exactly.
pub(crate) fn pool_sufficient(suff: &[Value]) -> Option<f64> {
    let mut cw: Vec<f64> = Vec::new();
    let mut lsum = 0.0;
    for s in suff {
        if s.get("kind")?.as_str()? != "ce" {
            return None;
        }
        let v: Vec<f64> = s
            .get("class_w")?
            .as_array()?
            .iter()
            .map(Value::as_f64)
            .collect::<Option<_>>()?;
        if cw.is_empty() {
            cw = vec![0.0; v.len()];
        }
        if cw.len() != v.len() {
            return None;
        }
        cw.iter_mut().zip(&v).for_each(|(a, b)| *a += b);
        lsum += s.get("logq_sum")?.as_f64()?;
    }
    let tot: f64 = cw.iter().sum();
    (tot > 0.0).then(|| entropy_of_counts(&cw) + lsum / tot)
}

/// The single pass of `ce_bound`: the clipped log-probability of each true class (into `logs`),
/// the weighted column sums and class weights, the per-block statistics. Returns Σ w ln q and
/// the number of clipped samples. Compiled for the baseline CPU and for AVX2 (the same bits).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn ce_pass_body(
    q: &ndarray::ArrayView2<'_, f64>,
    labels: &[u32],
    w: Option<&[f64]>,
    block: &[u32],
    clip: f64,
    stats: &mut [f64],
    class_w: &mut [f64],
    q_sum: &mut [f64],
    logs: &mut Vec<f64>,
) -> (f64, usize) {
    let k = class_w.len();
    let width = k + 1;
    let mut lsum = 0.0;
    let mut clipped = 0usize;
    let mut scratch = Vec::new();
    let whole = q.as_slice().filter(|_| k > 0);
    for (s, &y) in labels.iter().enumerate() {
        let ws = w.map_or(1.0, |w| w[s]);
        let y = y as usize;
        let row = match whole {
            Some(all) => {
                // A row a few ahead is requested while this one is summed (`simd::prefetch`).
                if let Some(ahead) = all.get((s + 4) * k..(s + 5) * k) {
                    super::simd::prefetch(ahead);
                }
                &all[s * k..(s + 1) * k]
            }
            None => super::probabilities::row_slice(q, s, &mut scratch),
        };
        let qy = row[y];
        if qy < clip {
            clipped += 1;
        }
        let l = qy.max(clip).ln();
        logs.push(l);
        for (a, &v) in q_sum.iter_mut().zip(row) {
            *a += ws * v;
        }
        class_w[y] += ws;
        lsum += ws * l;
        let b = block[s] as usize * width;
        stats[b + y] += ws;
        stats[b + k] += ws * l;
    }
    (lsum, clipped)
}

super::simd::dispatched! {
    /// [`ce_pass_body`] on the widest vector unit the CPU has.
    #[allow(clippy::too_many_arguments)]
    fn ce_pass / ce_pass_body(
        q: &ndarray::ArrayView2<'_, f64>,
        labels: &[u32],
        w: Option<&[f64]>,
        block: &[u32],
        clip: f64,
        stats: &mut [f64],
        class_w: &mut [f64],
        q_sum: &mut [f64],
        logs: &mut Vec<f64>,
    ) -> (f64, usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr2;

    /// semantic-information-spec.md §4.6 Example 5: Ĥ(Y) − CE = 0.365486 bits, CE = 1.093662
    /// bits, SeMI − bound = KL(P̂(Y)‖q̄) = 0.013097 bits, Ĥ(Y) = 1.459148 bits.
    #[test]
    fn spec_example_5_bound() {
        let q = arr2(&[
            [0.7, 0.2, 0.1],
            [0.6, 0.3, 0.1],
            [0.3, 0.5, 0.2],
            [0.2, 0.7, 0.1],
            [0.3, 0.4, 0.3],
            [0.5, 0.2, 0.3],
        ]);
        let y = [0u32, 0, 0, 1, 1, 2];
        let input = ClassInput {
            labels: &y,
            predictions: &y,
            k: 3,
            probabilities: Some(q.view()),
            weights: None,
            truth_matrix: None,
        };
        let out = ce_bound(&input, &Params::default(), &Control::none()).unwrap();
        let b = |x: f64| x / std::f64::consts::LN_2;
        assert!((b(out.value) - 0.365486).abs() < 1e-6);
        assert!((b(out.details["cross_entropy"].as_f64().unwrap()) - 1.093662).abs() < 1e-6);
        assert!((b(out.details["kl_marginal"].as_f64().unwrap()) - 0.013097).abs() < 1e-6);
        assert!((b(out.details["h_labels"].as_f64().unwrap()) - 1.459148).abs() < 1e-6);
        assert!((b(out.details["semantic_mi"].as_f64().unwrap()) - 0.378583).abs() < 1e-6);
        assert_eq!(out.details["clipped"], 0);
        assert!(out.interval.is_some());
        // Pooled halves (samples 0–2 and 3–5, different labels) == the whole batch.
        let half = |r: std::ops::Range<usize>| {
            let qh = q.slice(ndarray::s![r.clone(), ..]).to_owned();
            let yh = y[r].to_vec();
            let inp = ClassInput {
                labels: &yh,
                predictions: &yh,
                k: 3,
                probabilities: Some(qh.view()),
                weights: None,
                truth_matrix: None,
            };
            ce_bound(&inp, &Params::default(), &Control::none())
                .unwrap()
                .sufficient
                .unwrap()
        };
        let (a, b) = (half(0..3), half(3..6));
        assert_ne!(a, b);
        let pooled = crate::estimate::pool("ce_bound", &[a, b], 0.95)
            .unwrap()
            .value;
        assert!(
            (pooled - out.value).abs() < 1e-12,
            "{pooled} vs {}",
            out.value
        );
    }

    #[test]
    fn clipping_is_counted_and_rows_checked() {
        let q = arr2(&[[1.0, 0.0], [0.0, 1.0]]);
        let y = [1u32, 1];
        let input = ClassInput {
            labels: &y,
            predictions: &y,
            k: 2,
            probabilities: Some(q.view()),
            weights: None,
            truth_matrix: None,
        };
        let out = ce_bound(&input, &Params::default(), &Control::none()).unwrap();
        assert_eq!(out.details["clipped"], 1);
        assert!((out.value - 0.5 * 1e-12f64.ln()).abs() < 1e-9);
        let bad = arr2(&[[0.5, 0.2], [0.0, 1.0]]);
        let input = ClassInput {
            probabilities: Some(bad.view()),
            ..input
        };
        assert!(
            matches!(ce_bound(&input, &Params::default(), &Control::none()), Err(EstimateError::Invalid(m)) if m.contains("sample 0"))
        );
    }

    /// The pass runs on AVX2 where the CPU has it (`estimate::simd`); the baseline path gives
    /// the same bits, weighted and unweighted, with the interval.
    #[test]
    fn vector_and_baseline_paths_give_the_same_bits() {
        let (n, k) = (4_000, 9);
        let mut g = crate::estimate::rng::SplitMix64::new(7);
        let mut q = ndarray::Array2::<f64>::zeros((n, k));
        let mut y = Vec::with_capacity(n);
        for s in 0..n {
            let row: Vec<f64> = (0..k).map(|_| g.uniform() + 1e-3).collect();
            let tot: f64 = row.iter().sum();
            for j in 0..k {
                q[[s, j]] = row[j] / tot;
            }
            y.push(g.below(k) as u32);
        }
        let weights: Vec<f64> = (0..n).map(|i| 1.0 + (i % 5) as f64 * 0.5).collect();
        for w in [None, Some(&weights[..])] {
            let input = ClassInput {
                labels: &y,
                predictions: &y,
                k,
                probabilities: Some(q.view()),
                weights: w,
                truth_matrix: None,
            };
            let p = Params::default();
            let wide = ce_bound(&input, &p, &Control::none()).unwrap();
            let base = crate::estimate::simd::on_baseline(|| {
                ce_bound(&input, &p, &Control::none()).unwrap()
            });
            assert_eq!(wide.value.to_bits(), base.value.to_bits());
            let iv = |o: &Output| {
                o.interval
                    .as_ref()
                    .map(|i| (i.low.to_bits(), i.high.to_bits()))
            };
            assert!(iv(&wide).is_some());
            assert_eq!(iv(&wide), iv(&base));
            assert_eq!(wide.details, base.details);
        }
    }
}
