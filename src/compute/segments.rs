//! The bridge from a segmented batch to per-segment estimates: for each segment key and each of
//! its values, the same estimator on that value's samples ([`Batch::subset`]), then the
//! decomposition of [`crate::estimate::segmented`]. Pure (no I/O); called by the worker after the
//! whole-batch [`crate::compute::compute`].

use crate::domain::batch::{Batch, BatchData};
use crate::domain::estimators::Kind;
use crate::domain::segments::SegmentColumn;
use crate::estimate::segmented::{
    self as seg, Decomposition, KeySegments, Part, PlugIn, SegmentRow, SegmentValue, Segments,
};
use crate::estimate::{Control, EstimateError, Output};

/// What a segmented run adds to a result: the per-key summary (values and decomposition, nats)
/// and one row per computed segment value (for `estimator{key=value}` metrics).
#[derive(Debug, Clone, Default)]
pub struct SegmentResults {
    pub summary: Segments,
    pub rows: Vec<SegmentRow>,
}

/// Estimators whose value is a (weighted) average over samples, so that Σ_s P(s) I_s is the
/// conditional quantity given S.
const DECOMPOSABLE: [&str; 4] = ["shannon_mi", "semantic_mi", "ce_bound", "implied_mi"];

/// Fewest samples a segment needs for the estimator, with the reason when below.
fn minimum(kind: Kind, params: &serde_json::Value) -> (usize, &'static str) {
    match kind {
        Kind::Ksg | Kind::MixedKsg => {
            let k = params.get("k").and_then(|v| v.as_u64()).unwrap_or(3) as usize;
            let ks = params
                .get("ks")
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_u64()).max().unwrap_or(0) as usize)
                .unwrap_or(0);
            (
                (k.max(ks) + 2).max(MIN_SEGMENT_SAMPLES),
                "fewer samples than the k-NN estimator's k + 2 (its neighbours and a subsample), or than 10",
            )
        }
        _ => (
            MIN_SEGMENT_SAMPLES,
            "fewer samples than a per-segment run gets (10)",
        ),
    }
}

/// Parameters for one segment's run: the semantic estimator resamples at most
/// `bootstrap_blocks` blocks; a segment with a fraction f of the samples gets
/// max(50, f·bootstrap_blocks) of them, so the cost of all segments' bootstraps stays near the
/// whole batch's (with fewer, larger blocks the basic bootstrap stays valid; each block is still
/// a random set of the segment's samples).
fn segment_params(kind: Kind, params: &serde_json::Value, fraction: f64) -> serde_json::Value {
    let mut p = params.clone();
    if kind == Kind::SemanticMi {
        if let Some(o) = p.as_object_mut() {
            let blocks = o
                .get("bootstrap_blocks")
                .and_then(|v| v.as_u64())
                .unwrap_or(2000) as f64;
            let m = (blocks * fraction)
                .ceil()
                .clamp(50.0f64.min(blocks), blocks);
            o.insert("bootstrap_blocks".into(), serde_json::json!(m as u64));
            // The most misleading samples are listed for the whole batch.
            o.insert("worst_samples".into(), serde_json::json!(0));
        }
    }
    p
}

/// Fewest samples any per-segment run gets: below it a segment's estimate and interval say
/// nothing, and thousands of tiny segments would multiply the job's work for nothing.
pub const MIN_SEGMENT_SAMPLES: usize = 10;

