//! `ksg`: Kraskov–Stögbauer–Grassberger (2004) algorithm 1 for continuous x ∈ ℝ^dx, y ∈ ℝ^dy,
//! and (in [`mixed`]) Ross (2014) for continuous features against a discrete label.
//!
//! KSG1 (estimators-anchors.md §4.1): ε_i = distance from z_i = (x_i, y_i) to its k-th nearest
//! other point in the joint space (joint distance = max of the two marginal distances);
//! n_x(i) = #{j ≠ i : ‖x_j − x_i‖ < ε_i} (strict), n_y likewise;
//! Î = ψ(k) + ψ(N) − ⟨ψ(n_x + 1) + ψ(n_y + 1)⟩. The value is raw (scikit-learn clips at 0).
//!
//! Conventions:
//! - `metric = "max"`: Chebyshev inside each space and across (scikit-learn, NPEET); with
//!   1-column x and y, `ksg(k=3, standardize=true)` is scikit-learn's `mutual_info_regression`
//!   without its 1e-10 noise and without its clip at 0;
//! - `metric = "euclidean_per_space"`: Euclidean inside each space, max across (bmi's
//!   `KSGEnsembleFirstEstimator`); identical to "max" for 1-D x and y;
//! - `standardize`: each column is divided by its population standard deviation **without
//!   centring** (scikit-learn `scale(with_mean=False)`; the std is computed bit-for-bit as numpy
//!   does, with pairwise sums, so that tied data scale identically; a constant column is left
//!   unscaled);
//! - ties: when ε_i = 0 (duplicated points) the marginal counts are of exact duplicates, which is
//!   what scikit-learn's `query_radius(nextafter(ε, 0))` counts; add jitter upstream if the data
//!   are discretised.
//!
//! Uncertainty (never the with-replacement bootstrap, which creates zero distances; anchors §6):
//! B random subsamples of m = ⌊fraction·N⌋ rows **without replacement**; the estimator is
//! recomputed on each, and the standard deviation of the full-sample estimate is taken as
//! sd_sub · √(m / (N − m)) (the finite-population-corrected subsampling variance of an
//! asymptotically linear statistic: Var(θ_m | data) ≈ σ²(1/m − 1/N)). The interval is the
//! normal interval θ̂ ± z_{(1+c)/2} · sd around the full-sample estimate.

use super::knn::{join, Index, Metric};
use super::rng::SplitMix64;
use super::special::digamma;
use super::{
    check_choice, num, Control, Diagnostics, EstimateError, Interval, Output, Reliability,
};
use crate::stats::normal_quantile;
use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// 1.1.0: `clipped_value` follows the benchmark's convention in its mode (clip each k, then
/// average); 1.0.0 clipped the mean.
pub const VERSION: &str = "1.1.0";

/// Interval method string.
pub const INTERVAL_METHOD: &str = "normal interval from m-out-of-n subsampling without replacement: sd = sd(subsample estimates) * sqrt(m / (N - m))";

pub const METRICS: [&str; 2] = ["max", "euclidean_per_space"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Neighbour order (ignored when `ks` is non-empty).
    pub k: usize,
    /// "max" (Chebyshev everywhere, scikit-learn) or "euclidean_per_space" (bmi).
    pub metric: String,
    /// Non-empty: the value is the mean of the estimates over these k (bmi: [5, 10]).
    pub ks: Vec<usize>,
    /// Divide each column by its population std (no centring, like scikit-learn).
    pub standardize: bool,
    /// Number of subsamples for the interval (0 = no interval; at most 1000).
    pub subsamples: usize,
    /// Subsample size as a fraction of N, in (0, 1).
    pub subsample_fraction: f64,
    /// Interval level in (0, 1).
    pub confidence: f64,
    pub seed: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            k: 3,
            metric: "max".into(),
            ks: Vec::new(),
            standardize: true,
            subsamples: 20,
            subsample_fraction: 0.5,
            confidence: 0.95,
            seed: 0,
        }
    }
}

