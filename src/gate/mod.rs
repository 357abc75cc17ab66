//! The judge: deployment gates and the comparisons they rest on.
//!
//! - [`rules`]: rule semantics, pure (bounds, baselines, `use`, trust, the verdict).
//! - [`pool`]: observing a metric of a version from its stored results (latest or pooled).
//! - [`judge`]: a gate evaluation against the database (reads, paired differences, the decision),
//!   shared by the gate route, the monitors and the dashboard.
//! - [`compare`]: two versions side by side, and the ranking of segment values by their share of
//!   the change.

pub mod compare;
pub mod judge;
pub mod pool;
pub mod rules;

#[cfg(test)]
mod tests_rules;

pub use pool::{observe, Point, Source};
pub use rules::*;
