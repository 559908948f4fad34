//! Test-only: builds record batches v2 with kafka-protocol's encoder, the way producers send
//! them, for the storage and request-handler tests.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// One batch holding `records` as (timestamp, value), offsets from 0. `producer` is
/// (producer id, epoch, first sequence) for an idempotent producer; None for a plain one.
pub(crate) fn encode(
    records: &[(i64, String)],
    producer: Option<(i64, i16, i32)>,
    compression: Compression,
) -> Vec<u8> {
    let (producer_id, producer_epoch, first_seq) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (timestamp, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch wherever offset - sequence changes, so sequences
            // count up with the offsets (a plain producer's batch then has base sequence -1).
            sequence: first_seq + i as i32,
            timestamp: *timestamp,
            key: None,
            value: Some(Bytes::from(value.clone())),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode batch");
    buf.to_vec()
}
