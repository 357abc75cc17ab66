//! Line-oriented upload bodies: NDJSON (one sample per line) and CSV (a header row, one sample per
//! row), decoded row by row into the columnar [`BatchRequest`]. Each line is parsed and dropped, so
//! memory grows with the batch's numbers, not with the size of its text.
//!
//! Options that have no per-row form (task, classes, estimators, metadata) come from the request's
//! query parameters ([`RowOptions`]). Validation still happens once, in
//! [`BatchRequest::validate`]; [`ColumnMap::locate`] turns its JSON Pointers (`/probabilities/17/2`)
//! into the row and column of the body (`{"row": 17, "column": "p_bird"}`).

use std::collections::HashMap;
use std::io::{self, BufRead};

use serde::Deserialize;

use super::batch::{BatchRequest, Task};
use super::columns::{Label, Matrix};
use super::estimators::EstimatorRef;
use crate::error::FieldError;

/// At most this many row errors are collected before decoding stops.
const MAX_ROW_ERRORS: usize = 50;

/// Batch-level options of a line-oriented body, from the query string.
#[derive(Debug, Clone, Default)]
pub struct RowOptions {
    pub task: Option<Task>,
    pub classes: Option<Vec<String>>,
    pub estimators: Option<Vec<EstimatorRef>>,
    pub metadata: Option<serde_json::Value>,
    pub max_segment_values: Option<u32>,
    pub label_coverage: Option<f64>,
    pub normalize: Option<bool>,
}

/// Why a line-oriented body could not be turned into a request.
#[derive(Debug)]
pub enum RowsError {
    /// Reading the body failed (the connection, the decompressor, or the size limit).
    Io(io::Error),
    /// Rows or cells that do not parse, each with its row and column.
    Invalid(Vec<FieldError>),
    /// The body as a whole is not in its format (an Arrow stream that does not decode).
    Malformed(String),
}

impl From<io::Error> for RowsError {
    fn from(e: io::Error) -> Self {
        RowsError::Io(e)
    }
}

pub(super) fn row_error(row: u64, column: Option<&str>, message: impl Into<String>) -> FieldError {
    FieldError {
        pointer: None,
        row: Some(row),
        column: column.map(str::to_string),
        message: message.into(),
    }
}

pub(super) fn column_error(column: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        pointer: None,
        row: None,
        column: Some(column.to_string()),
        message: message.into(),
    }
}

/// Where each request field came from in a line-oriented body, to translate validation pointers.
#[derive(Debug, Clone, Default)]
pub struct ColumnMap {
    /// Matrix fields (`probabilities`, `scores`, `x`, `y`): the body column of each matrix column
    /// (CSV), or empty when the whole row is one column (NDJSON).
    pub(super) matrix: HashMap<&'static str, Vec<String>>,
    pub(super) csv: bool,
}

impl ColumnMap {
    /// The per-row column name of a scalar request field.
    fn scalar(field: &str) -> Option<&'static str> {
        Some(match field {
            "labels" => "label",
            "predictions" => "prediction",
            "targets" => "target",
            "weights" => "weight",
            "probabilities" => "probabilities",
            "scores" => "scores",
            "x" => "x",
            "y" => "y",
            "ids" => "id",
            _ => return None,
        })
    }

    /// Rewrite validation errors from JSON Pointers into rows and columns of the body; errors about
    /// query options name the query parameter.
    pub fn locate(&self, errors: Vec<FieldError>) -> Vec<FieldError> {
        errors.into_iter().map(|e| self.locate_one(e)).collect()
    }

    fn locate_one(&self, e: FieldError) -> FieldError {
        let Some(pointer) = e.pointer.as_deref() else {
            return e;
        };
        let mut parts = pointer.trim_start_matches('/').split('/');
        let field = parts.next().unwrap_or("");
        let row = parts.next().and_then(|s| s.parse::<u64>().ok());
        let col = parts.next().and_then(|s| s.parse::<usize>().ok());
        if field == "segments" {
            // `/segments/<key>/<row>`: the key's column in that row.
            let key = pointer
                .trim_start_matches('/')
                .split('/')
                .nth(1)
                .unwrap_or("");
            let row = pointer
                .trim_start_matches('/')
                .split('/')
                .nth(2)
                .and_then(|s| s.parse::<u64>().ok());
            let column = if self.csv {
                format!("segment_{key}")
            } else {
                format!("segments.{key}")
            };
            return FieldError {
                pointer: None,
                row,
                column: Some(column),
                message: e.message,
            };
        }
        if matches!(
            field,
            "task"
                | "classes"
                | "estimators"
                | "metadata"
                | "max_segment_values"
                | "label_coverage"
                | "normalize"
        ) {
            return FieldError {
                pointer: None,
                row: None,
                column: None,
                message: format!("query parameter `{field}`: {}", e.message),
            };
        }
        let Some(name) = Self::scalar(field) else {
            return e;
        };
        let column = match (self.matrix.get(field), col) {
            (Some(names), Some(c)) if self.csv => names.get(c).cloned(),
            (Some(names), None) if self.csv && !names.is_empty() => {
                Some(names.join(",").chars().take(200).collect())
            }
            _ => Some(name.to_string()),
        };
        FieldError {
            pointer: None,
            row,
            column,
            message: e.message,
        }
    }
}

