//! Checkpoints: for each tailed file, the position up to which the broker has acknowledged
//! its lines. Persisted to `data_dir/checkpoints.json` (write, fsync, rename), so a restart,
//! even after SIGKILL, resumes where the broker's copy ends: at-least-once, never a gap.
//!
//! The tailer registers each file it opens under a fresh [`WatchId`]; the publisher reports
//! acknowledged offsets against that id. A truncated or replaced file gets a new id, so late
//! acknowledgements for the old content can never move the new content's checkpoint.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::fingerprint::{FileId, Fingerprint};

/// Identifies one tailing of one file's content, for the life of the process.
pub type WatchId = u64;

const FILE_NAME: &str = "checkpoints.json";
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("checkpoint file {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// One file's persisted position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The path it was last seen at; informational (identity is `file` + `fingerprint`).
    pub path: PathBuf,
    pub file: FileId,
    pub fingerprint: Fingerprint,
    /// Byte offset up to which every line has been acknowledged by the broker.
    pub offset: u64,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    files: Vec<Checkpoint>,
}

/// The shared, thread-safe checkpoint table.
pub struct CheckpointStore {
    path: PathBuf,
    inner: Mutex<Inner>,
    /// Held through a whole save, so saves run one at a time and in order. Two at once (the
    /// tailer's periodic save and the agent's last one at shutdown) wrote the same temporary
    /// file: one rename failed (seen in the tailer's property test), and one could put the
    /// other's half-written table in place, or an older table after a newer one.
    saving: Mutex<()>,
}

#[derive(Default)]
struct Inner {
    live: HashMap<WatchId, Checkpoint>,
    /// Loaded from disk and not yet claimed by a file found at startup. Kept (and saved)
    /// until the first scan ends, so a crash during that scan loses no checkpoint.
    unclaimed: HashMap<FileId, Checkpoint>,
    dirty: bool,
}

