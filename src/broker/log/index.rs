//! The sparse offset index and time index of one segment, held in memory (they are small: one
//! entry per `index_interval_bytes` of log) and mirrored to `.index` / `.timeindex` files in
//! Kafka's layout. The files are only a cache: recovery rebuilds them from the `.log` whenever
//! they look wrong, so they are written without ceremony.

use std::fmt;

/// `.index` entry: relative offset u32 BE + file position u32 BE.
pub(crate) const OFFSET_ENTRY_SIZE: usize = 8;
/// `.timeindex` entry: timestamp i64 BE + relative offset u32 BE.
pub(crate) const TIME_ENTRY_SIZE: usize = 12;

/// Why an index file was not usable as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IndexProblem {
    Missing,
    BadSize(usize),
    NotMonotonic(usize),
    PastEnd(usize),
}

impl fmt::Display for IndexProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexProblem::Missing => write!(f, "missing"),
            IndexProblem::BadSize(n) => write!(f, "size {n} is not a whole number of entries"),
            IndexProblem::NotMonotonic(i) => write!(f, "entry {i} is not increasing"),
            IndexProblem::PastEnd(i) => write!(f, "entry {i} points past the end of the log"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    /// Batch base offset minus the segment's base offset.
    pub rel_offset: u32,
    /// Byte position of that batch in the `.log`.
    pub position: u32,
}

/// Offset → position: each entry names a batch start.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct OffsetIndex {
    entries: Vec<OffsetEntry>,
}

impl OffsetIndex {
    /// Position of the last indexed batch whose base offset is <= `rel_offset` (0 if none):
    /// a forward scan from there reaches the batch holding `rel_offset`.
    pub fn lookup(&self, rel_offset: u32) -> u32 {
        let n = self.entries.partition_point(|e| e.rel_offset <= rel_offset);
        n.checked_sub(1).map_or(0, |i| self.entries[i].position)
    }

    /// Position of the last indexed batch starting at or before byte `position`.
    pub fn last_position_at_or_before(&self, position: u64) -> Option<u64> {
        let n = self
            .entries
            .partition_point(|e| u64::from(e.position) <= position);
        n.checked_sub(1)
            .map(|i| u64::from(self.entries[i].position))
    }

    pub fn last(&self) -> Option<OffsetEntry> {
        self.entries.last().copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn push(&mut self, entry: OffsetEntry) {
        self.entries.push(entry);
    }

    /// Encoded entries from index `from` on, for appending to the file.
    pub fn encode_from(&self, from: usize) -> Vec<u8> {
        let tail = self.entries.get(from..).unwrap_or(&[]);
        let mut out = Vec::with_capacity(tail.len() * OFFSET_ENTRY_SIZE);
        for e in tail {
            out.extend_from_slice(&e.rel_offset.to_be_bytes());
            out.extend_from_slice(&e.position.to_be_bytes());
        }
        out
    }

    /// Parses a `.index` file, checking it is whole, strictly increasing in both offset and
    /// position, and within `log_size` bytes of log.
    pub fn decode(bytes: &[u8], log_size: u64) -> Result<Self, IndexProblem> {
        if !bytes.len().is_multiple_of(OFFSET_ENTRY_SIZE) {
            return Err(IndexProblem::BadSize(bytes.len()));
        }
        let mut entries: Vec<OffsetEntry> = Vec::with_capacity(bytes.len() / OFFSET_ENTRY_SIZE);
        for (i, chunk) in bytes.chunks_exact(OFFSET_ENTRY_SIZE).enumerate() {
            let e = OffsetEntry {
                rel_offset: u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                position: u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
            };
            if let Some(prev) = entries.last() {
                if e.rel_offset <= prev.rel_offset || e.position <= prev.position {
                    return Err(IndexProblem::NotMonotonic(i));
                }
            }
            if u64::from(e.position) >= log_size {
                return Err(IndexProblem::PastEnd(i));
            }
            entries.push(e);
        }
        Ok(OffsetIndex { entries })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    /// The segment's largest timestamp so far when the entry was written.
    pub timestamp: i64,
    /// Relative base offset of the batch that holds that timestamp.
    pub rel_offset: u32,
}

/// Timestamp → offset: entries only when the segment's max timestamp rose, so timestamps are
/// strictly increasing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TimeIndex {
    entries: Vec<TimeEntry>,
}

impl TimeIndex {
    /// Where a search for the first record with timestamp >= `target` may start: the batch of
    /// the last entry with timestamp < `target` (every record up to that batch is older than
    /// `target`), or None to start at the segment's beginning.
    pub fn start_for(&self, target: i64) -> Option<u32> {
        let n = self.entries.partition_point(|e| e.timestamp < target);
        n.checked_sub(1).map(|i| self.entries[i].rel_offset)
    }

