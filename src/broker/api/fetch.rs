//! Fetch: whole record batches, as stored, starting with the batch that holds the asked offset.
//! Long-polls until `min_bytes` are available or `max_wait_ms` passes, woken by every append.
//! Honours `max_bytes` and each partition's `partition_max_bytes`, except that the first batch
//! of the first partition with data is always returned whole (KIP-74), so a consumer can never
//! be stuck behind a batch larger than its limits.
//!
//! Records are not copied into the response: each partition's records stay file ranges
//! (see `log::FileSlice`) until [`encode`] lays the response out as encoded bytes and file
//! ranges in wire order, which a plaintext connection sends with `sendfile`.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ResponseHeader};
use kafka_protocol::protocol::{Encodable, HeaderVersion};
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use crate::broker::log::{ReadOutcome, Records, ZERO_COPY_MIN_BYTES};
use crate::broker::response::Response;
use crate::broker::Broker;

/// Longest long-poll we honour, whatever the client asks: keeps shutdown and idle checks prompt.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

/// A Fetch response whose partitions' records are kept apart from it until [`encode`].
#[derive(Debug)]
pub struct FetchReply {
    pub response: FetchResponse,
    /// `records[t][p]`: the records of partition `p` of topic `t` of the response; None for a
    /// partition with an error (encoded with its own, empty, `records` field). Topics beyond
    /// the end (denied ones, appended later) have none.
    pub(super) records: Vec<Vec<Option<Records>>>,
}

pub async fn handle(broker: &Arc<Broker>, req: FetchRequest, version: i16) -> FetchReply {
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    loop {
        // Register for the next append before reading, so an append between the read and
        // the wait still wakes us.
        let appended = broker.appended();
        tokio::pin!(appended);
        appended.as_mut().enable();

        let (reply, bytes, errors) = read_all(broker, &req, version, ZERO_COPY_MIN_BYTES);
        if bytes >= min_bytes.max(1) || errors || Instant::now() >= deadline {
            return reply;
        }
        if tokio::time::timeout_at(deadline, appended).await.is_err() {
            // Timed out: answer with what there is now (usually nothing).
            return read_all(broker, &req, version, ZERO_COPY_MIN_BYTES).0;
        }
    }
}

