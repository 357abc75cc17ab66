//! `shannon_mi`: plug-in Shannon mutual information between true and predicted labels, with
//! Miller–Madow, jackknife, NMI/AMI (scikit-learn conventions), VI and a basic bootstrap interval.
//!
//! Multiclass: one Kx×Ky contingency table. Multilabel: one 2×2 table per label of truth versus
//! `score >= threshold`; the primary value is the Binary-Relevance total Σ_j I(Y_j; Ŷ_j).

use super::bootstrap::{basic_interval, block_bootstrap, random_blocks, TableResampler};
use super::contingency::Table;
use super::rng::SplitMix64;
use super::special::{entropy_of_counts, ln_factorial_table, ln_gamma, xlogx};
use super::{
    check_bootstrap_params, check_choice, check_class_input, normalized_weights, num, ClassInput,
    Control, EstimateError, MultilabelInput, Output,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub const VERSION: &str = "1.0.0";

/// Method string of the interval.
pub const INTERVAL_METHOD: &str =
    "basic bootstrap on Miller-Madow (multinomial resampling of the table via conditional binomials)";
/// Method string of the multilabel interval.
pub const INTERVAL_METHOD_MULTILABEL: &str =
    "basic bootstrap on the sum of per-label Miller-Madow values (resampling samples jointly across labels; random blocks of samples when N > bootstrap_blocks)";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Bootstrap replicates (0 disables the interval; at most 10000).
    pub bootstrap: usize,
    /// Interval level in (0,1).
    pub confidence: f64,
    pub seed: u64,
    /// Multilabel decision threshold on scores: predicted positive iff `score >= threshold`.
    pub threshold: f64,
    /// Normaliser of AMI: "arithmetic" (scikit-learn's default), "max", "min" or "geometric".
    pub ami_average: String,
    /// Multilabel only: at most this many random blocks of samples are resampled (N ≤ this:
    /// ordinary sample bootstrap).
    pub bootstrap_blocks: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            bootstrap: 200,
            confidence: 0.95,
            seed: 0,
            threshold: 0.5,
            ami_average: "arithmetic".to_string(),
            bootstrap_blocks: 2000,
        }
    }
}

pub(crate) const AVERAGES: [&str; 4] = ["arithmetic", "max", "min", "geometric"];

impl Params {
    pub fn validate(&self) -> Result<(), String> {
        check_bootstrap_params(self.bootstrap, self.confidence)?;
        if !(self.threshold.is_finite() && (0.0..=1.0).contains(&self.threshold)) {
            return Err(format!(
                "threshold must be between 0 and 1 (got {})",
                self.threshold
            ));
        }
        check_choice("ami_average", &self.ami_average, &AVERAGES)?;
        if !(10..=1_000_000).contains(&self.bootstrap_blocks) {
            return Err(format!(
                "bootstrap_blocks must be between 10 and 1000000 (got {})",
                self.bootstrap_blocks
            ));
        }
        Ok(())
    }
}

/// scikit-learn's `_generalized_average`.
pub fn generalized_average(u: f64, v: f64, method: &str) -> f64 {
    match method {
        "min" => u.min(v),
        "geometric" => (u * v).sqrt(),
        "max" => u.max(v),
        _ => 0.5 * (u + v),
    }
}

// ---------------------------------------------------------------------------------------------
// Table statistics
// ---------------------------------------------------------------------------------------------

/// Plug-in MI (nats): Σ (n_ij/N) ln(N n_ij / (a_i b_j)). Raw, never clipped.
pub fn plugin_mi(t: &Table) -> f64 {
    mi_from_parts(
        &t.counts,
        &t.rows,
        &t.cols,
        &t.row_sums,
        &t.col_sums,
        t.total,
    )
}

pub(crate) fn mi_from_parts(
    counts: &[f64],
    rows: &[u32],
    cols: &[u32],
    row_sums: &[f64],
    col_sums: &[f64],
    total: f64,
) -> f64 {
    if total <= 0.0 {
        return 0.0;
    }
    let ln_n = total.ln();
    let mut mi = 0.0;
    for i in 0..counts.len() {
        let c = counts[i];
        if c > 0.0 {
            mi += c
                * (c.ln() + ln_n
                    - row_sums[rows[i] as usize].ln()
                    - col_sums[cols[i] as usize].ln());
        }
    }
    mi / total
}

