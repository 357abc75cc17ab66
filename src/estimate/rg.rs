//! `rg_curve`: Lu's information rate–fidelity function R(G) for a fixed semantic channel
//! (semantic-information-spec.md §2.12), by the parametric MID iteration in the log domain:
//! m_ij = T(θ_j|x_i)/T(θ_j); P(y_j|x_i) = P(y_j) m_ij^s / Z_i; P⁺(y_j) = Σ_i P(x_i) P(y_j|x_i);
//! G(s) = Σ_i P(x_i) Σ_j P(y_j|x_i) ln m_ij; R(s) = s·G(s) − Σ_i P(x_i) ln Z_i.
//!
//! Source P(x) = the (weighted) marginal of the true labels; T = the `truth_matrix` or the LBI
//! T* of the confusion table. Rows with P(x) = 0 and columns with T(θ_j) = 0 (never true on the
//! source, so never chosen) are dropped. Grid points are processed in increasing s, each starting
//! from the previous point's P(y) mixed with 1 % of the uniform, the first from the uniform. A
//! point is converged when the Kuhn–Tucker gap max_j ln c_j (c_j = Σ_i P(x_i) m_ij^s / Z_i, which
//! is 1 on the optimal support and ≤ 1 off it) is at most `tol`; a warm-started point that misses
//! it is computed again from the uniform, and a point that still misses it after `max_iter` steps
//! is reported with `converged: false` and its gap. s = 0 is refused: there every P(y) gives the
//! same R = 0 and G is not determined. The primary value is R at s = 1 (always computed).
//!
//! Version 2 (this file): the stopping rule is the Kuhn–Tucker gap. Version 1 stopped when P(y)
//! moved by less than `tol` in a step, which reported points up to 0.04 nats off as converged.

use super::contingency::Table;
use super::semantic::lbi_truth;
use super::special::entropy_of_counts;
use super::{
    check_choice, check_class_input, normalized_weights, num, ClassInput, Control, EstimateError,
    Output,
};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub const VERSION: &str = "2.0.0";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Values of s (any order; 1 is always added). Finite, non-zero, in [−100, 1000]; at most
    /// 200 values. Negative s (the left branch) needs every truth value to be positive.
    pub s_grid: Vec<f64>,
    /// Iteration cap per s and run (1..=1000000).
    pub max_iter: usize,
    /// Optimality tolerance: a point is converged when its Kuhn–Tucker gap max_j ln c_j (an upper
    /// bound on R's distance from the optimum, nats) is at most this (in [1e-14, 1e-3]).
    pub tol: f64,
    /// "auto" (truth_matrix if given, else LBI) | "truth_matrix" | "lbi".
    pub mode: String,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            s_grid: vec![0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0],
            max_iter: 20_000,
            tol: 1e-10,
            mode: "auto".to_string(),
        }
    }
}

impl Params {
    pub fn validate(&self) -> Result<(), String> {
        if self.s_grid.is_empty() || self.s_grid.len() > 200 {
            return Err(format!(
                "s_grid must have between 1 and 200 values (got {})",
                self.s_grid.len()
            ));
        }
        if let Some(s) = self
            .s_grid
            .iter()
            .find(|s| !(s.is_finite() && (-100.0..=1000.0).contains(*s)))
        {
            return Err(format!(
                "s_grid values must be finite and in [-100, 1000] (got {s})"
            ));
        }
        if self.s_grid.contains(&0.0) {
            return Err(
                "s_grid must not contain 0: at s = 0 every P(y) gives R = 0 and G is not determined; use a small positive s such as 0.01"
                    .to_string(),
            );
        }
        if !(1..=1_000_000).contains(&self.max_iter) {
            return Err(format!(
                "max_iter must be between 1 and 1000000 (got {})",
                self.max_iter
            ));
        }
        if !(1e-14..=1e-3).contains(&self.tol) {
            return Err(format!("tol must be in [1e-14, 0.001] (got {})", self.tol));
        }
        check_choice("mode", &self.mode, &["auto", "truth_matrix", "lbi"])
    }
}

/// One point of the curve.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub s: f64,
    pub g: f64,
    pub r: f64,
    /// Shannon MI computed directly from the resulting channel (cross-check of `r`).
    pub r_direct: f64,
    pub p_y: Vec<f64>,
    pub iterations: usize,
    pub converged: bool,
    /// Kuhn–Tucker gap max_j ln c_j at the returned P(y) (0 at the optimum).
    pub gap: f64,
    /// The warm-started run missed the tolerance and the point was computed again from the
    /// uniform P(y).
    pub restarted: bool,
    /// Newton steps of the final polish (0 when the iteration alone converged).
    pub newton_steps: usize,
}

