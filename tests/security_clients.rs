//! rill's own clients over TLS + SASL against a SASL_SSL broker: the real `rill-agent` (its
//! `[kafka]` table passed to librdkafka), `rill search` (which must pick its librdkafka reader by
//! itself), `rill groups`, and `rill dash` in tmux. The broker side, kcat, confluent-kafka,
//! kafka-python and `rill topics` are in tests/security.rs; the fixtures are shared
//! (`common::security`).

mod common;

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::agent::Agent;
use common::security::{
    kcat_scram_ssl, sasl_broker, secrets, users_cmd, Secrets, ADMIN_PW, READER_PW, WRITER_PW,
};
use common::tmux::Tmux;
use common::{rill_cmd, run, Broker, Run};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

const AGENT_PW: &str = "agent-pw-4";
const DASH_PW: &str = "dash-pw-5";

/// A user with the permissions the README gives it, e.g. `["--write", "logs"]`.
fn add_user(s: &Secrets, name: &str, permissions: &[&str], password: &str) {
    let args = [&["add", name][..], permissions].concat();
    users_cmd(&s.users, &args, Some(&format!("{password}\n"))).assert_ok();
}

/// The SASL_SSL broker (the standard users plus `name`), the secrets and its address.
fn broker_with_user(name: &str, permissions: &[&str], password: &str) -> (Secrets, Broker, String) {
    let s = secrets().with_users();
    add_user(&s, name, permissions, password);
    let (broker, _plain) = sasl_broker(&s);
    let addr = broker.addr();
    (s, broker, addr)
}

/// `rill ARGS` connecting to `addr` over SASL_SSL as `user`, the password in the environment
/// as the README says, and no reader forced on `rill search`.
fn rill_secure(args: &[&str], s: &Secrets, addr: &str, user: &str, password: &str) -> Command {
    let mut cmd = rill_cmd(args);
    cmd.args(["--brokers", addr, "--sasl-username", user])
        .arg("--ca-cert")
        .arg(&s.ca)
        .env("RILL_SASL_PASSWORD", password)
        .env_remove("RILL_SEARCH_READER");
    cmd
}

/// Every value in `topic`, read with kcat over SASL_SSL as `user`.
fn read_values(s: &Secrets, addr: &str, user: &str, password: &str, topic: &str) -> Vec<String> {
    let mut cmd = kcat_scram_ssl(s, addr, user, password);
    cmd.args([
        "-C",
        "-t",
        topic,
        "-o",
        "beginning",
        "-e",
        "-q",
        "-f",
        "%s\n",
    ]);
    let out = run(&mut cmd, None, T);
    if !out.success() {
        // Expected until the agent created the topic; shown if the test fails.
        eprintln!("kcat: {}", out.stderr.trim());
    }
    out.stdout.lines().map(str::to_string).collect()
}

/// The `line` field of each agent record in `logs`.
fn shipped_lines(s: &Secrets, addr: &str) -> Vec<String> {
    read_values(s, addr, "reader", READER_PW, "logs")
        .iter()
        .filter_map(|v| serde_json::from_str::<Value>(v).ok())
        .filter_map(|v| v["line"].as_str().map(str::to_string))
        .collect()
}

