//! Fetch: whole record batches, as stored, starting with the batch that holds the asked offset.
//! Long-polls until `min_bytes` are available or `max_wait_ms` passes, woken by every append.
//! Honours `max_bytes` and each partition's `partition_max_bytes`, except that the first batch
//! of the first partition with data is always returned whole (KIP-74), so a consumer can never
//! be stuck behind a batch larger than its limits.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use crate::broker::log::ReadOutcome;
use crate::broker::Broker;

/// Longest long-poll we honour, whatever the client asks: keeps shutdown and idle checks prompt.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

pub async fn handle(broker: &Arc<Broker>, req: FetchRequest, version: i16) -> FetchResponse {
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    loop {
        // Register for the next append before reading, so an append between the read and
        // the wait still wakes us.
        let appended = broker.appended();
        tokio::pin!(appended);
        appended.as_mut().enable();

        let (response, bytes, errors) = read_all(broker, &req, version);
        if bytes >= min_bytes.max(1) || errors || Instant::now() >= deadline {
            return response;
        }
        if tokio::time::timeout_at(deadline, appended).await.is_err() {
            // Timed out: answer with what there is now (usually nothing).
            return read_all(broker, &req, version).0;
        }
    }
}

/// One pass over every asked partition. Returns the response, its record bytes, and whether a
/// partition had an error (which is answered at once, as Kafka does).
fn read_all(broker: &Broker, req: &FetchRequest, version: i16) -> (FetchResponse, usize, bool) {
    let asked = if req.max_bytes > 0 {
        req.max_bytes as usize
    } else {
        usize::MAX
    };
    let mut remaining = asked.min(broker.config.fetch_max_bytes);
    let mut total = 0usize;
    let mut any_error = false;
    let mut topics = Vec::with_capacity(req.topics.len());
    for fetch_topic in &req.topics {
        let topic = broker.topics.get(fetch_topic.topic.0.as_str());
        let mut partitions = Vec::with_capacity(fetch_topic.partitions.len());
        for asked in &fetch_topic.partitions {
            let data = PartitionData::default()
                .with_partition_index(asked.partition)
                .with_aborted_transactions(Some(Vec::new()))
                .with_preferred_read_replica(BrokerId(-1));
            let Some(partition) = topic.as_ref().and_then(|t| t.partition(asked.partition)) else {
                any_error = true;
                partitions
                    .push(data.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            let (outcome, start, end) = {
                let state = partition.lock();
                let limit = (asked.partition_max_bytes.max(0) as usize).min(remaining);
                let outcome = if limit == 0 {
                    Ok(ReadOutcome::Batches(Vec::new()))
                } else {
                    state.log.read(asked.fetch_offset, limit)
                };
                (
                    outcome,
                    state.log.log_start_offset(),
                    state.log.log_end_offset(),
                )
            };
            let data = data
                .with_high_watermark(end)
                .with_last_stable_offset(end)
                .with_log_start_offset(if version >= 5 { start } else { -1 });
            match outcome {
                Ok(ReadOutcome::Batches(bytes)) => {
                    // KIP-74 lets only the first non-empty partition exceed the limits.
                    let bytes = if total > 0 && bytes.len() > remaining {
                        Vec::new()
                    } else {
                        bytes
                    };
                    total += bytes.len();
                    remaining = remaining.saturating_sub(bytes.len());
                    partitions.push(data.with_records(Some(Bytes::from(bytes))));
                }
                Ok(ReadOutcome::OffsetOutOfRange) => {
                    any_error = true;
                    partitions.push(data.with_error_code(ResponseError::OffsetOutOfRange.code()));
                }
                Err(e) => {
                    any_error = true;
                    tracing::error!(topic = %fetch_topic.topic.0, partition = asked.partition, "read failed: {e}");
                    partitions.push(data.with_error_code(ResponseError::KafkaStorageError.code()));
                }
            }
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(fetch_topic.topic.clone())
                .with_partitions(partitions),
        );
    }
    let response = FetchResponse::default()
        .with_session_id(0)
        .with_responses(topics);
    (response, total, any_error)
}
