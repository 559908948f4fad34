//! Per-user topic permissions applied to requests, the way Kafka's KafkaApis does it: split each
//! request into the topics the user may touch and those it may not, let the handler serve the
//! first, and answer the second with Kafka's authorization error codes
//! (TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED), so
//! clients report "Topic authorization failed" rather than a hang. Handlers stay unaware of
//! users.
//!
//! What each API needs (see the README's Security section):
//! Produce: write. Fetch, ListOffsets, OffsetCommit, OffsetFetch: read on the topic.
//! CreateTopics, DeleteTopics: admin. Metadata and DescribeConfigs: any permission on the topic
//! (others are hidden from "all topics" and refused when named; auto-creation needs write).
//! Consumer-group membership (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! ListGroups, DescribeGroups): read on some topic. DeleteGroups: admin on `*`.
//! InitProducerId (idempotent producers): write on some topic, as in Kafka 2.8+.

use std::sync::Arc;

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest, FetchRequest,
    ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest, ProduceRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::auth::{Operation, User};

const TOPIC_DENIED: i16 = ResponseError::TopicAuthorizationFailed.code();

/// What the connection's user may do.
#[derive(Debug, Clone)]
pub enum Access {
    /// A listener without authentication: every request, every topic.
    Everything,
    /// An authenticated user: what the users file grants.
    User(Arc<User>),
    /// Not (yet) authenticated on a SASL listener: nothing.
    Nothing,
}

impl Access {
    pub fn everything() -> Access {
        Access::Everything
    }

    pub fn user(user: Arc<User>) -> Access {
        Access::User(user)
    }

    pub fn allows(&self, operation: Operation, topic: &str) -> bool {
        match self {
            Access::Everything => true,
            Access::User(u) => u.permissions.allows(operation, topic),
            Access::Nothing => false,
        }
    }

    pub fn has_any(&self, operation: Operation) -> bool {
        match self {
            Access::Everything => true,
            Access::User(u) => u.permissions.has_any(operation),
            Access::Nothing => false,
        }
    }

    pub fn is_cluster_admin(&self) -> bool {
        match self {
            Access::Everything => true,
            Access::User(u) => u.permissions.is_cluster_admin(),
            Access::Nothing => false,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Access::User(u) => &u.name,
            _ => "",
        }
    }

    /// Moves the items naming a topic this user may not `operation` out of `items`, and logs
    /// the refusal once per request with the user and the topics.
    fn deny<T>(
        &self,
        api: &str,
        operation: Operation,
        items: &mut Vec<T>,
        topic: impl Fn(&T) -> &str,
    ) -> Vec<T> {
        if matches!(self, Access::Everything) {
            // No authentication configured: no copy of the request on the hot path.
            return Vec::new();
        }
        let (kept, denied): (Vec<T>, Vec<T>) = std::mem::take(items)
            .into_iter()
            .partition(|item| self.allows(operation, topic(item)));
        *items = kept;
        if !denied.is_empty() {
            let names: Vec<&str> = denied.iter().map(&topic).collect();
            tracing::info!(
                user = self.name(),
                "{api} refused: no {operation:?} permission on {}",
                names.join(", ")
            );
        }
        denied
    }
}

pub fn produce(access: &Access, req: &mut ProduceRequest) -> Vec<TopicProduceResponse> {
    let denied = access.deny("Produce", Operation::Write, &mut req.topic_data, |t| {
        t.name.0.as_str()
    });
    denied
        .into_iter()
        .map(|t| {
            TopicProduceResponse::default()
                .with_partition_responses(
                    t.partition_data
                        .iter()
                        .map(|p| {
                            PartitionProduceResponse::default()
                                .with_index(p.index)
                                .with_error_code(TOPIC_DENIED)
                                .with_base_offset(-1)
                                .with_log_append_time_ms(-1)
                        })
                        .collect(),
                )
                .with_name(t.name)
        })
        .collect()
}

pub fn fetch(access: &Access, req: &mut FetchRequest) -> Vec<FetchableTopicResponse> {
    let denied = access.deny("Fetch", Operation::Read, &mut req.topics, |t| {
        t.topic.0.as_str()
    });
    if !denied.is_empty() {
        // An error answers at once, as Kafka does; do not long-poll for the rest.
        req.max_wait_ms = 0;
    }
    denied
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    PartitionData::default()
                        .with_partition_index(p.partition)
                        .with_error_code(TOPIC_DENIED)
                        .with_high_watermark(-1)
                        .with_last_stable_offset(-1)
                        .with_log_start_offset(-1)
                        .with_aborted_transactions(Some(Vec::new()))
                        .with_preferred_read_replica(BrokerId(-1))
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect()
}

pub fn list_offsets(
    access: &Access,
    req: &mut ListOffsetsRequest,
) -> Vec<ListOffsetsTopicResponse> {
    let denied = access.deny("ListOffsets", Operation::Read, &mut req.topics, |t| {
        t.name.0.as_str()
    });
    denied
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(TOPIC_DENIED)
                        .with_offset(-1)
                        .with_timestamp(-1)
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect()
}