/// One pass over every asked partition. Returns the response, its record bytes, and whether a
/// partition had an error (which is answered at once, as Kafka does). Reads shorter than
/// `copy_below` bytes are copied (see `PartitionLog::read`).
pub(super) fn read_all(
    broker: &Broker,
    req: &FetchRequest,
    version: i16,
    copy_below: usize,
) -> (FetchReply, usize, bool) {
    let asked = if req.max_bytes > 0 {
        req.max_bytes as usize
    } else {
        usize::MAX
    };
    let mut remaining = asked.min(broker.config.fetch_max_bytes);
    let mut total = 0usize;
    let mut any_error = false;
    let mut topics = Vec::with_capacity(req.topics.len());
    let mut records = Vec::with_capacity(req.topics.len());
    for fetch_topic in &req.topics {
        let topic = broker.topics.get(fetch_topic.topic.0.as_str());
        let mut partitions = Vec::with_capacity(fetch_topic.partitions.len());
        let mut topic_records = Vec::with_capacity(fetch_topic.partitions.len());
        for asked in &fetch_topic.partitions {
            let data = PartitionData::default()
                .with_partition_index(asked.partition)
                .with_aborted_transactions(Some(Vec::new()))
                .with_preferred_read_replica(BrokerId(-1));
            let Some(partition) = topic.as_ref().and_then(|t| t.partition(asked.partition)) else {
                any_error = true;
                partitions
                    .push(data.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                topic_records.push(None);
                continue;
            };
            // KIP-74: the first batch of the first partition to return anything may exceed
            // both limits (a consumer always makes progress); every other read stays within
            // them, or returns nothing.
            let min_one = total == 0;
            let (outcome, start, end) = {
                let state = partition.lock();
                let limit = (asked.partition_max_bytes.max(0) as usize).min(remaining);
                let outcome = if limit == 0 && !min_one {
                    Ok(ReadOutcome::Batches(Records::default()))
                } else {
                    state
                        .log
                        .read(asked.fetch_offset, limit, min_one, copy_below)
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
                Ok(ReadOutcome::Batches(read)) => {
                    total += read.len();
                    remaining = remaining.saturating_sub(read.len());
                    // The records field stays empty here: `encode` puts `read` in its place.
                    partitions.push(data);
                    topic_records.push(Some(read));
                }
                Ok(ReadOutcome::OffsetOutOfRange) => {
                    any_error = true;
                    partitions.push(data.with_error_code(ResponseError::OffsetOutOfRange.code()));
                    topic_records.push(None);
                }
                Err(e) => {
                    any_error = true;
                    tracing::error!(topic = %fetch_topic.topic.0, partition = asked.partition, "read failed: {e}");
                    partitions.push(data.with_error_code(ResponseError::KafkaStorageError.code()));
                    topic_records.push(None);
                }
            }
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(fetch_topic.topic.clone())
                .with_partitions(partitions),
        );
        records.push(topic_records);
    }
    let response = FetchResponse::default()
        .with_session_id(0)
        .with_responses(topics);
    (FetchReply { response, records }, total, any_error)
}

/// Lays out a Fetch response (header included) as encoded bytes and each partition's records
/// in wire order, with kafka-protocol encoding every field: the same bytes as encoding the
/// whole response with the records in it, without copying the records.
///
/// In the versions rill serves (4-11, not flexible) the responses array is the last field of
/// the response, the partitions array the last of a topic, and the records (i32 length +
/// bytes) the last of a partition. So each level is encoded with that last field empty (an
/// i32 zero at the end of the buffer), the zero is replaced by the real count or length, and
/// the elements (or records) follow.
pub fn encode(correlation_id: i32, version: i16, reply: FetchReply) -> Result<Response, String> {
    if version >= 12 {
        return Err(format!(
            "Fetch v{version} is flexible: its records are not the last field of a partition"
        ));
    }
    let FetchReply {
        mut response,
        records,
    } = reply;
    let mut out = Response::default();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(out.buf(), FetchResponse::header_version(version))
        .map_err(|e| e.to_string())?;
    let topics = std::mem::take(&mut response.responses);
    put_with_count(out.buf(), &response, version, topics.len())?;
    let mut records = records.into_iter();
    for mut topic in topics {
        let mut topic_records = records.next().unwrap_or_default().into_iter();
        let partitions = std::mem::take(&mut topic.partitions);
        put_with_count(out.buf(), &topic, version, partitions.len())?;
        for partition in partitions {
            match topic_records.next().flatten() {
                Some(read) => {
                    let partition = partition.with_records(Some(Bytes::new()));
                    put_with_count(out.buf(), &partition, version, read.len())?;
                    out.push_records(read);
                }
                None => partition
                    .encode(out.buf(), version)
                    .map_err(|e| e.to_string())?,
            }
        }
    }
    Ok(out)
}

/// Encodes `value`, whose encoding ends with an i32 zero (its last field, empty), and puts
/// `count` in place of that zero.
fn put_with_count<T: Encodable>(
    buf: &mut BytesMut,
    value: &T,
    version: i16,
    count: usize,
) -> Result<(), String> {
    let start = buf.len();
    value.encode(buf, version).map_err(|e| e.to_string())?;
    let at = buf.len().saturating_sub(4);
    if at < start || buf[at..] != [0; 4] {
        return Err(format!(
            "Fetch v{version}: the encoding does not end with an empty array or bytes field"
        ));
    }
    let count = i32::try_from(count).map_err(|_| format!("{count} elements or bytes"))?;
    buf[at..].copy_from_slice(&count.to_be_bytes());
    Ok(())
}
