//! Paired differences: one estimator on two versions' batches of the same samples, resampled
//! together so their noise cancels.

use super::bad_params;
use crate::domain::batch::{Batch, BatchData};
use crate::domain::estimators::Kind;
use crate::estimate::{self, ClassInput, Control, EstimateError};

/// One side of a paired comparison: its batches' samples concatenated (multiclass only).
struct Side {
    labels: Vec<u32>,
    predictions: Vec<u32>,
    probabilities: Option<ndarray::Array2<f64>>,
    weights: Option<Vec<f64>>,
    truth: Option<ndarray::Array2<f64>>,
    k: usize,
}

fn concat(batches: &[Batch]) -> Result<Side, EstimateError> {
    let first = batches
        .first()
        .ok_or_else(|| EstimateError::invalid("no batches to compare"))?;
    let k = first.k();
    let mut side = Side {
        labels: Vec::new(),
        predictions: Vec::new(),
        probabilities: None,
        weights: first.weights.as_ref().map(|_| Vec::new()),
        truth: first.truth_matrix.as_ref().map(|m| m.view().to_owned()),
        k,
    };
    let mut rows: Vec<f64> = Vec::new();
    let mut with_probs = true;
    for b in batches {
        let BatchData::Multiclass {
            labels,
            probabilities,
            ..
        } = &b.data
        else {
            return Err(EstimateError::invalid(
                "paired comparisons need multiclass batches",
            ));
        };
        if b.k() != k || b.weights.is_some() != side.weights.is_some() {
            return Err(EstimateError::invalid(
                "the batches differ in classes or weighting",
            ));
        }
        let predictions = b
            .multiclass_predictions()
            .ok_or_else(|| EstimateError::invalid("the batch has no predictions"))?;
        side.labels.extend_from_slice(labels);
        side.predictions.extend(predictions);
        if let (Some(w), Some(all)) = (&b.weights, side.weights.as_mut()) {
            all.extend_from_slice(w);
        }
        match probabilities {
            Some(m) if with_probs => rows.extend_from_slice(&m.data),
            _ => with_probs = false,
        }
    }
    if with_probs {
        side.probabilities = ndarray::Array2::from_shape_vec((side.labels.len(), k), rows).ok();
    }
    Ok(side)
}

/// The paired difference candidate − baseline of a multiclass estimator (`shannon_mi`,
/// `semantic_mi`, `ce_bound`) whose two sides were computed on the same samples: each side's
/// batches (in matching order) are concatenated and the paired bootstrap of
/// `estimate::paired` recomputes both values on each resample. The bridge from stored batches
/// to the numeric core, like [`compute`].
#[allow(clippy::too_many_arguments)]
pub fn paired_delta(
    estimator: &str,
    cand_params: &serde_json::Value,
    base_params: &serde_json::Value,
    cand: &[Batch],
    base: &[Batch],
    level: f64,
    replicates: usize,
    seed: u64,
) -> Result<estimate::paired::PairedDelta, EstimateError> {
    let kind = Kind::parse(estimator)
        .ok_or_else(|| EstimateError::invalid(format!("unknown estimator {estimator:?}")))?;
    let (c, b) = (concat(cand)?, concat(base)?);
    fn input(s: &Side) -> ClassInput<'_> {
        ClassInput {
            labels: &s.labels,
            predictions: &s.predictions,
            k: s.k,
            probabilities: s.probabilities.as_ref().map(|m| m.view()),
            weights: s.weights.as_deref(),
            truth_matrix: s.truth.as_ref().map(|m| m.view()),
        }
    }
    let no_interval = |p: &serde_json::Value| {
        let mut p = p.clone();
        if let Some(o) = p.as_object_mut() {
            o.insert("bootstrap".into(), serde_json::json!(0));
        }
        p
    };
    let (cp, bp) = (no_interval(cand_params), no_interval(base_params));
    let none = Control::none();
    let statistic = |i: &ClassInput<'_>, is_cand: bool| -> Result<f64, EstimateError> {
        let p = if is_cand { &cp } else { &bp };
        let out = match kind {
            Kind::ShannonMi => estimate::shannon::shannon_mi(
                i,
                &serde_json::from_value(p.clone()).map_err(bad_params)?,
                &none,
            ),
            Kind::SemanticMi => estimate::semantic::semantic_mi(
                i,
                &serde_json::from_value(p.clone()).map_err(bad_params)?,
                &none,
            ),
            Kind::CeBound => estimate::ce_bound::ce_bound(
                i,
                &serde_json::from_value(p.clone()).map_err(bad_params)?,
                &none,
            ),
            k => {
                return Err(EstimateError::invalid(format!(
                    "{} has no paired comparison",
                    k.id()
                )))
            }
        }?;
        Ok(out.value)
    };
    estimate::paired::paired_bootstrap(
        &input(&c),
        &input(&b),
        statistic,
        replicates,
        level,
        seed,
        &none,
    )
}