fn message(version_has_it: bool, text: &str) -> Option<StrBytes> {
    version_has_it.then(|| StrBytes::from_string(text.to_string()))
}

pub fn create_topics(
    access: &Access,
    req: &mut CreateTopicsRequest,
    version: i16,
) -> Vec<CreatableTopicResult> {
    let denied = access.deny("CreateTopics", Operation::Admin, &mut req.topics, |t| {
        t.name.0.as_str()
    });
    denied
        .into_iter()
        .map(|t| {
            CreatableTopicResult::default()
                .with_name(t.name)
                .with_error_code(TOPIC_DENIED)
                .with_error_message(message(
                    version >= 1,
                    "creating this topic needs admin permission",
                ))
        })
        .collect()
}

pub fn delete_topics(
    access: &Access,
    req: &mut DeleteTopicsRequest,
    version: i16,
) -> Vec<DeletableTopicResult> {
    let denied = access.deny(
        "DeleteTopics",
        Operation::Admin,
        &mut req.topic_names,
        |t| t.0.as_str(),
    );
    denied
        .into_iter()
        .map(|name| {
            DeletableTopicResult::default()
                .with_name(Some(name))
                .with_error_code(TOPIC_DENIED)
                .with_error_message(message(
                    version >= 5,
                    "deleting this topic needs admin permission",
                ))
        })
        .collect()
}

/// Topic resources need some permission on the topic; the broker resource (non-secret
/// settings) is readable by every authenticated user.
pub fn describe_configs(
    access: &Access,
    req: &mut DescribeConfigsRequest,
) -> Vec<DescribeConfigsResult> {
    const TOPIC: i8 = 2;
    let (mut topics, others): (Vec<_>, Vec<_>) = std::mem::take(&mut req.resources)
        .into_iter()
        .partition(|r| r.resource_type == TOPIC);
    let denied = access.deny("DescribeConfigs", Operation::Describe, &mut topics, |r| {
        r.resource_name.as_str()
    });
    req.resources = others;
    req.resources.extend(topics);
    denied
        .into_iter()
        .map(|r| {
            DescribeConfigsResult::default()
                .with_error_code(TOPIC_DENIED)
                .with_error_message(Some(StrBytes::from_static_str(
                    "Topic authorization failed.",
                )))
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
        })
        .collect()
}

pub fn offset_commit(
    access: &Access,
    req: &mut OffsetCommitRequest,
) -> Vec<OffsetCommitResponseTopic> {
    let denied = access.deny("OffsetCommit", Operation::Read, &mut req.topics, |t| {
        t.name.0.as_str()
    });
    denied
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(TOPIC_DENIED)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect()
}

/// Named topics the user cannot read get TOPIC_AUTHORIZATION_FAILED; with "all topics" (null)
/// the unreadable ones are left out of the answer (see [`readable_offsets`]).
pub fn offset_fetch(
    access: &Access,
    req: &mut OffsetFetchRequest,
) -> Vec<OffsetFetchResponseTopic> {
    let Some(topics) = req.topics.as_mut() else {
        return Vec::new();
    };
    let denied = access.deny("OffsetFetch", Operation::Read, topics, |t| {
        t.name.0.as_str()
    });
    denied
        .into_iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(index)
                        .with_committed_offset(-1)
                        .with_metadata(Some(StrBytes::default()))
                        .with_error_code(TOPIC_DENIED)
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect()
}

/// Drops topics the user cannot read from an "all topics" OffsetFetch answer.
pub fn readable_offsets(access: &Access, topics: &mut Vec<OffsetFetchResponseTopic>) {
    topics.retain(|t| access.allows(Operation::Read, t.name.0.as_str()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::auth::scram::ScramCredential;
    use crate::broker::auth::Permissions;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::TopicName;

    fn reader() -> Access {
        Access::user(Arc::new(User {
            name: "dash".into(),
            credential: ScramCredential::derive("x", vec![1; 16], 4096),
            permissions: Permissions {
                read: vec![glob::Pattern::new("logs").expect("pattern")],
                ..Default::default()
            },
        }))
    }

    #[test]
    fn a_reader_cannot_produce() {
        let topic = |name: &str| {
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(name.into())))
                .with_partition_data(vec![PartitionProduceData::default().with_index(0)])
        };
        let mut req = ProduceRequest::default().with_topic_data(vec![topic("logs")]);
        let denied = produce(&reader(), &mut req);
        assert!(req.topic_data.is_empty());
        assert_eq!(denied.len(), 1);
        assert_eq!(denied[0].partition_responses[0].error_code, TOPIC_DENIED);

        let mut req = ProduceRequest::default().with_topic_data(vec![topic("logs")]);
        assert!(produce(&Access::everything(), &mut req).is_empty());
        assert_eq!(req.topic_data.len(), 1);
    }
}
