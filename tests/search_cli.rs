//! `rill search` against a real `rill broker`: contract records (and some that are not) across
//! 3 partitions and all 5 codecs with timestamps spread over hours, produced with
//! confluent-kafka; every count must equal `grep -c` over the same lines, with both readers
//! (the wire reader and the librdkafka one kept for TLS/SASL). Output on a terminal (tmux)
//! is coloured with the match highlighted, and plain with NO_COLOR or when piped.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::tmux::Tmux;
use common::{rill_cmd, run, run_interop, Broker, Run};
use rill::record::format_ts;

const CLI_TIMEOUT: Duration = Duration::from_secs(60);
const TOPIC: &str = "logs";
const RECORDS: usize = 1200;
const SPREAD_MS: i64 = 6 * 3_600_000;

/// One produced record, as the test knows it.
#[derive(Debug, Clone)]
struct Rec {
    ts: i64,
    host: Option<&'static str>,
    source: Option<&'static str>,
    level: Option<&'static str>,
    /// The text search matches: the contract's `line`, or the whole raw value.
    line: String,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn ts_string(ms: i64) -> String {
    format_ts(UNIX_EPOCH + Duration::from_millis(ms as u64))
}

/// Produces RECORDS records into a 3-partition topic; returns them in timestamp order.
fn produce(broker: &Broker) -> Vec<Rec> {
    let created = run(
        rill_cmd(["topics", "create", TOPIC, "--partitions", "3", "--brokers"]).arg(broker.addr()),
        None,
        CLI_TIMEOUT,
    );
    created.assert_ok();
    let hosts = ["web1", "web2", "db1"];
    let sources = [
        "/var/log/app.log",
        "/var/log/nginx/access.log",
        "/var/log/nginx/error.log",
        "/var/log/syslog",
    ];
    let levels = [
        Some("error"),
        Some("warn"),
        Some("info"),
        Some("debug"),
        None,
    ];
    let texts = [
        "GET /api?id=7 (x+y) 200",
        "connection Timeout after 30s",
        "upstream TIMEOUT while reading",
        "connection refused by peer",
        "user login ok",
        "disk 93% full [warn]",
        "GET /api?id=77 (x-y) 404",
        "cache miss key=a.b*c",
        // JSON escapes in the value: the line is not verbatim in the raw bytes.
        "say \"hi\" from C:\\temp\tnow",
        "caf\u{e9} timeout \u{1}ctl",
    ];
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    let start = now_ms() - SPREAD_MS;
    let step = SPREAD_MS / RECORDS as i64;
    let mut recs = Vec::new();
    let mut spec = String::new();
    for i in 0..RECORDS {
        let ts = start + i as i64 * step;
        let codec = codecs[i * codecs.len() / RECORDS];
        let flush = (i + 1) % (RECORDS / codecs.len()) == 0;
        let partition = i % 3;
        let (rec, key, value, headers) = if i % 50 == 7 {
            // Not the record contract: plain text, no headers.
            let line = format!("legacy plain text {i} timeout");
            (
                Rec {
                    ts,
                    host: None,
                    source: None,
                    level: None,
                    line: line.clone(),
                },
                serde_json::Value::Null,
                line,
                serde_json::json!({}),
            )
        } else {
            let host = hosts[i % hosts.len()];
            let source = sources[(i / 3) % sources.len()];
            let level = levels[(i / 7) % levels.len()];
            let line = format!("{} #{i}", texts[(i / 2) % texts.len()]);
            let mut value = serde_json::json!({
                "ts": ts_string(ts), "host": host, "source": source, "line": line,
            });
            let mut headers = serde_json::json!({"host": host, "source": source});
            if let Some(level) = level {
                value["level"] = level.into();
                headers["level"] = level.into();
            }
            (
                Rec {
                    ts,
                    host: Some(host),
                    source: Some(source),
                    level,
                    line,
                },
                format!("{host}:{source}").into(),
                value.to_string(),
                headers,
            )
        };
        let row = serde_json::json!({
            "p": partition, "ts": ts, "codec": codec, "key": key, "value": value,
            "headers": headers, "flush": flush,
        });
        spec.push_str(&row.to_string());
        spec.push('\n');
        recs.push(rec);
    }
    let path = broker.scratch().join("search-spec.jsonl");
    std::fs::write(&path, spec).unwrap();
    let produced = run_interop(
        "search_produce.py",
        &[&broker.addr(), TOPIC, path.to_str().unwrap()],
        Duration::from_secs(120),
    );
    produced.assert_ok();
    assert_eq!(
        stored_codecs(broker),
        (0..5).collect(),
        "every codec reached the log"
    );
    recs
}

/// The compression codecs of the batches stored in the broker's `logs` partitions (so the
/// test knows the producer really compressed with each).
fn stored_codecs(broker: &Broker) -> std::collections::BTreeSet<u8> {
    let mut codecs = std::collections::BTreeSet::new();
    for partition in 0..3 {
        let dir = broker
            .data_dir()
            .join(format!("topics/{TOPIC}-{partition}"));
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log") {
                let bytes = std::fs::read(&path).unwrap();
                for batch in rill::search::batch::batches(&bytes) {
                    codecs.insert(batch.unwrap().0.codec());
                }
            }
        }
    }
    codecs
}

