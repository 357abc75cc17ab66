//! A batch of predictions and true labels: the upload body, its validation into a `Batch` that can
//! only exist valid, and the compact binary form it is stored in.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::columns::{Label, Matrix};
use super::estimators::EstimatorRef;
use super::segments::{self, SegmentColumn, UNLABELLED};
use crate::error::FieldError;

/// At most this many field errors are reported for one request.
const MAX_ERRORS: usize = 50;
/// Probabilities and scores may exceed 1 by this much (rounding in exported floats).
const UNIT_SLACK: f64 = 1e-6;
/// Probability rows must sum to 1 within this.
const ROW_SUM_TOLERANCE: f64 = 1e-3;

/// What the batch's predictions are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// One true class per sample; class probabilities and/or hard predictions.
    Multiclass,
    /// A set of true labels per sample; per-label scores in [0,1] and/or predicted sets.
    Multilabel,
    /// Paired rows `x` and `y` (embeddings, features).
    Pairs,
    /// Real-valued targets and predictions.
    Regression,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Multiclass => "multiclass",
            Task::Multilabel => "multilabel",
            Task::Pairs => "pairs",
            Task::Regression => "regression",
        }
    }

    pub fn parse(s: &str) -> Option<Task> {
        Some(match s {
            "multiclass" => Task::Multiclass,
            "multilabel" => Task::Multilabel,
            "pairs" => Task::Pairs,
            "regression" => Task::Regression,
            _ => return None,
        })
    }
}

/// The columnar upload body (JSON). Which fields apply depends on `task`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "task": "multiclass",
    "classes": ["cat", "dog", "bird"],
    "labels": [0, 2, 1, 0],
    "probabilities": [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1]],
    "estimators": ["shannon_mi"],
    "metadata": {"pipeline_run": "abc"}
}))]
pub struct BatchRequest {
    /// `multiclass` or `multilabel` (`pairs` and `regression` are reserved for the continuous estimators).
    #[schema(value_type = Task)]
    pub task: Option<Task>,
    /// Class names (multiclass) or label names (multilabel); default `"0".."K-1"`.
    pub classes: Option<Vec<String>>,
    /// Multiclass: one class (index or name) per sample. Multilabel: per sample either an indicator
    /// row `[0,1,0]` or a list of label names `["cat","bird"]`.
    #[schema(value_type = Vec<Object>)]
    pub labels: Option<Vec<Label>>,
    /// Multiclass: N×K class probabilities, each row summing to 1 (±1e-3).
    #[schema(value_type = Option<Vec<Vec<f64>>>)]
    pub probabilities: Option<Matrix>,
    /// Hard predictions, in the same form as `labels`; multiclass default: argmax of `probabilities`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub predictions: Option<Vec<Label>>,
    /// Multilabel: N×L per-label scores in [0,1] (sigmoid outputs, read as truth functions).
    #[schema(value_type = Option<Vec<Vec<f64>>>)]
    pub scores: Option<Matrix>,
    /// Pairs: N×dx rows.
    #[schema(value_type = Option<Vec<Vec<f64>>>)]
    pub x: Option<Matrix>,
    /// Pairs: N×dy rows.
    #[schema(value_type = Option<Vec<Vec<f64>>>)]
    pub y: Option<Matrix>,
    /// Regression: N real targets.
    pub targets: Option<Vec<f64>>,
    /// Optional non-negative sample weights (not all zero).
    pub weights: Option<Vec<f64>>,
    /// Optional K×K semantic channel `T[true][pred]` in [0,1].
    #[schema(value_type = Option<Vec<Vec<f64>>>)]
    pub truth_matrix: Option<Matrix>,
    /// Estimators to run: ids or `{id, params}`; default: every applicable estimator.
    pub estimators: Option<Vec<EstimatorRef>>,
    /// Free JSON kept with the batch.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Categorical per-sample columns: key → one value per sample, e.g.
    /// `{"region": ["eu", "us", …]}`. Every estimator also reports its value per segment value;
    /// the most frequent `max_segment_values` values per key are kept, the rest grouped as
    /// `__other__`. At most 8 keys.
    #[schema(value_type = Option<std::collections::BTreeMap<String, Vec<String>>>)]
    pub segments: Option<std::collections::BTreeMap<String, Vec<String>>>,
    /// Cap on distinct values per segment key (1–10000; default 50).
    #[schema(minimum = 1, maximum = 10000)]
    pub max_segment_values: Option<u32>,
    /// Sample ids, unique within the model (1–128 bytes each). With ids a multiclass or multilabel
    /// batch may leave out `labels`: they arrive later through `POST /v1/models/{model}/labels`.
    pub ids: Option<Vec<String>>,
    /// For a batch whose labels come later: the fraction of its samples that must be labelled
    /// before the label-dependent estimators run (0 < f ≤ 1; default 1).
    #[schema(minimum = 0.0, maximum = 1.0, exclusive_minimum = 0.0)]
    pub label_coverage: Option<f64>,
}