/// Plug-in entropies of the row and column margins.
pub fn margin_entropies(t: &Table) -> (f64, f64) {
    (
        entropy_of_counts(&t.row_sums),
        entropy_of_counts(&t.col_sums),
    )
}

/// Miller–Madow MI: Î − (m_xy − m_x − m_y + 1)/(2N), m = occupied cells / margins.
pub fn miller_madow(t: &Table) -> f64 {
    plugin_mi(t) - mm_correction(t.nnz(), t.occupied_rows(), t.occupied_cols(), t.total)
}

fn mm_correction(mxy: usize, mx: usize, my: usize, n: f64) -> f64 {
    (mxy as f64 - mx as f64 - my as f64 + 1.0) / (2.0 * n)
}

/// x ln x − (x−1) ln(x−1), computed without cancellation (0 for x ≤ 1).
fn g_unit(x: f64) -> f64 {
    if x <= 1.0 {
        0.0
    } else {
        x.ln() + (x - 1.0) * (1.0 / (x - 1.0)).ln_1p()
    }
}

/// Jackknife MI and its jackknife standard error for an integer table, O(nnz).
///
/// Dropping one sample of cell (i,j) changes the numerator S = Σn ln n − Σa ln a − Σb ln b + N ln N
/// by δ_ij = −g(n_ij) + g(a_i) + g(b_j) − g(N) with g(x) = x ln x − (x−1) ln(x−1); then
/// Î_JK = N Î − (N−1)/N Σ_s Î_{−s} simplifies exactly to −mean_s δ_s, and the jackknife variance
/// (N−1)/N Σ_s (Î_{−s} − mean)² to Σ_s (δ_s − δ̄)² / (N(N−1)).
/// Returns `None` when N < 2.
pub fn jackknife_integer(t: &Table) -> Option<(f64, f64)> {
    let n = t.total;
    if n < 2.0 {
        return None;
    }
    let gn = g_unit(n);
    let deltas: Vec<f64> = (0..t.nnz())
        .map(|i| {
            -g_unit(t.counts[i])
                + g_unit(t.row_sums[t.rows[i] as usize])
                + g_unit(t.col_sums[t.cols[i] as usize])
                - gn
        })
        .collect();
    let mean_delta = (0..t.nnz()).map(|i| t.counts[i] * deltas[i]).sum::<f64>() / n;
    let ss = (0..t.nnz())
        .map(|i| t.counts[i] * (deltas[i] - mean_delta).powi(2))
        .sum::<f64>();
    Some((-mean_delta, (ss / (n * (n - 1.0))).sqrt()))
}

/// Naive O(nnz²) jackknife for integer tables (reference for tests).
pub fn jackknife_naive(t: &Table) -> f64 {
    let n = t.total;
    let base = plugin_mi(t);
    let mut loo = 0.0;
    for i in 0..t.nnz() {
        let mut c = t.counts.clone();
        c[i] -= 1.0;
        loo += t.counts[i] * plugin_mi(&t.with_counts(&c));
    }
    n * base - (n - 1.0) / n * loo
}

/// Weighted jackknife over samples: leaving sample s out removes its (normalised) weight w_s
/// from its cell; N is the number of samples. O(N). Returns `None` when N < 2.
pub fn jackknife_weighted(
    t: &Table,
    xs: &[u32],
    ys: &[u32],
    w: &[f64],
    cell_of: impl Fn(u32, u32) -> usize,
) -> Option<(f64, f64)> {
    let n = xs.len() as f64;
    if n < 2.0 {
        return None;
    }
    let (sc, sr, sk) = t.sum_nlogn();
    let total = t.total;
    let s_num = sc - sr - sk + xlogx(total);
    let base = s_num / total;
    let h = |x: f64, d: f64| xlogx(x) - xlogx((x - d).max(0.0));
    let mut loo = Vec::with_capacity(xs.len());
    for s in 0..xs.len() {
        let ws = w[s];
        if ws <= 0.0 {
            loo.push(base);
            continue;
        }
        let c = t.counts[cell_of(xs[s], ys[s])];
        let a = t.row_sums[xs[s] as usize];
        let b = t.col_sums[ys[s] as usize];
        let rest = total - ws;
        if rest <= 0.0 {
            loo.push(0.0);
            continue;
        }
        let num_s = s_num - h(c, ws) + h(a, ws) + h(b, ws) - h(total, ws);
        loo.push(num_s / rest);
    }
    let mean = loo.iter().sum::<f64>() / n;
    let jk = n * base - (n - 1.0) * mean;
    let var = (n - 1.0) / n * loo.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
    Some((jk, var.sqrt()))
}

