//! Sparse contingency (confusion) tables.
//!
//! A [`Table`] stores the occupied cells of a Kx×Ky table sorted by (row, column), plus both
//! margins. Weighted tables use weights normalised to sum to N (the number of samples), so the
//! total mass equals N in both cases and `integer` tells whether the counts are whole numbers.

use super::special::xlogx;
use serde_json::{json, Value};

/// Largest Kx·Ky for which the table is accumulated densely (else by sorting sample keys).
const DENSE_LIMIT: usize = 1 << 22;

/// A sparse Kx×Ky table of non-negative masses.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub kx: usize,
    pub ky: usize,
    /// Row index of each occupied cell (sorted by (row, col)).
    pub rows: Vec<u32>,
    /// Column index of each occupied cell.
    pub cols: Vec<u32>,
    /// Mass of each occupied cell (> 0).
    pub counts: Vec<f64>,
    pub row_sums: Vec<f64>,
    pub col_sums: Vec<f64>,
    pub total: f64,
    /// True when every count is a whole number (unweighted input).
    pub integer: bool,
}

impl Table {
    /// Build the table of (x, y) pairs with optional (already normalised) weights.
    /// Indices must already be validated (< kx, < ky).
    pub fn from_pairs(
        xs: &[u32],
        ys: &[u32],
        kx: usize,
        ky: usize,
        weights: Option<&[f64]>,
    ) -> Table {
        debug_assert_eq!(xs.len(), ys.len());
        let mut entries: Vec<(u32, u32, f64)> = Vec::new();
        if kx.saturating_mul(ky) <= DENSE_LIMIT {
            let mut dense = vec![0.0f64; kx * ky];
            for (s, (&x, &y)) in xs.iter().zip(ys).enumerate() {
                let w = weights.map_or(1.0, |w| w[s]);
                dense[x as usize * ky + y as usize] += w;
            }
            for (idx, &c) in dense.iter().enumerate() {
                if c > 0.0 {
                    entries.push(((idx / ky) as u32, (idx % ky) as u32, c));
                }
            }
        } else {
            let mut keys: Vec<(u64, f64)> = xs
                .iter()
                .zip(ys)
                .enumerate()
                .map(|(s, (&x, &y))| (((x as u64) << 32) | y as u64, weights.map_or(1.0, |w| w[s])))
                .collect();
            keys.sort_unstable_by_key(|k| k.0);
            let mut i = 0;
            while i < keys.len() {
                let key = keys[i].0;
                let mut c = 0.0;
                while i < keys.len() && keys[i].0 == key {
                    c += keys[i].1;
                    i += 1;
                }
                if c > 0.0 {
                    entries.push(((key >> 32) as u32, (key & 0xFFFF_FFFF) as u32, c));
                }
            }
        }
        let mut t = Table::from_entries(kx, ky, entries);
        t.integer = weights.is_none();
        t
    }

    /// Build from (row, col, mass) triples; duplicates are added, non-positive masses dropped.
    pub fn from_entries(kx: usize, ky: usize, mut entries: Vec<(u32, u32, f64)>) -> Table {
        entries.retain(|e| e.2 > 0.0);
        entries.sort_unstable_by_key(|e| (e.0, e.1));
        let mut rows = Vec::with_capacity(entries.len());
        let mut cols = Vec::with_capacity(entries.len());
        let mut counts: Vec<f64> = Vec::with_capacity(entries.len());
        for (r, c, v) in entries {
            if rows.last() == Some(&r) && cols.last() == Some(&c) {
                *counts.last_mut().expect("non-empty") += v;
            } else {
                rows.push(r);
                cols.push(c);
                counts.push(v);
            }
        }
        let mut row_sums = vec![0.0; kx];
        let mut col_sums = vec![0.0; ky];
        for i in 0..counts.len() {
            row_sums[rows[i] as usize] += counts[i];
            col_sums[cols[i] as usize] += counts[i];
        }
        let total = counts.iter().sum();
        let integer = counts.iter().all(|c| c.fract() == 0.0);
        Table {
            kx,
            ky,
            rows,
            cols,
            counts,
            row_sums,
            col_sums,
            total,
            integer,
        }
    }

    /// Build from a dense row-major matrix (tests, pooling).
    pub fn from_dense(kx: usize, ky: usize, data: &[f64]) -> Table {
        let entries = data
            .iter()
            .enumerate()
            .filter(|(_, &v)| v > 0.0)
            .map(|(i, &v)| ((i / ky) as u32, (i % ky) as u32, v))
            .collect();
        Table::from_entries(kx, ky, entries)
    }

    /// Same cells with new masses (same order as `self.counts`); margins recomputed.
    pub fn with_counts(&self, counts: &[f64]) -> Table {
        let entries = (0..counts.len())
            .map(|i| (self.rows[i], self.cols[i], counts[i]))
            .collect();
        Table::from_entries(self.kx, self.ky, entries)
    }

    pub fn transpose(&self) -> Table {
        let entries = (0..self.counts.len())
            .map(|i| (self.cols[i], self.rows[i], self.counts[i]))
            .collect();
        let mut t = Table::from_entries(self.ky, self.kx, entries);
        t.integer = self.integer;
        t
    }

