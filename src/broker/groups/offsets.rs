//! Committed offsets, durable in sled: key `group \0 topic \0 partition(be32)`, value JSON.
//! Each commit is flushed before it is acknowledged, so a committed offset survives SIGKILL.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::broker::meta::MetaError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    #[serde(default)]
    pub metadata: String,
    /// When it was committed (ms since the epoch): drives offset retention.
    pub commit_ms: i64,
}

pub struct OffsetStore {
    db: sled::Db,
    tree: sled::Tree,
}

fn key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut key = Vec::with_capacity(group.len() + topic.len() + 6);
    key.extend_from_slice(group.as_bytes());
    key.push(0);
    key.extend_from_slice(topic.as_bytes());
    key.push(0);
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

/// Splits a key back into (group, topic, partition); None for a key we did not write.
fn parse_key(key: &[u8]) -> Option<(String, String, i32)> {
    let (partition, rest) = key
        .split_last_chunk::<4>()
        .map(|(rest, p)| (i32::from_be_bytes(*p), rest))?;
    let rest = rest.strip_suffix(&[0])?;
    let split = rest.iter().position(|&b| b == 0)?;
    let group = std::str::from_utf8(&rest[..split]).ok()?;
    let topic = std::str::from_utf8(&rest[split + 1..]).ok()?;
    Some((group.to_string(), topic.to_string(), partition))
}

impl OffsetStore {
    pub fn open(db: sled::Db) -> Result<Self, MetaError> {
        let tree = db.open_tree("offsets")?;
        Ok(OffsetStore { db, tree })
    }

    /// Stores a group's commits atomically and durably.
    pub fn commit(
        &self,
        group: &str,
        entries: &[(String, i32, CommittedOffset)],
    ) -> Result<(), MetaError> {
        let mut batch = sled::Batch::default();
        for (topic, partition, committed) in entries {
            let value = serde_json::to_vec(committed).map_err(|source| MetaError::Decode {
                topic: topic.clone(),
                source,
            })?;
            batch.insert(key(group, topic, *partition), value);
        }
        self.tree.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    pub fn get(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<CommittedOffset>, MetaError> {
        match self.tree.get(key(group, topic, partition))? {
            Some(value) => Ok(serde_json::from_slice(&value).ok()),
            None => Ok(None),
        }
    }

    /// Every offset a group committed, by topic and partition.
    pub fn for_group(&self, group: &str) -> Result<Vec<(String, i32, CommittedOffset)>, MetaError> {
        let mut prefix = group.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for entry in self.tree.scan_prefix(prefix) {
            let (k, v) = entry?;
            if let (Some((_, topic, partition)), Ok(committed)) =
                (parse_key(&k), serde_json::from_slice(&v))
            {
                out.push((topic, partition, committed));
            }
        }
        Ok(out)
    }

    /// Groups with at least one committed offset.
    pub fn groups(&self) -> Result<BTreeSet<String>, MetaError> {
        let mut groups = BTreeSet::new();
        for entry in self.tree.iter().keys() {
            if let Some((group, _, _)) = parse_key(&entry?) {
                groups.insert(group);
            }
        }
        Ok(groups)
    }

    pub fn delete_group(&self, group: &str) -> Result<usize, MetaError> {
        let mut prefix = group.as_bytes().to_vec();
        prefix.push(0);
        self.delete_where(|k| k.starts_with(&prefix))
    }

    /// Drops every group's offsets for a deleted topic.
    pub fn delete_topic(&self, topic: &str) -> Result<usize, MetaError> {
        self.delete_where(|k| parse_key(k).is_some_and(|(_, t, _)| t == topic))
    }

    fn delete_where(&self, doomed: impl Fn(&[u8]) -> bool) -> Result<usize, MetaError> {
        let mut batch = sled::Batch::default();
        let mut count = 0;
        for entry in self.tree.iter().keys() {
            let k = entry?;
            if doomed(&k) {
                batch.remove(k);
                count += 1;
            }
        }
        if count > 0 {
            self.tree.apply_batch(batch)?;
            self.db.flush()?;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_commits_survive_reopen() {
        assert_eq!(
            parse_key(&key("g", "logs", 7)),
            Some(("g".into(), "logs".into(), 7))
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let committed = CommittedOffset {
            offset: 42,
            metadata: "m".into(),
            commit_ms: 1,
        };
        {
            let store = OffsetStore::open(sled::open(dir.path()).expect("db")).expect("store");
            store
                .commit(
                    "g",
                    &[
                        ("logs".into(), 0, committed.clone()),
                        ("other".into(), 1, committed.clone()),
                    ],
                )
                .expect("commit");
        }
        let store = OffsetStore::open(sled::open(dir.path()).expect("db")).expect("store");
        assert_eq!(store.get("g", "logs", 0).expect("get"), Some(committed));
        assert_eq!(store.for_group("g").expect("scan").len(), 2);
        assert_eq!(store.delete_topic("logs").expect("delete"), 1);
        assert_eq!(
            store
                .groups()
                .expect("groups")
                .into_iter()
                .collect::<Vec<_>>(),
            vec!["g".to_string()]
        );
        store.delete_group("g").expect("delete");
        assert!(store.groups().expect("groups").is_empty());
    }
}
