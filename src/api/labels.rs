//! Labels that arrive after their predictions (`POST /v1/models/{model}/labels`), and releasing a
//! batch's waiting jobs on request (`POST /v1/batches/{id}/release`).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use uuid::Uuid;

use super::batches::accepted;
use super::extract::{parse_json_stream, path_name};
use super::ingest::{self, Format};
use super::state::AppState;
use super::views::Accepted;
use crate::domain::labels::{self, LabelsRequest};
use crate::domain::rows::RowsError;
use crate::error::{Error, Problem, Result};
use crate::store;
use crate::store::labels as store_labels;
use crate::store::labels::LabelsOutcome;

/// Send labels for samples uploaded earlier with ids (and without labels, or to confirm them).
///
/// Each label is joined to its sample by id across the model's batches and resolved against that
/// batch's classes. Idempotent: a label already stored with the same value changes nothing. A
/// label that differs from the one stored refuses the whole request (409, each conflicting id
/// named in `errors`); an invalid label is a 422 naming `/labels/<i>`. Ids no batch of the model
/// carries are reported (`unknown`, `unknown_ids`), not stored. A batch whose labelled fraction
/// reaches its `label_coverage` (default 1) has its waiting label-dependent jobs queued in the
/// same transaction. A 202 means the labels are stored.
///
/// Bodies: JSON `{"ids": [...], "labels": [...]}`, NDJSON lines `{"id": ..., "label": ...}`, or
/// CSV with the columns `id,label` (multilabel cells list names separated by `|`).
#[utoipa::path(
    post,
    path = "/v1/models/{model}/labels",
    tag = "batches",
    params(("model" = String, Path, description = "Model name: 1–128 of [A-Za-z0-9._-], not starting with '.'")),
    request_body(
        description = "Labels by sample id",
        content(
            (LabelsRequest = "application/json"),
            (String = "application/x-ndjson", example = json!("{\"id\": \"req-1\", \"label\": \"cat\"}\n{\"id\": \"req-2\", \"label\": 2}\n")),
            (String = "text/csv", example = json!("id,label\nreq-1,cat\nreq-2,2\n")),
        )
    ),
    responses(
        (status = 202, body = LabelsOutcome, description = "Stored; what changed, unknown ids and each batch's coverage"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such model", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Some samples already have a different label; nothing was stored", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn post_labels(
    State(state): State<AppState>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response> {
    let model = path_name("model", &model)?;
    let format = ingest::format_of(&headers)?;
    if format == Format::Arrow {
        return Err(Error::UnsupportedMediaType(
            "labels are sent as application/json, application/x-ndjson or text/csv".into(),
        ));
    }
    let coding = ingest::coding_of(&headers)?;
    let limit = state.limits.max_upload_bytes as u64;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Read like an upload: a declared length over the limit is refused before reading, a small
    // body is read ahead without a thread, a large one is decoded as it arrives on a stream slot
    // (never held whole), compressed bodies are inflated under the same limit.
    let source = ingest::BodySource::read(body, declared, limit).await?;
    let slot = if source.is_stream() {
        Some(state.caches.stream_slot().await?)
    } else {
        None
    };
    let reader = source.into_reader();
    let started = std::time::Instant::now();
    let req: LabelsRequest = tokio::task::spawn_blocking(move || -> Result<LabelsRequest> {
        let _slot = slot;
        let (decoded, failure) = ingest::inflate(reader, coding, limit, None)?;
        let rows = |r: std::result::Result<LabelsRequest, RowsError>| match r {
            Ok(req) => Ok(req),
            Err(RowsError::Io(e)) => Err(failure.map(e)),
            Err(RowsError::Invalid(errors)) => Err(Error::Validation(errors)),
            Err(RowsError::Malformed(m)) => Err(Error::BadRequest(m)),
        };
        let req = match format {
            Format::Ndjson => rows(labels::decode_ndjson(std::io::BufReader::with_capacity(
                64 * 1024,
                decoded,
            )))?,
            Format::Csv => rows(labels::decode_csv(decoded))?,
            _ => parse_json_stream::<LabelsRequest>(decoded, |e| failure.map(e))?,
        };
        req.validate().map_err(Error::Validation)?;
        Ok(req)
    })
    .await
    .map_err(|e| Error::Internal(e.into()))??;
    let model_id = store::model_id(&state.pool, model.as_str())
        .await?
        .ok_or_else(|| Error::NotFound(format!("model {model} not found")))?;
    let _turn = state.caches.labels_turn(model_id).await?;
    let read_ms = started.elapsed().as_millis() as u64;
    let mut tx = labels_transaction(&state, model_id).await?;
    let outcome = store_labels::apply_labels(&mut tx, model_id, &req).await?;
    let apply_ms = started.elapsed().as_millis() as u64 - read_ms;
    tx.commit().await?;
    if outcome.batches.iter().any(|b| b.released) {
        state.wake.notify_waiters();
    }
    tracing::info!(
        model = %model,
        received = outcome.received,
        stored = outcome.stored,
        unknown = outcome.unknown,
        read_ms,
        apply_ms,
        total_ms = started.elapsed().as_millis() as u64,
        "labels accepted"
    );
    Ok((StatusCode::ACCEPTED, Json(outcome)).into_response())
}

/// Queue a labels-later batch's waiting jobs now, on the labels that have arrived so far (each
/// result records the coverage it ran at). Releasing twice is harmless: the second time there is
/// nothing waiting and the batch's jobs are returned as they are.
#[utoipa::path(
    post,
    path = "/v1/batches/{id}/release",
    tag = "batches",
    params(("id" = Uuid, Path, description = "Batch id")),
    responses(
        (status = 202, body = Accepted, description = "The batch and its jobs"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The batch carried its labels: nothing waits for them", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The batch's raw data was purged by retention", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn release_batch(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Response> {
    let model_id: Option<Uuid> = sqlx::query_scalar("SELECT model_id FROM batches WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.pool)
        .await?;
    let Some(model_id) = model_id else {
        return Err(Error::NotFound(format!("batch {id} not found")));
    };
    // Serialised with the model's labels requests: the release fixes exactly the labels stored
    // before it.
    let _turn = state.caches.labels_turn(model_id).await?;
    let mut tx = labels_transaction(&state, model_id).await?;
    type Row = (
        bool,
        Option<serde_json::Value>,
        Option<chrono::DateTime<chrono::Utc>>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT labels_later, pending_jobs, data_purged_at FROM batches WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((labels_later, pending, purged)) = row else {
        return Err(Error::NotFound(format!("batch {id} not found")));
    };
    if let Some(at) = purged {
        return Err(Error::Gone(format!(
            "batch {id}'s raw data was purged by the model's retention policy at {at}; its jobs cannot run"
        )));
    }
    if !labels_later {
        return Err(Error::Conflict(format!(
            "batch {id} was uploaded with its labels; no job waits for them"
        )));
    }
    if let Some(p) = pending {
        store_labels::release(&mut tx, id, p).await?;
    }
    tx.commit().await?;
    state.wake.notify_waiters();
    accepted(&state, id, StatusCode::ACCEPTED).await
}

/// How long a labels request (or release) waits for another process's turn on the same model.
const LABELS_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// A transaction holding the model's labels lock (another process may hold it: waited for
/// without a connection), or 503 when the turn does not come.
async fn labels_transaction(
    state: &AppState,
    model_id: Uuid,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    store_labels::begin_labels(&state.pool, model_id, LABELS_PATIENCE)
        .await?
        .ok_or_else(|| Error::Overloaded {
            detail: format!(
                "another labels request for this model has held its turn for {} s; retry later",
                LABELS_PATIENCE.as_secs()
            ),
            retry_after: 5,
        })
}