fn logsumexp(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.iter().map(|&x| (x - m).exp()).sum::<f64>().ln()
}

/// The MID iteration for one s from `start`. `lm[i][j]` = ln m_ij (−∞ allowed for s > 0),
/// `px` > 0. Each step is P⁺(y_j) = P(y_j)·c_j with c_j = Σ_i P(x_i) m_ij^s / Z_i; the iteration
/// stops when the Kuhn–Tucker gap max_j ln c_j is at most `tol` (it is 0 exactly at the optimum,
/// and it bounds R's distance from its optimal value), or after `max_iter` steps
/// (`converged: false`). A small step in P(y) is not a stopping rule: a label whose optimal mass
/// is far from its start can move by tiny steps for thousands of iterations.
pub fn rg_point(
    px: &[f64],
    lm: &Array2<f64>,
    s: f64,
    start: &[f64],
    max_iter: usize,
    tol: f64,
    ctl: &Control<'_>,
) -> Result<Point, EstimateError> {
    let (kx, ky) = lm.dim();
    let mut ch = Channel::new(kx, ky);
    let mut py = start.to_vec();
    let mut p1 = vec![0.0; ky];
    let mut p2 = vec![0.0; ky];
    let mut iterations = 0;
    let mut newton_steps = 0;
    let mut gap = ch.eval(px, lm, s, &py);
    let mut polish = ky <= NEWTON_MAX_LABELS;
    // Phase 1: accelerated MID iterations to a moderate residual; phase 2: Newton's method on the
    // Kuhn–Tucker conditions with an active set (fast where the objective is nearly flat along
    // a label, where the iteration crawls); phase 3: more iterations if Newton did not finish.
    // SQUAREM (Varadhan & Roland 2008, scheme S3) around the MID map P ↦ P·c: two map steps,
    // an extrapolated point, one stabilising map step, kept only if F did not increase;
    // otherwise the plain two-step point. Each map step is counted as an iteration.
    loop {
        let target = if polish { tol.max(1e-7) } else { tol };
        while (gap.is_nan() || gap > target) && iterations < max_iter {
            if iterations % 256 < 3 {
                ctl.tick(0.0)?;
            }
            ch.step(&py, &mut p1);
            ch.eval(px, lm, s, &p1);
            ch.step(&p1, &mut p2);
            let g2 = ch.eval(px, lm, s, &p2);
            let f2 = ch.f;
            iterations += 2;
            let (mut rr, mut vv) = (0.0, 0.0);
            for j in 0..ky {
                let r = p1[j] - py[j];
                let v = p2[j] - 2.0 * p1[j] + py[j];
                rr += r * r;
                vv += v * v;
            }
            let mut alpha = if vv > 0.0 { -(rr / vv).sqrt() } else { -1.0 };
            let mut accepted = false;
            // Backtrack the step length towards the plain two-step point (α = −1) until the
            // extrapolated point is positive and lowers F.
            while alpha < -1.0 && iterations < max_iter {
                let mut ok = true;
                let mut ext = vec![0.0; ky];
                for j in 0..ky {
                    let r = p1[j] - py[j];
                    let v = p2[j] - 2.0 * p1[j] + py[j];
                    ext[j] = py[j] - 2.0 * alpha * r + alpha * alpha * v;
                    ok &= ext[j] >= 0.0;
                }
                if ok {
                    let total: f64 = ext.iter().sum();
                    ext.iter_mut().for_each(|v| *v /= total);
                    ch.eval(px, lm, s, &ext);
                    let mut p3 = vec![0.0; ky];
                    ch.step(&ext, &mut p3);
                    let g3 = ch.eval(px, lm, s, &p3);
                    iterations += 1;
                    if ch.f.is_finite() && ch.f <= f2 {
                        py.copy_from_slice(&p3);
                        gap = g3;
                        accepted = true;
                        break;
                    }
                }
                alpha = (alpha - 1.0) / 2.0;
                if alpha > -1.0 - 1e-9 {
                    break;
                }
            }
            if accepted {
                continue;
            }
            ch.eval(px, lm, s, &p2);
            py.copy_from_slice(&p2);
            gap = g2;
        }
        if !polish || gap <= tol {
            break;
        }
        polish = false;
        if let Some((p, steps)) = newton_polish(px, lm, s, &py) {
            newton_steps = steps;
            let g = ch.eval(px, lm, s, &p);
            if g < gap {
                py = p;
                gap = g;
            } else {
                ch.eval(px, lm, s, &py);
            }
        }
        if gap <= tol || iterations >= max_iter {
            break;
        }
    }
    let converged = gap <= tol;
    let post = &ch.post;
    let mut g = 0.0;
    let mut r_direct = 0.0;
    let mut py_out = vec![0.0; ky];
    for i in 0..kx {
        for j in 0..ky {
            py_out[j] += px[i] * post[[i, j]];
        }
    }
    for i in 0..kx {
        for j in 0..ky {
            let p = post[[i, j]];
            if p > 0.0 {
                g += px[i] * p * lm[[i, j]];
                r_direct += px[i] * p * (p / py_out[j]).ln();
            }
        }
    }
    let r = s * g + ch.f;
    Ok(Point {
        s,
        g,
        r,
        r_direct,
        p_y: py,
        iterations,
        converged,
        gap,
        restarted: false,
        newton_steps,
    })
}