impl CheckpointStore {
    /// Opens the store in `data_dir`, creating the directory. Returns whether checkpoints
    /// existed: without them this is the agent's first start, where `read_from` applies.
    pub fn open(data_dir: &Path) -> Result<(CheckpointStore, bool), CheckpointError> {
        let path = data_dir.join(FILE_NAME);
        let io_err = |source| CheckpointError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(data_dir).map_err(io_err)?;
        let (unclaimed, existed) = match fs::read(&path) {
            Ok(bytes) => {
                let disk: OnDisk =
                    serde_json::from_slice(&bytes).map_err(|source| CheckpointError::Corrupt {
                        path: path.clone(),
                        source,
                    })?;
                let map = disk.files.into_iter().map(|c| (c.file, c)).collect();
                (map, true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (HashMap::new(), false),
            Err(e) => return Err(io_err(e)),
        };
        let store = CheckpointStore {
            path,
            inner: Mutex::new(Inner {
                unclaimed,
                ..Inner::default()
            }),
            saving: Mutex::new(()),
        };
        Ok((store, existed))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind, still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the saved checkpoint of a file found at startup, if one was saved.
    pub fn claim(&self, file: FileId) -> Option<Checkpoint> {
        self.lock().unclaimed.remove(&file)
    }

    /// The saved checkpoints no file found at startup claimed (yet).
    pub fn unclaimed(&self) -> Vec<Checkpoint> {
        self.lock().unclaimed.values().cloned().collect()
    }

    /// Forgets saved checkpoints no file claimed: those files are gone.
    pub fn drop_unclaimed(&self) {
        let mut inner = self.lock();
        if !inner.unclaimed.is_empty() {
            inner.unclaimed.clear();
            inner.dirty = true;
        }
    }

    /// Starts tracking a file at a position already safe to resume from.
    pub fn register(&self, watch: WatchId, checkpoint: Checkpoint) {
        let mut inner = self.lock();
        inner.live.insert(watch, checkpoint);
        inner.dirty = true;
    }

    /// Records a longer fingerprint as the file grows, or a file's new path after a rename.
    pub fn update_identity(&self, watch: WatchId, path: &Path, fingerprint: Fingerprint) {
        let mut inner = self.lock();
        if let Some(c) = inner.live.get_mut(&watch) {
            if c.fingerprint != fingerprint || c.path != path {
                c.fingerprint = fingerprint;
                c.path = path.to_path_buf();
                inner.dirty = true;
            }
        }
    }

    /// The broker acknowledged everything up to `offset` for this watch. Offsets only move
    /// forward; acknowledgements for a released watch are ignored.
    pub fn ack(&self, watch: WatchId, offset: u64) {
        let mut inner = self.lock();
        if let Some(c) = inner.live.get_mut(&watch) {
            if offset > c.offset {
                c.offset = offset;
                inner.dirty = true;
            }
        }
    }

    /// The acknowledged offset of a watch.
    pub fn acked(&self, watch: WatchId) -> Option<u64> {
        self.lock().live.get(&watch).map(|c| c.offset)
    }

    /// Stops tracking a watch (its file was deleted, rotated away, or replaced).
    pub fn release(&self, watch: WatchId) {
        let mut inner = self.lock();
        if inner.live.remove(&watch).is_some() {
            inner.dirty = true;
        }
    }

    /// Writes the table to disk if it changed: to a temporary file, fsync, then rename over
    /// the old one, so a crash leaves either the old or the new table, never a torn one.
    pub fn save(&self) -> Result<(), CheckpointError> {
        // Poisoned only by a panic in another save, which left nothing half-done in memory.
        let _saving = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        let files = {
            let mut inner = self.lock();
            if !inner.dirty {
                return Ok(());
            }
            inner.dirty = false;
            let mut files: Vec<Checkpoint> = inner
                .live
                .values()
                .chain(inner.unclaimed.values())
                .cloned()
                .collect();
            files.sort_by(|a, b| a.path.cmp(&b.path));
            files
        };
        let result = self.write(&OnDisk {
            version: FORMAT_VERSION,
            files,
        });
        if result.is_err() {
            // Try again on the next save.
            self.lock().dirty = true;
        }
        result
    }

    fn write(&self, disk: &OnDisk) -> Result<(), CheckpointError> {
        let io_err = |source| CheckpointError::Io {
            path: self.path.clone(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(disk).map_err(|e| io_err(io::Error::other(e)))?;
        let tmp = self.path.with_extension("json.tmp");
        let mut f = File::create(&tmp).map_err(io_err)?;
        f.write_all(&bytes).map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
        fs::rename(&tmp, &self.path).map_err(io_err)?;
        if let Some(dir) = self.path.parent() {
            // Make the rename itself durable.
            File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(ino: u64, offset: u64) -> Checkpoint {
        Checkpoint {
            path: PathBuf::from(format!("/f{ino}")),
            file: FileId { dev: 1, ino },
            fingerprint: Fingerprint::of_bytes(b"x"),
            offset,
        }
    }

    #[test]
    fn survives_a_restart_and_only_moves_forward() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, existed) = CheckpointStore::open(dir.path()).expect("open");
        assert!(!existed);
        store.register(1, cp(10, 0));
        store.register(2, cp(20, 5));
        store.ack(1, 100);
        store.ack(1, 50); // a stale ack never moves a checkpoint back
        store.ack(99, 7); // unknown watch: ignored
        store.save().expect("save");

        let (store, existed) = CheckpointStore::open(dir.path()).expect("reopen");
        assert!(existed);
        assert_eq!(
            store.claim(FileId { dev: 1, ino: 10 }).map(|c| c.offset),
            Some(100)
        );
        // Unclaimed entries survive saves until the first scan is done...
        store.register(3, cp(30, 0));
        store.save().expect("save");
        let (again, _) = CheckpointStore::open(dir.path()).expect("reopen");
        assert!(again.claim(FileId { dev: 1, ino: 20 }).is_some());
        // ...and are dropped after it.
        store.drop_unclaimed();
        store.save().expect("save");
        let (again, _) = CheckpointStore::open(dir.path()).expect("reopen");
        assert!(again.claim(FileId { dev: 1, ino: 20 }).is_none());
        assert!(again.claim(FileId { dev: 1, ino: 30 }).is_some());
    }

    #[test]
    fn released_watches_ignore_late_acks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = CheckpointStore::open(dir.path()).expect("open");
        store.register(1, cp(10, 0));
        store.release(1);
        store.ack(1, 10);
        assert_eq!(store.acked(1), None);
    }

    /// Saves from several threads at once (the tailer's periodic one and the agent's last
    /// one can overlap) all succeed, and the table on disk ends up the newest one.
    #[test]
    fn saves_at_once_all_succeed_and_the_newest_table_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = CheckpointStore::open(dir.path()).expect("open");
        let store = std::sync::Arc::new(store);
        store.register(1, cp(10, 0));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let store = std::sync::Arc::clone(&store);
                std::thread::spawn(move || {
                    for i in 0..50u64 {
                        store.ack(1, t * 1000 + i + 1);
                        store.save().expect("a save while another runs");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a saving thread panicked");
        }
        let newest = store.acked(1);
        store.save().expect("save");
        let (again, _) = CheckpointStore::open(dir.path()).expect("reopen");
        assert_eq!(
            again.claim(FileId { dev: 1, ino: 10 }).map(|c| c.offset),
            newest
        );
    }

    #[test]
    fn corrupt_file_is_an_error_not_a_silent_reset() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(FILE_NAME), b"{not json").expect("write");
        assert!(matches!(
            CheckpointStore::open(dir.path()),
            Err(CheckpointError::Corrupt { .. })
        ));
    }
}