/// How labels (or predictions) were written in the upload, so they come back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LabelForm {
    #[default]
    Index,
    Name,
    Mixed,
}

/// A validated batch. Every array has N rows; every value is in range.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub task: Task,
    pub classes: Vec<String>,
    pub n: usize,
    pub data: BatchData,
    pub weights: Option<Vec<f64>>,
    pub truth_matrix: Option<Matrix>,
    /// Categorical per-sample columns (after the cap on values).
    pub segments: Vec<SegmentColumn>,
    /// Uploaded without labels (they arrive by sample id): unlabelled samples hold
    /// [`UNLABELLED`] (multiclass) or a NaN row (multilabel) until joined.
    pub labels_later: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BatchData {
    Multiclass {
        labels: Vec<u32>,
        label_form: LabelForm,
        predictions: Option<Vec<u32>>,
        prediction_form: LabelForm,
        probabilities: Option<Matrix>,
        /// Optional N×d features or embeddings (for the discrete–continuous k-NN estimator).
        features: Option<Matrix>,
    },
    Multilabel {
        /// N×L indicators (0 or 1).
        labels: Matrix,
        label_form: LabelForm,
        predictions: Option<Matrix>,
        prediction_form: LabelForm,
        scores: Option<Matrix>,
    },
    Pairs {
        x: Matrix,
        y: Matrix,
    },
    Regression {
        targets: Vec<f64>,
        predictions: Vec<f64>,
    },
}

impl Batch {
    pub fn k(&self) -> usize {
        self.classes.len()
    }

    pub fn has_probabilities(&self) -> bool {
        matches!(
            &self.data,
            BatchData::Multiclass {
                probabilities: Some(_),
                ..
            }
        )
    }

    pub fn has_features(&self) -> bool {
        matches!(
            &self.data,
            BatchData::Multiclass {
                features: Some(_),
                ..
            }
        )
    }

    pub fn has_scores(&self) -> bool {
        matches!(
            &self.data,
            BatchData::Multilabel {
                scores: Some(_),
                ..
            }
        )
    }

    /// Hard predictions for a multiclass batch: as uploaded, else the argmax of the probabilities
    /// (lowest index on ties).
    pub fn multiclass_predictions(&self) -> Option<Vec<u32>> {
        match &self.data {
            BatchData::Multiclass {
                predictions: Some(p),
                ..
            } => Some(p.clone()),
            BatchData::Multiclass {
                probabilities: Some(m),
                ..
            } => Some(
                (0..m.rows)
                    .map(|r| {
                        let row = m.row(r);
                        let mut best = 0;
                        for (j, &v) in row.iter().enumerate() {
                            if v > row[best] {
                                best = j;
                            }
                        }
                        best as u32
                    })
                    .collect(),
            ),
            _ => None,
        }
    }
}