/// Run `estimator` on each segment value of each key of `batch` and decompose. `whole` is the
/// estimator's result on the whole batch. Progress is reported over the segments. Past
/// `deadline` (the job's time budget) the values not yet computed are skipped with the reason,
/// and a run the deadline stops is skipped too: the whole-batch result stands.
pub fn compute_segments(
    estimator: &str,
    params: &serde_json::Value,
    batch: &Batch,
    whole: &Output,
    control: &Control<'_>,
    deadline: Option<std::time::Instant>,
) -> Result<SegmentResults, EstimateError> {
    let over = || deadline.is_some_and(|d| std::time::Instant::now() >= d);
    let mut out = SegmentResults::default();
    if batch.segments.is_empty() {
        return Ok(out);
    }
    let kind = Kind::parse(estimator)
        .ok_or_else(|| EstimateError::invalid(format!("unknown estimator {estimator:?}")))?;
    let level = whole.interval.as_ref().map_or(0.95, |i| i.level);
    let total_weight: f64 = batch
        .weights
        .as_ref()
        .map_or(batch.n as f64, |w| w.iter().sum());
    let runs: usize = batch.segments.iter().map(|c| c.values.len()).sum();
    // shannon_mi needs only labels and predictions: gathered per segment from these, without
    // copying the rest of the batch.
    let whole_predictions = match (&batch.data, kind) {
        (BatchData::Multiclass { .. }, Kind::ShannonMi) => batch.multiclass_predictions(),
        _ => None,
    };
    let mut done = 0usize;
    for col in &batch.segments {
        let rows_by_value = col.rows_by_value();
        let mut values = Vec::with_capacity(col.values.len());
        let mut parts: Vec<Option<Part>> = Vec::with_capacity(col.values.len());
        // shannon_mi's plug-in per value (for the chain rule), where its run reported one.
        let mut plug_ins: Vec<Option<f64>> = Vec::with_capacity(col.values.len());
        for (name, rows) in col.values.iter().zip(&rows_by_value) {
            if !over() {
                control.tick(done as f64 / runs.max(1) as f64)?;
            }
            done += 1;
            let share = match &batch.weights {
                Some(w) => rows.iter().map(|&i| w[i]).sum::<f64>() / total_weight,
                None => rows.len() as f64 / batch.n as f64,
            };
            let mut v = SegmentValue {
                value: name.clone(),
                n: rows.len() as u64,
                share,
                estimate: None,
                estimate_special: None,
                ci_low: None,
                ci_high: None,
                contribution: None,
                contribution_share: None,
                reliability: None,
                skipped: None,
            };
            let (min_n, why) = minimum(kind, params);
            let skip = if over() {
                Some(format!(
                    "not computed: the job's time budget (--job-seconds) ran out after {} of {runs} segment values",
                    done - 1
                ))
            } else if kind.bound().is_some() {
                Some("the neural bounds are not trained per segment (cost): upload a segment's samples as their own batch".to_string())
            } else if rows.len() < min_n {
                Some(format!("{} samples: {why}", rows.len()))
            } else if share <= 0.0 {
                Some("the segment's samples all have weight 0".to_string())
            } else {
                None
            };
            if let Some(reason) = skip {
                v.skipped = Some(reason);
                values.push(v);
                parts.push(None);
                plug_ins.push(None);
                continue;
            }
            let fraction = rows.len() as f64 / batch.n as f64;
            let p = segment_params(kind, params, fraction);
            match run_one(
                kind,
                estimator,
                &p,
                batch,
                rows,
                whole_predictions.as_deref(),
                fraction,
                control,
            ) {
                Ok(mut o) => {
                    let (est, special) = seg::finite_or_special(o.value);
                    let iv = o
                        .interval
                        .as_ref()
                        .filter(|_| o.value.is_finite())
                        .map(|i| (i.low, i.high));
                    // An interval that a biased resampling distribution put beside the value is
                    // reported as it is, and the segment value flagged (as a whole-batch result
                    // would be read), not widened to hide it.
                    if iv.is_some_and(|(lo, hi)| !(lo <= o.value && o.value <= hi)) {
                        o.diagnostics.add(
                            crate::estimate::Reliability::Unreliable,
                            "value_outside_interval",
                            "the segment's bootstrap interval does not contain its value: the resampling distribution is biased at this size",
                        );
                    }
                    v.estimate = est;
                    v.estimate_special = special;
                    v.ci_low = iv.map(|i| i.0).filter(|x| x.is_finite());
                    v.ci_high = iv.map(|i| i.1).filter(|x| x.is_finite());
                    v.reliability = Some(o.diagnostics.reliability);
                    parts.push(Some(Part {
                        share,
                        value: o.value,
                        interval: iv,
                    }));
                    plug_ins.push(o.details.get("plug_in").and_then(|x| x.as_f64()));
                    let mut details = o.details;
                    if let Some(d) = details.as_object_mut() {
                        d.insert("segment_share".into(), serde_json::json!(share));
                    }
                    out.rows.push(SegmentRow {
                        key: col.key.clone(),
                        value: name.clone(),
                        n: rows.len() as u64,
                        share,
                        estimate: o.value,
                        ci_low: v.ci_low,
                        ci_high: v.ci_high,
                        details,
                        sufficient: o.sufficient,
                        diagnostics: serde_json::to_value(&o.diagnostics)
                            .unwrap_or(serde_json::Value::Null),
                    });
                }
                Err(EstimateError::Cancelled) if over() => {
                    v.skipped = Some(
                        "stopped: the job's time budget (--job-seconds) ran out during this segment value's run"
                            .into(),
                    );
                    parts.push(None);
                    plug_ins.push(None);
                }
                Err(EstimateError::Cancelled) => return Err(EstimateError::Cancelled),
                Err(EstimateError::Invalid(msg)) => {
                    v.skipped = Some(msg);
                    parts.push(None);
                    plug_ins.push(None);
                }
            }
            values.push(v);
        }
        let decomposition = DECOMPOSABLE.contains(&estimator).then(|| {
            let seg = Segmentation {
                col,
                rows_by_value: &rows_by_value,
                plug_ins: &plug_ins,
                predictions: whole_predictions.as_deref(),
            };
            let worst = values.iter().filter_map(|v| v.reliability).max();
            decompose(estimator, batch, &seg, whole, &parts, level, worst)
        });
        // Contributions over the computed segments.
        if parts.iter().all(Option::is_some) {
            let all: Vec<Part> = parts.iter().flatten().copied().collect();
            for (v, (c, s)) in values.iter_mut().zip(seg::contributions(&all)) {
                v.contribution = c;
                v.contribution_share = s;
            }
        }
        out.summary.insert(
            col.key.clone(),
            KeySegments {
                values,
                values_omitted: 0,
                decomposition,
            },
        );
    }
    if !over() {
        control.tick(1.0)?;
    }
    Ok(out)
}