/// Report a field present in this row but not the first, or the other way round.
fn presence_mismatch(first: bool, here: bool, row: u64, name: &str, errors: &mut Vec<FieldError>) {
    let message = match (first, here) {
        (true, false) => "is missing; the first row has it, so every row needs it",
        (false, true) => "is not in the first row; every row must have the same fields",
        _ => return,
    };
    errors.push(row_error(row, Some(name), message));
}

/// A matrix built one row at a time; every row must have the first row's width.
pub(super) struct MatrixColumn {
    name: &'static str,
    present: Option<bool>,
    cols: usize,
    data: Vec<f64>,
}

impl MatrixColumn {
    fn new(name: &'static str) -> Self {
        MatrixColumn {
            name,
            present: None,
            cols: 0,
            data: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, row: u64, values: Option<&[f64]>, errors: &mut Vec<FieldError>) {
        match (self.present, values) {
            (None, Some(v)) => {
                self.present = Some(true);
                self.cols = v.len();
                self.data.extend_from_slice(v);
            }
            (None, None) => self.present = Some(false),
            (Some(true), Some(v)) if v.len() == self.cols => self.data.extend_from_slice(v),
            (Some(true), Some(v)) => errors.push(row_error(
                row,
                Some(self.name),
                format!("has {} values but the first row has {}", v.len(), self.cols),
            )),
            (Some(first), given) => {
                presence_mismatch(first, given.is_some(), row, self.name, errors)
            }
        }
    }

    fn finish(self, rows: usize) -> Option<Matrix> {
        (self.present == Some(true)).then(|| Matrix::new(rows, self.cols, self.data))
    }

    /// Columnar bodies: the column is present and `cols` wide; its storage, to append rows to
    /// (`Err(width so far)` when earlier rows had another width).
    pub(super) fn columnar(&mut self, cols: usize) -> Result<&mut Vec<f64>, usize> {
        if self.present == Some(true) && self.cols != cols {
            return Err(self.cols);
        }
        self.present = Some(true);
        self.cols = cols;
        Ok(&mut self.data)
    }
}

/// A scalar column built one row at a time, present in every row or in none.
pub(super) struct ScalarColumn<T> {
    name: &'static str,
    present: Option<bool>,
    values: Vec<T>,
}

impl<T> ScalarColumn<T> {
    fn new(name: &'static str) -> Self {
        ScalarColumn {
            name,
            present: None,
            values: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, row: u64, value: Option<T>, errors: &mut Vec<FieldError>) {
        match (self.present, value) {
            (None, Some(v)) => {
                self.present = Some(true);
                self.values.push(v);
            }
            (None, None) => self.present = Some(false),
            (Some(true), Some(v)) => self.values.push(v),
            (Some(first), given) => {
                presence_mismatch(first, given.is_some(), row, self.name, errors)
            }
        }
    }

    fn finish(self) -> Option<Vec<T>> {
        (self.present == Some(true)).then_some(self.values)
    }

    /// Columnar bodies: the column is present; its storage, to append rows to.
    pub(super) fn columnar(&mut self) -> &mut Vec<T> {
        self.present = Some(true);
        &mut self.values
    }
}

/// Segment columns built one row at a time: every row carries the first row's keys.
#[derive(Default)]
pub(super) struct SegmentColumns {
    present: Option<bool>,
    pub(super) columns: std::collections::BTreeMap<String, Vec<String>>,
}

impl SegmentColumns {
    pub(super) fn push(
        &mut self,
        row: u64,
        values: Option<std::collections::BTreeMap<String, String>>,
        errors: &mut Vec<FieldError>,
    ) {
        match (self.present, values) {
            (None, Some(v)) => {
                self.present = Some(true);
                self.columns = v.into_iter().map(|(k, v)| (k, vec![v])).collect();
            }
            (None, None) => self.present = Some(false),
            (Some(true), Some(mut v)) => {
                for (k, col) in self.columns.iter_mut() {
                    match v.remove(k) {
                        Some(x) => col.push(x),
                        None => errors.push(row_error(
                            row,
                            Some(&format!("segments.{k}")),
                            "is missing; the first row has it, so every row needs it",
                        )),
                    }
                }
                for k in v.keys() {
                    errors.push(row_error(
                        row,
                        Some(&format!("segments.{k}")),
                        "is not in the first row; every row must have the same segment keys",
                    ));
                }
            }
            (Some(first), given) => {
                presence_mismatch(first, given.is_some(), row, "segments", errors)
            }
        }
    }

