//! Per-sample export: each sample of a stored batch with its pointwise information under one
//! estimator, streamed as NDJSON or CSV (`GET /v1/batches/{id}/samples`).
//!
//! The batch's arrays are held once; a first pass fixes the marginals (`estimate::pointwise`),
//! then a blocking task writes the rows in chunks of about [`CHUNK`] bytes into a channel of
//! [`IN_FLIGHT`] chunks that the response body drains: the output is never held whole, and a
//! client that stops reading stops the writer.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::state::AppState;
use super::views::special;
use crate::domain::batch::{Batch, BatchData};
use crate::domain::estimators::Kind;
use crate::domain::unit::Unit;
use crate::error::{Error, Problem, Result};
use crate::estimate::pointwise::{ClassTerms, MultilabelTerms};
use crate::estimate::{ClassInput, EstimateError, MultilabelInput};
use crate::store;

/// Rows are written into chunks of about this many bytes.
const CHUNK: usize = 64 * 1024;
/// Chunks written ahead of the client.
const IN_FLIGHT: usize = 4;

/// The estimators with per-sample terms.
const EXPORTABLE: [Kind; 3] = [Kind::SemanticMi, Kind::ShannonMi, Kind::CeBound];

/// The body format of the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// One JSON object per line (`application/x-ndjson`).
    Ndjson,
    /// A header row, then one row per sample (`text/csv`).
    Csv,
}

/// What to export and how.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SamplesQuery {
    /// `semantic_mi`, `shannon_mi` or `ce_bound`: whose per-sample terms to export.
    #[param(pattern = "^(semantic_mi|shannon_mi|ce_bound)$")]
    pub estimator: String,
    /// `ndjson` or `csv`; overrides `Accept` (default: `Accept: text/csv` gives CSV, anything
    /// else NDJSON).
    pub format: Option<ExportFormat>,
    /// `bits` (default) or `nats`.
    pub unit: Option<Unit>,
    /// `semantic_mi`: `auto` (default), `probabilities`, `truth_matrix` or `lbi`, as the
    /// estimator's `mode` parameter (no effect on the other estimators).
    #[param(pattern = "^(auto|probabilities|truth_matrix|lbi)$")]
    pub mode: Option<String>,
    /// `ce_bound`: the floor of q(y|x) before the log, in (0, 0.001] (default 1e-12), as the
    /// estimator's `clip` parameter (no effect on the other estimators).
    #[param(exclusive_minimum = 0, maximum = 0.001)]
    pub clip: Option<f64>,
    /// `shannon_mi` on multi-label scores: predicted positive iff score ≥ threshold, in [0, 1]
    /// (default 0.5, as the estimator's `threshold`; hard predicted sets use 0.5; no effect on
    /// the other estimators).
    #[param(minimum = 0, maximum = 1)]
    pub threshold: Option<f64>,
}

/// One sample (one NDJSON line; the CSV has the same columns, with multi-label sets written as
/// names joined by `|`).
#[derive(Debug, Serialize, ToSchema)]
pub struct SampleRow<'a> {
    /// The sample's position in the batch, from 0.
    pub index: usize,
    /// The sample's id as uploaded (`ids`); `null` when the batch carries none (an empty cell in
    /// CSV).
    #[schema(required = true)]
    pub id: Option<&'a str>,
    /// The true class's name (multiclass), or the list of the true labels' names (multi-label).
    pub label: Names<'a>,
    /// The predicted class's name (as uploaded, else the argmax of the probabilities), or the
    /// predicted set (as uploaded, else the labels whose score is at least `threshold`).
    pub prediction: Names<'a>,
    /// The sample's term in the estimator's plug-in sum, in `unit`; `null` when it is not a
    /// finite number (see `information_special`).
    #[schema(required = true)]
    pub information: Option<f64>,
    /// `"-Infinity"` when the term is −∞ (a true class with probability or truth value 0);
    /// absent otherwise. In CSV the `information` cell holds `-Infinity`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub information_special: Option<String>,
    /// The sample's weight as uploaded; present only when the batch is weighted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
}

