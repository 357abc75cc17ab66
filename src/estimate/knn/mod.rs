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

// The search structures use `with_kernel!` above (macros are visible to the modules declared
// after them).
mod brute;
mod plane;
mod sorted;
mod tree;

pub use brute::*;
pub use plane::*;
pub use sorted::*;
pub use tree::*;

#[cfg(test)]
mod tests;
