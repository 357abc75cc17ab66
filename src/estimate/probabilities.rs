//! Input checks on class-probability matrices that `semantic_mi`, `ce_bound`, `implied_mi` and
//! the per-sample terms share: the shape, every value a probability, rows read as slices, and the
//! branch-free accumulation that checks and sums in one pass.

use ndarray::ArrayView2;

use super::EstimateError;

pub(crate) fn probabilities_shape(
    q: &ArrayView2<'_, f64>,
    n: usize,
    k: usize,
) -> Result<(), EstimateError> {
    if q.dim() != (n, k) {
        return Err(EstimateError::invalid(format!(
            "probabilities has shape {:?}, expected ({n}, {k}) (samples x classes)",
            q.dim()
        )));
    }
    Ok(())
}

/// True when every value of the row is a probability (finite, in [0, 1]); branch-free so that
/// it vectorises.
#[inline]
pub(crate) fn row_is_valid(row: &[f64]) -> bool {
    row.iter()
        .fold(true, |ok, &v| ok & (0.0..=1.0).contains(&v))
}

/// The error for the first invalid value of row `r` (which must contain one).
pub(crate) fn invalid_row_error(r: usize, row: &[f64]) -> EstimateError {
    let (c, v) = row
        .iter()
        .copied()
        .enumerate()
        .find(|&(_, v)| !(v.is_finite() && (0.0..=1.0).contains(&v)))
        .unwrap_or((0, f64::NAN));
    EstimateError::invalid(format!(
        "probability at sample {r}, class {c} is {v}; probabilities must be in [0, 1]"
    ))
}

/// Row `r` of `q` as a slice (copied into `scratch` when the row is not contiguous).
#[inline]
pub(crate) fn row_slice<'s>(
    q: &'s ArrayView2<'_, f64>,
    r: usize,
    scratch: &'s mut Vec<f64>,
) -> &'s [f64] {
    let row = q.row(r);
    match row.to_slice() {
        Some(s) => s,
        None => {
            scratch.clear();
            scratch.extend(row.iter().copied());
            scratch
        }
    }
}

/// Adds one row with weight `ws` (`None`: unit weight) to the column sums and updates the
/// column maxima. Returns false when a value is negative or NaN; values above 1 (including +inf)
/// are caught afterwards by the caller through the column maxima. Branch-free so that it
/// vectorises.
#[inline]
pub(crate) fn accumulate_row(
    row: &[f64],
    ws: Option<f64>,
    q_sum: &mut [f64],
    colmax: &mut [f64],
) -> bool {
    let mut ok = true;
    // `max` ignores a NaN, which `ok` catches anyway; written as a plain maximum so that it
    // compiles to a vector max and an unconditional store.
    match ws {
        None => {
            for ((a, m), &v) in q_sum.iter_mut().zip(colmax.iter_mut()).zip(row) {
                ok &= v >= 0.0;
                *a += v;
                *m = m.max(v);
            }
        }
        Some(ws) => {
            for ((a, m), &v) in q_sum.iter_mut().zip(colmax.iter_mut()).zip(row) {
                ok &= v >= 0.0;
                *a += ws * v;
                *m = m.max(v);
            }
        }
    }
    ok
}

/// The error of [`check_probabilities`] for a matrix known to hold an invalid value.
pub(crate) fn first_invalid_probability(
    q: &ArrayView2<'_, f64>,
    n: usize,
    k: usize,
) -> EstimateError {
    match check_probabilities(q, n, k) {
        Err(e) => e,
        Ok(()) => EstimateError::invalid("probabilities must be in [0, 1]"),
    }
}

pub(crate) fn check_probabilities(
    q: &ArrayView2<'_, f64>,
    n: usize,
    k: usize,
) -> Result<(), EstimateError> {
    probabilities_shape(q, n, k)?;
    let mut scratch = Vec::new();
    for r in 0..n {
        let row = row_slice(q, r, &mut scratch);
        if !row_is_valid(row) {
            return Err(invalid_row_error(r, row));
        }
    }
    Ok(())
}
