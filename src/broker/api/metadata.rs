//! Metadata: which brokers and topics exist, and who leads each partition (always this node).
//! Asking for a topic that does not exist creates it when auto-creation is on (Kafka's
//! auto.create.topics.enable), so `kcat -P -t new-topic` just works.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::authorize::Access;
use crate::broker::auth::Operation;
use crate::broker::topics::{validate_topic_name, Topic};
use crate::broker::Broker;

/// `advertised` is the endpoint of the listener the request came in on. Topics the user may
/// not describe are hidden from "all topics" and refused (TOPIC_AUTHORIZATION_FAILED) when
/// named; auto-creation needs write permission on the topic.
pub fn handle(
    broker: &Arc<Broker>,
    req: MetadataRequest,
    version: i16,
    advertised: (String, i32),
    access: &Access,
) -> MetadataResponse {
    let node = BrokerId(broker.config.node_id);
    // v0 sends an empty list for "all topics"; v1+ sends null for all and [] for none.
    let requested: Option<Vec<String>> = match req.topics {
        None => None,
        Some(topics) if version == 0 && topics.is_empty() => None,
        Some(topics) => Some(
            topics
                .into_iter()
                .filter_map(|t| t.name.map(|n| n.0.to_string()))
                .collect(),
        ),
    };
    let allow_create = version < 4 || req.allow_auto_topic_creation;
    let topics = match requested {
        None => broker
            .topics
            .list()
            .iter()
            .filter(|t| access.allows(Operation::Describe, &t.name))
            .map(|t| describe(t, node, version))
            .collect(),
        Some(names) => names
            .iter()
            .map(|name| {
                if !access.allows(Operation::Describe, name) {
                    tracing::info!(user = access.name(), topic = %name, "Metadata refused: no permission on the topic");
                    return failed(name, ResponseError::TopicAuthorizationFailed);
                }
                let may_create = allow_create && access.allows(Operation::Write, name);
                lookup(broker, name, may_create, node, version)
            })
            .collect(),
    };
    let (host, port) = advertised;
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(node)
            .with_host(StrBytes::from_string(host))
            .with_port(port)])
        .with_cluster_id((version >= 2).then(|| StrBytes::from_string(broker.cluster_id.clone())))
        .with_controller_id(if version >= 1 { node } else { BrokerId(-1) })
        .with_topics(topics)
}

fn lookup(
    broker: &Arc<Broker>,
    name: &str,
    allow_create: bool,
    node: BrokerId,
    version: i16,
) -> MetadataResponseTopic {
    let fail = |error: ResponseError| failed(name, error);
    if let Err(e) = validate_topic_name(name) {
        tracing::info!("metadata request for an invalid topic name: {e}");
        return fail(ResponseError::InvalidTopicException);
    }
    if let Some(topic) = broker.topics.get(name) {
        return describe(&topic, node, version);
    }
    if !(allow_create && broker.config.auto_create_topics) {
        return fail(ResponseError::UnknownTopicOrPartition);
    }
    match broker.create_topic(name, broker.config.default_partitions, Default::default()) {
        Ok(topic) => describe(&topic, node, version),
        // Another request created it between our lookup and our create.
        Err(e) if e.kafka_error() == ResponseError::TopicAlreadyExists => {
            match broker.topics.get(name) {
                Some(topic) => describe(&topic, node, version),
                None => fail(ResponseError::LeaderNotAvailable),
            }
        }
        Err(e) => {
            tracing::error!(topic = name, "auto-creating topic failed: {e}");
            fail(e.kafka_error())
        }
    }
}

fn failed(name: &str, error: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
        .with_error_code(error.code())
}

fn describe(topic: &Topic, node: BrokerId, version: i16) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p.index)
                .with_leader_id(node)
                .with_leader_epoch(if version >= 7 { 0 } else { -1 })
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_partitions(partitions)
}
