//! Exact k-nearest-neighbour machinery for the k-NN estimators (`ksg`, `mixed_ksg`).
//!
//! Everything here is exact (no approximate search) and works on *distance keys*: a monotone
//! transform of the distance that is cheaper to compute and is compared bit-for-bit by every
//! search path, so that the tree, the brute-force tiles and the sorted 1-D arrays give identical
//! answers (including ties):
//!
//! - [`Metric::Max`]: the key is the Chebyshev distance `max_c |a_c − b_c|` itself;
//! - [`Metric::Euclidean`]: the coordinates are split into contiguous groups (one group per
//!   space); the key is `max_g Σ_{c∈g} (a_c − b_c)²`, i.e. the square of "Euclidean within each
//!   group, max across groups" (the bmi convention). A single group is the plain Euclidean metric.
//!
//! Search structures:
//! - [`KdTree`]: own implementation (median split on the widest coordinate, bounding boxes per
//!   node, leaf size 16); O(N log N) queries in low dimension, degrading towards brute force as the
//!   dimension grows;
//! - brute force in cache-friendly tiles (a tile of queries against a block of reference points);
//! - [`Sorted1d`]: a sorted copy of 1-D data; k-th neighbour by a two-pointer walk, radius counts
//!   by binary search on the *computed* differences (exact, because floating-point subtraction is
//!   monotone); the counts of all members at once by two sweeps over the queries ordered by their
//!   interval ends, each boundary walked from the previous one (O(N) after a sort);
//! - [`Plane`]: 2-D points under a max-type metric (the KSG joint space of 1-D x and 1-D y):
//!   equal-count vertical strips sorted by y, searched by short contiguous walks.
//!
//! The inner loops are specialised per metric shape (a `Kernel` for the max-norm, one or two
//! Euclidean groups) with the arithmetic of [`Metric::key`] in the same order, so every path
//! computes the same keys bit for bit. Searches for several k share one pass (the k_max nearest),
//! and counts for several radii share one key per pair.
//!
//! [`Index::auto`] picks one. Counting semantics ([`Index::count_below`]): the number of points
//! `j` (the query point itself included) with `key(i, j) < r` when `r > 0`, and with
//! `key(i, j) == 0` when `r == 0`. This is exactly scikit-learn's
//! `KDTree.query_radius(x, nextafter(r, 0), count_only=True)` (an inclusive query with the radius
//! moved one ulp down).

use std::ops::Range;

/// Points per k-d tree leaf.
const LEAF_SIZE: usize = 16;
/// Queries per brute-force tile.
const TILE_Q: usize = 16;
/// Reference points per brute-force block.
const TILE_R: usize = 256;
/// Indices per parallel work item (fixed, so results never depend on the thread count).
const CHUNK: usize = 512;

/// A distance on row-major points (see the module docs for the key).
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// Chebyshev (max-norm) over all coordinates.
    Max,
    /// Euclidean within each group, max across groups; the vector holds the exclusive end of each
    /// group (the last one equals the dimension), e.g. `[dx, dx + dy]`.
    Euclidean(Vec<usize>),
}

impl Metric {
    /// The plain Euclidean metric on `dim` coordinates.
    pub fn euclidean(dim: usize) -> Metric {
        Metric::Euclidean(vec![dim])
    }

    /// The distance key between two points.
    #[inline]
    pub fn key(&self, a: &[f64], b: &[f64]) -> f64 {
        match self {
            Metric::Max => {
                let mut m = 0.0f64;
                for (x, y) in a.iter().zip(b) {
                    let d = (x - y).abs();
                    if d > m {
                        m = d;
                    }
                }
                m
            }
            Metric::Euclidean(ends) => {
                let mut m = 0.0f64;
                let mut start = 0;
                for &end in ends {
                    let mut s = 0.0;
                    for c in start..end {
                        let d = a[c] - b[c];
                        s += d * d;
                    }
                    if s > m {
                        m = s;
                    }
                    start = end;
                }
                m
            }
        }
    }

    /// A distance from a key.
    pub fn distance(&self, key: f64) -> f64 {
        match self {
            Metric::Max => key,
            Metric::Euclidean(_) => key.sqrt(),
        }
    }

    /// Lower (`far == false`) or upper (`far == true`) bound of the key between `q` and any point
    /// of the box `[lo, hi]`. Monotonicity of rounding makes these valid bounds for the keys
    /// computed by [`Metric::key`].
    #[inline]
    fn box_key(&self, q: &[f64], lo: &[f64], hi: &[f64], far: bool) -> f64 {
        let gap = |c: usize| -> f64 {
            if far {
                (q[c] - lo[c]).max(hi[c] - q[c])
            } else if q[c] < lo[c] {
                lo[c] - q[c]
            } else if q[c] > hi[c] {
                q[c] - hi[c]
            } else {
                0.0
            }
        };
        match self {
            Metric::Max => {
                let mut m = 0.0f64;
                for c in 0..q.len() {
                    m = m.max(gap(c));
                }
                m
            }
            Metric::Euclidean(ends) => {
                let mut m = 0.0f64;
                let mut start = 0;
                for &end in ends {
                    let mut s = 0.0;
                    for c in start..end {
                        let d = gap(c);
                        s += d * d;
                    }
                    m = m.max(s);
                    start = end;
                }
                m
            }
        }
    }
}

/// A metric's key with its group structure fixed at compile time, so that the inner loops of the
/// tree and of brute force are specialised for it. The arithmetic is [`Metric::key`]'s and
/// [`Metric::box_key`]'s, in the same order (bit-identical keys).
trait Kernel: Copy + Send + Sync {
    fn key(&self, a: &[f64], b: &[f64]) -> f64;
    fn box_key(&self, q: &[f64], lo: &[f64], hi: &[f64], far: bool) -> f64;
}

#[inline(always)]
fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    let mut m = 0.0f64;
    for (x, y) in a.iter().zip(b) {
        let d = (x - y).abs();
        if d > m {
            m = d;
        }
    }
    m
}

