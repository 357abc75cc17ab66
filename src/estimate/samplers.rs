//! Ground-truth samplers for the continuous estimators (tests, benchmarks), all driven by
//! [`SplitMix64`] so that Rust and the Python snippet of `estimators-anchors.md` §7.4 agree.
//!
//! - [`gaussian_pair_sample`]: the anchor's bivariate normal (bit-for-bit the §7.3 stream);
//! - [`MultiNormal`]: any covariance via Cholesky; [`dense_cov`] (bmi "multinormal-dense", all
//!   off-diagonals equal) and [`sparse_pair_cov`] (bmi "2-pair": corr(X_i, Y_i) = ρ for i < 2);
//! - multivariate Student-t: `z / sqrt(χ²_ν / ν)` with an integer ν (χ² as a sum of ν squared
//!   normals), dispersion Σ;
//! - the bmi marginal maps (normal CDF, half-cube, asinh, a monotone "wiggly" map) and the
//!   closed-form MI of each core (§7.1).
//!
//! The samples are not bmi's (bmi uses JAX keys and scipy); only the distributions match.

use super::rng::SplitMix64;
use super::special::{digamma, ln_gamma};
use ndarray::Array2;

/// `gaussian_pair_sample(rho, n, seed)` of the anchor: x = z1, y = ρ z1 + √(1−ρ²) z2 per pair.
pub fn gaussian_pair_sample(rho: f64, n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut g = SplitMix64::new(seed);
    let s = (1.0 - rho * rho).sqrt();
    let mut x = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let (z1, z2) = g.normal_pair();
        x.push(z1);
        y.push(rho * z1 + s * z2);
    }
    (x, y)
}

/// −½ ln(1 − ρ²).
pub fn gaussian_pair_mi(rho: f64) -> f64 {
    -0.5 * (1.0 - rho * rho).ln()
}

/// Lower Cholesky factor of a symmetric positive-definite matrix.
pub fn cholesky(a: &Array2<f64>) -> Option<Array2<f64>> {
    let n = a.nrows();
    let mut l = Array2::<f64>::zeros((n, n));
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[[i, j]];
            for c in 0..j {
                s -= l[[i, c]] * l[[j, c]];
            }
            if i == j {
                if s <= 0.0 {
                    return None;
                }
                l[[i, i]] = s.sqrt();
            } else {
                l[[i, j]] = s / l[[j, j]];
            }
        }
    }
    Some(l)
}

fn ln_det(a: &Array2<f64>) -> f64 {
    let l = cholesky(a).expect("covariance must be positive definite");
    2.0 * (0..a.nrows()).map(|i| l[[i, i]].ln()).sum::<f64>()
}

/// Gaussian MI of the first `dx` coordinates against the rest: ½[ln|Σxx| + ln|Σyy| − ln|Σ|].
pub fn gaussian_mi(cov: &Array2<f64>, dx: usize) -> f64 {
    let n = cov.nrows();
    let sxx = cov.slice(ndarray::s![..dx, ..dx]).to_owned();
    let syy = cov.slice(ndarray::s![dx..n, dx..n]).to_owned();
    0.5 * (ln_det(&sxx) + ln_det(&syy) - ln_det(cov))
}

/// bmi "multinormal-dense": unit variances, every off-diagonal `c` (bmi uses 0.5).
pub fn dense_cov(dx: usize, dy: usize, c: f64) -> Array2<f64> {
    let d = dx + dy;
    Array2::from_shape_fn((d, d), |(i, j)| if i == j { 1.0 } else { c })
}

/// bmi "2-pair" sparse: identity, with corr(X_i, Y_i) = `rho` for i < `pairs` (bmi: 0.8, 2).
pub fn sparse_pair_cov(dx: usize, dy: usize, pairs: usize, rho: f64) -> Array2<f64> {
    let d = dx + dy;
    let mut c = Array2::<f64>::eye(d);
    for i in 0..pairs.min(dx).min(dy) {
        c[[i, dx + i]] = rho;
        c[[dx + i, i]] = rho;
    }
    c
}

/// A multivariate normal (zero mean) sampler.
pub struct MultiNormal {
    chol: Array2<f64>,
}

impl MultiNormal {
    pub fn new(cov: &Array2<f64>) -> Option<MultiNormal> {
        Some(MultiNormal {
            chol: cholesky(cov)?,
        })
    }

    pub fn dim(&self) -> usize {
        self.chol.nrows()
    }

