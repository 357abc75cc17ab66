//! Validation of an upload body into a `Batch`: shapes, ranges, label resolution against the
//! classes, weights, the truth matrix, segments and ids. Every offending value is named by a JSON
//! Pointer, up to a cap.

use std::collections::HashMap;

use super::{Batch, BatchData, BatchRequest, EstimatorRef, LabelForm, Normalized, Task};
use crate::domain::columns::{Label, Matrix};
use crate::domain::errors::Errors;
use crate::domain::segments::{self, SegmentColumn, UNLABELLED};
use crate::error::FieldError;

/// Probabilities and scores may exceed 1 by this much (rounding in exported floats).
const UNIT_SLACK: f64 = 1e-6;
/// Probability rows must sum to 1 within this.
const ROW_SUM_TOLERANCE: f64 = 1e-3;
/// With `normalize`, probability rows must sum to 1 within this (rounding, not a bug).
pub const NORMALIZE_TOLERANCE: f64 = 0.1;

/// Classes inferred from label indices (no `classes` given) are at most this many: the names
/// 0..k are made for them, so one stray index of 10^13 would otherwise allocate terabytes.
pub const MAX_INFERRED_CLASSES: usize = 1 << 20;

fn unit_interval(errors: &mut Errors, field: &str, m: &Matrix, check_rows_sum: bool) {
    unit_interval_within(errors, field, m, check_rows_sum, ROW_SUM_TOLERANCE)
}

/// Divide each probability row by its sum (the rows were checked to sum within
/// [`NORMALIZE_TOLERANCE`] of 1), and say what changed.
fn normalize_rows(m: &mut Matrix) -> Normalized {
    let mut out = Normalized {
        rows: 0,
        max_deviation: 0.0,
    };
    for r in 0..m.rows {
        let row = &mut m.data[r * m.cols..(r + 1) * m.cols];
        let s: f64 = row.iter().sum();
        let dev = (s - 1.0).abs();
        if dev > 1e-12 && s > 0.0 {
            out.rows += 1;
            out.max_deviation = out.max_deviation.max(dev);
            for v in row.iter_mut() {
                *v /= s;
            }
        }
    }
    out
}

fn unit_interval_within(
    errors: &mut Errors,
    field: &str,
    m: &Matrix,
    check_rows_sum: bool,
    tolerance: f64,
) {
    for r in 0..m.rows {
        let row = m.row(r);
        let mut bad = false;
        for (c, &v) in row.iter().enumerate() {
            if !v.is_finite() {
                errors.push(format!("/{field}/{r}/{c}"), "must be a finite number");
                bad = true;
            } else if v < 0.0 {
                errors.push(format!("/{field}/{r}/{c}"), format!("{v} is negative"));
                bad = true;
            } else if v > 1.0 + UNIT_SLACK {
                errors.push(
                    format!("/{field}/{r}/{c}"),
                    format!("{v} is greater than 1"),
                );
                bad = true;
            }
        }
        if check_rows_sum && !bad {
            let s: f64 = row.iter().sum();
            if (s - 1.0).abs() > tolerance {
                let hint = if tolerance < NORMALIZE_TOLERANCE {
                    "; rounded probabilities are accepted with `normalize: true` (rows within 0.1 of 1 are divided by their sum)"
                } else {
                    ""
                };
                errors.push(
                    format!("/{field}/{r}"),
                    format!(
                        "probabilities sum to {s}; they must sum to 1 (within {tolerance}){hint}"
                    ),
                );
            }
        }
        if errors.full() {
            return;
        }
    }
}

fn shape(errors: &mut Errors, field: &str, m: &Matrix, rows: usize, cols: Option<usize>) -> bool {
    if let Some((r, len)) = m.ragged {
        errors.push(
            format!("/{field}/{r}"),
            format!("row has {len} values but row 0 has {}", m.cols),
        );
        return false;
    }
    if m.rows != rows {
        errors.push(
            format!("/{field}"),
            format!("has {} rows but there are {rows} labels", m.rows),
        );
        return false;
    }
    if let Some(c) = cols {
        if m.cols != c {
            errors.push(
                format!("/{field}/0"),
                format!("rows have {} values but there are {c} classes", m.cols),
            );
            return false;
        }
    }
    true
}