/// One segment's run: as the worker's [`crate::compute::compute`], except that multiclass
/// `semantic_mi` gets the segment's fraction of the k-NN rows for R (see
/// [`crate::estimate::semantic::semantic_mi_limited`]).
#[allow(clippy::too_many_arguments)]
fn run_one(
    kind: Kind,
    estimator: &str,
    params: &serde_json::Value,
    batch: &Batch,
    rows: &[usize],
    whole_predictions: Option<&[u32]>,
    fraction: f64,
    outer: &Control<'_>,
) -> Result<Output, EstimateError> {
    use crate::estimate::{semantic, shannon};
    // The job's cancellation (and time budget) reaches the run; its progress is the loop's.
    let quiet = |_: f64| {};
    let control = Control {
        progress: &quiet,
        cancelled: outer.cancelled,
    };
    let bad = |e: serde_json::Error| {
        EstimateError::invalid(format!("stored parameters are invalid: {e}"))
    };
    if let (Kind::ShannonMi, BatchData::Multiclass { labels, .. }, Some(preds)) =
        (kind, &batch.data, whole_predictions)
    {
        let y: Vec<u32> = rows.iter().map(|&i| labels[i]).collect();
        let p: Vec<u32> = rows.iter().map(|&i| preds[i]).collect();
        let w: Option<Vec<f64>> = batch
            .weights
            .as_ref()
            .map(|w| rows.iter().map(|&i| w[i]).collect());
        let input = crate::estimate::ClassInput {
            labels: &y,
            predictions: &p,
            k: batch.k(),
            probabilities: None,
            weights: w.as_deref(),
            truth_matrix: None,
        };
        let params: shannon::Params = serde_json::from_value(params.clone()).map_err(bad)?;
        return shannon::shannon_mi(&input, &params, &control);
    }
    let sub = batch.subset(rows);
    let sub = &sub;
    if let (
        Kind::SemanticMi,
        BatchData::Multiclass {
            labels,
            probabilities,
            ..
        },
    ) = (kind, &sub.data)
    {
        if let Some(predictions) = sub.multiclass_predictions() {
            let input = crate::estimate::ClassInput {
                labels,
                predictions: &predictions,
                k: sub.k(),
                probabilities: probabilities.as_ref().map(|m| m.view()),
                weights: sub.weights.as_deref(),
                truth_matrix: sub.truth_matrix.as_ref().map(|m| m.view()),
            };
            let p: semantic::Params = serde_json::from_value(params.clone()).map_err(bad)?;
            let rows = (semantic::SCORE_KNN_MAX_ROWS as f64 * fraction).floor() as usize;
            return semantic::semantic_mi_limited(&input, &p, &control, rows);
        }
    }
    crate::compute::compute(estimator, params, sub, &control)
}