/// A class name (multiclass), or a set of label names (multi-label).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SampleNames)]
#[serde(untagged)]
pub enum Names<'a> {
    One(&'a str),
    Set(Vec<&'a str>),
}

/// Each sample of a batch with its pointwise information under one estimator, streamed in
/// bounded memory.
///
/// A batch whose labels come later exports the samples labelled so far (each under its index in
/// the batch), with the terms computed on them, as the estimators run.
///
/// Columns: `index`, `id` (`null` when the batch carries no sample ids), `label`, `prediction`,
/// `information` (in `unit`) and, for weighted batches, `weight`. `information` is the sample's
/// term in the estimator's **plug-in** sum, so that the mean of the column — weighted by
/// `weight` where the batch is weighted, Σ w·i / Σ w, rows of weight 0 carrying nothing — is
/// the plug-in value of the estimator on this batch:
///
/// - `semantic_mi` (multiclass): probabilities mode i = log q(y|x) − log T(θ_y) with
///   T(θ_j) = Σ w q(j|x) / Σ w (the G measure of `worst_samples`); truth_matrix mode
///   i = log T[y][ŷ] − log T(θ_ŷ) with T(θ_j) = Σ_x P̂(x) T[x][j]; lbi mode
///   i = log p̂(y,ŷ)/(p̂(y)p̂(ŷ)). The mean is the result's `value`.
/// - `semantic_mi` (multi-label, scores as truth functions): i = (Σw / Σ_j n_j) ·
///   Σ_{j: Y_j > 0} Y_j (log S_j − log T(θ_j)): the mean is the result's label-frequency-weighted
///   `value`.
/// - `shannon_mi`: i = log p̂(y,ŷ)/(p̂(y)p̂(ŷ)) from the batch's own (weighted) confusion table
///   (multi-label: the sum over labels of each label's 2×2 table term). The mean is the
///   **plug-in** MI, `details.plug_in`, not the result's `value`, which is the jackknife
///   bias-corrected MI.
/// - `ce_bound` (probabilities): i = log max(q(y|x), clip) − log p̂(y): the mean is the
///   result's `value`, Ĥ(Y) − CE.
///
/// A term may be −∞ (a true class given probability or truth value 0), as the estimator's value
/// then is. Parameters that change the terms (`mode`, `clip`, `threshold`) default as in the
/// estimator; give the ones a result was computed with to reproduce it.
///
/// Errors: an unknown estimator or a bad parameter 400; an estimator without per-sample terms,
/// or one that does not apply to the batch, 422 naming `estimator`; an unknown batch 404; raw
/// data purged by retention 410.
#[utoipa::path(
    get,
    path = "/v1/batches/{id}/samples",
    tag = "batches",
    params(
        ("id" = Uuid, Path, description = "Batch id"),
        SamplesQuery,
        ("Accept" = Option<String>, Header, description = "`text/csv` for CSV; `application/x-ndjson` (or anything else) for NDJSON. `format` overrides it."),
    ),
    responses(
        (status = 200, description = "One row per sample, in batch order, streamed",
            content(
                (SampleRow = "application/x-ndjson", example = json!("{\"index\":0,\"id\":null,\"label\":\"cat\",\"prediction\":\"cat\",\"information\":0.94}\n{\"index\":1,\"id\":null,\"label\":\"dog\",\"prediction\":\"cat\",\"information\":-0.58}\n")),
                (String = "text/csv", example = json!("index,id,label,prediction,information\n0,,cat,cat,0.94\n1,,dog,cat,-0.58\n")),
            )),
        (status = 400, description = "Unknown estimator, format or unit, or a parameter out of range or not of this estimator", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The raw data was purged by the model's retention policy (results are kept)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The batch cannot give these terms: the estimator does not apply to what it holds (its task, or no probabilities, scores or predictions for it), `mode=truth_matrix` on a batch without a truth matrix, `mode=probabilities` on one without probabilities, or fewer than 2 of its samples labelled so far (labels sent later)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The estimator has no per-sample terms (an estimator id outside `semantic_mi`, `shannon_mi`, `ce_bound`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn export_samples(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(q): Query<SamplesQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let spec = Spec::parse(&q)?;
    let format = q.format.unwrap_or_else(|| format_from_accept(&headers));
    let unit = q.unit.unwrap_or_default();
    let row = store::get_batch(&state.pool, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("batch {id} not found")))?;
    if let Some(at) = row.data_purged_at {
        return Err(Error::Gone(store::DataPurged(at).to_string()));
    }
    let mut batch = store::load_batch_data(&state.pool, id).await.map_err(|e| {
        match e.downcast_ref::<store::DataPurged>() {
            Some(p) => Error::Gone(p.to_string()),
            None => Error::Internal(e),
        }
    })?;
    // Labels that came later: joined by id; the rows are the samples labelled so far (as the
    // estimators run them), each under its own index.
    let mut origin = None;
    if batch.labels_later {
        crate::store::labels::join_labels(&state.pool, id, &mut batch).await?;
        let rows = batch.labelled_rows();
        if rows.len() < 2 {
            return Err(Error::Conflict(format!(
                "{} of the batch's {} samples are labelled; the per-sample terms need labels",
                rows.len(),
                batch.n
            )));
        }
        if rows.len() < batch.n {
            batch = batch.subset(&rows);
            origin = Some(rows);
        }
    }
    let ids = row.has_ids.then(|| IdSource {
        pool: state.pool.clone(),
        batch: id,
        runtime: tokio::runtime::Handle::current(),
    });
    if let Some(why) = spec.kind.not_applicable(&batch) {
        return Err(Error::Conflict(format!("estimator: {why}")));
    }
    // The first pass (marginals, tables) off the async threads; errors still answer in full.
    let export = tokio::task::spawn_blocking(move || {
        Export::new(batch, spec).map(|mut e| {
            e.origin = origin;
            e.ids = ids;
            e
        })
    })
    .await
    .map_err(|e| Error::Internal(e.into()))?
    // What the batch holds does not fit the request (a mode without its input, a malformed truth
    // matrix): a conflict with the stored batch, not a malformed request.
    .map_err(|e| Error::Conflict(format!("estimator {}: {e}", spec.kind.id())))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(IN_FLIGHT);
    let export = Arc::new(export);
    tokio::task::spawn_blocking(move || {
        export.write(format, unit, &mut |chunk| tx.blocking_send(chunk).is_ok())
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), rx))
    });
    let content_type = match format {
        ExportFormat::Ndjson => "application/x-ndjson",
        ExportFormat::Csv => "text/csv; charset=utf-8",
    };
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `text/csv` when `Accept` names it before `application/x-ndjson`; NDJSON otherwise.
fn format_from_accept(headers: &HeaderMap) -> ExportFormat {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|m| {
            m.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    for m in accept {
        match m.as_str() {
            "text/csv" => return ExportFormat::Csv,
            "application/x-ndjson" => return ExportFormat::Ndjson,
            _ => {}
        }
    }
    ExportFormat::Ndjson
}

/// The estimator and the parameters that change its terms, validated.
#[derive(Debug, Clone, Copy)]
struct Spec {
    kind: Kind,
    mode: &'static str,
    clip: f64,
    threshold: f64,
}

impl Spec {
    fn parse(q: &SamplesQuery) -> Result<Spec> {
        let id = q.estimator.as_str();
        let Some(kind) = Kind::parse(id) else {
            let known: Vec<_> = EXPORTABLE.iter().map(|k| k.id()).collect();
            return Err(Error::BadRequest(format!(
                "estimator {id:?} is not an estimator; per-sample export supports {}",
                known.join(", ")
            )));
        };
        if !EXPORTABLE.contains(&kind) {
            return Err(Error::Unprocessable(format!(
                "estimator: {id} has no per-sample terms (its value is not a sum over samples); \
                 per-sample export supports semantic_mi, shannon_mi and ce_bound"
            )));
        }
        // A parameter of another estimator is checked (the document states its range) but has
        // no effect, like `unit` on a route without values.
        let mode = match q.mode.as_deref() {
            None => "auto",
            Some(m) => crate::estimate::semantic::MODES
                .into_iter()
                .find(|x| *x == m)
                .ok_or_else(|| {
                    Error::BadRequest(format!(
                        "mode must be one of auto, probabilities, truth_matrix, lbi (got {m:?})"
                    ))
                })?,
        };
        let clip = q.clip.unwrap_or(1e-12);
        if !(clip > 0.0 && clip <= 1e-3) {
            return Err(Error::BadRequest(format!(
                "clip must be in (0, 0.001] (got {clip})"
            )));
        }
        let threshold = q.threshold.unwrap_or(0.5);
        if !(0.0..=1.0).contains(&threshold) {
            return Err(Error::BadRequest(format!(
                "threshold must be between 0 and 1 (got {threshold})"
            )));
        }
        Ok(Spec {
            kind,
            mode,
            clip,
            threshold,
        })
    }
}

/// A batch with the shared part of its terms: everything the rows need.
struct Export {
    batch: Batch,
    kind: Kind,
    /// Multiclass: the hard predictions (as uploaded or the argmax).
    predictions: Vec<u32>,
    terms: Terms,
    /// When the rows are a subset (the labelled samples): each row's index in the batch.
    origin: Option<Vec<usize>>,
    /// Where the sample ids are read from, a range at a time (none when the batch has none).
    ids: Option<IdSource>,
}

/// Reads a batch's sample ids in index ranges, from the blocking writer.
struct IdSource {
    pool: sqlx::PgPool,
    batch: Uuid,
    runtime: tokio::runtime::Handle,
}

/// Ids read per query while exporting.
const ID_RANGE: usize = 50_000;

/// The ids of the current index range.
struct IdWindow<'a> {
    source: Option<&'a IdSource>,
    start: usize,
    end: usize,
    ids: Vec<Option<String>>,
}

