//! R = I(Y; q(X)), the Shannon MI between the true label and the model's probability vector: the
//! denominator of Lu's efficiency G/R in probabilities mode.

use super::*;

/// The Shannon MI R = I(Y; q(X)) between the true label and the model's probability vector, the
/// R of Lu's efficiency G/R in probabilities mode: SeMI ≤ I(Y; q(X)) (the semantic channel q is
/// matched to the Shannon channel P(y | q(x)) exactly when the probabilities are calibrated).
pub(super) struct ScoreChannel {
    pub(super) value: Option<f64>,
    pub(super) method: &'static str,
    pub(super) n: usize,
    pub(super) reason: String,
}

/// Largest number of probability columns (minus one) for the k-NN estimate of R.
const SCORE_KNN_MAX_DIM: usize = 10;
/// Rows used by the k-NN estimate of R (a seeded random subset above this).
pub const SCORE_KNN_MAX_ROWS: usize = 20_000;

/// R = I(Y; q(X)) (see [`ScoreChannel`]). When the batch's probability vectors take few distinct
/// values (at most max(20, N/20), e.g. a calibrated lookup or a model with discrete outputs),
/// R is the plug-in MI between the label and the vector's identity, weighted like G; the same
/// empirical distribution then gives G ≤ R exactly. Otherwise, for unweighted batches with
/// K − 1 ≤ 10 free coordinates and few repeated rows, Ross's discrete–continuous k-NN estimate
/// (k = 3, max-norm on the standardised first K − 1 columns, at most 20 000 rows): consistent but
/// noisy, so G/R can exceed 1 by its error. Else `None` with the reason.
pub(super) fn score_channel_mi(
    q: &ArrayView2<'_, f64>,
    labels: &[u32],
    k: usize,
    w: Option<&[f64]>,
    seed: u64,
    max_rows: usize,
) -> ScoreChannel {
    use std::collections::HashMap;
    let n = labels.len();
    let limit = (n / 20).max(20);
    // Past `limit` distinct vectors the plug-in form is out; when the k-NN form is out too
    // (weights, too many classes, a segment too small), so is the exact count of distinct
    // vectors, and the pass stops there: at most ~limit + 1 rows hashed instead of N.
    let knn_possible = w.is_none() && k >= 2 && k - 1 <= SCORE_KNN_MAX_DIM && max_rows >= 100;
    let mut ids: HashMap<u64, u32> = HashMap::new();
    let mut row_id = Vec::with_capacity(n);
    let mut scratch = Vec::new();
    for r in 0..n {
        if !knn_possible && ids.len() > limit {
            break;
        }
        let row = row_slice(q, r, &mut scratch);
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for v in row {
            h = (h ^ v.to_bits())
                .wrapping_mul(0x0000_0100_0000_01b3)
                .rotate_left(29);
        }
        let next = ids.len() as u32;
        let id = *ids.entry(h).or_insert(next);
        row_id.push(id);
    }
    if ids.len() <= limit {
        let t = Table::from_pairs(labels, &row_id, k, ids.len(), w);
        return ScoreChannel {
            value: Some(plugin_mi(&t)),
            method: "plug-in MI between the label and the identity of the probability vector (few distinct vectors)",
            n,
            reason: String::new(),
        };
    }
    let none = |reason: String| ScoreChannel {
        value: None,
        method: "none",
        n: 0,
        reason,
    };
    if w.is_some() {
        return none("R = I(Y; q(X)) is estimated for weighted batches only when the probability vectors take few distinct values".into());
    }
    if k < 2 || k - 1 > SCORE_KNN_MAX_DIM {
        return none(format!(
            "R = I(Y; q(X)) is estimated by k-NN only for 2 to {} classes (got {k})",
            SCORE_KNN_MAX_DIM + 1
        ));
    }
    if max_rows < 100 {
        return none(format!("R = I(Y; q(X)) is not estimated by k-NN on a segment this small ({max_rows} rows of the batch's budget of {SCORE_KNN_MAX_ROWS} for its segments)"));
    }
    if ids.len() * 100 < n * 99 {
        return none("more than 1 % of the probability vectors repeat exactly, which inflates k-NN estimates; R = I(Y; q(X)) is not estimated".into());
    }
    let mut rows: Vec<usize> = (0..n).collect();
    if n > max_rows {
        let mut g = SplitMix64::new(seed ^ 0x5C0E_C4A7_0000_0001);
        for i in 0..max_rows {
            let j = i + g.below(n - i);
            rows.swap(i, j);
        }
        rows.truncate(max_rows);
    }
    let d = k - 1;
    let mut feats = Vec::with_capacity(rows.len() * d);
    for &r in &rows {
        let row = row_slice(q, r, &mut scratch);
        feats.extend_from_slice(&row[..d]);
    }
    let view = ndarray::ArrayView2::from_shape((rows.len(), d), &feats).expect("shape");
    let Ok(fs) = crate::estimate::ksg::prepare(view, true, "probabilities") else {
        return none("the probability columns could not be standardised".into());
    };
    let sub_labels: Vec<u32> = rows.iter().map(|&r| labels[r]).collect();
    match crate::estimate::ksg::mixed::ross_core(&fs, d, &sub_labels, 3) {
        Some((v, used, _)) => ScoreChannel {
            value: Some(v),
            method: "Ross (2014) k-NN MI between the label and the first K-1 probabilities (k = 3, max-norm, standardised)",
            n: used,
            reason: String::new(),
        },
        None => none("too few samples per class for the k-NN estimate of R = I(Y; q(X))".into()),
    }
}