#[inline(always)]
fn sum_sq_diff(a: &[f64], b: &[f64]) -> f64 {
    let mut s = 0.0;
    for (x, y) in a.iter().zip(b) {
        let d = x - y;
        s += d * d;
    }
    s
}

#[inline(always)]
fn gap(q: f64, lo: f64, hi: f64, far: bool) -> f64 {
    if far {
        (q - lo).max(hi - q)
    } else if q < lo {
        lo - q
    } else if q > hi {
        q - hi
    } else {
        0.0
    }
}

#[inline(always)]
fn box_sum(q: &[f64], lo: &[f64], hi: &[f64], far: bool) -> f64 {
    let mut s = 0.0;
    for ((&q, &l), &h) in q.iter().zip(lo).zip(hi) {
        let d = gap(q, l, h, far);
        s += d * d;
    }
    s
}

/// [`Metric::Max`].
#[derive(Clone, Copy)]
struct MaxKernel;

impl Kernel for MaxKernel {
    #[inline(always)]
    fn key(&self, a: &[f64], b: &[f64]) -> f64 {
        max_abs_diff(a, b)
    }

    #[inline(always)]
    fn box_key(&self, q: &[f64], lo: &[f64], hi: &[f64], far: bool) -> f64 {
        let mut m = 0.0f64;
        for ((&q, &l), &h) in q.iter().zip(lo).zip(hi) {
            m = m.max(gap(q, l, h, far));
        }
        m
    }
}

/// [`Metric::Euclidean`] with one group (the plain squared Euclidean distance).
#[derive(Clone, Copy)]
struct SumKernel;

impl Kernel for SumKernel {
    #[inline(always)]
    fn key(&self, a: &[f64], b: &[f64]) -> f64 {
        // max(0, s) == s: a sum of squares is never negative (nor −0)
        sum_sq_diff(a, b)
    }

    #[inline(always)]
    fn box_key(&self, q: &[f64], lo: &[f64], hi: &[f64], far: bool) -> f64 {
        0.0f64.max(box_sum(q, lo, hi, far))
    }
}

/// [`Metric::Euclidean`] with two groups, the first ending at `.0`.
#[derive(Clone, Copy)]
struct TwoSumKernel(usize);

impl Kernel for TwoSumKernel {
    #[inline(always)]
    fn key(&self, a: &[f64], b: &[f64]) -> f64 {
        let (a0, a1) = a.split_at(self.0);
        let (b0, b1) = b.split_at(self.0);
        let s0 = sum_sq_diff(a0, b0);
        let s1 = sum_sq_diff(a1, b1);
        if s1 > s0 {
            s1
        } else {
            s0
        }
    }

    #[inline(always)]
    fn box_key(&self, q: &[f64], lo: &[f64], hi: &[f64], far: bool) -> f64 {
        let e = self.0;
        let s0 = box_sum(&q[..e], &lo[..e], &hi[..e], far);
        let s1 = box_sum(&q[e..], &lo[e..], &hi[e..], far);
        0.0f64.max(s0).max(s1)
    }
}

/// Any metric (no specialisation).
#[derive(Clone, Copy)]
struct AnyKernel<'a>(&'a Metric);

impl Kernel for AnyKernel<'_> {
    #[inline(always)]
    fn key(&self, a: &[f64], b: &[f64]) -> f64 {
        self.0.key(a, b)
    }

    #[inline(always)]
    fn box_key(&self, q: &[f64], lo: &[f64], hi: &[f64], far: bool) -> f64 {
        self.0.box_key(q, lo, hi, far)
    }
}

/// Evaluate `$body` with `$k` bound to the [`Kernel`] of `$metric`.
macro_rules! with_kernel {
    ($metric:expr, |$k:ident| $body:expr) => {
        match $metric {
            Metric::Max => {
                let $k = MaxKernel;
                $body
            }
            Metric::Euclidean(e) if e.len() == 1 => {
                let $k = SumKernel;
                $body
            }
            Metric::Euclidean(e) if e.len() == 2 => {
                let $k = TwoSumKernel(e[0]);
                $body
            }
            m => {
                let $k = AnyKernel(m);
                $body
            }
        }
    };
}

/// Insert `d` into the ascending list `best` of at most `k` keys.
#[inline]
fn push_best(best: &mut Vec<f64>, k: usize, d: f64) {
    if best.len() == k {
        if d >= best[k - 1] {
            return;
        }
        best.pop();
    }
    let pos = best.partition_point(|&b| b <= d);
    best.insert(pos, d);
}

#[derive(Debug, Clone, Copy)]
struct Node {
    start: u32,
    end: u32,
    /// Child indices; `left == 0` marks a leaf (the root is never a child).
    left: u32,
    right: u32,
}

/// An exact k-d tree over row-major points.
#[derive(Debug, Clone)]
pub struct KdTree {
    dim: usize,
    metric: Metric,
    /// Points in tree order.
    pts: Vec<f64>,
    /// Original index of each tree slot.
    ids: Vec<u32>,
    nodes: Vec<Node>,
    /// Per node: `lo[dim]` then `hi[dim]`.
    bounds: Vec<f64>,
}

impl KdTree {
    /// Build over `data` (row-major, `dim` columns).
    pub fn build(data: &[f64], dim: usize, metric: Metric) -> KdTree {
        assert!(dim > 0 && data.len().is_multiple_of(dim));
        let n = data.len() / dim;
        assert!(n < u32::MAX as usize);
        let mut ids: Vec<u32> = (0..n as u32).collect();
        let mut tree = KdTree {
            dim,
            metric,
            pts: Vec::new(),
            ids: Vec::new(),
            nodes: Vec::with_capacity(2 * n / LEAF_SIZE + 1),
            bounds: Vec::new(),
        };
        if n > 0 {
            tree.build_node(data, &mut ids, 0, n);
        }
        tree.pts = Vec::with_capacity(data.len());
        for &i in &ids {
            let i = i as usize;
            tree.pts.extend_from_slice(&data[i * dim..(i + 1) * dim]);
        }
        tree.ids = ids;
        tree
    }

