//! The unit information values are reported in.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The unit of information values in a response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    #[default]
    Bits,
    Nats,
}

impl Unit {
    /// Multiply a value in nats by this to express it in the unit.
    pub fn factor(self) -> f64 {
        match self {
            Unit::Bits => 1.0 / std::f64::consts::LN_2,
            Unit::Nats => 1.0,
        }
    }
}
