//! Consumer groups with real clients over TCP: kcat -G members splitting a topic, eviction of a
//! member that stops heartbeating, confluent-kafka commits surviving SIGKILL, kafka-python, and
//! the coordinator's error codes for bad requests.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::wire::{str_bytes, topic_name, Conn};
use common::Broker;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, OffsetCommitRequest, SyncGroupRequest,
};
use kafka_protocol::ResponseError;

/// Short waits so the tests run quickly; the timeouts themselves are the clients' defaults.
const GROUP_CONFIG: &str = "[broker.groups]\ninitial_rebalance_delay_ms = 300\n";

/// A `kcat -G` member writing `partition offset` lines to a file and its log to another.
struct Member {
    child: Child,
    out: std::path::PathBuf,
    err: std::path::PathBuf,
}

impl Member {
    fn start(broker: &Broker, group: &str, topic: &str, name: &str) -> Member {
        let out = broker.scratch().join(format!("{name}.out"));
        let err = broker.scratch().join(format!("{name}.err"));
        let child = common::system_command(common::kcat())
            // -u: unbuffered, so the file shows records as they arrive.
            .args([
                "-u",
                "-b",
                &broker.addr(),
                "-G",
                group,
                topic,
                "-f",
                "%p %o\\n",
            ])
            .args([
                "-X",
                "auto.offset.reset=earliest",
                "-X",
                "session.timeout.ms=6000",
            ])
            .args(["-X", "heartbeat.interval.ms=500"])
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("create out"))
            .stderr(File::create(&err).expect("create err"))
            .spawn()
            .expect("spawn kcat -G");
        Member { child, out, err }
    }

    fn records(&self) -> Vec<(i32, i64)> {
        read(&self.out)
            .lines()
            .filter_map(|l| {
                let (p, o) = l.split_once(' ')?;
                Some((p.parse().ok()?, o.parse().ok()?))
            })
            .collect()
    }

    /// The partitions of kcat's latest "assigned:" line, once it has one.
    fn assignment(&self) -> Option<BTreeSet<i32>> {
        let log = read(&self.err);
        let line = log.lines().rev().find(|l| l.contains("assigned:"))?;
        let assigned = line.split("assigned:").nth(1)?;
        Some(
            assigned
                .split('[')
                .skip(1)
                .filter_map(|s| s.split(']').next()?.trim().parse().ok())
                .collect(),
        )
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal}");
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

fn produce_lines(broker: &Broker, topic: &str, count: usize) {
    let lines: String = (0..count).map(|i| format!("key{i}:value {i}\n")).collect();
    common::run(
        common::kcat_cmd(&broker.addr()).args(["-P", "-t", topic, "-K:"]),
        Some(lines.as_bytes()),
        Duration::from_secs(30),
    )
    .assert_ok();
}

fn create_topic(broker: &Broker, topic: &str, partitions: &str) {
    common::run(
        &mut common::rill_cmd([
            "topics",
            "create",
            topic,
            "--partitions",
            partitions,
            "--brokers",
            &broker.addr(),
        ]),
        None,
        Duration::from_secs(30),
    )
    .assert_ok();
}

#[test]
fn two_kcat_members_split_a_four_partition_topic() {
    let broker = Broker::start_with_config(GROUP_CONFIG);
    create_topic(&broker, "split", "4");
    produce_lines(&broker, "split", 400);
    let a = Member::start(&broker, "splitters", "split", "a");
    let b = Member::start(&broker, "splitters", "split", "b");
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(
            "both members to read all 400 records",
            Duration::from_secs(40),
            || a.records().len() + b.records().len() >= 400,
        )
    }));
    assert!(
        waited.is_ok(),
        "read {} + {} records
--- a ---\n{}\n--- b ---\n{}",
        a.records().len(),
        b.records().len(),
        read(&a.err),
        read(&b.err)
    );
    let (ra, rb) = (a.records(), b.records());
    let pa: HashSet<i32> = ra.iter().map(|r| r.0).collect();
    let pb: HashSet<i32> = rb.iter().map(|r| r.0).collect();
    assert_eq!(
        pa.len(),
        2,
        "member a read partitions {pa:?}\n{}",
        read(&a.err)
    );
    assert_eq!(
        pb.len(),
        2,
        "member b read partitions {pb:?}\n{}",
        read(&b.err)
    );
    assert!(
        pa.is_disjoint(&pb),
        "both members read a partition: {pa:?} {pb:?}"
    );
    let all: HashSet<(i32, i64)> = ra.iter().chain(rb.iter()).copied().collect();
    assert_eq!(all.len(), 400, "duplicates or gaps across members");
    assert_eq!(ra.len() + rb.len(), 400, "a record was read twice");
}

#[test]
fn a_member_that_stops_heartbeating_is_evicted_within_session_timeout() {
    let broker = Broker::start_with_config(GROUP_CONFIG);
    create_topic(&broker, "evict", "4");
    let a = Member::start(&broker, "evictors", "evict", "a");
    let b = Member::start(&broker, "evictors", "evict", "b");
    wait_for(
        "a two-way split",
        Duration::from_secs(30),
        || matches!((a.assignment(), b.assignment()), (Some(x), Some(y)) if x.len() == 2 && y.len() == 2),
    );
    // SIGSTOP: b stays connected but sends nothing, like a hung process.
    b.signal("-STOP");
    let took = wait_for(
        "a to be assigned all four partitions",
        Duration::from_secs(20),
        || a.assignment().is_some_and(|p| p.len() == 4),
    );
    // session.timeout.ms=6000, plus one second for the survivor's rejoin.
    assert!(
        took <= Duration::from_secs(7),
        "reassignment took {took:?} (> session timeout + 1 s)\n{}",
        broker.log_excerpt()
    );
    assert!(
        broker.log().contains("session timed out"),
        "{}",
        broker.log_excerpt()
    );
}