/// `grep -c ARGS` over `lines`, written to a flat file.
fn grep_count(dir: &Path, args: &[&str], lines: &[&str]) -> u64 {
    let path = dir.join("grep-input.txt");
    let mut text = lines.join("\n");
    if !lines.is_empty() {
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    let out = run(
        std::process::Command::new("grep")
            .arg("-c")
            .args(args)
            .arg("--")
            .arg(&path),
        None,
        CLI_TIMEOUT,
    );
    out.stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}", out.describe()))
}

fn search(broker: &Broker, args: &[&str]) -> Run {
    search_with(broker, args, "wire")
}

/// `rill search ARGS` with the reader chosen by RILL_SEARCH_READER.
fn search_with(broker: &Broker, args: &[&str], reader: &str) -> Run {
    run(
        rill_cmd(["search"])
            .args(args)
            .arg("--brokers")
            .arg(broker.addr())
            .env("RILL_SEARCH_READER", reader),
        None,
        CLI_TIMEOUT,
    )
}

fn count(broker: &Broker, args: &[&str]) -> u64 {
    count_with(broker, args, "wire")
}

fn count_with(broker: &Broker, args: &[&str], reader: &str) -> u64 {
    let out = search_with(broker, &[args, &["--count"]].concat(), reader);
    out.assert_ok();
    out.stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a count:\n{}", out.describe()))
}

fn lines(recs: &[Rec], keep: impl Fn(&Rec) -> bool) -> Vec<&str> {
    recs.iter()
        .filter(|r| keep(r))
        .map(|r| r.line.as_str())
        .collect()
}

