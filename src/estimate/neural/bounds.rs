//! The bounds on a batch's score matrix (InfoNCE, MINE/DV, NWJ, SMILE): values, gradients, and
//! the held-out per-row terms.

use super::*;

pub(super) fn logsumexp(v: impl Iterator<Item = f64> + Clone) -> f64 {
    let m = v.clone().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + v.map(|x| (x - m).exp()).sum::<f64>().ln()
}

pub(super) fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// log mean_{i≠j} exp(S_ij).
pub(super) fn log_mean_exp_offdiag(s: &Array2<f64>, clip: Option<f64>) -> f64 {
    let b = s.nrows();
    let it = s
        .indexed_iter()
        .filter(|((i, j), _)| i != j)
        .map(|(_, &v)| match clip {
            Some(t) => v.clamp(-t, t),
            None => v,
        });
    logsumexp(it) - ((b * (b - 1)) as f64).ln()
}

/// Training objective on a batch: (bound value, d value / dS). Updates MINE's moving average.
pub(super) fn batch_objective(
    bound: Bound,
    s: &Array2<f64>,
    p: &Params,
    log_ema: &mut Option<f64>,
) -> (f64, Array2<f64>) {
    let b = s.nrows();
    let bf = b as f64;
    let m = bf * (bf - 1.0);
    let diag_mean = s.diag().mean().unwrap_or(0.0);
    let mut ds = Array2::<f64>::zeros((b, b));
    match bound {
        Bound::InfoNce => {
            let mut val = 0.0;
            for i in 0..b {
                let row = s.row(i);
                let lse = logsumexp(row.iter().copied());
                val += row[i] - lse;
                for j in 0..b {
                    ds[[i, j]] = -(row[j] - lse).exp() / bf;
                }
                ds[[i, i]] += 1.0 / bf;
            }
            (bf.ln() + val / bf, ds)
        }
        Bound::Nwj => {
            let mut part = 0.0;
            for ((i, j), &v) in s.indexed_iter() {
                if i == j {
                    ds[[i, j]] = 1.0 / bf;
                } else {
                    let e = (v - 1.0).exp();
                    part += e;
                    ds[[i, j]] = -e / m;
                }
            }
            (diag_mean - part / m, ds)
        }
        Bound::Mine => {
            let lz = log_mean_exp_offdiag(s, None);
            let le = match *log_ema {
                None => lz,
                Some(prev) => {
                    let a = p.ma_rate;
                    let hi = prev.max(lz);
                    hi + ((1.0 - a) * (prev - hi).exp() + a * (lz - hi).exp()).ln()
                }
            };
            *log_ema = Some(le);
            for ((i, j), &v) in s.indexed_iter() {
                ds[[i, j]] = if i == j {
                    1.0 / bf
                } else {
                    -(v - le).exp() / m
                };
            }
            (diag_mean - lz, ds)
        }
        Bound::Smile => {
            let lz = log_mean_exp_offdiag(s, Some(p.tau));
            for ((i, j), &v) in s.indexed_iter() {
                ds[[i, j]] = if i == j {
                    sigmoid(-v) / bf
                } else {
                    -sigmoid(v) / m
                };
            }
            (diag_mean - lz, ds)
        }
    }
}

/// Per-row held-out terms of a bound, from which the value (on any multiset of rows) follows.
pub(super) struct Terms {
    pub(super) bound: Bound,
    /// InfoNCE / NWJ: per-row contribution; DV-type: S_ii.
    pub(super) a: Vec<f64>,
    /// DV-type (MINE, SMILE): log of the per-row mean of exp(S_ij) over the block's negatives.
    pub(super) lb: Vec<f64>,
    /// SMILE: the same without clipping, and how many negative scores were clipped (of `pairs`).
    pub(super) lb_raw: Vec<f64>,
    pub(super) clipped: usize,
    pub(super) pairs: usize,
    /// mean log(block size) (InfoNCE ceiling)
    pub(super) log_ceiling: f64,
}

