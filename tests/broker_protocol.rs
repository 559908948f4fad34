//! Protocol behaviour over raw TCP: every advertised version of the core APIs encodes and decodes
//! exactly, idempotent producer sequence checks, Fetch long-poll and size limits (KIP-74),
//! ListOffsets earliest/latest/by timestamp.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::wire::{self, Conn};
use common::Broker;
use kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use kafka_protocol::messages::list_offsets_response::ListOffsetsPartitionResponse;
use kafka_protocol::messages::{BrokerId, ProducerId};
use kafka_protocol::records::{Compression, Record};

const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;

fn list_offset(
    conn: &mut Conn,
    version: i16,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> ListOffsetsPartitionResponse {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(wire::topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp)])]);
    let resp = conn.request(version, &req);
    assert_eq!(resp.topics.len(), 1);
    assert_eq!(resp.topics[0].partitions.len(), 1);
    resp.topics[0].partitions[0].clone()
}

#[test]
fn every_advertised_version_round_trips() {
    let broker = Broker::start();
    let mut conn = Conn::connect(&broker.addr());
    conn.create_topic("versions", 1);
    let ts0 = wire::now_ms();

    for version in 0..=9 {
        let resp = conn.metadata(version, Some(&["versions"]), true);
        assert_eq!(resp.topics.len(), 1, "Metadata v{version}");
        assert_eq!(resp.topics[0].error_code, 0, "Metadata v{version}");
        assert_eq!(resp.brokers.len(), 1, "Metadata v{version} brokers");
        assert_eq!(
            resp.brokers[0].port,
            broker.port() as i32,
            "Metadata v{version} port"
        );
        assert_eq!(resp.brokers[0].host.as_str(), "127.0.0.1");
    }
    for version in 3..=7i16 {
        let expected = i64::from(version - 3);
        let value = format!("produce v{version}");
        let resp = conn.produce(
            version,
            "versions",
            0,
            -1,
            wire::batch(&[value.as_bytes()], Compression::None, ts0),
        );
        assert_eq!(resp.error_code, 0, "Produce v{version}");
        assert_eq!(resp.base_offset, expected, "Produce v{version} base offset");
    }
    for version in 4..=11 {
        let data = conn.fetch(version, "versions", 0, 0, 0, 1, 1 << 20, 1 << 20);
        assert_eq!(data.error_code, 0, "Fetch v{version}");
        assert_eq!(data.high_watermark, 5, "Fetch v{version} high watermark");
        let infos = wire::batch_infos(data.records.as_ref().expect("records"));
        let offsets: Vec<i64> = infos.iter().map(|b| b.min_offset).collect();
        assert_eq!(
            offsets,
            vec![0, 1, 2, 3, 4],
            "Fetch v{version} batch offsets"
        );
    }
    for version in 1..=7 {
        let p = list_offset(&mut conn, version, "versions", 0, -2);
        assert_eq!(
            (p.error_code, p.offset),
            (0, 0),
            "ListOffsets v{version} earliest"
        );
        let p = list_offset(&mut conn, version, "versions", 0, -1);
        assert_eq!(
            (p.error_code, p.offset),
            (0, 5),
            "ListOffsets v{version} latest"
        );
    }
    for version in 0..=4 {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000);
        let resp = conn.request(version, &req);
        assert_eq!(resp.error_code, 0, "InitProducerId v{version}");
        assert!(resp.producer_id.0 >= 0, "InitProducerId v{version} id");
    }
    for version in 2..=5 {
        let name = format!("created-v{version}");
        let resp = conn.create_topics(version, &[&name], 2);
        assert_eq!(resp.topics[0].error_code, 0, "CreateTopics v{version}");
    }
}

fn idempotent_batch(pid: i64, epoch: i16, first_seq: i32, values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut r = wire::record(i as i64, None, v.as_bytes(), wire::now_ms());
            r.producer_id = pid;
            r.producer_epoch = epoch;
            r.sequence = first_seq + i as i32;
            r
        })
        .collect();
    wire::encode_batch(&records, Compression::None)
}

