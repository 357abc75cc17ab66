//! What an estimator needs, decided from a batch's shape before anything is allocated.
//!
//! One function per estimator family maps the shape of a batch (N samples, K classes, L labels,
//! dx and dy columns, which optional inputs it carries) and the estimator's canonical parameters
//! to an upper bound of the memory the run allocates beyond the decoded batch (bytes), and a
//! rough count of its arithmetic (ops). The upload path calls it to refuse (or leave out of the
//! default set) estimators that do not fit the per-job budget, and the worker calls it again
//! before it runs a job, so a job never starts an allocation the budget does not cover.
//!
//! The bounds are the estimators' dominant allocations read from their code, with constants
//! measured by a counting allocator (`tests/fuzz.rs` checks, over random shapes, that the
//! measured peak stays below the bound). Parameters are read from their canonical JSON with the
//! estimators' defaults, so this module depends on parameter names only.

use serde_json::Value;

/// Limits estimator jobs are held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most memory one job may need (bytes).
    pub memory_bytes: u64,
    /// The most classes (multiclass) or labels (multilabel) a batch may have.
    pub max_classes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 1 << 30,
            max_classes: 100_000,
        }
    }
}

/// The shape of a batch, as far as costs go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    /// Samples.
    pub n: u64,
    /// Classes (multiclass), else 0.
    pub k: u64,
    /// Labels (multilabel), else 0.
    pub l: u64,
    /// Columns of `x` (pairs; multiclass features), 1 for regression targets, else 0.
    pub dx: u64,
    /// Columns of `y` (pairs), 1 for regression predictions, else 0.
    pub dy: u64,
    /// An N×K probability matrix is present (multiclass).
    pub probabilities: bool,
    /// A K×K truth matrix is present (multiclass).
    pub truth_matrix: bool,
    /// Sample weights are present.
    pub weighted: bool,
    /// Segment values over all the batch's segment keys (after the cap), 0 without segments.
    pub segments: u64,
}

/// What a run needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// Upper bound of the memory allocated beyond the decoded batch (bytes).
    pub bytes: u64,
    /// Rough count of arithmetic operations (for information: run time scales with it).
    pub ops: f64,
    /// What dominates the memory, in words (e.g. "a K×K truth table").
    pub dominant: &'static str,
}

/// Bytes a small JSON value takes in a `serde_json::Value` tree (the value, its share of the
/// enclosing vector, allocator rounding) and again as text when the result is written.
const JSON_VALUE: u64 = 96;
/// Bytes of one f64.
const F: u64 = 8;
/// Fixed overhead of any run (buffers, details objects, the result's text).
const BASE: u64 = 1 << 20;

fn param_u64(params: &Value, name: &str, default: u64) -> u64 {
    params.get(name).and_then(Value::as_u64).unwrap_or(default)
}

fn param_str<'a>(params: &'a Value, name: &str, default: &'a str) -> &'a str {
    params.get(name).and_then(Value::as_str).unwrap_or(default)
}

/// Saturating products and sums: a shape from hostile input must not overflow into a small cost.
fn mul(a: u64, b: u64) -> u64 {
    a.saturating_mul(b)
}

fn sum(parts: &[u64]) -> u64 {
    parts.iter().fold(0u64, |a, &b| a.saturating_add(b))
}

/// Occupied cells of a K×K table over N samples, at most.
fn cells(s: &Shape) -> u64 {
    s.n.min(mul(s.k, s.k)).max(1)
}

