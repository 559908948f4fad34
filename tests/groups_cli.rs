//! `rill groups list | describe` against a real `rill broker`, with groups made by real
//! clients (kcat, confluent-kafka).

mod common;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{kcat_cmd, rill_cmd, run, run_interop, Background, Broker, Run};
use serde_json::Value;

const CLI_TIMEOUT: Duration = Duration::from_secs(30);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// New groups rebalance at once: the tests wait for members, not for the join delay.
const CONFIG: &str = "[broker.groups]\ninitial_rebalance_delay_ms = 0\n";

fn rill(broker: &Broker, args: &[&str]) -> Run {
    run(
        rill_cmd(args).arg("--brokers").arg(broker.addr()),
        None,
        CLI_TIMEOUT,
    )
}

fn rill_ok(broker: &Broker, args: &[&str]) -> Run {
    let run = rill(broker, args);
    assert!(
        run.success(),
        "rill {args:?} failed:\n{}\n{}",
        run.describe(),
        broker.log_excerpt()
    );
    run
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", run.describe()))
}

fn create_topic(broker: &Broker, topic: &str, partitions: u32) {
    rill_ok(
        broker,
        &[
            "topics",
            "create",
            topic,
            "--partitions",
            &partitions.to_string(),
        ],
    );
}

fn kcat_produce(broker: &Broker, topic: &str, partition: i32, count: usize) {
    let input: String = (0..count).map(|i| format!("record {i}\n")).collect();
    let run = run(
        kcat_cmd(&broker.addr()).args(["-P", "-t", topic, "-p", &partition.to_string()]),
        Some(input.as_bytes()),
        CLIENT_TIMEOUT,
    );
    assert!(
        run.success() && !run.stderr.contains("Delivery failed"),
        "{}",
        run.describe()
    );
}

/// Runs groups_cli_clients.py MODE BOOTSTRAP ARGS... and asserts it succeeded.
fn python(broker: &Broker, args: &[&str]) -> Run {
    let addr = broker.addr();
    let mut argv: Vec<&str> = vec![args[0], &addr];
    argv.extend_from_slice(&args[1..]);
    let run = run_interop("groups_cli_clients.py", &argv, CLIENT_TIMEOUT);
    assert!(
        run.success(),
        "groups_cli_clients.py {argv:?} failed:\n{}\n{}",
        run.describe(),
        broker.log_excerpt()
    );
    run
}

fn partition<'a>(describe: &'a Value, topic: &str, p: i64) -> &'a Value {
    describe["partitions"]
        .as_array()
        .and_then(|ps| {
            ps.iter()
                .find(|x| x["topic"] == topic && x["partition"].as_i64() == Some(p))
        })
        .unwrap_or_else(|| panic!("no partition {topic}/{p} in {describe:#}"))
}

/// Produce 4 with kcat, 1 with a timestamp an hour old, 5 more with kcat (N = 10); a
/// confluent-kafka group member consumes and commits M = 4. The record at the committed
/// offset is the old one, so the lag in time is about an hour.
#[test]
fn describe_lag_is_produced_minus_committed() {
    let broker = Broker::start_with_config(CONFIG);
    create_topic(&broker, "orders", 1);
    kcat_produce(&broker, "orders", 0, 4);
    const AGE_MS: i64 = 3_600_000;
    python(
        &broker,
        &["produce-old", "orders", "0", &AGE_MS.to_string()],
    );
    kcat_produce(&broker, "orders", 0, 5);

    let consumed = python(&broker, &["consume", "orders", "billing", "4"]);
    let committed: Value = serde_json::from_str(consumed.stdout.trim()).expect("script JSON");
    assert_eq!(committed["committed"]["0"], 4, "{}", consumed.describe());

    let run = rill_ok(&broker, &["groups", "describe", "billing", "--json"]);
    let d = json(&run);
    assert_eq!(d["group"], "billing", "{d:#}");
    assert!(d["state"].is_string(), "{d:#}");
    assert!(d["members"].is_array(), "{d:#}");
    let p = partition(&d, "orders", 0);
    assert_eq!(p["committed"], 4, "{d:#}");
    assert_eq!(p["end"], 10, "{d:#}");
    assert_eq!(p["lag"], 6, "lag = produced - committed: {d:#}");
    let lag_ms = p["lag_ms"]
        .as_i64()
        .unwrap_or_else(|| panic!("lag_ms: {d:#}"));
    assert!(
        (AGE_MS - 60_000..AGE_MS + 600_000).contains(&lag_ms),
        "lag_ms {lag_ms} should be about {AGE_MS}: {d:#}"
    );
    assert_eq!(d["total_lag"], 6, "{d:#}");

    // The table says the same.
    let run = rill_ok(&broker, &["groups", "describe", "billing"]);
    assert!(run.stdout.contains("orders"), "{}", run.describe());
    assert!(run.stdout.contains("total lag 6"), "{}", run.describe());

    // Caught up: lag 0 and lag_ms 0.
    python(&broker, &["consume", "orders", "billing", "6"]);
    let d = json(&rill_ok(
        &broker,
        &["groups", "describe", "billing", "--json"],
    ));
    let p = partition(&d, "orders", 0);
    assert_eq!(
        (&p["committed"], &p["lag"], &p["lag_ms"]),
        (&10.into(), &0.into(), &0.into()),
        "{d:#}"
    );
}

