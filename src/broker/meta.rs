//! The broker's small, transactional state in sled: which topics exist (with their ids,
//! partition counts and config overrides), the cluster id, and producer-id allocation.
//! The log itself never goes through sled: it lives in segment files (see `broker::log`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::broker::topic_config::TopicOverrides;

#[derive(Debug, Error)]
pub enum MetaError {
    #[error("cannot open the metadata store at {path}: {source} (is another rill broker using this data dir?)")]
    Open { path: PathBuf, source: sled::Error },
    #[error("metadata store error: {0}")]
    Store(#[from] sled::Error),
    #[error("damaged metadata for topic {topic:?}: {source}")]
    Decode {
        topic: String,
        source: serde_json::Error,
    },
}

/// What sled remembers of a topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicRecord {
    pub id: Uuid,
    pub partitions: i32,
    #[serde(default)]
    pub configs: TopicOverrides,
}

pub struct Meta {
    db: sled::Db,
    topics: sled::Tree,
    producer_ids: parking_lot::Mutex<ProducerIdBlock>,
}

const CLUSTER_ID_KEY: &[u8] = b"cluster_id";
/// The end (exclusive) of the last block of producer ids reserved on disk.
const PRODUCER_ID_BLOCK_END_KEY: &[u8] = b"producer_id_block_end";
/// Producer ids are reserved on disk this many at a time, as Kafka's ProducerIdManager does:
/// one fsync per block, and a crash skips the rest of a block instead of reusing an id.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// The ids of the current block not handed out yet: `next..end`.
struct ProducerIdBlock {
    next: i64,
    end: i64,
}

impl Meta {
    pub fn open(dir: &Path) -> Result<Meta, MetaError> {
        let db = sled::Config::new()
            .path(dir)
            // The state is tiny; a small cache keeps the broker's RSS budget for the page cache.
            .cache_capacity(4 * 1024 * 1024)
            // Every write below is flushed explicitly; sled's own background flusher only
            // delays shutdown (it sleeps between rounds and is joined on drop).
            .flush_every_ms(None)
            .open()
            .map_err(|source| MetaError::Open {
                path: dir.to_path_buf(),
                source,
            })?;
        let topics = db.open_tree("topics")?;
        // Whatever was reserved before may have been handed out: start after it, with no
        // block reserved yet.
        let reserved = match db.get(PRODUCER_ID_BLOCK_END_KEY)? {
            Some(bytes) => <[u8; 8]>::try_from(bytes.as_ref()).map_or(0, i64::from_be_bytes),
            None => 0,
        };
        let producer_ids = parking_lot::Mutex::new(ProducerIdBlock {
            next: reserved,
            end: reserved,
        });
        Ok(Meta {
            db,
            topics,
            producer_ids,
        })
    }

    /// The cluster id, created once on first start (clients show it; it never changes).
    pub fn cluster_id(&self) -> Result<String, MetaError> {
        if let Some(id) = self.db.get(CLUSTER_ID_KEY)? {
            return Ok(String::from_utf8_lossy(&id).into_owned());
        }
        let id = Uuid::new_v4().simple().to_string();
        self.db.insert(CLUSTER_ID_KEY, id.as_bytes())?;
        self.db.flush()?;
        Ok(id)
    }

    pub fn topics(&self) -> Result<Vec<(String, TopicRecord)>, MetaError> {
        let mut out = Vec::new();
        for entry in self.topics.iter() {
            let (key, value) = entry?;
            let name = String::from_utf8_lossy(&key).into_owned();
            let record = serde_json::from_slice(&value).map_err(|source| MetaError::Decode {
                topic: name.clone(),
                source,
            })?;
            out.push((name, record));
        }
        Ok(out)
    }

    /// Stores a topic durably (flushed before returning: CreateTopics is acknowledged after).
    pub fn put_topic(&self, name: &str, record: &TopicRecord) -> Result<(), MetaError> {
        let value = serde_json::to_vec(record).map_err(|source| MetaError::Decode {
            topic: name.to_string(),
            source,
        })?;
        self.topics.insert(name.as_bytes(), value)?;
        self.db.flush()?;
        Ok(())
    }

    pub fn remove_topic(&self, name: &str) -> Result<(), MetaError> {
        self.topics.remove(name.as_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// A producer id never handed out before, across restarts and crashes: ids come from a
    /// block whose end is flushed to disk before the first of them is handed out. (A reused
    /// id would meet the sequence numbers its previous owner left in the log, and the new
    /// producer's first batch would be refused as out of order.)
    pub fn next_producer_id(&self) -> Result<i64, MetaError> {
        let mut ids = self.producer_ids.lock();
        if ids.next >= ids.end {
            let end = ids.next + PRODUCER_ID_BLOCK;
            self.db
                .insert(PRODUCER_ID_BLOCK_END_KEY, &end.to_be_bytes())?;
            self.db.flush()?;
            ids.end = end;
        }
        let id = ids.next;
        ids.next += 1;
        Ok(id)
    }

    pub fn flush(&self) -> Result<(), MetaError> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens `dir` again once the previous `Meta` on it is dropped. sled lets go of its
    /// file lock from its background threads a moment after the drop (the broker opens its
    /// metadata once per process, so only a test reopens in the same process): retry while
    /// the lock is still held.
    fn reopen(dir: &Path) -> Meta {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match Meta::open(dir) {
                Ok(meta) => return meta,
                Err(e)
                    if std::time::Instant::now() < deadline
                        && format!("{e:?}").contains("could not acquire lock") =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("reopen {}: {e:?}", dir.display()),
            }
        }
    }

    #[test]
    fn topics_and_ids_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let record = TopicRecord {
            id: Uuid::new_v4(),
            partitions: 3,
            configs: [("retention.ms".to_string(), "1000".to_string())].into(),
        };
        let (cluster, pid) = {
            let meta = Meta::open(dir.path()).expect("open");
            meta.put_topic("logs", &record).expect("put");
            (
                meta.cluster_id().expect("id"),
                meta.next_producer_id().expect("pid"),
            )
        };
        let meta = reopen(dir.path());
        assert_eq!(meta.cluster_id().expect("id"), cluster);
        assert!(meta.next_producer_id().expect("pid") > pid);
        drop(meta);

        // Ids handed out before a restart are never handed out again (the crash case, which
        // a unit test cannot stage, is tests/faults.rs's SIGKILL test).
        let handed_out: Vec<i64> = {
            let meta = reopen(dir.path());
            (0..3)
                .map(|_| meta.next_producer_id().expect("pid"))
                .collect()
        };
        let meta = reopen(dir.path());
        let next = meta.next_producer_id().expect("pid");
        assert!(
            handed_out.iter().all(|&id| id < next),
            "{handed_out:?} then {next}"
        );
        assert_eq!(
            meta.topics().expect("topics"),
            vec![("logs".to_string(), record)]
        );
        meta.remove_topic("logs").expect("remove");
        assert!(meta.topics().expect("topics").is_empty());
    }
}
