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
//!   monotone).
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

    /// Per-slot values back in original index order.
    fn unpermute<T: Copy>(&self, by_slot: Vec<T>, fill: T) -> Vec<T> {
        let mut out = vec![fill; by_slot.len()];
        for (s, v) in by_slot.into_iter().enumerate() {
            out[self.ids[s] as usize] = v;
        }
        out
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
        self.knn_rec(0, q, k, skip.unwrap_or(u32::MAX), best);
    }

    fn knn_rec(&self, node: usize, q: &[f64], k: usize, skip: u32, best: &mut Vec<f64>) {
        let nd = self.nodes[node];
        if nd.left == 0 {
            let dim = self.dim;
            for s in nd.start as usize..nd.end as usize {
                if self.ids[s] == skip {
                    continue;
                }
                let d = self.metric.key(q, &self.pts[s * dim..(s + 1) * dim]);
                if best.len() < k || d < best[k - 1] {
                    push_best(best, k, d);
                }
            }
            return;
        }
        let (l, r) = (nd.left as usize, nd.right as usize);
        let (llo, lhi) = self.node_box(l);
        let (rlo, rhi) = self.node_box(r);
        let dl = self.metric.box_key(q, llo, lhi, false);
        let dr = self.metric.box_key(q, rlo, rhi, false);
        let order = if dl <= dr {
            [(l, dl), (r, dr)]
        } else {
            [(r, dr), (l, dl)]
        };
        for (child, d) in order {
            if best.len() == k && d >= best[k - 1] {
                continue;
            }
            self.knn_rec(child, q, k, skip, best);
        }
    }

    /// Count of points with `key < r` (`r > 0`) or `key == 0` (`r == 0`); see the module docs.
    pub fn count_below(&self, q: &[f64], r: f64) -> usize {
        if self.is_empty() {
            return 0;
        }
        self.count_rec(0, q, r, r <= 0.0)
    }

    fn count_rec(&self, node: usize, q: &[f64], r: f64, inclusive: bool) -> usize {
        let nd = self.nodes[node];
        let (lo, hi) = self.node_box(node);
        let dmin = self.metric.box_key(q, lo, hi, false);
        if (inclusive && dmin > r) || (!inclusive && dmin >= r) {
            return 0;
        }
        let dmax = self.metric.box_key(q, lo, hi, true);
        if (inclusive && dmax <= r) || (!inclusive && dmax < r) {
            return (nd.end - nd.start) as usize;
        }
        if nd.left == 0 {
            let dim = self.dim;
            let mut c = 0;
            for s in nd.start as usize..nd.end as usize {
                let d = self.metric.key(q, &self.pts[s * dim..(s + 1) * dim]);
                if (inclusive && d <= r) || (!inclusive && d < r) {
                    c += 1;
                }
            }
            return c;
        }
        self.count_rec(nd.left as usize, q, r, inclusive)
            + self.count_rec(nd.right as usize, q, r, inclusive)
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
}

