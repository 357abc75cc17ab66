//! Domain types that can only be built valid: names, batches, estimator requests.

pub mod arrow;
pub mod batch;
pub mod columns;
pub mod estimators;
pub mod labels;
pub mod names;
pub mod rows;
pub mod segments;