/// A confusion table built from N (label, prediction) pairs: the accumulator (dense up to 2²²
/// cells, else sorted keys), the sparse table, a bootstrap resampler, ln n! up to N = 10⁷, and
/// the table as JSON twice (details and sufficient statistics).
fn table_bytes(s: &Shape) -> u64 {
    let kk = mul(s.k, s.k);
    let accumulator = if kk <= 1 << 22 {
        mul(kk, F)
    } else {
        mul(s.n, 16)
    };
    let nnz = cells(s);
    let json_cells = if kk <= 10_000 { kk } else { mul(nnz, 4) };
    sum(&[
        accumulator,
        mul(nnz, 64),
        mul(s.k, 6 * F),
        if s.n <= 10_000_000 { mul(s.n, F) } else { 0 },
        mul(s.n, 4),
        mul(mul(json_cells, JSON_VALUE), 2),
        if s.weighted {
            sum(&[mul(s.n, F), mul(nnz, 64)])
        } else {
            0
        },
    ])
}

/// Per-class JSON objects in `details` (a handful of named numbers each, in a map; measured
/// about 1.5 KB per class).
fn per_class_json(k: u64) -> u64 {
    mul(k, 32 * JSON_VALUE)
}

/// Blocks of samples a block bootstrap keeps statistics for.
fn blocks(s: &Shape, params: &Value) -> u64 {
    if param_u64(params, "bootstrap", 200) == 0 {
        1
    } else {
        s.n.min(param_u64(params, "bootstrap_blocks", 2000)).max(1)
    }
}

fn shannon(s: &Shape, p: &Value) -> Cost {
    let b = param_u64(p, "bootstrap", 200) as f64;
    if s.l > 0 {
        let m = blocks(s, p);
        return Cost {
            bytes: sum(&[
                BASE,
                mul(mul(m, s.l), 4 * F),
                mul(s.l, 8 * F),
                mul(s.n, 8),
                mul(s.l, 40 * JSON_VALUE),
            ]),
            ops: (s.n as f64 * s.l as f64) + b * (m as f64 * s.l as f64) * 4.0,
            dominant: "per-label 2×2 tables for each bootstrap block",
        };
    }
    let nnz = cells(s) as f64;
    let smoothed = parametric_cells(s, p) as f64;
    Cost {
        bytes: sum(&[BASE, table_bytes(s), mul(parametric_cells(s, p), 12 * F)]),
        ops: s.n as f64
            + (s.k as f64 * s.k as f64).min((1u64 << 22) as f64)
            + b * nnz * 4.0
            + b * smoothed * 6.0
            + 2.0 * s.n as f64,
        dominant: "the K×K confusion table",
    }
}

/// Cells of the smoothed occupied table shannon_mi's parametric bootstrap draws from (occupied
/// rows × occupied columns, each at most min(N, K), and at most the bootstrap's cap): the dense
/// table, its smoothed copy, a draw and its sparse tables, about 12 numbers a cell.
fn parametric_cells(s: &Shape, p: &Value) -> u64 {
    if param_u64(p, "bootstrap", 200) == 0 {
        return 0;
    }
    let side = s.n.min(s.k);
    mul(side, side).min(super::shannon::BOOTSTRAP_CELLS as u64)
}

