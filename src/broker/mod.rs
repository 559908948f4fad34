//! The Kafka-compatible broker.
pub mod log;
pub mod producer_state;