#[test]
fn committed_offsets_survive_sigkill_and_a_new_member_resumes_after_them() {
    let mut broker = Broker::start_with_config(GROUP_CONFIG);
    let run = common::run_interop(
        "groups_check.py",
        &[&broker.addr(), "commit", "resume-me", "g1"],
        Duration::from_secs(120),
    );
    assert!(
        run.success() && run.stdout.contains("OK"),
        "{}\n{}",
        run.describe(),
        broker.log_excerpt()
    );
    let committed = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("COMMITTED "))
        .expect("committed offsets printed")
        .replace(' ', ",");
    broker.kill_9();
    broker.restart();
    let run = common::run_interop(
        "groups_check.py",
        &[&broker.addr(), "resume", "resume-me", "g1", &committed],
        Duration::from_secs(120),
    );
    assert!(
        run.success() && run.stdout.contains("OK"),
        "{}\n{}",
        run.describe(),
        broker.log_excerpt()
    );
}

#[test]
fn kafka_python_group_consumer_reads_and_commits() {
    let broker = Broker::start_with_config(GROUP_CONFIG);
    let run = common::run_interop(
        "groups_check.py",
        &[&broker.addr(), "kafka_python", "kp", "kp-group"],
        Duration::from_secs(120),
    );
    assert!(
        run.success() && run.stdout.contains("OK"),
        "{}\n{}",
        run.describe(),
        broker.log_excerpt()
    );
}

fn join_request(group: &str, protocol_type: &str, member: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(str_bytes(member))
        .with_protocol_type(str_bytes(protocol_type))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(str_bytes("range"))
            .with_metadata(bytes::Bytes::from_static(
                b"\0\0\0\0\0\x01\0\x01t\0\0\0\0",
            ))])
}

fn commit_request(
    group: &str,
    generation: i32,
    member: &str,
    topic: &str,
    partition: i32,
) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(str_bytes(member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(partition)
                .with_committed_offset(5)])])
}

#[test]
fn bad_group_requests_get_kafka_error_codes_and_harm_no_one() {
    let mut broker = Broker::start_with_config("[broker.groups]\ninitial_rebalance_delay_ms = 0\n");
    let mut conn = Conn::connect(&broker.addr());
    conn.create_topic("t", 1);

    // Unknown protocol type, empty and over-long group ids.
    let resp = conn.request(5, &join_request("g", "connect", ""));
    assert_eq!(
        resp.error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
    let resp = conn.request(5, &join_request("", "consumer", ""));
    assert_eq!(resp.error_code, ResponseError::InvalidGroupId.code());
    let resp = conn.request(5, &join_request(&"g".repeat(300), "consumer", ""));
    assert_eq!(resp.error_code, ResponseError::InvalidGroupId.code());

    // A real member: KIP-394 first hands out an id, the second join gets generation 1.
    let first = conn.request(5, &join_request("g", "consumer", ""));
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    let member = first.member_id.to_string();
    let joined = conn.request(5, &join_request("g", "consumer", &member));
    assert_eq!((joined.error_code, joined.generation_id), (0, 1));
    // Until the leader's SyncGroup, commits are refused: the assignment is not settled.
    let resp = conn.request(4, &commit_request("g", 1, &member, "t", 0));
    assert_eq!(
        resp.topics[0].partitions[0].error_code,
        ResponseError::RebalanceInProgress.code()
    );
    let synced = conn.request(
        3,
        &SyncGroupRequest::default()
            .with_group_id(GroupId(str_bytes("g")))
            .with_generation_id(1)
            .with_member_id(str_bytes(&member))
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(str_bytes(&member))
                .with_assignment(bytes::Bytes::from_static(b"assignment"))]),
    );
    assert_eq!(synced.error_code, 0);
    assert_eq!(synced.assignment, bytes::Bytes::from_static(b"assignment"));
    let resp = conn.request(4, &commit_request("g", 1, &member, "t", 0));
    assert_eq!(resp.topics[0].partitions[0].error_code, 0);

    // Stale generation, unknown member, missing partition.
    let resp = conn.request(4, &commit_request("g", 0, &member, "t", 0));
    assert_eq!(
        resp.topics[0].partitions[0].error_code,
        ResponseError::IllegalGeneration.code()
    );
    let resp = conn.request(4, &commit_request("g", 1, "ghost", "t", 0));
    assert_eq!(
        resp.topics[0].partitions[0].error_code,
        ResponseError::UnknownMemberId.code()
    );
    let resp = conn.request(4, &commit_request("g", 1, &member, "t", 7));
    assert_eq!(
        resp.topics[0].partitions[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let hb = conn.request(
        3,
        &HeartbeatRequest::default()
            .with_group_id(GroupId(str_bytes("g")))
            .with_generation_id(9)
            .with_member_id(str_bytes(&member)),
    );
    assert_eq!(hb.error_code, ResponseError::IllegalGeneration.code());
    broker.assert_healthy("bad group requests");
}
