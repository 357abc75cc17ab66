//! SplitMix64 and the samplers built on it (portable, bit-for-bit reproducible).
//!
//! The generator and the uniform/normal/below conventions follow the reference snippet of
//! `estimators-anchors.md` §7.4, so Python and Rust produce identical streams.

use super::special::ln_gamma;

/// Steele, Lea & Flood's SplitMix64.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in the open interval (0,1): `((u >> 11) + 0.5) · 2⁻⁵³`.
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }

    /// Two independent standard normals by Box–Muller (`r cos 2πu₂`, `r sin 2πu₂`).
    pub fn normal_pair(&mut self) -> (f64, f64) {
        let u1 = self.uniform();
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let a = 2.0 * std::f64::consts::PI * u2;
        (r * a.cos(), r * a.sin())
    }

    /// Integer in `0..n` as `floor(uniform · n)` (the reference convention). `n` must be > 0.
    pub fn below(&mut self, n: usize) -> usize {
        let v = (self.uniform() * n as f64) as usize;
        v.min(n.saturating_sub(1))
    }

    /// A Binomial(n, p) variate. Inversion (sequential search) when `n·min(p,1−p) < 10`,
    /// otherwise Hörmann's BTRS transformed rejection with squeeze (exact acceptance test using
    /// Stirling-series corrections).
    pub fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if n == 0 || p <= 0.0 || p.is_nan() {
            return 0;
        }
        if p >= 1.0 {
            return n;
        }
        if p > 0.5 {
            return n - self.binomial(n, 1.0 - p);
        }
        if (n as f64) * p < 10.0 {
            self.binomial_inversion(n, p)
        } else {
            self.binomial_btrs(n, p)
        }
    }

    fn binomial_inversion(&mut self, n: u64, p: f64) -> u64 {
        let q = 1.0 - p;
        let s = p / q;
        let a = (n as f64 + 1.0) * s;
        let r0 = (n as f64 * q.ln()).exp();
        loop {
            let mut r = r0;
            let mut u = self.uniform();
            let mut x: u64 = 0;
            loop {
                if u <= r {
                    return x;
                }
                u -= r;
                x += 1;
                if x > n {
                    break; // rounding left mass unaccounted for: restart
                }
                r *= a / x as f64 - s;
            }
        }
    }

    fn binomial_btrs(&mut self, n: u64, p: f64) -> u64 {
        let nf = n as f64;
        let q = 1.0 - p;
        let spq = (nf * p * q).sqrt();
        let b = 1.15 + 2.53 * spq;
        let a = -0.0873 + 0.0248 * b + 0.01 * p;
        let c = nf * p + 0.5;
        let v_r = 0.92 - 4.2 / b;
        let r = p / q;
        let alpha = (2.83 + 5.1 / b) * spq;
        let m = ((nf + 1.0) * p).floor();
        loop {
            let u = self.uniform() - 0.5;
            let mut v = self.uniform();
            let us = 0.5 - u.abs();
            let kf = ((2.0 * a / us + b) * u + c).floor();
            if kf < 0.0 || kf > nf {
                continue;
            }
            if us >= 0.07 && v <= v_r {
                return kf as u64;
            }
            v = (v * alpha / (a / (us * us) + b)).ln();
            let upper = (m + 0.5) * ((m + 1.0) / (r * (nf - m + 1.0))).ln()
                + (nf + 1.0) * ((nf - m + 1.0) / (nf - kf + 1.0)).ln()
                + (kf + 0.5) * (r * (nf - kf + 1.0) / (kf + 1.0)).ln()
                + stirling_tail(m)
                + stirling_tail(nf - m)
                - stirling_tail(kf)
                - stirling_tail(nf - kf);
            if v <= upper {
                return kf as u64;
            }
        }
    }

    /// Multinomial(n, p) via conditional binomials, O(len(p)). `p` need not be normalised.
    pub fn multinomial_into(&mut self, n: u64, p: &[f64], out: &mut [u64]) {
        debug_assert_eq!(p.len(), out.len());
        let mut rest_mass: f64 = p.iter().sum();
        let mut rest_n = n;
        let last = p.len().saturating_sub(1);
        for (i, (&pi, o)) in p.iter().zip(out.iter_mut()).enumerate() {
            if rest_n == 0 {
                *o = 0;
                continue;
            }
            if i == last {
                *o = rest_n;
                rest_n = 0;
                continue;
            }
            let prob = if rest_mass > 0.0 {
                (pi / rest_mass).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let x = self.binomial(rest_n, prob);
            *o = x;
            rest_n -= x;
            rest_mass -= pi;
        }
    }
}

