//! TLS, SASL (PLAIN, SCRAM-SHA-256) and per-user topic permissions, driven with real clients:
//! kcat, confluent-kafka, kafka-python, `rill topics` and a raw wire client. Certificates are
//! made per test with rcgen (a CA and a server certificate for 127.0.0.1); users are added with
//! `rill users add`, the password on stdin as in CI (fixtures in `common::security`).

mod common;

use std::process::Command;
use std::time::Duration;

use common::security::{
    kcat_sasl, kcat_scram_ssl, sasl_broker, secrets, users_cmd, ADMIN_PW, READER_PW, WRITER_PW,
};
use common::wire::{self, Conn};
use common::{kcat_cmd, rill_cmd, run, Broker};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, SaslAuthenticateRequest, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

const T: Duration = Duration::from_secs(60);

#[test]
fn users_cli_adds_lists_changes_and_removes_users_without_storing_passwords() {
    let s = secrets().with_users();
    let text = std::fs::read_to_string(&s.users).expect("users file");
    for password in [ADMIN_PW, WRITER_PW, READER_PW] {
        assert!(
            !text.contains(password),
            "a password is stored in clear:\n{text}"
        );
    }
    assert!(
        text.contains("stored_key") && text.contains("server_key"),
        "{text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&s.users)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "users file readable by others: {mode:o}");
    }

    let list = users_cmd(&s.users, &["list"], None);
    list.assert_ok();
    assert!(
        list.stdout.contains("USER") && list.stdout.contains("READ"),
        "{}",
        list.stdout
    );
    let writer_line = list
        .stdout
        .lines()
        .find(|l| l.starts_with("writer"))
        .unwrap_or_else(|| panic!("no writer in:\n{}", list.stdout));
    assert!(writer_line.contains("logs*"), "{writer_line}");

    let json = users_cmd(&s.users, &["list", "--json"], None);
    json.assert_ok();
    let reader: serde_json::Value = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
        .find(|v| v["name"] == "reader")
        .expect("reader in --json");
    assert_eq!(reader["read"], serde_json::json!(["logs"]));
    assert_eq!(reader["write"], serde_json::json!([]));

    // Adding an existing user, an empty password and a bad name are refused, nothing changes.
    let dup = users_cmd(&s.users, &["add", "reader"], Some("x\n"));
    dup.assert_fails_with("already exists");
    let empty = users_cmd(&s.users, &["add", "nobody"], Some("\n"));
    empty.assert_fails_with("empty password");
    let bad = users_cmd(&s.users, &["add", "bad name"], Some("x\n"));
    bad.assert_fails_with("invalid user name");

    let before = std::fs::read_to_string(&s.users).expect("users file");
    users_cmd(&s.users, &["passwd", "reader"], Some("new-pw\n")).assert_ok();
    let after = std::fs::read_to_string(&s.users).expect("users file");
    assert_ne!(before, after, "passwd changed nothing");
    users_cmd(&s.users, &["remove", "reader"], None).assert_ok();
    let list = users_cmd(&s.users, &["list"], None);
    assert!(!list.stdout.contains("reader"), "{}", list.stdout);
    let gone = users_cmd(&s.users, &["remove", "reader"], None);
    gone.assert_fails_with("no user `reader`");

    // A damaged file is reported with its line and key.
    let broken = s.dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        "[users.x]\nread = []\nscram_sha_256 = { iterations = 4096, salt = \"%%\", stored_key = \"\", server_key = \"\" }\n",
    )
    .expect("write");
    let err = users_cmd(&broken, &["list"], None);
    assert!(!err.success(), "{}", err.describe());
    assert!(
        err.stderr.contains("line 3") && err.stderr.contains("users.x.scram_sha_256.salt"),
        "{}",
        err.describe()
    );
}