/// Occupied margins as integers (panics never; non-integer masses are rounded).
fn int_margins(v: &[f64]) -> Vec<u64> {
    v.iter()
        .filter(|&&x| x > 0.0)
        .map(|&x| x.round() as u64)
        .collect()
}

/// Expected MI under the hypergeometric (fixed-margins permutation) model (Vinh et al. 2010),
/// exactly as scikit-learn defines it, for an integer table.
///
/// Speed-ups, all exact up to the stated pruning: rows (columns) with equal margins are grouped
/// (count of counts), so each distinct (a, b) pair is summed once; ln n! comes from a table
/// (ln Γ directly above N = 10⁷); for each pair the sum starts at the hypergeometric mode and walks
/// outwards, stopping when the remaining tail mass is provably below 1e-17. The bound: the pmf is
/// log-concave, so beyond a term t with next-term ratio r < 1 the tail is at most t·r/(1−r).
/// The neglected probability mass per (a,b) pair is < 1e-17 (of a total of 1), so the absolute
/// error of each pair's contribution is < 1e-17·max|n/N ln(Nn/ab)|.
/// Work: at most Σ over distinct (a,b) of (min(a,b) − max(1,a+b−N) + 1), typically far fewer terms.
pub fn expected_mi(t: &Table) -> f64 {
    let a = int_margins(&t.row_sums);
    let b = int_margins(&t.col_sums);
    let n: u64 = a.iter().sum();
    if a.len() <= 1 || b.len() <= 1 || n == 0 {
        return 0.0;
    }
    let group = |v: &[u64]| -> Vec<(u64, f64)> {
        let mut s = v.to_vec();
        s.sort_unstable();
        let mut out: Vec<(u64, f64)> = Vec::new();
        for x in s {
            match out.last_mut() {
                Some(last) if last.0 == x => last.1 += 1.0,
                _ => out.push((x, 1.0)),
            }
        }
        out
    };
    let ga = group(&a);
    let gb = group(&b);
    let table = if n <= 10_000_000 {
        Some(ln_factorial_table(n as usize))
    } else {
        None
    };
    let lf = |k: u64| -> f64 {
        match &table {
            Some(t) => t[k as usize],
            None => ln_gamma(k as f64 + 1.0),
        }
    };
    let nf = n as f64;
    let ln_n = nf.ln();
    let mut emi = 0.0;
    for &(ai, ma) in &ga {
        for &(bj, mb) in &gb {
            let lo = 1u64.max((ai + bj).saturating_sub(n));
            let hi = ai.min(bj);
            if lo > hi {
                continue;
            }
            let base = lf(ai) + lf(bj) + lf(n - ai) + lf(n - bj) - lf(n);
            let c = ln_n - (ai as f64).ln() - (bj as f64).ln();
            let term = |k: u64| -> (f64, f64) {
                let lp = base - lf(k) - lf(ai - k) - lf(bj - k) - lf(n + k - ai - bj);
                let p = lp.exp();
                let kf = k as f64;
                (p, p * (kf / nf) * ((kf).ln() + c))
            };
            let mode = (((ai + 1) as f64 * (bj + 1) as f64) / (nf + 2.0)).floor() as u64;
            let mode = mode.clamp(lo, hi);
            let mut sum = 0.0;
            // Upwards from the mode.
            let mut k = mode;
            loop {
                let (p, v) = term(k);
                sum += v;
                if k >= hi {
                    break;
                }
                let kf = k as f64;
                let r = ((ai - k) as f64 * (bj - k) as f64)
                    / ((kf + 1.0) * ((n + k + 1 - ai - bj) as f64));
                if r < 1.0 && p * r / (1.0 - r) < 1e-17 {
                    break;
                }
                k += 1;
            }
            // Downwards from mode − 1.
            if mode > lo {
                let mut k = mode - 1;
                loop {
                    let (p, v) = term(k);
                    sum += v;
                    if k <= lo {
                        break;
                    }
                    let kf = k as f64;
                    let r = (kf * (n + k - ai - bj) as f64)
                        / (((ai - k + 1) as f64) * ((bj - k + 1) as f64));
                    if r < 1.0 && p * r / (1.0 - r) < 1e-17 {
                        break;
                    }
                    k -= 1;
                }
            }
            emi += ma * mb * sum;
        }
    }
    emi
}