    pub fn last(&self) -> Option<TimeEntry> {
        self.entries.last().copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds an entry if it raises the indexed maximum (the only kind of entry the index holds).
    pub fn maybe_push(&mut self, entry: TimeEntry) -> bool {
        if self.last().is_some_and(|l| entry.timestamp <= l.timestamp) {
            return false;
        }
        self.entries.push(entry);
        true
    }

    pub fn encode_from(&self, from: usize) -> Vec<u8> {
        let tail = self.entries.get(from..).unwrap_or(&[]);
        let mut out = Vec::with_capacity(tail.len() * TIME_ENTRY_SIZE);
        for e in tail {
            out.extend_from_slice(&e.timestamp.to_be_bytes());
            out.extend_from_slice(&e.rel_offset.to_be_bytes());
        }
        out
    }

    /// Parses a `.timeindex` file, checking it is whole, strictly increasing in timestamp,
    /// non-decreasing in offset, and below `next_rel_offset` (the segment's end).
    pub fn decode(bytes: &[u8], next_rel_offset: u64) -> Result<Self, IndexProblem> {
        if !bytes.len().is_multiple_of(TIME_ENTRY_SIZE) {
            return Err(IndexProblem::BadSize(bytes.len()));
        }
        let mut entries: Vec<TimeEntry> = Vec::with_capacity(bytes.len() / TIME_ENTRY_SIZE);
        for (i, chunk) in bytes.chunks_exact(TIME_ENTRY_SIZE).enumerate() {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&chunk[..8]);
            let e = TimeEntry {
                timestamp: i64::from_be_bytes(ts),
                rel_offset: u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]),
            };
            if let Some(prev) = entries.last() {
                if e.timestamp <= prev.timestamp || e.rel_offset < prev.rel_offset {
                    return Err(IndexProblem::NotMonotonic(i));
                }
            }
            if u64::from(e.rel_offset) >= next_rel_offset {
                return Err(IndexProblem::PastEnd(i));
            }
            entries.push(e);
        }
        Ok(TimeIndex { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(pairs: &[(u32, u32)]) -> OffsetIndex {
        let mut idx = OffsetIndex::default();
        for &(rel_offset, position) in pairs {
            idx.push(OffsetEntry {
                rel_offset,
                position,
            });
        }
        idx
    }

    #[test]
    fn offset_lookup_finds_floor_entry() {
        let idx = offsets(&[(10, 4096), (20, 8192), (35, 12288)]);
        assert_eq!(idx.lookup(0), 0);
        assert_eq!(idx.lookup(9), 0);
        assert_eq!(idx.lookup(10), 4096);
        assert_eq!(idx.lookup(19), 4096);
        assert_eq!(idx.lookup(20), 8192);
        assert_eq!(idx.lookup(1000), 12288);
        assert_eq!(OffsetIndex::default().lookup(5), 0);
    }

    #[test]
    fn offset_index_round_trips_and_rejects_bad_files() {
        let idx = offsets(&[(10, 4096), (20, 8192)]);
        let bytes = idx.encode_from(0);
        assert_eq!(bytes.len(), 2 * OFFSET_ENTRY_SIZE);
        assert_eq!(OffsetIndex::decode(&bytes, 10_000).unwrap(), idx);
        assert_eq!(idx.encode_from(1), bytes[OFFSET_ENTRY_SIZE..]);
        assert_eq!(
            OffsetIndex::decode(&bytes[..5], 10_000),
            Err(IndexProblem::BadSize(5))
        );
        assert_eq!(
            OffsetIndex::decode(&bytes, 8192),
            Err(IndexProblem::PastEnd(1))
        );
        let swapped = offsets(&[(20, 8192), (10, 4096)]).encode_from(0);
        assert_eq!(
            OffsetIndex::decode(&swapped, 10_000),
            Err(IndexProblem::NotMonotonic(1))
        );
    }

    #[test]
    fn time_lookup_starts_before_target() {
        let mut idx = TimeIndex::default();
        for (timestamp, rel_offset) in [(100, 0), (200, 5), (300, 9)] {
            assert!(idx.maybe_push(TimeEntry {
                timestamp,
                rel_offset
            }));
        }
        assert!(!idx.maybe_push(TimeEntry {
            timestamp: 250,
            rel_offset: 12
        }));
        assert_eq!(idx.start_for(50), None);
        assert_eq!(idx.start_for(100), None);
        assert_eq!(idx.start_for(101), Some(0));
        assert_eq!(idx.start_for(200), Some(0));
        assert_eq!(idx.start_for(250), Some(5));
        assert_eq!(idx.start_for(10_000), Some(9));
        let bytes = idx.encode_from(0);
        assert_eq!(TimeIndex::decode(&bytes, 10).unwrap(), idx);
        assert_eq!(TimeIndex::decode(&bytes, 9), Err(IndexProblem::PastEnd(2)));
        assert_eq!(
            TimeIndex::decode(&bytes[..13], 10),
            Err(IndexProblem::BadSize(13))
        );
        assert_eq!(idx.len(), 3);
    }
}
