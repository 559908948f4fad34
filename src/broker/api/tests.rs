//! Request handling against a real broker in a temp dir: the error codes clients rely on, and
//! property tests that no frame, however malformed, can panic the broker.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, ProduceResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::Compression;
use kafka_protocol::ResponseError;
use proptest::prelude::*;

use super::Reply;
use crate::broker::log::test_batches;
use crate::broker::Broker;
use crate::config::BrokerConfig;

/// The request handler as a connection from this peer calls it.
async fn handle(broker: &Arc<Broker>, frame: Bytes) -> Reply {
    let mut session = crate::broker::session::Session::plaintext(
        "127.0.0.1:40000".parse().expect("addr"),
        broker.advertised(),
    );
    super::handle(broker, frame, &mut session).await
}

fn open_broker() -> (tempfile::TempDir, Arc<Broker>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = BrokerConfig {
        data_dir: Some(dir.path().to_path_buf()),
        ..BrokerConfig::default()
    };
    let broker = Broker::open(config, "127.0.0.1:9092".parse().expect("addr")).expect("broker");
    (dir, broker)
}

fn runtime() -> tokio::runtime::Runtime {
    // Paused time: a long-poll in a mutated Fetch completes instantly instead of waiting.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime")
}

fn frame<R: Encodable>(key: ApiKey, version: i16, request: &R) -> Bytes {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("test")))
        .encode(&mut buf, key.request_header_version(version))
        .expect("header");
    request.encode(&mut buf, version).expect("body");
    buf.freeze()
}

fn response<R: Decodable>(key: ApiKey, version: i16, reply: Reply) -> R {
    let Reply::Send(bytes) = reply else {
        panic!("expected a response, got {reply:?}");
    };
    let mut bytes = bytes.freeze();
    let header_version = key.response_header_version(version);
    kafka_protocol::messages::ResponseHeader::decode(&mut bytes, header_version).expect("header");
    R::decode(&mut bytes, version).expect("body")
}

fn batch(values: &[&str], producer: Option<(i64, i16, i32)>, compression: Compression) -> Bytes {
    let records: Vec<(i64, String)> = values
        .iter()
        .enumerate()
        .map(|(i, value)| (1_700_000_000_000 + i as i64, value.to_string()))
        .collect();
    Bytes::from(test_batches::encode(&records, producer, compression))
}

fn produce(topic: &str, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

fn produce_result(
    broker: &Arc<Broker>,
    rt: &tokio::runtime::Runtime,
    req: &ProduceRequest,
) -> (i16, i64) {
    let reply = rt.block_on(handle(broker, frame(ApiKey::Produce, 7, req)));
    let resp: ProduceResponse = response(ApiKey::Produce, 7, reply);
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[test]
fn produce_errors_use_kafka_codes() {
    let (_dir, broker) = open_broker();
    let rt = runtime();
    broker
        .create_topic("t", 1, Default::default())
        .expect("topic");

    let good = batch(&["a", "b"], None, Compression::None);
    assert_eq!(
        produce_result(&broker, &rt, &produce("t", good.clone(), 1)),
        (0, 0)
    );
    assert_eq!(
        produce_result(&broker, &rt, &produce("t", good.clone(), -1)),
        (0, 2)
    );

    let mut corrupt = good.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let (code, _) = produce_result(&broker, &rt, &produce("t", Bytes::from(corrupt), 1));
    assert_eq!(code, ResponseError::CorruptMessage.code());

    let big = "x".repeat(2 * 1024 * 1024);
    let (code, _) = produce_result(
        &broker,
        &rt,
        &produce("t", batch(&[&big], None, Compression::None), 1),
    );
    assert_eq!(code, ResponseError::MessageTooLarge.code());

    let (code, _) = produce_result(&broker, &rt, &produce("t", good.clone(), 2));
    assert_eq!(code, ResponseError::InvalidRequiredAcks.code());

    let (code, _) = produce_result(&broker, &rt, &produce("missing", good.clone(), 1));
    assert_eq!(code, ResponseError::UnknownTopicOrPartition.code());

    // acks=0 is never answered.
    let reply = rt.block_on(handle(
        &broker,
        frame(ApiKey::Produce, 7, &produce("t", good, 0)),
    ));
    assert!(matches!(reply, Reply::Nothing), "{reply:?}");
}

#[test]
fn idempotent_retry_is_not_written_twice() {
    let (_dir, broker) = open_broker();
    let rt = runtime();
    broker
        .create_topic("t", 1, Default::default())
        .expect("topic");
    let first = produce(
        "t",
        batch(&["a", "b"], Some((7, 0, 0)), Compression::None),
        -1,
    );
    let second = produce("t", batch(&["c"], Some((7, 0, 2)), Compression::Lz4), -1);
    assert_eq!(produce_result(&broker, &rt, &first), (0, 0));
    assert_eq!(produce_result(&broker, &rt, &second), (0, 2));
    // The retry of the first batch is acknowledged with its original offset...
    assert_eq!(produce_result(&broker, &rt, &first), (0, 0));
    let end = broker.topics.get("t").expect("t").partitions[0]
        .lock()
        .log
        .log_end_offset();
    // ...and nothing new was written.
    assert_eq!(end, 3);
    // A gap in sequence numbers is refused.
    let gap = produce("t", batch(&["d"], Some((7, 0, 9)), Compression::None), -1);
    let (code, _) = produce_result(&broker, &rt, &gap);
    assert_eq!(code, ResponseError::OutOfOrderSequenceNumber.code());
}

#[test]
fn fetch_returns_whole_batches_from_the_asked_offset() {
    let (_dir, broker) = open_broker();
    let rt = runtime();
    broker
        .create_topic("t", 1, Default::default())
        .expect("topic");
    produce_result(
        &broker,
        &rt,
        &produce("t", batch(&["a", "b", "c"], None, Compression::Gzip), 1),
    );
    produce_result(
        &broker,
        &rt,
        &produce("t", batch(&["d"], None, Compression::None), 1),
    );
    let fetch = |offset: i64| {
        FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![FetchPartition::default()
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])])
    };
    let resp: FetchResponse = response(
        ApiKey::Fetch,
        11,
        rt.block_on(handle(&broker, frame(ApiKey::Fetch, 11, &fetch(1)))),
    );
    let data = &resp.responses[0].partitions[0];
    assert_eq!((data.error_code, data.high_watermark), (0, 4));
    let mut records = data.records.clone().expect("records");
    let batches =
        kafka_protocol::records::RecordBatchDecoder::decode_all(&mut records).expect("decode");
    // Offset 1 lives in the first (gzip) batch: it comes back whole, then the next one.
    let offsets: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.records.iter().map(|r| r.offset))
        .collect();
    assert_eq!(offsets, vec![0, 1, 2, 3]);

    let resp: FetchResponse = response(
        ApiKey::Fetch,
        11,
        rt.block_on(handle(&broker, frame(ApiKey::Fetch, 11, &fetch(99)))),
    );
    assert_eq!(
        resp.responses[0].partitions[0].error_code,
        ResponseError::OffsetOutOfRange.code()
    );
}

