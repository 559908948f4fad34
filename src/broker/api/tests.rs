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
    let Reply::Send(response) = reply else {
        panic!("expected a response, got {reply:?}");
    };
    let mut bytes = response.to_bytes().expect("read records");
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

/// KIP-74, as Kafka reads it: only the first partition to return anything may return a
/// batch over the limits; a later partition whose first batch is over its
/// `partition_max_bytes` returns nothing, even where the request's `max_bytes` has room.
#[test]
fn only_the_first_partition_with_records_may_exceed_the_fetch_limits() {
    let (_dir, broker) = open_broker();
    let rt = runtime();
    for topic in ["small", "big"] {
        broker
            .create_topic(topic, 1, Default::default())
            .expect("topic");
    }
    produce_result(
        &broker,
        &rt,
        &produce("small", batch(&["s"], None, Compression::None), 1),
    );
    let large = "r".repeat(3000);
    produce_result(
        &broker,
        &rt,
        &produce("big", batch(&[&large], None, Compression::None), 1),
    );
    let batches = |small_offset: i64, max_bytes: i32| -> Vec<usize> {
        let asked = |topic: &'static str, offset: i64| {
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str(topic)))
                .with_partitions(vec![FetchPartition::default()
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1000)])
        };
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_topics(vec![asked("small", small_offset), asked("big", 0)]);
        let resp: FetchResponse = response(
            ApiKey::Fetch,
            11,
            rt.block_on(handle(&broker, frame(ApiKey::Fetch, 11, &req))),
        );
        resp.responses
            .iter()
            .map(|t| {
                let mut records = t.partitions[0].records.clone().unwrap_or_default();
                kafka_protocol::records::RecordBatchDecoder::decode_all(&mut records)
                    .expect("decode")
                    .len()
            })
            .collect()
    };
    // "small" returns its batch first: "big"'s 3 KB batch is over its 1,000 bytes.
    assert_eq!(batches(0, 1 << 20), vec![1, 0]);
    // "small" has nothing more: "big" is the first to return anything, so its batch comes.
    assert_eq!(batches(1, 1 << 20), vec![0, 1]);
    // Even a request for no bytes at all gets the first partition's first batch.
    assert_eq!(batches(0, 0), vec![1, 0]);
}

/// Today's copying path, the reference: every read copied into memory (one pread, cut at
/// the last whole batch) and the whole response encoded by kafka-protocol with the records in.
fn fetch_copied(broker: &Broker, req: &FetchRequest, version: i16) -> Bytes {
    let (reply, _, _) = super::fetch::read_all(broker, req, version, usize::MAX);
    let mut response = reply.response;
    for (topic, records) in response.responses.iter_mut().zip(&reply.records) {
        for (partition, records) in topic.partitions.iter_mut().zip(records) {
            if let Some(records) = records {
                assert!(records
                    .chunks()
                    .iter()
                    .all(|c| matches!(c, crate::broker::log::Chunk::Copied(_))));
                partition.records = Some(records.to_bytes().expect("read"));
            }
        }
    }
    response.responses.push(denied_topic());
    match super::encode(7, ApiKey::Fetch, version, &response) {
        Reply::Send(bytes) => bytes.to_bytes().expect("bytes"),
        other => panic!("{other:?}"),
    }
}

/// The zero-copy path: reads of at least `copy_below` bytes as file ranges, laid out by
/// `fetch::encode`, then rendered the way the wire gets them.
fn fetch_zero_copy(broker: &Broker, req: &FetchRequest, version: i16, copy_below: usize) -> Bytes {
    let (mut reply, _, _) = super::fetch::read_all(broker, req, version, copy_below);
    reply.response.responses.push(denied_topic());
    let response = super::fetch::encode(7, version, reply).expect("encode");
    response.to_bytes().expect("read file ranges")
}

