//! Produce: validate each partition's record batches (CRC-32C, magic, size), check idempotent
//! sequences, append them as received, and acknowledge. A batch is in the file (the page cache)
//! before it is acknowledged, so killing the broker loses nothing it acknowledged; fsync timing
//! follows the flush policy.

use std::sync::Arc;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;

use crate::broker::log::batch::validate_batches;
use crate::broker::partition::AppendError;
use crate::broker::Broker;
use crate::config::FlushPolicy;

/// Returns None for acks=0, which Kafka never answers.
pub async fn handle(
    broker: &Arc<Broker>,
    req: ProduceRequest,
    version: i16,
) -> Option<ProduceResponse> {
    let acks = req.acks;
    let acks_valid = (-1..=1).contains(&acks);
    if !acks_valid {
        tracing::info!(acks, "refused a produce request with invalid acks");
    }
    if req.transactional_id.is_some() {
        tracing::warn!("refused a transactional produce: rill does not implement transactions");
    }
    let now = super::now_ms();
    let mut wrote_any = false;
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for topic_data in req.topic_data {
        let name = topic_data.name.0.to_string();
        let topic = broker.topics.get(&name);
        let mut partition_responses = Vec::with_capacity(topic_data.partition_data.len());
        for data in topic_data.partition_data {
            let response = PartitionProduceResponse::default()
                .with_index(data.index)
                .with_log_append_time_ms(-1);
            let fail = |error: ResponseError| response.clone().with_error_code(error.code());
            if !acks_valid {
                partition_responses.push(fail(ResponseError::InvalidRequiredAcks));
                continue;
            }
            if req.transactional_id.is_some() {
                partition_responses.push(fail(ResponseError::UnsupportedVersion));
                continue;
            }
            let Some(partition) = topic.as_ref().and_then(|t| t.partition(data.index)) else {
                partition_responses.push(fail(ResponseError::UnknownTopicOrPartition));
                continue;
            };
            let max_bytes = topic.as_ref().map_or(0, |t| t.max_message_bytes());
            let Some(records) = data.records else {
                partition_responses.push(fail(ResponseError::InvalidRecord));
                continue;
            };
            let headers = match validate_batches(&records, max_bytes) {
                Ok(headers) => headers,
                Err(e) => {
                    tracing::info!(topic = %name, partition = data.index, "refused batch: {e}");
                    partition_responses
                        .push(response.clone().with_error_code(e.kafka_error_code()));
                    continue;
                }
            };
            if headers
                .iter()
                .any(|h| h.is_transactional() || h.is_control())
            {
                partition_responses.push(fail(ResponseError::UnsupportedVersion));
                continue;
            }
            // The only copy: the log rewrites base offsets in place before writing.
            let mut bytes = records.to_vec();
            let appended = if broker.config.flush == FlushPolicy::Every {
                tokio::task::block_in_place(|| {
                    partition.append(&mut bytes, &headers, now).and_then(|a| {
                        partition
                            .lock()
                            .log
                            .flush()
                            .map(|()| a)
                            .map_err(AppendError::Storage)
                    })
                })
            } else {
                partition.append(&mut bytes, &headers, now)
            };
            match appended {
                Ok(appended) => {
                    wrote_any |= appended.wrote;
                    partition_responses.push(
                        response
                            .with_base_offset(appended.base_offset)
                            .with_log_start_offset(if version >= 5 {
                                appended.log_start_offset
                            } else {
                                -1
                            }),
                    );
                }
                Err(AppendError::Producer(error)) => {
                    tracing::info!(topic = %name, partition = data.index, "refused idempotent batch: {error:?}");
                    partition_responses.push(fail(error));
                }
                Err(AppendError::Storage(e)) => {
                    tracing::error!(topic = %name, partition = data.index, "append failed, nothing written: {e}");
                    partition_responses.push(fail(ResponseError::KafkaStorageError));
                }
            }
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_partition_responses(partition_responses),
        );
    }
    if wrote_any {
        broker.notify_appended();
    }
    (acks != 0).then(|| ProduceResponse::default().with_responses(responses))
}