/// The channel at one P(y): the posterior P(y|x) ∝ P(y) m^s, ln Z_i, the Kuhn–Tucker ratios
/// c_j = Σ_i P(x_i) m_ij^s / Z_i, and F = −Σ_i P(x_i) ln Z_i (the convex objective whose
/// minimiser is the optimal P(y)).
struct Channel {
    post: Array2<f64>,
    c: Vec<f64>,
    lw: Vec<f64>,
    f: f64,
}

impl Channel {
    fn new(kx: usize, ky: usize) -> Self {
        Channel {
            post: Array2::zeros((kx, ky)),
            c: vec![0.0; ky],
            lw: vec![0.0; ky],
            f: 0.0,
        }
    }

    /// Evaluate at `py`; returns the Kuhn–Tucker residual max(max_j ln c_j, Σ_j P_j |ln c_j|),
    /// which is 0 exactly at the optimum (c_j ≤ 1 everywhere, = 1 where P(y_j) > 0).
    fn eval(&mut self, px: &[f64], lm: &Array2<f64>, s: f64, py: &[f64]) -> f64 {
        let (kx, ky) = lm.dim();
        let lpy: Vec<f64> = py.iter().map(|&p| p.ln()).collect();
        self.c.iter_mut().for_each(|v| *v = 0.0);
        self.f = 0.0;
        for i in 0..kx {
            for j in 0..ky {
                self.lw[j] = lpy[j] + s * lm[[i, j]];
            }
            let z = logsumexp(&self.lw);
            self.f -= px[i] * z;
            for j in 0..ky {
                self.post[[i, j]] = (self.lw[j] - z).exp();
                // c_j also for labels whose mass is 0 (they would enter if c_j > 1)
                self.c[j] += px[i] * (s * lm[[i, j]] - z).exp();
            }
        }
        let up = self
            .c
            .iter()
            .map(|v| v.ln())
            .fold(f64::NEG_INFINITY, f64::max);
        let slack: f64 = py
            .iter()
            .zip(&self.c)
            .map(|(p, v)| if *p > 0.0 { p * v.ln().abs() } else { 0.0 })
            .sum();
        up.max(slack)
    }

    /// The MID map P ↦ P·c (renormalised against rounding), from the last `eval`.
    fn step(&self, py: &[f64], out: &mut [f64]) {
        let total: f64 = py.iter().zip(&self.c).map(|(p, c)| p * c).sum();
        for ((o, p), c) in out.iter_mut().zip(py).zip(&self.c) {
            *o = p * c / total;
        }
    }
}

/// Labels up to which the Newton polish runs (its linear solves cost O(labels³)).
const NEWTON_MAX_LABELS: usize = 400;

