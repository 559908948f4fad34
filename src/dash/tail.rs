//! The Tail view's state: a ring of the last N records, the index of those the filter shows,
//! and the scroll position. Every record gets a sequence number when it arrives; the filtered
//! index and the selection refer to records by it, so evicting the oldest record never moves
//! what the user is looking at.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use super::entry::LogEntry;
use super::filter::TailFilter;

/// At most this many hosts are offered by the host picker.
const MAX_HOSTS: usize = 10_000;

#[derive(Debug)]
pub struct Tail {
    capacity: usize,
    entries: VecDeque<LogEntry>,
    /// Sequence number of `entries[0]`.
    first_seq: u64,
    /// Sequence numbers of the records the filter accepts, ascending.
    visible: VecDeque<u64>,
    pub filter: TailFilter,
    /// Follow the newest record (the bottom row is the newest).
    pub follow: bool,
    /// Frozen: arrivals wait in `pending` until resumed.
    pub paused: bool,
    pending: VecDeque<LogEntry>,
    /// Arrivals while paused that no longer fit in `pending` (it holds at most N too).
    pending_dropped: u64,
    /// The selected record and the first row on screen, when not following.
    selected: Option<u64>,
    top: Option<u64>,
    /// Every host seen, for the host picker.
    pub hosts: BTreeSet<Arc<str>>,
}

impl Tail {
    pub fn new(capacity: usize) -> Tail {
        Tail {
            capacity: capacity.max(1),
            entries: VecDeque::new(),
            first_seq: 0,
            visible: VecDeque::new(),
            filter: TailFilter::default(),
            follow: true,
            paused: false,
            pending: VecDeque::new(),
            pending_dropped: 0,
            selected: None,
            top: None,
            hosts: BTreeSet::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records held (at most the capacity).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records the filter shows.
    pub fn visible_len(&self) -> usize {
        self.visible.len()
    }

    /// What arrived since the pause.
    pub fn arrived_while_paused(&self) -> u64 {
        self.pending.len() as u64 + self.pending_dropped
    }

    pub fn push_batch(&mut self, batch: Vec<LogEntry>) {
        for e in batch {
            if self.paused {
                if self.pending.len() == self.capacity {
                    self.pending.pop_front();
                    self.pending_dropped += 1;
                }
                self.pending.push_back(e);
            } else {
                self.push(e);
            }
        }
    }

    fn push(&mut self, e: LogEntry) {
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
            self.first_seq += 1;
            while self.visible.front().is_some_and(|&s| s < self.first_seq) {
                self.visible.pop_front();
            }
        }
        let seq = self.first_seq + self.entries.len() as u64;
        // Bounded like everything else: a producer inventing a host per record must not
        // grow the picker's list without limit.
        if self.hosts.len() < MAX_HOSTS && !e.host.is_empty() && !self.hosts.contains(&e.host) {
            self.hosts.insert(e.host.clone());
        }
        if self.filter.accepts(&e) {
            self.visible.push_back(seq);
        }
        self.entries.push_back(e);
    }

    pub fn toggle_pause(&mut self) {
        if self.paused {
            self.paused = false;
            let pending = std::mem::take(&mut self.pending);
            self.pending_dropped = 0;
            for e in pending {
                self.push(e);
            }
        } else {
            self.paused = true;
        }
    }

    /// Rebuilds the filtered index after the filter changed, keeping the selection on the
    /// same record or the next one shown.
    pub fn refilter(&mut self) {
        let keep = self.selected_seq();
        self.visible = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| self.filter.accepts(e))
            .map(|(i, _)| self.first_seq + i as u64)
            .collect();
        if let Some(seq) = keep {
            let i = self.index_at_or_after(seq);
            self.selected = self.visible.get(i).copied();
            self.top = None;
        }
    }

    pub fn get(&self, seq: u64) -> Option<&LogEntry> {
        let i = seq.checked_sub(self.first_seq)?;
        self.entries.get(usize::try_from(i).ok()?)
    }

    /// The record at row `i` of the filtered list.
    pub fn visible_entry(&self, i: usize) -> Option<&LogEntry> {
        self.visible.get(i).and_then(|&s| self.get(s))
    }

    fn index_at_or_after(&self, seq: u64) -> usize {
        match self.visible.binary_search(&seq) {
            Ok(i) | Err(i) => i.min(self.visible.len().saturating_sub(1)),
        }
    }

    fn selected_seq(&self) -> Option<u64> {
        if self.follow {
            self.visible.back().copied()
        } else {
            self.selected
        }
    }

    /// The selected row's index in the filtered list.
    pub fn selected_index(&self) -> Option<usize> {
        if self.visible.is_empty() {
            return None;
        }
        Some(match self.selected_seq() {
            Some(seq) => self.index_at_or_after(seq),
            None => self.visible.len() - 1,
        })
    }