    /// Columnar bodies: the key's column, to append rows to.
    pub(super) fn columnar(&mut self, key: &str) -> &mut Vec<String> {
        self.present = Some(true);
        self.columns.entry(key.to_string()).or_default()
    }

    fn finish(self) -> Option<std::collections::BTreeMap<String, Vec<String>>> {
        (self.present == Some(true)).then_some(self.columns)
    }
}

/// The columns of a line-oriented (or columnar) body, filled row by row (or batch by batch).
pub(super) struct Builder {
    pub(super) rows: usize,
    pub(super) labels: ScalarColumn<Label>,
    pub(super) predictions: ScalarColumn<Label>,
    pub(super) targets: ScalarColumn<f64>,
    pub(super) weights: ScalarColumn<f64>,
    pub(super) probabilities: MatrixColumn,
    pub(super) scores: MatrixColumn,
    pub(super) x: MatrixColumn,
    pub(super) y: MatrixColumn,
    pub(super) ids: ScalarColumn<String>,
    pub(super) segments: SegmentColumns,
    pub(super) errors: Vec<FieldError>,
}

impl Builder {
    pub(super) fn new() -> Self {
        Builder {
            rows: 0,
            labels: ScalarColumn::new("label"),
            predictions: ScalarColumn::new("prediction"),
            targets: ScalarColumn::new("target"),
            weights: ScalarColumn::new("weight"),
            probabilities: MatrixColumn::new("probabilities"),
            scores: MatrixColumn::new("scores"),
            x: MatrixColumn::new("x"),
            y: MatrixColumn::new("y"),
            ids: ScalarColumn::new("id"),
            segments: SegmentColumns::default(),
            errors: Vec::new(),
        }
    }

    pub(super) fn full(&self) -> bool {
        self.errors.len() >= MAX_ROW_ERRORS
    }

