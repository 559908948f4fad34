//! The consumer-group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, ListGroups, DescribeGroups and DeleteGroups. Decoding and
//! encoding live here; the state machine is `broker::groups`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::groups::group::{JoinRequest, JoinResponse, Reply, SyncResponse};
use crate::broker::groups::offsets::CommittedOffset;
use crate::broker::groups::{validate_group_id, MAX_OFFSET_METADATA_BYTES};
use crate::broker::Broker;
use crate::config::FlushPolicy;

/// FindCoordinator key types.
const KEY_TYPE_GROUP: i8 = 0;

/// A SyncGroup waits for the leader's assignment; it never needs longer than this.
const SYNC_WAIT_CAP: Duration = Duration::from_secs(300);

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// The wire code of an outcome: 0 for success.
fn code(error: Option<ResponseError>) -> i16 {
    error.map_or(0, |e| e.code())
}

pub fn find_coordinator(
    broker: &Broker,
    req: FindCoordinatorRequest,
    version: i16,
    advertised: (String, i32),
) -> FindCoordinatorResponse {
    let response = FindCoordinatorResponse::default();
    if req.key_type != KEY_TYPE_GROUP {
        let response = response.with_error_code(ResponseError::CoordinatorNotAvailable.code());
        return if version >= 1 {
            response.with_error_message(Some(text(
                "rill coordinates consumer groups only; transactions are not supported",
            )))
        } else {
            response
        };
    }
    let (host, port) = advertised;
    response
        .with_node_id(BrokerId(broker.config.node_id))
        .with_host(text(host))
        .with_port(port)
}

pub async fn join_group(
    broker: &Arc<Broker>,
    req: JoinGroupRequest,
    version: i16,
    client_id: &str,
    peer: SocketAddr,
) -> JoinGroupResponse {
    let group_id = req.group_id.0.to_string();
    let reply = |resp: JoinResponse| encode_join(resp, version);
    if let Err(error) = validate_group_id(&group_id) {
        return reply(JoinResponse {
            error: Some(error),
            generation: -1,
            protocol: None,
            leader: String::new(),
            member_id: req.member_id.to_string(),
            members: Vec::new(),
        });
    }
    let session_timeout = Duration::from_millis(req.session_timeout_ms.max(0) as u64);
    let rebalance_timeout = if version >= 1 {
        Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64)
    } else {
        session_timeout
    };
    let request = JoinRequest {
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        client_id: client_id.to_string(),
        client_host: format!("/{}", peer.ip()),
        session_timeout,
        rebalance_timeout,
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let member_id = request.member_id.clone();
    let stale = |error| JoinResponse {
        error: Some(error),
        generation: -1,
        protocol: None,
        leader: String::new(),
        member_id: member_id.clone(),
        members: Vec::new(),
    };
    match broker.groups.join(&group_id, request) {
        Reply::Now(resp) => reply(resp),
        Reply::Wait(rx) => {
            match tokio::time::timeout(rebalance_timeout + Duration::from_secs(5), rx).await {
                Ok(Ok(resp)) => reply(resp),
                // The member was removed while it waited.
                Ok(Err(_)) => reply(stale(ResponseError::UnknownMemberId)),
                Err(_) => reply(stale(ResponseError::RebalanceInProgress)),
            }
        }
    }
}