/// scikit-learn's triple loop for E[MI] (reference for tests; O(Σ_ij min(a_i,b_j))).
pub fn expected_mi_naive(t: &Table) -> f64 {
    let a = int_margins(&t.row_sums);
    let b = int_margins(&t.col_sums);
    let n: u64 = a.iter().sum();
    if a.len() <= 1 || b.len() <= 1 {
        return 0.0;
    }
    let nf = n as f64;
    let lg = |x: u64| ln_gamma(x as f64 + 1.0);
    let mut emi = 0.0;
    for &ai in &a {
        for &bj in &b {
            let lo = 1u64.max((ai + bj).saturating_sub(n));
            for k in lo..=ai.min(bj) {
                let kf = k as f64;
                let term2 = nf.ln() + kf.ln() - (ai as f64).ln() - (bj as f64).ln();
                let gln = lg(ai) + lg(bj) + lg(n - ai) + lg(n - bj)
                    - lg(k)
                    - lg(n)
                    - lg(ai - k)
                    - lg(bj - k)
                    - lg(n + k - ai - bj);
                emi += kf / nf * term2 * gln.exp();
            }
        }
    }
    emi
}

/// NMI with scikit-learn's conventions: 1 when both labelings have a single (occupied) class,
/// 0 when MI ≤ 0, else MI / average(H_true, H_pred).
pub fn nmi(t: &Table, average: &str) -> f64 {
    let (mx, my) = (t.occupied_rows(), t.occupied_cols());
    if (mx == 1 && my == 1) || (mx == 0 && my == 0) {
        return 1.0;
    }
    let mi = plugin_mi(t);
    if mi <= 0.0 {
        return 0.0;
    }
    let (hx, hy) = margin_entropies(t);
    mi / generalized_average(hx, hy, average)
}

/// AMI with scikit-learn's conventions (1.9): 1 when both sides have a single class, 0 when one
/// side has; otherwise (MI − E[MI]) / (avg(H) − E[MI]) with numerator and denominator each moved
/// away from 0 to ±machine-eps keeping their sign. MI here is clipped at 0 like sklearn's
/// `mutual_info_score`. Integer tables only.
pub fn ami(t: &Table, average: &str) -> f64 {
    ami_with_emi(t, average, expected_mi(t))
}

pub(crate) fn ami_with_emi(t: &Table, average: &str, emi: f64) -> f64 {
    let (mx, my) = (t.occupied_rows(), t.occupied_cols());
    if (mx == 1 && my == 1) || (mx == 0 && my == 0) {
        return 1.0;
    }
    if mx == 1 || my == 1 {
        return 0.0;
    }
    let mi = plugin_mi(t).max(0.0);
    let (hx, hy) = margin_entropies(t);
    let eps = f64::EPSILON;
    let sign_clip = |x: f64| if x < 0.0 { x.min(-eps) } else { x.max(eps) };
    sign_clip(mi - emi) / sign_clip(generalized_average(hx, hy, average) - emi)
}

/// Variation of information H(X) + H(Y) − 2 I (nats, plug-in).
pub fn vi(t: &Table) -> f64 {
    let (hx, hy) = margin_entropies(t);
    hx + hy - 2.0 * plugin_mi(t)
}

/// Miller–Madow MI of a resampled table held in a [`TableResampler`].
fn mm_of_resample(r: &TableResampler<'_>) -> f64 {
    let t = r.table;
    let total = r.total();
    let mi = mi_from_parts(&r.counts, &t.rows, &t.cols, &r.row_sums, &r.col_sums, total);
    let mxy = r.counts.iter().filter(|&&c| c > 0.0).count();
    let mx = r.row_sums.iter().filter(|&&c| c > 0.0).count();
    let my = r.col_sums.iter().filter(|&&c| c > 0.0).count();
    mi - mm_correction(mxy, mx, my, total)
}

