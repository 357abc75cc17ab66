//! 2-D points under a max-type metric (the KSG joint space of 1-D x and 1-D y): equal-count vertical strips sorted by y, searched by short contiguous walks.

use super::*;

/// Whether a metric on `dim` coordinates is, for 2-D points, a monotone function of the
/// Chebyshev distance (`Some(squared)`: the key is the Chebyshev distance, or its square).
pub(super) fn plane_metric(metric: &Metric, dim: usize) -> Option<bool> {
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
    pub(super) squared: bool,
    /// Strip `t` holds slots `starts[t]..starts[t + 1]`.
    pub(super) starts: Vec<usize>,
    /// Smallest and largest x of each strip.
    pub(super) xlo: Vec<f64>,
    pub(super) xhi: Vec<f64>,
    /// Slot order: strip by strip, ascending y within a strip.
    pub(super) xs: Vec<f64>,
    pub(super) ys: Vec<f64>,
    pub(super) ids: Vec<u32>,
    /// Strip of each slot.
    pub(super) strip: Vec<u32>,
    /// Slot of each original point.
    pub(super) slot: Vec<u32>,
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
    pub(super) fn key(&self, d: f64) -> f64 {
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
    pub(super) fn walk(
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
    pub(super) fn y_position(&self, t: usize, yq: f64) -> usize {
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