pub(crate) fn check_subsampling(b: usize, fraction: f64, confidence: f64) -> Result<(), String> {
    if b > 1000 {
        return Err(format!("subsamples must be between 0 and 1000 (got {b})"));
    }
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(format!(
            "subsample_fraction must be strictly between 0 and 1 (got {fraction})"
        ));
    }
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(format!(
            "confidence must be strictly between 0 and 1 (got {confidence})"
        ));
    }
    Ok(())
}

impl Params {
    pub fn validate(&self) -> Result<(), String> {
        check_choice("metric", &self.metric, &METRICS)?;
        for &k in self.ks.iter().chain(std::iter::once(&self.k)) {
            if !(1..=1000).contains(&k) {
                return Err(format!("k must be between 1 and 1000 (got {k})"));
            }
        }
        if self.ks.len() > 20 {
            return Err(format!(
                "ks may list at most 20 values (got {})",
                self.ks.len()
            ));
        }
        check_subsampling(self.subsamples, self.subsample_fraction, self.confidence)
    }

    /// The neighbour orders actually used.
    pub fn orders(&self) -> Vec<usize> {
        if self.ks.is_empty() {
            vec![self.k]
        } else {
            self.ks.clone()
        }
    }
}

/// Row-major copy of a matrix, columns divided by their population std when asked.
pub(crate) fn prepare(
    a: ArrayView2<f64>,
    standardize: bool,
    name: &str,
) -> Result<Vec<f64>, EstimateError> {
    let (n, d) = a.dim();
    let mut out: Vec<f64> = Vec::with_capacity(n * d);
    for row in a.rows() {
        out.extend(row.iter());
    }
    if let Some(pos) = out.iter().position(|v| !v.is_finite()) {
        return Err(EstimateError::invalid(format!(
            "{name} has a non-finite value at row {}, column {}",
            pos / d.max(1),
            pos % d.max(1)
        )));
    }
    if standardize && n > 0 {
        let mut column = vec![0.0; n];
        for c in 0..d {
            for i in 0..n {
                column[i] = out[i * d + c];
            }
            let sd = numpy_std(&mut column);
            // scikit-learn's _handle_zeros_in_scale: a (near-)constant column is left unscaled.
            if sd >= 10.0 * f64::EPSILON && sd.is_finite() {
                for i in 0..n {
                    out[i * d + c] /= sd;
                }
            }
        }
    }
    Ok(out)
}