    pub fn selected_entry(&self) -> Option<&LogEntry> {
        self.selected_index().and_then(|i| self.visible_entry(i))
    }

    /// The first row on screen for a view `height` rows high, and the selected row.
    pub fn window(&self, height: usize) -> (usize, Option<usize>) {
        let n = self.visible.len();
        let height = height.max(1);
        let Some(sel) = self.selected_index() else {
            return (0, None);
        };
        if self.follow {
            return (n.saturating_sub(height), Some(sel));
        }
        let mut top = self.top.map_or(0, |t| self.index_at_or_after(t));
        if sel < top {
            top = sel;
        } else if sel >= top + height {
            top = sel + 1 - height;
        }
        // Never leave blank rows below the end while there is more above.
        top = top.min(n.saturating_sub(height));
        (top, Some(sel))
    }

    /// Selects row `i` of the filtered list and keeps it on screen (`height` rows).
    pub fn select(&mut self, i: usize, height: usize) {
        let n = self.visible.len();
        if n == 0 {
            return;
        }
        let i = i.min(n - 1);
        let (top, _) = self.window(height);
        self.follow = false;
        self.selected = self.visible.get(i).copied();
        let top = if i < top {
            i
        } else if i >= top + height.max(1) {
            i + 1 - height.max(1)
        } else {
            top
        };
        self.top = self.visible.get(top).copied();
    }

    /// Moves the selection by `delta` rows; reaching the bottom going down follows again.
    pub fn move_by(&mut self, delta: isize, height: usize) {
        let n = self.visible.len();
        let Some(sel) = self.selected_index() else {
            return;
        };
        let target = sel.saturating_add_signed(delta).min(n.saturating_sub(1));
        if delta > 0 && target + 1 >= n {
            self.follow_end();
        } else {
            self.select(target, height);
        }
    }

    pub fn home(&mut self, height: usize) {
        self.select(0, height);
    }

    pub fn follow_end(&mut self) {
        self.follow = true;
        self.selected = None;
        self.top = None;
    }

    /// Selects the next (or previous) row after the selection whose record satisfies `pred`;
    /// false when there is none.
    pub fn jump(&mut self, forward: bool, height: usize, pred: impl Fn(&LogEntry) -> bool) -> bool {
        let Some(sel) = self.selected_index() else {
            return false;
        };
        let found = if forward {
            (sel + 1..self.visible.len()).find(|&i| self.visible_entry(i).is_some_and(&pred))
        } else {
            (0..sel)
                .rev()
                .find(|&i| self.visible_entry(i).is_some_and(&pred))
        };
        match found {
            Some(i) => {
                self.select(i, height);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dash::entry::Decoder;
    use crate::dash::filter::Pattern;

    fn entries(n: u64, from: u64) -> Vec<LogEntry> {
        let mut d = Decoder::default();
        (from..from + n)
            .map(|i| {
                let json = format!(r#"{{"ts":"t","host":"h","source":"s","line":"line {i}"}}"#);
                d.decode(0, i as i64, i as i64, json.as_bytes(), vec![])
            })
            .collect()
    }

    #[test]
    fn ring_is_bounded_and_index_follows_eviction() {
        let mut t = Tail::new(10);
        t.filter
            .patterns
            .push(Pattern::new("[02468]$", true).unwrap());
        t.push_batch(entries(25, 0));
        assert_eq!(t.len(), 10);
        assert_eq!(t.visible_len(), 5);
        assert_eq!(&*t.visible_entry(0).unwrap().line, "line 16");
        assert_eq!(&*t.selected_entry().unwrap().line, "line 24");
    }

    #[test]
    fn scrolling_keeps_the_record_under_eviction() {
        let mut t = Tail::new(100);
        t.push_batch(entries(50, 0));
        t.move_by(-10, 5);
        assert!(!t.follow);
        assert_eq!(&*t.selected_entry().unwrap().line, "line 39");
        t.push_batch(entries(60, 50));
        assert_eq!(&*t.selected_entry().unwrap().line, "line 39");
        t.move_by(1000, 5);
        assert!(t.follow);
    }

    #[test]
    fn pause_freezes_and_counts() {
        let mut t = Tail::new(5);
        t.push_batch(entries(3, 0));
        t.toggle_pause();
        t.push_batch(entries(8, 3));
        assert_eq!(t.len(), 3);
        assert_eq!(t.arrived_while_paused(), 8);
        t.toggle_pause();
        assert_eq!(t.arrived_while_paused(), 0);
        assert_eq!(&*t.selected_entry().unwrap().line, "line 10");
    }
}