#[test]
fn idempotent_retry_is_not_written_twice() {
    let broker = Broker::start();
    let mut conn = Conn::connect(&broker.addr());
    conn.create_topic("idem", 1);
    let init = conn.request(
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    );
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);

    let first = idempotent_batch(pid, epoch, 0, &["a", "b", "c"]);
    let resp = conn.produce(7, "idem", 0, -1, first.clone());
    assert_eq!((resp.error_code, resp.base_offset), (0, 0), "first send");
    // The retry (same producer, epoch and sequence) is acknowledged but not appended.
    let resp = conn.produce(7, "idem", 0, -1, first);
    assert_eq!(resp.error_code, 0, "a retried batch is acknowledged");
    assert_eq!(resp.base_offset, 0, "a retry reports the original offset");
    let p = list_offset(&mut conn, 7, "idem", 0, -1);
    assert_eq!(p.offset, 3, "the retry must not be written twice");

    // The next sequence continues; a gap is refused.
    let resp = conn.produce(7, "idem", 0, -1, idempotent_batch(pid, epoch, 3, &["d"]));
    assert_eq!((resp.error_code, resp.base_offset), (0, 3), "next sequence");
    let resp = conn.produce(7, "idem", 0, -1, idempotent_batch(pid, epoch, 10, &["x"]));
    assert_eq!(
        resp.error_code, OUT_OF_ORDER_SEQUENCE_NUMBER,
        "a sequence gap"
    );
    let p = list_offset(&mut conn, 7, "idem", 0, -1);
    assert_eq!(p.offset, 4, "the out-of-order batch was not written");

    // Producer state survives a restart: the retry is still recognised.
    let mut broker = broker;
    broker.kill_9();
    broker.restart();
    let mut conn = Conn::connect(&broker.addr());
    let resp = conn.produce(7, "idem", 0, -1, idempotent_batch(pid, epoch, 3, &["d"]));
    assert_eq!(resp.error_code, 0, "retry after restart");
    let p = list_offset(&mut conn, 7, "idem", 0, -1);
    assert_eq!(
        p.offset, 4,
        "a retry after restart must not be written twice"
    );
}

#[test]
fn acks_0_gets_no_response_but_is_written() {
    let broker = Broker::start();
    let mut conn = Conn::connect(&broker.addr());
    conn.create_topic("acks0", 1);
    let req = Conn::produce_request(
        "acks0",
        0,
        0,
        wire::batch(&[b"fire", b"forget"], Compression::None, wire::now_ms()),
    );
    let (_, payload) = conn.encode_request(7, &req);
    conn.send_frame(&payload).unwrap();
    // The next response on this connection belongs to the next request.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = list_offset(&mut conn, 7, "acks0", 0, -1);
        if p.offset == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "acks=0 records never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fetch_long_poll_waits_for_data_or_max_wait() {
    let broker = Broker::start();
    let mut conn = Conn::connect(&broker.addr());
    conn.create_topic("poll", 1);

    // Nothing to read: the broker holds the fetch for max_wait_ms.
    let started = Instant::now();
    let data = conn.fetch(11, "poll", 0, 0, 800, 1, 1 << 20, 1 << 20);
    let waited = started.elapsed();
    assert_eq!(data.error_code, 0);
    assert!(
        data.records.as_ref().is_none_or(|r| r.is_empty()),
        "no records expected"
    );
    assert!(
        waited >= Duration::from_millis(700),
        "returned after {waited:?}, max_wait_ms was 800"
    );
    assert!(waited < Duration::from_secs(5), "held {waited:?}");

    // Data arriving during the wait completes the fetch early.
    let addr = broker.addr();
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut conn = Conn::connect(&addr);
        conn.produce(
            7,
            "poll",
            0,
            1,
            wire::batch(&[b"wake up"], Compression::None, wire::now_ms()),
        )
    });
    let started = Instant::now();
    let data = conn.fetch(11, "poll", 0, 0, 10_000, 1, 1 << 20, 1 << 20);
    let waited = started.elapsed();
    assert_eq!(producer.join().unwrap().error_code, 0);
    let infos = wire::batch_infos(data.records.as_ref().expect("records"));
    assert_eq!(infos.len(), 1, "the new batch is returned");
    assert!(
        waited < Duration::from_secs(5),
        "fetch waited {waited:?} although data arrived after 300 ms"
    );
}