#[test]
fn list_shows_the_group_and_its_lag() {
    let broker = Broker::start_with_config(CONFIG);
    create_topic(&broker, "events", 2);
    kcat_produce(&broker, "events", 0, 7);
    kcat_produce(&broker, "events", 1, 3);
    python(&broker, &["commit", "audit", "events", "0", "2"]);
    python(&broker, &["commit", "audit", "events", "1", "3"]);

    let rows = json(&rill_ok(&broker, &["groups", "list", "--json"]));
    let row = rows
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["group"] == "audit"))
        .unwrap_or_else(|| panic!("group audit not listed: {rows:#}"));
    assert_eq!(row["members"], 0, "{row:#}");
    assert_eq!(row["total_lag"], 5, "(7 - 2) + (3 - 3): {row:#}");
    assert_eq!(row["state"], "Empty", "{row:#}");

    let run = rill_ok(&broker, &["groups", "list"]);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("audit "))
        .unwrap_or_else(|| panic!("no line for audit: {}", run.describe()));
    assert!(line.split_whitespace().any(|w| w == "5"), "{line}");
}

/// A group that committed partition 0 only: partition 1 counts its lag from the log start.
#[test]
fn never_committed_partition_counts_from_log_start() {
    let broker = Broker::start_with_config(CONFIG);
    create_topic(&broker, "metrics", 2);
    kcat_produce(&broker, "metrics", 0, 4);
    kcat_produce(&broker, "metrics", 1, 5);
    python(&broker, &["commit", "half", "metrics", "0", "4"]);

    let d = json(&rill_ok(&broker, &["groups", "describe", "half", "--json"]));
    let p0 = partition(&d, "metrics", 0);
    assert_eq!(
        (&p0["committed"], &p0["lag"]),
        (&4.into(), &0.into()),
        "{d:#}"
    );
    assert!(p0.get("note").is_none(), "{d:#}");
    let p1 = partition(&d, "metrics", 1);
    assert!(p1["committed"].is_null(), "{d:#}");
    assert_eq!(p1["lag"], 5, "end - start: {d:#}");
    assert!(
        p1["note"].as_str().is_some_and(|n| n.contains("log start")),
        "{d:#}"
    );
    assert!(p1["lag_ms"].as_i64().is_some_and(|ms| ms >= 0), "{d:#}");

    let run = rill_ok(&broker, &["groups", "describe", "half"]);
    assert!(
        run.stdout.contains("5*"),
        "marker on the lag: {}",
        run.describe()
    );
    assert!(run.stdout.contains("no commit"), "{}", run.describe());
}