    /// Number of occupied cells.
    pub fn nnz(&self) -> usize {
        self.counts.len()
    }

    pub fn occupied_rows(&self) -> usize {
        self.row_sums.iter().filter(|&&v| v > 0.0).count()
    }

    pub fn occupied_cols(&self) -> usize {
        self.col_sums.iter().filter(|&&v| v > 0.0).count()
    }

    /// Σ n ln n over cells, rows and columns.
    pub fn sum_nlogn(&self) -> (f64, f64, f64) {
        (
            self.counts.iter().map(|&c| xlogx(c)).sum(),
            self.row_sums.iter().map(|&c| xlogx(c)).sum(),
            self.col_sums.iter().map(|&c| xlogx(c)).sum(),
        )
    }

    /// Dense row-major copy (kx·ky values).
    pub fn to_dense(&self) -> Vec<f64> {
        let mut d = vec![0.0; self.kx * self.ky];
        for i in 0..self.counts.len() {
            d[self.rows[i] as usize * self.ky + self.cols[i] as usize] = self.counts[i];
        }
        d
    }

    /// JSON for users: a dense nested array when kx·ky ≤ 10 000, else
    /// `{"format":"sparse","shape":[kx,ky],"entries":[[row,col,count],…]}`. Integer counts are
    /// written as integers.
    pub fn to_json(&self) -> Value {
        let cell = |v: f64| -> Value {
            if self.integer && v.abs() < 9.0e15 {
                json!(v as i64)
            } else {
                json!(v)
            }
        };
        if self.kx * self.ky <= 10_000 {
            let d = self.to_dense();
            let rows: Vec<Value> = (0..self.kx)
                .map(|r| Value::Array((0..self.ky).map(|c| cell(d[r * self.ky + c])).collect()))
                .collect();
            Value::Array(rows)
        } else {
            json!({
                "format": "sparse",
                "shape": [self.kx, self.ky],
                "entries": self.entries_json(),
            })
        }
    }

    /// `[[row, col, count], …]` for the occupied cells.
    pub fn entries_json(&self) -> Value {
        Value::Array(
            (0..self.counts.len())
                .map(|i| {
                    let c = if self.integer && self.counts[i] < 9.0e15 {
                        json!(self.counts[i] as i64)
                    } else {
                        json!(self.counts[i])
                    };
                    json!([self.rows[i], self.cols[i], c])
                })
                .collect(),
        )
    }

    /// `[[row, col, value], …]` with `values` aligned with the occupied cells (e.g. per-cell sums
    /// of squared weights).
    pub fn with_counts_json(&self, values: &[f64]) -> Value {
        Value::Array(
            (0..self.counts.len())
                .map(|i| json!([self.rows[i], self.cols[i], values[i]]))
                .collect(),
        )
    }

    /// Inverse of [`Table::entries_json`].
    pub fn from_entries_json(kx: usize, ky: usize, v: &Value) -> Option<Table> {
        let arr = v.as_array()?;
        let mut entries = Vec::with_capacity(arr.len());
        for e in arr {
            let e = e.as_array()?;
            if e.len() != 3 {
                return None;
            }
            let r = e[0].as_u64()? as usize;
            let c = e[1].as_u64()? as usize;
            let m = e[2].as_f64()?;
            if r >= kx || c >= ky || !m.is_finite() || m < 0.0 {
                return None;
            }
            entries.push((r as u32, c as u32, m));
        }
        Some(Table::from_entries(kx, ky, entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_dense_and_sparse_paths_agree() {
        let xs = [0u32, 1, 1, 2, 2, 2, 0];
        let ys = [0u32, 1, 1, 2, 0, 2, 0];
        let t = Table::from_pairs(&xs, &ys, 3, 3, None);
        assert_eq!(t.counts, vec![2.0, 2.0, 1.0, 2.0]);
        assert_eq!(t.row_sums, vec![2.0, 2.0, 3.0]);
        assert_eq!(t.col_sums, vec![3.0, 2.0, 2.0]);
        assert!(t.integer);
        assert_eq!(t.total, 7.0);
        // Force the sort path with a huge nominal alphabet.
        let big = Table::from_pairs(&xs, &ys, 3000, 3000, None);
        assert_eq!(big.counts, t.counts);
        assert_eq!(big.rows, t.rows);
        assert_eq!(big.cols, t.cols);
        assert_eq!(t.transpose().transpose(), t);
        let j = t.to_json();
        assert_eq!(j, serde_json::json!([[2, 0, 0], [0, 2, 0], [1, 0, 2]]));
        let back = Table::from_entries_json(3, 3, &t.entries_json()).unwrap();
        assert_eq!(back.counts, t.counts);
    }

    #[test]
    fn weighted_table() {
        let xs = [0u32, 1];
        let ys = [0u32, 1];
        let t = Table::from_pairs(&xs, &ys, 2, 2, Some(&[0.5, 1.5]));
        assert!(!t.integer);
        assert_eq!(t.total, 2.0);
        assert_eq!(t.nnz(), 2);
    }
}
