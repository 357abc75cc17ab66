//! A batch of predictions and true labels: the upload body (`BatchRequest`), the `Batch` that
//! can only exist valid, and the per-sample data it holds. Validation (`validate`), the compact
//! stored form (`codec`) and taking a subset of the samples (`subset`) are its children.

mod codec;
mod subset;
mod validate;

pub use codec::Decoder;
pub(crate) use validate::class_of;
pub use validate::Validated;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::columns::{Label, Matrix};
use super::segments::SegmentColumn;

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
    /// Multiclass: N×K class probabilities, each row summing to 1 (±1e-3; with `normalize`,
    /// within 0.1 of 1, each row divided by its sum).
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
    /// Sample ids, unique within the model (1–128 characters each). With ids a multiclass or multilabel
    /// batch may leave out `labels`: they arrive later through `POST /v1/models/{model}/labels`.
    pub ids: Option<Vec<String>>,
    /// For a batch whose labels come later: the fraction of its samples that must be labelled
    /// before the label-dependent estimators run (0 < f ≤ 1; default 1).
    #[schema(minimum = 0.0, maximum = 1.0, exclusive_minimum = 0.0)]
    pub label_coverage: Option<f64>,
    /// Accept probability rows that sum to 1 only within 0.1 (probabilities rounded to a few
    /// decimals, a float16 tensor) and divide each row by its sum. Off by default: a row off by
    /// more than 1e-3 is refused. What was normalised is recorded on the batch and in every
    /// result's `details.probabilities_normalized`.
    pub normalize: Option<bool>,
}

/// What `normalize` did to a batch's probability rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Normalized {
    /// Rows whose sum was not 1 (within 1e-12) and were divided by it.
    pub rows: u64,
    /// The largest |row sum − 1| before normalising.
    pub max_deviation: f64,
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
    /// Probability rows divided by their sums at upload (`normalize`).
    pub normalized: Option<Normalized>,
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

/// An estimator named in a request: its id alone, or its id with parameters.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EstimatorRef {
    /// The estimator id, with default parameters.
    Id(String),
    /// The estimator id with parameters (unknown parameters are rejected).
    WithParams {
        id: String,
        #[serde(default)]
        #[schema(value_type = Object)]
        params: serde_json::Value,
    },
}

impl EstimatorRef {
    pub(crate) fn parts(&self) -> (&str, serde_json::Value) {
        match self {
            EstimatorRef::Id(id) => (id, serde_json::json!({})),
            EstimatorRef::WithParams { id, params } => (id, params.clone()),
        }
    }
}

/// sha256 of bytes, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