#[test]
fn tls_listener_serves_kcat_and_confluent_and_refuses_plaintext() {
    let s = secrets();
    let broker = Broker::start_with_config(&s.tls_config());
    assert!(
        broker.log().contains("(SSL, no authentication)"),
        "{}",
        broker.log_excerpt()
    );

    let tls = |cmd: &mut Command| {
        cmd.args(["-X", "security.protocol=ssl"])
            .arg("-X")
            .arg(format!("ssl.ca.location={}", s.ca.display()));
    };
    let mut produce = kcat_cmd(&broker.addr());
    tls(&mut produce);
    produce.args(["-P", "-t", "tls-kcat", "-p", "0"]);
    run(&mut produce, Some(b"one\ntwo\nthree\n"), T).assert_ok();
    let mut consume = kcat_cmd(&broker.addr());
    tls(&mut consume);
    consume.args(["-C", "-t", "tls-kcat", "-o", "beginning", "-e", "-q"]);
    let out = run(&mut consume, None, T);
    out.assert_ok();
    assert_eq!(out.stdout, "one\ntwo\nthree\n", "{}", out.describe());

    let setup = serde_json::json!({"tls": broker.addr(), "ca": s.ca});
    let py = common::run_interop("security_check.py", &["ssl", &setup.to_string()], T * 2);
    assert!(
        py.success() && py.stdout.contains("OK"),
        "{}\n{}",
        py.describe(),
        broker.log_excerpt()
    );

    // A plaintext Kafka client gets no Kafka answer (at most a TLS alert, which is no valid
    // frame), and the broker logs a failed TLS handshake.
    let log_len = broker.log_len();
    let mut conn = Conn::connect(&broker.addr());
    let (_, payload) = conn.encode_request(3, &ApiVersionsRequest::default());
    conn.send_frame(&payload).expect("send");
    if let Ok(Some(frame)) = conn.read_frame() {
        panic!("the TLS listener answered a plaintext request: {frame:?}");
    }
    broker.wait_log_grows(log_len, "the failed TLS handshake");
    assert!(
        broker.log().contains("TLS handshake failed"),
        "{}",
        broker.log_excerpt()
    );
}

