//! The coverage study: how often each reported 95 % interval contains the true value, on tasks
//! whose truth is known exactly, and how the estimators' own trust reports (`diagnostics`) line up
//! with it. Used by the fast coverage tests in the suite, by the full study
//! (`cargo test --lib coverage_study -- --ignored --nocapture`, run by `.ci/run`), and by the
//! table in benches/README.md.
//!
//! Truths:
//! - multinomial channels: Y uniform on K classes, Ŷ = Y with probability `acc`, else one of the
//!   K − 1 others uniformly: I = ln K + acc ln acc + (1 − acc) ln((1 − acc)/(K − 1));
//! - a finite "world" for the probability-based estimators: instances x ∈ {0..M−1} equally
//!   likely, labels y ~ P(y|x) = softmax(β a_xy) with a fixed random table a, and a model
//!   q(y|x) = softmax(τ β a_xy) (τ = 1 calibrated). Every population quantity is a finite sum:
//!   SeMI = Σ P(x)P(y|x) ln q(y|x) − Σ_y P(y) ln T_y with T_y = Σ_x P(x) q(y|x); the cross-entropy
//!   bound H(Y) + Σ P(x)P(y|x) ln q(y|x); with predictions argmax q, the confusion channel's
//!   Shannon MI (the `lbi` value) and its SeMI under a fixed truth matrix;
//! - bivariate Gaussians with correlation ρ: I = −½ ln(1 − ρ²);
//! - the optimal critic of a bivariate Gaussian for the variational bounds (no training), where
//!   the bound's expectation is known to lie below I.

use super::rng::SplitMix64;
use super::{Output, Reliability};
use ndarray::Array2;

/// One configuration's tally.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub interval: String,
    pub task: String,
    pub n: usize,
    pub truth: f64,
    pub reps: usize,
    /// Replications whose interval contains the truth.
    pub covered: usize,
    /// Replications whose result was `ok` by its own checks, and of those, covered.
    pub ok: usize,
    pub ok_covered: usize,
    /// Replications whose value lies inside its own interval.
    pub inside: usize,
    pub width_sum: f64,
    pub with_interval: usize,
}

impl Tally {
    pub fn coverage(&self) -> f64 {
        self.covered as f64 / self.reps.max(1) as f64
    }

    pub fn ok_coverage(&self) -> Option<f64> {
        (self.ok > 0).then(|| self.ok_covered as f64 / self.ok as f64)
    }

    /// A markdown table row.
    pub fn row(&self) -> String {
        let pct = |x: f64| format!("{:.3}", x);
        format!(
            "| {} | {} | {} | {:.4} | {} | {} | {} | {} | {} |",
            self.interval,
            self.task,
            self.n,
            self.truth,
            pct(self.coverage()),
            pct(self.ok as f64 / self.reps.max(1) as f64),
            self.ok_coverage().map_or("—".into(), pct),
            pct(self.inside as f64 / self.reps.max(1) as f64),
            if self.with_interval > 0 {
                let w = self.width_sum / self.with_interval as f64;
                if w.is_finite() {
                    format!("{w:.4}")
                } else {
                    "one-sided".into()
                }
            } else {
                "—".into()
            }
        )
    }

    pub const HEADER: &'static str = "| interval | task | N | truth (nats) | coverage | share `ok` | coverage when `ok` | value inside | mean width |\n|---|---|---|---|---|---|---|---|---|";
}

/// Run `reps` seeded replications of `run` and tally them against `truth`.
pub fn tally(
    interval: &str,
    task: &str,
    n: usize,
    truth: f64,
    reps: usize,
    run: impl Fn(u64) -> Output,
) -> Tally {
    let mut t = Tally {
        interval: interval.into(),
        task: task.into(),
        n,
        truth,
        reps,
        ..Default::default()
    };
    for r in 0..reps {
        let out = run(1_000_003 * (r as u64 + 1));
        let ok = out.diagnostics.reliability == Reliability::Ok;
        let covered = out
            .interval
            .as_ref()
            .is_some_and(|iv| iv.low <= truth && truth <= iv.high);
        if let Some(iv) = &out.interval {
            t.with_interval += 1;
            t.width_sum += iv.high - iv.low;
            if iv.low <= out.value && out.value <= iv.high {
                t.inside += 1;
            }
        }
        t.covered += usize::from(covered);
        t.ok += usize::from(ok);
        t.ok_covered += usize::from(ok && covered);
    }
    t
}

/// Labels and predictions from the uniform-error channel.
pub fn channel_sample(k: usize, acc: f64, n: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let mut g = SplitMix64::new(seed);
    let mut ys = Vec::with_capacity(n);
    let mut ps = Vec::with_capacity(n);
    for _ in 0..n {
        let y = g.below(k);
        let p = if g.uniform() < acc {
            y
        } else {
            (y + 1 + g.below(k - 1)) % k
        };
        ys.push(y as u32);
        ps.push(p as u32);
    }
    (ys, ps)
}

/// The uniform-error channel's mutual information (nats).
pub fn channel_mi(k: usize, acc: f64) -> f64 {
    let kf = k as f64;
    kf.ln() + acc * acc.ln() + (1.0 - acc) * ((1.0 - acc) / (kf - 1.0)).ln()
}