#[test]
fn counts_equal_grep_over_partitions_codecs_and_filters() {
    let broker = Broker::start();
    let recs = produce(&broker);
    let dir = broker.scratch();
    let all = lines(&recs, |_| true);

    // A regex, a literal full of metacharacters, ignoring case.
    let re = "time(d )?out|refused";
    let expect = grep_count(dir, &["-E", re], &all);
    assert!(expect > 0);
    assert_eq!(count(&broker, &[re]), expect, "regex {re}");
    let lit = "GET /api?id=7 (x+y)";
    let expect = grep_count(dir, &["-F", lit], &all);
    assert!(expect > 0);
    assert_eq!(count(&broker, &["-F", lit]), expect, "-F {lit}");
    let expect_regex_reading = grep_count(dir, &["-E", lit], &all);
    assert_ne!(
        expect, expect_regex_reading,
        "the literal must differ from its regex reading"
    );
    let expect = grep_count(dir, &["-i", "timeout"], &all);
    assert!(expect > grep_count(dir, &["timeout"], &all));
    assert_eq!(count(&broker, &["-i", "timeout"]), expect, "-i");

    // Lines whose JSON holds escapes (quote, backslash, tab, non-ASCII, a control character).
    for lit in [
        "\"hi\" from C:\\temp\tnow",
        "C:\\",
        "caf\u{e9} t",
        "\u{1}ctl",
    ] {
        let expect = grep_count(dir, &["-F", lit], &all);
        assert!(expect > 0, "{lit:?}");
        assert_eq!(count(&broker, &["-F", lit]), expect, "-F {lit:?}");
    }
    let expect = grep_count(dir, &["-E", "^say .hi. from"], &all);
    assert!(expect > 0);
    assert_eq!(count(&broker, &["^say .hi. from"]), expect);
    let expect = grep_count(dir, &["-Ew", "now|ctl"], &all);
    assert!(expect > 0);
    assert_eq!(count(&broker, &[r"\b(now|ctl)\b"]), expect);

    // The librdkafka reader (used for TLS/SASL connections) counts the same.
    for args in [
        &[re][..],
        &["-i", "timeout", "--level", "error"],
        &["-F", "C:\\"],
    ] {
        assert_eq!(
            count_with(&broker, args, "librdkafka"),
            count(&broker, args),
            "librdkafka reader, {args:?}"
        );
    }

    // Field filters: host (repeatable), level, source glob.
    let web1 = lines(&recs, |r| r.host == Some("web1"));
    assert_eq!(
        count(&broker, &["-i", "timeout|refused", "--host", "web1"]),
        grep_count(dir, &["-Ei", "timeout|refused"], &web1)
    );
    let two = lines(&recs, |r| matches!(r.host, Some("web1" | "db1")));
    assert_eq!(
        count(&broker, &["GET", "--host", "web1", "--host", "db1"]),
        grep_count(dir, &["GET"], &two)
    );
    let errors = lines(&recs, |r| r.level == Some("error"));
    assert_eq!(
        count(&broker, &["o", "--level", "error"]),
        grep_count(dir, &["o"], &errors)
    );
    let nginx = lines(&recs, |r| {
        r.source.is_some_and(|s| s.starts_with("/var/log/nginx/"))
    });
    assert_eq!(
        count(
            &broker,
            &["^(GET|upstream)", "--source", "/var/log/nginx/*"]
        ),
        grep_count(dir, &["-E", "^(GET|upstream)"], &nginx)
    );

    // Time: RFC 3339 bounds (inclusive) and a duration back from now.
    let since = recs[300].ts;
    let until = recs[899].ts;
    let window = lines(&recs, |r| r.ts >= since && r.ts <= until);
    assert_eq!(
        count(
            &broker,
            &[
                "-i",
                "timeout",
                "--since",
                &ts_string(since),
                "--until",
                &ts_string(until)
            ]
        ),
        grep_count(dir, &["-i", "timeout"], &window)
    );
    let before = now_ms();
    let got = count(&broker, &["-i", "timeout", "--since", "2h"]);
    let after = now_ms();
    let newest = |now: i64| {
        let l = lines(&recs, |r| r.ts >= now - 2 * 3_600_000);
        grep_count(dir, &["-i", "timeout"], &l)
    };
    let (lo, hi) = (newest(after), newest(before));
    assert!(
        lo > 0 && (lo..=hi).contains(&got),
        "--since 2h: {got} not in {lo}..={hi}"
    );

    // Records not following the contract are searched as raw text.
    let raw = recs.iter().filter(|r| r.host.is_none()).count() as u64;
    assert!(raw > 0);
    assert_eq!(count(&broker, &["^legacy plain"]), raw);
    assert_eq!(
        count(&broker, &["legacy plain"]),
        grep_count(dir, &["legacy plain"], &all)
    );

    // Plain text output when piped: one line per hit, in time order across partitions.
    let out = search(&broker, &["refused"]);
    out.assert_ok();
    assert_eq!(
        out.stdout.lines().count() as u64,
        grep_count(dir, &["refused"], &all)
    );
    assert!(!out.stdout.contains('\x1b'), "no colour when piped");
    let stamps: Vec<&str> = out
        .stdout
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    let mut sorted = stamps.clone();
    sorted.sort();
    assert_eq!(stamps, sorted, "hits merged in time order");

    // --json: the records, one object per line; --limit: the oldest N.
    let out = search(&broker, &["-i", "timeout", "--json", "--limit", "7"]);
    out.assert_ok();
    let got: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let expected: Vec<&Rec> = recs
        .iter()
        .filter(|r| r.line.to_lowercase().contains("timeout"))
        .take(7)
        .collect();
    assert_eq!(got.len(), 7, "{}", out.describe());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g["line"].as_str(), Some(e.line.as_str()));
        assert_eq!(g["ts"].as_str(), Some(ts_string(e.ts).as_str()));
        assert_eq!(g["host"].as_str(), e.host);
        assert_eq!(g["source"].as_str(), e.source);
        assert_eq!(g["level"].as_str(), e.level);
    }
    assert_eq!(count(&broker, &["-i", "timeout", "--limit", "7"]), 7);
}

