//! confluent-kafka (a current librdkafka) against a real `rill broker`, driven by
//! tests/interop/confluent_check.py with the venv python from RILL_TEST_PYTHON.

mod common;

use std::time::Duration;

use common::wire::{self, Conn};
use common::Broker;
use kafka_protocol::records::Compression;

fn scenario(name: &str) -> Broker {
    let broker = Broker::start();
    let run = common::run_interop(
        "confluent_check.py",
        &[&broker.addr(), name],
        Duration::from_secs(180),
    );
    assert!(
        run.success() && run.stdout.contains("OK"),
        "confluent_check.py {name} failed:\n{}\n{}",
        run.describe(),
        broker.log_excerpt()
    );
    eprintln!("{}", run.stdout);
    broker
}

/// none, gzip, snappy, lz4 and zstd with acks=all and the idempotent producer; headers too.
#[test]
fn confluent_every_codec_idempotent_acks_all() {
    let broker = scenario("codecs");
    // librdkafka silently falls back to no compression when it believes the broker cannot take
    // a codec; batches are stored as received, so the stored codec shows what was really sent.
    let mut conn = Conn::connect(&broker.addr());
    let mut wrong = Vec::new();
    for (codec, expected) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let topic = format!("cf-codec-{codec}");
        let data = conn.fetch(11, &topic, 0, 0, 0, 1, 50 << 20, 50 << 20);
        assert_eq!(data.error_code, 0, "Fetch {topic}");
        let infos = wire::batch_infos(data.records.as_ref().expect("records"));
        assert!(!infos.is_empty(), "no batches in {topic}");
        let codecs: Vec<Compression> = infos.iter().map(|b| b.compression).collect();
        if codecs.iter().any(|c| *c != expected) {
            wrong.push(format!("{codec}: stored batches use {codecs:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "the producer did not really use the codec it was configured with:\n{}",
        wrong.join("\n")
    );
}

/// acks=0, acks=1 and acks=all each deliver everything.
#[test]
fn confluent_acks_0_1_all() {
    let _ = scenario("acks");
}

/// A 3-partition topic from AdminClient; keyed records keep per-key order; watermarks.
#[test]
fn confluent_three_partitions_per_key_order() {
    let _ = scenario("keyed");
}

/// offsets_for_times (ListOffsets by timestamp) finds the first offset with ts >= T.
#[test]
fn confluent_offsets_for_times() {
    let _ = scenario("timestamps");
}

/// AdminClient create/list/describe_configs/delete, and its errors (exists, invalid name).
#[test]
fn confluent_admin_client() {
    let _ = scenario("admin");
}