fn semantic(s: &Shape, p: &Value) -> Cost {
    let b = param_u64(p, "bootstrap", 200) as f64;
    let mode = param_str(p, "mode", "auto");
    if s.l > 0 {
        let m = blocks(s, p);
        return Cost {
            bytes: sum(&[
                BASE,
                mul(mul(m, s.l), 6 * F),
                mul(s.l, 12 * F),
                mul(s.n, 8),
                mul(s.l, 12 * JSON_VALUE),
            ]),
            ops: (s.n as f64 * s.l as f64) * 2.0 + b * (m as f64 * s.l as f64) * 6.0,
            dominant: "per-label sums for each bootstrap block",
        };
    }
    let probabilities = match mode {
        "probabilities" => true,
        "auto" => !s.truth_matrix && s.probabilities,
        _ => false,
    };
    if probabilities {
        let m = blocks(s, p);
        let width = mul(s.k, 2).saturating_add(1);
        return Cost {
            bytes: sum(&[
                BASE,
                mul(mul(m, width), F),
                mul(width, 4 * F),
                mul(s.n, 2 * F),
                per_class_json(s.k),
            ]),
            ops: (s.n as f64 * s.k as f64) * 2.0 + b * (m as f64 * width as f64),
            dominant: "per-class sums for each bootstrap block (blocks × 2K)",
        };
    }
    // Channel modes: the confusion table, the dense K×K LBI truth matrix (and a copy of the
    // given truth matrix), per-sample values, per-class details; up to 100 classes the LBI
    // matrix is also written out as JSON.
    let kk = mul(s.k, s.k);
    let nnz = cells(s) as f64;
    Cost {
        bytes: sum(&[
            BASE,
            table_bytes(s),
            // 8 bytes a cell, with a quarter more for allocator rounding.
            mul(kk, 10),
            if s.truth_matrix {
                sum(&[mul(kk, F), mul(kk, JSON_VALUE)])
            } else {
                0
            },
            if s.k <= 100 { mul(kk, JSON_VALUE) } else { 0 },
            mul(s.n, 24),
            per_class_json(s.k),
        ]),
        ops: s.n as f64 * 3.0 + kk as f64 * 3.0 + b * nnz * 6.0,
        dominant: "the dense K×K truth matrix",
    }
}

fn ce_bound(s: &Shape, p: &Value) -> Cost {
    let b = param_u64(p, "bootstrap", 200) as f64;
    let m = blocks(s, p);
    let width = s.k.saturating_add(1);
    Cost {
        bytes: sum(&[
            BASE,
            mul(mul(m, width), F),
            mul(width, 6 * F),
            mul(s.n, 2 * F),
            per_class_json(s.k),
        ]),
        ops: (s.n as f64 * s.k as f64) * 2.0 + b * (m as f64 * width as f64),
        dominant: "per-class sums for each bootstrap block (blocks × K)",
    }
}

fn implied(s: &Shape) -> Cost {
    Cost {
        bytes: sum(&[BASE, mul(s.n, 6 * F), mul(s.k, 6 * F), per_class_json(s.k)]),
        ops: (s.n as f64 * s.k as f64) * 4.0,
        dominant: "two passes over the probabilities (N × K)",
    }
}

fn rg(s: &Shape, p: &Value) -> Cost {
    let kk = mul(s.k, s.k);
    let grid = p
        .get("s_grid")
        .and_then(Value::as_array)
        .map_or(9, |a| a.len() as u64)
        + 1;
    let iters = param_u64(p, "max_iter", 20_000);
    Cost {
        bytes: sum(&[
            BASE,
            table_bytes(s),
            // T (the truth matrix or the LBI fit), the log-truth matrix over occupied rows and
            // columns, the posterior of each iteration, and a copy of a given truth matrix.
            mul(kk, 4 * F),
            mul(mul(grid, s.k), 2 * JSON_VALUE),
        ]),
        ops: (grid as f64 * iters as f64) * kk as f64 * 3.0,
        dominant: "K×K truth and posterior matrices",
    }
}

/// k-NN estimators: standardised copies of the columns, k-d trees over the joint and marginal
/// spaces, per-point neighbour radii and counts; run again for each subsample.
fn knn(s: &Shape, p: &Value, d: u64) -> Cost {
    let k = p
        .get("ks")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().filter_map(Value::as_u64).max())
        .unwrap_or_else(|| param_u64(p, "k", 3))
        .max(1);
    let subsamples = param_u64(p, "subsamples", 20) as f64;
    let n = s.n;
    let logn = (n.max(2) as f64).log2();
    Cost {
        bytes: sum(&[
            BASE,
            mul(mul(n, d.max(1)), 6 * F),
            mul(n, 96),
            mul(mul(n, k), 2 * F),
        ]),
        ops: (1.0 + subsamples * 0.5) * n as f64 * logn * (k as f64 + d as f64) * 8.0,
        dominant: "copies of the N×d samples and the k-d trees over them",
    }
}