#[test]
fn invalid_regex_exits_2_with_its_position() {
    let out = run(
        &mut rill_cmd(["search", "a(b", "--brokers", "127.0.0.1:1"]),
        None,
        CLI_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.describe());
    assert!(
        out.stderr.contains("a(b") && out.stderr.contains('^'),
        "{}",
        out.describe()
    );
    assert!(out.stderr.contains("unclosed group"), "{}", out.describe());
}

#[test]
fn unknown_topic_and_unreachable_broker_are_clear_errors() {
    let broker = Broker::start();
    let out = search(&broker, &["x", "--topic", "nosuchtopic"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("topic \"nosuchtopic\" not found"),
        "{}",
        out.describe()
    );
    let port = common::free_port();
    let out = run(
        rill_cmd(["search", "x", "--timeout-ms", "1500", "--brokers"])
            .arg(format!("127.0.0.1:{port}")),
        None,
        CLI_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("cannot reach a Kafka broker"),
        "{}",
        out.describe()
    );
}

#[test]
fn follow_finds_records_produced_after_it_started() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let broker = Broker::start();
    let kcat = |line: &str| {
        run(
            common::kcat_cmd(&broker.addr()).args(["-P", "-t", "live"]),
            Some(line.as_bytes()),
            CLI_TIMEOUT,
        )
        .assert_ok();
    };
    kcat("old needle\nold hay\n");
    let mut child = rill_cmd([
        "search",
        "needle",
        "--follow",
        "--topic",
        "live",
        "--brokers",
    ])
    .arg(broker.addr())
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn rill search --follow");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(CLI_TIMEOUT);
    kcat("new hay\nnew needle\n");
    let second = rx.recv_timeout(CLI_TIMEOUT);
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.unwrap().ends_with("old needle"));
    assert!(second.unwrap().ends_with("new needle"));
}

/// What a 160x12 tmux pane running `command` shows, with its colours, once it shows `needle`.
fn tmux_screen(dir: &Path, command: &str, needle: &str) -> String {
    let tmux = Tmux::new(dir, "search");
    tmux.start(160, 12, command);
    tmux.wait_for(needle);
    tmux.screen_with_colours()
}

#[test]
fn terminal_output_is_coloured_with_the_match_highlighted() {
    let broker = Broker::start();
    let value = r#"{"ts":"2024-05-01T12:00:00.123Z","host":"web1","source":"/var/log/app.log","line":"connection refused by peer","level":"error"}"#;
    run(
        common::kcat_cmd(&broker.addr()).args(["-P", "-t", "tty"]),
        Some(format!("{value}\n").as_bytes()),
        CLI_TIMEOUT,
    )
    .assert_ok();
    let rill = env!("CARGO_BIN_EXE_rill");
    // The pane stays up after rill exits (sleep), so its screen can be read.
    let command = |env: &str| {
        format!(
            "env -u NO_COLOR -u RILL_BROKERS {env} {rill} search refused --topic tty --brokers {}; sleep 60",
            broker.addr()
        )
    };
    let screen = tmux_screen(broker.scratch(), &command(""), "peer");
    // The match in bold red, the level in red, the rest of the line plain.
    assert!(
        screen.contains("\u{1b}[1m\u{1b}[31mrefused") || screen.contains("\u{1b}[1;31mrefused"),
        "{screen:?}"
    );
    assert!(screen.contains("\u{1b}[31merror"), "{screen:?}");
    assert!(screen.contains("connection "), "{screen:?}");

    let screen = tmux_screen(broker.scratch(), &command("NO_COLOR=1"), "peer");
    assert!(
        screen.contains("web1 error /var/log/app.log connection refused by peer"),
        "{screen:?}"
    );
    assert!(!screen.contains('\u{1b}'), "NO_COLOR: {screen:?}");
}