/// A live kcat -G member: describe shows it and its decoded assignment.
#[test]
fn describe_shows_members_and_assignments() {
    let broker = Broker::start_with_config(CONFIG);
    create_topic(&broker, "clicks", 3);
    kcat_produce(&broker, "clicks", 1, 2);
    let _member = Background::spawn(kcat_cmd(&broker.addr()).args([
        "-q",
        "-G",
        "web",
        "-X",
        "client.id=kcat-web",
        "clicks",
    ]));
    let deadline = Instant::now() + Duration::from_secs(30);
    let d = loop {
        let run = rill(&broker, &["groups", "describe", "web", "--json"]);
        if run.success() {
            let d = json(&run);
            let assigned = d["members"][0]["assignment"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
            if d["state"] == "Stable" && assigned {
                break d;
            }
        }
        assert!(
            Instant::now() < deadline,
            "kcat -G never became a Stable member with an assignment:\n{}",
            run.describe()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let members = d["members"].as_array().expect("members");
    assert_eq!(members.len(), 1, "{d:#}");
    let m = &members[0];
    assert_eq!(m["client_id"], "kcat-web", "{d:#}");
    assert!(
        m["host"].as_str().is_some_and(|h| h.contains("127.0.0.1")),
        "{d:#}"
    );
    assert!(
        m["member_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{d:#}"
    );
    let assignment = m["assignment"].as_array().expect("assignment");
    assert_eq!(assignment.len(), 1, "{d:#}");
    assert_eq!(assignment[0]["topic"], "clicks", "{d:#}");
    let mut parts: Vec<i64> = assignment[0]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    parts.sort_unstable();
    assert_eq!(parts, vec![0, 1, 2], "{d:#}");
    // Every partition of the assigned topic is listed with its owner, committed or not.
    for p in 0..3 {
        assert_eq!(partition(&d, "clicks", p)["owner"], m["member_id"], "{d:#}");
    }

    let run = rill_ok(&broker, &["groups", "describe", "web"]);
    assert!(run.stdout.contains("clicks[0,1,2]"), "{}", run.describe());
    assert!(run.stdout.contains("kcat-web"), "{}", run.describe());

    // Observing did not disturb the group: still one member, same generation's member id.
    let again = json(&rill_ok(&broker, &["groups", "describe", "web", "--json"]));
    assert_eq!(
        again["members"][0]["member_id"], m["member_id"],
        "{again:#}"
    );
    assert_eq!(again["state"], "Stable", "{again:#}");
}

#[test]
fn unknown_group_and_unreachable_broker_are_clear_errors() {
    let broker = Broker::start_with_config(CONFIG);
    let run = rill(&broker, &["groups", "describe", "no-such-group"]);
    assert!(!run.success(), "{}", run.describe());
    assert!(
        run.stderr.contains("no-such-group") && run.stderr.contains("not found"),
        "{}",
        run.describe()
    );
    assert!(run.stdout.is_empty(), "{}", run.describe());

    let run = rill(&broker, &["groups", "describe", ""]);
    assert!(!run.success(), "{}", run.describe());

    let dead = format!("127.0.0.1:{}", common::free_port());
    let run = common::run(
        &mut rill_cmd(["groups", "list", "--brokers", &dead, "--timeout-ms", "1500"]),
        None,
        CLI_TIMEOUT,
    );
    assert!(!run.success(), "{}", run.describe());
    assert!(run.stderr.contains("cannot reach"), "{}", run.describe());
}

/// --watch on a pipe prints successive snapshots (one JSON document per line with --json),
/// shows a status from the second sample on, and exits 0 on SIGINT.
#[test]
fn watch_prints_snapshots_and_a_status() {
    let broker = Broker::start_with_config(CONFIG);
    create_topic(&broker, "jobs", 1);
    kcat_produce(&broker, "jobs", 0, 3);
    python(&broker, &["commit", "idle", "jobs", "0", "1"]);

    let mut child = rill_cmd([
        "groups",
        "describe",
        "idle",
        "--watch",
        "--json",
        "--interval",
        "0.3",
        "--brokers",
        &broker.addr(),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn rill groups describe --watch");
    std::thread::sleep(Duration::from_secs(3));
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(interrupted.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rill groups describe --watch ignored SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .ok();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .ok();
    assert!(status.success(), "exit {status}\n{stdout}\n{stderr}");
    let docs: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(docs.len() >= 2, "{stdout}\n{stderr}");
    assert!(
        docs[0]["status"].is_null(),
        "one sample is no trend: {stdout}"
    );
    // No members, lag 2: nobody is consuming.
    let last = &docs[docs.len() - 1];
    assert_eq!(last["status"], "EMPTY", "{stdout}");
    assert_eq!(partition(last, "jobs", 0)["lag"], 2, "{stdout}");
}