    /// `n` rows; the standard normals are drawn row by row, two per `normal_pair`.
    pub fn sample(&self, n: usize, g: &mut SplitMix64) -> Array2<f64> {
        let d = self.dim();
        let mut z = vec![0.0; d];
        let mut out = Array2::<f64>::zeros((n, d));
        for r in 0..n {
            fill_normals(g, &mut z);
            for i in 0..d {
                let mut s = 0.0;
                for (c, zc) in z.iter().enumerate().take(i + 1) {
                    s += self.chol[[i, c]] * zc;
                }
                out[[r, i]] = s;
            }
        }
        out
    }
}

fn fill_normals(g: &mut SplitMix64, z: &mut [f64]) {
    let mut i = 0;
    while i < z.len() {
        let (a, b) = g.normal_pair();
        z[i] = a;
        if i + 1 < z.len() {
            z[i + 1] = b;
        }
        i += 2;
    }
}

/// Multivariate Student-t with dispersion `cov` and integer `nu` degrees of freedom.
pub fn student_sample(cov: &Array2<f64>, nu: u32, n: usize, seed: u64) -> Array2<f64> {
    let mn = MultiNormal::new(cov).expect("dispersion must be positive definite");
    let mut g = SplitMix64::new(seed);
    let mut out = mn.sample(n, &mut g);
    let mut z = vec![0.0; nu as usize];
    for mut row in out.rows_mut() {
        fill_normals(&mut g, &mut z);
        let chi2: f64 = z.iter().map(|v| v * v).sum();
        let s = 1.0 / (chi2 / nu as f64).sqrt();
        row.mapv_inplace(|v| v * s);
    }
    out
}

fn h_student_std(k: usize, nu: f64) -> f64 {
    let a = 0.5 * (nu + k as f64);
    -ln_gamma(a)
        + ln_gamma(0.5 * nu)
        + 0.5 * k as f64 * (nu * std::f64::consts::PI).ln()
        + a * (digamma(a) - digamma(0.5 * nu))
}

/// MI of a multivariate Student-t (anchors §7.1): Gaussian MI of the dispersion plus the
/// correction h(dx) + h(dy) − h(dx+dy).
pub fn student_mi(cov: &Array2<f64>, dx: usize, nu: f64) -> f64 {
    let dy = cov.nrows() - dx;
    gaussian_mi(cov, dx) + h_student_std(dx, nu) + h_student_std(dy, nu)
        - h_student_std(dx + dy, nu)
}

/// Independent pairs: x, y each N(0, I), independent.
pub fn independent_sample(dx: usize, dy: usize, n: usize, seed: u64) -> (Array2<f64>, Array2<f64>) {
    let mut g = SplitMix64::new(seed);
    let mn = MultiNormal::new(&Array2::eye(dx + dy)).unwrap();
    let z = mn.sample(n, &mut g);
    split(&z, dx)
}

/// Split the columns of a joint sample into (x, y).
pub fn split(z: &Array2<f64>, dx: usize) -> (Array2<f64>, Array2<f64>) {
    (
        z.slice(ndarray::s![.., ..dx]).to_owned(),
        z.slice(ndarray::s![.., dx..]).to_owned(),
    )
}

/// A joint Gaussian sample split into (x, y).
pub fn gaussian_sample(
    cov: &Array2<f64>,
    dx: usize,
    n: usize,
    seed: u64,
) -> (Array2<f64>, Array2<f64>) {
    let mut g = SplitMix64::new(seed);
    let z = MultiNormal::new(cov)
        .expect("positive definite")
        .sample(n, &mut g);
    split(&z, dx)
}

/// Standard normal CDF Φ(x) (erfc by W. J. Cody's rational approximations, ~1e-15 relative).
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes' Chebyshev fit `erfccheb`, |rel err| < 1.2e-16
/// is not claimed; ~1e-13 here, far below what the tests need).
#[allow(clippy::excessive_precision)]
pub fn erfc(x: f64) -> f64 {
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    // Numerical Recipes 3rd ed. §6.2 erfccheb coefficients.
    const COF: [f64; 28] = [
        -1.3026537197817094,
        6.4196979235649026e-1,
        1.9476473204185836e-2,
        -9.561514786808631e-3,
        -9.46595344482036e-4,
        3.66839497852761e-4,
        4.2523324806907e-5,
        -2.0278578112534e-5,
        -1.624290004647e-6,
        1.303655835580e-6,
        1.5626441722e-8,
        -8.5238095915e-8,
        6.529054439e-9,
        5.059343495e-9,
        -9.91364156e-10,
        -2.27365122e-10,
        9.6467911e-11,
        2.394038e-12,
        -6.886027e-12,
        8.94487e-13,
        3.13092e-13,
        -1.12708e-13,
        3.81e-16,
        7.106e-15,
        -1.523e-15,
        -9.4e-17,
        1.21e-16,
        -2.8e-17,
    ];
    let t = 2.0 / (2.0 + x);
    let ty = 4.0 * t - 2.0;
    let (mut d, mut dd) = (0.0f64, 0.0f64);
    for &c in COF[1..].iter().rev() {
        let tmp = d;
        d = ty * d - dd + c;
        dd = tmp;
    }
    t * (-x * x + 0.5 * (COF[0] + ty * d) - dd).exp()
}