/// A finite world of instances with known label distributions and a model's probabilities.
pub struct World {
    pub m: usize,
    pub k: usize,
    /// P(y|x), M×K.
    pub p: Array2<f64>,
    /// q(y|x), M×K.
    pub q: Array2<f64>,
}

impl World {
    /// `m` instances, `k` labels, sharpness `beta`, model temperature factor `tau`.
    pub fn new(m: usize, k: usize, beta: f64, tau: f64, seed: u64) -> World {
        let mut g = SplitMix64::new(seed);
        let a = Array2::from_shape_fn((m, k), |_| g.normal_pair().0);
        let soft = |scale: f64| {
            let mut out = Array2::zeros((m, k));
            for x in 0..m {
                let mx = (0..k)
                    .map(|y| scale * a[[x, y]])
                    .fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = (0..k).map(|y| (scale * a[[x, y]] - mx).exp()).sum();
                for y in 0..k {
                    out[[x, y]] = (scale * a[[x, y]] - mx).exp() / z;
                }
            }
            out
        };
        World {
            m,
            k,
            p: soft(beta),
            q: soft(tau * beta),
        }
    }

    fn marginal(&self, t: &Array2<f64>) -> Vec<f64> {
        (0..self.k)
            .map(|y| (0..self.m).map(|x| t[[x, y]]).sum::<f64>() / self.m as f64)
            .collect()
    }

    /// Population SeMI with the model's probabilities as truth functions.
    pub fn semantic_mi(&self) -> f64 {
        let (py, ty) = (self.marginal(&self.p), self.marginal(&self.q));
        let mut g = 0.0;
        for x in 0..self.m {
            for y in 0..self.k {
                g += self.p[[x, y]] * self.q[[x, y]].ln() / self.m as f64;
            }
        }
        g - (0..self.k).map(|y| py[y] * ty[y].ln()).sum::<f64>()
    }

    /// Population cross-entropy bound H(Y) − E[−ln q(y|x)].
    pub fn ce_bound(&self) -> f64 {
        let py = self.marginal(&self.p);
        let h: f64 = -py
            .iter()
            .filter(|&&v| v > 0.0)
            .map(|v| v * v.ln())
            .sum::<f64>();
        let mut ce = 0.0;
        for x in 0..self.m {
            for y in 0..self.k {
                ce -= self.p[[x, y]] * self.q[[x, y]].ln() / self.m as f64;
            }
        }
        h - ce
    }

    /// The model's hard prediction for an instance.
    pub fn predict(&self, x: usize) -> usize {
        (0..self.k)
            .max_by(|&a, &b| self.q[[x, a]].total_cmp(&self.q[[x, b]]))
            .expect("k > 0")
    }

    /// The population confusion table P(true, predicted), K×K.
    pub fn confusion(&self) -> Array2<f64> {
        let mut c = Array2::zeros((self.k, self.k));
        for x in 0..self.m {
            let j = self.predict(x);
            for y in 0..self.k {
                c[[y, j]] += self.p[[x, y]] / self.m as f64;
            }
        }
        c
    }

    /// Labels, predictions and probability rows of `n` samples.
    pub fn sample(&self, n: usize, seed: u64) -> (Vec<u32>, Vec<u32>, Array2<f64>) {
        let mut g = SplitMix64::new(seed);
        let mut ys = Vec::with_capacity(n);
        let mut ps = Vec::with_capacity(n);
        let mut q = Array2::zeros((n, self.k));
        for s in 0..n {
            let x = g.below(self.m);
            let u = g.uniform();
            let mut acc = 0.0;
            let mut y = self.k - 1;
            for j in 0..self.k {
                acc += self.p[[x, j]];
                if u < acc {
                    y = j;
                    break;
                }
            }
            ys.push(y as u32);
            ps.push(self.predict(x) as u32);
            for j in 0..self.k {
                q[[s, j]] = self.q[[x, j]];
            }
        }
        (ys, ps, q)
    }
}

/// Population Shannon MI of a joint table (nats).
pub fn table_mi(c: &Array2<f64>) -> f64 {
    let tot: f64 = c.sum();
    let (k1, k2) = c.dim();
    let rows: Vec<f64> = (0..k1).map(|i| c.row(i).sum() / tot).collect();
    let cols: Vec<f64> = (0..k2).map(|j| c.column(j).sum() / tot).collect();
    let mut mi = 0.0;
    for i in 0..k1 {
        for j in 0..k2 {
            let p = c[[i, j]] / tot;
            if p > 0.0 {
                mi += p * (p / (rows[i] * cols[j])).ln();
            }
        }
    }
    mi
}

/// Population SeMI of a joint table P(true i, predicted j) under truth matrix `t` (mode A):
/// Σ P(i,j) ln(T_ij / T_j), T_j = Σ_i P(i) T_ij.
pub fn table_semantic_mi(c: &Array2<f64>, t: &Array2<f64>) -> f64 {
    let tot: f64 = c.sum();
    let k = c.nrows();
    let pi: Vec<f64> = (0..k).map(|i| c.row(i).sum() / tot).collect();
    let tj: Vec<f64> = (0..k)
        .map(|j| (0..k).map(|i| pi[i] * t[[i, j]]).sum())
        .collect();
    let mut g = 0.0;
    for i in 0..k {
        for j in 0..k {
            let p = c[[i, j]] / tot;
            if p > 0.0 {
                g += p * (t[[i, j]] / tj[j]).ln();
            }
        }
    }
    g
}
