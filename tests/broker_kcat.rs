//! kcat (Debian's kcat 1.7.1 on librdkafka 2.0) against a real `rill broker`:
//! metadata, produce/consume round trips with every codec, SIGKILL + restart, clean shutdown.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::wire::{self, Conn};
use common::{kcat_cmd, kcat_read_partition, run, Background, Broker, Run};
use kafka_protocol::records::Compression;

const KCAT_TIMEOUT: Duration = Duration::from_secs(60);

/// `key-N:value N ...` lines, keyed with `-K:`.
fn lines(from: usize, count: usize) -> Vec<(String, String)> {
    (from..from + count)
        .map(|i| {
            (
                format!("key-{}", i % 7),
                format!("value {i} {}", "lorem ipsum dolor sit amet ".repeat(i % 5)),
            )
        })
        .collect()
}

/// Produces `records` with `kcat -P -K: -l FILE` (kcat exits 0 only after delivery); the run,
/// for what kcat said.
fn kcat_produce(broker: &Broker, topic: &str, records: &[(String, String)], extra: &[&str]) -> Run {
    let file = broker
        .scratch()
        .join(format!("input-{topic}-{}.txt", wire::now_ms()));
    let mut text = String::new();
    for (k, v) in records {
        text.push_str(&format!("{k}:{v}\n"));
    }
    std::fs::write(&file, text).unwrap();
    let run = run(
        kcat_cmd(&broker.addr())
            .args(["-P", "-t", topic, "-K:", "-X", "request.required.acks=-1"])
            .args(extra)
            .arg("-l")
            .arg(&file),
        None,
        KCAT_TIMEOUT,
    );
    assert_kcat_ok(broker, &run);
    run
}

fn assert_kcat_ok(broker: &Broker, run: &Run) {
    assert!(
        run.success() && !run.stderr.contains("Delivery failed"),
        "{}\n{}",
        run.describe(),
        broker.log_excerpt()
    );
}

/// Reads partition `partition` from the beginning to its end: (offset, key, value) per record.
fn kcat_consume(broker: &Broker, topic: &str, partition: i32) -> Vec<(i64, String, String)> {
    let run = kcat_read_partition(
        &broker.addr(),
        topic,
        partition,
        "%o\t%k\t%s\n",
        KCAT_TIMEOUT,
    );
    assert_kcat_ok(broker, &run);
    run.stdout
        .lines()
        .map(|line| {
            let mut parts = line.splitn(3, '\t');
            let offset = parts.next().unwrap().parse().expect("offset");
            let key = parts.next().expect("key").to_string();
            let value = parts.next().expect("value").to_string();
            (offset, key, value)
        })
        .collect()
}

/// Asserts `got` is exactly `expected`, at offsets 0, 1, 2, ...
fn assert_read_back(got: &[(i64, String, String)], expected: &[(String, String)], what: &str) {
    assert_eq!(
        got.len(),
        expected.len(),
        "{what}: number of records read back"
    );
    for (i, ((offset, key, value), (ek, ev))) in got.iter().zip(expected).enumerate() {
        assert_eq!(*offset, i as i64, "{what}: offset of record {i}");
        assert_eq!((key, value), (ek, ev), "{what}: record {i}");
    }
}

fn kcat_metadata(broker: &Broker) -> serde_json::Value {
    let run = run(
        kcat_cmd(&broker.addr()).args(["-L", "-J"]),
        None,
        KCAT_TIMEOUT,
    );
    assert_kcat_ok(broker, &run);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("kcat -L -J: {e}: {}", run.stdout))
}

