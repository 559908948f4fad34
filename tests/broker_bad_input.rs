//! Bad input over raw TCP: every case gets the right error code or a closed connection, a line in
//! the broker log, and the broker keeps serving (a fresh ApiVersions is answered and the process
//! is alive afterwards).

mod common;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::wire::{self, Conn};
use common::Broker;
use kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
use kafka_protocol::messages::api_versions_response::ApiVersionsResponse;
use kafka_protocol::messages::metadata_request::MetadataRequest;
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::records::Compression;

const CORRUPT_MESSAGE: i16 = 2;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const MESSAGE_TOO_LARGE: i16 = 10;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const INVALID_REQUIRED_ACKS: i16 = 21;
const UNSUPPORTED_VERSION: i16 = 35;

/// After a bad-input case: the broker logged something about it, is alive and still answers.
fn assert_survived(broker: &mut Broker, log_before: u64, what: &str) {
    broker.wait_log_grows(log_before, what);
    broker.assert_healthy(what);
}

/// A request header (api key, version) followed by `body`, encoded with header version
/// `header_version`. Lets tests send versions the codec would refuse to encode.
fn raw_request(api_key: i16, version: i16, header_version: i16, body: &[u8]) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(wire::str_bytes("rill-tests")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, header_version).unwrap();
    buf.put_slice(body);
    buf.to_vec()
}

#[test]
fn negative_frame_length_closes_connection() {
    let mut broker = Broker::start();
    for len in [-1i32, -4, i32::MIN] {
        let before = broker.log_len();
        let mut conn = Conn::connect(&broker.addr());
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 16]);
        conn.write_raw(&bytes).unwrap();
        conn.assert_closed(&format!("frame length {len}"));
        assert_survived(&mut broker, before, &format!("frame length {len}"));
    }
}

#[test]
fn zero_frame_length_closes_connection() {
    let mut broker = Broker::start();
    let before = broker.log_len();
    let mut conn = Conn::connect(&broker.addr());
    conn.write_raw(&[0, 0, 0, 0]).unwrap();
    conn.assert_closed("frame length 0");
    assert_survived(&mut broker, before, "frame length 0");
}

#[test]
fn frame_above_configured_max_request_bytes_closes_connection() {
    let mut broker = Broker::start_with_config("[broker]\nmax_request_bytes = 4096\n");
    // A request below the limit is served.
    let mut ok = Conn::connect(&broker.addr());
    assert_eq!(ok.api_versions(3).error_code, 0);

    // 5000 > 4096: the broker must close without waiting for (or allocating) the body.
    let before = broker.log_len();
    let mut conn = Conn::connect(&broker.addr());
    let mut bytes = 5000i32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0u8; 100]);
    conn.write_raw(&bytes).unwrap();
    conn.assert_closed("frame length 5000 with max_request_bytes = 4096");
    assert_survived(&mut broker, before, "a frame above max_request_bytes");

    // A complete, well-formed request that is too big is refused the same way.
    let before = broker.log_len();
    let mut conn = Conn::connect(&broker.addr());
    let names: Vec<String> = (0..400).map(|i| format!("topic-number-{i:05}")).collect();
    let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let req = MetadataRequest::default().with_topics(Some(
        names
            .iter()
            .map(|n| {
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(wire::topic_name(n)))
            })
            .collect(),
    ));
    let (_, payload) = conn.encode_request(1, &req);
    assert!(payload.len() > 4096, "test request must exceed the limit");
    let _ = conn.send_frame(&payload);
    conn.assert_closed("a 4 KiB+ Metadata request with max_request_bytes = 4096");
    assert_survived(&mut broker, before, "a request above max_request_bytes");
}

#[test]
fn huge_frame_length_with_default_config_closes_connection() {
    let mut broker = Broker::start();
    for len in [i32::MAX, 100 * 1024 * 1024 + 1] {
        let before = broker.log_len();
        let mut conn = Conn::connect(&broker.addr());
        conn.write_raw(&len.to_be_bytes()).unwrap();
        conn.write_raw(&[0u8; 64]).unwrap();
        conn.assert_closed(&format!("frame length {len}"));
        assert_survived(&mut broker, before, &format!("frame length {len}"));
    }
}