/// Basic bootstrap interval of the Miller–Madow statistic of a table.
pub fn bootstrap_mm_interval(
    t: &Table,
    mm: f64,
    params: &Params,
    ctl: &Control<'_>,
) -> Result<Option<super::Interval>, EstimateError> {
    if params.bootstrap == 0 {
        return Ok(None);
    }
    let mut rng = SplitMix64::new(params.seed);
    let mut res = TableResampler::new(t);
    let mut reps = Vec::with_capacity(params.bootstrap);
    for b in 0..params.bootstrap {
        ctl.tick(b as f64 / params.bootstrap as f64)?;
        res.draw(&mut rng);
        reps.push(mm_of_resample(&res));
    }
    ctl.tick(1.0)?;
    Ok(basic_interval(
        mm,
        &reps,
        params.confidence,
        INTERVAL_METHOD,
    ))
}

/// All point statistics of one table as a JSON object (shared by multiclass and per-label).
fn table_details(t: &Table, average: &str, jack: Option<(f64, f64)>) -> Value {
    let mi = plugin_mi(t);
    let (hx, hy) = margin_entropies(t);
    let mm = miller_madow(t);
    let (mx, my) = (t.occupied_rows(), t.occupied_cols());
    let mut d = json!({
        "mi": num(mi),
        "miller_madow": num(mm),
        "h_true": num(hx),
        "h_pred": num(hy),
        "vi": num(hx + hy - 2.0 * mi),
        "nmi": num(nmi(t, "arithmetic")),
        "occupied_cells": t.nnz(),
        "occupied_true_classes": mx,
        "occupied_pred_classes": my,
        "bias_ratio": num(t.total / (mx.max(1) * my.max(1)) as f64),
        "confusion": t.to_json(),
    });
    match jack {
        Some((j, se)) => {
            d["jackknife"] = num(j);
            d["jackknife_se"] = num(se);
        }
        None => {
            d["jackknife"] = Value::Null;
            d["jackknife_se"] = Value::Null;
            d["jackknife_reason"] = json!("the jackknife needs at least 2 samples");
        }
    }
    if t.integer {
        let emi = expected_mi(t);
        d["expected_mi"] = num(emi);
        d["ami"] = num(ami_with_emi(t, average, emi));
    } else {
        d["expected_mi"] = Value::Null;
        d["ami"] = Value::Null;
        d["ami_reason"] = json!(
            "AMI's hypergeometric model needs integer counts; it is not defined for weighted samples"
        );
    }
    d
}

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

/// Multiclass plug-in MI between true labels and predictions.
///
/// `value`: plug-in I(true; predicted) in nats (raw). `interval`: basic bootstrap on the
/// Miller–Madow statistic (table resampled as a multinomial via conditional binomials, O(nnz) per
/// replicate, seeded). Weights are normalised to sum to N; the weighted bootstrap resamples N
/// samples from the weighted cell proportions. `bias_ratio` = N/(Kx·Ky) with Kx, Ky the
/// *occupied* true/predicted classes. `sufficient`: the sparse count table.
pub fn shannon_mi(
    input: &ClassInput<'_>,
    params: &Params,
    ctl: &Control<'_>,
) -> Result<Output, EstimateError> {
    params.validate().map_err(EstimateError::Invalid)?;
    let n = check_class_input(input)?;
    let w = normalized_weights(input.weights, n)?;
    ctl.tick(0.0)?;
    let t = Table::from_pairs(
        input.labels,
        input.predictions,
        input.k,
        input.k,
        w.as_deref(),
    );
    let jack = match &w {
        None => jackknife_integer(&t),
        Some(w) => {
            let index: std::collections::HashMap<(u32, u32), usize> =
                (0..t.nnz()).map(|i| ((t.rows[i], t.cols[i]), i)).collect();
            jackknife_weighted(&t, input.labels, input.predictions, w, |x, y| {
                index.get(&(x, y)).copied().unwrap_or(0)
            })
        }
    };
    let value = plugin_mi(&t);
    let mut details = table_details(&t, &params.ami_average, jack);
    let mm = miller_madow(&t);
    if let Some(obj) = details.as_object_mut() {
        obj.remove("mi");
        obj.insert("ami_average".into(), json!(params.ami_average));
        obj.insert("interval_statistic".into(), json!("miller_madow"));
        obj.insert(
            "bias_ratio_note".into(),
            json!("N / (Kx * Ky) with Kx, Ky the occupied true and predicted classes; below ~10 the plug-in and Miller-Madow are unreliable"),
        );
        obj.insert("weighted".into(), json!(w.is_some()));
        obj.insert("k".into(), json!(input.k));
    }
    let interval = bootstrap_mm_interval(&t, mm, params, ctl)?;
    let sufficient = json!({
        "kind": "table",
        "k": input.k,
        "entries": t.entries_json(),
    });
    Ok(Output {
        value,
        interval,
        n,
        details,
        sufficient: Some(sufficient),
    })
}

