//! The set of topics: creation (with Kafka's name rules), lookup, deletion, and opening every
//! partition at start-up. Each partition's log lives in `<data>/topics/<topic>-<partition>`,
//! Kafka's own layout, so an operator recognises it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kafka_protocol::ResponseError;
use parking_lot::RwLock;
use thiserror::Error;
use uuid::Uuid;

use crate::broker::log::LogError;
use crate::broker::meta::{Meta, MetaError, TopicRecord};
use crate::broker::partition::Partition;
use crate::broker::topic_config::{self, EffectiveTopicConfig, TopicOverrides};
use crate::config::LogDefaults;

/// Kafka's limit: 249 characters, so `<topic>-<partition>` fits a 255-byte file name.
pub const MAX_TOPIC_NAME_LEN: usize = 249;
/// More partitions than this in one topic is almost certainly a typo on a one-node broker.
pub const MAX_PARTITIONS: i32 = 10_000;

#[derive(Debug, Error)]
pub enum TopicError {
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("topic {0:?} already exists")]
    AlreadyExists(String),
    #[error("topic {0:?} does not exist")]
    Unknown(String),
    #[error("invalid partition count {0}: must be between 1 and {MAX_PARTITIONS}")]
    InvalidPartitions(i32),
    #[error("invalid config {key}: {reason}")]
    InvalidConfig { key: String, reason: String },
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("storage error: {0}")]
    Storage(#[from] LogError),
}

impl TopicError {
    /// The Kafka error a client sees for this failure.
    pub fn kafka_error(&self) -> ResponseError {
        match self {
            TopicError::InvalidName { .. } => ResponseError::InvalidTopicException,
            TopicError::AlreadyExists(_) => ResponseError::TopicAlreadyExists,
            TopicError::Unknown(_) => ResponseError::UnknownTopicOrPartition,
            TopicError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            TopicError::InvalidConfig { .. } => ResponseError::InvalidConfig,
            TopicError::Meta(_) | TopicError::Storage(_) => ResponseError::KafkaStorageError,
        }
    }
}