    fn build_node(&mut self, data: &[f64], ids: &mut [u32], start: usize, end: usize) -> u32 {
        let dim = self.dim;
        let mut lo = vec![f64::INFINITY; dim];
        let mut hi = vec![f64::NEG_INFINITY; dim];
        for &i in &ids[start..end] {
            let p = &data[i as usize * dim..(i as usize + 1) * dim];
            for c in 0..dim {
                lo[c] = lo[c].min(p[c]);
                hi[c] = hi[c].max(p[c]);
            }
        }
        let me = self.nodes.len() as u32;
        self.nodes.push(Node {
            start: start as u32,
            end: end as u32,
            left: 0,
            right: 0,
        });
        self.bounds.extend_from_slice(&lo);
        self.bounds.extend_from_slice(&hi);
        if end - start <= LEAF_SIZE {
            return me;
        }
        let (split, spread) = (0..dim)
            .map(|c| (c, hi[c] - lo[c]))
            .fold((0, -1.0), |a, b| if b.1 > a.1 { b } else { a });
        if spread <= 0.0 {
            return me; // all points identical: one (large) leaf
        }
        let mid = (start + end) / 2;
        ids[start..end].select_nth_unstable_by(mid - start, |&a, &b| {
            data[a as usize * dim + split].total_cmp(&data[b as usize * dim + split])
        });
        let left = self.build_node(data, ids, start, mid);
        let right = self.build_node(data, ids, mid, end);
        self.nodes[me as usize].left = left;
        self.nodes[me as usize].right = right;
        me
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    #[inline]
    fn node_box(&self, node: usize) -> (&[f64], &[f64]) {
        let b = &self.bounds[2 * self.dim * node..2 * self.dim * (node + 1)];
        b.split_at(self.dim)
    }

    /// The `k` smallest keys from `q` to the tree's points, skipping the point whose original
    /// index is `skip` (ascending; fewer than `k` when the tree is too small).
    pub fn k_smallest(&self, q: &[f64], k: usize, skip: Option<u32>, best: &mut Vec<f64>) {
        best.clear();
        if self.is_empty() || k == 0 {
            return;
        }
        let skip = skip.unwrap_or(u32::MAX);
        with_kernel!(&self.metric, |kern| self.knn_rec(kern, 0, q, k, skip, best))
    }

    fn knn_rec<K: Kernel>(
        &self,
        kern: K,
        node: usize,
        q: &[f64],
        k: usize,
        skip: u32,
        best: &mut Vec<f64>,
    ) {
        let nd = self.nodes[node];
        if nd.left == 0 {
            let dim = self.dim;
            let (start, end) = (nd.start as usize, nd.end as usize);
            let pts = &self.pts[start * dim..end * dim];
            for (p, &id) in pts.chunks_exact(dim).zip(&self.ids[start..end]) {
                if id == skip {
                    continue;
                }
                let d = kern.key(q, p);
                if best.len() < k || d < best[k - 1] {
                    push_best(best, k, d);
                }
            }
            return;
        }
        let (l, r) = (nd.left as usize, nd.right as usize);
        let (llo, lhi) = self.node_box(l);
        let (rlo, rhi) = self.node_box(r);
        let dl = kern.box_key(q, llo, lhi, false);
        let dr = kern.box_key(q, rlo, rhi, false);
        let order = if dl <= dr {
            [(l, dl), (r, dr)]
        } else {
            [(r, dr), (l, dl)]
        };
        for (child, d) in order {
            if best.len() == k && d >= best[k - 1] {
                continue;
            }
            self.knn_rec(kern, child, q, k, skip, best);
        }
    }

    /// Count of points with `key < r` (`r > 0`) or `key == 0` (`r == 0`); see the module docs.
    pub fn count_below(&self, q: &[f64], r: f64) -> usize {
        let mut out = [0usize];
        self.counts_below_multi(q, &[r], &mut out);
        out[0]
    }

    /// [`KdTree::count_below`] for several radii at once (one traversal; at most 32 radii),
    /// added to `out`.
    pub fn counts_below_multi(&self, q: &[f64], radii: &[f64], out: &mut [usize]) {
        assert!(radii.len() <= 32 && out.len() == radii.len());
        if self.is_empty() || radii.is_empty() {
            return;
        }
        let active = if radii.len() == 32 {
            u32::MAX
        } else {
            (1u32 << radii.len()) - 1
        };
        with_kernel!(&self.metric, |kern| self
            .count_rec(kern, 0, q, radii, active, out))
    }

    fn count_rec<K: Kernel>(
        &self,
        kern: K,
        node: usize,
        q: &[f64],
        radii: &[f64],
        mut active: u32,
        out: &mut [usize],
    ) {
        let nd = self.nodes[node];
        let (lo, hi) = self.node_box(node);
        let dmin = kern.box_key(q, lo, hi, false);
        let mut dmax = f64::NAN;
        let mut bits = active;
        while bits != 0 {
            let j = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let r = radii[j];
            let inside = |d: f64| if r <= 0.0 { d <= 0.0 } else { d < r };
            if !inside(dmin) {
                active &= !(1 << j);
                continue;
            }
            if dmax.is_nan() {
                dmax = kern.box_key(q, lo, hi, true);
            }
            if inside(dmax) {
                out[j] += (nd.end - nd.start) as usize;
                active &= !(1 << j);
            }
        }
        if active == 0 {
            return;
        }
        if nd.left == 0 {
            let dim = self.dim;
            let (start, end) = (nd.start as usize, nd.end as usize);
            for p in self.pts[start * dim..end * dim].chunks_exact(dim) {
                let d = kern.key(q, p);
                let mut bits = active;
                while bits != 0 {
                    let j = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let r = radii[j];
                    if (r <= 0.0 && d <= 0.0) || d < r {
                        out[j] += 1;
                    }
                }
            }
            return;
        }
        self.count_rec(kern, nd.left as usize, q, radii, active, out);
        self.count_rec(kern, nd.right as usize, q, radii, active, out);
    }
}

/// A sorted copy of 1-D data.
#[derive(Debug, Clone)]
pub struct Sorted1d {
    vals: Vec<f64>,
    /// Keys are squared differences ([`Metric::Euclidean`]) instead of absolute differences.
    squared: bool,
    /// Position of each original point in `vals`.
    rank: Vec<u32>,
    /// Original index of each position (the inverse of `rank`).
    order: Vec<u32>,
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
    fn key(&self, d: f64) -> f64 {
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
fn gallop(len: usize, holds: impl Fn(usize) -> bool) -> usize {
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
fn total_key(v: f64) -> u64 {
    let b = v.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

/// Whether a metric on `dim` coordinates is, for 2-D points, a monotone function of the
/// Chebyshev distance (`Some(squared)`: the key is the Chebyshev distance, or its square).
fn plane_metric(metric: &Metric, dim: usize) -> Option<bool> {
    if dim != 2 {
        return None;
    }
    match metric {
        Metric::Max => Some(false),
        Metric::Euclidean(ends) if ends[..] == [1, 2] => Some(true),
        Metric::Euclidean(_) => None,
    }
}

/// Exact neighbour search in the plane for [`Metric::Max`] and "Euclidean per 1-D group"
/// (`Metric::Euclidean([1, 2])`), whose keys are `f(max(|dx|, |dy|))` with `f` the identity or
/// the square (monotone, so the k-th smallest key is `f` of the k-th smallest Chebyshev
/// distance, bit for bit).
///
/// The points are cut, in x order, into vertical strips of equal count (so heavy tails cost
/// nothing), and each strip is sorted by y. A k-NN query walks up and down in y inside its own
/// strip and then the neighbouring strips, stopping a walk when |dy| reaches the current k-th
/// distance and stopping the strips when the x gap does; the memory touched is contiguous.
#[derive(Debug, Clone)]
pub struct Plane {
    squared: bool,
    /// Strip `t` holds slots `starts[t]..starts[t + 1]`.
    starts: Vec<usize>,
    /// Smallest and largest x of each strip.
    xlo: Vec<f64>,
    xhi: Vec<f64>,
    /// Slot order: strip by strip, ascending y within a strip.
    xs: Vec<f64>,
    ys: Vec<f64>,
    ids: Vec<u32>,
    /// Strip of each slot.
    strip: Vec<u32>,
    /// Slot of each original point.
    slot: Vec<u32>,
}

impl Plane {
    /// Build over row-major 2-D `data`, strips of about `4·√(N/k)` points (`k`: the neighbour
    /// order the structure will mostly serve).
    pub fn build(data: &[f64], squared: bool, k: usize) -> Plane {
        let n = data.len() / 2;
        let xs_in: Vec<f64> = data.iter().step_by(2).copied().collect();
        let order = sorted_order(&xs_in);
        let width = ((4.0 * (n as f64 / k.max(1) as f64).sqrt()) as usize).clamp(8, n.max(8));
        let mut p = Plane {
            squared,
            starts: vec![0],
            xlo: Vec::new(),
            xhi: Vec::new(),
            xs: Vec::with_capacity(n),
            ys: Vec::with_capacity(n),
            ids: Vec::with_capacity(n),
            strip: Vec::with_capacity(n),
            slot: vec![0; n],
        };
        let mut keyed: Vec<(u64, u32)> = Vec::with_capacity(width);
        for (t, chunk) in order.chunks(width).enumerate() {
            p.xlo.push(xs_in[chunk[0] as usize]);
            p.xhi.push(xs_in[chunk[chunk.len() - 1] as usize]);
            keyed.clear();
            keyed.extend(
                chunk
                    .iter()
                    .map(|&i| (total_key(data[2 * i as usize + 1]), i)),
            );
            keyed.sort_unstable();
            for &(_, i) in &keyed {
                p.slot[i as usize] = p.xs.len() as u32;
                p.xs.push(data[2 * i as usize]);
                p.ys.push(data[2 * i as usize + 1]);
                p.ids.push(i);
                p.strip.push(t as u32);
            }
            p.starts.push(p.xs.len());
        }
        p
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    #[inline]
    fn key(&self, d: f64) -> f64 {
        if self.squared {
            d * d
        } else {
            d
        }
    }

    /// Walk strip `t` from position `from` up and down in y, inserting Chebyshev distances into
    /// `best` (at most `k`, ascending); `skip` is a slot to leave out.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn walk(
        &self,
        t: usize,
        from: usize,
        skip: usize,
        xq: f64,
        yq: f64,
        k: usize,
        best: &mut Vec<f64>,
    ) {
        let (lo, hi) = (self.starts[t], self.starts[t + 1]);
        let mut bound = if best.len() == k {
            best[k - 1]
        } else {
            f64::INFINITY
        };
        for j in from..hi {
            if j == skip {
                continue;
            }
            let dy = self.ys[j] - yq;
            if dy >= bound {
                break;
            }
            let dx = (self.xs[j] - xq).abs();
            let d = if dx > dy { dx } else { dy };
            if d < bound {
                push_best(best, k, d);
                if best.len() == k {
                    bound = best[k - 1];
                }
            }
        }
        for j in (lo..from).rev() {
            if j == skip {
                continue;
            }
            let dy = yq - self.ys[j];
            if dy >= bound {
                break;
            }
            let dx = (self.xs[j] - xq).abs();
            let d = if dx > dy { dx } else { dy };
            if d < bound {
                push_best(best, k, d);
                if best.len() == k {
                    bound = best[k - 1];
                }
            }
        }
    }

    /// First position of strip `t` whose y is not below `yq`.
    #[inline]
    fn y_position(&self, t: usize, yq: f64) -> usize {
        let (lo, hi) = (self.starts[t], self.starts[t + 1]);
        lo + self.ys[lo..hi].partition_point(|&v| v < yq)
    }

    /// The `k` smallest keys from slot `s` to the other points, ascending, into `best`.
    pub fn k_smallest_of_slot(&self, s: usize, k: usize, best: &mut Vec<f64>) {
        best.clear();
        if k == 0 {
            return;
        }
        let (xq, yq) = (self.xs[s], self.ys[s]);
        let t = self.strip[s] as usize;
        // own strip first: the walk starts just above the query itself
        self.walk(t, s, s, xq, yq, k, best);
        let full = |b: &Vec<f64>| {
            if b.len() == k {
                b[k - 1]
            } else {
                f64::INFINITY
            }
        };
        for u in (0..t).rev() {
            if xq - self.xhi[u] >= full(best) {
                break;
            }
            let from = self.y_position(u, yq);
            self.walk(u, from, usize::MAX, xq, yq, k, best);
        }
        for u in t + 1..self.xlo.len() {
            if self.xlo[u] - xq >= full(best) {
                break;
            }
            let from = self.y_position(u, yq);
            self.walk(u, from, usize::MAX, xq, yq, k, best);
        }
        if self.squared {
            for d in best.iter_mut() {
                *d = *d * *d;
            }
        }
    }

    /// Count of points with `key < r` (`r > 0`) or `key == 0` (`r <= 0`) from `(xq, yq)`.
    pub fn count_below(&self, xq: f64, yq: f64, r: f64) -> usize {
        let inside = |d: f64| {
            let kd = self.key(d);
            if r > 0.0 {
                kd < r
            } else {
                kd <= 0.0
            }
        };
        let mut c = 0;
        let strips = self.xlo.len();
        // the strips whose x range can hold a point inside: a contiguous run around xq
        let first = self.xhi.partition_point(|&h| h < xq && !inside(xq - h));
        for u in first..strips {
            let (xlo, xhi) = (self.xlo[u], self.xhi[u]);
            if xlo > xq && !inside(xlo - xq) {
                break;
            }
            let (lo, hi) = (self.starts[u], self.starts[u + 1]);
            let ys = &self.ys[lo..hi];
            let mid = ys.partition_point(|&v| v < yq);
            let top = mid + gallop(hi - lo - mid, |t| inside(ys[mid + t] - yq));
            let bottom = mid - gallop(mid, |t| inside(yq - ys[mid - 1 - t]));
            let far = (xq - xlo).max(xhi - xq);
            if inside(far) {
                c += top - bottom;
            } else {
                c += (lo + bottom..lo + top)
                    .filter(|&j| inside((self.xs[j] - xq).abs()))
                    .count();
            }
        }
        c
    }
}

/// A neighbour index over one point set, answering queries by the index of a member point.
#[derive(Debug, Clone)]
pub enum Index {
    Tree(KdTree, Vec<f64>),
    Brute {
        data: Vec<f64>,
        dim: usize,
        metric: Metric,
    },
    Sorted(Sorted1d, Vec<f64>),
    Plane(Plane, Vec<f64>),
}

/// Which structure [`Index::auto`] picks.
pub fn use_tree(n: usize, dim: usize) -> bool {
    n >= 128 && dim <= 12
}

/// Per member, the entries `best[k - 1]` for each k of `ks` (`+inf` where `best` is shorter).
#[inline]
fn push_orders(best: &[f64], ks: &[usize], out: &mut Vec<f64>) {
    for &k in ks {
        out.push(if k > 0 && best.len() >= k {
            best[k - 1]
        } else {
            f64::INFINITY
        });
    }
}

/// Rows of a flat row-major `n × ks` table, one vector per column.
fn columns(flat: Vec<f64>, cols: usize) -> Vec<Vec<f64>> {
    (0..cols)
        .map(|c| flat.iter().skip(c).step_by(cols).copied().collect())
        .collect()
}

impl Index {
    /// Sorted array for 1-D; strips for 2-D with a max-type metric ([`Plane`], N ≥ 32); a k-d
    /// tree for low dimension and N ≥ 128; brute force otherwise.
    pub fn auto(data: Vec<f64>, dim: usize, metric: Metric) -> Index {
        Index::auto_for(data, dim, metric, 3)
    }

    /// [`Index::auto`] with `k_hint`, the neighbour order the index will mostly serve (it only
    /// sizes the strips of [`Plane`]).
    pub fn auto_for(data: Vec<f64>, dim: usize, metric: Metric, k_hint: usize) -> Index {
        let n = data.len() / dim.max(1);
        if dim == 1 {
            Index::Sorted(Sorted1d::new(&data, &metric), data)
        } else if let (Some(squared), true) = (plane_metric(&metric, dim), n >= 32) {
            Index::Plane(Plane::build(&data, squared, k_hint), data)
        } else if use_tree(n, dim) {
            Index::Tree(KdTree::build(&data, dim, metric), data)
        } else {
            Index::Brute { data, dim, metric }
        }
    }

    /// Force a structure: "tree", "brute", "sorted" (1-D only) or "plane" (2-D, max-type
    /// metrics only); for tests and benchmarks.
    pub fn with(kind: &str, data: Vec<f64>, dim: usize, metric: Metric) -> Index {
        match kind {
            "tree" => Index::Tree(KdTree::build(&data, dim, metric), data),
            "sorted" if dim == 1 => Index::Sorted(Sorted1d::new(&data, &metric), data),
            "plane" if plane_metric(&metric, dim).is_some() => {
                let squared = plane_metric(&metric, dim) == Some(true);
                Index::Plane(Plane::build(&data, squared, 3), data)
            }
            _ => Index::Brute { data, dim, metric },
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Index::Tree(_, d) | Index::Sorted(_, d) | Index::Plane(_, d) => d.len() / self.dim(),
            Index::Brute { data, dim, .. } => data.len() / dim,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dim(&self) -> usize {
        match self {
            Index::Tree(t, _) => t.dim,
            Index::Sorted(..) => 1,
            Index::Plane(..) => 2,
            Index::Brute { dim, .. } => *dim,
        }
    }

    fn data(&self) -> &[f64] {
        match self {
            Index::Tree(_, d) | Index::Sorted(_, d) | Index::Plane(_, d) => d,
            Index::Brute { data, .. } => data,
        }
    }

    /// Key of the k-th nearest other point for each member in `range` (`+inf` when there are
    /// fewer than k other points).
    pub fn kth_keys(&self, k: usize, range: Range<usize>) -> Vec<f64> {
        self.kth_keys_multi(&[k], range)
    }

    /// [`Index::kth_keys`] for several orders at once (one search with the largest), flat and
    /// row-major: member `i`, order `ks[c]` at `(i - range.start) * ks.len() + c`.
    pub fn kth_keys_multi(&self, ks: &[usize], range: Range<usize>) -> Vec<f64> {
        let kmax = ks.iter().copied().max().unwrap_or(0);
        let mut out = Vec::with_capacity(range.len() * ks.len());
        let mut best = Vec::with_capacity(kmax + 1);
        match self {
            Index::Tree(t, data) => {
                let dim = t.dim;
                for i in range {
                    t.k_smallest(
                        &data[i * dim..(i + 1) * dim],
                        kmax,
                        Some(i as u32),
                        &mut best,
                    );
                    push_orders(&best, ks, &mut out);
                }
            }
            Index::Sorted(s, _) => {
                for i in range {
                    s.k_smallest_of_point(i, kmax, &mut best);
                    push_orders(&best, ks, &mut out);
                }
            }
            Index::Plane(p, _) => {
                for i in range {
                    p.k_smallest_of_slot(p.slot[i] as usize, kmax, &mut best);
                    push_orders(&best, ks, &mut out);
                }
            }
            Index::Brute { data, dim, metric } => {
                return brute_kth_multi(data, *dim, metric, ks, range);
            }
        }
        out
    }

    /// [`Index::count_below`] for members `range` with per-member radii `radii[i - range.start]`.
    pub fn counts_below(&self, radii: &[f64], range: Range<usize>) -> Vec<usize> {
        debug_assert_eq!(radii.len(), range.len());
        match self {
            Index::Tree(t, data) => {
                let dim = t.dim;
                range
                    .zip(radii)
                    .map(|(i, &r)| t.count_below(&data[i * dim..(i + 1) * dim], r))
                    .collect()
            }
            Index::Sorted(s, _) => range
                .zip(radii)
                .map(|(i, &r)| s.count_member(i, r))
                .collect(),
            Index::Plane(p, data) => range
                .zip(radii)
                .map(|(i, &r)| p.count_below(data[2 * i], data[2 * i + 1], r))
                .collect(),
            Index::Brute { data, dim, metric } => brute_counts(data, *dim, metric, radii, range),
        }
    }

    /// [`Index::counts_below`] for several radius sets at once; flat, row-major (member
    /// `i`, set `c` at `(i - range.start) * sets.len() + c`). Brute force and the tree compute
    /// each key once for all the sets.
    pub fn counts_below_multi(&self, sets: &[&[f64]], range: Range<usize>) -> Vec<usize> {
        let m = sets.len();
        match self {
            Index::Brute { data, dim, metric } => {
                brute_counts_multi(data, *dim, metric, sets, range)
            }
            Index::Tree(t, data) if m <= 32 => {
                let dim = t.dim;
                let mut out = vec![0usize; range.len() * m];
                let mut radii = vec![0.0; m];
                for (row, i) in range.clone().enumerate() {
                    for (r, set) in radii.iter_mut().zip(sets) {
                        *r = set[row];
                    }
                    t.counts_below_multi(
                        &data[i * dim..(i + 1) * dim],
                        &radii,
                        &mut out[row * m..(row + 1) * m],
                    );
                }
                out
            }
            _ => {
                let per: Vec<Vec<usize>> = sets
                    .iter()
                    .map(|set| self.counts_below(set, range.clone()))
                    .collect();
                (0..range.len() * m).map(|f| per[f % m][f / m]).collect()
            }
        }
    }

    /// Parallel [`Index::counts_below_multi`] over all members, one vector per radius set.
    pub fn all_counts_below_multi(&self, sets: &[Vec<f64>]) -> Vec<Vec<usize>> {
        let m = sets.len();
        match self {
            Index::Brute { .. } | Index::Tree(..) if m > 1 => {
                let refs: Vec<&[f64]> = sets.iter().map(|v| &v[..]).collect();
                let flat = par_chunks(self.len(), |r| {
                    let local: Vec<&[f64]> = refs.iter().map(|v| &v[r.clone()]).collect();
                    self.counts_below_multi(&local, r)
                });
                (0..m)
                    .map(|c| flat.iter().skip(c).step_by(m).copied().collect())
                    .collect()
            }
            _ => sets.iter().map(|set| self.all_counts_below(set)).collect(),
        }
    }

    /// Count for one member (see the module docs).
    pub fn count_below(&self, i: usize, r: f64) -> usize {
        self.counts_below(&[r], i..i + 1)[0]
    }

    /// The same counts for arbitrary query points (not necessarily members).
    pub fn count_point(&self, q: &[f64], r: f64) -> usize {
        match self {
            Index::Tree(t, _) => t.count_below(q, r),
            Index::Sorted(s, _) => s.count_below(q[0], r),
            Index::Plane(p, _) => p.count_below(q[0], q[1], r),
            Index::Brute { data, dim, metric } => data
                .chunks_exact(*dim)
                .filter(|p| {
                    let d = metric.key(q, p);
                    if r <= 0.0 {
                        d <= 0.0
                    } else {
                        d < r
                    }
                })
                .count(),
        }
    }

    /// Parallel [`Index::kth_keys`] over all members (deterministic: fixed chunks).
    pub fn all_kth_keys(&self, k: usize) -> Vec<f64> {
        self.all_kth_keys_multi(&[k]).pop().unwrap_or_default()
    }

    /// Parallel [`Index::kth_keys_multi`] over all members, one vector per order of `ks`. A tree
    /// or strips answer their members in their own slot order (neighbouring queries share the
    /// cache).
    pub fn all_kth_keys_multi(&self, ks: &[usize]) -> Vec<Vec<f64>> {
        let kmax = ks.iter().copied().max().unwrap_or(0);
        let nk = ks.len();
        let flat = match self {
            Index::Tree(t, _) => {
                let dim = t.dim;
                let by_slot = par_chunks(t.len(), |r| {
                    let mut best = Vec::with_capacity(kmax + 1);
                    let mut out = Vec::with_capacity(r.len() * nk);
                    for s in r {
                        t.k_smallest(
                            &t.pts[s * dim..(s + 1) * dim],
                            kmax,
                            Some(t.ids[s]),
                            &mut best,
                        );
                        push_orders(&best, ks, &mut out);
                    }
                    out
                });
                unpermute_rows(&t.ids, by_slot, nk)
            }
            Index::Plane(p, _) => {
                let by_slot = par_chunks(p.len(), |r| {
                    let mut best = Vec::with_capacity(kmax + 1);
                    let mut out = Vec::with_capacity(r.len() * nk);
                    for s in r {
                        p.k_smallest_of_slot(s, kmax, &mut best);
                        push_orders(&best, ks, &mut out);
                    }
                    out
                });
                unpermute_rows(&p.ids, by_slot, nk)
            }
            _ => par_chunks(self.len(), |r| self.kth_keys_multi(ks, r)),
        };
        columns(flat, nk)
    }

    /// Parallel [`Index::counts_below`] over all members.
    pub fn all_counts_below(&self, radii: &[f64]) -> Vec<usize> {
        match self {
            Index::Tree(t, _) => {
                let dim = t.dim;
                let by_slot = par_chunks(t.len(), |r| {
                    r.map(|s| {
                        t.count_below(&t.pts[s * dim..(s + 1) * dim], radii[t.ids[s] as usize])
                    })
                    .collect()
                });
                unpermute_rows(&t.ids, by_slot, 1)
            }
            Index::Plane(p, _) => {
                let by_slot = par_chunks(p.len(), |r| {
                    r.map(|s| p.count_below(p.xs[s], p.ys[s], radii[p.ids[s] as usize]))
                        .collect()
                });
                unpermute_rows(&p.ids, by_slot, 1)
            }
            Index::Sorted(s, _) => {
                let by_pos: Vec<f64> = s.order.iter().map(|&i| radii[i as usize]).collect();
                unpermute_rows(&s.order, s.counts_sweep(&by_pos), 1)
            }
            _ => par_chunks(self.len(), |r| self.counts_below(&radii[r.clone()], r)),
        }
    }

    /// Whether [`Index::all_counts_below`] runs on one thread (the 1-D sweeps).
    pub fn is_sequential(&self) -> bool {
        matches!(self, Index::Sorted(..))
    }

    /// Row `i` of the data.
    pub fn point(&self, i: usize) -> &[f64] {
        let d = self.dim();
        &self.data()[i * d..(i + 1) * d]
    }
}

/// Rows of `width` values listed by slot, back in original index order (`ids[slot]`).
fn unpermute_rows<T: Copy + Default>(ids: &[u32], by_slot: Vec<T>, width: usize) -> Vec<T> {
    let mut out = vec![T::default(); by_slot.len()];
    for (s, row) in by_slot.chunks_exact(width.max(1)).enumerate() {
        let i = ids[s] as usize;
        out[i * width..(i + 1) * width].copy_from_slice(row);
    }
    out
}

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

fn brute_kth_impl<K: Kernel>(
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

fn brute_counts_impl<K: Kernel>(
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

/// Run `a` on a second thread (when there is more than one) and `b` on this one.
pub fn join<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    if threads() <= 1 {
        return (a(), b());
    }
    std::thread::scope(|s| {
        let h = s.spawn(a);
        let rb = b();
        (h.join().expect("k-NN worker panicked"), rb)
    })
}

/// Number of worker threads (at least 1).
fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 16)
}

/// Map `f` over fixed chunks of `0..n` on up to [`threads`] threads and concatenate in order.
/// The chunking does not depend on the thread count, and `f` is per-index, so the result is the
/// same for any number of threads.
pub fn par_chunks<T: Send>(n: usize, f: impl Fn(Range<usize>) -> Vec<T> + Sync) -> Vec<T> {
    let chunks: Vec<Range<usize>> = (0..n.div_ceil(CHUNK))
        .map(|c| c * CHUNK..((c + 1) * CHUNK).min(n))
        .collect();
    let t = threads().min(chunks.len());
    if t <= 1 {
        return chunks.into_iter().flat_map(&f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut parts: Vec<(usize, Vec<T>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..t)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let c = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if c >= chunks.len() {
                            break;
                        }
                        mine.push((c, f(chunks[c].clone())));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("k-NN worker panicked"))
            .collect()
    });
    parts.sort_by_key(|p| p.0);
    parts.into_iter().flat_map(|p| p.1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estimate::rng::SplitMix64;
    use proptest::prelude::*;

    fn data_from(vals: &[u8], dim: usize, scale: f64) -> Vec<f64> {
        // small integer grid => many ties
        let n = vals.len() / dim;
        vals[..n * dim]
            .iter()
            .map(|&v| (v % 7) as f64 * scale)
            .collect()
    }

    fn check_all(data: Vec<f64>, dim: usize, metric: Metric, k: usize) {
        let brute = Index::with("brute", data.clone(), dim, metric.clone());
        let tree = Index::with("tree", data.clone(), dim, metric.clone());
        let n = brute.len();
        let kb = brute.kth_keys(k, 0..n);
        let kt = tree.kth_keys(k, 0..n);
        assert_eq!(kb, kt, "kth keys tree vs brute");
        if dim == 1 {
            let s = Index::with("sorted", data.clone(), 1, metric.clone());
            assert_eq!(kb, s.kth_keys(k, 0..n), "kth keys sorted vs brute");
        }
        let plane = plane_metric(&metric, dim)
            .map(|_| Index::with("plane", data.clone(), dim, metric.clone()));
        if let Some(p) = &plane {
            assert_eq!(kb, p.kth_keys(k, 0..n), "kth keys plane vs brute");
            assert_eq!(kb, p.all_kth_keys(k), "all kth keys plane vs brute");
        }
        // several orders at once agree with one at a time
        let ks = [k, 1, k + 2];
        let multi = tree.all_kth_keys_multi(&ks);
        for (c, &kk) in ks.iter().enumerate() {
            assert_eq!(
                multi[c],
                brute.kth_keys(kk, 0..n),
                "multi-order tree vs brute"
            );
        }
        for scale in [0.0, 0.5, 1.0, 1.7] {
            let radii: Vec<f64> = kb
                .iter()
                .map(|&r| if r.is_finite() { r * scale } else { 1.0 })
                .collect();
            let cb = brute.counts_below(&radii, 0..n);
            assert_eq!(cb, tree.counts_below(&radii, 0..n), "counts tree vs brute");
            if dim == 1 {
                let s = Index::with("sorted", data.clone(), 1, metric.clone());
                assert_eq!(cb, s.counts_below(&radii, 0..n), "counts sorted vs brute");
                assert_eq!(
                    cb,
                    s.all_counts_below(&radii),
                    "sweep counts sorted vs brute"
                );
            }
            if let Some(p) = &plane {
                assert_eq!(cb, p.counts_below(&radii, 0..n), "counts plane vs brute");
                assert_eq!(cb, p.all_counts_below(&radii), "all counts plane vs brute");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn tree_matches_brute_with_ties(vals in proptest::collection::vec(any::<u8>(), 0..600), dim in 1usize..5, k in 1usize..6) {
            let data = data_from(&vals, dim, 0.25);
            check_all(data.clone(), dim, Metric::Max, k);
            check_all(data.clone(), dim, Metric::euclidean(dim), k);
            if dim >= 2 {
                check_all(data, dim, Metric::Euclidean(vec![1, dim]), k);
            }
        }

        #[test]
        fn tree_matches_brute_continuous(seed in any::<u64>(), n in 1usize..700, dim in 1usize..6, k in 1usize..12) {
            let mut g = SplitMix64::new(seed);
            let data: Vec<f64> = (0..n * dim).map(|_| g.normal_pair().0).collect();
            check_all(data.clone(), dim, Metric::Max, k);
            if dim >= 2 {
                check_all(data.clone(), dim, Metric::Euclidean(vec![1, dim]), k);
            }
            check_all(data, dim, Metric::Euclidean(vec![dim / 2 + 1, dim].into_iter().filter(|&e| e <= dim).collect::<std::collections::BTreeSet<_>>().into_iter().collect()), k);
        }
    }

    #[test]
    fn plane_and_sweeps_on_large_and_heavy_tailed_data() {
        // Cauchy-like tails (ratio of normals) and a block of exact duplicates.
        let mut g = SplitMix64::new(21);
        let mut data: Vec<f64> = (0..2 * 3000)
            .map(|_| {
                let (a, b) = g.normal_pair();
                a / b
            })
            .collect();
        for i in 0..40 {
            data[2 * i] = 0.5;
            data[2 * i + 1] = -1.25;
        }
        for metric in [Metric::Max, Metric::Euclidean(vec![1, 2])] {
            let brute = Index::with("brute", data.clone(), 2, metric.clone());
            let plane = Index::auto_for(data.clone(), 2, metric.clone(), 5);
            assert!(matches!(plane, Index::Plane(..)));
            let want = brute.kth_keys_multi(&[1, 5, 10], 0..3000);
            let got = plane.all_kth_keys_multi(&[1, 5, 10]);
            for (c, g) in got.iter().enumerate() {
                let w: Vec<f64> = want.iter().skip(c).step_by(3).copied().collect();
                assert_eq!(g, &w);
                assert_eq!(plane.all_counts_below(&w), brute.counts_below(&w, 0..3000));
            }
            let xs: Vec<f64> = data.iter().step_by(2).copied().collect();
            let m1 = if metric == Metric::Max {
                Metric::Max
            } else {
                Metric::euclidean(1)
            };
            let sorted = Index::auto(xs.clone(), 1, m1.clone());
            let bx = Index::with("brute", xs, 1, m1);
            let r = &got[1];
            assert_eq!(sorted.all_counts_below(r), bx.counts_below(r, 0..3000));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn sorted_order_is_a_stable_total_order(vals in proptest::collection::vec(any::<u16>(), 0..3000), scale in prop_oneof![Just(1e-9), Just(1.0), Just(1e300)]) {
            // many ties, equal upper bits and signed zeros
            let data: Vec<f64> = vals.iter().map(|&v| match v % 5 { 0 => -0.0, 1 => 0.0, _ => (v as f64 - 30000.0) * scale + 1.0 }).collect();
            let got = sorted_order(&data);
            let mut want: Vec<u32> = (0..data.len() as u32).collect();
            want.sort_by(|&a, &b| data[a as usize].total_cmp(&data[b as usize]).then(a.cmp(&b)));
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn parallel_is_deterministic() {
        let mut g = SplitMix64::new(9);
        let data: Vec<f64> = (0..3 * 5000).map(|_| g.uniform()).collect();
        let idx = Index::auto(data.clone(), 3, Metric::Max);
        let a = idx.all_kth_keys(4);
        let b = idx.kth_keys(4, 0..5000);
        assert_eq!(a, b);
        let ca = idx.all_counts_below(&a);
        assert_eq!(ca, idx.counts_below(&a, 0..5000));
    }
}