impl IdWindow<'_> {
    /// The id of sample `index` (indices asked in increasing order); `None` without ids or when
    /// reading them failed (logged).
    fn get(&mut self, index: usize) -> Option<&str> {
        let source = self.source?;
        if index < self.start || index >= self.end {
            self.start = index;
            self.end = index + ID_RANGE;
            self.ids = vec![None; ID_RANGE];
            let read = source.runtime.block_on(crate::store::labels::ids_between(
                &source.pool,
                source.batch,
                self.start,
                self.end,
            ));
            match read {
                Ok(rows) => {
                    for (i, id) in rows {
                        self.ids[i as usize - self.start] = Some(id);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not read sample ids for the export"),
            }
        }
        self.ids[index - self.start].as_deref()
    }
}

enum Terms {
    Class(ClassTerms),
    /// The terms, and the decision threshold of the predicted sets shown.
    Multilabel(MultilabelTerms, f64),
}

impl Export {
    fn new(batch: Batch, spec: Spec) -> Result<Export, EstimateError> {
        let (predictions, terms) = match &batch.data {
            BatchData::Multiclass { .. } => {
                let predictions = batch
                    .multiclass_predictions()
                    .ok_or_else(|| EstimateError::Invalid("the batch has no predictions".into()))?;
                let input = class_input(&batch, &predictions);
                let terms = match spec.kind {
                    Kind::SemanticMi => ClassTerms::semantic(&input, spec.mode)?,
                    Kind::CeBound => ClassTerms::ce_bound(&input, spec.clip)?,
                    _ => ClassTerms::shannon(&input)?,
                };
                (predictions, Terms::Class(terms))
            }
            BatchData::Multilabel {
                predictions,
                scores,
                ..
            } => {
                // As the worker runs them: hard predicted sets decide at 0.5.
                let threshold = if predictions.is_some() {
                    0.5
                } else {
                    spec.threshold
                };
                let input = multilabel_input(&batch, spec.kind).ok_or_else(|| {
                    EstimateError::Invalid(if scores.is_none() && predictions.is_none() {
                        "the batch has neither predictions nor scores".into()
                    } else {
                        "semantic_mi needs per-label scores".into()
                    })
                })?;
                let terms = match spec.kind {
                    Kind::SemanticMi => MultilabelTerms::semantic(&input)?,
                    _ => MultilabelTerms::shannon(&input, threshold)?,
                };
                (Vec::new(), Terms::Multilabel(terms, threshold))
            }
            _ => {
                return Err(EstimateError::Invalid(format!(
                    "{} does not apply to task {}",
                    spec.kind.id(),
                    batch.task.as_str()
                )))
            }
        };
        Ok(Export {
            batch,
            kind: spec.kind,
            predictions,
            terms,
            origin: None,
            ids: None,
        })
    }

    /// Write every row in `format`, handing chunks to `send`; stops early when `send` says the
    /// reader has gone.
    fn write(&self, format: ExportFormat, unit: Unit, send: &mut dyn FnMut(Bytes) -> bool) {
        let factor = unit.factor();
        let classes: Vec<&str> = self.batch.classes.iter().map(String::as_str).collect();
        let weights = self.batch.weights.as_deref();
        let mut out = RowWriter::new(format, weights.is_some());
        let mut ids = IdWindow {
            source: self.ids.as_ref(),
            start: 0,
            end: 0,
            ids: Vec::new(),
        };
        let origin = self.origin.as_deref();
        // One row; false when the reader has gone.
        let mut emit = |s: usize, information: f64, label: Names<'_>, prediction: Names<'_>| {
            let x = information * factor;
            let index = origin.map_or(s, |o| o[s]);
            out.row(&SampleRow {
                index,
                id: ids.get(index),
                label,
                prediction,
                information: x.is_finite().then_some(x),
                information_special: special(x),
                weight: weights.map(|w| w[s]),
            });
            out.buf.len() < CHUNK || send(out.take())
        };
        match (&self.terms, &self.batch.data) {
            (Terms::Class(t), BatchData::Multiclass { labels, .. }) => {
                let input = class_input(&self.batch, &self.predictions);
                for s in 0..self.batch.n {
                    let label = Names::One(classes[labels[s] as usize]);
                    let prediction = Names::One(classes[self.predictions[s] as usize]);
                    if !emit(s, t.term(&input, s), label, prediction) {
                        return;
                    }
                }
            }
            (
                Terms::Multilabel(t, threshold),
                BatchData::Multilabel {
                    labels,
                    predictions,
                    scores,
                    ..
                },
            ) => {
                let Some(input) = multilabel_input(&self.batch, self.kind) else {
                    return;
                };
                let set = |on: &dyn Fn(usize) -> bool| -> Names<'_> {
                    Names::Set(
                        (0..classes.len())
                            .filter(|&j| on(j))
                            .map(|j| classes[j])
                            .collect(),
                    )
                };
                for s in 0..self.batch.n {
                    let label = set(&|j| labels.row(s)[j] > 0.5);
                    let prediction = set(&|j| match (predictions, scores) {
                        (Some(p), _) => p.row(s)[j] > 0.5,
                        (None, Some(sc)) => sc.row(s)[j] >= *threshold,
                        (None, None) => false,
                    });
                    if !emit(s, t.term(&input, s), label, prediction) {
                        return;
                    }
                }
            }
            _ => return,
        }
        if !out.buf.is_empty() {
            send(out.take());
        }
    }
}