/// Resolve one class reference (index or name) against the class list.
pub(crate) fn class_of(
    l: &Label,
    k: usize,
    index: &HashMap<&str, u32>,
) -> Result<(u32, LabelForm), String> {
    match l {
        Label::Index(i) if *i >= 0 && (*i as u64) < k as u64 => Ok((*i as u32, LabelForm::Index)),
        Label::Index(i) => Err(format!(
            "class index {i} is outside 0..{}",
            k.saturating_sub(1)
        )),
        Label::Number(x) if x.fract() == 0.0 && *x >= 0.0 && *x < k as f64 => {
            Ok((*x as u32, LabelForm::Index))
        }
        Label::Number(x) => Err(format!(
            "{x} is not a class index (an integer in 0..{})",
            k.saturating_sub(1)
        )),
        // Text is a class name; text that names no class but is a whole number is an index
        // (the one rule for JSON strings, NDJSON, CSV cells and the labels route).
        Label::Name(s) => match index.get(s.as_str()) {
            Some(&i) => Ok((i, LabelForm::Name)),
            None => match s.parse::<u64>() {
                Ok(i) if i < k as u64 && s.bytes().all(|b| b.is_ascii_digit()) => {
                    Ok((i as u32, LabelForm::Index))
                }
                _ => Err(format!(
                    "{s:?} is not one of the {k} classes (nor a class index in 0..{})",
                    k.saturating_sub(1)
                )),
            },
        },
        Label::Row(_) => Err("must be a single class (index or name), not an array".into()),
    }
}

fn merge_form(acc: Option<LabelForm>, f: LabelForm) -> Option<LabelForm> {
    Some(match acc {
        None => f,
        Some(a) if a == f => a,
        Some(_) => LabelForm::Mixed,
    })
}

fn multiclass_column(
    errors: &mut Errors,
    field: &str,
    col: &[Label],
    k: usize,
    index: &HashMap<&str, u32>,
) -> (Vec<u32>, LabelForm) {
    let mut out = Vec::with_capacity(col.len());
    let mut form = None;
    for (i, l) in col.iter().enumerate() {
        match class_of(l, k, index) {
            Ok((c, f)) => {
                out.push(c);
                form = merge_form(form, f);
            }
            Err(m) => {
                errors.push(format!("/{field}/{i}"), m);
                out.push(0);
            }
        }
    }
    (out, form.unwrap_or_default())
}

fn multilabel_column(
    errors: &mut Errors,
    field: &str,
    col: &[Label],
    l: usize,
    index: &HashMap<&str, u32>,
) -> (Matrix, LabelForm) {
    let mut data = vec![0.0; col.len() * l];
    let mut form = None;
    for (i, cell) in col.iter().enumerate() {
        let Label::Row(row) = cell else {
            errors.push(
                format!("/{field}/{i}"),
                "must be an indicator row like [0,1,0] or a list of label names",
            );
            continue;
        };
        let out = &mut data[i * l..(i + 1) * l];
        if row.is_empty() {
            // No labels: the empty set (in either form).
            continue;
        }
        let names = row.iter().any(|v| matches!(v, Label::Name(_)));
        if names {
            form = merge_form(form, LabelForm::Name);
            for (j, v) in row.iter().enumerate() {
                match v {
                    Label::Name(s) => match index.get(s.as_str()) {
                        Some(&c) => out[c as usize] = 1.0,
                        None => errors.push(
                            format!("/{field}/{i}/{j}"),
                            format!("{s:?} is not one of the {l} labels"),
                        ),
                    },
                    _ => errors.push(
                        format!("/{field}/{i}/{j}"),
                        "mixes label names with numbers; use names or an indicator row",
                    ),
                }
            }
        } else {
            form = merge_form(form, LabelForm::Index);
            if row.len() != l {
                errors.push(
                    format!("/{field}/{i}"),
                    format!(
                        "indicator row has {} values but there are {l} labels",
                        row.len()
                    ),
                );
                continue;
            }
            for (j, v) in row.iter().enumerate() {
                match v {
                    Label::Index(0) => {}
                    Label::Index(1) => out[j] = 1.0,
                    Label::Number(x) if *x == 0.0 || *x == 1.0 => out[j] = *x,
                    _ => errors.push(format!("/{field}/{i}/{j}"), "indicator must be 0 or 1"),
                }
            }
        }
        if errors.full() {
            break;
        }
    }
    (Matrix::new(col.len(), l, data), form.unwrap_or_default())
}

