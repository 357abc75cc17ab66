//! Domain types that can only be built valid: names, batches, estimator requests, metric
//! addresses, units.

pub mod arrow;
pub mod batch;
pub mod columns;
pub mod csv;
pub mod errors;
pub mod estimators;
pub mod labels;
pub mod metric;
pub mod names;
pub mod rows;
pub mod segments;
pub mod unit;
