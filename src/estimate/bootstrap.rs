//! Bootstrap helpers: quantiles, the basic (reflected) interval, multinomial table resampling and
//! random-block resampling of per-sample sufficient statistics.

use super::contingency::Table;
use super::rng::SplitMix64;
use super::{Control, EstimateError, Interval};

/// Quantile of sorted data with linear interpolation between order statistics (numpy's default,
/// Hyndman–Fan type 7).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let h = (n - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let frac = h - lo as f64;
    if frac == 0.0 {
        sorted[lo]
    } else {
        sorted[lo] + frac * (sorted[hi] - sorted[lo])
    }
}

/// Basic (reflected) bootstrap interval `[2θ̂ − q_hi, 2θ̂ − q_lo]` with `q` the (1∓level)/2
/// quantiles of the replicates. `None` if θ̂ or a bound is not finite, or there are no
/// replicates.
pub fn basic_interval(
    theta: f64,
    replicates: &[f64],
    level: f64,
    method: &str,
) -> Option<Interval> {
    if !theta.is_finite() || replicates.is_empty() {
        return None;
    }
    let mut s = replicates.to_vec();
    s.sort_by(f64::total_cmp);
    let q_lo = quantile_sorted(&s, (1.0 - level) / 2.0);
    let q_hi = quantile_sorted(&s, (1.0 + level) / 2.0);
    let low = 2.0 * theta - q_hi;
    let high = 2.0 * theta - q_lo;
    if !(low.is_finite() && high.is_finite()) {
        return None;
    }
    Some(Interval {
        low,
        high,
        level,
        method: method.to_string(),
        replicates: replicates.len(),
    })
}

/// Resamples a table as Multinomial(round(total), counts/total) with conditional binomials;
/// O(nnz + Kx + Ky) per replicate. The resampled counts keep the order of `table.counts`.
pub struct TableResampler<'t> {
    pub table: &'t Table,
    n: u64,
    pub counts: Vec<f64>,
    pub row_sums: Vec<f64>,
    pub col_sums: Vec<f64>,
    scratch: Vec<u64>,
}

impl<'t> TableResampler<'t> {
    pub fn new(table: &'t Table) -> Self {
        TableResampler {
            table,
            n: table.total.round().max(1.0) as u64,
            counts: vec![0.0; table.nnz()],
            row_sums: vec![0.0; table.kx],
            col_sums: vec![0.0; table.ky],
            scratch: vec![0; table.nnz()],
        }
    }

    /// Draw one replicate into `counts`, `row_sums`, `col_sums`.
    pub fn draw(&mut self, rng: &mut SplitMix64) {
        rng.multinomial_into(self.n, &self.table.counts, &mut self.scratch);
        self.row_sums.iter_mut().for_each(|v| *v = 0.0);
        self.col_sums.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..self.scratch.len() {
            let c = self.scratch[i] as f64;
            self.counts[i] = c;
            self.row_sums[self.table.rows[i] as usize] += c;
            self.col_sums[self.table.cols[i] as usize] += c;
        }
    }

    pub fn total(&self) -> f64 {
        self.n as f64
    }
}

/// Random partition of `n` samples into `min(n, max_blocks)` blocks of (almost) equal size.
/// Returns the block of each sample and the number of blocks. When `n <= max_blocks` every
/// sample is its own block, so block resampling is the ordinary nonparametric bootstrap.
pub fn random_blocks(n: usize, max_blocks: usize, rng: &mut SplitMix64) -> (Vec<u32>, usize) {
    let m = n.min(max_blocks.max(1));
    if m == n {
        return ((0..n as u32).collect(), n);
    }
    let mut perm: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = rng.below(i + 1);
        perm.swap(i, j);
    }
    let mut block = vec![0u32; n];
    for (pos, &s) in perm.iter().enumerate() {
        block[s as usize] = ((pos * m) / n) as u32;
    }
    (block, m)
}

/// Runs `replicates` bootstrap replicates over `m` blocks with a stride-`width` matrix of block
/// statistics (`stats[b*width..(b+1)*width]`). Each replicate draws block multiplicities
/// ~ Multinomial(m, 1/m), forms the weighted sum of block statistics and calls `statistic`.
/// Cost O(B·m·width).
pub fn block_bootstrap(
    stats: &[f64],
    width: usize,
    replicates: usize,
    rng: &mut SplitMix64,
    ctl: &Control<'_>,
    mut statistic: impl FnMut(&[f64]) -> f64,
) -> Result<Vec<f64>, EstimateError> {
    let m = stats.len().checked_div(width).unwrap_or(0);
    let uniform = vec![1.0; m];
    let mut mult = vec![0u64; m];
    let mut acc = vec![0.0; width];
    let mut out = Vec::with_capacity(replicates);
    for r in 0..replicates {
        ctl.tick(r as f64 / replicates as f64)?;
        rng.multinomial_into(m as u64, &uniform, &mut mult);
        weighted_block_sum(stats, width, &mult, &mut acc);
        out.push(statistic(&acc));
    }
    ctl.tick(1.0)?;
    Ok(out)
}

/// `acc = Σ_b mult[b] · stats[b]` over the blocks drawn at least once (one replicate's sums).
#[inline(always)]
fn weighted_block_sum_body(stats: &[f64], width: usize, mult: &[u64], acc: &mut [f64]) {
    acc.iter_mut().for_each(|v| *v = 0.0);
    for (b, &c) in mult.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let c = c as f64;
        for (a, &s) in acc.iter_mut().zip(&stats[b * width..(b + 1) * width]) {
            *a += c * s;
        }
    }
}

super::simd::dispatched! {
    /// [`weighted_block_sum_body`] on the widest vector unit the CPU has (the same bits).
    fn weighted_block_sum / weighted_block_sum_body(
        stats: &[f64],
        width: usize,
        mult: &[u64],
        acc: &mut [f64],
    ) -> ()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_numpy_linear() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&s, 0.0), 1.0);
        assert_eq!(quantile_sorted(&s, 1.0), 4.0);
        assert!((quantile_sorted(&s, 0.025) - 1.075).abs() < 1e-12);
        assert!((quantile_sorted(&s, 0.5) - 2.5).abs() < 1e-12);
    }

    #[test]
    fn basic_interval_reflects() {
        let reps: Vec<f64> = (0..101).map(|i| i as f64).collect();
        let iv = basic_interval(10.0, &reps, 0.9, "x").unwrap();
        // q05 = 5, q95 = 95 → [20 − 95, 20 − 5]
        assert!((iv.low + 75.0).abs() < 1e-12 && (iv.high - 15.0).abs() < 1e-12);
        assert!(basic_interval(f64::NEG_INFINITY, &reps, 0.9, "x").is_none());
    }

    #[test]
    fn blocks_cover_all_samples() {
        let mut g = SplitMix64::new(1);
        let (b, m) = random_blocks(10_000, 100, &mut g);
        assert_eq!(m, 100);
        let mut sizes = vec![0; m];
        for &x in &b {
            sizes[x as usize] += 1;
        }
        assert!(sizes.iter().all(|&s| s == 100));
        let (b, m) = random_blocks(5, 100, &mut g);
        assert_eq!((b, m), (vec![0, 1, 2, 3, 4], 5));
    }
}
