//! kafka-python 3 (a pure-Python client) against a real `rill broker`, driven by
//! tests/interop/kafka_python_check.py with the venv python from RILL_TEST_PYTHON.

mod common;

use std::time::Duration;

use common::Broker;

fn scenario(name: &str) {
    let broker = Broker::start();
    let run = common::run_interop(
        "kafka_python_check.py",
        &[&broker.addr(), name],
        Duration::from_secs(180),
    );
    assert!(
        run.success() && run.stdout.contains("OK"),
        "kafka_python_check.py {name} failed:\n{}\n{}",
        run.describe(),
        broker.log_excerpt()
    );
    eprintln!("{}", run.stdout);
}

/// KafkaProducer with default settings (acks=all, idempotent); KafkaConsumer with
/// group_id=None + assign + seek_to_beginning reads everything back in order.
#[test]
fn kafka_python_default_producer_and_consumer() {
    scenario("produce_default");
}

/// acks='all' with gzip (the only codec kafka-python 3.0.12 has without extra packages), acks=1.
#[test]
fn kafka_python_acks_all_gzip() {
    scenario("produce_acks_all_gzip");
}

/// KafkaAdminClient.create_topics, including the already-exists and invalid-name errors.
#[test]
fn kafka_python_admin_create_topics() {
    scenario("admin");
}
