//! The window of lines sent but not yet safe, in send order, and the checkpoint frontier.
//!
//! Every line handed to the producer (or the spool) gets a sequence number. A line becomes
//! *safe* when the broker acknowledged it, or when it is fsynced in the spool. Checkpoints
//! may only move to the end of a line whose predecessors are all safe, so the window
//! advances from its head over safe lines and reports each file's new position to the
//! checkpoint store. Consecutive positions of one file are coalesced, so the store's lock is
//! taken once per run of lines, not per line.

use std::collections::VecDeque;

use crate::checkpoint::{CheckpointStore, WatchId};

/// Positions of one file reported to the store at once, at most.
const COALESCE: u32 = 1024;

#[derive(Debug)]
struct Entry {
    watch: WatchId,
    end_offset: u64,
    safe: bool,
}

#[derive(Debug, Default)]
pub struct AckWindow {
    /// Sequence number of `entries[0]`.
    base: u64,
    entries: VecDeque<Entry>,
    /// The newest safe position not yet given to the store.
    unreported: Option<(WatchId, u64)>,
    coalesced: u32,
}

impl AckWindow {
    /// Adds a line; returns its sequence number.
    pub fn push(&mut self, watch: WatchId, end_offset: u64) -> u64 {
        self.entries.push_back(Entry {
            watch,
            end_offset,
            safe: false,
        });
        self.base + self.entries.len() as u64 - 1
    }

    /// Lines sent and not yet safe, or safe behind one that is not.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Marks a line safe and advances the frontier as far as it goes.
    pub fn complete(&mut self, seq: u64, store: &CheckpointStore) {
        let Some(i) = seq.checked_sub(self.base) else {
            return;
        };
        if let Some(e) = self.entries.get_mut(i as usize) {
            e.safe = true;
        }
        while self.entries.front().is_some_and(|e| e.safe) {
            let Some(e) = self.entries.pop_front() else {
                break;
            };
            self.base += 1;
            match &mut self.unreported {
                Some((watch, offset)) if *watch == e.watch && self.coalesced < COALESCE => {
                    *offset = e.end_offset;
                    self.coalesced += 1;
                }
                _ => {
                    self.report(store);
                    self.unreported = Some((e.watch, e.end_offset));
                }
            }
        }
        if self.entries.is_empty() {
            self.report(store);
        }
    }

    /// Gives the newest safe position to the store.
    pub fn report(&mut self, store: &CheckpointStore) {
        if let Some((watch, offset)) = self.unreported.take() {
            store.ack(watch, offset);
        }
        self.coalesced = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::fingerprint::{FileId, Fingerprint};
    use std::path::PathBuf;

    fn store_with(watches: &[WatchId]) -> (tempfile::TempDir, CheckpointStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = CheckpointStore::open(dir.path()).expect("open");
        for &w in watches {
            store.register(
                w,
                Checkpoint {
                    path: PathBuf::from(format!("/f{w}")),
                    file: FileId { dev: 1, ino: w },
                    fingerprint: Fingerprint::of_bytes(b"x"),
                    offset: 0,
                },
            );
        }
        (dir, store)
    }

    #[test]
    fn the_frontier_waits_for_every_earlier_line() {
        let (_dir, store) = store_with(&[1, 2]);
        let mut w = AckWindow::default();
        let a = w.push(1, 10);
        let b = w.push(2, 5);
        let c = w.push(1, 20);
        w.complete(c, &store);
        w.complete(b, &store);
        // Line a is not safe: nothing may move, not even file 2 (behind a in send order).
        assert_eq!(store.acked(1), Some(0));
        assert_eq!(store.acked(2), Some(0));
        w.complete(a, &store);
        assert_eq!(store.acked(1), Some(20));
        assert_eq!(store.acked(2), Some(5));
        assert!(w.is_empty());
        // Unknown or repeated sequence numbers are ignored.
        w.complete(a, &store);
        w.complete(99, &store);
        assert!(w.is_empty());
    }

    #[test]
    fn long_runs_of_one_file_are_reported_while_the_window_is_busy() {
        let (_dir, store) = store_with(&[1]);
        let mut w = AckWindow::default();
        let seqs: Vec<u64> = (1..=3000).map(|i| w.push(1, i)).collect();
        let blocker = w.push(1, 9999);
        for s in seqs {
            w.complete(s, &store);
        }
        // Reported in runs of COALESCE lines even though the window never emptied.
        assert!(store.acked(1).is_some_and(|o| o >= u64::from(COALESCE)));
        w.complete(blocker, &store);
        assert_eq!(store.acked(1), Some(9999));
    }
}