fn finite_values(errors: &mut Errors, field: &str, m: &Matrix) {
    for r in 0..m.rows {
        for (c, v) in m.row(r).iter().enumerate() {
            if !v.is_finite() {
                errors.push(format!("/{field}/{r}/{c}"), "must be a finite number");
            }
        }
        if errors.full() {
            return;
        }
    }
}

fn real_column(errors: &mut Errors, field: &str, col: &[Label]) -> Vec<f64> {
    col.iter()
        .enumerate()
        .map(|(i, l)| match l {
            Label::Index(v) => *v as f64,
            Label::Number(v) if v.is_finite() => *v,
            _ => {
                errors.push(format!("/{field}/{i}"), "must be a finite number");
                0.0
            }
        })
        .collect()
}

/// A validated upload: the batch, the estimators it asked for, and its metadata object.
#[derive(Debug)]
pub struct Validated {
    pub batch: Batch,
    pub estimators: Option<Vec<EstimatorRef>>,
    pub metadata: serde_json::Value,
    pub ids: Option<Vec<String>>,
    pub label_coverage: Option<f64>,
}

/// The per-sample extras every task may carry: segments and ids (and, for labels to come, the
/// coverage that releases the label-dependent jobs).
struct Extras {
    segments: Option<std::collections::BTreeMap<String, Vec<String>>>,
    max_segment_values: Option<u32>,
    ids: Option<Vec<String>>,
    label_coverage: Option<f64>,
}

impl Extras {
    fn check(
        self,
        e: &mut Errors,
        n: usize,
        labels_later: bool,
    ) -> (Vec<SegmentColumn>, Option<Vec<String>>, Option<f64>) {
        let cap = self
            .max_segment_values
            .unwrap_or(segments::DEFAULT_MAX_VALUES);
        if cap == 0 || cap > segments::MAX_VALUES_LIMIT {
            e.push(
                "/max_segment_values",
                format!("must be between 1 and {}", segments::MAX_VALUES_LIMIT),
            );
        }
        if let Some(c) = self.label_coverage {
            if !(c > 0.0 && c <= 1.0) {
                e.push("/label_coverage", "must be in (0, 1]");
            } else if !labels_later {
                e.push(
                    "/label_coverage",
                    "applies only to a batch whose labels come later (ids given, labels left out)",
                );
            }
        }
        if let Some(ids) = &self.ids {
            segments::validate_ids(e, ids, n);
        }
        let segments = match self.segments {
            Some(s) if e.is_empty() => segments::validate_segments(e, s, n, cap),
            _ => vec![],
        };
        (segments, self.ids, self.label_coverage)
    }
}

impl BatchRequest {
    fn take_extras(&mut self) -> Extras {
        Extras {
            segments: self.segments.take(),
            max_segment_values: self.max_segment_values.take(),
            ids: self.ids.take(),
            label_coverage: self.label_coverage.take(),
        }
    }