/// bmi "half_cube": x·√|x|.
pub fn half_cube(x: f64) -> f64 {
    x * x.abs().sqrt()
}

/// A smooth strictly increasing "wiggly" map, x + 0.4 sin x + 0.15 sin(2x + 0.5) (derivative
/// ≥ 0.3). bmi's wiggly map has the same shape but different constants.
pub fn wiggly(x: f64) -> f64 {
    x + 0.4 * x.sin() + 0.15 * (2.0 * x + 0.5).sin()
}

/// bmi's `AdditiveUniformSampler`: X ~ U(0, 1), Y = X + N with N ~ U(−ε, ε) independent.
pub fn additive_uniform_sample(eps: f64, n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut g = SplitMix64::new(seed);
    let mut x = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let a = g.uniform();
        let b = g.uniform();
        x.push(a);
        y.push(a + eps * (2.0 * b - 1.0));
    }
    (x, y)
}

/// MI of [`additive_uniform_sample`] (closed form, bmi `AdditiveUniformSampler`): I = h(Y) − h(N)
/// with the trapezoidal density of Y: ε − ln(2ε) for ε ≤ ½, and 1/(4ε) above (the ramps of Y
/// contribute ∫₀¹ −u ln u du = ¼ per unit of width).
pub fn additive_uniform_mi(eps: f64) -> f64 {
    if eps > 0.5 {
        0.25 / eps
    } else {
        eps - (2.0 * eps).ln()
    }
}

/// The CDF of a mixture of unit-variance normals with `(weight, mean)` components.
pub fn normal_mixture_cdf(components: &[(f64, f64)], t: f64) -> f64 {
    components.iter().map(|&(w, m)| w * normal_cdf(t - m)).sum()
}