#[test]
fn fetch_honours_max_bytes_and_returns_whole_batches() {
    let broker = Broker::start();
    let mut conn = Conn::connect(&broker.addr());
    conn.create_topic("sizes", 1);
    let value = vec![b'v'; 10_000];
    for _ in 0..10 {
        let resp = conn.produce(
            7,
            "sizes",
            0,
            1,
            wire::batch(&[&value], Compression::None, wire::now_ms()),
        );
        assert_eq!(resp.error_code, 0);
    }
    // KIP-74: a limit smaller than the first batch still returns that whole batch.
    let data = conn.fetch(11, "sizes", 0, 0, 0, 1, 100, 100);
    let records = data.records.clone().expect("records");
    let infos = wire::batch_infos(&records);
    assert_eq!(infos.len(), 1, "exactly the first batch, whole");
    assert_eq!(infos[0].min_offset, 0);

    // A partition limit of ~3 batches returns about 3, never all 10.
    let data = conn.fetch(11, "sizes", 0, 0, 0, 1, 1 << 20, 35_000);
    let n = wire::batch_infos(data.records.as_ref().expect("records")).len();
    assert!(
        (1..=4).contains(&n),
        "partition_max_bytes 35000 returned {n} batches"
    );

    // The request-level max_bytes caps too.
    let data = conn.fetch(11, "sizes", 0, 0, 0, 1, 35_000, 1 << 20);
    let n = wire::batch_infos(data.records.as_ref().expect("records")).len();
    assert!((1..=4).contains(&n), "max_bytes 35000 returned {n} batches");

    // Fetching from the middle of the log starts at the batch holding that offset.
    let data = conn.fetch(11, "sizes", 0, 7, 0, 1, 1 << 20, 1 << 20);
    let infos = wire::batch_infos(data.records.as_ref().expect("records"));
    let offsets: Vec<i64> = infos.iter().map(|b| b.min_offset).collect();
    assert_eq!(offsets, vec![7, 8, 9]);

    // An offset past the end is OFFSET_OUT_OF_RANGE (1).
    let data = conn.fetch(11, "sizes", 0, 11, 0, 1, 1 << 20, 1 << 20);
    assert_eq!(data.error_code, 1, "fetch past the end");
}

#[test]
fn list_offsets_by_timestamp() {
    let broker = Broker::start();
    let mut conn = Conn::connect(&broker.addr());
    conn.create_topic("times", 1);
    let base = wire::now_ms() - 60_000;
    // Three batches of 4 records, timestamps base + 10*i.
    for b in 0..3 {
        let records: Vec<Record> = (0..4)
            .map(|i| {
                let n = b * 4 + i;
                wire::record(i, None, format!("r{n}").as_bytes(), base + 10 * n)
            })
            .collect();
        let resp = conn.produce(
            7,
            "times",
            0,
            -1,
            wire::encode_batch(&records, Compression::None),
        );
        assert_eq!(resp.error_code, 0);
    }
    for (ts, want) in [
        (base - 1, 0),
        (base, 0),
        (base + 5, 1),
        (base + 35, 4),
        (base + 40, 4),
        (base + 61, 7),
        (base + 110, 11),
        (base + 111, -1),
    ] {
        let p = list_offset(&mut conn, 7, "times", 0, ts);
        assert_eq!(p.error_code, 0, "ListOffsets(base{:+})", ts - base);
        assert_eq!(p.offset, want, "ListOffsets(base{:+})", ts - base);
        if want >= 0 {
            assert_eq!(
                p.timestamp,
                base + 10 * want,
                "timestamp of the found record"
            );
        }
    }
}