#[test]
fn truncated_request_closes_connection() {
    let mut broker = Broker::start();

    // (a) A complete frame whose body ends early (Metadata v4 with two topics, cut in the middle).
    let before = broker.log_len();
    let mut conn = Conn::connect(&broker.addr());
    let req = MetadataRequest::default().with_topics(Some(vec![
        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(wire::topic_name("first-topic-name"))),
        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(wire::topic_name("second-topic-name"))),
    ]));
    let (_, payload) = conn.encode_request(4, &req);
    let cut = &payload[..payload.len() - 12];
    conn.send_frame(cut).unwrap();
    conn.assert_closed("a Metadata v4 body cut short inside its frame");
    assert_survived(&mut broker, before, "a truncated request body");

    // (b) A 4-byte frame: an ApiVersions header cut after api key and version.
    let before = broker.log_len();
    let mut conn = Conn::connect(&broker.addr());
    conn.send_frame(&[0, 18, 0, 3]).unwrap();
    conn.assert_closed("a 4-byte frame (shorter than a request header)");
    assert_survived(&mut broker, before, "a frame shorter than a request header");

    // (c) The client announces 100 bytes, sends 10 and closes its side: EOF mid-frame.
    let before = broker.log_len();
    let mut conn = Conn::connect(&broker.addr());
    conn.write_raw(&100i32.to_be_bytes()).unwrap();
    conn.write_raw(&[0, 18, 0, 3, 0, 0, 0, 1, 0, 0]).unwrap();
    conn.shutdown_write();
    conn.assert_closed("EOF in the middle of a frame");
    broker.assert_healthy("EOF in the middle of a frame");
    let _ = before;
}

#[test]
fn random_junk_closes_connection() {
    let mut broker = Broker::start();
    let mut junk = wire::Junk::new(0x5eed_1234);
    for round in 0..24 {
        let before = broker.log_len();
        let size = 1 + (junk.next_u64() % 300) as usize;
        let payload = junk.bytes(size);
        let mut conn = Conn::connect(&broker.addr());
        if round % 2 == 0 {
            // Framed junk: a correct length prefix around random bytes.
            conn.send_frame(&payload).unwrap();
        } else {
            // Unframed junk, then EOF: whatever the first 4 bytes say, the connection must end.
            let _ = conn.write_raw(&payload);
            conn.shutdown_write();
        }
        conn.assert_closed(&format!(
            "junk round {round} ({size} bytes: {payload:02x?})"
        ));
        if round % 2 == 0 {
            assert_survived(&mut broker, before, &format!("junk round {round}"));
        } else {
            broker.assert_healthy(&format!("junk round {round}"));
        }
    }
}

#[test]
fn unknown_api_key_closes_connection() {
    let mut broker = Broker::start();
    for api_key in [9999i16, i16::MAX, -1, 1000] {
        let before = broker.log_len();
        let mut conn = Conn::connect(&broker.addr());
        conn.send_frame(&raw_request(api_key, 0, 1, &[0, 0, 0, 0]))
            .unwrap();
        conn.assert_closed(&format!("unknown api key {api_key}"));
        assert_survived(&mut broker, before, &format!("unknown api key {api_key}"));
    }
}

#[test]
fn unsupported_version_closes_connection() {
    let mut broker = Broker::start();
    // (api key, version, header version as a client would send it)
    let cases = [
        (3i16, 99i16, 2i16, "Metadata v99"),
        (3, -1, 1, "Metadata v-1"),
        // Listed in ApiVersions (for librdkafka before 2.8, as Kafka 4 does), never served.
        (0, 2, 1, "Produce v2 (message format v1)"),
        (0, 0, 1, "Produce v0 (message format v0)"),
        (0, 99, 2, "Produce v99"),
        (1, 3, 1, "Fetch v3 (below the advertised range)"),
        (1, 99, 2, "Fetch v99"),
    ];
    for (api_key, version, header_version, what) in cases {
        let before = broker.log_len();
        let mut conn = Conn::connect(&broker.addr());
        conn.send_frame(&raw_request(api_key, version, header_version, &[0; 8]))
            .unwrap();
        conn.assert_closed(what);
        assert_survived(&mut broker, before, what);
    }
}

/// The version ranges the broker must advertise (DESIGN.md / issue 2). Produce is served from
/// v3 (record batches) but listed from v0: librdkafka before 2.8 sends gzip, snappy and lz4
/// uncompressed to a broker that does not list v0-v2 (librdkafka#4956), which is why Kafka 4
/// lists them too (KAFKA-18659); a v0-v2 request closes the connection.
const EXPECTED_RANGES: &[(i16, i16, i16, &str)] = &[
    (0, 0, 7, "Produce"),
    (1, 4, 11, "Fetch"),
    (2, 1, 7, "ListOffsets"),
    (3, 0, 9, "Metadata"),
    (18, 0, 3, "ApiVersions"),
    (19, 2, 5, "CreateTopics"),
    (20, 1, 5, "DeleteTopics"),
    (22, 0, 4, "InitProducerId"),
    (32, 1, 4, "DescribeConfigs"),
];