/// numpy's pairwise summation (`pairwise_sum` of the add ufunc: blocks of 8 accumulators up to
/// 128 items, recursive halving above), started from 0 like `np.sum`.
pub(crate) fn numpy_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut r = 0.0;
        for &v in a {
            r += v;
        }
        r
    } else if n <= 128 {
        let mut r = [0.0; 8];
        r.copy_from_slice(&a[..8]);
        let full = n - n % 8;
        let mut i = 8;
        while i < full {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &a[full..] {
            res += v;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        numpy_sum(&a[..n2]) + numpy_sum(&a[n2..])
    }
}

/// `np.std(x)` (population) bit-for-bit as numpy computes it (`np.nanstd` without NaNs):
/// mean = sum/n, then sqrt(sum((x − mean)²)/n), both sums pairwise. Overwrites `x`.
pub(crate) fn numpy_std(x: &mut [f64]) -> f64 {
    let n = x.len() as f64;
    let mean = 0.0 + numpy_sum(x) / n;
    for v in x.iter_mut() {
        let d = *v - mean;
        *v = d * d;
    }
    (numpy_sum(x) / n).sqrt()
}

/// The per-k KSG1 values on prepared row-major data (n rows of x (dx) and y (dy)).
pub(crate) fn ksg_core(
    xs: &[f64],
    dx: usize,
    ys: &[f64],
    dy: usize,
    metric: &str,
    ks: &[usize],
) -> Vec<f64> {
    let n = xs.len() / dx;
    let mut joint = Vec::with_capacity(n * (dx + dy));
    for i in 0..n {
        joint.extend_from_slice(&xs[i * dx..(i + 1) * dx]);
        joint.extend_from_slice(&ys[i * dy..(i + 1) * dy]);
    }
    let (mj, mx, my) = if metric == "euclidean_per_space" {
        (
            Metric::Euclidean(vec![dx, dx + dy]),
            Metric::euclidean(dx),
            Metric::euclidean(dy),
        )
    } else {
        (Metric::Max, Metric::Max, Metric::Max)
    };
    let kmax = ks.iter().copied().max().unwrap_or(1);
    // The three indexes are independent: build the joint one on a second thread.
    let (ji, (xi, yi)) = join(
        || Index::auto_for(joint, dx + dy, mj, kmax),
        || {
            (
                Index::auto(xs.to_vec(), dx, mx),
                Index::auto(ys.to_vec(), dy, my),
            )
        },
    );
    let psi_n = digamma(n as f64);
    let mut psi = DigammaTable::default();
    let eps = ji.all_kth_keys_multi(ks);
    // sequential sweeps (1-D) run side by side; the others are parallel inside and count every
    // k in one pass
    let (cx, cy) = if xi.is_sequential() && yi.is_sequential() {
        join(
            || xi.all_counts_below_multi(&eps),
            || yi.all_counts_below_multi(&eps),
        )
    } else {
        (
            xi.all_counts_below_multi(&eps),
            yi.all_counts_below_multi(&eps),
        )
    };
    ks.iter()
        .zip(cx.iter().zip(&cy))
        .map(|(&k, (cx, cy))| {
            // counts include the point itself: ψ(n_x + 1) = ψ(count)
            let s: f64 = cx
                .iter()
                .zip(cy)
                .map(|(&a, &b)| psi.get(a) + psi.get(b))
                .sum();
            digamma(k as f64) + psi_n - s / n as f64
        })
        .collect()
}

/// ψ at non-negative integers, computed once each (the same values as [`digamma`]).
#[derive(Default)]
pub(crate) struct DigammaTable(Vec<f64>);

impl DigammaTable {
    #[inline]
    pub(crate) fn get(&mut self, c: usize) -> f64 {
        if c >= self.0.len() {
            self.0.resize((c + 1).max(2 * self.0.len()), f64::NAN);
        }
        let v = self.0[c];
        if v.is_nan() {
            let v = digamma(c as f64);
            self.0[c] = v;
            v
        } else {
            v
        }
    }
}

/// m distinct indices out of n (partial Fisher–Yates), sorted.
pub(crate) fn subsample_indices(n: usize, m: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..m {
        let j = i + rng.below(n - i);
        idx.swap(i, j);
    }
    idx.truncate(m);
    idx.sort_unstable();
    idx
}

pub(crate) fn take_rows(a: &[f64], d: usize, rows: &[usize]) -> Vec<f64> {
    let mut out = Vec::with_capacity(rows.len() * d);
    for &r in rows {
        out.extend_from_slice(&a[r * d..(r + 1) * d]);
    }
    out
}

/// Subsampling interval shared by `ksg` and `mixed_ksg`; `f` computes the estimate on a subset of
/// rows. Returns (interval or None, details).
#[allow(clippy::too_many_arguments)]
pub(crate) fn subsample_interval(
    value: f64,
    n: usize,
    b: usize,
    fraction: f64,
    confidence: f64,
    seed: u64,
    min_m: usize,
    ctl: &Control,
    mut f: impl FnMut(&[usize]) -> f64,
) -> Result<(Option<Interval>, Value), EstimateError> {
    if b == 0 {
        return Ok((
            None,
            json!({"interval": null, "interval_reason": "subsamples = 0"}),
        ));
    }
    let m = ((fraction * n as f64).floor() as usize).min(n.saturating_sub(1));
    if m < min_m || m < 2 || b < 2 {
        return Ok((
            None,
            json!({"interval": null, "interval_reason": format!("subsample size {m} is too small (need at least {} rows and 2 subsamples)", min_m.max(2))}),
        ));
    }
    let mut rng = SplitMix64::new(seed ^ 0x5EED_5AB5_A3D1_E5C0);
    let mut vals = Vec::with_capacity(b);
    for r in 0..b {
        let rows = subsample_indices(n, m, &mut rng);
        vals.push(f(&rows));
        ctl.tick((r + 2) as f64 / (b + 1) as f64)?;
    }
    let mean = vals.iter().sum::<f64>() / b as f64;
    let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (b - 1) as f64;
    let sd_sub = var.sqrt();
    let sd = sd_sub * (m as f64 / (n - m) as f64).sqrt();
    let z = normal_quantile(0.5 * (1.0 + confidence));
    let interval = Interval {
        low: value - z * sd,
        high: value + z * sd,
        level: confidence,
        method: INTERVAL_METHOD.to_string(),
        replicates: b,
    };
    Ok((
        Some(interval),
        json!({
            "subsample_size": m,
            "subsample_mean": num(mean),
            "subsample_sd": num(sd_sub),
            "sd": num(sd),
        }),
    ))
}

/// KSG algorithm 1 (see the module docs). `x`: N×dx, `y`: N×dy.
pub fn ksg(
    x: ArrayView2<f64>,
    y: ArrayView2<f64>,
    p: &Params,
    ctl: &Control,
) -> Result<Output, EstimateError> {
    p.validate().map_err(EstimateError::Invalid)?;
    let (n, dx) = x.dim();
    let (ny, dy) = y.dim();
    if n != ny {
        return Err(EstimateError::invalid(format!(
            "x has {n} rows but y has {ny}"
        )));
    }
    if dx == 0 || dy == 0 {
        return Err(EstimateError::invalid(
            "x and y need at least one column each",
        ));
    }
    let ks = p.orders();
    let kmax = *ks.iter().max().unwrap();
    if n < kmax + 1 {
        return Err(EstimateError::invalid(format!(
            "KSG with k = {kmax} needs at least {} samples (got {n})",
            kmax + 1
        )));
    }
    ctl.tick(0.0)?;
    let xs = prepare(x, p.standardize, "x")?;
    let ys = prepare(y, p.standardize, "y")?;
    let per_k = ksg_core(&xs, dx, &ys, dy, &p.metric, &ks);
    let value = per_k.iter().sum::<f64>() / per_k.len() as f64;
    ctl.tick(1.0 / (p.subsamples + 1) as f64)?;
    let (interval, idetails) = subsample_interval(
        value,
        n,
        p.subsamples,
        p.subsample_fraction,
        p.confidence,
        p.seed,
        kmax + 1,
        ctl,
        |rows| {
            // The subsample is re-standardised like a fresh data set.
            let sx = take_rows(&xs, dx, rows);
            let sy = take_rows(&ys, dy, rows);
            let (sx, sy) = if p.standardize {
                let vx = ndarray::ArrayView2::from_shape((rows.len(), dx), &sx).unwrap();
                let vy = ndarray::ArrayView2::from_shape((rows.len(), dy), &sy).unwrap();
                (
                    prepare(vx, true, "x").unwrap(),
                    prepare(vy, true, "y").unwrap(),
                )
            } else {
                (sx, sy)
            };
            let v = ksg_core(&sx, dx, &sy, dy, &p.metric, &ks);
            v.iter().sum::<f64>() / v.len() as f64
        },
    )?;
    let mut details = json!({
        "estimator": "ksg",
        "version": VERSION,
        "k": p.k,
        "ks": ks,
        "per_k": ks.iter().zip(&per_k).map(|(k, v)| json!({"k": k, "value": num(*v)})).collect::<Vec<_>>(),
        "metric": p.metric,
        "standardize": p.standardize,
        "standardize_method": "each column divided by its population std, no centring (scikit-learn scale(with_mean=False))",
        "dx": dx,
        "dy": dy,
        "n": n,
        "clipped_value": num(clipped_value(&per_k, &p.metric)),
        "clipped_value_rule": if p.metric == "euclidean_per_space" {
            "mean over k of max(0, value_k): the benchmark's convention (bmi clips each k's estimate, then averages)"
        } else {
            "max(0, value): scikit-learn's convention"
        },
        "interval_method": INTERVAL_METHOD,
        "seed": p.seed,
        "params": serde_json::to_value(p).unwrap_or(Value::Null),
    });
    let ties = tied_fraction(&xs, dx).max(tied_fraction(&ys, dy));
    let mut diagnostics = knn_checks(ties, dx + dy, n, value, &idetails);
    details["tied_fraction"] = num(ties);
    // MI is unchanged by a monotone map of each coordinate: the estimate on the ranks (normal
    // scores) should agree with the raw one. Heavy tails or outliers make the raw k-NN estimate
    // drift (the benchmark's Student-t tasks read half their truth); the check runs on at most
    // COPULA_ROWS rows, both estimates on the same rows.
    let sd = idetails["sd"].as_f64();
    let copula = copula_check(&xs, dx, &ys, dy, &p.metric, &ks, p.seed, value);
    ctl.tick(1.0)?;
    if let Some((raw, ranked, rows)) = copula {
        details["copula_value"] = num(ranked);
        details["copula_raw_value"] = num(raw);
        details["copula_rows"] = json!(rows);
        marginal_check(&mut diagnostics, raw, ranked, rows, n, sd);
    }
    merge(&mut details, idetails);
    Ok(Output {
        value,
        interval,
        n,
        details,
        sufficient: None,
        diagnostics,
    })
}

/// The value clipped at 0 by the convention of the metric's reference: in the benchmark's mode
/// (`euclidean_per_space`, bmi) each k's estimate is clipped and the clipped values averaged; in
/// scikit-learn's mode (`max`) the (mean) value is clipped.
pub fn clipped_value(per_k: &[f64], metric: &str) -> f64 {
    if metric == "euclidean_per_space" {
        per_k.iter().map(|v| v.max(0.0)).sum::<f64>() / per_k.len().max(1) as f64
    } else {
        (per_k.iter().sum::<f64>() / per_k.len().max(1) as f64).max(0.0)
    }
}

/// Fraction of coordinates (entries of the row-major `a` with `d` columns) equal to another
/// entry of their column: exact ties make k-NN distances 0 and inflate KSG-type estimates by
/// orders of magnitude (scikit-learn #30772).
pub(crate) fn tied_fraction(a: &[f64], d: usize) -> f64 {
    let n = a.len().checked_div(d).unwrap_or(0);
    if n < 2 {
        return 0.0;
    }
    let mut tied = 0usize;
    let mut col = vec![0.0; n];
    for c in 0..d {
        for (r, v) in col.iter_mut().enumerate() {
            *v = a[r * d + c];
        }
        col.sort_by(f64::total_cmp);
        for i in 0..n {
            if (i > 0 && col[i] == col[i - 1]) || (i + 1 < n && col[i] == col[i + 1]) {
                tied += 1;
            }
        }
    }
    tied as f64 / (n * d) as f64
}

/// The k-NN checks: tied coordinates, dimension against N, and the estimate on subsamples of
/// half the size against the whole (an estimate that moves with N is dominated by its bias).
pub(crate) fn knn_checks(ties: f64, dims: usize, n: usize, value: f64, sub: &Value) -> Diagnostics {
    let mut d = Diagnostics::default();
    if ties > 0.05 {
        d.add(Reliability::Unreliable, "tied_coordinates", format!(
            "{:.1} % of the coordinates are exact ties: k-NN distances of 0 inflate the estimate (scikit-learn #30772)",
            100.0 * ties
        ));
    } else if ties > 0.001 {
        d.add(
            Reliability::Caution,
            "tied_coordinates",
            format!(
                "{:.2} % of the coordinates are exact ties, which bias k-NN estimates upward",
                100.0 * ties
            ),
        );
    }
    if dims >= 10 && n < 10_000 {
        d.add(Reliability::Caution, "high_dimension", format!(
            "{dims} dimensions with N = {n}: k-NN estimates are biased downward in high dimension (the benchmark's sparse 25x25 tasks read ~20 % of the truth)"
        ));
    }
    if let (Some(half), Some(sd)) = (sub["subsample_mean"].as_f64(), sub["sd"].as_f64()) {
        let gap = (half - value).abs();
        if gap > 2.0 * sd && gap > 0.01 + 0.05 * value.abs() {
            d.add(Reliability::Caution, "depends_on_n", format!(
                "the estimate on half-size subsamples ({half:.4}) differs from the whole ({value:.4}) by more than 2 standard errors: its bias still changes with N"
            ));
        }
    }
    d
}

/// Rows the marginal-transform check of `ksg` runs on (a seeded subsample above it).
pub const COPULA_ROWS: usize = 10_000;

/// Normal scores of each column: Φ⁻¹((rank + ½)/n), ties given their mean rank. A monotone map
/// of every coordinate, so the MI is unchanged, and the result has no tails.
pub(crate) fn normal_scores(a: &[f64], d: usize) -> Vec<f64> {
    let n = a.len().checked_div(d).unwrap_or(0);
    let mut out = vec![0.0; a.len()];
    let mut order: Vec<usize> = (0..n).collect();
    for c in 0..d {
        order.sort_by(|&i, &j| a[i * d + c].total_cmp(&a[j * d + c]));
        let mut s = 0;
        while s < n {
            let mut e = s + 1;
            while e < n && a[order[e] * d + c] == a[order[s] * d + c] {
                e += 1;
            }
            let rank = (s + e - 1) as f64 / 2.0;
            let z = crate::stats::normal_quantile((rank + 0.5) / n as f64);
            for &i in &order[s..e] {
                out[i * d + c] = z;
            }
            s = e;
        }
    }
    out
}

/// The KSG estimate on the raw values and on the normal scores, on the same rows (all of them up
/// to [`COPULA_ROWS`], else a seeded subsample): `(raw, ranked, rows)`. On all the rows the raw
/// estimate is `whole` (the estimator's own value, the same computation on the same rows), so
/// only the ranked one is computed.
#[allow(clippy::too_many_arguments)]
fn copula_check(
    xs: &[f64],
    dx: usize,
    ys: &[f64],
    dy: usize,
    metric: &str,
    ks: &[usize],
    seed: u64,
    whole: f64,
) -> Option<(f64, f64, usize)> {
    let n = xs.len() / dx.max(1);
    let kmax = ks.iter().copied().max().unwrap_or(3);
    if n < 4 * (kmax + 1) {
        return None;
    }
    let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
    if n <= COPULA_ROWS {
        let (rx, ry) = (normal_scores(xs, dx), normal_scores(ys, dy));
        let ranked = mean(ksg_core(&rx, dx, &ry, dy, metric, ks));
        return Some((whole, ranked, n));
    }
    let mut g = SplitMix64::new(seed ^ 0xC0_9A1A);
    let idx = subsample_indices(n, COPULA_ROWS, &mut g);
    let (sx, sy) = (take_rows(xs, dx, &idx), take_rows(ys, dy, &idx));
    let rows = sx.len() / dx.max(1);
    let raw = mean(ksg_core(&sx, dx, &sy, dy, metric, ks));
    let (rx, ry) = (normal_scores(&sx, dx), normal_scores(&sy, dy));
    let ranked = mean(ksg_core(&rx, dx, &ry, dy, metric, ks));
    Some((raw, ranked, rows))
}

/// Flag an estimate that a monotone map of the coordinates moves: caution past max(0.05 nats,
/// 3 subsample sd), unreliable past max(0.1 nats, a quarter of the ranked value, 5 sd).
pub(crate) fn marginal_check(
    d: &mut Diagnostics,
    raw: f64,
    ranked: f64,
    rows: usize,
    n: usize,
    sd: Option<f64>,
) {
    let gap = (raw - ranked).abs();
    let sd = sd.filter(|s| s.is_finite()).unwrap_or(0.0);
    // The subsample sd is for N rows; on fewer rows the estimates vary more.
    let sd = sd * (n as f64 / rows.max(1) as f64).sqrt();
    let message = format!(
        "on the ranks of each coordinate (MI is unchanged by such maps) the estimate is {ranked:.4} nats against {raw:.4} on the raw values ({rows} rows): heavy tails or outliers bias the raw k-NN estimate"
    );
    if gap > (0.1f64).max(0.25 * ranked.abs()).max(5.0 * sd) {
        d.add(
            Reliability::Unreliable,
            "marginal_transform_sensitive",
            message,
        );
    } else if gap > (0.05f64).max(3.0 * sd) {
        d.add(
            Reliability::Caution,
            "marginal_transform_sensitive",
            message,
        );
    }
}

pub(crate) fn merge(a: &mut Value, b: Value) {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        for (k, v) in b {
            a.insert(k, v);
        }
    }
}