/// Validated multilabel matrices: N, L and normalised weights.
pub(crate) fn check_multilabel(
    input: &MultilabelInput<'_>,
    hard_labels: bool,
) -> Result<(usize, usize, Option<Vec<f64>>), EstimateError> {
    let (n, l) = input.labels.dim();
    if n == 0 {
        return Err(EstimateError::invalid("the batch has no samples"));
    }
    if l == 0 {
        return Err(EstimateError::invalid("the batch has no labels (L = 0)"));
    }
    if input.scores.dim() != (n, l) {
        return Err(EstimateError::invalid(format!(
            "scores has shape {:?} but labels has shape ({n}, {l})",
            input.scores.dim()
        )));
    }
    for ((k, j), &v) in input.labels.indexed_iter() {
        let ok = if hard_labels {
            v == 0.0 || v == 1.0
        } else {
            v.is_finite() && (0.0..=1.0).contains(&v)
        };
        if !ok {
            return Err(EstimateError::invalid(format!(
                "label value at sample {k}, label {j} is {v}; labels must be {}",
                if hard_labels { "0 or 1" } else { "in [0, 1]" }
            )));
        }
    }
    for ((k, j), &v) in input.scores.indexed_iter() {
        if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
            return Err(EstimateError::invalid(format!(
                "score at sample {k}, label {j} is {v}; scores must be in [0, 1]"
            )));
        }
    }
    let w = normalized_weights(input.weights, n)?;
    Ok((n, l, w))
}

/// MI of a 2×2 table given as [n00, n01, n10, n11].
fn mi_2x2(c: &[f64]) -> f64 {
    let total = c[0] + c[1] + c[2] + c[3];
    if total <= 0.0 {
        return 0.0;
    }
    let r = [c[0] + c[1], c[2] + c[3]];
    let k = [c[0] + c[2], c[1] + c[3]];
    let mut mi = 0.0;
    for i in 0..2 {
        for j in 0..2 {
            let v = c[2 * i + j];
            if v > 0.0 {
                mi += v * (v.ln() + total.ln() - r[i].ln() - k[j].ln());
            }
        }
    }
    mi / total
}

fn mm_2x2(c: &[f64]) -> f64 {
    let total = c[0] + c[1] + c[2] + c[3];
    if total <= 0.0 {
        return 0.0;
    }
    let mxy = c.iter().filter(|&&v| v > 0.0).count();
    let mx = [c[0] + c[1], c[2] + c[3]]
        .iter()
        .filter(|&&v| v > 0.0)
        .count();
    let my = [c[0] + c[2], c[1] + c[3]]
        .iter()
        .filter(|&&v| v > 0.0)
        .count();
    mi_2x2(c) - mm_correction(mxy, mx, my, total)
}