    /// Pairs (`x`, `y`) and regression (`targets`, `predictions`) batches.
    fn validate_continuous(mut self, task: Task) -> Result<Validated, Vec<FieldError>> {
        let mut e = Errors::default();
        let extras = self.take_extras();
        let allowed: &[&str] = match task {
            Task::Pairs => &["x", "y"],
            _ => &["targets", "predictions"],
        };
        for (field, present) in [
            ("labels", self.labels.is_some()),
            ("classes", self.classes.is_some()),
            ("probabilities", self.probabilities.is_some()),
            ("scores", self.scores.is_some()),
            ("truth_matrix", self.truth_matrix.is_some()),
            ("x", self.x.is_some()),
            ("y", self.y.is_some()),
            ("targets", self.targets.is_some()),
            ("predictions", self.predictions.is_some()),
        ] {
            if present && !allowed.contains(&field) {
                e.push(
                    format!("/{field}"),
                    format!("is not used by task {}", task.as_str()),
                );
            }
        }
        let metadata = self.metadata.unwrap_or_else(|| serde_json::json!({}));
        if !metadata.is_object() {
            e.push("/metadata", "must be a JSON object");
        }
        let (n, data) = match task {
            Task::Pairs => {
                let (Some(x), Some(y)) = (self.x, self.y) else {
                    e.push(
                        if e.is_empty() { "/x" } else { "/y" },
                        "pairs need both x and y",
                    );
                    return Err(e.0);
                };
                let n = x.rows;
                for (field, m) in [("x", &x), ("y", &y)] {
                    if shape(&mut e, field, m, n, None) {
                        if m.cols == 0 {
                            e.push(format!("/{field}/0"), "rows must not be empty");
                        }
                        finite_values(&mut e, field, m);
                    }
                }
                (n, BatchData::Pairs { x, y })
            }
            _ => {
                let (Some(targets), Some(predictions)) = (self.targets, self.predictions) else {
                    e.push("/targets", "regression needs targets and predictions");
                    return Err(e.0);
                };
                let n = targets.len();
                for (i, v) in targets.iter().enumerate() {
                    if !v.is_finite() {
                        e.push(format!("/targets/{i}"), "must be a finite number");
                    }
                }
                if predictions.len() != n {
                    e.push(
                        "/predictions",
                        format!("has {} entries but targets has {n}", predictions.len()),
                    );
                }
                let predictions = real_column(&mut e, "predictions", &predictions);
                (
                    n,
                    BatchData::Regression {
                        targets,
                        predictions,
                    },
                )
            }
        };
        if n < 2 {
            e.push(
                if task == Task::Pairs {
                    "/x"
                } else {
                    "/targets"
                },
                format!("has {n} samples; at least 2 are required"),
            );
        }
        if let Some(w) = &self.weights {
            e.push("/weights", format!("sample weights are not defined for the estimators of task {} (k-NN and neural)", task.as_str()));
            let _ = w;
        }
        if !e.is_empty() {
            return Err(e.0);
        }
        let (segments, ids, label_coverage) = extras.check(&mut e, n, false);
        if !e.is_empty() {
            return Err(e.0);
        }
        Ok(Validated {
            batch: Batch {
                task,
                classes: vec![],
                n,
                data,
                weights: None,
                truth_matrix: None,
                segments,
                labels_later: false,
                normalized: None,
            },
            estimators: self.estimators,
            metadata,
            ids,
            label_coverage,
        })
    }

