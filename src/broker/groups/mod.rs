//! The consumer-group coordinator: group membership and rebalances ([`group`]), and durable
//! committed offsets ([`offsets`]). rill is a single node, so it coordinates every group.

pub mod group;
pub mod offsets;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use parking_lot::Mutex;

use crate::config::GroupSettings;
use group::{
    Group, GroupLimits, GroupState, JoinRequest, JoinResponse, MemberDescription, Reply,
    SyncResponse,
};
use offsets::{CommittedOffset, OffsetStore, OffsetStoreError};

/// Group ids are free-form in Kafka; rill refuses only what would break its storage keys or
/// tools: empty, longer than this, or containing NUL.
pub const MAX_GROUP_ID_LEN: usize = 255;

/// Metadata strings clients attach to commits (Kafka's offset.metadata.max.bytes).
pub const MAX_OFFSET_METADATA_BYTES: usize = 4096;

pub fn validate_group_id(id: &str) -> Result<(), ResponseError> {
    if id.is_empty() || id.len() > MAX_GROUP_ID_LEN || id.contains('\0') {
        Err(ResponseError::InvalidGroupId)
    } else {
        Ok(())
    }
}

/// A group as DescribeGroups and ListGroups show it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

pub struct Coordinator {
    groups: Mutex<HashMap<String, Group>>,
    offsets: OffsetStore,
    limits: GroupLimits,
    offsets_retention_ms: Option<i64>,
    /// Wakes the coordinator's timer when a join sets a new deadline.
    deadline_set: tokio::sync::Notify,
}

impl Coordinator {
    pub fn open(dir: &std::path::Path, settings: &GroupSettings) -> Result<Self, OffsetStoreError> {
        Ok(Coordinator {
            groups: Mutex::new(HashMap::new()),
            offsets: OffsetStore::open(dir)?,
            limits: GroupLimits {
                min_session_timeout: Duration::from_millis(settings.min_session_timeout_ms),
                max_session_timeout: Duration::from_millis(settings.max_session_timeout_ms),
                initial_rebalance_delay: Duration::from_millis(settings.initial_rebalance_delay_ms),
            },
            deadline_set: tokio::sync::Notify::new(),
            offsets_retention_ms: (settings.offsets_retention_ms >= 0)
                .then_some(settings.offsets_retention_ms),
        })
    }

