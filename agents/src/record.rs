//! The record contract: what rill writes to the `logs` and `metrics` topics.

/// Default topic for log lines.
pub const LOGS_TOPIC: &str = "logs";
/// Default topic for host metric samples.
pub const METRICS_TOPIC: &str = "metrics";