/// `ln k! − [(k+½) ln(k+1) − (k+1) + ½ ln 2π]`, the Stirling-series remainder used by BTRS.
pub fn stirling_tail(k: f64) -> f64 {
    if k < 10.0 {
        ln_gamma(k + 1.0)
            - ((k + 0.5) * (k + 1.0).ln() - (k + 1.0) + 0.5 * (2.0 * std::f64::consts::PI).ln())
    } else {
        let kp1 = k + 1.0;
        let kp1sq = kp1 * kp1;
        (1.0 / 12.0 - (1.0 / 360.0 - 1.0 / 1260.0 / kp1sq) / kp1sq) / kp1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // estimators-anchors.md §7.3 "PRNG check values".
        let mut g = SplitMix64::new(0);
        assert_eq!(g.next_u64(), 16294208416658607535);
        assert_eq!(g.next_u64(), 7960286522194355700);
        assert_eq!(g.next_u64(), 487617019471545679);
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220A8397B1DCDAF);
        let mut g = SplitMix64::new(1);
        assert_eq!(g.uniform(), 0.566561575172281);
        assert_eq!(g.uniform(), 0.7457817572627012);
    }

    #[test]
    fn gaussian_pairs_match_reference() {
        // estimators-anchors.md §7.3: gaussian_pair_sample(0.75, 5, seed=1).
        let xs = [
            -0.028249746095854695,
            -0.22791952286763517,
            0.10309095168573973,
            -0.5062040745113184,
            0.43214324082000827,
        ];
        let ys = [
            -0.7260271321683334,
            -0.11597801585690246,
            -0.7624842885382208,
            -0.42852335495109745,
            -0.683411960821652,
        ];
        let mut g = SplitMix64::new(1);
        let rho: f64 = 0.75;
        for i in 0..5 {
            let (z1, z2) = g.normal_pair();
            let y = rho * z1 + (1.0 - rho * rho).sqrt() * z2;
            assert!((z1 - xs[i]).abs() < 1e-15, "x[{i}]");
            assert!((y - ys[i]).abs() < 1e-15, "y[{i}]");
        }
    }

    #[test]
    fn below_is_in_range() {
        let mut g = SplitMix64::new(3);
        for _ in 0..10_000 {
            assert!(g.below(7) < 7);
        }
    }

    #[test]
    fn stirling_tail_continuity() {
        // Series (k >= 10) and exact (k < 10) forms agree at the switch.
        let exact =
            ln_gamma(11.0) - (10.5 * 11f64.ln() - 11.0 + 0.5 * (2.0 * std::f64::consts::PI).ln());
        // The 3-term series used by BTRS is accurate to ~1e-11 at k = 10.
        assert!((stirling_tail(10.0) - exact).abs() < 1e-10);
        assert!((stirling_tail(0.0) - 0.08106146679532726).abs() < 1e-15);
    }

    fn moments(n: u64, p: f64, reps: usize, seed: u64) -> (f64, f64) {
        let mut g = SplitMix64::new(seed);
        let mut s = 0.0;
        let mut s2 = 0.0;
        for _ in 0..reps {
            let x = g.binomial(n, p) as f64;
            assert!(x <= n as f64);
            s += x;
            s2 += x * x;
        }
        let mean = s / reps as f64;
        (mean, s2 / reps as f64 - mean * mean)
    }

    #[test]
    fn binomial_mean_and_variance() {
        // Both branches (inversion: np < 10; BTRS: np >= 10) and the p > 1/2 reflection.
        for &(n, p) in &[
            (5u64, 0.3),
            (40, 0.1),
            (100, 0.5),
            (1000, 0.37),
            (1_000_000, 0.001),
            (50, 0.9),
            (20_000, 0.75),
        ] {
            let reps = 200_000;
            let (mean, var) = moments(n, p, reps, 11 + n);
            let m = n as f64 * p;
            let v = m * (1.0 - p);
            // mean: 5 standard errors; variance: ~5 relative standard errors.
            assert!(
                (mean - m).abs() < 5.0 * (v / reps as f64).sqrt(),
                "n={n} p={p} mean {mean} vs {m}"
            );
            assert!(
                ((var - v) / v).abs() < 5.0 * (2.0 / reps as f64).sqrt() + 1e-3,
                "n={n} p={p} var {var} vs {v}"
            );
        }
    }

    #[test]
    fn binomial_pmf_small_case() {
        // Chi-square-ish check of the BTRS branch against the exact pmf, n = 30, p = 0.4.
        let (n, p) = (30u64, 0.4f64);
        let reps = 300_000usize;
        let mut g = SplitMix64::new(99);
        let mut hist = vec![0usize; n as usize + 1];
        for _ in 0..reps {
            hist[g.binomial(n, p) as usize] += 1;
        }
        for (k, &h) in hist.iter().enumerate() {
            let kf = k as f64;
            let lp = ln_gamma(n as f64 + 1.0) - ln_gamma(kf + 1.0) - ln_gamma(n as f64 - kf + 1.0)
                + kf * p.ln()
                + (n as f64 - kf) * (1.0 - p).ln();
            let e = lp.exp() * reps as f64;
            if e > 50.0 {
                assert!(
                    ((h as f64) - e).abs() < 5.0 * e.sqrt() + 1.0,
                    "k={k}: {h} vs {e}"
                );
            }
        }
    }

    #[test]
    fn multinomial_sums_to_n() {
        let mut g = SplitMix64::new(5);
        let p = [3.0, 0.0, 1.0, 6.0];
        let mut out = [0u64; 4];
        let mut acc = [0f64; 4];
        for _ in 0..20_000 {
            g.multinomial_into(100, &p, &mut out);
            assert_eq!(out.iter().sum::<u64>(), 100);
            assert_eq!(out[1], 0);
            for i in 0..4 {
                acc[i] += out[i] as f64;
            }
        }
        for i in 0..4 {
            let m = acc[i] / 20_000.0;
            assert!((m - 10.0 * p[i]).abs() < 0.2, "cell {i}: {m}");
        }
    }
}
