//! `rill dash` end to end: the real binary in a tmux pane against a real broker, driven by
//! send-keys and read by capture-pane. Live records, a filter, the lag and metrics views,
//! help, the broker going away and coming back, and quitting with the terminal restored.

mod common;

use std::time::Duration;

use common::tmux::Tmux;
use common::{kcat_cmd, rill_cmd, run, Broker};

fn produce(broker: &str, topic: &str, lines: &[String]) {
    let input = lines.join("\n") + "\n";
    run(
        kcat_cmd(broker).args(["-P", "-t", topic, "-K", "|"]),
        Some(input.as_bytes()),
        Duration::from_secs(30),
    )
    .assert_ok();
}

fn log_record(host: &str, line: &str, level: &str) -> String {
    format!(
        r#"{host}:/var/log/app.log|{{"ts":"2026-01-01T00:00:00.000Z","host":"{host}","source":"/var/log/app.log","line":"{line}","level":"{level}"}}"#
    )
}

fn metric_record(host: &str, cpu: f64) -> String {
    let ts = rill::record::format_ts(std::time::SystemTime::now());
    format!(
        r#"{host}|{{"ts":"{ts}","host":"{host}","cpu":{{"usage_pct":{cpu},"cores_pct":[{cpu}]}},"mem":{{"used_bytes":1073741824,"total_bytes":4294967296,"swap_used_bytes":0,"swap_total_bytes":0}},"load":[0.5,0.4,0.3],"disks":[],"net":[{{"iface":"eth0","rx_bps":1000.0,"tx_bps":500.0}}],"procs":[]}}"#
    )
}

#[test]
fn dash_end_to_end_in_tmux() {
    let mut broker = Broker::start();
    let addr = broker.addr();
    for (topic, parts) in [("logs", "3"), ("metrics", "1")] {
        run(
            &mut rill_cmd([
                "topics",
                "create",
                topic,
                "--partitions",
                parts,
                "--brokers",
                &addr,
            ]),
            None,
            Duration::from_secs(30),
        )
        .assert_ok();
    }
    let backlog: Vec<String> = (0..50)
        .map(|i| {
            log_record(
                &format!("web{}", i % 3),
                &format!("e2e line {i}"),
                if i % 10 == 7 { "error" } else { "info" },
            )
        })
        .collect();
    produce(&addr, "logs", &backlog);
    produce(
        &addr,
        "metrics",
        &[
            metric_record("e2e-host", 42.5),
            metric_record("e2e-db", 7.0),
        ],
    );
    // A lagging group: it consumed 10 records, committed, and left.
    run(
        kcat_cmd(&addr).args([
            "-G",
            "e2e-lagging",
            "-X",
            "auto.offset.reset=earliest",
            "-c",
            "10",
            "-e",
            "-q",
            "logs",
        ]),
        None,
        Duration::from_secs(60),
    )
    .assert_ok();

    let tmux = Tmux::new(broker.scratch(), "dash");
    let bin = env!("CARGO_BIN_EXE_rill");
    let command = format!("{bin} dash --brokers {addr}; echo DASH-EXITED $?; sleep 60");
    tmux.start(100, 30, &command);

    // The backlog, then live records as they arrive.
    tmux.wait_for("50 of 50 shown");
    tmux.wait_for("connected");
    let live: Vec<String> = (0..5)
        .map(|i| log_record("web9", &format!("live record {i}"), "warn"))
        .collect();
    produce(&addr, "logs", &live);
    let s = tmux.wait_for("live record 4");
    assert!(s.contains("web9"), "{s}");

    // A filter: only what matches shows, and the filter bar says so.
    tmux.keys(&["/"]);
    tmux.text("live record [13]");
    tmux.keys(&["Enter"]);
    let s = tmux.wait("the filter to apply", |s| {
        s.contains("+/live record [13]/") && !s.contains("live record 4")
    });
    assert!(
        s.contains("live record 1") && s.contains("live record 3"),
        "{s}"
    );
    assert!(!s.contains("e2e line"), "{s}");
    assert!(s.contains("2 of 55 shown"), "{s}");

    // The Search view: `rill search`'s engine over the stored records, with a field filter.
    tmux.keys(&["5"]);
    tmux.wait_for("searches the stored logs");
    tmux.keys(&["/"]);
    tmux.text("live record [13] host:web9");
    tmux.keys(&["Enter"]);
    let s = tmux.wait("the search to finish", |s| {
        s.contains("· done") && s.contains("2 matches")
    });
    assert!(
        s.contains("live record 1") && s.contains("live record 3"),
        "{s}"
    );
    assert!(!s.contains("live record 4"), "{s}");

    // The lag view: the group, its lag, and EMPTY (nobody consumes).
    tmux.keys(&["3"]);
    let s = tmux.wait("the lagging group with a status", |s| {
        s.contains("e2e-lagging") && s.contains("EMPTY")
    });
    assert!(s.contains("STATUS"), "{s}");
    tmux.keys(&["Enter"]);
    tmux.wait_for("LAG TIME");
    tmux.keys(&["Escape"]);

    // The metrics view: both hosts, the selected one's charts.
    tmux.keys(&["2"]);
    let s = tmux.wait("the metrics hosts", |s| {
        s.contains("e2e-host") && s.contains("e2e-db")
    });
    assert!(s.contains("42.5%"), "{s}");

    // Help, and Esc closes it.
    tmux.keys(&["?"]);
    tmux.wait_for("Everywhere");
    tmux.keys(&["Escape"]);
    tmux.wait("help to close", |s| !s.contains("Everywhere"));

    // The broker goes away: the dashboard says so and keeps running; then it is back.
    broker.kill_9();
    tmux.wait_for("disconnected");
    broker.restart();
    tmux.wait("the reconnection", |s| {
        s.contains(" connected") && !s.contains("disconnected")
    });
    produce(
        &addr,
        "logs",
        &[log_record("web9", "after the restart", "info")],
    );
    tmux.keys(&["1"]);
    tmux.keys(&["/"]);
    tmux.keys(&["BSpace"]);
    tmux.keys(&["Escape"]);
    tmux.wait_for("after the restart");

    // The dashboard never joined a group: only the test's own group exists.
    let groups = run(
        &mut rill_cmd(["groups", "list", "--brokers", &addr]),
        None,
        Duration::from_secs(30),
    );
    groups.assert_ok();
    assert!(
        groups.stdout.contains("e2e-lagging"),
        "{}",
        groups.describe()
    );
    assert!(
        !groups.stdout.contains("rill-dash"),
        "{}",
        groups.describe()
    );

    // q quits with status 0 and gives the terminal back (the shell's output is visible).
    tmux.keys(&["q"]);
    let s = tmux.wait_for("DASH-EXITED");
    assert!(s.contains("DASH-EXITED 0"), "{s}");
    assert!(!s.contains("1 Tail"), "the alternate screen was left: {s}");
}