fn class_input<'a>(batch: &'a Batch, predictions: &'a [u32]) -> ClassInput<'a> {
    let (labels, probabilities) = match &batch.data {
        BatchData::Multiclass {
            labels,
            probabilities,
            ..
        } => (labels.as_slice(), probabilities.as_ref().map(|m| m.view())),
        _ => (&[][..], None),
    };
    ClassInput {
        labels,
        predictions,
        k: batch.k(),
        probabilities,
        weights: batch.weights.as_deref(),
        truth_matrix: batch.truth_matrix.as_ref().map(|m| m.view()),
    }
}

/// The multi-label input an estimator reads: semantic_mi the scores, shannon_mi the predicted
/// sets or else the scores.
fn multilabel_input(batch: &Batch, kind: Kind) -> Option<MultilabelInput<'_>> {
    let BatchData::Multilabel {
        labels,
        predictions,
        scores,
        ..
    } = &batch.data
    else {
        return None;
    };
    let decisions = match kind {
        Kind::SemanticMi => scores.as_ref(),
        _ => predictions.as_ref().or(scores.as_ref()),
    }?;
    Some(MultilabelInput {
        labels: labels.view(),
        scores: decisions.view(),
        weights: batch.weights.as_deref(),
    })
}

/// Formats rows into a buffer: NDJSON through serde, CSV by RFC 4180 (a field is quoted when it
/// holds a comma, a quote or a line break; quotes are doubled).
struct RowWriter {
    format: ExportFormat,
    buf: Vec<u8>,
}