/// Ross (2014) discrete–continuous k-NN MI, scikit-learn `mutual_info_classif` conventions.
pub mod mixed {
    use super::*;

    pub const VERSION: &str = "1.0.0";

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Params {
        /// Neighbour order within a class (scikit-learn: 3).
        pub k: usize,
        /// Divide each feature column by its population std (no centring), before dropping
        /// singleton classes (scikit-learn's order).
        pub standardize: bool,
        pub subsamples: usize,
        pub subsample_fraction: f64,
        pub confidence: f64,
        pub seed: u64,
    }

    impl Default for Params {
        fn default() -> Self {
            Params {
                k: 3,
                standardize: true,
                subsamples: 20,
                subsample_fraction: 0.5,
                confidence: 0.95,
                seed: 0,
            }
        }
    }

    impl Params {
        pub fn validate(&self) -> Result<(), String> {
            if !(1..=1000).contains(&self.k) {
                return Err(format!("k must be between 1 and 1000 (got {})", self.k));
            }
            check_subsampling(self.subsamples, self.subsample_fraction, self.confidence)
        }
    }

    /// Ross core on prepared row-major features. Returns (value, n_used, dropped) or None when
    /// fewer than 2 samples survive.
    pub(crate) fn ross_core(
        fs: &[f64],
        d: usize,
        labels: &[u32],
        k: usize,
    ) -> Option<(f64, usize, usize)> {
        let n = labels.len();
        let mut counts: std::collections::BTreeMap<u32, usize> = Default::default();
        for &l in labels {
            *counts.entry(l).or_default() += 1;
        }
        let keep: Vec<usize> = (0..n).filter(|&i| counts[&labels[i]] > 1).collect();
        let nk = keep.len();
        if nk < 2 {
            return None;
        }
        // radius (key) and k_i per kept sample, in `keep` order
        let mut radius = vec![0.0; nk];
        let mut kk = vec![0usize; nk];
        let mut pos_in_keep = vec![usize::MAX; n];
        for (p, &i) in keep.iter().enumerate() {
            pos_in_keep[i] = p;
        }
        for (&label, &count) in &counts {
            if count < 2 {
                continue;
            }
            let members: Vec<usize> = keep
                .iter()
                .copied()
                .filter(|&i| labels[i] == label)
                .collect();
            let kl = k.min(count - 1);
            let idx = Index::auto(take_rows(fs, d, &members), d, Metric::Max);
            let r = idx.all_kth_keys(kl);
            for (j, &i) in members.iter().enumerate() {
                radius[pos_in_keep[i]] = r[j];
                kk[pos_in_keep[i]] = kl;
            }
        }
        let all = Index::auto(take_rows(fs, d, &keep), d, Metric::Max);
        let m = all.all_counts_below(&radius);
        let mut s = 0.0;
        for p in 0..nk {
            let i = keep[p];
            s += digamma(kk[p] as f64) - digamma(counts[&labels[i]] as f64) - digamma(m[p] as f64);
        }
        Some((digamma(nk as f64) + s / nk as f64, nk, n - nk))
    }