/// Newton's method for min F(P) = −Σ_i P(x_i) ln Σ_j P(y_j) m_ij^s on the simplex, with an
/// active set: on the support S the Kuhn–Tucker conditions are c_j = 1 (gradient −c, Hessian
/// H_jk = Σ_i P(x_i) f_ij f_ik / Z_i² with f = m^s), solved with the constraint Σ P = 1; a step
/// that would make a mass negative stops at the boundary and drops that label; a label off S
/// with c_j > 1 enters. Returns the point and the steps taken, or `None` if a linear system was
/// singular. Rows of f are scaled by their maximum (c and H do not change; F shifts).
fn newton_polish(px: &[f64], lm: &Array2<f64>, s: f64, start: &[f64]) -> Option<(Vec<f64>, usize)> {
    let (kx, ky) = lm.dim();
    let mut f = Array2::<f64>::zeros((kx, ky));
    for i in 0..kx {
        let mx = (0..ky)
            .map(|j| s * lm[[i, j]])
            .fold(f64::NEG_INFINITY, f64::max);
        if !mx.is_finite() {
            return None;
        }
        for j in 0..ky {
            f[[i, j]] = (s * lm[[i, j]] - mx).exp();
        }
    }
    let pmax = start.iter().cloned().fold(0.0, f64::max);
    let mut p: Vec<f64> = start
        .iter()
        .map(|&v| if v > 1e-12 * pmax { v } else { 0.0 })
        .collect();
    let total: f64 = p.iter().sum();
    p.iter_mut().for_each(|v| *v /= total);
    let objective = |p: &[f64]| -> f64 {
        let mut fv = 0.0;
        for i in 0..kx {
            let z: f64 = (0..ky).map(|j| p[j] * f[[i, j]]).sum();
            fv -= px[i] * z.ln();
        }
        fv
    };
    let mut z = vec![0.0; kx];
    let mut c = vec![0.0; ky];
    for step in 0..200 {
        for i in 0..kx {
            z[i] = (0..ky).map(|j| p[j] * f[[i, j]]).sum();
        }
        for (j, cj) in c.iter_mut().enumerate() {
            *cj = (0..kx).map(|i| px[i] * f[[i, j]] / z[i]).sum();
        }
        let sup: Vec<usize> = (0..ky).filter(|&j| p[j] > 0.0).collect();
        let on = sup.iter().map(|&j| (c[j] - 1.0).abs()).fold(0.0, f64::max);
        let enter = (0..ky)
            .filter(|&j| p[j] == 0.0)
            .max_by(|&a, &b| c[a].total_cmp(&c[b]));
        let off = enter.map_or(0.0, |j| c[j] - 1.0);
        if on < 1e-14 && off <= 1e-14 {
            return Some((p, step));
        }
        if on < 1e-9 && off > 1e-14 {
            let j = enter.expect("a label off the support");
            p[j] = 1e-6;
            let t: f64 = p.iter().sum();
            p.iter_mut().for_each(|v| *v /= t);
            continue;
        }
        // KKT system [H 1; 1ᵀ 0] [d; λ] = [c; 0] on the support (−gradient = c).
        let m = sup.len();
        let w = m + 1;
        let mut a = vec![0.0; w * w];
        let mut b = vec![0.0; w];
        for i in 0..kx {
            let wi = px[i] / (z[i] * z[i]);
            for (r, &jr) in sup.iter().enumerate() {
                let fr = wi * f[[i, jr]];
                if fr == 0.0 {
                    continue;
                }
                for (q, &jq) in sup.iter().enumerate() {
                    a[r * w + q] += fr * f[[i, jq]];
                }
            }
        }
        let trace: f64 = (0..m).map(|r| a[r * w + r]).sum();
        for r in 0..m {
            a[r * w + r] += 1e-13 * trace / m as f64;
            a[r * w + m] = 1.0;
            a[m * w + r] = 1.0;
            b[r] = c[sup[r]];
        }
        let sol = solve_dense(&mut a, &mut b, w)?;
        let d = &sol[..m];
        // Largest step keeping every mass ≥ 0.
        let mut t_max = f64::INFINITY;
        let mut blocking = None;
        for (r, &j) in sup.iter().enumerate() {
            if d[r] < 0.0 {
                let t = -p[j] / d[r];
                if t < t_max {
                    t_max = t;
                    blocking = Some(j);
                }
            }
        }
        let f0 = objective(&p);
        let slope: f64 = sup.iter().zip(d).map(|(&j, dr)| -c[j] * dr).sum();
        let mut t = 1.0f64.min(t_max);
        let mut next = p.clone();
        loop {
            for (r, &j) in sup.iter().enumerate() {
                next[j] = (p[j] + t * d[r]).max(0.0);
            }
            if t == t_max {
                if let Some(j) = blocking {
                    next[j] = 0.0;
                }
            }
            let fv = objective(&next);
            if fv <= f0 + 1e-4 * t * slope || t < 1e-12 {
                break;
            }
            t *= 0.5;
        }
        let tot: f64 = next.iter().sum();
        next.iter_mut().for_each(|v| *v /= tot);
        p = next;
    }
    Some((p, 200))
}

/// Solves the dense w×w system `a x = b` (row-major) by Gaussian elimination with partial
/// pivoting; `None` when a pivot vanishes.
fn solve_dense(a: &mut [f64], b: &mut [f64], w: usize) -> Option<Vec<f64>> {
    for col in 0..w {
        let piv =
            (col..w).max_by(|&x, &y| a[x * w + col].abs().total_cmp(&a[y * w + col].abs()))?;
        if a[piv * w + col].abs() < 1e-300 {
            return None;
        }
        if piv != col {
            for k in 0..w {
                a.swap(piv * w + k, col * w + k);
            }
            b.swap(piv, col);
        }
        for row in col + 1..w {
            let factor = a[row * w + col] / a[col * w + col];
            if factor != 0.0 {
                for k in col..w {
                    a[row * w + k] -= factor * a[col * w + k];
                }
                b[row] -= factor * b[col];
            }
        }
    }
    let mut x = vec![0.0; w];
    for row in (0..w).rev() {
        let sum: f64 = (row + 1..w).map(|k| a[row * w + k] * x[k]).sum();
        x[row] = (b[row] - sum) / a[row * w + row];
    }
    Some(x)
}