#[test]
fn metadata_refuses_invalid_names_and_auto_creates_valid_ones() {
    let (_dir, broker) = open_broker();
    let rt = runtime();
    let req = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(Some(
            ["new-topic", "bad name", ".."]
                .iter()
                .map(|n| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_static_str(n))))
                })
                .collect(),
        ));
    let resp: MetadataResponse = response(
        ApiKey::Metadata,
        9,
        rt.block_on(handle(&broker, frame(ApiKey::Metadata, 9, &req))),
    );
    let codes: Vec<i16> = resp.topics.iter().map(|t| t.error_code).collect();
    let invalid = ResponseError::InvalidTopicException.code();
    assert_eq!(codes, vec![0, invalid, invalid]);
    assert!(broker.topics.get("new-topic").is_some());
}

#[test]
fn unsupported_api_versions_version_gets_error_35_in_a_v0_body() {
    let (_dir, broker) = open_broker();
    let rt = runtime();
    let mut raw = BytesMut::new();
    raw.extend_from_slice(&(ApiKey::ApiVersions as i16).to_be_bytes());
    raw.extend_from_slice(&99i16.to_be_bytes());
    raw.extend_from_slice(&7i32.to_be_bytes());
    raw.extend_from_slice(&(-1i16).to_be_bytes());
    let resp: ApiVersionsResponse = response(
        ApiKey::ApiVersions,
        0,
        rt.block_on(handle(&broker, raw.freeze())),
    );
    assert_eq!(resp.error_code, ResponseError::UnsupportedVersion.code());
    assert!(resp
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::Produce as i16 && k.min_version == 3));
}

#[test]
fn unknown_keys_unsupported_versions_and_lying_lengths_close_the_connection() {
    let (_dir, broker) = open_broker();
    let rt = runtime();
    let close = |bytes: Vec<u8>| {
        matches!(
            rt.block_on(handle(&broker, Bytes::from(bytes))),
            Reply::Close(_)
        )
    };
    // Unknown API key 999.
    assert!(close(vec![3, 231, 0, 0, 0, 0, 0, 1, 255, 255]));
    // Metadata v99.
    assert!(close(vec![0, 3, 0, 99, 0, 0, 0, 1, 255, 255]));
    // Metadata v1 claiming 2^31-1 topics in a 14-byte request: refused, not allocated.
    let mut huge = vec![0, 3, 0, 1, 0, 0, 0, 1, 255, 255];
    huge.extend_from_slice(&i32::MAX.to_be_bytes());
    assert!(close(huge));
    // Too short for a header.
    assert!(close(vec![0, 3]));
}

/// Valid requests of every served API, to mutate.
fn seed_frames() -> Vec<Bytes> {
    let records = batch(&["x", "y"], Some((3, 0, 0)), Compression::Snappy);
    vec![
        frame(ApiKey::Produce, 7, &produce("t", records.clone(), 1)),
        frame(ApiKey::Produce, 3, &produce("t", records, -1)),
        frame(
            ApiKey::Metadata,
            9,
            &MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("t"))))])),
        ),
        frame(
            ApiKey::Fetch,
            11,
            &FetchRequest::default()
                .with_max_wait_ms(100)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str("t")))
                    .with_partitions(vec![
                        FetchPartition::default().with_partition_max_bytes(1024)
                    ])]),
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let (_dir, broker) = open_broker();
        let rt = runtime();
        let _ = rt.block_on(handle(&broker, Bytes::from(bytes)));
    }

    #[test]
    fn mutated_requests_never_panic(
        seed in 0usize..4,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let (_dir, broker) = open_broker();
        broker.create_topic("t", 1, Default::default()).expect("topic");
        let rt = runtime();
        let mut bytes = seed_frames()[seed].to_vec();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        let _ = rt.block_on(handle(&broker, Bytes::from(bytes)));
    }
}
