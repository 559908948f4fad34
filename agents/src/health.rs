//! The agent's own counters, shared by the tailer and the publisher and reported with
//! every metrics sample.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct AgentStats {
    pub lines_read: AtomicU64,
    pub bytes_read: AtomicU64,
    pub files_watched: AtomicU64,
    /// Records handed to the producer and not yet acknowledged.
    pub in_flight: AtomicU64,
    pub errors: AtomicU64,
    /// Bytes in the on-disk spool (records waiting for the broker).
    pub spool_bytes: AtomicU64,
}

impl AgentStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
