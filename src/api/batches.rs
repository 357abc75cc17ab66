//! Uploading batches, reading them back, and adding estimator jobs to stored batches.

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{body_rejection, parse_json, path_name, require_json, UnitQuery};
use super::ingest::{self, UploadQuery};
use super::state::AppState;
use super::views::{Accepted, Batch as BatchView, BatchDetail, EstimateResult, Job};
use crate::domain::batch::{Batch, BatchRequest};
use crate::domain::estimators::{self, EstimatorRef};
use crate::error::{Error, FieldError, Result};
use crate::{queue, store};
use sha2::{Digest, Sha256};

fn request_id(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-request-id").and_then(|v| v.to_str().ok())
}

fn location(id: Uuid) -> (header::HeaderName, String) {
    (header::LOCATION, format!("/v1/batches/{id}"))
}

pub(super) async fn accepted(
    state: &AppState,
    batch_id: Uuid,
    status: StatusCode,
) -> Result<Response> {
    let batch = store::get_batch(&state.pool, batch_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("batch {batch_id} not found")))?;
    let jobs = store::batch_jobs(&state.pool, batch_id).await?;
    let body = Accepted {
        batch: batch.into(),
        jobs: jobs.into_iter().map(Job::from).collect(),
    };
    Ok((status, [location(batch_id)], Json(body)).into_response())
}

