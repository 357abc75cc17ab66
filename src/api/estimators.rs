//! The estimator catalog.

use axum::extract::State;
use axum::Json;

use super::state::AppState;
use crate::domain::estimators::{catalog_with_limits, EstimatorInfo};

/// Every estimator: id, version, the tasks it applies to, its parameters with defaults and
/// ranges, the unit and meaning of its value, whether it pools exactly across batches, and
/// `limits`: the per-job memory budget and class limit this service holds batches to, how the
/// estimator's need is estimated from a batch's shape, and the largest batches that fit.
#[utoipa::path(
    get,
    path = "/v1/estimators",
    tag = "estimators",
    responses((status = 200, body = Vec<EstimatorInfo>))
)]
pub async fn list_estimators(State(state): State<AppState>) -> Json<Vec<EstimatorInfo>> {
    Json(catalog_with_limits(&state.limits.cost))
}
