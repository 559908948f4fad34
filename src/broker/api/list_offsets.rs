//! ListOffsets: the earliest (-2), latest (-1) and max-timestamp (-3) offsets, and the first
//! offset at or after a timestamp (what `offsets_for_times` and `rill search --since` use).

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use crate::broker::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub fn handle(broker: &Broker, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|asked| {
            let topic = broker.topics.get(asked.name.0.as_str());
            let partitions = asked
                .partitions
                .into_iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        // Fields a version does not carry must stay at their defaults.
                        .with_leader_epoch(if version >= 4 { 0 } else { -1 });
                    let Some(partition) = topic.as_ref().and_then(|t| t.partition(p.partition_index))
                    else {
                        return response
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_offset(-1)
                            .with_timestamp(-1);
                    };
                    let state = partition.lock();
                    let log = &state.log;
                    let found = match p.timestamp {
                        LATEST => Ok(Some((log.log_end_offset(), -1))),
                        EARLIEST => Ok(Some((log.log_start_offset(), -1))),
                        MAX_TIMESTAMP => Ok(log.max_timestamp().map(|(ts, offset)| (offset, ts))),
                        ts if ts >= 0 => log.offset_for_timestamp(ts),
                        other => {
                            tracing::info!(timestamp = other, "ListOffsets with an unknown special timestamp");
                            return response
                                .with_error_code(ResponseError::InvalidRequest.code())
                                .with_offset(-1)
                                .with_timestamp(-1);
                        }
                    };
                    match found {
                        Ok(Some((offset, ts))) => response.with_offset(offset).with_timestamp(ts),
                        // No record at or after the timestamp: Kafka answers offset -1.
                        Ok(None) => response.with_offset(-1).with_timestamp(-1),
                        Err(e) => {
                            tracing::error!(topic = %asked.name.0, partition = p.partition_index, "offset lookup failed: {e}");
                            response
                                .with_error_code(ResponseError::KafkaStorageError.code())
                                .with_offset(-1)
                                .with_timestamp(-1)
                        }
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(asked.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
