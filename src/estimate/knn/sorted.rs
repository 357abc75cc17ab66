//! Sorted 1-D data: the k-th neighbour by a two-pointer walk, radius counts by binary search on the computed differences, and all members' counts by two sweeps.

use super::*;

/// A sorted copy of 1-D data.
#[derive(Debug, Clone)]
pub struct Sorted1d {
    pub(super) vals: Vec<f64>,
    /// Keys are squared differences ([`Metric::Euclidean`]) instead of absolute differences.
    pub(super) squared: bool,
    /// Position of each original point in `vals`.
    pub(super) rank: Vec<u32>,
    /// Original index of each position (the inverse of `rank`).
    pub(super) order: Vec<u32>,
}

impl Sorted1d {
    pub fn new(data: &[f64], metric: &Metric) -> Sorted1d {
        let order = sorted_order(data);
        let mut rank = vec![0u32; data.len()];
        for (pos, &i) in order.iter().enumerate() {
            rank[i as usize] = pos as u32;
        }
        Sorted1d {
            vals: order.iter().map(|&i| data[i as usize]).collect(),
            rank,
            order,
            squared: matches!(metric, Metric::Euclidean(_)),
        }
    }

    #[inline]
    pub(super) fn key(&self, d: f64) -> f64 {
        if self.squared {
            d * d
        } else {
            d
        }
    }

    /// The `k` smallest keys |x_j − x_i| over j ≠ i (the point itself is skipped by position),
    /// ascending, into `best` (fewer when there are fewer than k other points).
    pub fn k_smallest_of_point(&self, i: usize, k: usize, best: &mut Vec<f64>) {
        best.clear();
        let n = self.vals.len();
        let p = self.rank[i] as usize;
        let v = self.vals[p];
        let (mut l, mut r) = (p, p + 1); // candidates: vals[l-1] on the left, vals[r] on the right
        while best.len() < k && (l > 0 || r < n) {
            let dl = if l > 0 {
                v - self.vals[l - 1]
            } else {
                f64::INFINITY
            };
            let dr = if r < n {
                self.vals[r] - v
            } else {
                f64::INFINITY
            };
            if dl <= dr {
                best.push(self.key(dl));
                l -= 1;
            } else {
                best.push(self.key(dr));
                r += 1;
            }
        }
    }

    /// Key of the k-th smallest |x_j − x_i| over j ≠ i (the point itself is skipped by position); `None`
    /// when there are fewer than k other points.
    pub fn kth_of_point(&self, i: usize, k: usize) -> Option<f64> {
        if k == 0 {
            return None;
        }
        let mut best = Vec::with_capacity(k);
        self.k_smallest_of_point(i, k, &mut best);
        (best.len() == k).then(|| best[k - 1])
    }

    /// Count of j (i included) with key(x_j − v) < r (`r > 0`) or == 0 (`r == 0`).
    pub fn count_below(&self, v: f64, r: f64) -> usize {
        let s = &self.vals;
        let mid = s.partition_point(|&x| x < v);
        let (left, right) = s.split_at(mid);
        if r <= 0.0 {
            // exact equality: v − x == 0 iff x == v
            return right.partition_point(|&x| x - v <= 0.0);
        }
        // left: v − x is non-increasing in x; those with v − x >= r form a prefix.
        let lcount = left.len() - left.partition_point(|&x| self.key(v - x) >= r);
        let rcount = right.partition_point(|&x| self.key(x - v) < r);
        lcount + rcount
    }

    /// [`Sorted1d::count_below`] for member `i`: an exponential search outwards from its
    /// position (the keys grow monotonically on each side), so the cost is logarithmic in the
    /// count rather than in N and the memory touched stays local.
    pub fn count_member(&self, i: usize, r: f64) -> usize {
        self.count_at(self.rank[i] as usize, r)
    }

    /// [`Sorted1d::count_member`] for the point at sorted position `p`.
    #[inline]
    pub fn count_at(&self, p: usize, r: f64) -> usize {
        let s = &self.vals;
        let v = s[p];
        let inside = |d: f64| {
            let kd = self.key(d);
            if r > 0.0 {
                kd < r
            } else {
                kd <= 0.0
            }
        };
        // right of p: x − v grows, `inside` holds on a prefix
        let right = gallop(s.len() - p - 1, |t| inside(s[p + 1 + t] - v));
        // left of p (walking down): v − x grows, `inside` holds on a prefix of the reversed side
        let left = gallop(p, |t| inside(v - s[p - 1 - t]));
        left + 1 + right
    }
}