/// A topic the user may not read, appended after the served ones as `api::handle` does.
fn denied_topic() -> kafka_protocol::messages::fetch_response::FetchableTopicResponse {
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    FetchableTopicResponse::default()
        .with_topic(TopicName(StrBytes::from_static_str("secret")))
        .with_partitions(vec![PartitionData::default()
            .with_partition_index(0)
            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
            .with_high_watermark(-1)
            .with_last_stable_offset(-1)
            .with_log_start_offset(-1)
            .with_aborted_transactions(Some(Vec::new()))
            .with_preferred_read_replica(kafka_protocol::messages::BrokerId(-1))])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The zero-copy Fetch response is byte for byte today's encoded response, for every
    /// served version: several topics and partitions (one unknown, one of an unknown topic,
    /// one denied), several segments per partition (segment.bytes 1 KiB), batches from a few
    /// bytes to larger than a segment, KIP-74 (a first batch over the limits, later ones
    /// dropped), limits inside a segment's last batch, offsets out of range, empty partitions
    /// at their log end, and sparse or dense offset indexes.
    #[test]
    fn zero_copy_fetch_responses_are_todays_bytes(
        index_interval in prop::sample::select(vec![1u32, 100, 4096]),
        produced in proptest::collection::vec(
            (0i32..3, proptest::collection::vec(
                prop_oneof![4 => 0usize..60, 1 => 0usize..2500], 1..4)),
            0..60,
        ),
        asks in proptest::collection::vec(
            (0usize..4, 0i32..4, 0i64..120, 0i32..6000),
            1..7,
        ),
        max_bytes in 0i32..20_000,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = BrokerConfig {
            data_dir: Some(dir.path().to_path_buf()),
            ..BrokerConfig::default()
        };
        config.log.index_interval_bytes = index_interval;
        let broker =
            Broker::open(config, "127.0.0.1:9092".parse().expect("addr")).expect("broker");
        let rt = runtime();
        let small_segments: crate::broker::topic_config::TopicOverrides =
            [("segment.bytes".to_string(), "1024".to_string())].into();
        broker.create_topic("a", 2, small_segments.clone()).expect("topic");
        broker.create_topic("b", 1, small_segments).expect("topic");
        broker.create_topic("c", 1, Default::default()).expect("topic");
        let names = ["a", "b", "c", "missing"];
        for (i, (target, sizes)) in produced.iter().enumerate() {
            let (topic, partition) = [("a", 0), ("a", 1), ("b", 0)][*target as usize];
            let values: Vec<String> = sizes.iter().map(|&n| "r".repeat(n)).collect();
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            let codec = if i % 5 == 4 { Compression::Gzip } else { Compression::None };
            let req = ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(1000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str(topic)))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(batch(&values, None, codec)))])]);
            let reply = rt.block_on(handle(&broker, frame(ApiKey::Produce, 7, &req)));
            let resp: ProduceResponse = response(ApiKey::Produce, 7, reply);
            prop_assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
        }
        let mut topics: Vec<FetchTopic> = Vec::new();
        for &(name, partition, offset, partition_max) in &asks {
            let topic = TopicName(StrBytes::from_static_str(names[name]));
            let asked = FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(partition_max);
            match topics.iter_mut().find(|t| t.topic == topic) {
                Some(t) => t.partitions.push(asked),
                None => topics.push(FetchTopic::default().with_topic(topic).with_partitions(vec![asked])),
            }
        }
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_topics(topics);
        for version in 4..=11 {
            let today = fetch_copied(&broker, &req, version);
            let decoded = FetchResponse::decode(&mut today.slice(4..), version);
            prop_assert!(decoded.is_ok(), "v{}: {:?}", version, decoded);
            // Everything as file ranges; small reads copied and larger ones as ranges, in
            // one response (the limits here stay under 6,000 bytes); and the broker's own
            // threshold, under which these reads are all copied.
            for copy_below in [0, 1500, crate::broker::log::ZERO_COPY_MIN_BYTES] {
                let zero_copy = fetch_zero_copy(&broker, &req, version, copy_below);
                prop_assert!(zero_copy == today, "v{version}, copy_below {copy_below}");
            }
        }
    }
}

#[test]
fn fetch_encoding_refuses_versions_whose_records_are_not_last() {
    let (_dir, broker) = open_broker();
    let req = FetchRequest::default();
    let (reply, _, _) = super::fetch::read_all(&broker, &req, 12, 0);
    assert!(super::fetch::encode(1, 12, reply).is_err());
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
        .any(|k| k.api_key == ApiKey::Produce as i16 && k.min_version == 0));
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
    // Produce v2 (message format v1): listed in ApiVersions for older librdkafka, never served.
    match rt.block_on(handle(
        &broker,
        Bytes::from(vec![0, 0, 0, 2, 0, 0, 0, 1, 255, 255]),
    )) {
        Reply::Close(why) => assert!(why.contains("record batches"), "{why}"),
        other => panic!("Produce v2 must close the connection, got {other:?}"),
    }
    // Produce v8, above the served range: said as it is, not as an old message format.
    match rt.block_on(handle(
        &broker,
        Bytes::from(vec![0, 0, 0, 8, 0, 0, 0, 1, 255, 255]),
    )) {
        Reply::Close(why) => assert!(why.contains("Produce v8 is not supported"), "{why}"),
        other => panic!("Produce v8 must close the connection, got {other:?}"),
    }
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