/// Variational bounds: the samples split and standardised, the critic's weights with their Adam
/// moments and gradients, activations of a training batch and an evaluation block (the
/// separable critic scores every pair of a block).
fn neural(s: &Shape, p: &Value) -> Cost {
    let hidden: Vec<u64> = p
        .get("hidden")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_else(|| vec![32, 32]);
    let embed = param_u64(p, "embed_dim", 8);
    let batch = param_u64(p, "batch_size", 128);
    let eval = param_u64(p, "eval_batch_size", 512);
    let steps = param_u64(p, "max_steps", 3000);
    let restarts = param_u64(p, "restarts", 1).max(1);
    let concat = param_str(p, "critic", "separable") == "concat";
    let widths = |input: u64, out: u64| -> (u64, u64) {
        // (weights, widest layer)
        let mut prev = input.max(1);
        let mut weights = 0u64;
        let mut widest = prev;
        for &h in hidden.iter().chain(std::iter::once(&out)) {
            weights = weights.saturating_add(mul(prev.saturating_add(1), h));
            widest = widest.max(h);
            prev = h.max(1);
        }
        (weights, widest)
    };
    let (weights, widest) = if concat {
        widths(s.dx.saturating_add(s.dy), 1)
    } else {
        let (a, wa) = widths(s.dx, embed);
        let (b, wb) = widths(s.dy, embed);
        (a.saturating_add(b), wa.max(wb))
    };
    let layers = hidden.len() as u64 + 2;
    // Concat critics evaluate every (x, y) pair of a block as a separate input row.
    let pairs = if concat { mul(eval, eval) } else { eval };
    let activations = mul(mul(mul(pairs.max(batch * batch), widest), layers), 2 * F);
    Cost {
        bytes: sum(&[
            BASE,
            mul(mul(s.n, s.dx.saturating_add(s.dy)), 4 * F),
            mul(s.n, 16),
            mul(weights, 6 * F),
            activations,
            mul(mul(eval, eval), 2 * F),
            mul(steps, 64),
        ]),
        ops: (restarts as f64 * steps as f64)
            * (batch as f64 * batch as f64)
            * (weights as f64).max(1.0)
            * 0.1
            + (s.n as f64) * (weights as f64),
        dominant: "the critic's activations over a training batch and an evaluation block",
    }
}

/// The cost of running `estimator` (its id) with canonical `params` on a batch of `shape`;
/// `None` for an unknown estimator.
pub fn cost(estimator: &str, shape: &Shape, params: &Value) -> Option<Cost> {
    let whole = whole_batch(estimator, shape, params)?;
    Some(if shape.segments > 0 {
        with_segments(whole, shape)
    } else {
        whole
    })
}

/// The run on a batch with segments: the whole batch's run, whose result is kept while each
/// segment value's run follows (on at most N samples, so within the whole run's bound), on a
/// copy of the segment's samples; each value's stored row and summary entry; and, for a
/// multiclass batch, the Y×S and Y×(Ŷ,S) tables of the decomposition with the parametric
/// bootstrap of I(Y;S).
fn with_segments(whole: Cost, s: &Shape) -> Cost {
    let segs = s.segments;
    let per_value = sum(&[per_class_json(s.k.max(s.l)), 64 * JSON_VALUE]);
    let decomposition = if s.k > 0 {
        let table = |cols: u64| {
            let cells = mul(s.k, cols);
            if cells <= 1 << 22 {
                sum(&[mul(cells, F), mul(cells.min(s.n), 64)])
            } else {
                mul(s.n, 16 + 64)
            }
        };
        let side = s.n.min(s.k);
        let bootstrap = mul(side, s.n.min(segs)).min(super::shannon::BOOTSTRAP_CELLS as u64);
        sum(&[
            table(segs),
            table(mul(s.k, segs)),
            mul(bootstrap, 12 * F),
            mul(s.n, 8),
        ])
    } else {
        0
    };
    Cost {
        bytes: sum(&[
            mul(whole.bytes, 2),
            batch_bytes(s),
            mul(segs, per_value),
            decomposition,
            mul(s.n, 8),
        ]),
        ops: whole.ops * 2.0 + segs as f64 * 1e3 + s.n as f64 * 4.0,
        dominant: whole.dominant,
    }
}