impl Terms {
    pub(super) fn value_of(&self, rows: impl Iterator<Item = usize> + Clone) -> f64 {
        let n = rows.clone().count() as f64;
        let mean_a = rows.clone().map(|i| self.a[i]).sum::<f64>() / n;
        match self.bound {
            Bound::InfoNce | Bound::Nwj => mean_a,
            Bound::Mine | Bound::Smile => mean_a - (logsumexp(rows.map(|i| self.lb[i])) - n.ln()),
        }
    }

    pub(super) fn value(&self) -> f64 {
        self.value_of(0..self.a.len())
    }

    /// SMILE: |Σ e^{clipped} − Σ e^{raw}| / Σ e^{raw} over the partition terms (0 otherwise).
    pub(super) fn clipped_mass_fraction(&self) -> f64 {
        if self.lb_raw.is_empty() {
            return 0.0;
        }
        let raw = logsumexp(self.lb_raw.iter().copied());
        let clipped = logsumexp(self.lb.iter().copied());
        (clipped - raw).exp_m1().abs()
    }
}

/// Evaluate the critic on rows `x`, `y` in near-equal blocks of at most `max_block`.
pub(super) fn evaluate(
    net: &Net,
    bound: Bound,
    x: ArrayView2<f64>,
    y: ArrayView2<f64>,
    max_block: usize,
    tau: f64,
) -> Terms {
    evaluate_scores(bound, x.nrows(), max_block, tau, |lo, hi| {
        net.scores(x.slice(s![lo..hi, ..]), y.slice(s![lo..hi, ..]))
    })
}

/// Per-row terms of `n` rows cut into near-equal blocks of at most `max_block`, with
/// `scores(lo, hi)` the critic's score matrix of rows lo..hi (diagonal = joint pairs).
pub(super) fn evaluate_scores(
    bound: Bound,
    n: usize,
    max_block: usize,
    tau: f64,
    scores: impl Fn(usize, usize) -> Array2<f64>,
) -> Terms {
    let nblocks = n.div_ceil(max_block).max(1);
    let mut a = Vec::with_capacity(n);
    let mut lb = Vec::with_capacity(n);
    let mut lb_raw = Vec::new();
    let (mut clipped, mut pairs) = (0usize, 0usize);
    let mut log_ceiling = 0.0;
    for blk in 0..nblocks {
        let lo = blk * n / nblocks;
        let hi = (blk + 1) * n / nblocks;
        let b = hi - lo;
        let s = scores(lo, hi);
        let bf = b as f64;
        log_ceiling += bf * bf.ln();
        for i in 0..b {
            let row = s.row(i);
            match bound {
                Bound::InfoNce => {
                    a.push(bf.ln() + row[i] - logsumexp(row.iter().copied()));
                }
                Bound::Nwj => {
                    let part: f64 = row
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| *j != i)
                        .map(|(_, &v)| (v - 1.0).exp())
                        .sum::<f64>()
                        / (bf - 1.0);
                    a.push(row[i] - part);
                }
                Bound::Mine | Bound::Smile => {
                    let clip = if bound == Bound::Smile {
                        tau
                    } else {
                        f64::INFINITY
                    };
                    let negatives = || row.iter().enumerate().filter(|(j, _)| *j != i);
                    a.push(row[i]);
                    lb.push(
                        logsumexp(negatives().map(|(_, &v)| v.clamp(-clip, clip)))
                            - (bf - 1.0).ln(),
                    );
                    if bound == Bound::Smile {
                        lb_raw.push(logsumexp(negatives().map(|(_, &v)| v)) - (bf - 1.0).ln());
                        clipped += negatives().filter(|(_, &v)| v.abs() > clip).count();
                        pairs += b - 1;
                    }
                }
            }
        }
    }
    Terms {
        bound,
        a,
        lb,
        lb_raw,
        clipped,
        pairs,
        log_ceiling: log_ceiling / n as f64,
    }
}