    pub(super) fn finish(self, options: RowOptions) -> Result<BatchRequest, RowsError> {
        if !self.errors.is_empty() {
            let mut errors = self.errors;
            errors.truncate(MAX_ROW_ERRORS);
            return Err(RowsError::Invalid(errors));
        }
        let rows = self.rows;
        let probabilities = self.probabilities.finish(rows);
        let scores = self.scores.finish(rows);
        let x = self.x.finish(rows);
        let y = self.y.finish(rows);
        let targets = self.targets.finish();
        // Without an explicit task, the columns say which one it is.
        let task = options.task.unwrap_or(if y.is_some() {
            Task::Pairs
        } else if targets.is_some() {
            Task::Regression
        } else if scores.is_some() {
            Task::Multilabel
        } else {
            Task::Multiclass
        });
        Ok(BatchRequest {
            task: Some(task),
            classes: options.classes,
            labels: self.labels.finish(),
            probabilities,
            predictions: self.predictions.finish(),
            scores,
            x,
            y,
            targets,
            weights: self.weights.finish(),
            truth_matrix: None,
            estimators: options.estimators,
            metadata: options.metadata,
            segments: self.segments.finish(),
            max_segment_values: options.max_segment_values,
            ids: self.ids.finish(),
            label_coverage: options.label_coverage,
            normalize: options.normalize,
        })
    }
}

/// One NDJSON line: a sample in per-row form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NdjsonRow {
    label: Option<Label>,
    prediction: Option<Label>,
    probabilities: Option<Vec<f64>>,
    scores: Option<Vec<f64>>,
    x: Option<Vec<f64>>,
    y: Option<Vec<f64>>,
    target: Option<f64>,
    weight: Option<f64>,
    id: Option<String>,
    segments: Option<std::collections::BTreeMap<String, String>>,
}

/// Decode an NDJSON body: one JSON object per line with the fields `label`, `prediction`,
/// `probabilities`, `scores`, `x`, `y`, `target`, `weight` (those that apply to the task, the same
/// ones on every line). Blank lines are skipped; rows are numbered from 0 over the other lines.
pub fn decode_ndjson<R: BufRead>(
    mut reader: R,
    options: RowOptions,
) -> Result<(BatchRequest, ColumnMap), RowsError> {
    let mut b = Builder::new();
    let mut line = Vec::new();
    let mut line_no = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        line_no += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let row = b.rows as u64;
        match serde_json::from_slice::<NdjsonRow>(&line) {
            Ok(r) => {
                b.labels.push(row, r.label, &mut b.errors);
                b.predictions.push(row, r.prediction, &mut b.errors);
                b.targets.push(row, r.target, &mut b.errors);
                b.weights.push(row, r.weight, &mut b.errors);
                b.probabilities
                    .push(row, r.probabilities.as_deref(), &mut b.errors);
                b.scores.push(row, r.scores.as_deref(), &mut b.errors);
                b.x.push(row, r.x.as_deref(), &mut b.errors);
                b.y.push(row, r.y.as_deref(), &mut b.errors);
                b.ids.push(row, r.id, &mut b.errors);
                b.segments.push(row, r.segments, &mut b.errors);
            }
            Err(e) => {
                let message = e.to_string();
                let message = message.split(" at line ").next().unwrap_or(&message);
                b.errors.push(row_error(
                    row,
                    None,
                    format!("line {line_no} is not a sample object: {message}"),
                ));
            }
        }
        b.rows += 1;
        if b.full() {
            break;
        }
    }
    let map = ColumnMap::default();
    b.finish(options).map(|r| (r, map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::batch::BatchData;
    use crate::domain::csv::decode_csv;
    use proptest::prelude::*;

    fn ndjson(text: &str, options: RowOptions) -> Result<BatchRequest, Vec<FieldError>> {
        match decode_ndjson(text.as_bytes(), options) {
            Ok((r, _)) => Ok(r),
            Err(RowsError::Invalid(e)) => Err(e),
            Err(RowsError::Io(e)) => panic!("io error {e}"),
            Err(RowsError::Malformed(m)) => panic!("malformed {m}"),
        }
    }

    fn csv_body(
        text: &str,
        options: RowOptions,
    ) -> Result<(BatchRequest, ColumnMap), Vec<FieldError>> {
        match decode_csv(text.as_bytes(), options) {
            Ok(r) => Ok(r),
            Err(RowsError::Invalid(e)) => Err(e),
            Err(RowsError::Io(e)) => panic!("io error {e}"),
            Err(RowsError::Malformed(m)) => panic!("malformed {m}"),
        }
    }

    fn json(text: &str) -> BatchRequest {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn ndjson_equals_the_columnar_json_form() {
        let rows = "{\"label\": \"cat\", \"probabilities\": [0.7, 0.2, 0.1]}\n\
                    {\"label\": 2, \"probabilities\": [0.1, 0.3, 0.6], \"prediction\": 2}\n\n\
                    {\"label\": 1, \"probabilities\": [0.2, 0.5, 0.3], \"prediction\": \"dog\"}\n";
        // Predictions present on some rows only: an error naming the row and column.
        let err = ndjson(rows, RowOptions::default()).unwrap_err();
        assert_eq!(err[0].row, Some(1));
        assert_eq!(err[0].column.as_deref(), Some("prediction"));

        let rows = "{\"label\": \"cat\", \"probabilities\": [0.7, 0.2, 0.1]}\n\
                    {\"label\": 2, \"probabilities\": [0.1, 0.3, 0.6]}\n\n\
                    {\"label\": 1, \"probabilities\": [0.2, 0.5, 0.3]}";
        let options = RowOptions {
            classes: Some(vec!["cat".into(), "dog".into(), "bird".into()]),
            ..RowOptions::default()
        };
        let from_rows = ndjson(rows, options).unwrap().validate().unwrap();
        let from_json = json(
            r#"{"task": "multiclass", "classes": ["cat", "dog", "bird"], "labels": ["cat", 2, 1],
                "probabilities": [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]]}"#,
        )
        .validate()
        .unwrap();
        assert_eq!(from_rows.batch, from_json.batch);
    }

    #[test]
    fn ndjson_reports_bad_lines_and_ragged_rows_by_row() {
        let rows = "{\"label\": 0, \"probabilities\": [0.5, 0.5]}\n\
                    {\"label\": 1, \"probabilities\": [0.5, 0.25, 0.25]}\n\
                    not json\n\
                    {\"label\": 1, \"probabilitis\": [0.5, 0.5]}\n";
        let err = ndjson(rows, RowOptions::default()).unwrap_err();
        assert_eq!(err.len(), 3, "{err:?}");
        assert_eq!(
            (err[0].row, err[0].column.as_deref()),
            (Some(1), Some("probabilities"))
        );
        assert!(
            err[0].message.contains("first row has 2"),
            "{}",
            err[0].message
        );
        assert_eq!(err[1].row, Some(2));
        assert!(err[1].message.contains("line 3"), "{}", err[1].message);
        assert_eq!(err[2].row, Some(3));
        assert!(
            err[2].message.contains("probabilitis"),
            "{}",
            err[2].message
        );
    }

    #[test]
    fn validation_pointers_become_rows_and_columns() {
        let text = "label,p_cat,p_dog\ncat,0.9,0.1\ndog,0.3,0.8\nbird,0.5,0.5\ncat,-0.5,1.5\n";
        let (req, map) = csv_body(text, RowOptions::default()).unwrap();
        let errors = map.locate(req.validate().unwrap_err());
        let at = |row: u64| -> Vec<&str> {
            errors
                .iter()
                .filter(|e| e.row == Some(row))
                .filter_map(|e| e.column.as_deref())
                .collect()
        };
        // A row sum names the row's probability columns; a cell names its own column.
        assert_eq!(at(1), vec!["p_cat,p_dog"], "{errors:?}");
        assert_eq!(at(2), vec!["label"], "{errors:?}");
        assert_eq!(at(3), vec!["p_cat", "p_dog"], "{errors:?}");
        assert!(errors.iter().all(|e| e.pointer.is_none()));
    }

    #[test]
    fn csv_multiclass_orders_probability_columns_by_the_given_classes() {
        let text = "label, p_dog ,p_cat,weight\ncat,0.2,0.8,1\ndog,0.6,0.4,2.5\n1,0.5,0.5,0\n";
        let options = RowOptions {
            classes: Some(vec!["cat".into(), "dog".into()]),
            ..RowOptions::default()
        };
        let (req, _) = csv_body(text, options).unwrap();
        let v = req.validate().unwrap();
        let expected = json(
            r#"{"task": "multiclass", "classes": ["cat", "dog"], "labels": ["cat", "dog", 1],
                "probabilities": [[0.8, 0.2], [0.4, 0.6], [0.5, 0.5]], "weights": [1, 2.5, 0]}"#,
        )
        .validate()
        .unwrap();
        assert_eq!(v.batch, expected.batch);
    }