/// One key's segmentation as the decomposition needs it.
struct Segmentation<'a> {
    col: &'a SegmentColumn,
    rows_by_value: &'a [Vec<usize>],
    /// The per-value runs' plug-in MI (shannon_mi), `None` where not reported.
    plug_ins: &'a [Option<f64>],
    /// The whole batch's predictions, when already computed.
    predictions: Option<&'a [u32]>,
}

fn decompose(
    estimator: &str,
    batch: &Batch,
    seg_of: &Segmentation<'_>,
    whole: &Output,
    parts: &[Option<Part>],
    level: f64,
    worst: Option<crate::estimate::Reliability>,
) -> Decomposition {
    let col = seg_of.col;
    let quantity = if estimator == "shannon_mi" {
        "I(Y;Ŷ|S): the conditional mutual information given the segment".to_string()
    } else {
        format!(
            "Σ_s P(s)·{estimator}_s: the segment-weighted average of {estimator}, not a conditional mutual information"
        )
    };
    // The samples behind the shares: Kish's effective number when weighted.
    let n_eff = match &batch.weights {
        Some(w) => {
            let (s, s2) = w.iter().fold((0.0, 0.0), |(a, b), &x| (a + x, b + x * x));
            if s2 > 0.0 {
                s * s / s2
            } else {
                0.0
            }
        }
        None => batch.labelled_count() as f64,
    };
    let mut d = Decomposition {
        conditional_mi: None,
        quantity,
        reliability: if parts.iter().any(Option::is_none) {
            Some(crate::estimate::Reliability::Unreliable)
        } else {
            worst
        },
        conditional_ci_low: None,
        conditional_ci_high: None,
        whole: whole.value.is_finite().then_some(whole.value),
        i_y_s: None,
        i_y_s_ci_low: None,
        i_y_s_ci_high: None,
        plug_in: None,
        method: seg::METHOD.to_string(),
        reason: None,
    };
    let all: Option<Vec<Part>> = parts.iter().copied().collect();
    match all {
        None => {
            d.reason =
                Some("a segment was skipped: the weighted sum over segments is undefined".into())
        }
        Some(all) => match seg::conditional(&all, level, n_eff) {
            Ok((v, iv)) => {
                d.conditional_mi = Some(v);
                d.conditional_ci_low = iv.map(|i| i.0);
                d.conditional_ci_high = iv.map(|i| i.1);
            }
            Err(reason) => d.reason = Some(reason),
        },
    }
    // I(Y;S) reads the labels: only when every sample has its label (a label-free implied_mi
    // run on a batch whose labels come later has none yet).
    let labelled = batch.labelled_count() == batch.n;
    if let (true, BatchData::Multiclass { labels, .. }) = (labelled, &batch.data) {
        let k = batch.k();
        let segments = col.values.len();
        let w = batch.weights.as_deref();
        let (iys, iys_plug, iv) = seg::label_segment_mi(labels, k, &col.codes, segments, w, level);
        d.i_y_s = iys.is_finite().then_some(iys);
        d.i_y_s_ci_low = iv.map(|i| i.0);
        d.i_y_s_ci_high = iv.map(|i| i.1);
        if estimator == "shannon_mi" {
            let computed;
            let preds = match seg_of.predictions {
                Some(p) => Some(p),
                None => {
                    computed = batch.multiclass_predictions();
                    computed.as_deref()
                }
            };
            if let Some(preds) = preds {
                let joint = seg::plugin_joint(labels, preds, k, &col.codes, segments, w);
                let whole_plug = whole
                    .details
                    .get("plug_in")
                    .and_then(|x| x.as_f64())
                    .unwrap_or_else(|| seg::plugin_pairs(labels, preds, k, w));
                let total: f64 = w.map_or(batch.n as f64, |w| w.iter().sum());
                let mut given = 0.0;
                for (rows, known) in seg_of.rows_by_value.iter().zip(seg_of.plug_ins) {
                    if rows.is_empty() {
                        continue;
                    }
                    let ws: Option<Vec<f64>> = w.map(|w| rows.iter().map(|&i| w[i]).collect());
                    let mass = ws.as_ref().map_or(rows.len() as f64, |w| w.iter().sum());
                    if mass <= 0.0 {
                        continue;
                    }
                    // The segment's own run's plug-in, else (a skipped segment) computed here.
                    let i_s = known.unwrap_or_else(|| {
                        let y: Vec<u32> = rows.iter().map(|&i| labels[i]).collect();
                        let p: Vec<u32> = rows.iter().map(|&i| preds[i]).collect();
                        seg::plugin_pairs(&y, &p, k, ws.as_deref())
                    });
                    given += mass / total * i_s;
                }
                d.plug_in = Some(PlugIn {
                    i_y_yhat: whole_plug,
                    i_y_s: iys_plug,
                    i_y_yhat_given_s: given,
                    i_y_yhat_and_s: joint,
                    interaction: whole_plug - given,
                });
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::batch::BatchRequest;

    fn segmented(n: usize) -> Batch {
        let labels: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
        let predictions: Vec<u32> = (0..n).map(|i| ((i + i / 7) % 3) as u32).collect();
        let region: Vec<String> = (0..n).map(|i| format!("r{}", i % 4)).collect();
        let req: BatchRequest = serde_json::from_value(serde_json::json!({
            "task": "multiclass", "classes": ["a", "b", "c"],
            "labels": labels, "predictions": predictions,
            "segments": {"region": region}
        }))
        .unwrap();
        req.validate().unwrap().batch
    }

    /// Past the job's deadline no segment value runs: each is skipped with the reason, and the
    /// whole-batch result is untouched. Without a deadline every value is computed.
    #[test]
    fn segment_values_past_the_time_budget_are_skipped_with_the_reason() {
        let batch = segmented(400);
        let params = serde_json::json!({});
        let whole =
            crate::compute::compute("shannon_mi", &params, &batch, &Control::none()).unwrap();
        let past = std::time::Instant::now();
        let out = compute_segments(
            "shannon_mi",
            &params,
            &batch,
            &whole,
            &Control::none(),
            Some(past),
        )
        .unwrap();
        let values = &out.summary["region"].values;
        assert_eq!(values.len(), 4);
        for v in values {
            assert!(v.estimate.is_none());
            assert!(
                v.skipped.as_deref().unwrap().contains("time budget"),
                "{:?}",
                v.skipped
            );
        }
        assert!(out.rows.is_empty());
        let all = compute_segments(
            "shannon_mi",
            &params,
            &batch,
            &whole,
            &Control::none(),
            None,
        )
        .unwrap();
        assert!(all.summary["region"]
            .values
            .iter()
            .all(|v| v.estimate.is_some()));
        assert_eq!(all.rows.len(), 4);
    }
}
