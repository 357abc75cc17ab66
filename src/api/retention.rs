//! Retention per model: how long raw batch data and results are kept, and a minimum holding
//! period. The purges run in the background (the workers), in bounded chunks.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{parse_json, path_name, require_json};
use super::state::AppState;
use crate::error::{Error, FieldError, Problem, Result};
use crate::store::{self, RetentionRow};

/// The longest period that can be set, in days (100 years).
const MAX_DAYS: u32 = 36_500;

/// A model's retention policy. Every field is optional; a missing one means "keep forever" (or
/// no minimum holding period).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"data_days": 30, "results_days": 365, "min_days": 7}))]
pub struct Retention {
    /// Drop a batch's raw data (what `GET /v1/batches/{id}/data` returns) this many days after
    /// upload. Its results and their sufficient statistics are kept, so pooled values and
    /// history stay exact; the data then answers 410. Batches with unfinished jobs wait, and so do
    /// batches whose jobs wait for labels (until they are released: `labels_later.waiting`).
    #[schema(maximum = 36500)]
    pub data_days: Option<u32>,
    /// Drop results this many days after they were computed (history loses them).
    #[schema(maximum = 36500)]
    pub results_days: Option<u32>,
    /// Minimum holding period: no purge and no `DELETE /v1/batches/{id}` removes anything
    /// younger than this. Where `data_days` or `results_days` is shorter, the holding period
    /// wins (see `effective_data_days` and `effective_results_days` in the answer).
    #[schema(maximum = 36500)]
    pub min_days: Option<u32>,
}

/// The stored policy (the fields of [`Retention`], spelled out: a flattened request schema
/// would forbid `model` and `updated_at` in the response's schema).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"model": "fraud", "data_days": 30, "results_days": 365, "min_days": 7,
    "effective_data_days": 30, "effective_results_days": 365, "updated_at": "2026-12-01T12:00:00Z"}))]
pub struct RetentionPolicy {
    pub model: String,
    /// Days after upload before a batch's raw data is dropped (`null`: kept).
    pub data_days: Option<u32>,
    /// Days after computation before results are dropped (`null`: kept).
    pub results_days: Option<u32>,
    /// Minimum holding period in days (`null`: none).
    pub min_days: Option<u32>,
    /// When raw data is dropped, in days after upload: the longer of `data_days` and `min_days`
    /// (`null`: kept).
    pub effective_data_days: Option<u32>,
    /// When results are dropped, in days after computation: the longer of `results_days` and
    /// `min_days` (`null`: kept).
    pub effective_results_days: Option<u32>,
    /// When the policy was last set (`null`: never; everything is kept).
    pub updated_at: Option<DateTime<Utc>>,
}

impl Retention {
    fn validate(&self) -> Result<RetentionRow> {
        let mut errors = Vec::new();
        for (name, v) in [
            ("data_days", self.data_days),
            ("results_days", self.results_days),
            ("min_days", self.min_days),
        ] {
            if v.is_some_and(|d| d > MAX_DAYS) {
                errors.push(FieldError::at(
                    format!("/{name}"),
                    format!("must be at most {MAX_DAYS} days"),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        let days = |v: Option<u32>| v.map(|d| d as i32);
        Ok(RetentionRow {
            data_days: days(self.data_days),
            results_days: days(self.results_days),
            min_days: days(self.min_days),
        })
    }
}

fn policy(model: String, row: Option<(RetentionRow, DateTime<Utc>)>) -> RetentionPolicy {
    let days = |v: Option<i32>| v.map(|d| d.max(0) as u32);
    match row {
        Some((r, at)) => {
            // The purge's own rule (store::purge_retention): the longer period holds.
            let effective = |v: Option<i32>| days(v.map(|d| d.max(r.min_days.unwrap_or(0))));
            RetentionPolicy {
                model,
                data_days: days(r.data_days),
                results_days: days(r.results_days),
                min_days: days(r.min_days),
                effective_data_days: effective(r.data_days),
                effective_results_days: effective(r.results_days),
                updated_at: Some(at),
            }
        }
        None => RetentionPolicy {
            model,
            data_days: None,
            results_days: None,
            min_days: None,
            effective_data_days: None,
            effective_results_days: None,
            updated_at: None,
        },
    }
}

async fn model_id(state: &AppState, model: &str) -> Result<(String, uuid::Uuid)> {
    let name = path_name("model", model)?;
    let id = store::model_id(&state.pool, name.as_str())
        .await?
        .ok_or_else(|| Error::NotFound(format!("model {name} not found")))?;
    Ok((name.as_str().to_string(), id))
}

/// Set a model's retention policy (admin). Purges run in the background, every
/// `--retention-interval-seconds`, a bounded number of rows per statement.
#[utoipa::path(
    put,
    path = "/v1/models/{model}/retention",
    tag = "models",
    params(("model" = String, Path, description = "Model name")),
    request_body = Retention,
    responses(
        (status = 200, body = RetentionPolicy),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A period over 36500 days, or shorter than min_days", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_retention(
    State(state): State<AppState>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<RetentionPolicy>> {
    require_json(&headers)?;
    let (name, id) = model_id(&state, &model).await?;
    let r: Retention = parse_json(&body)?;
    let row = r.validate()?;
    let at = store::put_retention(&state.pool, id, &row).await?;
    tracing::info!(model = %name, ?r, "retention policy set");
    Ok(Json(policy(name, Some((row, at)))))
}

/// A model's retention policy.
#[utoipa::path(
    get,
    path = "/v1/models/{model}/retention",
    tag = "models",
    params(("model" = String, Path, description = "Model name")),
    responses(
        (status = 200, body = RetentionPolicy),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_retention(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<RetentionPolicy>> {
    let (name, id) = model_id(&state, &model).await?;
    let row = store::get_retention(&state.pool, id).await?;
    Ok(Json(policy(name, row)))
}
