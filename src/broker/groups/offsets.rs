//! Committed offsets: an append-only log with an in-memory index, Kafka's own design for
//! `__consumer_offsets` in small.
//!
//! Every commit is one `write(2)` of CRC-framed entries before it is acknowledged, so it survives
//! SIGKILL (the page cache has it); fsync follows the broker's flush policy like the partition
//! logs. sled was the first home for these, but its only durability primitive is an fsync, which
//! held commits to ~800/s on this machine; the log sustains tens of thousands per second.
//!
//! At start-up the log is replayed (a torn tail is cut at the first bad CRC) and rewritten
//! compacted, one entry per live key, through a temp file and an atomic rename.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum OffsetStoreError {
    #[error("offset log {path}: cannot {op}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    #[serde(default)]
    pub metadata: String,
    /// When it was committed (ms since the epoch): drives offset retention.
    pub commit_ms: i64,
}

/// One log entry: a commit, or (with `committed: None`) a deletion.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    group: String,
    topic: String,
    partition: i32,
    committed: Option<CommittedOffset>,
}

type Key = (String, String, i32);

struct Inner {
    file: File,
    /// Bytes in the file: where a failed append is cut back to.
    len: u64,
    offsets: HashMap<Key, CommittedOffset>,
    dirty: bool,
    /// Entries in the file; compaction happens when this far exceeds the live keys.
    entries: usize,
    /// How many stale entries may pile up before the log is compacted.
    compact_slack: usize,
}

/// Stale entries tolerated before compaction (on top of 4x the live keys).
const COMPACT_SLACK: usize = 100_000;

pub struct OffsetStore {
    path: PathBuf,
    inner: Mutex<Inner>,
}

/// Frame: length (u32 BE) and CRC-32C (u32 BE) of the JSON payload, then the payload.
fn frame(entry: &Entry, out: &mut Vec<u8>) {
    let payload = serde_json::to_vec(entry).unwrap_or_default();
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
}

/// Replays frames until the end or the first damaged one; returns the entries and the length
/// of the intact prefix.
fn replay(bytes: &[u8]) -> (Vec<Entry>, usize) {
    let mut entries = Vec::new();
    let mut pos = 0;
    while let Some(header) = bytes.get(pos..pos + 8) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let Some(payload) = bytes.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32c::crc32c(payload) != crc {
            break;
        }
        match serde_json::from_slice(payload) {
            Ok(entry) => entries.push(entry),
            Err(_) => break,
        }
        pos += 8 + len;
    }
    (entries, pos)
}