/// Waits until every line of `want` is in `logs`; returns what was there.
fn wait_for_lines(s: &Secrets, addr: &str, want: &[String], agent: &Agent) -> Vec<String> {
    let deadline = Instant::now() + T;
    loop {
        let got = shipped_lines(s, addr);
        let have: HashSet<&str> = got.iter().map(String::as_str).collect();
        let missing: Vec<&String> = want.iter().filter(|l| !have.contains(l.as_str())).collect();
        if missing.is_empty() {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} lines never arrived (e.g. {:?})\nagent log:\n{}",
            missing.len(),
            want.len(),
            missing.first(),
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn append(path: &Path, lines: &[String]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("append");
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix} {i:03}")).collect()
}

/// An agent.toml that tails `app` and reaches the broker as `agent` with `password`, with the
/// `[kafka]` settings config/agent.toml shows.
fn write_agent_config(dir: &Path, addr: &str, app: &Path, ca: &Path, password: &str) -> PathBuf {
    let path = dir.join("agent.toml");
    fs::write(
        &path,
        format!(
            "brokers = \"{addr}\"\nhost = \"sechost\"\ndata_dir = {data:?}\n\n\
             [[files]]\ninclude = [{app:?}]\nread_from = \"beginning\"\n\n\
             [metrics]\ninterval_ms = 500\n\n\
             [kafka]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"SCRAM-SHA-256\"\n\
             \"sasl.username\" = \"agent\"\n\"sasl.password\" = {password:?}\n\
             \"ssl.ca.location\" = {ca:?}\n",
            data = dir.join("agent-data"),
        ),
    )
    .expect("write agent.toml");
    path
}

/// A command given a wrong password says so, and at once: not after its 10 s --timeout-ms.
fn assert_refused_at_once(wrong: &Run) {
    wrong.assert_fails_with("Authentication failed");
    assert!(
        wrong.took < Duration::from_secs(5),
        "a wrong password took {:?} to report\n{}",
        wrong.took,
        wrong.describe()
    );
}

#[test]
fn agent_ships_over_sasl_ssl_and_a_wrong_password_loses_no_line() {
    let (s, broker, addr) = broker_with_user(
        "agent",
        &["--write", "logs", "--write", "metrics"],
        AGENT_PW,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let app = dir.path().join("app.log");

    // A wrong password first: the broker refuses the agent, which keeps its lines.
    let early = numbered("before the password was fixed", 20);
    append(&app, &early);
    let log_len = broker.log_len();
    let config = write_agent_config(dir.path(), &addr, &app, &s.ca, "not-the-password");
    let mut agent = Agent::start(&config);
    broker.wait_log_grows(log_len, "the agent's failed authentication");
    let deadline = Instant::now() + T;
    while !broker
        .log()
        .lines()
        .any(|l| l.contains("SASL authentication failed") && l.contains("agent"))
    {
        assert!(
            Instant::now() < deadline,
            "the broker did not log the agent's wrong password\n{}",
            broker.log_excerpt()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The agent says why, and spools the lines the broker never acknowledged.
    let deadline = Instant::now() + T;
    while !agent
        .log_text()
        .contains("spooling until the broker is back")
    {
        assert!(
            Instant::now() < deadline,
            "the agent did not spool its lines\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        agent
            .log_text()
            .contains("Authentication failed: Invalid username or password"),
        "{}",
        agent.log_text()
    );
    assert!(
        shipped_lines(&s, &addr).is_empty(),
        "records arrived with a wrong password"
    );
    let status = agent.stop();
    assert!(status.success(), "{status}\n{}", agent.log_text());

    // The password fixed and the agent restarted: the early lines arrive, then live ones.
    write_agent_config(dir.path(), &addr, &app, &s.ca, AGENT_PW);
    agent.spawn();
    wait_for_lines(&s, &addr, &early, &agent);
    let live = numbered("appended while the agent runs", 30);
    append(&app, &live);
    let got = wait_for_lines(&s, &addr, &live, &agent);
    let unique: HashSet<&String> = got.iter().collect();
    eprintln!(
        "{} records in logs, {} distinct lines ({} duplicates: at-least-once)",
        got.len(),
        unique.len(),
        got.len() - unique.len()
    );

    // Metrics go through the same secured producer to `metrics`.
    let deadline = Instant::now() + T;
    loop {
        let metrics = read_values(&s, &addr, "admin", ADMIN_PW, "metrics");
        let from_agent = metrics
            .iter()
            .filter_map(|v| serde_json::from_str::<Value>(v).ok())
            .any(|v| v["host"] == "sechost");
        if from_agent {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no metrics sample from the agent: {metrics:?}\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // The agent's credentials write logs but cannot delete them.
    let delete = run(
        &mut rill_secure(&["topics", "delete", "logs"], &s, &addr, "agent", AGENT_PW),
        None,
        T,
    );
    assert!(
        !delete.success()
            && delete
                .stderr
                .to_lowercase()
                .contains("authorization failed"),
        "{}",
        delete.describe()
    );

    let status = agent.stop();
    assert!(status.success(), "{status}\n{}", agent.log_text());
}

fn log_record(i: usize) -> String {
    let level = if i % 10 == 3 { "error" } else { "info" };
    format!(
        r#"web{h}:/var/log/app.log|{{"ts":"2026-01-01T00:00:{s:02}.000Z","host":"web{h}","source":"/var/log/app.log","line":"secured search {i:03}","level":"{level}"}}"#,
        h = i % 3,
        s = i % 60,
    )
}

/// Writes records as the `writer` user over SASL_SSL.
fn produce(s: &Secrets, addr: &str, records: &[String]) {
    let input: String = records.iter().map(|r| format!("{r}\n")).collect();
    let mut cmd = kcat_scram_ssl(s, addr, "writer", WRITER_PW);
    cmd.args(["-P", "-t", "logs", "-K", "|"]);
    run(&mut cmd, Some(input.as_bytes()), T).assert_ok();
}

fn create_topic(s: &Secrets, addr: &str, topic: &str, partitions: &str) {
    run(
        &mut rill_secure(
            &["topics", "create", topic, "--partitions", partitions],
            s,
            addr,
            "admin",
            ADMIN_PW,
        ),
        None,
        T,
    )
    .assert_ok();
}

fn count_of(out: &Run) -> u64 {
    out.assert_ok();
    out.stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a count:\n{}", out.describe()))
}

#[test]
fn search_and_groups_over_sasl_ssl() {
    let s = secrets().with_users();
    let (broker, _plain) = sasl_broker(&s);
    let addr = broker.addr();
    create_topic(&s, &addr, "logs", "3");
    let records: Vec<String> = (0..200).map(log_record).collect();
    produce(&s, &addr, &records);

    let search = |args: &[&str], password: &str| {
        let args = [&["search"][..], args].concat();
        run(
            &mut rill_secure(&args, &s, &addr, "reader", password),
            None,
            T,
        )
    };
    assert_eq!(
        count_of(&search(&["secured search", "--count"], READER_PW)),
        200
    );
    assert_eq!(
        count_of(&search(
            &["secured search", "--count", "--level", "error"],
            READER_PW
        )),
        20
    );
    assert_eq!(
        count_of(&search(
            &["secured search", "--count", "--host", "web1"],
            READER_PW
        )),
        67
    );
    let json = search(&["secured search 01[0-9]$", "--json"], READER_PW);
    json.assert_ok();
    let mut lines: Vec<String> = json
        .stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{}", json.describe()));
            v["line"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    lines.sort();
    let want: Vec<String> = (10..20).map(|i| format!("secured search {i:03}")).collect();
    assert_eq!(lines, want, "{}", json.describe());

    // A wrong password and a missing CA are named, not reported as an unreachable broker,
    // and a refused password is reported at once, not after the 10 s --timeout-ms.
    assert_refused_at_once(&search(&["secured search", "--count"], "not-it"));
    let mut no_ca = rill_cmd([
        "search",
        "secured",
        "--count",
        "--brokers",
        &addr,
        "--security-protocol",
        "sasl_ssl",
        "--sasl-username",
        "reader",
        "--timeout-ms",
        "2000",
    ]);
    no_ca.env("RILL_SASL_PASSWORD", READER_PW);
    let no_ca = run(&mut no_ca, None, T);
    no_ca.assert_fails_with("certificate verify failed");

    // A group that consumed 50 of the 200 records and left: `rill groups` sees it over SASL.
    let mut consume = kcat_scram_ssl(&s, &addr, "reader", READER_PW);
    consume.args([
        "-G",
        "secured-readers",
        "-X",
        "auto.offset.reset=earliest",
        "-c",
        "50",
        "-e",
        "-q",
        "logs",
    ]);
    run(&mut consume, None, T).assert_ok();
    let groups = |args: &[&str]| {
        let args = [&["groups"][..], args].concat();
        run(
            &mut rill_secure(&args, &s, &addr, "reader", READER_PW),
            None,
            T,
        )
    };
    let list = groups(&["list"]);
    list.assert_ok();
    let row = list
        .stdout
        .lines()
        .find(|l| l.starts_with("secured-readers"))
        .unwrap_or_else(|| panic!("no group row:\n{}", list.describe()));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells.last(), Some(&"150"), "{row}");
    let describe = groups(&["describe", "secured-readers", "--json"]);
    describe.assert_ok();
    let doc: Value = serde_json::from_str(&describe.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", describe.describe()));
    assert!(
        describe.stdout.contains("logs"),
        "{doc:#}\n{}",
        describe.describe()
    );
    assert_refused_at_once(&run(
        &mut rill_secure(&["groups", "list"], &s, &addr, "reader", "not-it"),
        None,
        T,
    ));
}

#[test]
fn dash_over_sasl_ssl_in_tmux() {
    let (s, _broker, addr) =
        broker_with_user("dash", &["--read", "logs", "--read", "metrics"], DASH_PW);
    create_topic(&s, &addr, "logs", "3");
    create_topic(&s, &addr, "metrics", "1");
    produce(&s, &addr, &[log_record(1)]);

    let bin = env!("CARGO_BIN_EXE_rill");
    let dash = |password: &str| {
        format!(
            "RILL_SASL_PASSWORD='{password}' {bin} dash --brokers {addr} --ca-cert {ca} \
             --sasl-username dash; echo DASH-EXITED $?; sleep 60",
            ca = s.ca.display()
        )
    };
    let tmux = Tmux::new(s.dir.path(), "dash");
    tmux.start(120, 30, &dash(DASH_PW));
    tmux.wait_for(&format!("{addr} connected"));
    tmux.wait_for("secured search 001");
    produce(&s, &addr, &[log_record(42)]);
    let screen = tmux.wait_for("secured search 042");
    assert!(screen.contains("web0"), "{screen}");
    assert!(!screen.contains("disconnected"), "{screen}");
    tmux.keys(&["q"]);
    tmux.wait_for("DASH-EXITED 0");

    // A wrong password: the status bar says why instead of "connected".
    let wrong_dir = s.dir.path().join("wrong");
    fs::create_dir_all(&wrong_dir).expect("mkdir");
    let tmux = Tmux::new(&wrong_dir, "dash-wrong");
    tmux.start(160, 30, &dash("not-it"));
    tmux.wait_for("Authentication failed");
    tmux.keys(&["q"]);
    tmux.wait_for("DASH-EXITED 0");
}