fn assert_ranges(resp: &ApiVersionsResponse, what: &str) {
    for &(key, min, max, name) in EXPECTED_RANGES {
        let found = resp.api_keys.iter().find(|k| k.api_key == key);
        let found = found.unwrap_or_else(|| panic!("{what}: {name} ({key}) is not advertised"));
        assert_eq!(
            (found.min_version, found.max_version),
            (min, max),
            "{what}: advertised version range of {name} ({key})"
        );
    }
}

#[test]
fn api_versions_every_supported_version_lists_the_ranges() {
    let broker = Broker::start();
    for version in 0..=3 {
        let mut conn = Conn::connect(&broker.addr());
        let resp = conn.api_versions(version);
        assert_eq!(resp.error_code, 0, "ApiVersions v{version} error code");
        assert_ranges(&resp, &format!("ApiVersions v{version}"));
    }
}

#[test]
fn api_versions_unsupported_version_gets_error_35_with_ranges() {
    let mut broker = Broker::start();
    for version in [4i16, 99] {
        let mut conn = Conn::connect(&broker.addr());
        // A client sends a flexible (v3-style) body with a v2 header for versions >= 3.
        let mut body = BytesMut::new();
        ApiVersionsRequest::default()
            .with_client_software_name(wire::str_bytes("rill-tests"))
            .with_client_software_version(wire::str_bytes("1.0"))
            .encode(&mut body, 3)
            .unwrap();
        conn.send_frame(&raw_request(18, version, 2, &body))
            .unwrap();
        let frame = conn
            .read_frame()
            .unwrap_or_else(|e| panic!("ApiVersions v{version}: read: {e}"))
            .unwrap_or_else(|| {
                panic!("ApiVersions v{version}: connection closed instead of error 35")
            });
        let mut buf = Bytes::from(frame);
        let header = ResponseHeader::decode(&mut buf, 0).expect("v0 response header");
        assert_eq!(header.correlation_id, 42, "correlation id");
        let resp = ApiVersionsResponse::decode(&mut buf, 0).expect("v0 ApiVersions body");
        assert_eq!(
            resp.error_code, UNSUPPORTED_VERSION,
            "ApiVersions v{version} error code"
        );
        assert_ranges(&resp, &format!("ApiVersions v{version} (error 35 body)"));
        // The connection stays usable: clients retry with a supported version on it.
        assert_eq!(
            conn.api_versions(3).error_code,
            0,
            "retry on the same connection"
        );
        // Version negotiation is normal client behaviour: no log line is required for it.
        broker.assert_healthy(&format!("ApiVersions v{version}"));
    }
}

#[test]
fn corrupt_crc_is_corrupt_message() {
    let mut broker = Broker::start();
    let mut conn = Conn::connect(&broker.addr());
    conn.create_topic("crc", 1);
    let good = wire::batch(
        &[b"first value", b"second value", b"third value"],
        Compression::None,
        wire::now_ms(),
    );
    for (flip_at, acks) in [(good.len() - 1, 1i16), (good.len() / 2 + 20, -1), (61, 1)] {
        let before = broker.log_len();
        let mut bad = good.to_vec();
        bad[flip_at] ^= 0x5a;
        let resp = conn.produce(7, "crc", 0, acks, Bytes::from(bad));
        assert_eq!(
            resp.error_code,
            CORRUPT_MESSAGE,
            "byte {flip_at} of {} flipped, acks={acks}",
            good.len()
        );
        assert_survived(&mut broker, before, "a corrupt CRC");
    }
    // Nothing corrupt was written: the first good batch lands at offset 0.
    let resp = conn.produce(7, "crc", 0, 1, good);
    assert_eq!(resp.error_code, 0, "valid batch after corrupt ones");
    assert_eq!(resp.base_offset, 0, "corrupt batches must not take offsets");
}