fn encode_join(resp: JoinResponse, version: i16) -> JoinGroupResponse {
    let members = resp
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            JoinGroupResponseMember::default()
                .with_member_id(text(id))
                .with_group_instance_id(if version >= 5 {
                    instance.map(text)
                } else {
                    None
                })
                .with_metadata(metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(code(resp.error))
        .with_generation_id(resp.generation)
        // Non-nullable before v7: an empty name when there is none.
        .with_protocol_name(Some(text(resp.protocol.unwrap_or_default())))
        .with_leader(text(resp.leader))
        .with_member_id(text(resp.member_id))
        .with_members(members)
}

pub async fn sync_group(broker: &Arc<Broker>, req: SyncGroupRequest) -> SyncGroupResponse {
    let encode = |resp: SyncResponse| {
        SyncGroupResponse::default()
            .with_error_code(code(resp.error))
            .with_assignment(resp.assignment)
    };
    let group_id = req.group_id.0.to_string();
    if let Err(error) = validate_group_id(&group_id) {
        return SyncGroupResponse::default().with_error_code(error.code());
    }
    let assignments = req
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let instance = req.group_instance_id.as_ref().map(|s| s.to_string());
    match broker.groups.sync(
        &group_id,
        &req.member_id,
        instance.as_deref(),
        req.generation_id,
        assignments,
    ) {
        Reply::Now(resp) => encode(resp),
        Reply::Wait(rx) => match tokio::time::timeout(SYNC_WAIT_CAP, rx).await {
            Ok(Ok(resp)) => encode(resp),
            Ok(Err(_)) | Err(_) => SyncGroupResponse::default()
                .with_error_code(ResponseError::RebalanceInProgress.code()),
        },
    }
}

pub fn heartbeat(broker: &Broker, req: HeartbeatRequest) -> HeartbeatResponse {
    let group_id = req.group_id.0.to_string();
    let instance = req.group_instance_id.as_ref().map(|s| s.to_string());
    let outcome = validate_group_id(&group_id).and_then(|()| {
        broker.groups.heartbeat(
            &group_id,
            &req.member_id,
            instance.as_deref(),
            req.generation_id,
        )
    });
    HeartbeatResponse::default().with_error_code(code(outcome.err()))
}

pub fn leave_group(broker: &Broker, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let group_id = req.group_id.0.to_string();
    if let Err(error) = validate_group_id(&group_id) {
        return LeaveGroupResponse::default().with_error_code(error.code());
    }
    if version < 3 {
        let outcome = broker.groups.leave(&group_id, &req.member_id, None);
        return LeaveGroupResponse::default().with_error_code(code(outcome.err()));
    }
    let members = req
        .members
        .into_iter()
        .map(|m| {
            let instance = m.group_instance_id.as_ref().map(|s| s.to_string());
            let outcome = broker
                .groups
                .leave(&group_id, &m.member_id, instance.as_deref());
            MemberResponse::default()
                .with_member_id(m.member_id)
                .with_group_instance_id(m.group_instance_id)
                .with_error_code(code(outcome.err()))
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}

pub fn offset_commit(
    broker: &Broker,
    req: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let group_id = req.group_id.0.to_string();
    let instance = if version >= 7 {
        req.group_instance_id.as_ref().map(|s| s.to_string())
    } else {
        None
    };
    let group_error = validate_group_id(&group_id).and_then(|()| {
        broker.groups.check_commit(
            &group_id,
            &req.member_id,
            instance.as_deref(),
            req.generation_id_or_member_epoch,
        )
    });
    let now = super::now_ms();
    let mut entries = Vec::new();
    // (topic index, partition index, error) — resolved after the write below.
    let mut codes: Vec<Vec<(i32, Option<ResponseError>)>> = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let known = broker.topics.get(topic.name.0.as_str());
        let mut topic_codes = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let metadata = p
                .committed_metadata
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let error = if let Err(error) = group_error {
                Some(error)
            } else if known
                .as_ref()
                .and_then(|t| t.partition(p.partition_index))
                .is_none()
            {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if metadata.len() > MAX_OFFSET_METADATA_BYTES {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else {
                entries.push((
                    topic.name.0.to_string(),
                    p.partition_index,
                    CommittedOffset {
                        offset: p.committed_offset,
                        metadata,
                        commit_ms: now,
                    },
                ));
                None
            };
            topic_codes.push((p.partition_index, error));
        }
        codes.push(topic_codes);
    }
    let write_error = if entries.is_empty() {
        None
    } else {
        let written = broker.groups.commit(&group_id, &entries);
        // flush = "every": nothing is acknowledged before it is on disk, offsets included.
        let synced = written.and_then(|()| match broker.config.flush {
            FlushPolicy::Every => tokio::task::block_in_place(|| broker.groups.flush()),
            FlushPolicy::Interval => Ok(()),
        });
        synced.err()
    };
    if let Some(e) = &write_error {
        tracing::error!(group = %group_id, "storing committed offsets failed: {e}");
    }
    if let Err(error) = group_error {
        tracing::info!(group = %group_id, member = %req.member_id, generation = req.generation_id_or_member_epoch, "refused offset commit: {error:?}");
    }
    let topics = req
        .topics
        .into_iter()
        .zip(codes)
        .map(|(topic, topic_codes)| {
            let partitions = topic_codes
                .into_iter()
                .map(|(partition, error)| {
                    let error = match (&write_error, error) {
                        (Some(_), None) => Some(ResponseError::KafkaStorageError),
                        (_, error) => error,
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(partition)
                        .with_error_code(code(error))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

pub fn offset_fetch(broker: &Broker, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    let group_id = req.group_id.0.to_string();
    let partition = |index: i32,
                     committed: Option<CommittedOffset>,
                     error: Option<ResponseError>| {
        let (offset, metadata) = committed.map_or((-1, String::new()), |c| (c.offset, c.metadata));
        OffsetFetchResponsePartition::default()
            .with_partition_index(index)
            .with_committed_offset(offset)
            .with_metadata(Some(text(metadata)))
            .with_error_code(code(error))
    };
    if let Err(error) = validate_group_id(&group_id) {
        let response = OffsetFetchResponse::default();
        return if version >= 2 {
            response.with_error_code(error.code())
        } else {
            response
        };
    }
    let lookup = |topic: &str, index: i32| {
        partition(
            index,
            broker.groups.committed(&group_id, topic, index),
            None,
        )
    };
    let topics = match req.topics {
        Some(topics) => topics
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partition_indexes
                    .iter()
                    .map(|&i| lookup(t.name.0.as_str(), i))
                    .collect();
                OffsetFetchResponseTopic::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect(),
        // null (v2+): everything the group committed.
        None => {
            let mut by_topic: Vec<OffsetFetchResponseTopic> = Vec::new();
            for (topic, index, committed) in broker.groups.committed_all(&group_id) {
                let entry = partition(index, Some(committed), None);
                match by_topic.iter_mut().find(|t| t.name.0.as_str() == topic) {
                    Some(t) => t.partitions.push(entry),
                    None => by_topic.push(
                        OffsetFetchResponseTopic::default()
                            .with_name(TopicName(text(topic)))
                            .with_partitions(vec![entry]),
                    ),
                }
            }
            by_topic
        }
    };
    OffsetFetchResponse::default().with_topics(topics)
}

pub fn list_groups(broker: &Broker, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let listed = broker
        .groups
        .list()
        .into_iter()
        .filter(|g| {
            version < 4
                || req.states_filter.is_empty()
                || req
                    .states_filter
                    .iter()
                    .any(|s| s.as_str().eq_ignore_ascii_case(g.state))
        })
        .map(|g| {
            let listed = ListedGroup::default()
                .with_group_id(GroupId(text(g.group_id)))
                .with_protocol_type(text(g.protocol_type));
            if version >= 4 {
                listed.with_group_state(text(g.state))
            } else {
                listed
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(listed)
}

pub fn describe_groups(
    broker: &Broker,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .into_iter()
        .map(|id| {
            let described = DescribedGroup::default().with_group_id(id.clone());
            if let Err(error) = validate_group_id(id.0.as_str()) {
                return described.with_error_code(error.code());
            }
            match broker.groups.describe(id.0.as_str()) {
                // Kafka describes a group it does not know as Dead, without an error.
                None => described.with_group_state(text("Dead")),
                Some(g) => {
                    let members = g
                        .members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(text(m.member_id))
                                .with_group_instance_id(if version >= 4 {
                                    m.group_instance_id.map(text)
                                } else {
                                    None
                                })
                                .with_client_id(text(m.client_id))
                                .with_client_host(text(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect();
                    described
                        .with_group_state(text(g.state))
                        .with_protocol_type(text(g.protocol_type))
                        .with_protocol_data(text(g.protocol))
                        .with_members(members)
                }
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub fn delete_groups(broker: &Broker, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let results = req
        .groups_names
        .into_iter()
        .map(|id| {
            let outcome = broker.groups.delete(id.0.as_str());
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code(outcome.err()))
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