#[test]
fn sasl_with_kcat_and_rill_topics_authenticates_and_enforces_permissions() {
    let s = secrets().with_users();
    let (broker, plain) = sasl_broker(&s);
    let addr = broker.addr();

    // The writer produces with SCRAM-SHA-256 over SASL_SSL (auto-creating `logs`)...
    let mut produce = kcat_scram_ssl(&s, &addr, "writer", WRITER_PW);
    produce.args(["-P", "-t", "logs", "-p", "0"]);
    run(&mut produce, Some(b"a\nb\nc\n"), T).assert_ok();
    // ...and the reader reads with PLAIN over the SASL_PLAINTEXT listener; Metadata tells it
    // that listener's port, not the TLS one.
    let mut consume = kcat_sasl(&plain, "SASL_PLAINTEXT", None, "PLAIN", "reader", READER_PW);
    consume.args(["-C", "-t", "logs", "-o", "beginning", "-e", "-q"]);
    let out = run(&mut consume, None, T);
    out.assert_ok();
    assert_eq!(out.stdout, "a\nb\nc\n", "{}", out.describe());

    // A wrong password is refused, reported by the client and logged with the peer address.
    let log_len = broker.log_len();
    let mut wrong = kcat_scram_ssl(&s, &addr, "writer", "wrong");
    wrong.args(["-L", "-m", "5"]);
    let out = run(&mut wrong, None, T);
    assert!(
        !out.success(),
        "wrong password listed metadata: {}",
        out.describe()
    );
    assert!(
        out.stderr.contains("Authentication failed"),
        "kcat does not say why: {}",
        out.describe()
    );
    broker.wait_log_grows(log_len, "the failed authentication");
    let log = broker.log();
    let failure = log
        .lines()
        .find(|l| l.contains("SASL authentication failed"))
        .unwrap_or_else(|| panic!("no failure logged\n{}", broker.log_excerpt()));
    assert!(
        failure.contains("peer=127.0.0.1:") && failure.contains("writer"),
        "{failure}"
    );
    let mut wrong_plain = kcat_sasl(&plain, "SASL_PLAINTEXT", None, "PLAIN", "reader", "nope");
    wrong_plain.args(["-L", "-m", "5"]);
    let out = run(&mut wrong_plain, None, T);
    out.assert_fails_with("Authentication failed");

    // The reader may not produce: the client reports Kafka's authorization error.
    let mut denied = kcat_scram_ssl(&s, &addr, "reader", READER_PW);
    denied.args(["-P", "-t", "logs", "-p", "0"]);
    let out = run(&mut denied, Some(b"forbidden\n"), T);
    assert!(
        out.stderr
            .to_lowercase()
            .contains("topic authorization failed"),
        "{}",
        out.describe()
    );

    // `rill topics` over TLS + SASL: the admin creates, the reader sees only what it may read,
    // the writer cannot delete.
    let topics = |user: &str, pw: &str, args: &[&str]| {
        let mut cmd = rill_cmd(["topics"]);
        cmd.args(args)
            .args(["--brokers", &addr, "--sasl-username", user])
            .arg("--ca-cert")
            .arg(&s.ca)
            .env("RILL_SASL_PASSWORD", pw);
        run(&mut cmd, None, T)
    };
    topics("admin", ADMIN_PW, &["create", "secret"]).assert_ok();
    let listed = topics("reader", READER_PW, &["list"]);
    listed.assert_ok();
    assert!(listed.stdout.contains("logs"), "{}", listed.describe());
    assert!(
        !listed.stdout.contains("secret"),
        "reader sees a topic it may not: {}",
        listed.describe()
    );
    let all = topics("admin", ADMIN_PW, &["list"]);
    assert!(
        all.stdout.contains("secret") && all.stdout.contains("logs"),
        "{}",
        all.describe()
    );
    let delete = topics("writer", WRITER_PW, &["delete", "logs"]);
    assert!(
        !delete.success()
            && delete
                .stderr
                .to_lowercase()
                .contains("authorization failed"),
        "{}",
        delete.describe()
    );
    let create = topics("writer", WRITER_PW, &["create", "logs-2"]);
    assert!(
        !create.success(),
        "a writer created a topic: {}",
        create.describe()
    );
    let no_password = {
        let mut cmd = rill_cmd([
            "topics",
            "list",
            "--brokers",
            &addr,
            "--sasl-username",
            "reader",
        ]);
        cmd.env_remove("RILL_SASL_PASSWORD");
        run(&mut cmd, None, T)
    };
    no_password.assert_fails_with("RILL_SASL_PASSWORD");
    // A wrong password is named as such, not reported as an unreachable broker.
    let wrong = topics("reader", "not-it", &["list"]);
    wrong.assert_fails_with("Authentication failed");
    topics("admin", ADMIN_PW, &["delete", "secret"]).assert_ok();

    // A client that does not authenticate gets ApiVersions, then is cut off at its Produce.
    let log_len = broker.log_len();
    let mut conn = Conn::connect(&plain);
    let versions = conn.api_versions(3);
    assert!(
        versions
            .api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::SaslHandshake as i16),
        "SaslHandshake not advertised on a SASL listener"
    );
    let req = Conn::produce_request(
        "logs",
        0,
        -1,
        wire::batch(&[b"sneaky"], Compression::None, wire::now_ms()),
    );
    let (_, payload) = conn.encode_request(7, &req);
    conn.send_frame(&payload).expect("send produce");
    conn.assert_closed("an unauthenticated Produce");
    broker.wait_log_grows(log_len, "the unauthenticated request");
    assert!(
        broker
            .log()
            .contains("Produce request before SASL authentication"),
        "{}",
        broker.log_excerpt()
    );
    // Nothing of it was written: the topic still has 3 records.
    let mut count = kcat_sasl(
        &plain,
        "SASL_PLAINTEXT",
        None,
        "SCRAM-SHA-256",
        "reader",
        READER_PW,
    );
    count.args(["-C", "-t", "logs", "-o", "beginning", "-e", "-q"]);
    let out = run(&mut count, None, T);
    assert_eq!(out.stdout.lines().count(), 3, "{}", out.describe());
}