    pub fn join(&self, group_id: &str, request: JoinRequest) -> Reply<JoinResponse> {
        let mut groups = self.groups.lock();
        let group = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id));
        let reply = group.join(request, &self.limits, Instant::now());
        if group.next_deadline().is_some() {
            self.deadline_set.notify_one();
        }
        reply
    }

    /// The earliest instant at which some group's pending join round must be completed.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.groups
            .lock()
            .values()
            .filter_map(Group::next_deadline)
            .min()
    }

    /// Completes when a join has set a deadline the timer may not know of yet.
    pub async fn deadline_set(&self) {
        self.deadline_set.notified().await;
    }

    /// Runs `f` on an existing group (a member's request for a group rill does not know comes
    /// from a member rill does not know), or answers `unknown`.
    fn with_group<T>(
        &self,
        group_id: &str,
        unknown: T,
        f: impl FnOnce(&mut Group, Instant) -> T,
    ) -> T {
        match self.groups.lock().get_mut(group_id) {
            Some(group) => f(group, Instant::now()),
            None => unknown,
        }
    }

    pub fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        assignments: Vec<(String, bytes::Bytes)>,
    ) -> Reply<SyncResponse> {
        let unknown = Reply::Now(SyncResponse {
            error: Some(ResponseError::UnknownMemberId),
            assignment: bytes::Bytes::new(),
        });
        self.with_group(group_id, unknown, |group, now| {
            group.sync(member_id, instance, generation, assignments, now)
        })
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        self.with_group(
            group_id,
            Err(ResponseError::UnknownMemberId),
            |group, now| group.heartbeat(member_id, instance, generation, now),
        )
    }

    pub fn leave(
        &self,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
    ) -> Result<(), ResponseError> {
        self.with_group(
            group_id,
            Err(ResponseError::UnknownMemberId),
            |group, now| group.leave(member_id, instance, &self.limits, now),
        )
    }

    /// Checks who may commit: a member of the current generation, or anyone (generation -1,
    /// no member id) when the group has no members, as Kafka allows for manual assignment.
    pub fn check_commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        let mut groups = self.groups.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return if generation < 0 {
                Ok(())
            } else {
                Err(ResponseError::IllegalGeneration)
            };
        };
        if generation < 0 && member_id.is_empty() {
            return if group.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId)
            };
        }
        group.check_member(member_id, instance, generation)?;
        match group.state() {
            // Between assignment and sync the partitions are not settled yet. While a
            // rebalance is only being prepared, members of the current generation still own
            // their partitions and commit them before rejoining (Kafka allows it too).
            GroupState::CompletingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => {
                group.touch(member_id, Instant::now());
                Ok(())
            }
        }
    }

    pub fn commit(
        &self,
        group_id: &str,
        entries: &[(String, i32, CommittedOffset)],
    ) -> Result<(), OffsetStoreError> {
        self.offsets.commit(group_id, entries)
    }

    pub fn committed(
        &self,
        group_id: &str,
        topic: &str,
        partition: i32,
    ) -> Option<CommittedOffset> {
        self.offsets.get(group_id, topic, partition)
    }

    pub fn committed_all(&self, group_id: &str) -> Vec<(String, i32, CommittedOffset)> {
        self.offsets.for_group(group_id)
    }

    /// fsyncs committed offsets written since the last flush (the flush policy calls this).
    pub fn flush(&self) -> Result<(), OffsetStoreError> {
        self.offsets.flush()
    }

    /// Groups with members or with committed offsets.
    pub fn list(&self) -> Vec<GroupDescription> {
        let mut ids: BTreeSet<String> = self.offsets.groups();
        ids.extend(self.groups.lock().keys().cloned());
        ids.into_iter()
            .filter_map(|id| self.describe(&id))
            .collect()
    }

    /// None for a group that has neither members nor offsets (Kafka calls it Dead).
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        if let Some(group) = self.groups.lock().get(group_id) {
            if !group.is_empty() || group.protocol_type().is_some() {
                // Like Kafka: subscriptions and assignments are only meaningful in a stable
                // group; mid-rebalance they would show last round's, so they are left out.
                let stable = group.state() == GroupState::Stable;
                let mut members = group.members();
                if !stable {
                    for member in &mut members {
                        member.metadata = bytes::Bytes::new();
                        member.assignment = bytes::Bytes::new();
                    }
                }
                return Some(GroupDescription {
                    group_id: group_id.to_string(),
                    state: group.state().kafka_name(),
                    protocol_type: group.protocol_type().unwrap_or_default().to_string(),
                    protocol: if stable {
                        group.protocol().unwrap_or_default().to_string()
                    } else {
                        String::new()
                    },
                    members,
                });
            }
        }
        let has_offsets = !self.offsets.for_group(group_id).is_empty();
        has_offsets.then(|| GroupDescription {
            group_id: group_id.to_string(),
            state: GroupState::Empty.kafka_name(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        })
    }

    /// DeleteGroups: only a group without members can go (its offsets with it).
    pub fn delete(&self, group_id: &str) -> Result<(), ResponseError> {
        validate_group_id(group_id)?;
        let mut groups = self.groups.lock();
        if groups.get(group_id).is_some_and(|g| !g.is_empty()) {
            return Err(ResponseError::NonEmptyGroup);
        }
        let in_memory = groups.remove(group_id).is_some();
        let deleted = self.offsets.delete_group(group_id).map_err(|e| {
            tracing::error!(group = group_id, "deleting offsets failed: {e}");
            ResponseError::KafkaStorageError
        })?;
        if !in_memory && deleted == 0 {
            return Err(ResponseError::GroupIdNotFound);
        }
        tracing::info!(group = group_id, offsets = deleted, "deleted group");
        Ok(())
    }

    pub fn topic_deleted(&self, topic: &str) {
        match self.offsets.delete_topic(topic) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                topic,
                offsets = n,
                "removed committed offsets of a deleted topic"
            ),
            Err(e) => tracing::error!(topic, "removing committed offsets failed: {e}"),
        }
    }

    /// Session expiry and rebalance deadlines; run every few hundred milliseconds.
    pub fn tick(&self) {
        let now = Instant::now();
        let mut groups = self.groups.lock();
        for group in groups.values_mut() {
            group.tick(&self.limits, now);
        }
        groups.retain(|_, g| !g.is_empty() || g.protocol_type().is_some());
    }

    /// Deletes the offsets of groups without members whose newest commit is past retention.
    pub fn expire_offsets(&self, now_ms: i64) {
        let Some(retention) = self.offsets_retention_ms else {
            return;
        };
        for id in self.offsets.groups() {
            if self.groups.lock().get(&id).is_some_and(|g| !g.is_empty()) {
                continue;
            }
            let newest = self
                .offsets
                .for_group(&id)
                .iter()
                .map(|(_, _, c)| c.commit_ms)
                .max()
                .unwrap_or(0);
            if now_ms.saturating_sub(newest) > retention {
                tracing::info!(group = %id, "offsets past retention; deleting the group's offsets");
                if let Err(e) = self.offsets.delete_group(&id) {
                    tracing::error!(group = %id, "offset retention failed: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(retention_ms: i64) -> GroupSettings {
        GroupSettings {
            offsets_retention_ms: retention_ms,
            ..GroupSettings::default()
        }
    }

    fn committed(commit_ms: i64) -> CommittedOffset {
        CommittedOffset {
            offset: 1,
            metadata: String::new(),
            commit_ms,
        }
    }

    #[test]
    fn offsets_of_deleted_topics_and_long_empty_groups_are_cleaned_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let coordinator = Coordinator::open(dir.path(), &settings(1000)).expect("open");
        coordinator
            .commit("old", &[("t".into(), 0, committed(0))])
            .expect("commit");
        coordinator
            .commit(
                "fresh",
                &[
                    ("t".into(), 0, committed(5000)),
                    ("gone".into(), 0, committed(5000)),
                ],
            )
            .expect("commit");
        coordinator.topic_deleted("gone");
        assert_eq!(coordinator.committed_all("fresh").len(), 1);
        coordinator.expire_offsets(5500);
        assert!(
            coordinator.committed_all("old").is_empty(),
            "past retention"
        );
        assert_eq!(
            coordinator.committed_all("fresh").len(),
            1,
            "within retention"
        );
        assert_eq!(coordinator.list().len(), 1);
    }
}
