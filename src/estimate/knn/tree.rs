//! The k-d tree: median split on the widest coordinate, bounding boxes per node, leaf size 16.

use super::*;

#[derive(Debug, Clone, Copy)]
pub(super) struct Node {
    pub(super) start: u32,
    pub(super) end: u32,
    /// Child indices; `left == 0` marks a leaf (the root is never a child).
    pub(super) left: u32,
    pub(super) right: u32,
}

/// An exact k-d tree over row-major points.
#[derive(Debug, Clone)]
pub struct KdTree {
    pub(super) dim: usize,
    pub(super) metric: Metric,
    /// Points in tree order.
    pub(super) pts: Vec<f64>,
    /// Original index of each tree slot.
    pub(super) ids: Vec<u32>,
    pub(super) nodes: Vec<Node>,
    /// Per node: `lo[dim]` then `hi[dim]`.
    pub(super) bounds: Vec<f64>,
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

    pub(super) fn build_node(
        &mut self,
        data: &[f64],
        ids: &mut [u32],
        start: usize,
        end: usize,
    ) -> u32 {
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
    pub(super) fn node_box(&self, node: usize) -> (&[f64], &[f64]) {
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

    pub(super) fn knn_rec<K: Kernel>(
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

    pub(super) fn count_rec<K: Kernel>(
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