#[test]
fn oversized_batch_is_message_too_large_default_limit() {
    let mut broker = Broker::start();
    let mut conn = Conn::connect(&broker.addr());
    conn.create_topic("big", 1);
    let before = broker.log_len();
    let value = vec![b'x'; 1536 * 1024];
    let resp = conn.produce(
        7,
        "big",
        0,
        1,
        wire::batch(&[&value], Compression::None, wire::now_ms()),
    );
    assert_eq!(resp.error_code, MESSAGE_TOO_LARGE, "1.5 MiB batch");
    assert_survived(&mut broker, before, "a 1.5 MiB batch");
    // Just under the default limit (1 MiB + 12) is accepted.
    let value = vec![b'y'; 1000 * 1024];
    let resp = conn.produce(
        7,
        "big",
        0,
        1,
        wire::batch(&[&value], Compression::None, wire::now_ms()),
    );
    assert_eq!(resp.error_code, 0, "1000 KiB batch");
    assert_eq!(resp.base_offset, 0, "the rejected batch took no offset");
}

#[test]
fn oversized_batch_is_message_too_large_configured_limit() {
    let mut broker = Broker::start_with_config("[broker.log]\nmax_message_bytes = 2048\n");
    let mut conn = Conn::connect(&broker.addr());
    conn.create_topic("small", 1);
    let before = broker.log_len();
    let value = vec![b'z'; 3000];
    let resp = conn.produce(
        5,
        "small",
        0,
        -1,
        wire::batch(&[&value], Compression::None, wire::now_ms()),
    );
    assert_eq!(
        resp.error_code, MESSAGE_TOO_LARGE,
        "3000-byte batch, limit 2048"
    );
    assert_survived(&mut broker, before, "a batch above max_message_bytes");
    let value = vec![b'z'; 1000];
    let resp = conn.produce(
        5,
        "small",
        0,
        -1,
        wire::batch(&[&value], Compression::None, wire::now_ms()),
    );
    assert_eq!(resp.error_code, 0, "1000-byte batch, limit 2048");
}

fn invalid_names() -> Vec<String> {
    vec![
        String::new(),
        "a b".into(),
        "..".into(),
        ".".into(),
        "a/b".into(),
        "x".repeat(250),
    ]
}

#[test]
fn invalid_topic_names_in_metadata_are_invalid_topic_exception() {
    let mut broker = Broker::start();
    let names = invalid_names();
    for version in [1i16, 4, 9] {
        let before = broker.log_len();
        let mut conn = Conn::connect(&broker.addr());
        let good = format!("good-topic-v{version}");
        let mut asked: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        asked.push(&good);
        let resp = conn.metadata(version, Some(&asked), true);
        for name in &names {
            let topic = resp
                .topics
                .iter()
                .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(name.as_str()))
                .unwrap_or_else(|| panic!("Metadata v{version}: no result for {name:?}"));
            assert_eq!(
                topic.error_code, INVALID_TOPIC_EXCEPTION,
                "Metadata v{version} topic {name:?}"
            );
        }
        let topic = resp
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(good.as_str()))
            .unwrap_or_else(|| panic!("Metadata v{version}: no result for {good}"));
        assert_eq!(
            topic.error_code, 0,
            "Metadata v{version}: valid {good} auto-created"
        );
        assert_eq!(topic.partitions.len(), 1, "default_partitions is 1");
        assert_survived(
            &mut broker,
            before,
            &format!("invalid names in Metadata v{version}"),
        );
    }
}

#[test]
fn invalid_topic_names_in_create_topics_are_invalid_topic_exception() {
    let mut broker = Broker::start();
    let names = invalid_names();
    for version in [2i16, 4, 5] {
        let before = broker.log_len();
        let mut conn = Conn::connect(&broker.addr());
        let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let resp = conn.create_topics(version, &names, 1);
        assert_eq!(resp.topics.len(), names.len(), "one result per topic");
        for name in &names {
            let topic = resp
                .topics
                .iter()
                .find(|t| t.name.as_str() == *name)
                .unwrap_or_else(|| panic!("CreateTopics v{version}: no result for {name:?}"));
            assert_eq!(
                topic.error_code, INVALID_TOPIC_EXCEPTION,
                "CreateTopics v{version} topic {name:?}"
            );
        }
        assert_survived(
            &mut broker,
            before,
            &format!("invalid names in CreateTopics v{version}"),
        );
    }
    // The longest legal name (249 characters) is accepted and usable.
    let longest = "y".repeat(249);
    let mut conn = Conn::connect(&broker.addr());
    conn.create_topic(&longest, 1);
    let resp = conn.produce(
        7,
        &longest,
        0,
        1,
        wire::batch(&[b"v"], Compression::None, wire::now_ms()),
    );
    assert_eq!(resp.error_code, 0, "produce to a 249-character topic");
}

