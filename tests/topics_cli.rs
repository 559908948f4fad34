//! `rill topics list | create | describe | delete` against a real `rill broker`.

mod common;

use std::time::Duration;

use common::{kcat_cmd, rill_cmd, run, Broker, Run};

const CLI_TIMEOUT: Duration = Duration::from_secs(30);

fn topics(broker: &Broker, args: &[&str]) -> Run {
    run(
        rill_cmd(["topics"])
            .args(args)
            .arg("--brokers")
            .arg(broker.addr()),
        None,
        CLI_TIMEOUT,
    )
}

fn topics_ok(broker: &Broker, args: &[&str]) -> Run {
    let run = topics(broker, args);
    assert!(
        run.success(),
        "rill topics {args:?} failed:\n{}\n{}",
        run.describe(),
        broker.log_excerpt()
    );
    run
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", run.describe()))
}

/// A config value as a string, whether the CLI prints it as a string or a number.
fn config_value(configs: &serde_json::Value, key: &str) -> Option<String> {
    match &configs[key] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn kcat_produce(broker: &Broker, topic: &str, partition: i32, count: usize) {
    let input: String = (0..count).map(|i| format!("line {i}\n")).collect();
    let run = run(
        kcat_cmd(&broker.addr()).args(["-P", "-t", topic, "-p", &partition.to_string()]),
        Some(input.as_bytes()),
        Duration::from_secs(60),
    );
    assert!(
        run.success() && !run.stderr.contains("Delivery failed"),
        "{}",
        run.describe()
    );
}

#[test]
fn create_list_describe_delete() {
    let broker = Broker::start();

    let run = topics_ok(
        &broker,
        &[
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=1000",
        ],
    );
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains("orders"),
        "create confirms: {}",
        run.describe()
    );
    topics_ok(&broker, &["create", "audit"]);

    // list: text
    let run = topics_ok(&broker, &["list"]);
    let listed: Vec<&str> = run
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(listed.contains(&"orders"), "list: {}", run.describe());
    assert!(listed.contains(&"audit"), "list: {}", run.describe());

    // list: json
    let run = topics_ok(&broker, &["list", "--json"]);
    let rows = json(&run);
    let rows = rows.as_array().expect("list --json prints an array");
    let orders = rows
        .iter()
        .find(|r| r["name"] == "orders")
        .unwrap_or_else(|| panic!("orders missing: {}", run.stdout));
    assert_eq!(orders["partitions"], 3, "{}", run.stdout);
    let audit = rows
        .iter()
        .find(|r| r["name"] == "audit")
        .unwrap_or_else(|| panic!("audit missing: {}", run.stdout));
    assert_eq!(audit["partitions"], 1, "default partitions: {}", run.stdout);

    // describe: json
    let run = topics_ok(&broker, &["describe", "orders", "--json"]);
    let desc = json(&run);
    assert_eq!(desc["name"], "orders", "{}", run.stdout);
    let parts = desc["partitions"].as_array().expect("partitions array");
    assert_eq!(parts.len(), 3, "{}", run.stdout);
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p["partition"], i, "{}", run.stdout);
        assert_eq!(p["leader"], 1, "{}", run.stdout);
        assert_eq!(p["log_start_offset"], 0, "{}", run.stdout);
        assert_eq!(p["log_end_offset"], 0, "{}", run.stdout);
    }
    assert_eq!(
        config_value(&desc["configs"], "retention.ms").as_deref(),
        Some("1000"),
        "the per-topic config: {}",
        run.stdout
    );

    // describe: text mentions the partitions and the config
    let run = topics_ok(&broker, &["describe", "orders"]);
    assert!(run.stdout.contains("retention.ms"), "{}", run.describe());
    assert!(run.stdout.contains("1000"), "{}", run.describe());

    // delete
    let run = topics_ok(&broker, &["delete", "orders"]);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains("orders"),
        "delete confirms: {}",
        run.describe()
    );
    let run = topics_ok(&broker, &["list", "--json"]);
    let rows = json(&run);
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["name"] != "orders"),
        "deleted topic still listed: {}",
        run.stdout
    );
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "audit"),
        "the other topic survived: {}",
        run.stdout
    );
}

