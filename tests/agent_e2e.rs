//! rill-agent end to end: real files, the real `rill-agent` binary, a real `rill broker`,
//! read back with kcat. Checks the record contract and that no line is lost through
//! rotation, copytruncate, SIGKILL, a broker outage, deletion, junk and huge lines.
//!
//! The agent process fixture (`common::agent`) finds the binary next to the `rill` binary.

#[path = "common/mod.rs"]
mod common;

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::agent::{agent_bin, Agent};
use common::Broker;
use serde_json::Value;

/// One consumed record.
#[derive(Debug, Clone)]
struct Rec {
    partition: i64,
    offset: i64,
    ts: i64,
    key: String,
    headers: HashMap<String, String>,
    value: Value,
}

impl Rec {
    fn line(&self) -> &str {
        self.value["line"].as_str().unwrap_or_default()
    }
}

/// Everything in `topic`, read with kcat (`-J`: one JSON envelope per record).
fn consume(broker: &str, topic: &str) -> Vec<Rec> {
    // Bounded: a kcat started before the agent created the topic can wait on librdkafka's
    // cached "unknown topic" for a long time; the callers retry until their own deadline.
    let out = common::system_command("timeout")
        .args(["20", common::kcat()])
        .args([
            "-C",
            "-b",
            broker,
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-J",
        ])
        .args([
            "-X",
            "fetch.message.max.bytes=4000000",
            "-X",
            "fetch.max.bytes=4000000",
            "-X",
            "receive.message.max.bytes=8000000",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run kcat");
    if !out.status.success() {
        // Expected until the agent created the topic; shown if the test fails.
        eprintln!("kcat: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|env| {
            let mut headers = HashMap::new();
            if let Some(h) = env["headers"].as_array() {
                for pair in h.chunks(2) {
                    if let [k, v] = pair {
                        headers.insert(
                            k.as_str().unwrap_or_default().to_string(),
                            v.as_str().unwrap_or_default().to_string(),
                        );
                    }
                }
            }
            Rec {
                partition: env["partition"].as_i64().unwrap_or(-1),
                offset: env["offset"].as_i64().unwrap_or(-1),
                ts: env["ts"].as_i64().unwrap_or(0),
                key: env["key"].as_str().unwrap_or_default().to_string(),
                headers,
                value: env["payload"]
                    .as_str()
                    .and_then(|p| serde_json::from_str(p).ok())
                    .unwrap_or(Value::Null),
            }
        })
        .collect()
}

/// Waits until every line in `want` was consumed; returns all records.
fn wait_for_lines(
    broker: &str,
    want: &HashSet<String>,
    timeout: Duration,
    agent: &Agent,
) -> Vec<Rec> {
    let started = Instant::now();
    let deadline = started + timeout;
    loop {
        let recs = consume(broker, "logs");
        let got: HashSet<&str> = recs.iter().map(Rec::line).collect();
        let missing: Vec<&String> = want.iter().filter(|l| !got.contains(l.as_str())).collect();
        if missing.is_empty() {
            eprintln!(
                "all {} lines arrived after {:?}",
                want.len(),
                started.elapsed()
            );
            return recs;
        }
        if Instant::now() > deadline {
            let mut sample: Vec<_> = missing.iter().take(10).collect();
            sample.sort();
            panic!(
                "{} of {} lines never arrived (e.g. {sample:?}); {} records consumed\nagent log:\n{}",
                missing.len(),
                want.len(),
                recs.len(),
                agent.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn write_config(dir: &Path, broker: &str, files: &str, metrics_ms: u64) -> PathBuf {
    let path = dir.join("agent.toml");
    let data = dir.join("agent-data");
    fs::write(
        &path,
        format!(
            "brokers = \"{broker}\"\nhost = \"testhost\"\ndata_dir = \"{}\"\n\n{files}\n[metrics]\ninterval_ms = {metrics_ms}\n",
            data.display()
        ),
    )
    .expect("write config");
    path
}

fn append(path: &Path, text: &str) {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("append");
}

fn lines(prefix: &str, range: std::ops::Range<usize>) -> (String, Vec<String>) {
    let list: Vec<String> = range
        .map(|i| format!("{prefix}-{i:06} some payload to make the line longer"))
        .collect();
    let mut text = list.join("\n");
    text.push('\n');
    (text, list)
}

#[test]
fn agent_ships_every_line_through_rotation_kill_and_junk() {
    let test_start = Instant::now();
    let broker = Broker::start();
    eprintln!("broker up after {:?}", test_start.elapsed());
    let addr = broker.addr();
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    fs::create_dir_all(&logs).expect("mkdir");
    let app = logs.join("app.log");
    let mut want = HashSet::new();

    // Present before the first start, read_from = beginning: shipped.
    let (text, l) = lines("pre", 0..50);
    append(&app, &text);
    want.extend(l);
    append(&app, "2024-05-01 12:00:00 ERROR the contract line\n");
    want.insert("2024-05-01 12:00:00 ERROR the contract line".to_string());

    let files = format!(
        "[[files]]\ninclude = [\"{}/*.log\"]\nread_from = \"beginning\"\n",
        logs.display()
    );
    let config = write_config(dir.path(), &addr, &files, 300);
    let mut agent = Agent::start(&config);
    // The agent must have seen app.log before it is rotated out of the glob.
    wait_for_lines(&addr, &want, Duration::from_secs(60), &agent);

    // Rename rotation: the writer keeps writing to the renamed file for a moment.
    let (text, l) = lines("rot-a", 0..2000);
    append(&app, &text);
    want.extend(l);
    let mut old = OpenOptions::new().append(true).open(&app).expect("open");
    fs::rename(&app, logs.join("app.log.1")).expect("rename");
    let (text, l) = lines("rot-late", 0..20);
    old.write_all(text.as_bytes()).expect("write old");
    want.extend(l);
    let (text, l) = lines("rot-b", 0..2000);
    append(&app, &text);
    want.extend(l);

    // Binary junk and a 1 MiB line.
    append(&logs.join("junk.log"), "junk-start\n");
    OpenOptions::new()
        .append(true)
        .open(logs.join("junk.log"))
        .and_then(|mut f| f.write_all(&[0xff, 0xfe, 0x00, 0x80, b'\n']))
        .expect("junk");
    append(
        &logs.join("junk.log"),
        &format!("BIG{}\njunk-end\n", "x".repeat(1024 * 1024)),
    );
    want.insert("junk-start".into());
    want.insert("junk-end".into());

    // A file deleted while tailed, its writer still writing.
    let del = logs.join("del.log");
    let mut del_writer = File::create(&del).expect("create");
    del_writer.write_all(b"del-1\n").expect("write");
    want.insert("del-1".into());
    wait_for_lines(&addr, &want, Duration::from_secs(60), &agent);
    fs::remove_file(&del).expect("delete");
    del_writer.write_all(b"del-2\n").expect("write");
    want.insert("del-2".into());

    // copytruncate, after the agent caught up (the copy is outside the glob).
    let ct = logs.join("ct.log");
    append(&ct, "ct-1\n");
    want.insert("ct-1".into());
    wait_for_lines(&addr, &want, Duration::from_secs(60), &agent);
    fs::copy(&ct, logs.join("ct.log.1")).expect("copy");
    OpenOptions::new()
        .write(true)
        .open(&ct)
        .expect("open")
        .set_len(0)
        .expect("truncate");
    std::thread::sleep(Duration::from_millis(200));
    append(&ct, "ct-2\n");
    want.insert("ct-2".into());

    // SIGKILL while lines are being written, then restart: nothing lost.
    let (text, l) = lines("kill-a", 0..3000);
    append(&app, &text);
    want.extend(l);
    agent.kill_9();
    let (text, l) = lines("kill-b", 0..1000);
    append(&app, &text);
    want.extend(l);
    agent.spawn();

    let recs = wait_for_lines(&addr, &want, Duration::from_secs(90), &agent);

    // The record contract, on the ERROR line.
    let rec = recs
        .iter()
        .find(|r| r.line() == "2024-05-01 12:00:00 ERROR the contract line")
        .expect("contract line");
    let source = app.display().to_string();
    assert_eq!(rec.key, format!("testhost:{source}"));
    assert_eq!(rec.value["host"], "testhost");
    assert_eq!(rec.value["source"], source.as_str());
    assert_eq!(rec.value["level"], "error");
    assert_eq!(
        rec.headers.get("host").map(String::as_str),
        Some("testhost")
    );
    assert_eq!(
        rec.headers.get("source").map(String::as_str),
        Some(source.as_str())
    );
    assert_eq!(rec.headers.get("level").map(String::as_str), Some("error"));
    let ts = rec.value["ts"].as_str().expect("ts");
    let kafka_ts = std::time::UNIX_EPOCH
        + Duration::from_millis(u64::try_from(rec.ts).expect("positive timestamp"));
    assert_eq!(
        ts,
        rill_agent::record::format_ts(kafka_ts),
        "Kafka timestamp = event time = ts"
    );
    assert!(
        ts.ends_with('Z') && ts.len() == "2024-05-01T12:00:00.123Z".len(),
        "ts {ts}"
    );

    // Junk is replaced, not dropped; the 1 MiB line is cut and flagged, not dropped.
    assert!(
        recs.iter()
            .any(|r| r.line() == "\u{fffd}\u{fffd}\u{0}\u{fffd}"),
        "junk line missing"
    );
    let big = recs
        .iter()
        .find(|r| r.line().starts_with("BIG"))
        .expect("1 MiB line shipped");
    assert_eq!(big.value["truncated"], true);
    assert!(
        big.line().len() > 900_000,
        "big line kept {} bytes",
        big.line().len()
    );

    // Order per file: within a partition, lines of one source come in write order.
    let mut last: HashMap<(i64, String), (i64, String)> = HashMap::new();
    for r in recs.iter().filter(|r| r.line().starts_with("rot-b")) {
        let k = (r.partition, r.key.clone());
        if let Some((off, prev)) = last.get(&k) {
            assert!(
                *off < r.offset && prev.as_str() < r.line(),
                "{} after {}",
                r.line(),
                prev
            );
        }
        last.insert(k, (r.offset, r.line().to_string()));
    }

    // Metrics samples per the contract.
    let metrics_wait = Instant::now();
    let deadline = metrics_wait + Duration::from_secs(30);
    let sample = loop {
        if let Some(r) = consume(&addr, "metrics").pop() {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no metrics sample\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(sample.key, "testhost");
    for k in ["ts", "host", "cpu", "mem", "load", "disks", "net", "procs"] {
        assert!(
            !sample.value[k].is_null(),
            "metrics sample lacks {k}: {}",
            sample.value
        );
    }
    assert!(sample.value["agent"]["files_watched"].as_u64().is_some());
    eprintln!("metrics sample after {:?}", metrics_wait.elapsed());

    let stopping = Instant::now();
    let status = agent.stop();
    eprintln!("agent stopped {:?} after SIGTERM", stopping.elapsed());
    assert!(
        status.success(),
        "SIGTERM exit: {status}\n{}",
        agent.log_text()
    );
}

#[test]
fn agent_waits_out_a_broker_outage_without_loss() {
    outage_without_loss(Duration::from_secs(30), 200, Duration::from_millis(500), 0);
}

/// The broker goes away for `down` while the file gets `burst` lines every `every`, then
/// returns: every line arrives, and each line's first delivery comes in write order (a
/// line may come twice: at-least-once).
fn outage_without_loss(down: Duration, burst: usize, every: Duration, metrics_ms: u64) {
    let OneFile {
        mut broker,
        addr,
        dir: _dir,
        app,
        agent,
        mut order,
        ..
    } = one_file("svc.log", "", metrics_ms);

    broker.stop();
    let stopped = Instant::now();
    let mut n = 0;
    while stopped.elapsed() < down {
        let (text, l) = lines("down", n..n + burst);
        append(&app, &text);
        order.extend(l);
        n += burst;
        std::thread::sleep(every);
    }
    broker.restart();
    let (text, l) = lines("back", 0..500);
    append(&app, &text);
    order.extend(l);
    all_arrive_in_order(&addr, &app, &order, &agent);
}

/// Waits until every line of `app` arrived; asserts their first deliveries came in write
/// order; returns the records and how many lines came twice (at-least-once).
fn all_arrive_in_order(
    addr: &str,
    app: &Path,
    order: &[String],
    agent: &Agent,
) -> (Vec<Rec>, usize) {
    let recs = wait_for_lines(
        addr,
        &order.iter().cloned().collect(),
        Duration::from_secs(90),
        agent,
    );
    assert_file_order(&recs, app, order);
    let key = format!("testhost:{}", app.display());
    let copies = recs.iter().filter(|r| r.key == key).count();
    eprintln!("{copies} records for {} lines of {key}", order.len());
    (recs, copies - order.len())
}

#[test]
fn sighup_adds_a_glob_and_many_files_are_tailed() {
    let broker = Broker::start();
    let addr = broker.addr();
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    fs::create_dir_all(&a).expect("mkdir");
    fs::create_dir_all(&b).expect("mkdir");
    let section = |d: &Path| {
        format!(
            "[[files]]\ninclude = [\"{}/*.log\"]\nread_from = \"beginning\"\n",
            d.display()
        )
    };
    let config = write_config(dir.path(), &addr, &section(&a), 0);
    let mut agent = Agent::start(&config);

    // 1,000 files, created while the agent runs.
    let mut want = HashSet::new();
    for i in 0..1000 {
        let line = format!("many-{i:04}");
        append(&a.join(format!("f{i:04}.log")), &format!("{line}\n"));
        want.insert(line);
    }
    append(&b.join("later.log"), "b-before-reload\n");
    wait_for_lines(&addr, &want, Duration::from_secs(120), &agent);

    // SIGHUP with a second section: its existing file is read (read_from = beginning).
    write_config(
        dir.path(),
        &addr,
        &format!("{}\n{}", section(&a), section(&b)),
        0,
    );
    agent.signal("HUP");
    want.insert("b-before-reload".into());
    wait_for_lines(&addr, &want, Duration::from_secs(30), &agent);
    append(&b.join("later.log"), "b-after-reload\n");
    want.insert("b-after-reload".into());
    let recs = wait_for_lines(&addr, &want, Duration::from_secs(30), &agent);
    assert_eq!(
        recs.iter()
            .filter(|r| r.line().starts_with("many-"))
            .count(),
        1000,
        "each of the 1,000 lines exactly once"
    );

    // A broken config on SIGHUP is reported and the running config kept.
    fs::write(&config, "brokers = 12\n").expect("write");
    agent.signal("HUP");
    append(&b.join("later.log"), "b-after-bad-reload\n");
    want.insert("b-after-bad-reload".into());
    wait_for_lines(&addr, &want, Duration::from_secs(30), &agent);
    assert!(agent.stop().success());
    assert!(
        agent.log_text().contains("reload failed"),
        "{}",
        agent.log_text()
    );
}

#[test]
fn check_config_validates_and_names_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    fs::create_dir_all(&logs).expect("mkdir");
    append(&logs.join("x.log"), "x\n");
    append(&logs.join("y.log.gz"), "y\n");
    let good = dir.path().join("good.toml");
    fs::write(
        &good,
        format!(
            "brokers = \"127.0.0.1:9\"\ndata_dir = \"d\"\n[[files]]\ninclude = [\"{}/*\"]\nexclude = [\"*.gz\"]\n[kafka]\n\"sasl.password\" = \"hunter2\"\n",
            logs.display()
        ),
    )
    .expect("write");
    let out = Command::new(agent_bin())
        .arg("--check-config")
        .arg(&good)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("x.log") && !stdout.contains("y.log.gz"),
        "{stdout}"
    );
    // [kafka] keys are shown, their values (secrets) are not.
    assert!(
        stdout.contains("sasl.password") && !stdout.contains("hunter2"),
        "{stdout}"
    );

    let bad = dir.path().join("bad.toml");
    fs::write(
        &bad,
        "brokers = \"127.0.0.1:9\"\ndata_dir = \"d\"\n\n[metrics]\ninterval_ms = -5\n",
    )
    .expect("write");
    let out = Command::new(agent_bin())
        .arg("--check-config")
        .arg(&bad)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("{}:5:", bad.display())) && stderr.contains("metrics.interval_ms"),
        "{stderr}"
    );
    // The same check guards a normal start.
    let out = Command::new(agent_bin())
        .arg("--config")
        .arg(&bad)
        .output()
        .expect("run");
    assert!(!out.status.success());
}

/// The saved checkpoint offsets by path (`data_dir/checkpoints.json`).
fn checkpoints(data_dir: &Path) -> HashMap<PathBuf, u64> {
    let Ok(text) = fs::read_to_string(data_dir.join("checkpoints.json")) else {
        return HashMap::new();
    };
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    json["files"]
        .as_array()
        .map(|files| {
            files
                .iter()
                .map(|f| {
                    (
                        PathBuf::from(f["path"].as_str().unwrap_or_default()),
                        f["offset"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Bytes in the agent's spool segments.
fn spool_bytes(data_dir: &Path) -> u64 {
    fs::read_dir(data_dir.join("spool"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Appends lines `prefix-N` for N in `range` to `path`, and records them in `order`.
fn write(path: &Path, prefix: &str, range: std::ops::Range<usize>, order: &mut Vec<String>) {
    let (text, l) = lines(prefix, range);
    append(path, &text);
    order.extend(l);
}

/// Waits until `path`'s checkpoint covers its whole length: every line of it is safe
/// (acknowledged, or fsynced in the spool).
fn wait_until_safe(data_dir: &Path, path: &Path, agent: &Agent, timeout: Duration) {
    let len = fs::metadata(path).expect("stat").len();
    let deadline = Instant::now() + timeout;
    loop {
        if checkpoints(data_dir).get(path).copied() == Some(len) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never became safe (checkpoint {:?} of {len} bytes)\nagent log:\n{}",
            path.display(),
            checkpoints(data_dir).get(path),
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The lines of one key in partition order, each at its first delivery (duplicates of
/// at-least-once delivery dropped).
fn first_deliveries<'a>(recs: &'a [Rec], key: &str) -> Vec<&'a str> {
    let mut ours: Vec<&Rec> = recs.iter().filter(|r| r.key == key).collect();
    ours.sort_by_key(|r| (r.partition, r.offset));
    let mut seen = HashSet::new();
    ours.into_iter()
        .map(Rec::line)
        .filter(|l| seen.insert(*l))
        .collect()
}

/// A broker and an agent tailing one file (`read_from = "beginning"`), with the first
/// lines written to it already delivered.
struct OneFile {
    broker: Broker,
    addr: String,
    dir: tempfile::TempDir,
    app: PathBuf,
    data_dir: PathBuf,
    agent: Agent,
    /// The lines written so far, in order.
    order: Vec<String>,
}

/// Starts a broker and an agent tailing `dir/NAME`; `top` goes before the `[[files]]`
/// section (e.g. `spool_max_bytes = ...`).
fn one_file(name: &str, top: &str, metrics_ms: u64) -> OneFile {
    let broker = Broker::start();
    let addr = broker.addr();
    let dir = tempfile::tempdir().expect("tempdir");
    let app = dir.path().join(name);
    let data_dir = dir.path().join("agent-data");
    File::create(&app).expect("create");
    let files = format!(
        "{top}[[files]]\ninclude = [\"{}\"]\nread_from = \"beginning\"\n",
        app.display()
    );
    let config = write_config(dir.path(), &addr, &files, metrics_ms);
    let agent = Agent::start(&config);
    let mut order = Vec::new();
    write(&app, "up", 0..10, &mut order);
    wait_for_lines(
        &addr,
        &order.iter().cloned().collect(),
        Duration::from_secs(60),
        &agent,
    );
    OneFile {
        broker,
        addr,
        dir,
        app,
        data_dir,
        agent,
        order,
    }
}

/// Asserts that the first delivery of each line of `app` came in write order.
fn assert_file_order(recs: &[Rec], app: &Path, order: &[String]) {
    let key = format!("testhost:{}", app.display());
    let got = first_deliveries(recs, &key);
    let expected: Vec<&str> = order.iter().map(String::as_str).collect();
    assert_eq!(got.len(), expected.len(), "lines of {key}");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != expected[i]) {
        panic!(
            "order broken at {i}: got {:?}, expected {:?}",
            &got[i..(i + 3).min(got.len())],
            &expected[i..(i + 3).min(expected.len())]
        );
    }
}

#[test]
fn spooled_lines_survive_rotation_deletion_and_sigkill_during_an_outage() {
    let OneFile {
        mut broker,
        addr,
        dir,
        app,
        data_dir,
        mut agent,
        mut order,
        ..
    } = one_file("svc.log", "", 0);

    broker.stop();
    // Lines written during the outage reach the spool (after the 5 s delivery timeout)...
    write(&app, "rotated", 0..3000, &mut order);
    wait_until_safe(&data_dir, &app, &agent, Duration::from_secs(40));
    assert!(spool_bytes(&data_dir) > 0, "nothing spooled");
    // ...so the file can be rotated away and deleted: the spool is the only copy left.
    let rotated = dir.path().join("svc.log.1");
    fs::rename(&app, &rotated).expect("rotate");
    write(&app, "fresh", 0..500, &mut order);
    wait_until_safe(&data_dir, &app, &agent, Duration::from_secs(40));
    fs::remove_file(&rotated).expect("delete rotated file");
    // And the agent dies without a chance to flush anything.
    agent.kill_9();
    agent.spawn();
    write(&app, "after-kill", 0..300, &mut order);
    std::thread::sleep(Duration::from_secs(2));
    broker.restart();

    let want: HashSet<String> = order.iter().cloned().collect();
    let recs = wait_for_lines(&addr, &want, Duration::from_secs(90), &agent);
    // Order per file: the rotated file and its successor share the source (the path they
    // were read at), so their lines form one ordered stream.
    assert_file_order(&recs, &app, &order);
    agent.stop();
    assert_eq!(spool_bytes(&data_dir), 0, "spool not drained");
}

#[test]
fn a_full_spool_pauses_tailing_and_loses_nothing() {
    const CAP: u64 = 16 * 1024 * 1024;
    let OneFile {
        mut broker,
        addr,
        dir: _dir,
        app,
        data_dir,
        agent,
        mut order,
        ..
    } = one_file("big.log", &format!("spool_max_bytes = {CAP}\n"), 0);

    broker.stop();
    // About 24 MB of lines: their records (JSON, key, headers) need well over the cap.
    for chunk in 0..20 {
        let (text, l) = lines(&format!("bulk{chunk:02}"), 0..6000);
        append(
            &app,
            &text.replace('\n', &format!(" {}\n", "x".repeat(120))),
        );
        order.extend(l.into_iter().map(|s| format!("{s} {}", "x".repeat(120))));
    }
    let len = fs::metadata(&app).expect("stat").len();
    // The spool fills, then stays put: tailing paused, the rest waits in the file.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = (0, 0);
    let mut stable_since = Instant::now();
    loop {
        let now = (
            spool_bytes(&data_dir),
            checkpoints(&data_dir).get(&app).copied().unwrap_or(0),
        );
        if now != last {
            last = now;
            stable_since = Instant::now();
        } else if now.0 >= CAP && stable_since.elapsed() > Duration::from_secs(3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spool never filled and settled: {now:?}\nagent log:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (spooled, safe) = last;
    // Over the cap by at most what librdkafka held plus one batch from the tailer.
    assert!(
        spooled <= CAP + 12 * 1024 * 1024,
        "spool grew to {spooled} bytes"
    );
    assert!(
        safe < len,
        "tailing did not pause: checkpoint {safe} of {len}"
    );
    assert!(
        agent.log_text().contains("spool full"),
        "{}",
        agent.log_text()
    );

    broker.restart();
    let want: HashSet<String> = order.iter().cloned().collect();
    let recs = wait_for_lines(&addr, &want, Duration::from_secs(120), &agent);
    assert_file_order(&recs, &app, &order);
}

/// Sets the agent's soft file size limit (`ulimit -f`) in bytes; `None` lifts it. A spool
/// write past it fails with EFBIG: to the agent, a full disk.
fn limit_file_size(agent: &Agent, bytes: Option<u64>) {
    let pid = agent.pid();
    let soft = bytes.map_or("unlimited".to_string(), |b| b.to_string());
    let ok = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--fsize={soft}:unlimited"))
        .status()
        .expect("run prlimit (util-linux)");
    assert!(ok.success(), "prlimit failed");
}

#[test]
fn a_spool_disk_that_fills_up_loses_nothing() {
    let OneFile {
        mut broker,
        addr,
        dir: _dir,
        app,
        data_dir,
        agent,
        mut order,
        ..
    } = one_file("svc.log", "", 0);

    // The spool's disk holds 64 KiB, and the broker goes away: the spool fills at once.
    limit_file_size(&agent, Some(64 * 1024));
    broker.stop();
    write(&app, "full", 0..4000, &mut order);
    let deadline = Instant::now() + Duration::from_secs(40);
    while !agent.log_text().contains("cannot write the spool") {
        assert!(
            Instant::now() < deadline,
            "spool never failed\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Nothing the spool could not take counts as safe.
    std::thread::sleep(Duration::from_secs(2));
    let len = fs::metadata(&app).expect("stat").len();
    let safe = checkpoints(&data_dir).get(&app).copied().unwrap_or(0);
    assert!(
        safe < len,
        "checkpoint {safe} passed lines the spool never held ({len})"
    );

    // The broker returns while the disk is still full: what the spool holds drains, what it
    // could not hold is sent from memory.
    broker.restart();
    write(&app, "still-full", 0..2000, &mut order);
    wait_for_lines(
        &addr,
        &order.iter().cloned().collect(),
        Duration::from_secs(60),
        &agent,
    );

    // Space returns; everything keeps flowing, in order.
    limit_file_size(&agent, None);
    write(&app, "space", 0..1000, &mut order);
    let recs = wait_for_lines(
        &addr,
        &order.iter().cloned().collect(),
        Duration::from_secs(60),
        &agent,
    );
    assert_file_order(&recs, &app, &order);
}

#[test]
fn sigkill_in_the_middle_of_rotations_loses_nothing() {
    // Only the live name is configured: a file renamed while the agent is dead is found
    // again through its checkpoint.
    let OneFile {
        broker: _broker,
        addr,
        dir,
        app,
        mut agent,
        order,
        ..
    } = one_file("svc.log", "", 0);
    // one_file's first lines are delivered: the agent knows the file (a checkpoint) before
    // the first kill. A file created and rotated away before the agent ever ran would be out
    // of any tailer's sight.
    let mut want: HashSet<String> = order.into_iter().collect();
    for round in 0..4 {
        let (text, l) = lines(&format!("r{round}-before"), 0..3000);
        append(&app, &text);
        want.extend(l);
        // Let the agent get part of the way, then rotate under it and kill it at once.
        std::thread::sleep(Duration::from_millis(150 * round));
        fs::rename(&app, dir.path().join(format!("svc.log.{round}"))).expect("rotate");
        let (text, l) = lines(&format!("r{round}-after"), 0..500);
        append(&app, &text);
        want.extend(l);
        agent.kill_9();
        agent.spawn();
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_for_lines(&addr, &want, Duration::from_secs(60), &agent);
}

#[test]
fn a_minute_long_outage_under_load_loses_nothing() {
    // About 2,000 lines a second, in bursts every 50 ms, with metrics on.
    outage_without_loss(
        Duration::from_secs(60),
        100,
        Duration::from_millis(50),
        1000,
    );
}

/// The default (plaintext) path is rill's own producer: what it writes reads back with kcat
/// as the record contract says (key, JSON value, headers, timestamp), in lz4-compressed
/// batches of an idempotent producer (a producer id, consecutive sequence numbers).
#[test]
fn rills_producer_writes_the_contract_in_idempotent_lz4_batches() {
    let OneFile {
        broker: _broker,
        addr,
        dir: _dir,
        app,
        agent,
        mut order,
        ..
    } = one_file("contract.log", "", 0);
    assert!(
        agent.log_text().contains("producer=rill "),
        "the default config should use rill's producer:\n{}",
        agent.log_text()
    );
    let special = [
        "ERROR disk \"full\" \\ on /dev/sda1",
        "{\"level\":\"warn\",\"msg\":\"slow\"}",
        "tab\tand unicode \u{e9}\u{1f600}",
    ];
    let mut text = special.join("\n");
    text.push('\n');
    append(&app, &text);
    order.extend(special.iter().map(|s| s.to_string()));
    write(&app, "bulk", 0..20_000, &mut order);
    let (recs, _) = all_arrive_in_order(&addr, &app, &order, &agent);
    let source = app.display().to_string();
    for r in &recs {
        assert_eq!(r.key, format!("testhost:{source}"));
        assert_eq!(r.headers.get("host").map(String::as_str), Some("testhost"));
        assert_eq!(r.headers.get("source"), Some(&source));
        assert_eq!(r.value["host"], "testhost");
        assert_eq!(r.value["source"], source.as_str());
        // The Kafka timestamp is the value's `ts`.
        let ts = r.value["ts"].as_str().expect("ts");
        let parsed = humantime::parse_rfc3339(ts).expect("RFC 3339 ts");
        let millis = parsed
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as i64;
        assert_eq!(r.ts, millis, "timestamp of {:?}", r.line());
        assert_eq!(
            r.headers.get("level").map(String::as_str),
            r.value["level"].as_str(),
            "level header of {:?}",
            r.line()
        );
    }
    let level_of = |line: &str| {
        recs.iter()
            .find(|r| r.line() == line)
            .and_then(|r| r.headers.get("level").cloned())
    };
    assert_eq!(level_of(special[0]).as_deref(), Some("error"));
    assert_eq!(level_of(special[1]).as_deref(), Some("warn"));
    assert_eq!(level_of(special[2]), None);

    // The stored batches, raw: lz4, one producer id, sequences without gaps.
    let mut conn = common::wire::Conn::connect(&addr);
    let mut offset = 0;
    let mut next_seq = None;
    let mut producer = None;
    let mut batches = 0;
    while offset < recs.len() as i64 {
        let data = conn.fetch(11, "logs", 0, offset, 100, 1, 8 << 20, 8 << 20);
        let mut buf = data.records.clone().expect("records");
        let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut buf)
            .expect("decode batches");
        assert!(!sets.is_empty(), "no batch at offset {offset}");
        for set in sets {
            batches += 1;
            assert_eq!(set.compression, kafka_protocol::records::Compression::Lz4);
            for r in &set.records {
                assert!(r.producer_id >= 0, "no producer id at offset {}", r.offset);
                assert_eq!(*producer.get_or_insert(r.producer_id), r.producer_id);
                if let Some(want) = next_seq {
                    assert_eq!(r.sequence, want, "sequence at offset {}", r.offset);
                }
                next_seq = Some(r.sequence + 1);
                offset = r.offset + 1;
            }
        }
    }
    eprintln!("{} records in {batches} batches", recs.len());
}

/// The broker restarts while the agent ships a steady stream: nothing is lost, the order
/// per file holds, and duplicates stay within what was in flight at the restart.
#[test]
fn a_broker_restart_mid_stream_loses_nothing() {
    let OneFile {
        mut broker,
        addr,
        dir: _dir,
        app,
        agent,
        mut order,
        ..
    } = one_file("stream.log", "", 0);
    let writer = {
        let app = app.clone();
        std::thread::spawn(move || {
            let mut order = Vec::new();
            for chunk in 0..300 {
                write(&app, "stream", chunk * 200..(chunk + 1) * 200, &mut order);
                std::thread::sleep(Duration::from_millis(10));
            }
            order
        })
    };
    std::thread::sleep(Duration::from_millis(1000));
    broker.restart();
    order.extend(writer.join().expect("writer thread"));
    let (_, duplicates) = all_arrive_in_order(&addr, &app, &order, &agent);
    // At most what the producer holds unacknowledged (2 MiB of ~300-byte records).
    assert!(
        duplicates <= 12_000,
        "{duplicates} duplicates after a broker restart\n{}",
        agent.log_text()
    );
}

/// A topic with 3 partitions and a small `max.message.bytes`: rill's producer splits the
/// batches the broker refuses as too large into single records (same sequence numbers), and
/// puts each file's records on the partition Kafka's murmur2 picks for its key.
#[test]
fn too_large_batches_are_split_and_keys_keep_their_murmur2_partition() {
    let broker = Broker::start();
    let addr = broker.addr();
    let created = common::run(
        &mut common::rill_cmd([
            "topics",
            "create",
            "logs",
            "--partitions",
            "3",
            "--config",
            "max.message.bytes=4000",
            "--brokers",
            addr.as_str(),
        ]),
        None,
        Duration::from_secs(30),
    );
    assert!(created.success(), "{}", created.describe());
    let dir = tempfile::tempdir().expect("tempdir");
    let apps: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("f{i}.log")))
        .collect();
    for app in &apps {
        File::create(app).expect("create");
    }
    let files = format!(
        "[[files]]\ninclude = [\"{}/*.log\"]\nread_from = \"beginning\"\n",
        dir.path().display()
    );
    let config = write_config(dir.path(), &addr, &files, 0);
    let mut orders = vec![Vec::new(); apps.len()];
    for round in 0..5 {
        for (i, (app, order)) in apps.iter().zip(&mut orders).enumerate() {
            write(app, &format!("f{i}r{round}"), 0..400, order);
        }
    }
    // Started once the files are written, so its first pass reads them whole and some
    // batch is surely over the topic's 4,000 bytes. Started first, it could read each write
    // as it came and send only batches that fit (seen once in CI: no batch was split).
    let agent = Agent::start(&config);
    let want: HashSet<String> = orders.iter().flatten().cloned().collect();
    let recs = wait_for_lines(&addr, &want, Duration::from_secs(90), &agent);
    for (app, order) in apps.iter().zip(&orders) {
        assert_file_order(&recs, app, order);
        let key = format!("testhost:{}", app.display());
        let partitions: HashSet<i64> = recs
            .iter()
            .filter(|r| r.key == key)
            .map(|r| r.partition)
            .collect();
        let expected = rill_agent::kafka::partitioner::partition_of(key.as_bytes(), 3) as i64;
        assert_eq!(partitions, HashSet::from([expected]), "partitions of {key}");
    }
    assert!(
        agent.log_text().contains("too large for the broker"),
        "no batch was split:\n{}",
        agent.log_text()
    );
}