    /// Ross (2014): continuous `features` (N×d, max-norm across features when d > 1;
    /// scikit-learn only handles one feature at a time) against discrete `labels`.
    ///
    /// Per sample with a label occurring more than once: k_i = min(k, count − 1); r_i = distance
    /// to its k_i-th nearest neighbour within its class; m_i = #{all kept samples with distance
    /// < r_i} (itself included; == 0 when r_i = 0, as scikit-learn's `nextafter` radius gives).
    /// Samples whose label occurs once are dropped and N recounted;
    /// Î = ψ(N) + ⟨ψ(k_i)⟩ − ⟨ψ(N_{label_i})⟩ − ⟨ψ(m_i)⟩, raw (scikit-learn clips at 0).
    pub fn mixed_ksg(
        features: ArrayView2<f64>,
        labels: &[u32],
        p: &Params,
        ctl: &Control,
    ) -> Result<Output, EstimateError> {
        p.validate().map_err(EstimateError::Invalid)?;
        let (n, d) = features.dim();
        if n != labels.len() {
            return Err(EstimateError::invalid(format!(
                "features has {n} rows but labels has {} entries",
                labels.len()
            )));
        }
        if d == 0 {
            return Err(EstimateError::invalid("features needs at least one column"));
        }
        ctl.tick(0.0)?;
        let fs = prepare(features, p.standardize, "features")?;
        let Some((value, n_used, dropped)) = ross_core(&fs, d, labels, p.k) else {
            return Err(EstimateError::invalid(
                "mixed_ksg needs at least 2 samples whose label occurs more than once",
            ));
        };
        let classes = {
            let mut l = labels.to_vec();
            l.sort_unstable();
            l.dedup();
            l.len()
        };
        ctl.tick(1.0 / (p.subsamples + 1) as f64)?;
        let (interval, idetails) = subsample_interval(
            value,
            n,
            p.subsamples,
            p.subsample_fraction,
            p.confidence,
            p.seed,
            p.k + 1,
            ctl,
            |rows| {
                let sf = take_rows(&fs, d, rows);
                let sf = if p.standardize {
                    let v = ndarray::ArrayView2::from_shape((rows.len(), d), &sf).unwrap();
                    prepare(v, true, "features").unwrap()
                } else {
                    sf
                };
                let sl: Vec<u32> = rows.iter().map(|&r| labels[r]).collect();
                ross_core(&sf, d, &sl, p.k).map(|v| v.0).unwrap_or(f64::NAN)
            },
        )?;
        // A subsample where the estimator is undefined gives NaN: then no interval.
        let (interval, idetails) = match &interval {
            Some(iv) if !(iv.low.is_finite() && iv.high.is_finite()) => (
                None,
                json!({"interval": null, "interval_reason": "the estimator was undefined on some subsample (too few repeated labels)"}),
            ),
            _ => (interval, idetails),
        };
        let mut details = json!({
            "estimator": "mixed_ksg",
            "version": VERSION,
            "k": p.k,
            "metric": "max",
            "metric_note": "Chebyshev (max-norm) across feature columns; scikit-learn's mutual_info_classif handles one feature at a time, where this is |x_i - x_j|",
            "standardize": p.standardize,
            "dims": d,
            "n": n,
            "n_used": n_used,
            "dropped_singletons": dropped,
            "classes": classes,
            "clipped_value": num(value.max(0.0)),
            "interval_method": INTERVAL_METHOD,
            "seed": p.seed,
            "params": serde_json::to_value(p).unwrap_or(Value::Null),
        });
        let ties = tied_fraction(&fs, d);
        let diagnostics = knn_checks(ties, d + 1, n_used, value, &idetails);
        details["tied_fraction"] = num(ties);
        merge(&mut details, idetails);
        Ok(Output {
            value,
            interval,
            n: n_used,
            details,
            sufficient: None,
            diagnostics,
        })
    }
}