#[test]
fn describe_shows_offsets_after_producing() {
    let broker = Broker::start();
    topics_ok(&broker, &["create", "events", "--partitions", "3"]);
    kcat_produce(&broker, "events", 1, 42);
    kcat_produce(&broker, "events", 2, 5);

    let run = topics_ok(&broker, &["describe", "events", "--json"]);
    let desc = json(&run);
    let parts = desc["partitions"].as_array().expect("partitions array");
    let ends: Vec<_> = parts
        .iter()
        .map(|p| (p["log_start_offset"].clone(), p["log_end_offset"].clone()))
        .collect();
    assert_eq!(
        ends,
        vec![
            (0.into(), 0.into()),
            (0.into(), 42.into()),
            (0.into(), 5.into())
        ],
        "{}",
        run.stdout
    );
    // The text form shows the end offset too.
    let run = topics_ok(&broker, &["describe", "events"]);
    assert!(run.stdout.contains("42"), "{}", run.describe());
}

#[test]
fn brokers_default_comes_from_rill_brokers() {
    let broker = Broker::start();
    let run = run(
        rill_cmd(["topics", "create", "from-env"]).env("RILL_BROKERS", broker.addr()),
        None,
        CLI_TIMEOUT,
    );
    assert!(run.success(), "{}", run.describe());
    let run = run_list_env(&broker);
    assert!(run.stdout.contains("from-env"), "{}", run.describe());
}

fn run_list_env(broker: &Broker) -> Run {
    run(
        rill_cmd(["topics", "list", "--json"]).env("RILL_BROKERS", broker.addr()),
        None,
        CLI_TIMEOUT,
    )
}

fn assert_fails(run: &Run, needles: &[&str], what: &str) {
    assert!(!run.success(), "{what} must fail:\n{}", run.describe());
    let lower = run.stderr.to_lowercase();
    assert!(
        needles.iter().any(|n| lower.contains(n)),
        "{what}: stderr should say one of {needles:?}:\n{}",
        run.describe()
    );
    assert!(
        !lower.contains("panicked"),
        "{what}: the CLI panicked:\n{}",
        run.describe()
    );
}

#[test]
fn create_existing_topic_fails() {
    let broker = Broker::start();
    topics_ok(&broker, &["create", "twice"]);
    let run = topics(&broker, &["create", "twice"]);
    assert_fails(&run, &["exists"], "creating an existing topic");
}

#[test]
fn create_invalid_name_fails() {
    let broker = Broker::start();
    let run = topics(&broker, &["create", "bad name"]);
    assert_fails(
        &run,
        &["invalid", "illegal", "not a valid"],
        "an invalid name",
    );
}

#[test]
fn describe_missing_topic_fails_and_does_not_create_it() {
    let broker = Broker::start();
    let run = topics(&broker, &["describe", "ghost"]);
    assert_fails(
        &run,
        &["does not exist", "unknown", "not found", "no such"],
        "describing a missing topic",
    );
    assert!(
        run.stderr.contains("ghost"),
        "names the topic: {}",
        run.describe()
    );
    let run = topics_ok(&broker, &["list", "--json"]);
    assert!(
        !run.stdout.contains("ghost"),
        "describe auto-created the topic: {}",
        run.stdout
    );
}

#[test]
fn delete_missing_topic_fails() {
    let broker = Broker::start();
    let run = topics(&broker, &["delete", "ghost"]);
    assert_fails(
        &run,
        &["does not exist", "unknown", "not found", "no such"],
        "deleting a missing topic",
    );
}

#[test]
fn unreachable_broker_fails_quickly_with_a_clear_message() {
    for args in [&["list"][..], &["describe", "x"], &["create", "x"]] {
        let run = run(
            rill_cmd(["topics"])
                .args(args)
                .args(["--brokers", "127.0.0.1:1"]),
            None,
            Duration::from_secs(60),
        );
        assert!(!run.success(), "{args:?} must fail:\n{}", run.describe());
        assert!(
            run.took < Duration::from_secs(20),
            "{args:?} took {:?} to give up",
            run.took
        );
        assert!(
            run.stderr.contains("127.0.0.1:1"),
            "{args:?}: the message names the address:\n{}",
            run.describe()
        );
        assert!(
            !run.stderr.contains("panicked"),
            "{args:?}: panicked:\n{}",
            run.describe()
        );
    }
}