/// One point of the curve, warm-started from `warm` (mixed with 1 % of the uniform so that no
/// label starts near 0) and, if that run does not reach the optimality gap, run again cold from
/// the uniform; the run with the smaller gap is kept.
fn solve_point(
    px: &[f64],
    lm: &Array2<f64>,
    s: f64,
    warm: Option<&[f64]>,
    params: &Params,
    ctl: &Control<'_>,
) -> Result<Point, EstimateError> {
    let m = lm.ncols();
    let uniform = vec![1.0 / m as f64; m];
    let Some(warm) = warm else {
        return rg_point(px, lm, s, &uniform, params.max_iter, params.tol, ctl);
    };
    let start: Vec<f64> = warm
        .iter()
        .zip(&uniform)
        .map(|(a, u)| 0.99 * a + 0.01 * u)
        .collect();
    let first = rg_point(px, lm, s, &start, params.max_iter, params.tol, ctl)?;
    if first.converged {
        return Ok(first);
    }
    let mut cold = rg_point(px, lm, s, &uniform, params.max_iter, params.tol, ctl)?;
    cold.iterations += first.iterations;
    cold.restarted = true;
    Ok(if cold.gap <= first.gap { cold } else { first })
}

/// The R(G) curve of the batch's source P(x) under the truth matrix (or LBI T*).
pub fn rg_curve(
    input: &ClassInput<'_>,
    params: &Params,
    ctl: &Control<'_>,
) -> Result<Output, EstimateError> {
    params.validate().map_err(EstimateError::Invalid)?;
    let n = check_class_input(input)?;
    let k = input.k;
    let use_matrix = match params.mode.as_str() {
        "truth_matrix" => {
            if input.truth_matrix.is_none() {
                return Err(EstimateError::invalid(
                    "mode \"truth_matrix\" needs a truth_matrix",
                ));
            }
            true
        }
        "lbi" => false,
        _ => input.truth_matrix.is_some(),
    };
    let w = normalized_weights(input.weights, n)?;
    let table = Table::from_pairs(input.labels, input.predictions, k, k, w.as_deref());
    let t: Array2<f64> = if use_matrix {
        let tm = input.truth_matrix.expect("checked above");
        if tm.dim() != (k, k) {
            return Err(EstimateError::invalid(format!(
                "truth_matrix has shape {:?}, expected ({k}, {k})",
                tm.dim()
            )));
        }
        if let Some(((r, c), v)) = tm
            .indexed_iter()
            .find(|(_, v)| !(v.is_finite() && (0.0..=1.0).contains(*v)))
        {
            return Err(EstimateError::invalid(format!(
                "truth_matrix[{r}][{c}] is {v}; truth values must be in [0, 1]"
            )));
        }
        tm.to_owned()
    } else {
        lbi_truth(&table)
    };
    let rows: Vec<usize> = (0..k).filter(|&i| table.row_sums[i] > 0.0).collect();
    let px: Vec<f64> = rows
        .iter()
        .map(|&i| table.row_sums[i] / table.total)
        .collect();
    let tj: Vec<f64> = (0..k)
        .map(|j| rows.iter().zip(&px).map(|(&i, &p)| p * t[[i, j]]).sum())
        .collect();
    let cols: Vec<usize> = (0..k).filter(|&j| tj[j] > 0.0).collect();
    if cols.is_empty() {
        return Err(EstimateError::invalid(
            "every label has logical probability 0 on this batch (all truth values are 0)",
        ));
    }
    let lm = Array2::from_shape_fn((rows.len(), cols.len()), |(a, b)| {
        let v = t[[rows[a], cols[b]]];
        if v > 0.0 {
            (v / tj[cols[b]]).ln()
        } else {
            f64::NEG_INFINITY
        }
    });
    if let Some(a) = (0..rows.len()).find(|&a| lm.row(a).iter().all(|v| *v == f64::NEG_INFINITY)) {
        return Err(EstimateError::invalid(format!(
            "class {} occurs as a true label but has truth value 0 for every label, so no output distribution can describe it and R(G) is infinite",
            rows[a]
        )));
    }
    let mut grid = params.s_grid.clone();
    grid.push(1.0);
    grid.sort_by(f64::total_cmp);
    grid.dedup();
    if grid[0] < 0.0 && lm.iter().any(|v| *v == f64::NEG_INFINITY) {
        return Err(EstimateError::invalid(
            "negative s (the left branch of R(G)) needs every truth value to be positive",
        ));
    }
    let mut points: Vec<Point> = Vec::with_capacity(grid.len());
    for (idx, &s) in grid.iter().enumerate() {
        ctl.tick(idx as f64 / grid.len() as f64)?;
        let warm = points.last().map(|p| p.p_y.as_slice());
        points.push(solve_point(&px, &lm, s, warm, params, ctl)?);
    }
    ctl.tick(1.0)?;
    let at1 = points
        .iter()
        .find(|p| p.s == 1.0)
        .expect("s = 1 is always on the grid")
        .clone();
    let full_py = |p: &[f64]| -> Vec<f64> {
        let mut v = vec![0.0; k];
        for (b, &j) in cols.iter().enumerate() {
            v[j] = p[b];
        }
        v
    };
    let max_disc = points
        .iter()
        .map(|p| (p.r - p.r_direct).abs())
        .fold(0.0, f64::max);
    let pts: Vec<Value> = points
        .iter()
        .map(|p| {
            json!({
                "s": p.s,
                "g": num(p.g),
                "r": num(p.r),
                "efficiency": if p.r.abs() > 1e-12 { num(p.g / p.r) } else { Value::Null },
                "p_y": full_py(&p.p_y).into_iter().map(num).collect::<Vec<_>>(),
                "r_direct": num(p.r_direct),
                "iterations": p.iterations,
                "converged": p.converged,
                "gap": num(p.gap),
                "restarted": p.restarted,
                "newton_steps": p.newton_steps,
            })
        })
        .collect();
    let dropped: Vec<usize> = (0..k).filter(|j| tj[*j] <= 0.0).collect();
    let details = json!({
        "mode": if use_matrix { "truth_matrix" } else { "lbi" },
        "points": pts,
        "g_at_1": num(at1.g),
        "r_at_1": num(at1.r),
        "matched_at_1": (at1.r - at1.g).abs() < 1e-9,
        "matched_note": "R(1) = G(1) only when some P(y) reproduces the source (spec 2.12 caveat)",
        "max_r_discrepancy": num(max_disc),
        "h_source": num(entropy_of_counts(&table.row_sums)),
        "source_p_x": (0..k).map(|i| num(table.row_sums[i] / table.total)).collect::<Vec<_>>(),
        "dropped_labels": dropped,
        "all_converged": points.iter().all(|p| p.converged),
        "converged_at_1": at1.converged,
        "gap_at_1": num(at1.gap),
        "convergence_rule": "Kuhn-Tucker gap max_j ln sum_i P(x_i) m_ij^s / Z_i <= tol (0 at the optimum; bounds the error of R in nats)",
    });
    let mut diagnostics = super::Diagnostics::default();
    if !at1.converged {
        diagnostics.add(
            super::Reliability::Unreliable,
            "not_converged",
            format!(
                "R(1) did not converge: its Kuhn-Tucker gap is {:.2e} > tol {:.0e}",
                at1.gap, params.tol
            ),
        );
    } else if let Some(p) = points.iter().find(|p| !p.converged) {
        diagnostics.add(
            super::Reliability::Caution,
            "curve_not_converged",
            format!(
                "the curve point at s = {} did not converge (gap {:.2e})",
                p.s, p.gap
            ),
        );
    }
    Ok(Output {
        value: at1.r,
        interval: None,
        n,
        details,
        sufficient: None,
        diagnostics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr2;

    fn samples(c: &[&[usize]]) -> (Vec<u32>, Vec<u32>) {
        let (mut ys, mut ps) = (Vec::new(), Vec::new());
        for (i, row) in c.iter().enumerate() {
            for (j, &n) in row.iter().enumerate() {
                for _ in 0..n {
                    ys.push(i as u32);
                    ps.push(j as u32);
                }
            }
        }
        (ys, ps)
    }

    fn curve(c: &[&[usize]], t: &Array2<f64>, grid: &[f64]) -> Output {
        let (ys, ps) = samples(c);
        let k = t.nrows();
        let input = ClassInput {
            labels: &ys,
            predictions: &ps,
            k,
            probabilities: None,
            weights: None,
            truth_matrix: Some(t.view()),
        };
        let params = Params {
            s_grid: grid.to_vec(),
            max_iter: 200_000,
            tol: 1e-13,
            ..Params::default()
        };
        rg_curve(&input, &params, &Control::none()).unwrap()
    }

    fn bits(x: f64) -> f64 {
        x / std::f64::consts::LN_2
    }

    /// semantic-information-spec.md §4.2 R(G) table (Example 1, designer T), bits.
    #[test]
    fn spec_example_1_curve() {
        let t = arr2(&[[1.0, 0.1], [0.2, 1.0]]);
        let out = curve(&[&[12, 2], &[1, 5]], &t, &[0.5, 1.0, 2.0, 5.0, 20.0]);
        let expect = [
            (0.5, 0.002364, 0.109706),
            (1.0, 0.391823, 0.391823),
            (2.0, 0.657039, 0.752727),
            (5.0, 0.707200, 0.879768),
            (20.0, 0.707471, 0.881291),
        ];
        let pts = out.details["points"].as_array().unwrap();
        for (p, (s, g, r)) in pts.iter().zip(expect) {
            assert_eq!(p["s"].as_f64().unwrap(), s);
            assert!(
                (bits(p["g"].as_f64().unwrap()) - g).abs() < 1e-6,
                "s={s} g {}",
                p["g"]
            );
            assert!(
                (bits(p["r"].as_f64().unwrap()) - r).abs() < 1e-6,
                "s={s} r {}",
                p["r"]
            );
            // R at convergence equals the Shannon MI of the resulting channel.
            assert!((p["r"].as_f64().unwrap() - p["r_direct"].as_f64().unwrap()).abs() < 1e-9);
        }
        assert!((bits(out.value) - 0.391823).abs() < 1e-6);
    }

    /// semantic-information-spec.md §4.3 R(G) table (Example 2, ordinal T), bits.
    #[test]
    fn spec_example_2_curve() {
        let t = arr2(&[[1.0, 0.3, 0.05], [0.3, 1.0, 0.3], [0.05, 0.3, 1.0]]);
        let out = curve(
            &[&[30, 5, 0], &[4, 25, 6], &[1, 4, 25]],
            &t,
            &[0.5, 1.0, 2.0, 5.0, 20.0],
        );
        let expect = [
            (0.5, -0.155312, 0.047109, [0.095220, 0.843832, 0.060948]),
            (1.0, 0.499611, 0.499611, [0.378161, 0.281897, 0.339943]),
            (2.0, 0.868256, 1.017473, [0.372308, 0.297050, 0.330642]),
            (5.0, 1.053041, 1.536122, [0.351388, 0.346226, 0.302386]),
            (20.0, 1.060622, 1.581291, [0.350000, 0.350000, 0.300000]),
        ];
        let pts = out.details["points"].as_array().unwrap();
        for (p, (s, g, r, py)) in pts.iter().zip(expect) {
            assert!(
                (bits(p["g"].as_f64().unwrap()) - g).abs() < 1e-6,
                "s={s} g {}",
                p["g"]
            );
            assert!(
                (bits(p["r"].as_f64().unwrap()) - r).abs() < 1e-6,
                "s={s} r {}",
                p["r"]
            );
            for j in 0..3 {
                assert!(
                    (p["p_y"][j].as_f64().unwrap() - py[j]).abs() < 1e-6,
                    "s={s} p_y"
                );
            }
            assert!((p["r"].as_f64().unwrap() - p["r_direct"].as_f64().unwrap()).abs() < 1e-9);
        }
    }

    /// Spec §4.3 "Non-matchable case": P(x) = (0.5, 0.5), T = [[1,1],[0.5,0.5]]: at s = 1,
    /// G = −0.084963 bits and R = 0.
    #[test]
    fn non_matchable_case() {
        let t = arr2(&[[1.0, 1.0], [0.5, 0.5]]);
        let out = curve(&[&[1, 0], &[0, 1]], &t, &[1.0]);
        assert!((bits(out.details["g_at_1"].as_f64().unwrap()) + 0.084963).abs() < 1e-6);
        assert!(out.value.abs() < 1e-9);
        assert_eq!(out.details["matched_at_1"], false);
        assert!(out.details["points"][0]["efficiency"].is_null());
    }

    #[test]
    fn lbi_mode_at_s1_matches_shannon() {
        // With T* the source is reproduced by P(y) = the predicted marginal: R(1) = G(1) = ShMI.
        let (ys, ps) = samples(&[&[30, 5, 0], &[4, 25, 6], &[1, 4, 25]]);
        let input = ClassInput {
            labels: &ys,
            predictions: &ps,
            k: 3,
            probabilities: None,
            weights: None,
            truth_matrix: None,
        };
        let params = Params {
            max_iter: 200_000,
            tol: 1e-13,
            ..Params::default()
        };
        let out = rg_curve(&input, &params, &Control::none()).unwrap();
        assert!(
            (bits(out.value) - 0.745693).abs() < 1e-6,
            "{}",
            bits(out.value)
        );
        assert_eq!(out.details["mode"], "lbi");
        assert!(out.sufficient.is_none());
    }

    /// Every point of 41 cases (the review's 4-label case with label counts (1971, 7657, 186,
    /// 186) and 40 random 2–5-label sources with skewed P(x), some zero truth values) against an
    /// independent solver: tests/fixtures/gen_rg.py finds the unique Kuhn–Tucker point of the
    /// convex objective by Newton's method on each candidate support (scipy), not by this
    /// iteration. Default parameters; R and G to 1e-6 nats. Version 1's step-size rule reported
    /// the review case's R(1) = 0.052896 against the optimum 0.093916 (44 % off) as converged.
    #[test]
    fn points_match_an_independent_solver() {
        const FIXTURE: &str = include_str!("../../tests/fixtures/rg_reference.json");
        let doc: Value = serde_json::from_str(FIXTURE).unwrap();
        let cases = doc["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 41);
        let mut checked = 0;
        for c in cases {
            let counts: Vec<usize> = c["counts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            let k = counts.len();
            let t =
                Array2::from_shape_fn((k, k), |(i, j)| c["truth_matrix"][i][j].as_f64().unwrap());
            let labels: Vec<u32> = counts
                .iter()
                .enumerate()
                .flat_map(|(i, &n)| std::iter::repeat_n(i as u32, n))
                .collect();
            // R(G) depends on the source P(x) and T only: any predictions will do.
            let preds: Vec<u32> = (0..labels.len()).map(|i| (i % k) as u32).collect();
            let grid: Vec<f64> = c["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["s"].as_f64().unwrap())
                .collect();
            let input = ClassInput {
                labels: &labels,
                predictions: &preds,
                k,
                probabilities: None,
                weights: None,
                truth_matrix: Some(t.view()),
            };
            let params = Params {
                s_grid: grid.clone(),
                ..Params::default()
            };
            let out = rg_curve(&input, &params, &Control::none()).unwrap();
            let got = out.details["points"].as_array().unwrap();
            assert_eq!(got.len(), grid.len() + usize::from(!grid.contains(&1.0)));
            for want in c["points"].as_array().unwrap() {
                let s = want["s"].as_f64().unwrap();
                let p = got.iter().find(|p| p["s"].as_f64() == Some(s)).unwrap();
                let name = c["name"].as_str().unwrap();
                for key in ["r", "g"] {
                    let (a, b) = (p[key].as_f64().unwrap(), want[key].as_f64().unwrap());
                    assert!(
                        (a - b).abs() < 1e-6,
                        "{name} s={s} {key}: {a} vs {b}; {p} vs {want}"
                    );
                }
                assert_eq!(p["converged"], true, "{name} s={s}");
                checked += 1;
            }
        }
        assert_eq!(checked, 402);
        // The review case's primary value.
        let first = &cases[0]["points"];
        let r1 = first
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["s"] == 1.0)
            .unwrap();
        assert!((r1["r"].as_f64().unwrap() - 0.093916).abs() < 1e-6);
    }

    /// A point that cannot reach the tolerance within `max_iter` says so, with its gap. With more
    /// labels than the Newton polish takes, only the iteration runs.
    #[test]
    fn unconverged_points_are_reported() {
        let k = NEWTON_MAX_LABELS + 1;
        let ys: Vec<u32> = (0..k as u32).collect();
        let t = Array2::from_shape_fn((k, k), |(i, j)| {
            if i == j {
                1.0
            } else {
                0.05 + 0.9 * ((i * 31 + j * 17) % 97) as f64 / 97.0
            }
        });
        let input = ClassInput {
            labels: &ys,
            predictions: &ys,
            k,
            probabilities: None,
            weights: None,
            truth_matrix: Some(t.view()),
        };
        let params = Params {
            s_grid: vec![5.0],
            max_iter: 2,
            ..Params::default()
        };
        let out = rg_curve(&input, &params, &Control::none()).unwrap();
        assert_eq!(out.details["all_converged"], false);
        for p in out.details["points"].as_array().unwrap() {
            assert_eq!(p["converged"], false);
            assert!(p["gap"].as_f64().unwrap() > params.tol);
            assert_eq!(p["newton_steps"], 0);
        }
        assert_eq!(out.details["converged_at_1"], false);
    }

    /// s = 0 is refused with a reason (every P(y) is optimal there and G is undetermined).
    #[test]
    fn zero_slope_is_refused() {
        let p = Params {
            s_grid: vec![0.0, 1.0],
            ..Params::default()
        };
        let e = p.validate().unwrap_err();
        assert!(e.contains("must not contain 0"), "{e}");
    }
}
