//! Pointwise (per-sample) information: each sample's term in an estimator's plug-in sum, so that
//! the mean of the terms over the samples, weighted by the sample weights where the batch has
//! them (Σ_s w_s i_s / Σ_s w_s), is the estimator's plug-in value on the same batch.
//!
//! A first pass over the batch fixes what the terms share (the marginals T(θ_j), the contingency
//! table, the label frequencies); [`ClassTerms::term`] and [`MultilabelTerms::term`] then give
//! one sample's term in O(1) (O(log cells) for table lookups, O(L) for multi-label), so a caller
//! can stream the terms without holding them.
//!
//! Multiclass (X the sample, Y the true class y_s, Ŷ the predicted class ŷ_s, weights w_s):
//! - `semantic_mi`, probabilities mode: i_s = ln q(y_s|x_s) − ln T(θ_{y_s}), with
//!   T(θ_j) = Σ_s w_s q(j|x_s) / Σ_s w_s (the G measure of the sample; `worst_samples`' value).
//! - `semantic_mi`, truth_matrix mode: i_s = ln T[y_s][ŷ_s] − ln T(θ_{ŷ_s}), with
//!   T(θ_j) = Σ_i P̂(x_i) T[i][j] and P̂(x_i) the weighted frequency of true class i.
//! - `semantic_mi`, lbi mode: i_s = ln T*[y_s][ŷ_s] / T(θ_{ŷ_s}) = ln p̂(y_s, ŷ_s) / (p̂(y_s) p̂(ŷ_s)),
//!   the same number as `shannon_mi`'s term (spec §2.9), computed in the second form.
//! - `shannon_mi`: i_s = ln p̂(y_s, ŷ_s) / (p̂(y_s) p̂(ŷ_s)) from the batch's own (weighted)
//!   confusion table: its mean is the plug-in MI (`details.plug_in`), not the jackknife
//!   bias-corrected `value`.
//! - `ce_bound`: i_s = ln max(q(y_s|x_s), clip) − ln p̂(y_s): its mean is Ĥ(Y) − CE.
//!
//! Multi-label (Y_sj ∈ {0,1} or [0,1] the labels, S_sj the scores, W = Σ_s w_s):
//! - `shannon_mi`: i_s = Σ_j ln p̂_j(Y_sj, D_sj) / (p̂_j(Y_sj) p̂_j(D_sj)) with D_sj the decision
//!   (score ≥ threshold) and p̂_j from label j's 2×2 table: the mean is Σ_j of the per-label
//!   plug-in MI (`details.plug_in`).
//! - `semantic_mi`: i_s = (W / Σ_j n_j) Σ_{j: Y_sj > 0} Y_sj (ln S_sj − ln T(θ_j)), with
//!   n_j = Σ_s w_s Y_sj and T(θ_j) = Σ_s w_s S_sj / W: the mean is the label-frequency-weighted
//!   `value` Σ_j (n_j / Σn) I_j.
//!
//! −∞ is a term, not an error: a sample whose true class has probability (or truth value) 0
//! carries −∞, as in the estimators. Samples with weight 0 get their term too but carry no mass.

use ndarray::ArrayView2;

use super::contingency::Table;
use super::probabilities::check_probabilities;
use super::semantic::logical_probabilities;
use super::shannon::check_multilabel;
use super::{check_class_input, normalized_weights, ClassInput, EstimateError, MultilabelInput};

/// The per-sample terms of a multiclass estimator on one batch.
#[derive(Debug, Clone)]
pub struct ClassTerms {
    terms: Terms,
}

#[derive(Debug, Clone)]
enum Terms {
    /// i_s = ln max(q(y_s|x_s), floor) − ln_marginal[y_s].
    Probability { ln_marginal: Vec<f64>, floor: f64 },
    /// i_s = the value of the (true, predicted) cell; keys sorted (true << 32 | predicted).
    Cell { keys: Vec<u64>, values: Vec<f64> },
}

fn key(x: u32, y: u32) -> u64 {
    (u64::from(x) << 32) | u64::from(y)
}

