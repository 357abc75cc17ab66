//! The estimator catalog.

use axum::Json;

use crate::domain::estimators::{catalog, EstimatorInfo};

/// Every estimator: id, version, the tasks it applies to, its parameters with defaults and
/// ranges, the unit and meaning of its value, and whether it pools exactly across batches.
#[utoipa::path(
    get,
    path = "/v1/estimators",
    tag = "estimators",
    responses((status = 200, body = Vec<EstimatorInfo>))
)]
pub async fn list_estimators() -> Json<Vec<EstimatorInfo>> {
    Json(catalog())
}