#[test]
fn invalid_acks_is_invalid_required_acks() {
    let mut broker = Broker::start();
    let mut conn = Conn::connect(&broker.addr());
    conn.create_topic("acks", 1);
    for acks in [2i16, -2, 5] {
        let before = broker.log_len();
        let resp = conn.produce(
            7,
            "acks",
            0,
            acks,
            wire::batch(&[b"v"], Compression::None, wire::now_ms()),
        );
        assert_eq!(resp.error_code, INVALID_REQUIRED_ACKS, "acks={acks}");
        assert_survived(&mut broker, before, &format!("acks={acks}"));
    }
}

#[test]
fn unknown_topic_without_auto_create_is_unknown_topic_or_partition() {
    let mut broker = Broker::start_with_config("[broker]\nauto_create_topics = false\n");
    let mut conn = Conn::connect(&broker.addr());
    let resp = conn.metadata(9, Some(&["nope"]), true);
    assert_eq!(resp.topics.len(), 1);
    assert_eq!(
        resp.topics[0].error_code, UNKNOWN_TOPIC_OR_PARTITION,
        "Metadata for a missing topic with auto-creation off"
    );
    let resp = conn.produce(
        7,
        "nope",
        0,
        1,
        wire::batch(&[b"v"], Compression::None, wire::now_ms()),
    );
    assert_eq!(
        resp.error_code, UNKNOWN_TOPIC_OR_PARTITION,
        "Produce to a missing topic"
    );
    // A partition that does not exist in an existing topic.
    conn.create_topic("exists", 2);
    let resp = conn.produce(
        7,
        "exists",
        7,
        1,
        wire::batch(&[b"v"], Compression::None, wire::now_ms()),
    );
    assert_eq!(
        resp.error_code, UNKNOWN_TOPIC_OR_PARTITION,
        "Produce to partition 7 of 2"
    );
    broker.assert_healthy("unknown topics");
    // Auto-creation off really means off.
    let resp = conn.metadata(9, None, true);
    assert!(
        resp.topics
            .iter()
            .all(|t| t.name.as_ref().map(|n| n.as_str()) != Some("nope")),
        "topic `nope` was created although auto_create_topics = false"
    );
}

#[test]
fn hundreds_of_idle_connections_do_not_block_other_clients() {
    let mut broker = Broker::start();
    let mut idle = Vec::new();
    for i in 0..300 {
        let mut conn = Conn::connect(&broker.addr());
        if i % 2 == 1 {
            // A slow client: half a frame length, then nothing.
            conn.write_raw(&[0, 0]).unwrap();
        }
        idle.push(conn);
    }
    // A raw client is served.
    let mut conn = Conn::connect(&broker.addr());
    assert_eq!(conn.api_versions(3).error_code, 0, "raw ApiVersions");
    let resp = conn.metadata(9, Some(&["busy"]), true);
    assert_eq!(
        resp.topics[0].error_code, 0,
        "Metadata with 300 idle connections"
    );
    // And a real client is served.
    let run = common::run(
        common::kcat_cmd(&broker.addr()).args(["-L", "-J", "-m", "10"]),
        None,
        Duration::from_secs(30),
    );
    run.assert_ok();
    assert!(run.stdout.contains("\"busy\""), "{}", run.describe());
    broker.assert_healthy("300 idle connections");
    drop(idle);
    broker.assert_healthy("300 connections closed at once");
}

#[test]
fn config_with_unknown_key_exits_non_zero_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[broker]\nnode_id = 1\n\n[broker.log]\nsegment_bytes = 1048576\nretension_ms = 5\n",
    )
    .unwrap();
    let run = common::run(
        common::rill_cmd(["broker", "--listen"])
            .arg(format!("127.0.0.1:{}", common::free_port()))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&config),
        None,
        Duration::from_secs(20),
    );
    assert!(!run.success(), "a bad config must fail: {}", run.describe());
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("retension_ms"),
        "names the key: {}",
        run.describe()
    );
    assert!(all.contains("line 6"), "names the line: {}", run.describe());

    // A bad value is named too.
    std::fs::write(&config, "[broker]\nflush = \"sometimes\"\n").unwrap();
    let run = common::run(
        common::rill_cmd(["broker", "--listen"])
            .arg(format!("127.0.0.1:{}", common::free_port()))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&config),
        None,
        Duration::from_secs(20),
    );
    assert!(!run.success(), "a bad value must fail: {}", run.describe());
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("flush"), "names the key: {}", run.describe());
    assert!(all.contains("line 2"), "names the line: {}", run.describe());
}