impl RowWriter {
    fn new(format: ExportFormat, weighted: bool) -> RowWriter {
        let mut w = RowWriter {
            format,
            buf: Vec::with_capacity(CHUNK + 1024),
        };
        if format == ExportFormat::Csv {
            w.buf
                .extend_from_slice(b"index,id,label,prediction,information");
            if weighted {
                w.buf.extend_from_slice(b",weight");
            }
            w.buf.push(b'\n');
        }
        w
    }

    fn row(&mut self, r: &SampleRow<'_>) {
        use std::io::Write;
        match self.format {
            ExportFormat::Ndjson => {
                // Writing into a Vec cannot fail, and every field serialises.
                let _ = serde_json::to_writer(&mut self.buf, r);
                self.buf.push(b'\n');
            }
            ExportFormat::Csv => {
                let _ = write!(self.buf, "{},", r.index);
                if let Some(id) = r.id {
                    csv_field(&mut self.buf, id);
                }
                self.buf.push(b',');
                csv_names(&mut self.buf, &r.label);
                self.buf.push(b',');
                csv_names(&mut self.buf, &r.prediction);
                self.buf.push(b',');
                match (r.information, &r.information_special) {
                    (Some(x), _) => number(&mut self.buf, x),
                    (None, Some(s)) => self.buf.extend_from_slice(s.as_bytes()),
                    (None, None) => {}
                }
                if let Some(w) = r.weight {
                    self.buf.push(b',');
                    number(&mut self.buf, w);
                }
                self.buf.push(b'\n');
            }
        }
    }

