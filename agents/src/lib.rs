//! rill-agent: tails log files and samples host metrics, publishing them to Kafka topics.
//!
//! The record contract (what goes on the `logs` and `metrics` topics) lives here, in
//! [`record`], because the agent is its producer; `rill` re-exports it for its readers.

pub mod record;