/// Multilabel (Binary-Relevance) Shannon MI: per label j a 2×2 table of truth versus
/// `score >= threshold`; `value` = Σ_j I_j (the Binary-Relevance total, which is not the MI of
/// the joint label vector). Interval: basic bootstrap of Σ_j Miller–Madow_j resampling samples
/// jointly across labels (so between-label dependence is kept); for N > `bootstrap_blocks` the
/// samples are randomly partitioned into that many equal blocks and blocks are resampled
/// (cost O(N·L) once plus O(B·blocks·L)). `sufficient`: the per-label 2×2 tables.
pub fn shannon_mi_multilabel(
    input: &MultilabelInput<'_>,
    params: &Params,
    ctl: &Control<'_>,
) -> Result<Output, EstimateError> {
    params.validate().map_err(EstimateError::Invalid)?;
    let (n, l, w) = check_multilabel(input, true)?;
    ctl.tick(0.0)?;
    let mut rng = SplitMix64::new(params.seed);
    let (block, m) = if params.bootstrap > 0 {
        random_blocks(n, params.bootstrap_blocks, &mut rng)
    } else {
        (vec![0; n], 1)
    };
    // Block statistics: per block, per label, the 4 cells.
    let width = 4 * l;
    let mut stats = vec![0.0; m * width];
    let mut tables = vec![0.0; width];
    for k in 0..n {
        let wk = w.as_ref().map_or(1.0, |w| w[k]);
        let b = block[k] as usize;
        for j in 0..l {
            let y = input.labels[[k, j]] as usize;
            let p = usize::from(input.scores[[k, j]] >= params.threshold);
            let cell = 4 * j + 2 * y + p;
            stats[b * width + cell] += wk;
            tables[cell] += wk;
        }
    }
    let integer = w.is_none();
    let mut per_label = Vec::with_capacity(l);
    let mut total_mi = 0.0;
    let mut total_mm = 0.0;
    for j in 0..l {
        let c = &tables[4 * j..4 * j + 4];
        let t = Table::from_dense(2, 2, c);
        let t = Table { integer, ..t };
        let jack = if integer { jackknife_integer(&t) } else { None };
        let mut d = table_details(&t, &params.ami_average, jack);
        if !integer {
            d["jackknife_reason"] =
                json!("the per-label jackknife is computed for unweighted samples only");
        }
        d["label"] = json!(j);
        total_mi += mi_2x2(c);
        total_mm += mm_2x2(c);
        per_label.push(d);
    }
    let interval = if params.bootstrap > 0 {
        let reps = block_bootstrap(&stats, width, params.bootstrap, &mut rng, ctl, |acc| {
            (0..l).map(|j| mm_2x2(&acc[4 * j..4 * j + 4])).sum()
        })?;
        basic_interval(
            total_mm,
            &reps,
            params.confidence,
            INTERVAL_METHOD_MULTILABEL,
        )
    } else {
        None
    };
    let details = json!({
        "aggregate": "binary_relevance_sum",
        "aggregate_note": "value = sum over labels of I(Y_j; Yhat_j), each from a 2x2 table of truth vs score >= threshold",
        "per_label": per_label,
        "mean_per_label": num(total_mi / l as f64),
        "miller_madow": num(total_mm),
        "interval_statistic": "sum_of_miller_madow",
        "threshold": params.threshold,
        "bootstrap_blocks_used": m,
        "weighted": w.is_some(),
        "labels": l,
    });
    let sufficient = json!({
        "kind": "multilabel",
        "tables": (0..l).map(|j| tables[4 * j..4 * j + 4].to_vec()).collect::<Vec<_>>(),
    });
    Ok(Output {
        value: total_mi,
        interval,
        n,
        details,
        sufficient: Some(sufficient),
    })
}

/// Pool `shannon_mi` sufficient statistics: add the tables (per label for multilabel) and
/// recompute the plug-in MI exactly.
pub(crate) fn pool_sufficient(suff: &[Value]) -> Option<f64> {
    let kind = suff[0].get("kind")?.as_str()?;
    match kind {
        "table" => {
            let k = suff
                .iter()
                .map(|s| s.get("k").and_then(Value::as_u64))
                .collect::<Option<Vec<_>>>()?
                .into_iter()
                .max()? as usize;
            let mut entries = Vec::new();
            for s in suff {
                if s.get("kind")?.as_str()? != "table" {
                    return None;
                }
                let t = Table::from_entries_json(k, k, s.get("entries")?)?;
                for i in 0..t.nnz() {
                    entries.push((t.rows[i], t.cols[i], t.counts[i]));
                }
            }
            Some(plugin_mi(&Table::from_entries(k, k, entries)))
        }
        "multilabel" => {
            let mut acc: Vec<[f64; 4]> = Vec::new();
            for s in suff {
                if s.get("kind")?.as_str()? != "multilabel" {
                    return None;
                }
                let tabs = s.get("tables")?.as_array()?;
                if acc.is_empty() {
                    acc = vec![[0.0; 4]; tabs.len()];
                }
                if tabs.len() != acc.len() {
                    return None;
                }
                for (a, t) in acc.iter_mut().zip(tabs) {
                    let t = t.as_array()?;
                    if t.len() != 4 {
                        return None;
                    }
                    for i in 0..4 {
                        a[i] += t[i].as_f64()?;
                    }
                }
            }
            Some(acc.iter().map(|c| mi_2x2(c)).sum())
        }
        _ => None,
    }
}

#[cfg(test)]
#[path = "tests_shannon.rs"]
mod tests;
