//! The usage record every call produces, success or not: what billing and
//! metrics are built from.

use serde::{Deserialize, Serialize};

/// What one call consumed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// `ok`, or the error code the call ended with.
    pub outcome: String,
    /// Wall-clock time from store creation to the end of the call, in µs.
    pub wall_us: u64,
    /// CPU time spent running the guest (and host calls on its thread), in µs.
    pub cpu_us: u64,
    /// Fuel consumed, when fuel metering is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Input body size.
    pub bytes_in: u64,
    /// Output body size (0 on failure).
    pub bytes_out: u64,
    /// Largest linear memory the guest reached.
    pub peak_memory_bytes: u64,
}
