//! Topic administration: CreateTopics, DeleteTopics and DescribeConfigs, so `rill topics`,
//! kcat, AdminClients and Kafka's own tools manage rill's topics the way they manage Kafka's.

use std::collections::HashSet;
use std::sync::Arc;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::topic_config::{self, TopicOverrides};
use crate::broker::topics::TopicError;
use crate::broker::Broker;

/// DescribeConfigs resource types (Kafka's ConfigResource.Type).
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// DescribeConfigs config sources.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
/// DescribeConfigs config types (v3+).
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_BOOLEAN: i8 = 1;

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub fn create_topics(
    broker: &Arc<Broker>,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut seen = HashSet::new();
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let result = CreatableTopicResult::default().with_name(t.name.clone());
            let fail = |error: ResponseError, message: String| {
                tracing::info!(topic = %name, "CreateTopics refused: {message}");
                result
                    .clone()
                    .with_error_code(error.code())
                    .with_error_message(Some(text(message)))
            };
            if !seen.insert(name.clone()) {
                return fail(ResponseError::InvalidRequest, format!("topic {name:?} is named twice in one request"));
            }
            if t.replication_factor > 1 {
                return fail(
                    ResponseError::InvalidReplicationFactor,
                    format!("replication factor {} is impossible on rill, a single-node broker; use 1 or -1", t.replication_factor),
                );
            }
            let node = broker.config.node_id;
            if t.assignments.iter().any(|a| a.broker_ids.iter().any(|b| b.0 != node)) {
                return fail(ResponseError::InvalidReplicaAssignment, format!("only broker {node} exists"));
            }
            let partitions = match (t.num_partitions, t.assignments.len()) {
                (-1, 0) => broker.config.default_partitions,
                (-1, n) => n as i32,
                (n, _) => n,
            };
            let mut overrides = TopicOverrides::new();
            for config in &t.configs {
                let Some(value) = &config.value else {
                    return fail(ResponseError::InvalidConfig, format!("config {} has no value", config.name.as_str()));
                };
                overrides.insert(config.name.to_string(), value.to_string());
            }
            let outcome = if req.validate_only {
                broker.topics.validate_create(&name, partitions, &overrides)
            } else {
                broker.create_topic(&name, partitions, overrides.clone()).map(|_| ())
            };
            if let Err(e) = outcome {
                return fail(e.kafka_error(), e.to_string());
            }
            if version >= 5 {
                let configs = topic_config::describe(broker.topics.defaults(), &overrides)
                    .into_iter()
                    .map(|(key, value, is_default)| {
                        CreatableTopicConfigs::default()
                            .with_name(text(key))
                            .with_value(Some(text(value)))
                            .with_config_source(if is_default { SOURCE_DEFAULT } else { SOURCE_TOPIC })
                    })
                    .collect();
                result
                    .with_num_partitions(partitions)
                    .with_replication_factor(1)
                    .with_configs(Some(configs))
            } else {
                result
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}

pub fn delete_topics(
    broker: &Arc<Broker>,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let results = req
        .topic_names
        .into_iter()
        .map(|name| {
            let result = DeletableTopicResult::default().with_name(Some(name.clone()));
            match broker.delete_topic(name.0.as_str()) {
                Ok(()) => result,
                Err(e) => {
                    tracing::info!(topic = %name.0, "DeleteTopics refused: {e}");
                    let result = result.with_error_code(e.kafka_error().code());
                    if version >= 5 {
                        result.with_error_message(Some(text(e.to_string())))
                    } else {
                        result
                    }
                }
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(results)
}

pub fn describe_configs(
    broker: &Arc<Broker>,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|resource| {
            let wanted = |key: &str| {
                resource
                    .configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == key))
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let entries: Vec<(String, String, i8, i8, bool)> = match resource.resource_type {
                RESOURCE_TOPIC => {
                    let Some(topic) = broker.topics.get(resource.resource_name.as_str()) else {
                        let e = TopicError::Unknown(resource.resource_name.to_string());
                        return result
                            .with_error_code(e.kafka_error().code())
                            .with_error_message(Some(text(e.to_string())));
                    };
                    topic_config::describe(broker.topics.defaults(), &topic.overrides())
                        .into_iter()
                        .map(|(key, value, is_default)| {
                            let source = if is_default { SOURCE_DEFAULT } else { SOURCE_TOPIC };
                            let kind = if key == "cleanup.policy" { TYPE_STRING } else if key == "max.message.bytes" { TYPE_INT } else { TYPE_LONG };
                            (key, value, source, kind, false)
                        })
                        .collect()
                }
                RESOURCE_BROKER => broker_configs(broker),
                other => {
                    return result
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(text(format!("rill describes topic (2) and broker (4) configs, not resource type {other}"))));
                }
            };
            let configs = entries
                .into_iter()
                .filter(|(key, ..)| wanted(key))
                .map(|(key, value, source, kind, read_only)| {
                    let entry = DescribeConfigsResourceResult::default()
                        .with_name(text(key))
                        .with_value(Some(text(value)))
                        .with_read_only(read_only)
                        .with_config_source(source);
                    if version >= 3 {
                        entry.with_config_type(kind)
                    } else {
                        entry
                    }
                })
                .collect();
            result.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// The broker-wide settings a Kafka tool expects to see, under Kafka's names; they come from
/// rill's config file and cannot be changed over the protocol.
fn broker_configs(broker: &Broker) -> Vec<(String, String, i8, i8, bool)> {
    let c = &broker.config;
    let row = |key: &str, value: String, kind: i8| {
        (key.to_string(), value, SOURCE_STATIC_BROKER, kind, true)
    };
    vec![
        row(
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
            TYPE_BOOLEAN,
        ),
        row("num.partitions", c.default_partitions.to_string(), TYPE_INT),
        row(
            "log.retention.ms",
            c.log.retention_ms.to_string(),
            TYPE_LONG,
        ),
        row(
            "log.retention.bytes",
            c.log.retention_bytes.to_string(),
            TYPE_LONG,
        ),
        row(
            "log.segment.bytes",
            c.log.segment_bytes.to_string(),
            TYPE_INT,
        ),
        row("log.roll.ms", c.log.segment_ms.to_string(), TYPE_LONG),
        row(
            "message.max.bytes",
            c.log.max_message_bytes.to_string(),
            TYPE_INT,
        ),
        row(
            "socket.request.max.bytes",
            c.max_request_bytes.to_string(),
            TYPE_INT,
        ),
        row(
            "connections.max.idle.ms",
            c.idle_timeout_ms.to_string(),
            TYPE_LONG,
        ),
    ]
}
