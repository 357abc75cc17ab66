//! The bridge from a stored batch to the numeric core: estimator dispatch ([`compute`]), paired
//! differences between two versions' batches ([`paired`]) and per-segment runs ([`segments`]).
//! Pure (no I/O): the worker, the judge and the segment runs call it on blocking threads.

pub mod offline;
pub mod paired;
pub mod segments;

use crate::domain::batch::{Batch, BatchData};
use crate::domain::estimators::Kind;
use crate::estimate::{self, ClassInput, Control, EstimateError, MultilabelInput, Output};

pub(crate) fn bad_params(e: serde_json::Error) -> EstimateError {
    EstimateError::Invalid(format!("stored parameters are invalid: {e}"))
}

/// Run one estimator on a batch: the bridge from domain types to the pure numeric core.
pub fn compute(
    estimator: &str,
    params: &serde_json::Value,
    batch: &Batch,
    control: &Control,
) -> Result<Output, EstimateError> {
    let mut out = dispatch(estimator, params, batch, control)?;
    // Rounded probabilities accepted with `normalize`: every result says so.
    if let (Some(n), Some(d)) = (batch.normalized, out.details.as_object_mut()) {
        d.insert(
            "probabilities_normalized".into(),
            serde_json::json!({"rows": n.rows, "max_deviation": n.max_deviation}),
        );
    }
    Ok(out)
}

fn dispatch(
    estimator: &str,
    params: &serde_json::Value,
    batch: &Batch,
    control: &Control,
) -> Result<Output, EstimateError> {
    let kind = Kind::parse(estimator)
        .ok_or_else(|| EstimateError::Invalid(format!("unknown estimator {estimator:?}")))?;
    let p = params.clone();
    if let Some(bound) = kind.bound() {
        let BatchData::Pairs { x, y } = &batch.data else {
            return Err(EstimateError::Invalid(format!(
                "{} needs a pairs batch",
                kind.id()
            )));
        };
        let params: estimate::neural::Params = serde_json::from_value(p).map_err(bad_params)?;
        return estimate::neural::estimate(bound, x.view(), y.view(), &params, control);
    }
    match &batch.data {
        BatchData::Pairs { x, y } => match kind {
            Kind::Ksg => estimate::ksg::ksg(
                x.view(),
                y.view(),
                &serde_json::from_value(p).map_err(bad_params)?,
                control,
            ),
            k => Err(EstimateError::Invalid(format!(
                "{} does not apply to pairs batches",
                k.id()
            ))),
        },
        BatchData::Regression {
            targets,
            predictions,
        } => match kind {
            Kind::Ksg => {
                let t =
                    ndarray::ArrayView2::from_shape((targets.len(), 1), targets).expect("column");
                let q = ndarray::ArrayView2::from_shape((predictions.len(), 1), predictions)
                    .expect("column");
                estimate::ksg::ksg(
                    t,
                    q,
                    &serde_json::from_value(p).map_err(bad_params)?,
                    control,
                )
            }
            k => Err(EstimateError::Invalid(format!(
                "{} does not apply to regression batches",
                k.id()
            ))),
        },
        BatchData::Multiclass {
            labels,
            features: Some(f),
            ..
        } if kind == Kind::MixedKsg => estimate::ksg::mixed::mixed_ksg(
            f.view(),
            labels,
            &serde_json::from_value(p).map_err(bad_params)?,
            control,
        ),
        BatchData::Multiclass {
            labels,
            probabilities: Some(q),
            ..
        } if kind == Kind::MixedKsg => estimate::ksg::mixed::mixed_ksg(
            q.view(),
            labels,
            &serde_json::from_value(p).map_err(bad_params)?,
            control,
        ),
        BatchData::Multiclass {
            labels,
            probabilities,
            ..
        } => {
            let predictions = batch
                .multiclass_predictions()
                .ok_or_else(|| EstimateError::Invalid("the batch has no predictions".into()))?;
            let input = ClassInput {
                labels,
                predictions: &predictions,
                k: batch.k(),
                probabilities: probabilities.as_ref().map(|m| m.view()),
                weights: batch.weights.as_deref(),
                truth_matrix: batch.truth_matrix.as_ref().map(|m| m.view()),
            };
            match kind {
                Kind::ShannonMi => estimate::shannon::shannon_mi(
                    &input,
                    &serde_json::from_value(p).map_err(bad_params)?,
                    control,
                ),
                Kind::SemanticMi => estimate::semantic::semantic_mi(
                    &input,
                    &serde_json::from_value(p).map_err(bad_params)?,
                    control,
                ),
                Kind::CeBound => estimate::ce_bound::ce_bound(
                    &input,
                    &serde_json::from_value(p).map_err(bad_params)?,
                    control,
                ),
                Kind::ImpliedMi => {
                    let params: estimate::implied::Params =
                        serde_json::from_value(p).map_err(bad_params)?;
                    let label_free = ClassInput {
                        labels: &[],
                        ..input
                    };
                    let input = if params.labels == estimate::implied::LabelUse::None {
                        &label_free
                    } else {
                        &input
                    };
                    estimate::implied::implied_mi(input, &params, control)
                }
                Kind::RgCurve => estimate::rg::rg_curve(
                    &input,
                    &serde_json::from_value(p).map_err(bad_params)?,
                    control,
                ),
                k => Err(EstimateError::Invalid(format!(
                    "{} does not apply to multiclass batches",
                    k.id()
                ))),
            }
        }
        BatchData::Multilabel {
            labels,
            predictions,
            scores,
            ..
        } => {
            let decisions = predictions.as_ref().or(scores.as_ref()).ok_or_else(|| {
                EstimateError::Invalid("the batch has neither predictions nor scores".into())
            })?;
            match kind {
                Kind::ShannonMi => {
                    let mut params: estimate::shannon::Params =
                        serde_json::from_value(p).map_err(bad_params)?;
                    if predictions.is_some() {
                        // Hard predicted sets (0/1) are their own decisions.
                        params.threshold = 0.5;
                    }
                    let input = MultilabelInput {
                        labels: labels.view(),
                        scores: decisions.view(),
                        weights: batch.weights.as_deref(),
                    };
                    estimate::shannon::shannon_mi_multilabel(&input, &params, control)
                }
                Kind::SemanticMi => {
                    let scores = scores.as_ref().ok_or_else(|| {
                        EstimateError::Invalid("semantic_mi needs per-label scores".into())
                    })?;
                    let input = MultilabelInput {
                        labels: labels.view(),
                        scores: scores.view(),
                        weights: batch.weights.as_deref(),
                    };
                    estimate::semantic::semantic_mi_multilabel(
                        &input,
                        &serde_json::from_value(p).map_err(bad_params)?,
                        control,
                    )
                }
                k => Err(EstimateError::Invalid(format!(
                    "{} does not apply to multilabel batches",
                    k.id()
                ))),
            }
        }
    }
}