impl OffsetStore {
    pub fn open(dir: &Path) -> Result<Self, OffsetStoreError> {
        let io = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| OffsetStoreError::Io { op, path, source }
        };
        std::fs::create_dir_all(dir).map_err(io("create directory", dir))?;
        let path = dir.join("offsets.log");
        let mut bytes = Vec::new();
        if path.exists() {
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(io("read", &path))?;
        }
        let (entries, intact) = replay(&bytes);
        if intact < bytes.len() {
            tracing::warn!(path = %path.display(), "offset log: dropped a torn tail of {} bytes", bytes.len() - intact);
        }
        let mut offsets = HashMap::new();
        for entry in entries {
            let key = (entry.group, entry.topic, entry.partition);
            match entry.committed {
                Some(committed) => offsets.insert(key, committed),
                None => offsets.remove(&key),
            };
        }
        let (file, len) = Self::rewrite(&path, &offsets)?;
        Ok(OffsetStore {
            path,
            inner: Mutex::new(Inner {
                file,
                len,
                entries: offsets.len(),
                offsets,
                dirty: false,
                compact_slack: COMPACT_SLACK,
            }),
        })
    }

    /// Writes the live offsets to a fresh file, fsyncs it and renames it over the log; returns
    /// the file opened for appending and its length.
    fn rewrite(
        path: &Path,
        offsets: &HashMap<Key, CommittedOffset>,
    ) -> Result<(File, u64), OffsetStoreError> {
        let io = |op| {
            let path = path.to_path_buf();
            move |source| OffsetStoreError::Io { op, path, source }
        };
        let tmp = path.with_extension("log.compacting");
        let mut out = BufWriter::new(File::create(&tmp).map_err(io("create compacted log"))?);
        let mut buf = Vec::new();
        let mut len = 0u64;
        for ((group, topic, partition), committed) in offsets {
            buf.clear();
            let entry = Entry {
                group: group.clone(),
                topic: topic.clone(),
                partition: *partition,
                committed: Some(committed.clone()),
            };
            frame(&entry, &mut buf);
            out.write_all(&buf).map_err(io("write compacted log"))?;
            len += buf.len() as u64;
        }
        let file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .map_err(io("write compacted log"))?;
        file.sync_all().map_err(io("sync compacted log"))?;
        std::fs::rename(&tmp, path).map_err(io("replace the log"))?;
        if let Some(parent) = path.parent() {
            if let Ok(dir) = File::open(parent) {
                let _ = dir.sync_all();
            }
        }
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io("open"))?;
        Ok((file, len))
    }

    /// Writes entries to the log, then applies them to the index, then compacts if due, in
    /// that order: compaction rewrites the index, so it must already hold these entries.
    fn record(&self, inner: &mut Inner, entries: Vec<Entry>) -> Result<(), OffsetStoreError> {
        let mut buf = Vec::new();
        for entry in &entries {
            frame(entry, &mut buf);
        }
        if let Err(source) = inner.file.write_all(&buf) {
            // Cut a partial write back so the log stays replayable (e.g. on a full disk).
            let _ = inner.file.set_len(inner.len);
            return Err(OffsetStoreError::Io {
                op: "append",
                path: self.path.clone(),
                source,
            });
        }
        inner.len += buf.len() as u64;
        inner.dirty = true;
        inner.entries += entries.len();
        for entry in entries {
            let key = (entry.group, entry.topic, entry.partition);
            match entry.committed {
                Some(committed) => inner.offsets.insert(key, committed),
                None => inner.offsets.remove(&key),
            };
        }
        if inner.entries > 4 * inner.offsets.len() + inner.compact_slack {
            let (file, len) = Self::rewrite(&self.path, &inner.offsets)?;
            inner.file = file;
            inner.len = len;
            inner.entries = inner.offsets.len();
            inner.dirty = false;
        }
        Ok(())
    }

    /// Stores a group's commits: written to the log before this returns.
    pub fn commit(
        &self,
        group: &str,
        commits: &[(String, i32, CommittedOffset)],
    ) -> Result<(), OffsetStoreError> {
        let entries: Vec<Entry> = commits
            .iter()
            .map(|(topic, partition, committed)| Entry {
                group: group.to_string(),
                topic: topic.clone(),
                partition: *partition,
                committed: Some(committed.clone()),
            })
            .collect();
        let mut inner = self.inner.lock();
        self.record(&mut inner, entries)
    }

    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<CommittedOffset> {
        self.inner
            .lock()
            .offsets
            .get(&(group.to_string(), topic.to_string(), partition))
            .cloned()
    }

    /// Every offset a group committed, sorted by topic and partition.
    pub fn for_group(&self, group: &str) -> Vec<(String, i32, CommittedOffset)> {
        let mut out: Vec<_> = self
            .inner
            .lock()
            .offsets
            .iter()
            .filter(|((g, _, _), _)| g == group)
            .map(|((_, t, p), c)| (t.clone(), *p, c.clone()))
            .collect();
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        out
    }

    /// Groups with at least one committed offset.
    pub fn groups(&self) -> BTreeSet<String> {
        self.inner
            .lock()
            .offsets
            .keys()
            .map(|(g, _, _)| g.clone())
            .collect()
    }

    pub fn delete_group(&self, group: &str) -> Result<usize, OffsetStoreError> {
        self.delete_where(|(g, _, _)| g == group)
    }

    /// Drops every group's offsets for a deleted topic.
    pub fn delete_topic(&self, topic: &str) -> Result<usize, OffsetStoreError> {
        self.delete_where(|(_, t, _)| t == topic)
    }

    fn delete_where(&self, doomed: impl Fn(&Key) -> bool) -> Result<usize, OffsetStoreError> {
        let mut inner = self.inner.lock();
        let keys: Vec<Key> = inner
            .offsets
            .keys()
            .filter(|k| doomed(k))
            .cloned()
            .collect();
        if keys.is_empty() {
            return Ok(0);
        }
        let entries: Vec<Entry> = keys
            .into_iter()
            .map(|(group, topic, partition)| Entry {
                group,
                topic,
                partition,
                committed: None,
            })
            .collect();
        let count = entries.len();
        self.record(&mut inner, entries)?;
        Ok(count)
    }

    /// fsync, if anything was appended since the last one (the flush policy calls this).
    pub fn flush(&self) -> Result<(), OffsetStoreError> {
        let io = |op| {
            let path = self.path.clone();
            move |source| OffsetStoreError::Io { op, path, source }
        };
        // fsync a second handle outside the lock: commits go on while the disk catches up.
        let (file, entries) = {
            let inner = self.inner.lock();
            if !inner.dirty {
                return Ok(());
            }
            let file = inner.file.try_clone().map_err(io("duplicate handle"))?;
            (file, inner.entries)
        };
        file.sync_data().map_err(io("sync"))?;
        let mut inner = self.inner.lock();
        // Entries appended during the fsync stay dirty for the next flush.
        if inner.entries == entries {
            inner.dirty = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(offset: i64) -> CommittedOffset {
        CommittedOffset {
            offset,
            metadata: "m".into(),
            commit_ms: 1,
        }
    }

    #[test]
    fn commits_and_deletes_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = OffsetStore::open(dir.path()).expect("open");
            store
                .commit(
                    "g",
                    &[
                        ("logs".into(), 0, committed(1)),
                        ("other".into(), 1, committed(2)),
                    ],
                )
                .expect("commit");
            store
                .commit("g", &[("logs".into(), 0, committed(42))])
                .expect("commit");
            store
                .commit("h", &[("logs".into(), 3, committed(7))])
                .expect("commit");
            assert_eq!(store.delete_topic("other").expect("delete"), 1);
            assert_eq!(store.delete_group("h").expect("delete"), 1);
            // No flush: what was written must survive a crash of the process.
        }
        let store = OffsetStore::open(dir.path()).expect("reopen");
        assert_eq!(store.get("g", "logs", 0), Some(committed(42)));
        assert_eq!(store.get("g", "other", 1), None);
        assert_eq!(
            store.groups().into_iter().collect::<Vec<_>>(),
            vec!["g".to_string()]
        );
        assert_eq!(store.for_group("g").len(), 1);
    }

    #[test]
    fn compaction_keeps_the_commit_and_the_deletion_that_trigger_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = OffsetStore::open(dir.path()).expect("open");
            store.inner.lock().compact_slack = 0;
            // Every append now compacts: the entries that triggered it must be in the result.
            store
                .commit("g", &[("t".into(), 0, committed(1))])
                .expect("commit");
            store
                .commit("g", &[("t".into(), 0, committed(2))])
                .expect("commit");
            store
                .commit("h", &[("t".into(), 1, committed(3))])
                .expect("commit");
            store.delete_group("h").expect("delete");
        }
        let store = OffsetStore::open(dir.path()).expect("reopen");
        assert_eq!(store.get("g", "t", 0), Some(committed(2)));
        assert_eq!(store.get("h", "t", 1), None);
    }

    #[test]
    fn a_torn_tail_is_dropped_and_the_rest_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = OffsetStore::open(dir.path()).expect("open");
            store
                .commit("g", &[("t".into(), 0, committed(5))])
                .expect("commit");
            store
                .commit("g", &[("t".into(), 0, committed(6))])
                .expect("commit");
        }
        let path = dir.path().join("offsets.log");
        let len = std::fs::metadata(&path).expect("meta").len();
        // Tear the last entry in half, then add junk.
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.set_len(len - 10).expect("truncate");
        drop(file);
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(b"\xff\xff\xff\xffjunk").expect("junk");
        drop(file);
        let store = OffsetStore::open(dir.path()).expect("reopen");
        assert_eq!(store.get("g", "t", 0), Some(committed(5)));
        store
            .commit("g", &[("t".into(), 0, committed(9))])
            .expect("appendable again");
        drop(store);
        let store = OffsetStore::open(dir.path()).expect("reopen");
        assert_eq!(store.get("g", "t", 0), Some(committed(9)));
    }
}