/// The numbers a batch holds (a copy of some of its samples is at most this).
fn batch_bytes(s: &Shape) -> u64 {
    let per_sample = sum(&[
        if s.probabilities { mul(s.k, F) } else { 0 },
        8,
        mul(s.dx.saturating_add(s.dy), F),
        mul(s.l, F + 1),
        if s.weighted { F } else { 0 },
        4,
    ]);
    sum(&[
        mul(s.n, per_sample),
        if s.truth_matrix {
            mul(mul(s.k, s.k), F)
        } else {
            0
        },
    ])
}

fn whole_batch(estimator: &str, shape: &Shape, params: &Value) -> Option<Cost> {
    Some(match estimator {
        "shannon_mi" => shannon(shape, params),
        "semantic_mi" => semantic(shape, params),
        "ce_bound" => ce_bound(shape, params),
        "implied_mi" => implied(shape),
        "rg_curve" => rg(shape, params),
        "ksg" => knn(shape, params, shape.dx.saturating_add(shape.dy)),
        "mixed_ksg" => {
            // Features, or the probabilities used as features.
            let d = if shape.dx > 0 { shape.dx } else { shape.k };
            knn(shape, params, d)
        }
        "infonce" | "mine" | "nwj" | "smile" => neural(shape, params),
        _ => return None,
    })
}

/// The memory bound of an estimator, in words (for the catalog).
pub fn formula(estimator: &str) -> &'static str {
    match estimator {
        "shannon_mi" => "multiclass: the confusion table (8·K² bytes while K² ≤ 2²², else 16·N) plus about 0.3 KB per occupied cell (≤ min(N, K²)) and 12·N; multilabel: 32·L bytes per bootstrap block (≤ bootstrap_blocks) plus 4 KB per label",
        "semantic_mi" => "probabilities mode: 16·K bytes per bootstrap block (≤ bootstrap_blocks) plus 0.8 KB per class; truth-matrix and LBI modes: the dense K×K truth matrix (8·K², twice and again as JSON with a given truth matrix) plus the confusion table; multilabel: 48·L per bootstrap block",
        "ce_bound" => "8·(K+1) bytes per bootstrap block (≤ bootstrap_blocks) plus 0.8 KB per class and 16·N",
        "implied_mi" => "per-sample terms and weights (48·N bytes) plus 0.8 KB per class",
        "rg_curve" => "four K×K matrices (32·K² bytes) plus the confusion table and the curve (2·K values per grid point)",
        "ksg" | "mixed_ksg" => "copies of the N×d samples and their k-d trees: 48·N·d + 96·N + 16·N·k bytes",
        "infonce" | "mine" | "nwj" | "smile" => "the N×(dx+dy) samples split and standardised (32·N·(dx+dy)), the critic's weights with Adam moments, and its activations over a training batch and an evaluation block",
        _ => "",
    }
}

/// Why a run does not fit the limits (a sentence naming the estimator, its need and the limit),
/// or its cost when it does.
pub fn check(
    estimator: &str,
    shape: &Shape,
    params: &Value,
    limits: &Limits,
) -> Result<Cost, String> {
    let Some(c) = cost(estimator, shape, params) else {
        return Err(format!("unknown estimator {estimator:?}"));
    };
    if c.bytes > limits.memory_bytes {
        return Err(format!(
            "{estimator} would need about {} of memory on this batch (N = {}{}; {}), over the \
             per-job budget of {} (--job-memory-bytes)",
            human_bytes(c.bytes),
            shape.n,
            describe(shape),
            c.dominant,
            human_bytes(limits.memory_bytes)
        ));
    }
    Ok(c)
}

