//! Brute force in cache-friendly tiles: a tile of queries against a block of reference points.

use super::*;

/// Brute-force k-th keys (one order).
pub fn brute_kth(
    data: &[f64],
    dim: usize,
    metric: &Metric,
    k: usize,
    range: Range<usize>,
) -> Vec<f64> {
    brute_kth_multi(data, dim, metric, &[k], range)
}

/// Brute-force k-th keys in tiles of `TILE_Q` queries × `TILE_R` reference points, for several
/// orders at once (flat, row-major as [`Index::kth_keys_multi`]).
pub fn brute_kth_multi(
    data: &[f64],
    dim: usize,
    metric: &Metric,
    ks: &[usize],
    range: Range<usize>,
) -> Vec<f64> {
    with_kernel!(metric, |kern| brute_kth_impl(kern, data, dim, ks, range))
}

pub(super) fn brute_kth_impl<K: Kernel>(
    kern: K,
    data: &[f64],
    dim: usize,
    ks: &[usize],
    range: Range<usize>,
) -> Vec<f64> {
    let k = ks.iter().copied().max().unwrap_or(0);
    let n = data.len() / dim;
    let mut out = Vec::with_capacity(range.len() * ks.len());
    let mut q0 = range.start;
    let mut best: Vec<Vec<f64>> = (0..TILE_Q).map(|_| Vec::with_capacity(k + 1)).collect();
    while q0 < range.end {
        let q1 = (q0 + TILE_Q).min(range.end);
        for b in best.iter_mut() {
            b.clear();
        }
        let mut r0 = 0;
        while r0 < n {
            let r1 = (r0 + TILE_R).min(n);
            let block = &data[r0 * dim..r1 * dim];
            for (qi, b) in (q0..q1).zip(best.iter_mut()) {
                if k == 0 {
                    break;
                }
                let q = &data[qi * dim..(qi + 1) * dim];
                let mut bound = if b.len() == k {
                    b[k - 1]
                } else {
                    f64::INFINITY
                };
                for (j, p) in (r0..r1).zip(block.chunks_exact(dim)) {
                    let d = kern.key(q, p);
                    if d < bound && j != qi {
                        push_best(b, k, d);
                        if b.len() == k {
                            bound = b[k - 1];
                        }
                    }
                }
            }
            r0 = r1;
        }
        for b in &best[..q1 - q0] {
            push_orders(b, ks, &mut out);
        }
        q0 = q1;
    }
    out
}

/// Brute-force radius counts (module semantics) in tiles.
pub fn brute_counts(
    data: &[f64],
    dim: usize,
    metric: &Metric,
    radii: &[f64],
    range: Range<usize>,
) -> Vec<usize> {
    brute_counts_multi(data, dim, metric, &[radii], range)
}

/// [`brute_counts`] for several radius sets at once (each pair's key is computed once); flat,
/// row-major: member `i`, set `c` at `(i - range.start) * sets.len() + c`.
pub fn brute_counts_multi(
    data: &[f64],
    dim: usize,
    metric: &Metric,
    sets: &[&[f64]],
    range: Range<usize>,
) -> Vec<usize> {
    with_kernel!(metric, |kern| brute_counts_impl(
        kern, data, dim, sets, range
    ))
}

pub(super) fn brute_counts_impl<K: Kernel>(
    kern: K,
    data: &[f64],
    dim: usize,
    sets: &[&[f64]],
    range: Range<usize>,
) -> Vec<usize> {
    let n = data.len() / dim;
    let m = sets.len();
    let mut out = vec![0usize; range.len() * m];
    let mut radii = vec![0.0; m];
    let mut q0 = range.start;
    while q0 < range.end {
        let q1 = (q0 + TILE_Q).min(range.end);
        let mut r0 = 0;
        while r0 < n {
            let r1 = (r0 + TILE_R).min(n);
            let block = &data[r0 * dim..r1 * dim];
            for qi in q0..q1 {
                let q = &data[qi * dim..(qi + 1) * dim];
                let row = qi - range.start;
                for (r, set) in radii.iter_mut().zip(sets) {
                    *r = set[row];
                }
                let counts = &mut out[row * m..(row + 1) * m];
                if m == 1 {
                    let r = radii[0];
                    let mut c = 0;
                    for p in block.chunks_exact(dim) {
                        let d = kern.key(q, p);
                        if d < r || (r <= 0.0 && d <= 0.0) {
                            c += 1;
                        }
                    }
                    counts[0] += c;
                    continue;
                }
                for p in block.chunks_exact(dim) {
                    let d = kern.key(q, p);
                    for (c, &r) in counts.iter_mut().zip(&radii) {
                        if d < r || (r <= 0.0 && d <= 0.0) {
                            *c += 1;
                        }
                    }
                }
            }
            r0 = r1;
        }
        q0 = q1;
    }
    out
}
