//! `rg_curve`: Lu's information rate–fidelity function R(G) for a fixed semantic channel
//! (semantic-information-spec.md §2.12), by the parametric MID iteration in the log domain:
//! m_ij = T(θ_j|x_i)/T(θ_j); P(y_j|x_i) = P(y_j) m_ij^s / Z_i; P⁺(y_j) = Σ_i P(x_i) P(y_j|x_i);
//! G(s) = Σ_i P(x_i) Σ_j P(y_j|x_i) ln m_ij; R(s) = s·G(s) − Σ_i P(x_i) ln Z_i.
//!
//! Source P(x) = the (weighted) marginal of the true labels; T = the `truth_matrix` or the LBI
//! T* of the confusion table. Rows with P(x) = 0 and columns with T(θ_j) = 0 (never true on the
//! source, so never chosen) are dropped. Grid points are processed in increasing s, each starting
//! from the previous converged P(y) mixed with 1e-9 of the uniform (kept strictly interior), the
//! first from the uniform. The primary value is R at s = 1 (always computed).

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

pub const VERSION: &str = "1.0.0";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Values of s (any order; 1 is always added). Finite, in [−100, 1000]; at most 200 values.
    pub s_grid: Vec<f64>,
    /// Iteration cap per s (1..=1000000).
    pub max_iter: usize,
    /// Convergence tolerance on max_j |ΔP(y_j)| (in (0, 1e-3]).
    pub tol: f64,
    /// "auto" (truth_matrix if given, else LBI) | "truth_matrix" | "lbi".
    pub mode: String,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            s_grid: vec![0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0],
            max_iter: 20_000,
            tol: 1e-12,
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
        if !(1..=1_000_000).contains(&self.max_iter) {
            return Err(format!(
                "max_iter must be between 1 and 1000000 (got {})",
                self.max_iter
            ));
        }
        if !(self.tol > 0.0 && self.tol <= 1e-3) {
            return Err(format!("tol must be in (0, 0.001] (got {})", self.tol));
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
}

fn logsumexp(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.iter().map(|&x| (x - m).exp()).sum::<f64>().ln()
}

/// The MID iteration for one s. `lm[i][j]` = ln m_ij (−∞ allowed for s > 0), `px` > 0.
/// Returns the point and the converged P(y).
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
    let mut py = start.to_vec();
    let mut lw = vec![0.0; ky];
    let mut post = Array2::<f64>::zeros((kx, ky));
    let mut log_z = vec![0.0; kx];
    let slm = |v: f64| if s == 0.0 { 0.0 } else { s * v };
    let mut channel = |py: &[f64], post: &mut Array2<f64>, log_z: &mut [f64]| {
        let lpy: Vec<f64> = py.iter().map(|&p| p.ln()).collect();
        for i in 0..kx {
            for j in 0..ky {
                lw[j] = lpy[j] + slm(lm[[i, j]]);
            }
            let z = logsumexp(&lw);
            log_z[i] = z;
            for j in 0..ky {
                post[[i, j]] = (lw[j] - z).exp();
            }
        }
    };
    let mut iterations = 0;
    let mut converged = false;
    while iterations < max_iter {
        if iterations % 256 == 255 {
            ctl.tick(0.0)?;
        }
        channel(&py, &mut post, &mut log_z);
        let mut new = vec![0.0; ky];
        for i in 0..kx {
            for j in 0..ky {
                new[j] += px[i] * post[[i, j]];
            }
        }
        let delta = new
            .iter()
            .zip(&py)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        py = new;
        iterations += 1;
        if delta < tol {
            converged = true;
            break;
        }
    }
    channel(&py, &mut post, &mut log_z);
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
    let r = s * g - px.iter().zip(&log_z).map(|(p, z)| p * z).sum::<f64>();
    Ok(Point {
        s,
        g,
        r,
        r_direct,
        p_y: py,
        iterations,
        converged,
    })
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
    let mut grid = params.s_grid.clone();
    grid.push(1.0);
    grid.sort_by(f64::total_cmp);
    grid.dedup();
    if grid[0] < 0.0 && lm.iter().any(|v| *v == f64::NEG_INFINITY) {
        return Err(EstimateError::invalid(
            "negative s (the left branch of R(G)) needs every truth value to be positive",
        ));
    }
    let m = cols.len();
    let uniform = vec![1.0 / m as f64; m];
    let mut start = uniform.clone();
    let mut points = Vec::with_capacity(grid.len());
    for (idx, &s) in grid.iter().enumerate() {
        ctl.tick(idx as f64 / grid.len() as f64)?;
        let p = rg_point(&px, &lm, s, &start, params.max_iter, params.tol, ctl)?;
        start = p
            .p_y
            .iter()
            .zip(&uniform)
            .map(|(a, u)| (1.0 - 1e-9) * a + 1e-9 * u)
            .collect();
        points.push(p);
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
    });
    Ok(Output {
        value: at1.r,
        interval: None,
        n,
        details,
        sufficient: None,
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
            tol: 1e-15,
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
            tol: 1e-14,
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
}
