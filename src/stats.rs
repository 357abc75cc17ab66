//! Small, pure statistics shared by the numeric core and the service layer: normal quantiles, correlations with intervals,
//! and the pooling of per-batch intervals.

/// Φ⁻¹(p) by Acklam's rational approximation (relative error < 1.2e-9).
#[allow(clippy::excessive_precision)]
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383577518672690e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let plow = 0.02425;
    if p < plow {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - plow {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

/// Pearson correlation.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len();
    if n < 2 || y.len() != n {
        return None;
    }
    let mx = x.iter().sum::<f64>() / n as f64;
    let my = y.iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    Some(sxy / (sxx * syy).sqrt())
}

/// Average ranks (1-based), ties sharing their mean rank.
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation (Pearson on average ranks).
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    pearson(&ranks(x), &ranks(y))
}

/// Fisher-z interval for a correlation `r` from `n` pairs at `level`. `se_scale` is 1 for
/// Pearson and √1.06 for Spearman (Fieller, Hartley and Pearson 1957). `None` below n = 4.
pub fn correlation_interval(r: f64, n: usize, level: f64, se_scale: f64) -> Option<(f64, f64)> {
    if n < 4 || !r.is_finite() {
        return None;
    }
    let r = r.clamp(-0.999_999_999, 0.999_999_999);
    let z = r.atanh();
    let se = se_scale / ((n - 3) as f64).sqrt();
    let q = normal_quantile(0.5 + level / 2.0);
    Some(((z - q * se).tanh(), (z + q * se).tanh()))
}

/// Combine per-batch intervals of one statistic into an interval around a pooled value, treating
/// each as a normal interval (se = width / 2z) and weighting by inverse variance.
pub fn pooled_interval(pooled: f64, intervals: &[(f64, f64)], level: f64) -> Option<(f64, f64)> {
    let z = normal_quantile(0.5 + level / 2.0);
    let mut precision = 0.0;
    for &(lo, hi) in intervals {
        let se = (hi - lo) / (2.0 * z);
        if !(se.is_finite() && se > 0.0) {
            return None;
        }
        precision += 1.0 / (se * se);
    }
    if precision == 0.0 || !pooled.is_finite() {
        return None;
    }
    let se = precision.sqrt().recip();
    Some((pooled - z * se, pooled + z * se))
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    #[test]
    fn normal_quantiles_match_tables() {
        // Standard normal table values (Abramowitz & Stegun 26.2).
        assert_abs_diff_eq!(normal_quantile(0.975), 1.959963984540054, epsilon = 1e-8);
        assert_abs_diff_eq!(normal_quantile(0.5), 0.0, epsilon = 1e-12);
        assert_abs_diff_eq!(normal_quantile(0.95), 1.6448536269514722, epsilon = 1e-8);
        assert_abs_diff_eq!(normal_quantile(0.001), -3.090232306167813, epsilon = 1e-8);
    }

    #[test]
    fn correlations_match_hand_computation() {
        // x = 1..5, y = (2, 1, 4, 3, 5): Σ(x−3)(y−3) = 8, Σ(x−3)² = Σ(y−3)² = 10 → r = 0.8.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [2.0, 1.0, 4.0, 3.0, 5.0];
        assert_abs_diff_eq!(pearson(&x, &y).unwrap(), 0.8, epsilon = 1e-12);
        // Ranks equal the values here, so Spearman = 0.8 too; 1 − 6Σd²/(n(n²−1)) = 1 − 6·4/120.
        assert_abs_diff_eq!(spearman(&x, &y).unwrap(), 0.8, epsilon = 1e-12);
        // Monotone but non-linear: Spearman 1, Pearson below 1.
        let y2: Vec<f64> = x.iter().map(|v: &f64| v.powi(4)).collect();
        assert_abs_diff_eq!(spearman(&x, &y2).unwrap(), 1.0, epsilon = 1e-12);
        assert!(pearson(&x, &y2).unwrap() < 0.97);
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        assert_eq!(pearson(&[1.0, 1.0], &[2.0, 3.0]), None);
        let (lo, hi) = correlation_interval(0.8, 5, 0.95, 1.0).unwrap();
        // atanh(0.8) = 1.0986123, se = 1/√2: tanh(1.0986123 ∓ 1.959964·0.7071068).
        assert_abs_diff_eq!(
            lo,
            (1.0986122886681098f64 - 1.959963984540054 * std::f64::consts::FRAC_1_SQRT_2).tanh(),
            epsilon = 1e-8
        );
        assert_abs_diff_eq!(
            hi,
            (1.0986122886681098f64 + 1.959963984540054 * std::f64::consts::FRAC_1_SQRT_2).tanh(),
            epsilon = 1e-8
        );
    }

    #[test]
    fn pooled_interval_shrinks_like_inverse_variance() {
        // Two equal intervals of half-width h: the pooled half-width is h/√2.
        let (lo, hi) = pooled_interval(1.0, &[(0.8, 1.2), (0.9, 1.3)], 0.95).unwrap();
        assert_abs_diff_eq!(hi - lo, 0.4 / 2f64.sqrt(), epsilon = 1e-12);
        assert_abs_diff_eq!((hi + lo) / 2.0, 1.0, epsilon = 1e-12);
        assert_eq!(pooled_interval(1.0, &[(0.8, 0.8)], 0.95), None);
    }
}