    /// Validate into a `Batch`, or every field error found (up to a cap), each with its pointer.
    pub fn validate(mut self) -> Result<Validated, Vec<FieldError>> {
        let mut e = Errors::default();
        let extras = self.take_extras();
        let task = match self.task {
            Some(t) => t,
            None => {
                e.push(
                    "/task",
                    "is required: multiclass, multilabel, pairs or regression",
                );
                return Err(e.0);
            }
        };
        if matches!(task, Task::Pairs | Task::Regression) {
            return self.validate_continuous(task);
        }
        for (field, present) in [
            ("x", self.x.is_some() && task == Task::Multilabel),
            ("y", self.y.is_some()),
            ("targets", self.targets.is_some()),
            (
                "probabilities",
                self.probabilities.is_some() && task == Task::Multilabel,
            ),
            ("scores", self.scores.is_some() && task == Task::Multiclass),
            (
                "truth_matrix",
                self.truth_matrix.is_some() && task == Task::Multilabel,
            ),
        ] {
            if present {
                e.push(
                    format!("/{field}"),
                    format!("is not used by task {}", task.as_str()),
                );
            }
        }
        // Without labels, ids stand in for them: the labels arrive later by id.
        let labels_later = self.labels.is_none() && extras.ids.is_some();
        let labels = match self.labels.take() {
            Some(l) => l,
            None if labels_later => Vec::new(),
            None => {
                e.push(
                    "/labels",
                    "is required (or give ids and send the labels later to POST /v1/models/{model}/labels)",
                );
                return Err(e.0);
            }
        };
        let n = if labels_later {
            extras.ids.as_ref().map_or(0, Vec::len)
        } else {
            labels.len()
        };
        if n < 2 {
            e.push(
                "/labels",
                format!("has {n} samples; at least 2 are required"),
            );
        }
        let basis = if labels_later { "ids" } else { "labels" };
        let metadata = self.metadata.unwrap_or_else(|| serde_json::json!({}));
        if !metadata.is_object() {
            e.push("/metadata", "must be a JSON object");
        }
        // Classes: given, or inferred from the widest numeric evidence.
        let k = match &self.classes {
            Some(c) => c.len(),
            None => {
                let from_matrix = match task {
                    Task::Multiclass => self.probabilities.as_ref().map(|m| m.cols),
                    _ => self.scores.as_ref().map(|m| m.cols),
                };
                let from_labels = || -> usize {
                    let idx = |l: &Label| match l {
                        Label::Index(i) if *i >= 0 => *i as usize + 1,
                        Label::Row(r) if task == Task::Multilabel => r.len(),
                        _ => 0,
                    };
                    labels
                        .iter()
                        .chain(self.predictions.iter().flatten())
                        .map(idx)
                        .max()
                        .unwrap_or(0)
                };
                let k = from_matrix.unwrap_or_else(from_labels);
                if k > MAX_INFERRED_CLASSES {
                    // Class names are made for 0..k: a stray huge index must not allocate them.
                    e.push(
                        "/labels",
                        format!(
                            "a class index of {} without `classes`: indices above {} need the \
                             classes named in `classes`",
                            k - 1,
                            MAX_INFERRED_CLASSES - 1
                        ),
                    );
                    return Err(e.0);
                }
                k
            }
        };
        let classes: Vec<String> = self
            .classes
            .clone()
            .unwrap_or_else(|| (0..k).map(|i| i.to_string()).collect());
        if k < 2 && task == Task::Multiclass {
            e.push(
                if self.classes.is_some() {
                    "/classes"
                } else {
                    "/labels"
                },
                format!(
                    "{k} class found; at least 2 are required (give `classes` to name them all)"
                ),
            );
        }
        if k < 1 && task == Task::Multilabel {
            e.push("/classes", "at least 1 label is required");
        }
        if k > u32::MAX as usize / 2 {
            e.push("/classes", "too many classes");
        }
        let mut index = HashMap::with_capacity(k);
        for (i, c) in classes.iter().enumerate() {
            if c.is_empty() {
                e.push(format!("/classes/{i}"), "class name must not be empty");
            }
            if index.insert(c.as_str(), i as u32).is_some() {
                e.push(
                    format!("/classes/{i}"),
                    format!("duplicate class name {c:?}"),
                );
            }
        }
        if !e.is_empty() {
            return Err(e.0);
        }
        if let Some(p) = &self.predictions {
            if p.len() != n {
                e.push(
                    "/predictions",
                    format!("has {} entries but {basis} has {n}", p.len()),
                );
            }
        }
        if let Some(w) = &self.weights {
            if w.len() != n {
                e.push(
                    "/weights",
                    format!("has {} entries but {basis} has {n}", w.len()),
                );
            } else {
                for (i, &v) in w.iter().enumerate() {
                    if !v.is_finite() || v < 0.0 {
                        e.push(
                            format!("/weights/{i}"),
                            format!("{v} is not a finite non-negative weight"),
                        );
                    }
                }
                if e.is_empty() && w.iter().sum::<f64>() <= 0.0 {
                    e.push("/weights", "weights must not all be zero");
                }
            }
        }
        if let Some(t) = &self.truth_matrix {
            if t.ragged.is_some() || t.rows != k || t.cols != k {
                e.push(
                    "/truth_matrix",
                    format!("must be {k}×{k} (one row and one column per class)"),
                );
            } else {
                unit_interval(&mut e, "truth_matrix", t, false);
            }
        }
        let mut normalized = None;
        let data = match task {
            Task::Multiclass => {
                if self.predictions.is_none() && self.probabilities.is_none() {
                    e.push("/predictions", "give predictions, probabilities or both");
                }
                let probabilities = match self.probabilities {
                    Some(mut m) if shape(&mut e, "probabilities", &m, n, Some(k)) => {
                        if self.normalize == Some(true) {
                            unit_interval_within(
                                &mut e,
                                "probabilities",
                                &m,
                                true,
                                NORMALIZE_TOLERANCE,
                            );
                            if e.is_empty() {
                                normalized = Some(normalize_rows(&mut m));
                            }
                        } else {
                            unit_interval(&mut e, "probabilities", &m, true);
                        }
                        Some(m)
                    }
                    other => other,
                };
                let features = match self.x {
                    Some(m) if shape(&mut e, "x", &m, n, None) => {
                        finite_values(&mut e, "x", &m);
                        Some(m)
                    }
                    other => other,
                };
                let (labels, label_form) = if labels_later {
                    (vec![UNLABELLED; n], LabelForm::Index)
                } else {
                    multiclass_column(&mut e, "labels", &labels, k, &index)
                };
                let (predictions, prediction_form) = match &self.predictions {
                    Some(p) if p.len() == n => {
                        let (v, f) = multiclass_column(&mut e, "predictions", p, k, &index);
                        (Some(v), f)
                    }
                    _ => (None, LabelForm::Index),
                };
                BatchData::Multiclass {
                    labels,
                    label_form,
                    predictions,
                    prediction_form,
                    probabilities,
                    features,
                }
            }
            Task::Multilabel => {
                if self.predictions.is_none() && self.scores.is_none() {
                    e.push("/scores", "give scores, predictions or both");
                }
                let scores = match self.scores {
                    Some(m) if shape(&mut e, "scores", &m, n, Some(k)) => {
                        unit_interval(&mut e, "scores", &m, false);
                        Some(m)
                    }
                    other => other,
                };
                let (labels, label_form) = if labels_later {
                    (Matrix::new(n, k, vec![f64::NAN; n * k]), LabelForm::Index)
                } else {
                    multilabel_column(&mut e, "labels", &labels, k, &index)
                };
                let (predictions, prediction_form) = match &self.predictions {
                    Some(p) if p.len() == n => {
                        let (v, f) = multilabel_column(&mut e, "predictions", p, k, &index);
                        (Some(v), f)
                    }
                    _ => (None, LabelForm::Index),
                };
                BatchData::Multilabel {
                    labels,
                    label_form,
                    predictions,
                    prediction_form,
                    scores,
                }
            }
            Task::Pairs | Task::Regression => unreachable!("handled by validate_continuous"),
        };
        if !e.is_empty() {
            return Err(e.0);
        }
        let (segments, ids, label_coverage) = extras.check(&mut e, n, labels_later);
        if !e.is_empty() {
            return Err(e.0);
        }
        Ok(Validated {
            batch: Batch {
                task,
                classes,
                n,
                data,
                weights: self.weights,
                truth_matrix: self.truth_matrix,
                segments,
                labels_later,
                normalized,
            },
            estimators: self.estimators,
            metadata,
            ids,
            label_coverage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: serde_json::Value) -> Result<Batch, Vec<FieldError>> {
        let req: BatchRequest = serde_json::from_value(body).unwrap();
        req.validate().map(|v| v.batch)
    }

    fn pointers(r: Result<Batch, Vec<FieldError>>) -> Vec<String> {
        r.unwrap_err()
            .into_iter()
            .filter_map(|e| e.pointer)
            .collect()
    }

    #[test]
    fn names_and_indices_resolve_and_argmax_fills_predictions() {
        let b = parse(serde_json::json!({
            "task": "multiclass", "classes": ["cat", "dog", "bird"],
            "labels": [0, "bird", 1],
            "probabilities": [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]]
        }))
        .unwrap();
        assert_eq!(b.multiclass_predictions().unwrap(), vec![0, 2, 1]);
        let BatchData::Multiclass {
            labels, label_form, ..
        } = &b.data
        else {
            panic!()
        };
        assert_eq!(labels, &vec![0, 2, 1]);
        assert_eq!(*label_form, LabelForm::Mixed);
    }

    #[test]
    fn each_rule_points_at_the_offending_field() {
        let base = || {
            serde_json::json!({"task": "multiclass", "labels": [0, 1, 2],
                "probabilities": [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]]})
        };
        let with = |k: &str, v: serde_json::Value| {
            let mut b = base();
            b[k] = v;
            b
        };
        assert_eq!(
            pointers(parse(with("labels", serde_json::json!([0, 1, 7])))),
            ["/labels/2"]
        );
        assert_eq!(
            pointers(parse(with("labels", serde_json::json!([0]))))
                .first()
                .unwrap(),
            "/labels"
        );
        assert_eq!(
            pointers(parse(with("predictions", serde_json::json!([0, 1])))),
            ["/predictions"]
        );
        assert_eq!(
            pointers(parse(with(
                "probabilities",
                serde_json::json!([[0.7, 0.2, 0.1], [0.1, -0.3, 1.2], [0.2, 0.5, 0.3]])
            ))),
            ["/probabilities/1/1", "/probabilities/1/2"]
        );
        assert_eq!(
            pointers(parse(with(
                "probabilities",
                serde_json::json!([[0.7, 0.2, 0.1], [0.1, 0.3, 0.5], [0.2, 0.5, 0.3]])
            ))),
            ["/probabilities/1"]
        );
        assert_eq!(
            pointers(parse(with(
                "probabilities",
                serde_json::json!([[0.7, 0.2, 0.1], [0.1, 0.9], [0.2, 0.5, 0.3]])
            ))),
            ["/probabilities/1"]
        );
        assert_eq!(
            pointers(parse(with(
                "truth_matrix",
                serde_json::json!([[1, 0], [0, 1]])
            ))),
            ["/truth_matrix"]
        );
        assert_eq!(
            pointers(parse(with(
                "truth_matrix",
                serde_json::json!([[1, 0, 0], [0, 1.5, 0], [0, 0, 1]])
            ))),
            ["/truth_matrix/1/1"]
        );
        assert_eq!(
            pointers(parse(with("weights", serde_json::json!([1, -1, 1])))),
            ["/weights/1"]
        );
        assert_eq!(
            pointers(parse(with("weights", serde_json::json!([0, 0, 0])))),
            ["/weights"]
        );
        assert_eq!(
            pointers(parse(with("scores", serde_json::json!([[0.1]])))),
            ["/scores"]
        );
        assert_eq!(
            pointers(parse(with("classes", serde_json::json!(["a", "b", "a"])))),
            ["/classes/2"]
        );
    }

    #[test]
    fn multilabel_accepts_indicator_rows_and_name_lists() {
        let b = parse(serde_json::json!({
            "task": "multilabel", "classes": ["cat", "dog", "bird"],
            "labels": [[1, 0, 1], ["dog"], [1, 0]],
            "scores": [[0.9, 0.1, 0.8], [0.2, 0.7, 0.1], [0.1, 0.1, 0.1]]
        }));
        // Row 2 is an indicator row of the wrong width.
        assert_eq!(pointers(b), ["/labels/2"]);
        let b = parse(serde_json::json!({
            "task": "multilabel", "classes": ["cat", "dog", "bird"],
            "labels": [["cat", "bird"], ["dog"], []],
            "scores": [[0.9, 0.1, 0.8], [0.2, 0.7, 0.1], [0.1, 0.1, 0.1]]
        }))
        .unwrap();
        let BatchData::Multilabel { labels, .. } = &b.data else {
            panic!()
        };
        assert_eq!(labels.data, vec![1., 0., 1., 0., 1., 0., 0., 0., 0.]);
    }
}
