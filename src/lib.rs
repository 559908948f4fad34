//! rill: a log aggregation and monitoring appliance built on the Kafka wire protocol.
pub use rill_agent::record;
pub mod broker;
pub mod client;
pub mod config;
pub mod dash;
pub mod demo;
pub mod lag;
pub mod search;