#[test]
fn sasl_with_confluent_and_kafka_python() {
    let s = secrets().with_users();
    let (broker, plain) = sasl_broker(&s);
    let setup = serde_json::json!({
        "tls": broker.addr(),
        "plain": plain,
        "ca": s.ca,
        "passwords": {"admin": ADMIN_PW, "writer": WRITER_PW, "reader": READER_PW},
    });
    let py = common::run_interop("security_check.py", &["sasl", &setup.to_string()], T * 3);
    assert!(
        py.success() && py.stdout.contains("OK"),
        "{}\n{}",
        py.describe(),
        broker.log_excerpt()
    );
    eprintln!("{}", py.stdout);
}

/// SaslHandshake v0 (the pre-KIP-152 form, still used by some clients): the tokens that follow
/// are bare frames. PLAIN succeeds with an empty reply frame; a wrong password closes.
#[test]
fn sasl_handshake_v0_with_bare_plain_tokens() {
    let s = secrets().with_users();
    let broker = Broker::start_with_config(&s.sasl_config());
    assert!(
        broker
            .log()
            .contains("(SASL_PLAINTEXT, SASL SCRAM-SHA-256/PLAIN"),
        "{}",
        broker.log_excerpt()
    );

    let handshake = |conn: &mut Conn| {
        let req =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
        let resp: SaslHandshakeResponse = conn.request(0, &req);
        assert_eq!(resp.error_code, 0);
        assert!(resp
            .mechanisms
            .iter()
            .any(|m| m.as_str() == "SCRAM-SHA-256"));
    };
    let mut conn = Conn::connect(&broker.addr());
    handshake(&mut conn);
    conn.send_frame(format!("\0reader\0{READER_PW}").as_bytes())
        .expect("send token");
    let reply = conn.read_frame().expect("read").expect("a reply frame");
    assert!(
        reply.is_empty(),
        "PLAIN success is an empty token: {reply:?}"
    );
    // Authenticated: Metadata is served (the reader may see `logs` but not create it).
    let metadata = conn.metadata(1, Some(&["logs"]), true);
    assert_eq!(metadata.topics.len(), 1);
    assert_eq!(
        metadata.topics[0].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );

    let mut conn = Conn::connect(&broker.addr());
    handshake(&mut conn);
    conn.send_frame(b"\0reader\0wrong").expect("send token");
    conn.assert_closed("a wrong PLAIN password after a v0 handshake");

    // The broker re-reads the users file when it changes: a user added now can log in.
    users_cmd(
        &s.users,
        &["add", "late", "--read", "logs"],
        Some("late-pw\n"),
    )
    .assert_ok();
    let mut conn = Conn::connect(&broker.addr());
    handshake(&mut conn);
    conn.send_frame(b"\0late\0late-pw").expect("send token");
    let reply = conn.read_frame().expect("read").expect("a reply frame");
    assert!(reply.is_empty(), "the new user was refused: {reply:?}");
    assert!(
        broker.log().contains("reloaded the users file"),
        "{}",
        broker.log_excerpt()
    );

    // An unknown mechanism is answered UNSUPPORTED_SASL_MECHANISM with the list, then closed.
    let mut conn = Conn::connect(&broker.addr());
    let req = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("GSSAPI"));
    let resp: SaslHandshakeResponse = conn.request(1, &req);
    assert_eq!(resp.error_code, 33, "UNSUPPORTED_SASL_MECHANISM");
    conn.assert_closed("an unsupported mechanism");

    // SaslAuthenticate before a handshake is ILLEGAL_SASL_STATE.
    let mut conn = Conn::connect(&broker.addr());
    let (id, payload) = conn.encode_request(
        1,
        &SaslAuthenticateRequest::default().with_auth_bytes(bytes::Bytes::from_static(b"x")),
    );
    conn.send_frame(&payload).expect("send");
    let resp = conn.read_response::<SaslAuthenticateRequest>(1, id);
    assert_eq!(resp.error_code, 34, "ILLEGAL_SASL_STATE");
}
