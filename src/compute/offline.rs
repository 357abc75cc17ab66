//! Estimators on a decoded batch with no queue and no store: what `infoaudit estimate` runs.
//! The batch is validated by the upload's rules, its estimators resolved with the upload's
//! defaults and cost limits, and each one runs as a worker runs it ([`super::compute`], then the
//! per-segment breakdown), so a value computed here equals the service's for the same rows,
//! estimator, parameters and version.

use std::time::Instant;

use crate::domain::batch::{Batch, BatchRequest, EstimatorRef};
use crate::domain::estimators::{self, JobSpec, Skipped};
use crate::domain::rows::ColumnMap;
use crate::error::FieldError;
use crate::estimate::{self, Control, EstimateError, Output};

use super::segments::SegmentResults;

/// A validated batch and the estimator runs it gets.
pub struct Plan {
    pub batch: Batch,
    pub specs: Vec<JobSpec>,
    /// Default estimators left out because they exceed the limits (none when estimators were named).
    pub skipped: Vec<Skipped>,
}

/// One estimator's run.
pub struct Run {
    pub spec: JobSpec,
    pub outcome: Result<(Output, SegmentResults), EstimateError>,
    /// Wall time of the run (the estimator and its segments), in seconds.
    pub seconds: f64,
}

/// Validate `request` and resolve its estimators (`requested` replaces the request's own list).
/// Errors carry the upload's pointers, translated to rows and columns through `columns` where
/// the file was row-oriented.
pub fn plan(
    mut request: BatchRequest,
    columns: Option<&ColumnMap>,
    requested: Option<Vec<EstimatorRef>>,
    limits: &estimate::cost::Limits,
) -> Result<Plan, Vec<FieldError>> {
    let located = |errors: Vec<FieldError>| match columns {
        Some(map) => map.locate(errors),
        None => errors,
    };
    // Estimators named by the caller are reported at their index in that list, not located in
    // the file.
    let named = requested.is_some();
    if named {
        request.estimators = requested;
    }
    let valid = request.validate().map_err(located)?;
    if valid.batch.labels_later {
        return Err(vec![FieldError::at(
            "/labels",
            "is required here: labels sent later by id need the service",
        )]);
    }
    if let Some(e) = estimators::check_classes(&valid.batch, limits) {
        return Err(located(vec![e]));
    }
    let resolved = estimators::resolve(
        &valid.batch,
        valid.estimators.as_deref(),
        "estimators",
        limits,
    )
    .map_err(|e| if named { e } else { located(e) })?;
    Ok(Plan {
        batch: valid.batch,
        specs: resolved.specs,
        skipped: resolved.skipped,
    })
}

/// Run one planned estimator on the batch, with its per-segment breakdown, as a worker would.
pub fn run(batch: &Batch, spec: &JobSpec, control: &Control<'_>) -> Run {
    let started = Instant::now();
    let outcome = super::compute(&spec.estimator, &spec.params, batch, control).and_then(|out| {
        let segments = super::segments::compute_segments(
            &spec.estimator,
            &spec.params,
            batch,
            &out,
            control,
            None,
        )?;
        Ok((out, segments))
    });
    Run {
        spec: spec.clone(),
        outcome,
        seconds: started.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> BatchRequest {
        serde_json::from_value(json).expect("request")
    }

    /// The plug-in MI of a perfect binary classifier with balanced classes is H(Y) = ln 2 nats
    /// (closed form); the offline path reports the same value the worker's dispatch computes.
    #[test]
    fn a_planned_run_equals_the_closed_form_and_the_dispatch() {
        let r = request(serde_json::json!({
            "task": "multiclass",
            "labels": [0, 1, 0, 1, 0, 1, 0, 1],
            "predictions": [0, 1, 0, 1, 0, 1, 0, 1],
        }));
        let p = plan(
            r,
            None,
            Some(vec![EstimatorRef::Id("shannon_mi".into())]),
            &Default::default(),
        )
        .expect("plan");
        assert_eq!(p.specs.len(), 1);
        let run = run(&p.batch, &p.specs[0], &Control::none());
        let (out, _) = run.outcome.expect("runs");
        let plug_in = out.details["plug_in"].as_f64().expect("plug-in value");
        assert!(
            (plug_in - std::f64::consts::LN_2).abs() < 1e-12,
            "{plug_in}"
        );
        let direct =
            super::super::compute("shannon_mi", &p.specs[0].params, &p.batch, &Control::none())
                .expect("dispatch");
        assert_eq!(out.value.to_bits(), direct.value.to_bits());
    }

    #[test]
    fn labels_to_come_are_refused_offline() {
        let r = request(serde_json::json!({
            "task": "multiclass",
            "classes": ["a", "b"],
            "predictions": [0, 1],
            "ids": ["s1", "s2"],
        }));
        let e = plan(r, None, None, &Default::default())
            .err()
            .expect("refused");
        assert_eq!(e[0].pointer.as_deref(), Some("/labels"), "{e:?}");
    }

    #[test]
    fn a_named_estimator_that_does_not_apply_is_an_error_at_its_index() {
        let r = request(serde_json::json!({
            "task": "multiclass",
            "labels": [0, 1, 0, 1],
            "predictions": [0, 1, 1, 1],
        }));
        let e = plan(
            r,
            None,
            Some(vec![EstimatorRef::Id("ksg".into())]),
            &Default::default(),
        )
        .err()
        .expect("refused");
        assert_eq!(e[0].pointer.as_deref(), Some("/estimators/0"), "{e:?}");
    }
}