#[test]
fn startup_logs_listen_address_and_data_dir() {
    let broker = Broker::start();
    let wanted = format!(
        "listening on {}, data in {}",
        broker.addr(),
        broker.data_dir().display()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !broker.log().contains(&wanted) {
        assert!(
            Instant::now() < deadline,
            "the log does not contain {wanted:?}\n{}",
            broker.log_excerpt()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kcat_metadata_lists_broker_and_topics() {
    let broker = Broker::start();
    kcat_produce(&broker, "alpha", &lines(0, 3), &[]);
    Conn::connect(&broker.addr()).create_topic("beta", 3);

    let meta = kcat_metadata(&broker);
    let brokers = meta["brokers"].as_array().expect("brokers array");
    assert_eq!(brokers.len(), 1, "one broker: {meta}");
    assert_eq!(brokers[0]["id"], 1, "node id 1 by default: {meta}");
    assert_eq!(
        brokers[0]["name"].as_str().unwrap(),
        broker.addr(),
        "the broker advertises its listen address: {meta}"
    );
    let topics = meta["topics"].as_array().expect("topics array");
    for (name, partitions) in [("alpha", 1), ("beta", 3)] {
        let topic = topics
            .iter()
            .find(|t| t["topic"] == name)
            .unwrap_or_else(|| panic!("topic {name} missing from kcat -L: {meta}"));
        assert!(
            topic.get("error").is_none(),
            "topic {name} has an error: {topic}"
        );
        let parts = topic["partitions"].as_array().expect("partitions");
        assert_eq!(parts.len(), partitions, "{name} partitions: {topic}");
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(p["partition"], i, "{name} partition index: {topic}");
            assert_eq!(p["leader"], 1, "{name} partition leader: {topic}");
        }
    }
}

#[test]
fn kcat_produce_file_with_keys_then_consume_reads_back_exactly() {
    let broker = Broker::start();
    let records = lines(0, 600);
    kcat_produce(&broker, "roundtrip", &records, &[]);
    let got = kcat_consume(&broker, "roundtrip", 0);
    assert_read_back(&got, &records, "kcat round trip");

    // A second produce continues the offsets.
    let more = lines(600, 50);
    kcat_produce(&broker, "roundtrip", &more, &[]);
    let got = kcat_consume(&broker, "roundtrip", 0);
    let all: Vec<_> = records.iter().chain(&more).cloned().collect();
    assert_read_back(&got, &all, "kcat round trip after a second produce");
}

fn check_codec(codec: &str, expected: Compression) {
    let broker = Broker::start();
    let topic = format!("codec-{codec}");
    let records = lines(0, 400);
    let produced = kcat_produce(
        &broker,
        &topic,
        &records,
        &[
            "-X",
            &format!("compression.codec={codec}"),
            // Let records gather into batches worth compressing.
            "-X",
            "queue.buffering.max.ms=50",
        ],
    );
    let got = kcat_consume(&broker, &topic, 0);
    assert_read_back(&got, &records, &format!("kcat with {codec}"));

    // Batches are stored as received: the fetched batches still carry the producer's codec.
    let mut conn = Conn::connect(&broker.addr());
    let data = conn.fetch(11, &topic, 0, 0, 0, 1, 50 << 20, 50 << 20);
    assert_eq!(data.error_code, 0, "Fetch error");
    assert_eq!(data.high_watermark, 400, "high watermark");
    let infos = wire::batch_infos(data.records.as_ref().expect("records"));
    assert!(!infos.is_empty(), "no batches fetched");
    // librdkafka sends a batch uncompressed when compressing would not make it smaller (a
    // batch of a record or two, cut by timing): every batch carries the codec or none, and
    // most records are in batches with the codec.
    for info in &infos {
        assert!(
            info.compression == expected || info.compression == Compression::None,
            "codec of a stored batch: {:?}",
            info.compression
        );
    }
    let compressed: i64 = infos
        .iter()
        .filter(|b| b.compression == expected)
        .map(|b| b.record_count as i64)
        .sum();
    // librdkafka before 2.8 (Debian 12's kcat has 2.0) sends gzip, snappy and lz4 only to a
    // broker that lists Produce v0-v2 (librdkafka#4956): rill lists them, as Kafka 4 does.
    assert!(
        compressed >= 300,
        "only {compressed} of 400 records in {codec} batches:\n{}",
        produced.describe()
    );
    assert_eq!(
        infos.iter().map(|b| b.record_count as i64).sum::<i64>(),
        400,
        "records in the fetched batches"
    );
}

#[test]
fn kcat_codec_none() {
    check_codec("none", Compression::None);
}

#[test]
fn kcat_codec_gzip() {
    check_codec("gzip", Compression::Gzip);
}

#[test]
fn kcat_codec_snappy() {
    check_codec("snappy", Compression::Snappy);
}

#[test]
fn kcat_codec_lz4() {
    check_codec("lz4", Compression::Lz4);
}

#[test]
fn kcat_codec_zstd() {
    check_codec("zstd", Compression::Zstd);
}

#[test]
fn sigkill_after_acknowledged_produce_loses_nothing() {
    let mut broker = Broker::start();
    let first = lines(0, 500);
    kcat_produce(&broker, "durable", &first, &[]);
    let gz = lines(500, 100);
    kcat_produce(&broker, "durable", &gz, &["-X", "compression.codec=gzip"]);
    broker.kill_9();
    broker.restart();

    let expected: Vec<_> = first.iter().chain(&gz).cloned().collect();
    let got = kcat_consume(&broker, "durable", 0);
    assert_read_back(&got, &expected, "after SIGKILL and restart");

    // New records continue the offsets.
    let more = lines(600, 100);
    kcat_produce(&broker, "durable", &more, &[]);
    let expected: Vec<_> = expected.iter().chain(&more).cloned().collect();
    let got = kcat_consume(&broker, "durable", 0);
    assert_read_back(&got, &expected, "produce after restart");

    // And once more, so recovery of a segment written after a recovery is covered.
    broker.kill_9();
    broker.restart();
    let got = kcat_consume(&broker, "durable", 0);
    assert_read_back(&got, &expected, "after a second SIGKILL");
}

fn clean_shutdown(signal: &str) {
    let mut broker = Broker::start();
    let records = lines(0, 200);
    kcat_produce(&broker, "shutdown", &records, &[]);

    // Open clients must not hold the broker up: an idle raw connection, and a kcat consumer
    // long-polling at the end of the partition.
    let _idle = Conn::connect(&broker.addr());
    let _consumer = Background::spawn(kcat_cmd(&broker.addr()).args([
        "-C",
        "-t",
        "shutdown",
        "-p",
        "0",
        "-o",
        "beginning",
        "-q",
    ]));
    wait_for_connections(&broker, 2);

    let took = broker.stop_with(signal);
    eprintln!("SIG{signal}: broker exited cleanly in {took:?}");

    broker.restart();
    let got = kcat_consume(&broker, "shutdown", 0);
    assert_read_back(&got, &records, &format!("after SIG{signal} and restart"));
}

/// Waits (bounded) until at least `n` established TCP connections to the broker's port exist,
/// reading /proc/net/tcp (the kcat consumer connects asynchronously).
fn wait_for_connections(broker: &Broker, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let port = format!(":{:04X}", broker.port());
    loop {
        let table = std::fs::read_to_string(Path::new("/proc/net/tcp")).unwrap_or_default();
        let established = table
            .lines()
            .skip(1)
            .filter(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() > 3 && cols[1].ends_with(&port) && cols[3] == "01"
            })
            .count();
        if established >= n {
            return;
        }
        if Instant::now() > deadline {
            panic!("only {established} connections to the broker after 10 s (wanted {n})");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_shuts_down_cleanly_within_2s() {
    clean_shutdown("TERM");
}

#[test]
fn sigint_shuts_down_cleanly_within_2s() {
    clean_shutdown("INT");
}