impl Sorted1d {
    /// [`Sorted1d::count_at`] for every position `p` with radius `radii[p]`, by two sweeps: the
    /// queries are taken in the order of their right (then left) end `v ± r`, so the boundary of
    /// each moves little from the previous one. Each boundary is found by walking from the
    /// previous one with the exact predicate, so the order only affects the speed.
    pub fn counts_sweep(&self, radii: &[f64]) -> Vec<usize> {
        let s = &self.vals;
        let n = s.len();
        let dist = |r: f64| if self.squared { r.sqrt() } else { r };
        let inside = |d: f64, r: f64| {
            let kd = self.key(d);
            if r > 0.0 {
                kd < r
            } else {
                kd <= 0.0
            }
        };
        let mut counts = vec![1usize; n];
        // right side: inside(s[q] − v) holds for q in p+1..b(p)
        let ends: Vec<f64> = (0..n).map(|p| s[p] + dist(radii[p])).collect();
        let mut b = 0;
        for p in sorted_order(&ends) {
            let p = p as usize;
            let (v, r) = (s[p], radii[p]);
            b = b.max(p + 1);
            while b < n && inside(s[b] - v, r) {
                b += 1;
            }
            while b > p + 1 && !inside(s[b - 1] - v, r) {
                b -= 1;
            }
            counts[p] += b - p - 1;
        }
        // left side: inside(v − s[q]) holds for q in a(p)..p
        let ends: Vec<f64> = (0..n).map(|p| s[p] - dist(radii[p])).collect();
        let mut a = 0;
        for p in sorted_order(&ends) {
            let p = p as usize;
            let (v, r) = (s[p], radii[p]);
            a = a.min(p);
            while a < p && !inside(v - s[a], r) {
                a += 1;
            }
            while a > 0 && inside(v - s[a - 1], r) {
                a -= 1;
            }
            counts[p] += p - a;
        }
        counts
    }
}

/// Length of the prefix of `0..len` on which the monotone predicate `holds` is true (true then
/// false), by exponential then binary search.
#[inline]
pub(super) fn gallop(len: usize, holds: impl Fn(usize) -> bool) -> usize {
    // invariant: holds(t) for every t < lo
    let mut lo = 0;
    let mut step = 1;
    let hi = loop {
        let probe = lo + step - 1;
        if probe >= len {
            break len;
        }
        if holds(probe) {
            lo = probe + 1;
            step *= 2;
        } else {
            break probe;
        }
    };
    // holds(t) for t < lo; false at hi (or hi == len)
    let (mut a, mut b) = (lo, hi);
    while a < b {
        let m = a + (b - a) / 2;
        if holds(m) {
            a = m + 1;
        } else {
            b = m;
        }
    }
    a
}

/// Indices of `vals` in ascending `total_cmp` order (ties in index order): a stable LSD radix
/// sort on the upper 32 bits of the order-preserving integer key, then a comparison sort of each
/// run of equal upper bits (rare for continuous data) by the full key.
pub fn sorted_order(vals: &[f64]) -> Vec<u32> {
    let n = vals.len();
    assert!(n < u32::MAX as usize);
    let keys: Vec<u64> = vals.iter().map(|&v| total_key(v)).collect();
    if n < 512 {
        let mut keyed: Vec<(u64, u32)> = keys.iter().zip(0u32..).map(|(&k, i)| (k, i)).collect();
        keyed.sort_unstable();
        return keyed.into_iter().map(|(_, i)| i).collect();
    }
    // (upper 32 bits of the key, index) packed in one word: the passes move no other data
    let mut cur: Vec<u64> = keys
        .iter()
        .zip(0u64..)
        .map(|(&k, i)| (k & !0xFFFF_FFFF) | i)
        .collect();
    let mut hist = [[0usize; 256]; 4];
    for &w in &cur {
        for (b, row) in hist.iter_mut().enumerate() {
            row[((w >> (32 + 8 * b)) & 255) as usize] += 1;
        }
    }
    let mut tmp = vec![0u64; n];
    for (b, row) in hist.iter().enumerate() {
        if row.contains(&n) {
            continue; // every key has the same byte here
        }
        let mut offset = [0usize; 256];
        let mut acc = 0;
        for (o, &c) in offset.iter_mut().zip(row) {
            *o = acc;
            acc += c;
        }
        for &w in &cur {
            let d = ((w >> (32 + 8 * b)) & 255) as usize;
            tmp[offset[d]] = w;
            offset[d] += 1;
        }
        std::mem::swap(&mut cur, &mut tmp);
    }
    let hi_of = |w: u64| w >> 32;
    let mut idx: Vec<u32> = cur.iter().map(|&w| w as u32).collect();
    // runs of equal upper bits: order by the full key (then index, as they are now)
    let mut start = 0;
    while start < n {
        let h = hi_of(cur[start]);
        let mut end = start + 1;
        while end < n && hi_of(cur[end]) == h {
            end += 1;
        }
        if end - start > 1 {
            idx[start..end].sort_unstable_by_key(|&i| (keys[i as usize], i));
        }
        start = end;
    }
    idx
}

/// An unsigned key whose order is `f64::total_cmp`'s.
#[inline]
pub(super) fn total_key(v: f64) -> u64 {
    let b = v.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}