/// Collects field errors up to a cap.
#[derive(Default)]
pub struct Errors(pub Vec<FieldError>);

impl Errors {
    pub fn push(&mut self, pointer: impl Into<String>, message: impl Into<String>) {
        if self.0.len() < MAX_ERRORS {
            self.0.push(FieldError::at(pointer, message));
        }
    }
    pub fn full(&self) -> bool {
        self.0.len() >= MAX_ERRORS
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn unit_interval(errors: &mut Errors, field: &str, m: &Matrix, check_rows_sum: bool) {
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
            if (s - 1.0).abs() > ROW_SUM_TOLERANCE {
                errors.push(
                    format!("/{field}/{r}"),
                    format!(
                        "probabilities sum to {s}; they must sum to 1 (within {ROW_SUM_TOLERANCE})"
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
fn class_of(l: &Label, k: usize, index: &HashMap<&str, u32>) -> Result<(u32, LabelForm), String> {
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
        Label::Name(s) => index
            .get(s.as_str())
            .map(|&i| (i, LabelForm::Name))
            .ok_or_else(|| format!("{s:?} is not one of the {k} classes")),
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
                from_matrix.unwrap_or_else(from_labels)
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
        let data = match task {
            Task::Multiclass => {
                if self.predictions.is_none() && self.probabilities.is_none() {
                    e.push("/predictions", "give predictions, probabilities or both");
                }
                let probabilities = match self.probabilities {
                    Some(m) if shape(&mut e, "probabilities", &m, n, Some(k)) => {
                        unit_interval(&mut e, "probabilities", &m, true);
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
            },
            estimators: self.estimators,
            metadata,
            ids,
            label_coverage,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Stored form: a small JSON header followed by raw little-endian arrays. Lossless for every value.

const MAGIC: &[u8; 4] = b"IAB1";

#[derive(Serialize, Deserialize)]
struct Header {
    task: Task,
    classes: Vec<String>,
    n: usize,
    label_form: LabelForm,
    prediction_form: LabelForm,
    arrays: Vec<ArrayHeader>,
    /// Segment keys and their value names (codes are the `segment:<key>` arrays). Absent when
    /// there are none, so batches without segments encode as they always did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    segments: Vec<SegmentHeader>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    labels_later: bool,
}

#[derive(Serialize, Deserialize)]
struct SegmentHeader {
    key: String,
    values: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct ArrayHeader {
    name: String,
    dtype: String,
    rows: usize,
    cols: usize,
}

enum Arr<'a> {
    U32(&'a [u32]),
    F64(&'a Matrix),
    F64Vec(&'a [f64]),
}

const SEGMENT_PREFIX: &str = "segment:";

impl Batch {
    fn arrays(&self) -> (LabelForm, LabelForm, Vec<(Cow<'static, str>, Arr<'_>)>) {
        let mut v = Vec::new();
        let (lf, pf) = match &self.data {
            BatchData::Multiclass {
                labels,
                label_form,
                predictions,
                prediction_form,
                probabilities,
                features,
            } => {
                v.push(("labels", Arr::U32(labels)));
                if let Some(p) = predictions {
                    v.push(("predictions", Arr::U32(p)));
                }
                if let Some(m) = probabilities {
                    v.push(("probabilities", Arr::F64(m)));
                }
                if let Some(m) = features {
                    v.push(("x", Arr::F64(m)));
                }
                (*label_form, *prediction_form)
            }
            BatchData::Pairs { x, y } => {
                v.push(("x", Arr::F64(x)));
                v.push(("y", Arr::F64(y)));
                (LabelForm::Index, LabelForm::Index)
            }
            BatchData::Regression {
                targets,
                predictions,
            } => {
                v.push(("targets", Arr::F64Vec(targets)));
                v.push(("predictions_real", Arr::F64Vec(predictions)));
                (LabelForm::Index, LabelForm::Index)
            }
            BatchData::Multilabel {
                labels,
                label_form,
                predictions,
                prediction_form,
                scores,
            } => {
                v.push(("labels", Arr::F64(labels)));
                if let Some(p) = predictions {
                    v.push(("predictions", Arr::F64(p)));
                }
                if let Some(m) = scores {
                    v.push(("scores", Arr::F64(m)));
                }
                (*label_form, *prediction_form)
            }
        };
        if let Some(w) = &self.weights {
            v.push(("weights", Arr::F64Vec(w)));
        }
        if let Some(t) = &self.truth_matrix {
            v.push(("truth_matrix", Arr::F64(t)));
        }
        let mut v: Vec<(Cow<'static, str>, Arr<'_>)> =
            v.into_iter().map(|(k, a)| (Cow::Borrowed(k), a)).collect();
        for s in &self.segments {
            v.push((
                Cow::Owned(format!("{SEGMENT_PREFIX}{}", s.key)),
                Arr::U32(&s.codes),
            ));
        }
        (lf, pf, v)
    }

    /// sha256 (hex) of a multiclass batch's samples as a comparison sees them: the classes, every
    /// label in order and the weights (`None` for other tasks). Equal digests mean the same
    /// evaluation samples: two models' results on them can be compared paired.
    pub fn labels_digest(&self) -> Option<String> {
        let BatchData::Multiclass { labels, .. } = &self.data else {
            return None;
        };
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"infoaudit labels v1\0");
        h.update((self.classes.len() as u64).to_le_bytes());
        for c in &self.classes {
            h.update((c.len() as u64).to_le_bytes());
            h.update(c.as_bytes());
        }
        h.update((labels.len() as u64).to_le_bytes());
        for l in labels {
            h.update(l.to_le_bytes());
        }
        match &self.weights {
            None => h.update([0u8]),
            Some(w) => {
                h.update([1u8]);
                for x in w {
                    h.update(x.to_bits().to_le_bytes());
                }
            }
        }
        Some(hex::encode(h.finalize()))
    }

    /// Encode to the stored binary form (one contiguous copy; see [`Batch::encoded_parts`]).
    pub fn encode(&self) -> Vec<u8> {
        self.encoded_parts().concat()
    }

    /// The stored binary form in parts: the magic and header, then each array's bytes. On a
    /// little-endian machine the arrays are views of the batch's own memory, so storing a batch
    /// does not hold a second copy of its numbers.
    pub fn encoded_parts(&self) -> Vec<Cow<'_, [u8]>> {
        use zerocopy::IntoBytes;
        let (label_form, prediction_form, arrays) = self.arrays();
        let header = Header {
            task: self.task,
            classes: self.classes.clone(),
            n: self.n,
            label_form,
            prediction_form,
            segments: self
                .segments
                .iter()
                .map(|s| SegmentHeader {
                    key: s.key.clone(),
                    values: s.values.clone(),
                })
                .collect(),
            labels_later: self.labels_later,
            arrays: arrays
                .iter()
                .map(|(name, a)| {
                    let (dtype, rows, cols) = match a {
                        Arr::U32(v) => ("u32", v.len(), 1),
                        Arr::F64(m) => ("f64", m.rows, m.cols),
                        Arr::F64Vec(v) => ("f64", v.len(), 1),
                    };
                    ArrayHeader {
                        name: name.to_string(),
                        dtype: dtype.into(),
                        rows,
                        cols,
                    }
                })
                .collect(),
        };
        let h = serde_json::to_vec(&header).expect("header serialises");
        let mut head = Vec::with_capacity(8 + h.len());
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&(h.len() as u32).to_le_bytes());
        head.extend_from_slice(&h);
        let mut parts = vec![Cow::Owned(head)];
        for (_, a) in &arrays {
            let part: Cow<'_, [u8]> = if cfg!(target_endian = "little") {
                Cow::Borrowed(match a {
                    Arr::U32(v) => v.as_bytes(),
                    Arr::F64(m) => m.data.as_bytes(),
                    Arr::F64Vec(v) => v.as_bytes(),
                })
            } else {
                Cow::Owned(match a {
                    Arr::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    Arr::F64(m) => m.data.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    Arr::F64Vec(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                })
            };
            parts.push(part);
        }
        parts
    }

    /// Decode the stored binary form.
    pub fn decode(bytes: &[u8]) -> anyhow::Result<Batch> {
        let mut d = Decoder::new(bytes.len());
        d.push(bytes)?;
        d.finish()
    }

    fn from_parts(
        header: Header,
        mut u32s: HashMap<String, Vec<u32>>,
        mut f64s: HashMap<String, Matrix>,
    ) -> anyhow::Result<Batch> {
        use anyhow::Context;
        let weights = f64s.remove("weights").map(|m| m.data);
        let truth_matrix = f64s.remove("truth_matrix");
        let mut segments = Vec::with_capacity(header.segments.len());
        for s in header.segments {
            let codes = u32s
                .remove(&format!("{SEGMENT_PREFIX}{}", s.key))
                .context("segment codes missing")?;
            if codes.len() != header.n || codes.iter().any(|&c| c as usize >= s.values.len()) {
                anyhow::bail!("segment {} is inconsistent", s.key);
            }
            segments.push(SegmentColumn {
                key: s.key,
                values: s.values,
                codes,
            });
        }
        let data = match header.task {
            Task::Multiclass => BatchData::Multiclass {
                labels: u32s.remove("labels").context("labels missing")?,
                label_form: header.label_form,
                predictions: u32s.remove("predictions"),
                prediction_form: header.prediction_form,
                probabilities: f64s.remove("probabilities"),
                features: f64s.remove("x"),
            },
            Task::Multilabel => BatchData::Multilabel {
                labels: f64s.remove("labels").context("labels missing")?,
                label_form: header.label_form,
                predictions: f64s.remove("predictions"),
                prediction_form: header.prediction_form,
                scores: f64s.remove("scores"),
            },
            Task::Pairs => BatchData::Pairs {
                x: f64s.remove("x").context("x missing")?,
                y: f64s.remove("y").context("y missing")?,
            },
            Task::Regression => BatchData::Regression {
                targets: f64s.remove("targets").context("targets missing")?.data,
                predictions: f64s
                    .remove("predictions_real")
                    .context("predictions missing")?
                    .data,
            },
        };
        Ok(Batch {
            task: header.task,
            classes: header.classes,
            n: header.n,
            data,
            weights,
            truth_matrix,
            segments,
            labels_later: header.labels_later,
        })
    }

    /// The upload's JSON form again (as `GET /v1/batches/{id}/data` returns it).
    pub fn to_json(&self, metadata: &serde_json::Value) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        let class_col = |v: &[u32], form: LabelForm| -> Value {
            match form {
                LabelForm::Name => {
                    Value::Array(v.iter().map(|&c| json!(self.classes[c as usize])).collect())
                }
                _ => json!(v),
            }
        };
        let set_col = |m: &Matrix, form: LabelForm| -> Value {
            Value::Array(
                (0..m.rows)
                    .map(|r| match form {
                        LabelForm::Name => Value::Array(
                            m.row(r)
                                .iter()
                                .enumerate()
                                .filter(|(_, &v)| v == 1.0)
                                .map(|(j, _)| json!(self.classes[j]))
                                .collect(),
                        ),
                        _ => Value::Array(m.row(r).iter().map(|&v| json!(v as u8)).collect()),
                    })
                    .collect(),
            )
        };
        let mut o = Map::new();
        o.insert("task".into(), json!(self.task));
        if !self.classes.is_empty() {
            o.insert("classes".into(), json!(self.classes));
        }
        match &self.data {
            BatchData::Multiclass {
                labels,
                label_form,
                predictions,
                prediction_form,
                probabilities,
                features,
            } => {
                if !self.labels_later {
                    o.insert("labels".into(), class_col(labels, *label_form));
                }
                if let Some(m) = probabilities {
                    o.insert("probabilities".into(), json!(m));
                }
                if let Some(p) = predictions {
                    o.insert("predictions".into(), class_col(p, *prediction_form));
                }
                if let Some(m) = features {
                    o.insert("x".into(), json!(m));
                }
            }
            BatchData::Pairs { x, y } => {
                o.insert("x".into(), json!(x));
                o.insert("y".into(), json!(y));
            }
            BatchData::Regression {
                targets,
                predictions,
            } => {
                o.insert("targets".into(), json!(targets));
                o.insert("predictions".into(), json!(predictions));
            }
            BatchData::Multilabel {
                labels,
                label_form,
                predictions,
                prediction_form,
                scores,
            } => {
                if !self.labels_later {
                    o.insert("labels".into(), set_col(labels, *label_form));
                }
                if let Some(m) = scores {
                    o.insert("scores".into(), json!(m));
                }
                if let Some(p) = predictions {
                    o.insert("predictions".into(), set_col(p, *prediction_form));
                }
            }
        }
        if let Some(w) = &self.weights {
            o.insert("weights".into(), json!(w));
        }
        if let Some(t) = &self.truth_matrix {
            o.insert("truth_matrix".into(), json!(t));
        }
        if !self.segments.is_empty() {
            let segments: Map<String, Value> = self
                .segments
                .iter()
                .map(|s| {
                    let col = s
                        .codes
                        .iter()
                        .map(|&c| json!(s.values[c as usize]))
                        .collect();
                    (s.key.clone(), Value::Array(col))
                })
                .collect();
            o.insert("segments".into(), Value::Object(segments));
        }
        o.insert("metadata".into(), metadata.clone());
        Value::Object(o)
    }
}

/// Decodes the stored form from consecutive pieces (the stored chunks) without holding the
/// encoded bytes: each array is allocated once, at its declared size, and filled as its bytes
/// arrive, so reading a batch back holds one copy of its numbers (plus one piece).
pub struct Decoder {
    /// The declared size of the whole encoding: no array may claim more.
    limit: usize,
    /// Bytes of the header, or of one array element split between two pieces.
    pending: Vec<u8>,
    header: Option<Header>,
    /// The array being filled (index into the header's arrays) and its values so far.
    current: usize,
    values: Values,
    u32s: HashMap<String, Vec<u32>>,
    f64s: HashMap<String, Matrix>,
}

enum Values {
    U32(Vec<u32>),
    F64(Vec<f64>),
}

impl Decoder {
    /// A decoder for an encoding of `limit` bytes in all.
    pub fn new(limit: usize) -> Decoder {
        Decoder {
            limit,
            pending: Vec::new(),
            header: None,
            current: 0,
            values: Values::U32(Vec::new()),
            u32s: HashMap::new(),
            f64s: HashMap::new(),
        }
    }

    /// The next piece of the encoding.
    pub fn push(&mut self, mut piece: &[u8]) -> anyhow::Result<()> {
        use anyhow::{bail, Context};
        if self.header.is_none() {
            let take = piece.len().min(8usize.saturating_sub(self.pending.len()));
            self.pending.extend_from_slice(&piece[..take]);
            piece = &piece[take..];
            if self.pending.len() < 8 {
                return Ok(());
            }
            if &self.pending[..4] != MAGIC {
                bail!("stored batch has an unknown format");
            }
            let hlen = u32::from_le_bytes(self.pending[4..8].try_into()?) as usize;
            if hlen > self.limit {
                bail!("truncated header");
            }
            let take = piece.len().min(8 + hlen - self.pending.len());
            self.pending.extend_from_slice(&piece[..take]);
            piece = &piece[take..];
            if self.pending.len() < 8 + hlen {
                return Ok(());
            }
            let header: Header = serde_json::from_slice(&self.pending[8..])?;
            let mut total = 8 + hlen;
            for a in &header.arrays {
                let size = match a.dtype.as_str() {
                    "u32" => 4usize,
                    "f64" => 8,
                    other => bail!("unknown dtype {other}"),
                };
                let bytes = a
                    .rows
                    .checked_mul(a.cols)
                    .and_then(|c| c.checked_mul(size))
                    .context("truncated array")?;
                total = total.checked_add(bytes).context("truncated array")?;
            }
            if total > self.limit {
                bail!("truncated array");
            }
            self.pending.clear();
            self.header = Some(header);
            self.start(0)?;
        }
        self.fill(piece);
        Ok(())
    }

    /// Start array `i` (with its whole capacity, refused rather than aborting when memory is
    /// short) and close every empty array from there.
    fn start(&mut self, mut i: usize) -> anyhow::Result<()> {
        while let Some((count, is_u32)) = self
            .header
            .as_ref()
            .and_then(|h| h.arrays.get(i))
            .map(|a| (a.rows * a.cols, a.dtype == "u32"))
        {
            let refused = |e| anyhow::anyhow!("cannot hold an array of {count} values: {e}");
            self.values = if is_u32 {
                let mut v = Vec::new();
                v.try_reserve_exact(count).map_err(refused)?;
                Values::U32(v)
            } else {
                let mut v = Vec::new();
                v.try_reserve_exact(count).map_err(refused)?;
                Values::F64(v)
            };
            if count > 0 {
                break;
            }
            self.close(i);
            i += 1;
        }
        self.current = i;
        Ok(())
    }

    /// File the finished array `i`.
    fn close(&mut self, i: usize) {
        let header = self.header.as_ref().expect("header read");
        let a = &header.arrays[i];
        match std::mem::replace(&mut self.values, Values::U32(Vec::new())) {
            Values::U32(v) => {
                self.u32s.insert(a.name.clone(), v);
            }
            Values::F64(v) => {
                self.f64s
                    .insert(a.name.clone(), Matrix::new(a.rows, a.cols, v));
            }
        }
    }

    fn fill(&mut self, mut piece: &[u8]) {
        loop {
            let Some(a) = self
                .header
                .as_ref()
                .and_then(|h| h.arrays.get(self.current))
            else {
                // Past the last array: trailing bytes are ignored, as they always were.
                return;
            };
            let count = a.rows * a.cols;
            let size = match self.values {
                Values::U32(_) => 4,
                Values::F64(_) => 8,
            };
            // An element split between pieces.
            if !self.pending.is_empty() {
                let take = piece.len().min(size - self.pending.len());
                self.pending.extend_from_slice(&piece[..take]);
                piece = &piece[take..];
                if self.pending.len() < size {
                    return;
                }
                let element = std::mem::take(&mut self.pending);
                self.extend(&element);
            }
            let filled = match &self.values {
                Values::U32(v) => v.len(),
                Values::F64(v) => v.len(),
            };
            let whole = (count - filled).min(piece.len() / size);
            self.extend(&piece[..whole * size]);
            piece = &piece[whole * size..];
            if filled + whole == count {
                let i = self.current;
                self.close(i);
                // Capacity was checked against the limit with the header; a refusal here can
                // only come from the allocator, and it leaves the array missing (reported by
                // `finish`).
                if self.start(i + 1).is_err() {
                    self.current = usize::MAX;
                    return;
                }
                continue;
            }
            self.pending.extend_from_slice(piece);
            return;
        }
    }

    fn extend(&mut self, bytes: &[u8]) {
        match &mut self.values {
            Values::U32(v) => v.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))),
            ),
            Values::F64(v) => v.extend(
                bytes
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))),
            ),
        }
    }

    /// The batch, once every piece was pushed.
    pub fn finish(self) -> anyhow::Result<Batch> {
        use anyhow::bail;
        let Some(header) = self.header else {
            if self.pending.len() < 8 || &self.pending[..4] != MAGIC {
                bail!("stored batch has an unknown format");
            }
            bail!("truncated header");
        };
        if self.current == usize::MAX {
            bail!("cannot hold the batch's arrays");
        }
        if self.current < header.arrays.len() {
            bail!("truncated array");
        }
        Batch::from_parts(header, self.u32s, self.f64s)
    }
}

/// sha256 of bytes, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    #[test]
    fn stored_form_round_trips() {
        let body = serde_json::json!({
            "task": "multiclass", "classes": ["cat", "dog", "bird"],
            "labels": ["cat", "bird", "dog"], "predictions": [0, 2, 2],
            "probabilities": [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]],
            "weights": [1.0, 0.5, 2.0], "truth_matrix": [[1, 0.3, 0], [0.3, 1, 0.3], [0, 0.3, 1]]
        });
        let b = parse(body.clone()).unwrap();
        let bytes = b.encode();
        let back = Batch::decode(&bytes).unwrap();
        assert_eq!(back, b);
        let json = back.to_json(&serde_json::json!({}));
        assert_eq!(json["labels"], body["labels"]);
        assert_eq!(json["predictions"], body["predictions"]);
        assert_eq!(
            json["probabilities"],
            serde_json::json!([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]])
        );
    }

    /// The stored form decoded from pieces of every size (as the stored chunks arrive) is the
    /// batch; a cut-off or damaged encoding is an error, never a panic.
    #[test]
    fn stored_form_decodes_from_pieces_and_refuses_damage() {
        let b = parse(serde_json::json!({
            "task": "multiclass", "classes": ["cat", "dog", "bird"],
            "labels": ["cat", "bird", "dog", "cat"], "predictions": [0, 2, 2, 1],
            "probabilities": [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.4, 0.4, 0.2]],
            "weights": [1.0, 0.5, 2.0, 0.0]
        }))
        .unwrap();
        let bytes = b.encode();
        for size in [1, 2, 3, 5, 7, 8, 13, 64, bytes.len()] {
            let mut d = Decoder::new(bytes.len());
            for piece in bytes.chunks(size) {
                d.push(piece).unwrap();
            }
            assert_eq!(d.finish().unwrap(), b, "pieces of {size} bytes");
        }
        for cut in [0, 3, 8, 20, bytes.len() - 9, bytes.len() - 1] {
            let mut d = Decoder::new(bytes.len());
            let err = d.push(&bytes[..cut]).and_then(|_| d.finish());
            assert!(err.is_err(), "cut at {cut}");
        }
        // A header that claims more than the stored size is refused before allocating.
        assert!(Batch::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut wrong = bytes.clone();
        wrong[0] = b'X';
        assert!(Batch::decode(&wrong).is_err());
        let mut huge = bytes.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Batch::decode(&huge).is_err());
    }

    proptest! {
        #[test]
        fn any_valid_multiclass_batch_round_trips(
            rows in proptest::collection::vec((0u32..4, proptest::collection::vec(0.0f64..1.0, 4)), 2..40)
        ) {
            let labels: Vec<u32> = rows.iter().map(|r| r.0).collect();
            let probs: Vec<Vec<f64>> = rows.iter().map(|r| {
                let s: f64 = r.1.iter().sum::<f64>() + 1e-9;
                r.1.iter().map(|v| v / s).collect()
            }).collect();
            let b = parse(serde_json::json!({"task": "multiclass", "classes": ["a","b","c","d"],
                "labels": labels, "probabilities": probs})).unwrap();
            let back = Batch::decode(&b.encode()).unwrap();
            prop_assert_eq!(&back, &b);
            let json = back.to_json(&serde_json::json!({}));
            let again = parse(json).unwrap();
            prop_assert_eq!(again, b);
        }
    }
}