    fn take(&mut self) -> Bytes {
        Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK + 1024),
        ))
    }
}

fn csv_names(buf: &mut Vec<u8>, names: &Names<'_>) {
    match names {
        Names::One(s) => csv_field(buf, s),
        Names::Set(v) => csv_field(buf, &v.join("|")),
    }
}

/// A text cell. One that a spreadsheet would run as a formula (it begins with `=`, `+`, `-`,
/// `@`, a tab or a carriage return: an id or class name from an upload) is written with a
/// leading `'` and quoted, so that opening the export cannot run what a client uploaded.
fn csv_field(buf: &mut Vec<u8>, s: &str) {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if formula || s.contains([',', '"', '\n', '\r']) {
        buf.push(b'"');
        if formula {
            buf.push(b'\'');
        }
        buf.extend_from_slice(s.replace('"', "\"\"").as_bytes());
        buf.push(b'"');
    } else {
        buf.extend_from_slice(s.as_bytes());
    }
}

/// A number as JSON writes it (the shortest form that reads back the same).
fn number(buf: &mut Vec<u8>, x: f64) {
    let _ = serde_json::to_writer(buf, &x);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_that_spreadsheets_would_run_are_neutralised() {
        let cell = |s: &str| {
            let mut b = Vec::new();
            csv_field(&mut b, s);
            String::from_utf8(b).unwrap()
        };
        assert_eq!(cell("plain id"), "plain id");
        assert_eq!(
            cell("=HYPERLINK(\"http://x\")"),
            "\"'=HYPERLINK(\"\"http://x\"\")\""
        );
        assert_eq!(cell("+1"), "\"'+1\"");
        assert_eq!(cell("-2+3"), "\"'-2+3\"");
        assert_eq!(cell("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(cell("\tx"), "\"'\tx\"");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("mid=dle"), "mid=dle");
    }
}
