//! Taking a subset of a batch's samples (one segment's, or the labelled ones).

use super::{Batch, BatchData};
use crate::domain::columns::Matrix;
use crate::domain::segments::{SegmentColumn, UNLABELLED};

fn take_rows(m: &Matrix, rows: &[usize]) -> Matrix {
    let mut data = Vec::with_capacity(rows.len() * m.cols);
    for &r in rows {
        data.extend_from_slice(m.row(r));
    }
    Matrix::new(rows.len(), m.cols, data)
}

fn take<T: Copy>(v: &[T], rows: &[usize]) -> Vec<T> {
    rows.iter().map(|&r| v[r]).collect()
}

impl Batch {
    /// The batch restricted to `rows` (indices into its samples, in the order given): every
    /// per-sample array is taken row by row; classes, the truth matrix and segment value names
    /// are kept.
    pub fn subset(&self, rows: &[usize]) -> Batch {
        let data = match &self.data {
            BatchData::Multiclass {
                labels,
                label_form,
                predictions,
                prediction_form,
                probabilities,
                features,
            } => BatchData::Multiclass {
                labels: take(labels, rows),
                label_form: *label_form,
                predictions: predictions.as_ref().map(|p| take(p, rows)),
                prediction_form: *prediction_form,
                probabilities: probabilities.as_ref().map(|m| take_rows(m, rows)),
                features: features.as_ref().map(|m| take_rows(m, rows)),
            },
            BatchData::Multilabel {
                labels,
                label_form,
                predictions,
                prediction_form,
                scores,
            } => BatchData::Multilabel {
                labels: take_rows(labels, rows),
                label_form: *label_form,
                predictions: predictions.as_ref().map(|m| take_rows(m, rows)),
                prediction_form: *prediction_form,
                scores: scores.as_ref().map(|m| take_rows(m, rows)),
            },
            BatchData::Pairs { x, y } => BatchData::Pairs {
                x: take_rows(x, rows),
                y: take_rows(y, rows),
            },
            BatchData::Regression {
                targets,
                predictions,
            } => BatchData::Regression {
                targets: take(targets, rows),
                predictions: take(predictions, rows),
            },
        };
        Batch {
            task: self.task,
            classes: self.classes.clone(),
            n: rows.len(),
            data,
            weights: self.weights.as_ref().map(|w| take(w, rows)),
            truth_matrix: self.truth_matrix.clone(),
            segments: self
                .segments
                .iter()
                .map(|s| SegmentColumn {
                    key: s.key.clone(),
                    values: s.values.clone(),
                    codes: take(&s.codes, rows),
                })
                .collect(),
            labels_later: self.labels_later,
            normalized: self.normalized,
        }
    }

    /// Whether sample `i` has its true label (always, unless the batch was uploaded with its
    /// labels to come and this one has not been joined yet).
    pub fn is_labelled(&self, i: usize) -> bool {
        match &self.data {
            BatchData::Multiclass { labels, .. } => labels[i] != UNLABELLED,
            BatchData::Multilabel { labels, .. } => !labels.row(i)[0].is_nan(),
            _ => true,
        }
    }

    /// How many samples have their true label.
    pub fn labelled_count(&self) -> usize {
        if !self.labels_later {
            return self.n;
        }
        (0..self.n).filter(|&i| self.is_labelled(i)).count()
    }

    /// The samples that have their true label, in order.
    pub fn labelled_rows(&self) -> Vec<usize> {
        (0..self.n).filter(|&i| self.is_labelled(i)).collect()
    }
}