impl Sorted1d {
    pub fn new(data: &[f64], metric: &Metric) -> Sorted1d {
        let mut order: Vec<u32> = (0..data.len() as u32).collect();
        order.sort_by(|&a, &b| data[a as usize].total_cmp(&data[b as usize]));
        let mut rank = vec![0u32; data.len()];
        for (pos, &i) in order.iter().enumerate() {
            rank[i as usize] = pos as u32;
        }
        Sorted1d {
            vals: order.iter().map(|&i| data[i as usize]).collect(),
            rank,
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

    /// Key of the k-th smallest |x_j − x_i| over j ≠ i (the point itself is skipped by position); `None`
    /// when there are fewer than k other points.
    pub fn kth_of_point(&self, i: usize, k: usize) -> Option<f64> {
        let n = self.vals.len();
        if k == 0 || n < k + 1 {
            return None;
        }
        let p = self.rank[i] as usize;
        let v = self.vals[p];
        let (mut l, mut r) = (p, p + 1); // candidates: vals[l-1] on the left, vals[r] on the right
        let mut last = 0.0;
        for _ in 0..k {
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
                last = dl;
                l -= 1;
            } else {
                last = dr;
                r += 1;
            }
        }
        Some(self.key(last))
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
}

/// Which structure [`Index::auto`] picks.
pub fn use_tree(n: usize, dim: usize) -> bool {
    n >= 128 && dim <= 12
}

impl Index {
    /// Sorted array for 1-D, a k-d tree for low dimension and N ≥ 128, brute force otherwise.
    pub fn auto(data: Vec<f64>, dim: usize, metric: Metric) -> Index {
        let n = data.len() / dim.max(1);
        if dim == 1 {
            Index::Sorted(Sorted1d::new(&data, &metric), data)
        } else if use_tree(n, dim) {
            Index::Tree(KdTree::build(&data, dim, metric), data)
        } else {
            Index::Brute { data, dim, metric }
        }
    }

    /// Force a structure: "tree", "brute" or "sorted" (1-D only); for tests and benchmarks.
    pub fn with(kind: &str, data: Vec<f64>, dim: usize, metric: Metric) -> Index {
        match kind {
            "tree" => Index::Tree(KdTree::build(&data, dim, metric), data),
            "sorted" if dim == 1 => Index::Sorted(Sorted1d::new(&data, &metric), data),
            _ => Index::Brute { data, dim, metric },
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Index::Tree(_, d) | Index::Sorted(_, d) => d.len() / self.dim(),
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
            Index::Brute { dim, .. } => *dim,
        }
    }

    fn data(&self) -> &[f64] {
        match self {
            Index::Tree(_, d) | Index::Sorted(_, d) => d,
            Index::Brute { data, .. } => data,
        }
    }

    /// Key of the k-th nearest other point for each member in `range` (`+inf` when there are
    /// fewer than k other points).
    pub fn kth_keys(&self, k: usize, range: Range<usize>) -> Vec<f64> {
        match self {
            Index::Tree(t, data) => {
                let dim = t.dim;
                let mut best = Vec::with_capacity(k + 1);
                range
                    .map(|i| {
                        t.k_smallest(&data[i * dim..(i + 1) * dim], k, Some(i as u32), &mut best);
                        if best.len() == k {
                            best[k - 1]
                        } else {
                            f64::INFINITY
                        }
                    })
                    .collect()
            }
            Index::Sorted(s, _) => range
                .map(|i| s.kth_of_point(i, k).unwrap_or(f64::INFINITY))
                .collect(),
            Index::Brute { data, dim, metric } => brute_kth(data, *dim, metric, k, range),
        }
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
            Index::Sorted(s, data) => range
                .zip(radii)
                .map(|(i, &r)| s.count_below(data[i], r))
                .collect(),
            Index::Brute { data, dim, metric } => brute_counts(data, *dim, metric, radii, range),
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

    /// Parallel [`Index::kth_keys`] over all members (deterministic: fixed chunks). A tree
    /// answers its members in tree order (neighbouring queries share the cache).
    pub fn all_kth_keys(&self, k: usize) -> Vec<f64> {
        if let Index::Tree(t, _) = self {
            let dim = t.dim;
            let by_slot = par_chunks(t.len(), |r| {
                let mut best = Vec::with_capacity(k + 1);
                r.map(|s| {
                    t.k_smallest(&t.pts[s * dim..(s + 1) * dim], k, Some(t.ids[s]), &mut best);
                    if best.len() == k {
                        best[k - 1]
                    } else {
                        f64::INFINITY
                    }
                })
                .collect()
            });
            return t.unpermute(by_slot, f64::INFINITY);
        }
        par_chunks(self.len(), |r| self.kth_keys(k, r))
    }

    /// Parallel [`Index::counts_below`] over all members.
    pub fn all_counts_below(&self, radii: &[f64]) -> Vec<usize> {
        if let Index::Tree(t, _) = self {
            let dim = t.dim;
            let by_slot = par_chunks(t.len(), |r| {
                r.map(|s| t.count_below(&t.pts[s * dim..(s + 1) * dim], radii[t.ids[s] as usize]))
                    .collect()
            });
            return t.unpermute(by_slot, 0);
        }
        par_chunks(self.len(), |r| self.counts_below(&radii[r.clone()], r))
    }

    /// Row `i` of the data.
    pub fn point(&self, i: usize) -> &[f64] {
        let d = self.dim();
        &self.data()[i * d..(i + 1) * d]
    }
}

/// Brute-force k-th keys in tiles of `TILE_Q` queries × `TILE_R` reference points.
pub fn brute_kth(
    data: &[f64],
    dim: usize,
    metric: &Metric,
    k: usize,
    range: Range<usize>,
) -> Vec<f64> {
    let n = data.len() / dim;
    let mut out = Vec::with_capacity(range.len());
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
            for (qi, b) in (q0..q1).zip(best.iter_mut()) {
                let q = &data[qi * dim..(qi + 1) * dim];
                for j in r0..r1 {
                    if j == qi {
                        continue;
                    }
                    let d = metric.key(q, &data[j * dim..(j + 1) * dim]);
                    if b.len() < k || d < b[k - 1] {
                        push_best(b, k, d);
                    }
                }
            }
            r0 = r1;
        }
        for b in &best[..q1 - q0] {
            out.push(if b.len() == k && k > 0 {
                b[k - 1]
            } else {
                f64::INFINITY
            });
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
    let n = data.len() / dim;
    let mut out = vec![0usize; range.len()];
    let mut q0 = range.start;
    while q0 < range.end {
        let q1 = (q0 + TILE_Q).min(range.end);
        let mut r0 = 0;
        while r0 < n {
            let r1 = (r0 + TILE_R).min(n);
            for qi in q0..q1 {
                let q = &data[qi * dim..(qi + 1) * dim];
                let r = radii[qi - range.start];
                let mut c = 0;
                for p in data[r0 * dim..r1 * dim].chunks_exact(dim) {
                    let d = metric.key(q, p);
                    if d < r || (r <= 0.0 && d <= 0.0) {
                        c += 1;
                    }
                }
                out[qi - range.start] += c;
            }
            r0 = r1;
        }
        q0 = q1;
    }
    out
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
            check_all(data, dim, Metric::Euclidean(vec![dim / 2 + 1, dim].into_iter().filter(|&e| e <= dim).collect::<std::collections::BTreeSet<_>>().into_iter().collect()), k);
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