/// Upload a batch of predictions and true labels for a model version.
///
/// The model and version are created on first use. The batch, its stored data and its estimator
/// jobs are written in one transaction: a 202 means nothing can be lost afterwards. Validation
/// errors (422) carry a JSON Pointer per offending value, and nothing is stored.
///
/// `Idempotency-Key` (optional, kept 24 hours): a retry with the same key and body returns the
/// original 202 with the same batch; the same key with another body is refused with 422; while
/// the first request is still in flight, 409.
///
/// Cost bounds: each estimator's memory need is estimated from the batch's shape (N, K classes,
/// L labels, dx, dy) and its parameters before anything runs (`GET /v1/estimators` shows the
/// budget). A requested estimator over the per-job budget is refused (422 naming it, its need
/// and the limit); a default estimator over it is left out and listed with the reason in
/// `batch.estimators_skipped`. More classes than `--max-classes`: 422 at `/classes`.
///
/// Backpressure: while the queue is over its ceiling the upload answers 503 with `Retry-After`
/// and stores nothing.
///
/// Compression: `Content-Encoding: gzip` (or `x-gzip`), `zstd` or `identity`; the body is
/// decompressed as it arrives and the decoded size is held to the upload limit too. Another
/// coding is a 415; a body that does not decode as its coding is a 400. (The header describes the
/// body, so it is stated here rather than as a parameter a client could set independently.)
#[utoipa::path(
    post,
    path = "/v1/models/{model}/versions/{version}/batches",
    tag = "batches",
    params(
        ("model" = String, Path, description = "Model name: 1–128 of [A-Za-z0-9._-], not starting with '.'"),
        ("version" = String, Path, description = "Version name, same rules"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: same key and body → the same batch"),
        UploadQuery,
    ),
    request_body(
        description = "A batch: columnar JSON, NDJSON (one sample per line: `{\"label\": 2, \"probabilities\": [0.1, 0.2, 0.7]}`; fields label, prediction, probabilities, scores, x, y, target, weight, id, and segments as an object of key to value), CSV (a header row; columns label, prediction, p_<class>, score_<label>, x_<i>, y_<i>, target, weight, id, segment_<key>; multilabel cells list names separated by |), or an Arrow IPC stream (columns named like the NDJSON fields: label and prediction as integers, strings or dictionary-encoded strings, multilabel rows as lists; probabilities, scores, x and y as fixed-size lists of float32 or float64; target and weight as numbers; id and segment_<key> as strings, dictionary-encoded strings or integers; no nulls). With ids, a multiclass or multilabel batch may leave its labels out (they arrive later by id). NDJSON, CSV and Arrow take task, classes, estimators, metadata, max_segment_values and label_coverage from the query; their errors name the row (from 0) and the column.",
        content(
            (BatchRequest = "application/json"),
            (String = "application/x-ndjson", example = json!("{\"label\": 0, \"probabilities\": [0.7, 0.2, 0.1]}\n{\"label\": 1, \"probabilities\": [0.1, 0.8, 0.1]}\n")),
            (String = "text/csv", example = json!("label,p_cat,p_dog,p_bird\ncat,0.7,0.2,0.1\ndog,0.1,0.8,0.1\n")),
            (ArrowStream = "application/vnd.apache.arrow.stream"),
        )
    ),
    responses(
        (status = 202, description = "Stored, with its jobs queued", body = Accepted,
            headers(("Location" = String, description = "/v1/batches/{id}"))),
        (status = 400, description = "The body is not valid JSON or not an Arrow IPC stream, or a compressed body is corrupt", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request with this Idempotency-Key is still in flight", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the upload limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON, NDJSON, CSV or an Arrow IPC stream, or a Content-Encoding other than gzip or zstd", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid batch, names, or Idempotency-Key reused with another body; more classes than --max-classes; a requested estimator whose estimated memory on this batch is over the per-job budget (the error names the estimator, its need and the limit)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The queue is over its ceiling (--max-queued-jobs, --max-queue-age-seconds) or the database is unreachable; nothing was stored; see Retry-After", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn upload(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response> {
    let model = path_name("model", &model)?;
    let version = path_name("version", &version)?;
    // Shed load before reading the body: a full queue refuses at once.
    super::overload::check_queue(&state).await?;
    let format = ingest::format_of(&headers)?;
    let coding = ingest::coding_of(&headers)?;
    let options = query.options(format)?;
    let idempotency_key = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .ok()
                .filter(|s| !s.is_empty() && s.len() <= 255)
                .map(str::to_string)
                .ok_or_else(|| {
                    Error::BadRequest(
                        "Idempotency-Key must be 1–255 visible ASCII characters".into(),
                    )
                })
        })
        .transpose()?;
    let content_type = format.media_type();
    let upload = ingest::Upload {
        format,
        coding,
        limit: state.limits.max_upload_bytes as u64,
        declared_length: headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok()),
        options,
        path: format!("/v1/models/{model}/versions/{version}/batches"),
    };
    // Read ahead asynchronously: a small body (most uploads) is decoded from memory; a large one
    // streams into its decoder on one of a few slots, so stalled clients hold no blocking thread
    // and cannot crowd out small uploads.
    let source = ingest::BodySource::read(body, upload.declared_length, upload.limit).await?;
    let slot = if source.is_stream() {
        Some(state.caches.stream_slot().await?)
    } else {
        None
    };
    let reader = source.into_reader();
    let cost_limits = state.limits.cost;
    let default_coverage = state.limits.label_coverage;
    let started = std::time::Instant::now();

    // Read, decompress, parse, validate and encode off the async threads; the text is dropped as
    // soon as it is parsed (NDJSON and CSV are never held whole).
    let prepared = tokio::task::spawn_blocking(move || -> Result<Prepared> {
        let _slot = slot;
        let decoded = upload.decode(reader)?;
        let located = |errors: Vec<FieldError>| match &decoded.columns {
            Some(map) => Error::Validation(map.locate(errors)),
            None => Error::Validation(errors),
        };
        let valid = decoded.request.validate().map_err(located)?;
        let (batch, metadata) = (valid.batch, valid.metadata);
        let (ids, label_coverage) = (valid.ids, valid.label_coverage);
        if let Some(e) = estimators::check_classes(&batch, &cost_limits) {
            return Err(located(vec![e]));
        }
        let resolved = estimators::resolve(
            &batch,
            valid.estimators.as_deref(),
            "estimators",
            &cost_limits,
        )
        .map_err(located)?;
        // The stored form is the batch's own arrays behind a header: hashed here, written in
        // the transaction below, never copied whole.
        let mut hasher = Sha256::new();
        for part in batch.encoded_parts() {
            hasher.update(&part);
        }
        let digest = hex::encode(hasher.finalize());
        // Labels to come: what needs no labels runs now, the rest waits for them.
        let (specs, pending) = if batch.labels_later {
            let (now, later) = estimators::split_for_labels_later(&batch, resolved.specs);
            (now, Some(later))
        } else {
            (resolved.specs, None)
        };
        let labels_digest = if batch.labels_later {
            None
        } else {
            batch.labels_digest()
        };
        Ok(Prepared {
            request_hash: decoded.request_hash,
            digest,
            labels_digest,
            metadata,
            specs,
            pending,
            label_coverage: batch
                .labels_later
                .then(|| label_coverage.unwrap_or(default_coverage)),
            ids,
            skipped: resolved.skipped,
            batch,
        })
    })
    .await
    .map_err(|e| Error::Internal(e.into()))??;

    let prepared_at = std::time::Instant::now();
    let mut tx = state.pool.begin().await?;
    if let Some(key) = &idempotency_key {
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 7))")
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
        if !locked {
            return Err(Error::Conflict(
                "a request with this Idempotency-Key is still being processed; retry later".into(),
            ));
        }
        if let Some((hash, batch_id)) = store::idempotency_lookup(&mut tx, key).await? {
            tx.rollback().await?;
            if hash != prepared.request_hash {
                return Err(Error::Unprocessable(
                    "this Idempotency-Key was used with a different request body or path".into(),
                ));
            }
            return accepted(&state, batch_id, StatusCode::ACCEPTED).await;
        }
    }
    let (model_id, version_id) =
        store::ensure_version(&mut tx, model.as_str(), version.as_str()).await?;
    let batch_id = Uuid::now_v7();
    let head = &prepared.batch;
    let parts = prepared.batch.encoded_parts();
    store::insert_batch(
        &mut tx,
        &store::NewBatch {
            id: batch_id,
            model_id,
            version_id,
            task: head.task,
            n: head.n,
            classes: &head.classes,
            body: &parts,
            digest: &prepared.digest,
            labels_digest: prepared.labels_digest.as_deref(),
            content_type,
            metadata: &prepared.metadata,
            estimators_skipped: &prepared.skipped,
            has_ids: prepared.ids.is_some(),
            labels_later: head.labels_later,
            label_coverage_required: prepared.label_coverage,
            pending_jobs: prepared
                .pending
                .as_ref()
                .filter(|p| !p.is_empty())
                .map(|p| serde_json::json!(p)),
        },
    )
    .await?;
    if let Some(ids) = &prepared.ids {
        crate::store::labels::insert_ids(&mut tx, model_id, batch_id, ids, head).await?;
    }
    let jobs = queue::enqueue(&mut tx, batch_id, &prepared.specs, request_id(&headers)).await?;
    if let Some(key) = &idempotency_key {
        store::idempotency_store(&mut tx, key, &prepared.request_hash, batch_id).await?;
    }
    tx.commit().await?;
    drop(prepared);
    state.caches.queue.enqueued(jobs.len() as u64);
    state.wake.notify_waiters();
    tracing::info!(
        %batch_id,
        model = %model,
        version = %version,
        read_ms = (prepared_at - started).as_millis() as u64,
        store_ms = prepared_at.elapsed().as_millis() as u64,
        "batch accepted"
    );
    accepted(&state, batch_id, StatusCode::ACCEPTED).await
}