/// The inverse of [`normal_mixture_cdf`] by bisection (to ~1e-12 in t), for p in (0, 1).
pub fn normal_mixture_quantile(components: &[(f64, f64)], p: f64) -> f64 {
    let (mut lo, mut hi) = (-40.0f64, 40.0f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if normal_mixture_cdf(components, mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-12 {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// bmi "1v1-bimodal" margins: x ↦ F⁻¹(Φ(x)) with F the CDF of 0.3·N(0, 1) + 0.7·N(5, 1) for X
/// and of 0.5·N(−1, 1) + 0.5·N(3, 1) for Y (bmi `task_bimodal_gaussians`); both maps are
/// strictly increasing, so the MI is the Gaussian core's.
pub fn bimodal_x(x: f64) -> f64 {
    normal_mixture_quantile(&[(0.3, 0.0), (0.7, 5.0)], normal_cdf(x))
}

/// See [`bimodal_x`].
pub fn bimodal_y(y: f64) -> f64 {
    normal_mixture_quantile(&[(0.5, -1.0), (0.5, 3.0)], normal_cdf(y))
}

/// bmi `swissroll2d`: u ∈ [0, 1] ↦ (t cos t, t sin t) with t = 1.5π(1 + 2u); injective and
/// smooth, so it preserves MI (bmi `SwissRollSampler`).
pub fn swissroll(u: f64) -> [f64; 2] {
    let t = 1.5 * std::f64::consts::PI * (1.0 + 2.0 * u);
    [t * t.cos(), t * t.sin()]
}

/// bmi `Spiral` with the generator `so_generator(d, i, j)` (A[i][j] = 1, A[j][i] = −1) and
/// `speed`: x ↦ exp(θA)·x with θ = speed·‖x‖², i.e. a rotation by θ in the (i, j) plane
/// (x_i ← cos θ·x_i + sin θ·x_j, x_j ← −sin θ·x_i + cos θ·x_j). A diffeomorphism (its inverse
/// rotates back by the same θ, as ‖x‖ is preserved), so it preserves MI. In place, per row.
pub fn spiral_rows(a: &mut Array2<f64>, i: usize, j: usize, speed: f64) {
    for mut row in a.rows_mut() {
        let r2: f64 = row.iter().map(|v| v * v).sum();
        let (s, c) = (speed * r2).sin_cos();
        let (xi, xj) = (row[i], row[j]);
        row[i] = c * xi + s * xj;
        row[j] = -s * xi + c * xj;
    }
}

/// Apply `f` to every entry.
pub fn map(a: &Array2<f64>, f: impl Fn(f64) -> f64) -> Array2<f64> {
    a.mapv(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_forms() {
        // estimators-anchors.md §7.1
        assert!((gaussian_pair_mi(0.75) - 0.413339).abs() < 1e-6);
        for (d, v) in [
            (2, 0.293893),
            (3, 0.413339),
            (5, 0.592812),
            (25, 1.292184),
            (50, 1.624265),
        ] {
            assert!(
                (gaussian_mi(&dense_cov(d, d, 0.5), d) - v).abs() < 1e-6,
                "dense {d}"
            );
        }
        assert!((gaussian_mi(&sparse_pair_cov(5, 5, 2, 0.8), 5) - 1.021651).abs() < 1e-6);
        for (d, nu, v) in [
            (1, 1.0, 0.224171),
            (2, 1.0, 0.431946),
            (2, 2.0, 0.193147),
            (3, 2.0, 0.290922),
            (3, 3.0, 0.178712),
            (5, 2.0, 0.448151),
            (5, 3.0, 0.298544),
        ] {
            let c = Array2::<f64>::eye(2 * d);
            assert!((student_mi(&c, d, nu) - v).abs() < 1e-6, "student {d} {nu}");
        }
        let mut c = Array2::<f64>::eye(2);
        c[[0, 1]] = 0.75;
        c[[1, 0]] = 0.75;
        assert!((student_mi(&c, 1, 3.0) - 0.455751).abs() < 1e-6);
    }

    #[test]
    fn normal_cdf_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-15);
        assert!((normal_cdf(1.0) - 0.8413447460685429).abs() < 1e-13);
        assert!((normal_cdf(-2.5) - 0.006209665325776132).abs() < 1e-14);
    }

    #[test]
    fn new_samplers() {
        // bmi: 1v1-additive-0.1 → 1.709438, 1v1-additive-0.75 → 0.333333 (anchors §8.1)
        assert!((additive_uniform_mi(0.1) - 1.709438).abs() < 1e-6);
        assert!((additive_uniform_mi(0.75) - 0.333333).abs() < 1e-6);
        let (x, y) = additive_uniform_sample(0.1, 1000, 1);
        assert!(x
            .iter()
            .zip(&y)
            .all(|(a, b)| (0.0..1.0).contains(a) && (b - a).abs() <= 0.1));
        for p in [0.01, 0.3, 0.5, 0.9, 0.999] {
            let c = [(0.3, 0.0), (0.7, 5.0)];
            assert!((normal_mixture_cdf(&c, normal_mixture_quantile(&c, p)) - p).abs() < 1e-10);
        }
        assert!(bimodal_x(-1.0) < bimodal_x(0.0) && bimodal_x(0.0) < bimodal_x(1.0));
        let mut a = Array2::from_shape_vec((1, 3), vec![0.3, -1.2, 0.7]).unwrap();
        let before: f64 = a.iter().map(|v| v * v).sum();
        spiral_rows(&mut a, 1, 2, 1.0 / 3.0);
        let after: f64 = a.iter().map(|v| v * v).sum();
        assert!((before - after).abs() < 1e-12 && a[[0, 0]] == 0.3);
        spiral_rows(&mut a, 1, 2, -1.0 / 3.0);
        assert!((a[[0, 1]] + 1.2).abs() < 1e-12 && (a[[0, 2]] - 0.7).abs() < 1e-12);
        let [sx, sy] = swissroll(0.0);
        assert!(sx.abs() < 1e-12 && (sy + 1.5 * std::f64::consts::PI).abs() < 1e-12);
    }

    #[test]
    fn sample_covariance() {
        let cov = dense_cov(2, 2, 0.5);
        let (x, y) = gaussian_sample(&cov, 2, 20000, 4);
        let c = (&x.column(0) * &y.column(1)).mean().unwrap();
        assert!((c - 0.5).abs() < 0.03, "{c}");
    }
}