/// The semantic_mi mode that `mode` (as in the estimator's `mode` parameter) resolves to on
/// this input: `probabilities`, `truth_matrix` or `lbi`.
pub fn semantic_mode(input: &ClassInput<'_>, mode: &str) -> Result<&'static str, EstimateError> {
    match mode {
        "auto" if input.truth_matrix.is_some() => Ok("truth_matrix"),
        "auto" if input.probabilities.is_some() => Ok("probabilities"),
        "auto" | "lbi" => Ok("lbi"),
        "probabilities" if input.probabilities.is_some() => Ok("probabilities"),
        "probabilities" => Err(EstimateError::invalid(
            "mode \"probabilities\" needs class probabilities in the batch",
        )),
        "truth_matrix" if input.truth_matrix.is_some() => Ok("truth_matrix"),
        "truth_matrix" => Err(EstimateError::invalid(
            "mode \"truth_matrix\" needs a truth_matrix",
        )),
        other => Err(EstimateError::invalid(format!(
            "mode must be one of \"auto\", \"probabilities\", \"truth_matrix\", \"lbi\" (got {other:?})"
        ))),
    }
}

impl ClassTerms {
    /// `semantic_mi`'s terms in the mode `mode` resolves to (see [`semantic_mode`]).
    pub fn semantic(input: &ClassInput<'_>, mode: &str) -> Result<ClassTerms, EstimateError> {
        let n = check_class_input(input)?;
        let w = normalized_weights(input.weights, n)?;
        match semantic_mode(input, mode)? {
            "probabilities" => {
                let q = input.probabilities.expect("checked by semantic_mode");
                check_probabilities(&q, n, input.k)?;
                let mut q_sum = vec![0.0; input.k];
                let mut wt = 0.0;
                for (s, row) in q.rows().into_iter().enumerate() {
                    let ws = w.as_ref().map_or(1.0, |w| w[s]);
                    wt += ws;
                    for (a, &v) in q_sum.iter_mut().zip(row) {
                        *a += ws * v;
                    }
                }
                Ok(ClassTerms {
                    terms: Terms::Probability {
                        ln_marginal: q_sum.iter().map(|&v| (v / wt).ln()).collect(),
                        floor: 0.0,
                    },
                })
            }
            "truth_matrix" => {
                let t = input.truth_matrix.expect("checked by semantic_mode");
                check_truth(&t, input.k)?;
                let table = Table::from_pairs(
                    input.labels,
                    input.predictions,
                    input.k,
                    input.k,
                    w.as_deref(),
                );
                let px: Vec<f64> = table.row_sums.iter().map(|&a| a / table.total).collect();
                let tj = logical_probabilities(&px, t);
                Ok(ClassTerms::cells(&table, |i, j, _| {
                    let tv = t[[i, j]];
                    if tv > 0.0 {
                        (tv / tj[j]).ln()
                    } else {
                        f64::NEG_INFINITY
                    }
                }))
            }
            _ => {
                let table = Table::from_pairs(
                    input.labels,
                    input.predictions,
                    input.k,
                    input.k,
                    w.as_deref(),
                );
                Ok(ClassTerms::pmi(&table))
            }
        }
    }

    /// `shannon_mi`'s terms: the pointwise MI of each sample's (true, predicted) cell.
    pub fn shannon(input: &ClassInput<'_>) -> Result<ClassTerms, EstimateError> {
        let n = check_class_input(input)?;
        normalized_weights(input.weights, n)?;
        let table = Table::from_pairs(
            input.labels,
            input.predictions,
            input.k,
            input.k,
            input.weights,
        );
        Ok(ClassTerms::pmi(&table))
    }

    /// `ce_bound`'s terms with the estimator's `clip` (the floor of q(y|x) before the log).
    pub fn ce_bound(input: &ClassInput<'_>, clip: f64) -> Result<ClassTerms, EstimateError> {
        if !(clip > 0.0 && clip <= 1e-3) {
            return Err(EstimateError::invalid(format!(
                "clip must be in (0, 0.001] (got {clip})"
            )));
        }
        let n = check_class_input(input)?;
        let q = input.probabilities.ok_or_else(|| {
            EstimateError::invalid("ce_bound needs class probabilities in the batch")
        })?;
        check_probabilities(&q, n, input.k)?;
        let w = normalized_weights(input.weights, n)?;
        let mut class_w = vec![0.0; input.k];
        for (s, &y) in input.labels.iter().enumerate() {
            class_w[y as usize] += w.as_ref().map_or(1.0, |w| w[s]);
        }
        let wt: f64 = class_w.iter().sum();
        Ok(ClassTerms {
            terms: Terms::Probability {
                ln_marginal: class_w.iter().map(|&c| (c / wt).ln()).collect(),
                floor: clip,
            },
        })
    }

    fn pmi(table: &Table) -> ClassTerms {
        let ln_n = table.total.ln();
        ClassTerms::cells(table, |i, j, c| {
            c.ln() + ln_n - table.row_sums[i].ln() - table.col_sums[j].ln()
        })
    }

    fn cells(table: &Table, value: impl Fn(usize, usize, f64) -> f64) -> ClassTerms {
        let keys = (0..table.nnz())
            .map(|c| key(table.rows[c], table.cols[c]))
            .collect();
        let values = (0..table.nnz())
            .map(|c| {
                value(
                    table.rows[c] as usize,
                    table.cols[c] as usize,
                    table.counts[c],
                )
            })
            .collect();
        ClassTerms {
            terms: Terms::Cell { keys, values },
        }
    }

    /// Sample `s`'s term in nats, on the same input the terms were built from.
    pub fn term(&self, input: &ClassInput<'_>, s: usize) -> f64 {
        let y = input.labels[s];
        match &self.terms {
            Terms::Probability { ln_marginal, floor } => {
                let q = input
                    .probabilities
                    .as_ref()
                    .map_or(0.0, |q| q[[s, y as usize]]);
                q.max(*floor).ln() - ln_marginal[y as usize]
            }
            Terms::Cell { keys, values } => {
                match keys.binary_search(&key(y, input.predictions[s])) {
                    Ok(c) => values[c],
                    // A zero-weight sample's cell is not in the table: its term is the
                    // pointwise value of an empty cell, −∞ (it carries no mass).
                    Err(_) => f64::NEG_INFINITY,
                }
            }
        }
    }
}

fn check_truth(t: &ArrayView2<'_, f64>, k: usize) -> Result<(), EstimateError> {
    if t.dim() != (k, k) {
        return Err(EstimateError::invalid(format!(
            "truth_matrix has shape {:?}, expected ({k}, {k}) (true class x predicted class)",
            t.dim()
        )));
    }
    if let Some(((r, c), v)) = t
        .indexed_iter()
        .find(|(_, &v)| !(v.is_finite() && (0.0..=1.0).contains(&v)))
    {
        return Err(EstimateError::invalid(format!(
            "truth_matrix[{r}][{c}] is {v}; truth values must be in [0, 1]"
        )));
    }
    Ok(())
}

/// The per-sample terms of a multi-label estimator on one batch.
#[derive(Debug, Clone)]
pub struct MultilabelTerms {
    kind: MultilabelKind,
}

#[derive(Debug, Clone)]
enum MultilabelKind {
    /// Per label j, the pointwise MI of each cell 2·Y + D of its 2×2 table (4 per label).
    Shannon { threshold: f64, cells: Vec<f64> },
    /// ln T(θ_j) per label and the factor W / Σn.
    Semantic { ln_logical: Vec<f64>, scale: f64 },
}

impl MultilabelTerms {
    /// `shannon_mi`'s multi-label terms: `input.scores` are the decisions' scores (or hard 0/1
    /// predictions with threshold 0.5), predicted positive iff score ≥ `threshold`.
    pub fn shannon(
        input: &MultilabelInput<'_>,
        threshold: f64,
    ) -> Result<MultilabelTerms, EstimateError> {
        if !(threshold.is_finite() && (0.0..=1.0).contains(&threshold)) {
            return Err(EstimateError::invalid(format!(
                "threshold must be between 0 and 1 (got {threshold})"
            )));
        }
        let (n, l, _) = check_multilabel(input, true)?;
        let mut tables = vec![0.0; 4 * l];
        for s in 0..n {
            let ws = input.weights.map_or(1.0, |w| w[s]);
            for j in 0..l {
                tables[4 * j + cell(input, s, j, threshold)] += ws;
            }
        }
        let mut cells = vec![f64::NEG_INFINITY; 4 * l];
        for j in 0..l {
            let t = &tables[4 * j..4 * j + 4];
            let total: f64 = t.iter().sum();
            let rows = [t[0] + t[1], t[2] + t[3]];
            let cols = [t[0] + t[2], t[1] + t[3]];
            for c in 0..4 {
                if t[c] > 0.0 {
                    cells[4 * j + c] = t[c].ln() + total.ln() - rows[c / 2].ln() - cols[c % 2].ln();
                }
            }
        }
        Ok(MultilabelTerms {
            kind: MultilabelKind::Shannon { threshold, cells },
        })
    }

    /// `semantic_mi`'s multi-label terms (scores as truth functions).
    pub fn semantic(input: &MultilabelInput<'_>) -> Result<MultilabelTerms, EstimateError> {
        let (n, l, w) = check_multilabel(input, false)?;
        let mut wt = 0.0;
        let mut n_sum = 0.0;
        let mut s_sum = vec![0.0; l];
        for s in 0..n {
            let ws = w.as_ref().map_or(1.0, |w| w[s]);
            wt += ws;
            for (j, a) in s_sum.iter_mut().enumerate() {
                *a += ws * input.scores[[s, j]];
                n_sum += ws * input.labels[[s, j]];
            }
        }
        if n_sum <= 0.0 {
            return Err(EstimateError::invalid(
                "no sample carries any label, so the multi-label semantic information is undefined",
            ));
        }
        Ok(MultilabelTerms {
            kind: MultilabelKind::Semantic {
                ln_logical: s_sum.iter().map(|&v| (v / wt).ln()).collect(),
                scale: wt / n_sum,
            },
        })
    }

    /// Sample `s`'s term in nats, on the same input the terms were built from.
    pub fn term(&self, input: &MultilabelInput<'_>, s: usize) -> f64 {
        match &self.kind {
            MultilabelKind::Shannon { threshold, cells } => (0..cells.len() / 4)
                .map(|j| cells[4 * j + cell(input, s, j, *threshold)])
                .sum(),
            MultilabelKind::Semantic { ln_logical, scale } => {
                let mut sum = 0.0;
                for (j, &lt) in ln_logical.iter().enumerate() {
                    let y = input.labels[[s, j]];
                    if y > 0.0 {
                        sum += y * (input.scores[[s, j]].ln() - lt);
                    }
                }
                scale * sum
            }
        }
    }
}

fn cell(input: &MultilabelInput<'_>, s: usize, j: usize, threshold: f64) -> usize {
    2 * usize::from(input.labels[[s, j]] > 0.5) + usize::from(input.scores[[s, j]] >= threshold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estimate::{ce_bound, semantic, shannon, Control};
    use approx::assert_relative_eq;
    use ndarray::array;

    /// Weighted mean Σ w_s i_s / Σ w_s over samples with positive weight.
    fn mean(terms: &[f64], w: Option<&[f64]>) -> f64 {
        let (mut num, mut den) = (0.0, 0.0);
        for (s, &t) in terms.iter().enumerate() {
            let ws = w.map_or(1.0, |w| w[s]);
            if ws > 0.0 {
                num += ws * t;
                den += ws;
            }
        }
        num / den
    }

    fn class_terms(t: &ClassTerms, input: &ClassInput<'_>) -> Vec<f64> {
        (0..input.labels.len()).map(|s| t.term(input, s)).collect()
    }

    // A worked example, 6 samples, K = 2:
    //   labels      y = [0, 0, 0, 1, 1, 1]
    //   predictions ŷ = [0, 0, 1, 1, 1, 0]
    //   q(·|x)        = [.8 .2], [.6 .4], [.3 .7], [.1 .9], [.2 .8], [.5 .5]
    // Confusion table n = [[2, 1], [1, 2]], N = 6, margins 3 and 3:
    //   shannon term of a diagonal cell  ln(2·6 / (3·3)) = ln(4/3) = 0.28768207245178090,
    //   of an off-diagonal cell          ln(1·6 / (3·3)) = ln(2/3) = −0.40546510810816438;
    //   mean (4·ln(4/3) + 2·ln(2/3)) / 6 = 0.05663301226513242 = the plug-in MI.
    // semantic_mi, probabilities mode: T(θ0) = (.8+.6+.3+.1+.2+.5)/6 = 2.5/6,
    //   T(θ1) = 3.5/6; i_s = ln q(y_s|x_s) − ln T(θ_{y_s}):
    //   s0 ln(.8·6/2.5) = ln 1.92 = 0.65232518603969,   s1 ln(.6·6/2.5) = ln 1.44 = 0.36464311358791,
    //   s2 ln(.3·6/2.5) = ln 0.72 = −0.32850406697203, s3 ln(.9·6/3.5) = ln(54/35) = 0.43363598507486,
    //   s4 ln(.8·6/3.5) = ln(48/35) = 0.31585294941848, s5 ln(.5·6/3.5) = ln(6/7) = −0.15415067982726.
    // ce_bound: p̂(0) = p̂(1) = 1/2, i_s = ln(2 q(y_s|x_s)): ln 1.6, ln 1.2, ln 0.6, ln 1.8, ln 1.6, ln 1.0.
    const LABELS: [u32; 6] = [0, 0, 0, 1, 1, 1];
    const PREDS: [u32; 6] = [0, 0, 1, 1, 1, 0];

    fn probs() -> ndarray::Array2<f64> {
        array![
            [0.8, 0.2],
            [0.6, 0.4],
            [0.3, 0.7],
            [0.1, 0.9],
            [0.2, 0.8],
            [0.5, 0.5]
        ]
    }

    fn input<'a>(q: &'a ndarray::Array2<f64>, w: Option<&'a [f64]>) -> ClassInput<'a> {
        ClassInput {
            labels: &LABELS,
            predictions: &PREDS,
            k: 2,
            probabilities: Some(q.view()),
            weights: w,
            truth_matrix: None,
        }
    }

    #[test]
    fn worked_example_terms() {
        let q = probs();
        let inp = input(&q, None);
        let sh = class_terms(&ClassTerms::shannon(&inp).unwrap(), &inp);
        let (d, o) = ((4.0f64 / 3.0).ln(), (2.0f64 / 3.0).ln());
        for (got, want) in sh.iter().zip([d, d, o, d, d, o]) {
            assert_relative_eq!(*got, want, epsilon = 1e-15);
        }
        assert_relative_eq!(mean(&sh, None), 0.05663301226513242, epsilon = 1e-15);

        let se = class_terms(&ClassTerms::semantic(&inp, "auto").unwrap(), &inp);
        let want = [
            0.65232518603969,
            0.36464311358791,
            -0.32850406697203,
            0.43363598507486,
            0.31585294941848,
            -0.15415067982726,
        ];
        for (got, want) in se.iter().zip(want) {
            assert_relative_eq!(*got, want, epsilon = 1e-13);
        }

        let ce = class_terms(&ClassTerms::ce_bound(&inp, 1e-12).unwrap(), &inp);
        for (got, want) in ce.iter().zip([1.6f64, 1.2, 0.6, 1.8, 1.6, 1.0]) {
            assert_relative_eq!(*got, want.ln(), epsilon = 1e-15);
        }
    }

    #[test]
    fn weighted_means_equal_the_estimators_plug_in_values() {
        // Random batch with uneven weights (one zero) and a truth matrix: every estimator's
        // plug-in value is reproduced by the weighted mean of the terms.
        let mut g = crate::estimate::rng::SplitMix64::new(5);
        let (n, k) = (300, 4);
        let mut labels = Vec::new();
        let mut preds = Vec::new();
        let mut q = ndarray::Array2::<f64>::zeros((n, k));
        let mut w = Vec::new();
        for s in 0..n {
            let y = g.below(k) as u32;
            let p = if g.uniform() < 0.6 {
                y
            } else {
                g.below(k) as u32
            };
            labels.push(y);
            preds.push(p);
            let mut row: Vec<f64> = (0..k).map(|_| g.uniform() + 0.05).collect();
            row[p as usize] += 1.5;
            let tot: f64 = row.iter().sum();
            for j in 0..k {
                q[[s, j]] = row[j] / tot;
            }
            w.push(if s == 7 { 0.0 } else { 0.2 + 3.0 * g.uniform() });
        }
        let truth = array![
            [1.0, 0.3, 0.2, 0.1],
            [0.4, 1.0, 0.3, 0.2],
            [0.2, 0.3, 1.0, 0.5],
            [0.1, 0.2, 0.6, 1.0]
        ];
        for weights in [None, Some(w.as_slice())] {
            let mut inp = ClassInput {
                labels: &labels,
                predictions: &preds,
                k,
                probabilities: Some(q.view()),
                weights,
                truth_matrix: None,
            };
            let none = Control::none();
            let sp = shannon::Params {
                bootstrap: 0,
                ..Default::default()
            };
            let out = shannon::shannon_mi(&inp, &sp, &none).unwrap();
            let terms = class_terms(&ClassTerms::shannon(&inp).unwrap(), &inp);
            let plug_in = out.details["plug_in"].as_f64().unwrap();
            assert_relative_eq!(mean(&terms, weights), plug_in, epsilon = 1e-12);

            let cp = ce_bound::Params {
                bootstrap: 0,
                ..Default::default()
            };
            let out = ce_bound::ce_bound(&inp, &cp, &none).unwrap();
            let terms = class_terms(&ClassTerms::ce_bound(&inp, cp.clip).unwrap(), &inp);
            assert_relative_eq!(mean(&terms, weights), out.value, epsilon = 1e-12);

            for mode in ["probabilities", "lbi"] {
                let p = semantic::Params {
                    bootstrap: 0,
                    mode: mode.into(),
                    ..Default::default()
                };
                let out = semantic::semantic_mi(&inp, &p, &none).unwrap();
                let terms = class_terms(&ClassTerms::semantic(&inp, mode).unwrap(), &inp);
                assert_relative_eq!(mean(&terms, weights), out.value, epsilon = 1e-12);
            }
            inp.truth_matrix = Some(truth.view());
            let p = semantic::Params {
                bootstrap: 0,
                ..Default::default()
            };
            let out = semantic::semantic_mi(&inp, &p, &none).unwrap();
            assert_eq!(out.details["mode"], "truth_matrix");
            let terms = class_terms(&ClassTerms::semantic(&inp, "auto").unwrap(), &inp);
            assert_relative_eq!(mean(&terms, weights), out.value, epsilon = 1e-12);
        }
    }

    #[test]
    fn lbi_terms_are_the_shannon_terms_and_zero_truth_is_minus_infinity() {
        let q = probs();
        let mut inp = input(&q, None);
        let sh = class_terms(&ClassTerms::shannon(&inp).unwrap(), &inp);
        let lbi = class_terms(&ClassTerms::semantic(&inp, "lbi").unwrap(), &inp);
        assert_eq!(sh, lbi);
        // Truth matrix [[1, 0], [0.5, 1]]: P̂(x) = (1/2, 1/2), T(θ0) = (1 + 0.5)/2 = 0.75,
        // T(θ1) = (0 + 1)/2 = 0.5. Cells: (0,0) ln(1/0.75) = 0.28768207245178, (0,1) ln 0 = −∞,
        // (1,1) ln(1/0.5) = ln 2, (1,0) ln(0.5/0.75) = ln(2/3).
        let t = array![[1.0, 0.0], [0.5, 1.0]];
        inp.truth_matrix = Some(t.view());
        let tm = class_terms(&ClassTerms::semantic(&inp, "auto").unwrap(), &inp);
        let (a, two, b) = ((4.0f64 / 3.0).ln(), 2.0f64.ln(), (2.0f64 / 3.0).ln());
        assert_eq!(tm[2], f64::NEG_INFINITY);
        for (s, want) in [(0, a), (1, a), (3, two), (4, two), (5, b)] {
            assert_relative_eq!(tm[s], want, epsilon = 1e-15);
        }
        assert!(ClassTerms::semantic(&inp, "nonsense").is_err());
        inp.probabilities = None;
        assert!(ClassTerms::semantic(&inp, "probabilities").is_err());
        assert!(ClassTerms::ce_bound(&inp, 1e-12).is_err());
    }

    #[test]
    fn multilabel_terms() {
        // 4 samples, 2 labels. Labels Y = [[1,0],[1,1],[0,1],[0,0]],
        // scores S = [[.9,.2],[.6,.7],[.3,.4],[.1,.1]], threshold 0.5 → decisions
        // D = [[1,0],[1,1],[0,0],[0,0]].
        // shannon: label 0 table (Y,D): (1,1) ×2, (0,0) ×2 → each cell ln(2·4/(2·2)) = ln 2;
        //   label 1: (0,0) ×2 [s0, s3], (1,1) ×1 [s1], (1,0) ×1 [s2]; rows Y=0: 2, Y=1: 2;
        //   cols D=0: 3, D=1: 1. (0,0): ln(2·4/(2·3)) = ln(4/3); (1,1): ln(1·4/(2·1)) = ln 2;
        //   (1,0): ln(1·4/(2·3)) = ln(2/3).
        //   i = [ln2 + ln(4/3), ln2 + ln2, ln2 + ln(2/3), ln2 + ln(4/3)].
        // semantic: W = 4, n_0 = 2, n_1 = 2, Σn = 4, scale 1; T(θ0) = (.9+.6+.3+.1)/4 = 0.475,
        //   T(θ1) = (.2+.7+.4+.1)/4 = 0.35.
        //   i = [ln(.9/.475), ln(.6/.475) + ln(.7/.35), ln(.4/.35), 0].
        let y = array![[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]];
        let sc = array![[0.9, 0.2], [0.6, 0.7], [0.3, 0.4], [0.1, 0.1]];
        let inp = MultilabelInput {
            labels: y.view(),
            scores: sc.view(),
            weights: None,
        };
        let t = MultilabelTerms::shannon(&inp, 0.5).unwrap();
        let (l2, l43, l23) = (2f64.ln(), (4f64 / 3.0).ln(), (2f64 / 3.0).ln());
        for (s, want) in [l2 + l43, l2 + l2, l2 + l23, l2 + l43]
            .into_iter()
            .enumerate()
        {
            assert_relative_eq!(t.term(&inp, s), want, epsilon = 1e-15);
        }
        let t = MultilabelTerms::semantic(&inp).unwrap();
        let want = [
            (0.9f64 / 0.475).ln(),
            (0.6f64 / 0.475).ln() + 2f64.ln(),
            (0.4f64 / 0.35).ln(),
            0.0,
        ];
        for (s, want) in want.into_iter().enumerate() {
            assert_relative_eq!(t.term(&inp, s), want, epsilon = 1e-14);
        }
        assert!(MultilabelTerms::shannon(&inp, 1.5).is_err());
    }

    #[test]
    fn multilabel_weighted_means_equal_the_estimators_values() {
        let mut g = crate::estimate::rng::SplitMix64::new(11);
        let (n, l) = (200, 3);
        let mut y = ndarray::Array2::<f64>::zeros((n, l));
        let mut sc = ndarray::Array2::<f64>::zeros((n, l));
        let mut w = Vec::new();
        for s in 0..n {
            for j in 0..l {
                let on = g.uniform() < 0.4;
                y[[s, j]] = f64::from(u8::from(on));
                sc[[s, j]] = (if on { 0.5 } else { 0.1 } + 0.45 * g.uniform()).min(1.0);
            }
            w.push(if s == 3 { 0.0 } else { 0.5 + g.uniform() });
        }
        for weights in [None, Some(w.as_slice())] {
            let inp = MultilabelInput {
                labels: y.view(),
                scores: sc.view(),
                weights,
            };
            let none = Control::none();
            let terms = MultilabelTerms::shannon(&inp, 0.5).unwrap();
            let t: Vec<f64> = (0..n).map(|s| terms.term(&inp, s)).collect();
            let sp = shannon::Params {
                bootstrap: 0,
                ..Default::default()
            };
            let out = shannon::shannon_mi_multilabel(&inp, &sp, &none).unwrap();
            let plug_in = out.details["plug_in"].as_f64().unwrap();
            assert_relative_eq!(mean(&t, weights), plug_in, epsilon = 1e-12);

            let terms = MultilabelTerms::semantic(&inp).unwrap();
            let t: Vec<f64> = (0..n).map(|s| terms.term(&inp, s)).collect();
            let p = semantic::Params {
                bootstrap: 0,
                ..Default::default()
            };
            let out = semantic::semantic_mi_multilabel(&inp, &p, &none).unwrap();
            assert_relative_eq!(mean(&t, weights), out.value, epsilon = 1e-12);
        }
    }
}