    #[test]
    fn csv_covers_every_task() {
        let (r, _) = csv_body("x_1,x_0,y_0\n1,2,3\n4,5,6.5\n", RowOptions::default()).unwrap();
        let v = r.validate().unwrap();
        match v.batch.data {
            BatchData::Pairs { x, y } => {
                assert_eq!(x.data, vec![2.0, 1.0, 5.0, 4.0]);
                assert_eq!(y.data, vec![3.0, 6.5]);
            }
            other => panic!("{other:?}"),
        }
        let (r, _) =
            csv_body("target,prediction\n1.5,1\n-2,0.25\n", RowOptions::default()).unwrap();
        assert_eq!(r.validate().unwrap().batch.task, Task::Regression);
        let (r, _) = csv_body(
            "label,score_a,score_b\na|b,0.9,0.8\n,0.1,0.2\nb,0.3,0.7\n",
            RowOptions::default(),
        )
        .unwrap();
        let v = r.validate().unwrap();
        let expected = json(
            r#"{"task": "multilabel", "classes": ["a", "b"], "labels": [["a","b"], [], ["b"]],
                "scores": [[0.9, 0.8], [0.1, 0.2], [0.3, 0.7]]}"#,
        )
        .validate()
        .unwrap();
        assert_eq!(v.batch, expected.batch);
    }

    #[test]
    fn csv_rejects_bad_headers_and_cells() {
        let err = csv_body("label,p_a,p_a,colour\n", RowOptions::default()).unwrap_err();
        assert!(err.iter().any(|e| e.column.as_deref() == Some("p_a")));
        assert!(err.iter().any(|e| e.column.as_deref() == Some("colour")));
        let err = csv_body("label,p_a,p_b\na,x,0.5\nb,0.5\n", RowOptions::default()).unwrap_err();
        assert_eq!(
            (err[0].row, err[0].column.as_deref()),
            (Some(0), Some("p_a"))
        );
        assert!(err[0].message.contains("not a number"));
        assert_eq!(err[1].row, Some(1));
        assert!(err[1].message.contains("3"), "{}", err[1].message);
        let err = csv_body("", RowOptions::default()).unwrap_err();
        assert!(err[0].message.contains("header"));
    }

    /// A random well-formed multiclass batch, written three ways.
    fn forms(labels: &[u8], k: usize) -> (String, String, String) {
        let k = k.max(2);
        let probs: Vec<Vec<f64>> = labels
            .iter()
            .map(|&l| {
                let mut row = vec![0.25 / (k - 1) as f64; k];
                row[l as usize % k] = 0.75;
                row
            })
            .collect();
        let labels: Vec<usize> = labels.iter().map(|&l| l as usize % k).collect();
        let body = serde_json::json!({
            "task": "multiclass",
            "classes": (0..k).map(|i| format!("c{i}")).collect::<Vec<_>>(),
            "labels": labels, "probabilities": probs,
        });
        let mut nd = String::new();
        let mut csv = String::from("label");
        for i in 0..k {
            csv.push_str(&format!(",p_c{i}"));
        }
        csv.push('\n');
        for (l, p) in labels.iter().zip(&probs) {
            nd.push_str(&serde_json::json!({"label": l, "probabilities": p}).to_string());
            nd.push('\n');
            csv.push_str(&format!("c{l}"));
            for v in p {
                csv.push_str(&format!(",{v:?}"));
            }
            csv.push('\n');
        }
        (body.to_string(), nd, csv)
    }

    proptest! {
        #[test]
        fn line_bodies_decode_like_the_json_body(labels in proptest::collection::vec(any::<u8>(), 0..60), k in 2usize..6) {
            let (body, nd, csv) = forms(&labels, k);
            let from_json = json(&body).validate().map(|v| v.batch).map_err(|e| e.len());
            let options = RowOptions {
                classes: Some((0..k).map(|i| format!("c{i}")).collect()),
                ..RowOptions::default()
            };
            let from_nd = ndjson(&nd, options.clone()).unwrap().validate().map(|v| v.batch).map_err(|e| e.len());
            let (req, _) = csv_body(&csv, RowOptions::default()).unwrap();
            let from_csv = req.validate().map(|v| v.batch);
            prop_assert_eq!(&from_nd.as_ref().ok(), &from_json.as_ref().ok());
            if let (Ok(a), Ok(b)) = (&from_csv, &from_json) {
                // CSV labels are names; the numbers must be the same.
                match (&a.data, &b.data) {
                    (BatchData::Multiclass { labels: la, probabilities: pa, .. },
                     BatchData::Multiclass { labels: lb, probabilities: pb, .. }) => {
                        prop_assert_eq!(la, lb);
                        prop_assert_eq!(pa, pb);
                    }
                    _ => prop_assert!(false),
                }
            } else {
                prop_assert_eq!(from_csv.is_ok(), from_json.is_ok());
            }
        }

        #[test]
        fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_ndjson(&bytes[..], RowOptions::default());
            let _ = decode_csv(&bytes[..], RowOptions::default());
        }

        #[test]
        fn decoders_never_panic_on_near_miss_text(text in "[a-z_0-9,.\\-|\" \\[\\]{}:\n]{0,300}") {
            let _ = decode_ndjson(text.as_bytes(), RowOptions::default());
            if let Ok((req, map)) = decode_csv(text.as_bytes(), RowOptions::default()) {
                if let Err(e) = req.validate() {
                    let located = map.locate(e);
                    prop_assert!(located.iter().all(|e| e.pointer.is_none() || e.row.is_none()));
                }
            }
        }
    }
}