/// An Arrow IPC stream (binary), as the upload's request body.
pub struct ArrowStream;

impl utoipa::PartialSchema for ArrowStream {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .description(Some(
                "An Arrow IPC stream: a schema message, then record batches",
            ))
            .into()
    }
}

impl ToSchema for ArrowStream {}

struct Prepared {
    request_hash: String,
    digest: String,
    labels_digest: Option<String>,
    metadata: serde_json::Value,
    specs: Vec<estimators::JobSpec>,
    /// Labels to come: the jobs that wait for them.
    pending: Option<Vec<estimators::JobSpec>>,
    /// Labels to come: the coverage that releases `pending`.
    label_coverage: Option<f64>,
    ids: Option<Vec<String>>,
    skipped: Vec<estimators::Skipped>,
    /// The validated batch, stored as [`Batch::encoded_parts`].
    batch: Batch,
}

/// A batch whose data retention dropped: 410, not an internal error.
fn purged_is_gone(e: anyhow::Error) -> Error {
    match e.downcast_ref::<store::DataPurged>() {
        Some(p) => Error::Gone(p.to_string()),
        None => Error::Internal(e),
    }
}

fn not_found(id: Uuid) -> Error {
    Error::NotFound(format!("batch {id} not found"))
}

/// A batch: metadata, digest, N, task, its jobs and their results.
#[utoipa::path(
    get,
    path = "/v1/batches/{id}",
    tag = "batches",
    params(("id" = Uuid, Path, description = "Batch id"), UnitQuery),
    responses(
        (status = 200, body = BatchDetail),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_batch(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(q): Query<UnitQuery>,
) -> Result<Json<BatchDetail>> {
    let batch = store::get_batch(&state.pool, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let jobs = store::batch_jobs(&state.pool, id).await?;
    let results = store::batch_results(&state.pool, id).await?;
    let unit = q.unit.unwrap_or_default();
    Ok(Json(BatchDetail {
        batch: BatchView::from(batch),
        jobs: jobs.into_iter().map(Job::from).collect(),
        results: results
            .into_iter()
            .map(|r| EstimateResult::new(r, unit))
            .collect(),
    }))
}

/// The stored batch in the upload's JSON form: what went in comes out (labels as names or
/// indices as they were sent, every number exactly, metadata included).
#[utoipa::path(
    get,
    path = "/v1/batches/{id}/data",
    tag = "batches",
    params(("id" = Uuid, Path, description = "Batch id")),
    responses(
        (status = 200, body = Object, description = "The batch in the columnar JSON form of the upload"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The raw data was purged by the model's retention policy (results are kept)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_batch_data(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Response> {
    let row = store::get_batch(&state.pool, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if let Some(at) = row.data_purged_at {
        return Err(Error::Gone(store::DataPurged(at).to_string()));
    }
    let batch = store::load_batch_data(&state.pool, id)
        .await
        .map_err(purged_is_gone)?;
    let body =
        tokio::task::spawn_blocking(move || serde_json::to_vec(&batch.to_json(&row.metadata)))
            .await
            .map_err(|e| Error::Internal(e.into()))?
            .map_err(|e| Error::Internal(e.into()))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Delete a batch with its data, jobs and results. A batch younger than its model's minimum
/// holding period (`min_days` of the retention policy) is kept: 409.
#[utoipa::path(
    delete,
    path = "/v1/batches/{id}",
    tag = "batches",
    params(("id" = Uuid, Path, description = "Batch id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "Held by the model's minimum holding period", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_batch(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    if let Some(until) = store::held_until(&state.pool, id).await? {
        return Err(Error::Conflict(format!(
            "batch {id} is held by its model's minimum holding period (min_days) until {}",
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )));
    }
    // Lock order: the batch's jobs before the batch. A worker recording an outcome holds its
    // job's row and then takes the batch's (the result's foreign key); deleting the batch first
    // would hold the batch and wait for the job, a deadlock PostgreSQL breaks by aborting one side.
    let mut tx = state.pool.begin().await?;
    sqlx::query("SELECT 1 FROM jobs WHERE batch_id = $1 ORDER BY id FOR UPDATE")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    // The batch's sample ids go with it (they carry no foreign key: see migration 0045).
    sqlx::query("DELETE FROM sample_ids WHERE batch_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let n = sqlx::query("DELETE FROM batches WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    if n == 0 {
        return Err(not_found(id));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Estimators to run on a stored batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"estimators": [{"id": "shannon_mi", "params": {"bootstrap": 500, "seed": 3}}]}))]
pub struct AddJobs {
    pub estimators: Vec<EstimatorRef>,
}

/// Run more estimators on a stored batch (backfill). A job that already exists for the same
/// estimator version and parameters is returned, not duplicated.
#[utoipa::path(
    post,
    path = "/v1/batches/{id}/jobs",
    tag = "batches",
    params(("id" = Uuid, Path, description = "Batch id")),
    request_body = AddJobs,
    responses(
        (status = 202, body = Accepted, description = "The batch and the requested jobs (new or existing)"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The raw data was purged by the model's retention policy", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn add_jobs(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    require_json(&headers)?;
    let body = body.map_err(body_rejection)?;
    let req: AddJobs = parse_json(&body)?;
    super::overload::check_queue(&state).await?;
    let row = store::get_batch(&state.pool, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let batch = store::load_batch_data(&state.pool, id)
        .await
        .map_err(purged_is_gone)?;
    let specs = estimators::resolve(
        &batch,
        Some(&req.estimators),
        "estimators",
        &state.limits.cost,
    )
    .map_err(Error::Validation)?
    .specs;
    let mut tx = state.pool.begin().await?;
    let jobs = queue::enqueue(&mut tx, id, &specs, request_id(&headers)).await?;
    tx.commit().await?;
    state.caches.queue.enqueued(jobs.len() as u64);
    state.wake.notify_waiters();
    Ok((
        StatusCode::ACCEPTED,
        [location(id)],
        Json(Accepted {
            batch: row.into(),
            jobs: jobs.into_iter().map(Job::from).collect(),
        }),
    )
        .into_response())
}

use crate::error::Problem;