fn describe(s: &Shape) -> String {
    let mut out = String::new();
    if s.k > 0 {
        out.push_str(&format!(", K = {}", s.k));
    }
    if s.l > 0 {
        out.push_str(&format!(", L = {}", s.l));
    }
    if s.dx > 0 || s.dy > 0 {
        out.push_str(&format!(", dx = {}, dy = {}", s.dx, s.dy));
    }
    if s.segments > 0 {
        out.push_str(&format!(", {} segment values", s.segments));
    }
    out
}

/// Bytes in binary units, e.g. `1.5 GiB`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The largest value of one shape dimension (set by `set`) for which `estimator` fits
/// `limits`, searching 1..=`max` (bisection: cost grows with every dimension).
pub fn largest_fitting(
    estimator: &str,
    base: &Shape,
    params: &Value,
    limits: &Limits,
    max: u64,
    set: impl Fn(&mut Shape, u64),
) -> u64 {
    let fits = |v: u64| {
        let mut s = *base;
        set(&mut s, v);
        check(estimator, &s, params, limits).is_ok()
    };
    if !fits(1) {
        return 0;
    }
    let (mut lo, mut hi) = (1u64, max.max(1));
    if fits(hi) {
        return hi;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn multiclass(n: u64, k: u64) -> Shape {
        Shape {
            n,
            k,
            ..Shape::default()
        }
    }

    #[test]
    fn the_issue_batch_is_refused_by_the_k_squared_estimators_only() {
        // 3 samples, 200 000 classes: a K×K truth matrix is 320 GB.
        let s = multiclass(3, 200_000);
        let limits = Limits::default();
        let p = json!({});
        assert!(check("shannon_mi", &s, &p, &limits).is_ok());
        let e = check("semantic_mi", &s, &p, &limits).unwrap_err();
        assert!(e.contains("semantic_mi") && e.contains("1.0 GiB"), "{e}");
        assert!(cost("semantic_mi", &s, &p).unwrap().bytes >= 200_000u64 * 200_000 * 8);
        assert!(check("rg_curve", &s, &p, &limits).is_err());
    }

    #[test]
    fn costs_grow_with_every_dimension_and_never_overflow() {
        let p = json!({});
        for e in ["shannon_mi", "semantic_mi", "ce_bound", "rg_curve"] {
            let a = cost(e, &multiclass(1000, 10), &p).unwrap().bytes;
            let b = cost(e, &multiclass(1000, 1000), &p).unwrap().bytes;
            let c = cost(e, &multiclass(100_000, 1000), &p).unwrap().bytes;
            assert!(a <= b && b <= c, "{e}: {a} {b} {c}");
        }
        let huge = Shape {
            n: u64::MAX,
            k: u64::MAX,
            l: u64::MAX,
            dx: u64::MAX,
            dy: u64::MAX,
            probabilities: true,
            truth_matrix: true,
            weighted: true,
            segments: u64::MAX,
        };
        for e in [
            "shannon_mi",
            "semantic_mi",
            "ce_bound",
            "rg_curve",
            "ksg",
            "mixed_ksg",
            "infonce",
        ] {
            assert_eq!(cost(e, &huge, &p).unwrap().bytes, u64::MAX, "{e}");
        }
    }

    #[test]
    fn largest_fitting_is_the_boundary() {
        let limits = Limits {
            memory_bytes: 256 << 20,
            max_classes: 1 << 20,
        };
        let p = json!({});
        let base = multiclass(10_000, 0);
        let k = largest_fitting("rg_curve", &base, &p, &limits, 1 << 20, |s, v| s.k = v);
        assert!(k > 10);
        let at = |k| {
            let mut s = base;
            s.k = k;
            check("rg_curve", &s, &p, &limits).is_ok()
        };
        assert!(at(k) && !at(k + 1));
        assert_eq!(cost("nope", &base, &p), None);
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