/// Kafka's topic name rules: 1–249 of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let invalid = |reason| {
        Err(TopicError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name == "." || name == ".." {
        return invalid("`.` and `..` are reserved");
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return invalid("it is longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<Arc<Partition>>,
    overrides: RwLock<TopicOverrides>,
    effective: RwLock<EffectiveTopicConfig>,
}

impl Topic {
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }

    pub fn overrides(&self) -> TopicOverrides {
        self.overrides.read().clone()
    }

    pub fn max_message_bytes(&self) -> usize {
        self.effective.read().max_message_bytes
    }
}

pub struct TopicRegistry {
    topics_dir: PathBuf,
    defaults: LogDefaults,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Serialises create/delete so two clients creating one name cannot both succeed.
    admin: parking_lot::Mutex<()>,
}

fn partition_dir(topics_dir: &Path, topic: &str, index: i32) -> PathBuf {
    topics_dir.join(format!("{topic}-{index}"))
}

impl TopicRegistry {
    /// Opens every topic sled knows of, recovering each partition's log.
    pub fn open(data_dir: &Path, defaults: LogDefaults, meta: &Meta) -> Result<Self, TopicError> {
        let topics_dir = data_dir.join("topics");
        std::fs::create_dir_all(&topics_dir).map_err(|source| LogError::Io {
            op: "create",
            path: topics_dir.clone(),
            source,
        })?;
        let mut topics = HashMap::new();
        for (name, record) in meta.topics()? {
            let topic = open_topic(&topics_dir, &defaults, &name, &record)?;
            topics.insert(name, Arc::new(topic));
        }
        Ok(TopicRegistry {
            topics_dir,
            defaults,
            topics: RwLock::new(topics),
            admin: parking_lot::Mutex::new(()),
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    /// All topics, sorted by name.
    pub fn list(&self) -> Vec<Arc<Topic>> {
        let mut topics: Vec<_> = self.topics.read().values().cloned().collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    pub fn defaults(&self) -> &LogDefaults {
        &self.defaults
    }

    /// Checks a create request without doing it (CreateTopics' validate_only).
    pub fn validate_create(
        &self,
        name: &str,
        partitions: i32,
        overrides: &TopicOverrides,
    ) -> Result<(), TopicError> {
        validate_topic_name(name)?;
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(partitions));
        }
        topic_config::validate(overrides)
            .map_err(|(key, reason)| TopicError::InvalidConfig { key, reason })?;
        if self.topics.read().contains_key(name) {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        Ok(())
    }

    pub fn create(
        &self,
        meta: &Meta,
        name: &str,
        partitions: i32,
        overrides: TopicOverrides,
    ) -> Result<Arc<Topic>, TopicError> {
        let _admin = self.admin.lock();
        self.validate_create(name, partitions, &overrides)?;
        // A directory left by a topic of the same name that was being deleted when the broker
        // died must not lend its old records to the new topic.
        for index in 0..partitions {
            let dir = partition_dir(&self.topics_dir, name, index);
            if dir.exists() {
                tracing::warn!(topic = name, partition = index, dir = %dir.display(),
                    "removing a leftover partition directory before creating the topic");
                std::fs::remove_dir_all(&dir).map_err(|source| LogError::Io {
                    op: "remove leftover partition",
                    path: dir.clone(),
                    source,
                })?;
            }
        }
        let record = TopicRecord {
            id: Uuid::new_v4(),
            partitions,
            configs: overrides,
        };
        let topic = Arc::new(open_topic(&self.topics_dir, &self.defaults, name, &record)?);
        meta.put_topic(name, &record)?;
        self.topics.write().insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// Deletes a topic: forgotten in sled first (so a crash never resurrects half of it), then
    /// its partition directories are removed.
    pub fn delete(&self, meta: &Meta, name: &str) -> Result<(), TopicError> {
        let _admin = self.admin.lock();
        let Some(topic) = self.topics.write().remove(name) else {
            return Err(TopicError::Unknown(name.to_string()));
        };
        meta.remove_topic(name)?;
        for partition in &topic.partitions {
            let dir = partition_dir(&self.topics_dir, name, partition.index);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(topic = name, dir = %dir.display(), "could not remove a deleted topic's files: {e}");
            }
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }
}

fn open_topic(
    topics_dir: &Path,
    defaults: &LogDefaults,
    name: &str,
    record: &TopicRecord,
) -> Result<Topic, TopicError> {
    let effective = topic_config::effective(defaults, &record.configs);
    let partitions = (0..record.partitions)
        .map(|index| {
            let dir = partition_dir(topics_dir, name, index);
            Partition::open(name, index, &dir, effective.log.clone()).map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Topic {
        name: name.to_string(),
        id: record.id,
        partitions,
        overrides: RwLock::new(record.configs.clone()),
        effective: RwLock::new(effective),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        for good in ["logs", "a.b_c-D9", &"x".repeat(249)] {
            assert!(validate_topic_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "ü", &"x".repeat(250)] {
            let err = validate_topic_name(bad).expect_err(bad);
            assert_eq!(err.kafka_error(), ResponseError::InvalidTopicException);
        }
    }

    #[test]
    fn create_reopen_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = Meta::open(&dir.path().join("meta")).expect("meta");
        let registry =
            TopicRegistry::open(dir.path(), LogDefaults::default(), &meta).expect("open");
        registry
            .create(&meta, "logs", 3, TopicOverrides::new())
            .expect("create");
        let again = registry.create(&meta, "logs", 1, TopicOverrides::new());
        assert!(matches!(again, Err(TopicError::AlreadyExists(_))));
        let bad_config: TopicOverrides = [("retention.ms".into(), "x".into())].into();
        let Err(err) = registry.create(&meta, "other", 1, bad_config) else {
            panic!("a bad config must be refused");
        };
        assert_eq!(err.kafka_error(), ResponseError::InvalidConfig);
        drop(registry);

        let registry =
            TopicRegistry::open(dir.path(), LogDefaults::default(), &meta).expect("reopen");
        let topic = registry.get("logs").expect("survives reopen");
        assert_eq!(topic.partitions.len(), 3);
        registry.delete(&meta, "logs").expect("delete");
        assert!(registry.get("logs").is_none());
        assert!(!dir.path().join("topics/logs-0").exists());
    }
}
