//! rill-agent: tails log files and samples host metrics, publishing them to Kafka topics.
//!
//! The record contract (what goes on the `logs` and `metrics` topics) lives here, in
//! [`record`], because the agent is its producer; `rill` re-exports it for its readers.
//!
//! The tailer is split the way Vector's file source is: [`paths`] (globs), [`fingerprint`]
//! (file identity), [`checkpoint`] (acknowledged positions), [`watcher`] (one file),
//! [`lines`] (splitting and multiline), [`tailer`] (the loop). [`publisher`] sends lines
//! and advances checkpoints on acknowledgement, through a [`producer`]: rill's own
//! ([`kafka`]) or librdkafka's; [`metrics`] samples the host; [`agent`] wires them
//! together.

pub mod ack_window;
pub mod agent;
pub mod checkpoint;
pub mod config;
pub mod fingerprint;
pub mod health;
pub mod kafka;
pub mod level;
pub mod lines;
pub mod metrics;
pub mod paths;
pub mod producer;
pub mod publisher;
pub mod record;
pub mod spool;
pub mod tailer;
pub mod watcher;
