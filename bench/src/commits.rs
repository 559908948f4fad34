//! `rill-bench commits`: OffsetCommit throughput and latency. librdkafka sends one commit at a
//! time per consumer and a synchronous commit waits for its answer, so a single consumer only
//! measures the round trip. To load the broker, N consumers commit concurrently, each in a
//! loop, each in its own group (`G-0` .. `G-(N-1)`) on its own partition, so no two of them
//! share a group's generation or a key in the offset store.
//!
//! The consumers never join their groups: a commit with no member id and generation -1 is the
//! "simple" commit Kafka (and rill) accept for groups without members, which is what a
//! manually assigning application does. They do not even assign() the partition, because that
//! would start a fetcher whose Fetch requests compete with the commits for the two cores; a
//! commit names its partitions explicitly and librdkafka does not need them assigned.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::common::{self, Conn, LogContext, SETUP_TIMEOUT};
use crate::procfs;
use crate::produce::{percentile, Latency};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub conn: Conn,

    /// Group id prefix: committer i commits as group G-i.
    #[arg(long)]
    pub group: String,

    /// Partitions to create the topic with, if it does not exist (committer i uses partition
    /// i mod this). The broker refuses commits to partitions that do not exist.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,

    /// How long to commit for.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,

    /// Concurrent committers (one librdkafka consumer and thread each).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub connections: u32,
}

/// One commit run, as printed on stdout.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CommitsResult {
    pub kind: String,
    pub topic: String,
    pub group: String,
    pub connections: u32,
    /// From the common start to the last commit answered.
    pub seconds: f64,
    pub commits: u64,
    pub commits_per_sec: f64,
    /// Commit round trip: call to return of one synchronous commit() (one partition each).
    pub latency_ms: Latency,
    /// Broker CPU seconds (user + system) spent during `seconds`, if --broker-pid was given.
    pub broker_cpu_s: Option<f64>,
}

/// What one committer did in the timed window.
struct CommitterReport {
    latencies_us: Vec<u32>,
    finished: Instant,
}

pub fn run(args: &Args) -> Result<()> {
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        bail!("--seconds must be positive");
    }
    let topic = args.conn.topic.clone();
    let partitions = common::ensure_topic(&args.conn, &topic, args.partitions)?;
    let n = args.connections as usize;
    let window = Duration::from_secs_f64(args.seconds);
    // Every committer connects and makes one untimed commit (coordinator lookup, connection,
    // ApiVersions), then waits here so that all start the timed loop together.
    let start_line = Arc::new(Barrier::new(n + 1));
    let start_at: Arc<std::sync::OnceLock<Instant>> = Arc::default();
    let mut threads = Vec::with_capacity(n);
    for i in 0..n {
        let group = format!("{}-{i}", args.group);
        let partition = i as i32 % partitions;
        let cfg = args.conn.client_config(&[
            ("group.id", group.as_str()),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
        ]);
        let (topic, start_line, start_at) = (topic.clone(), start_line.clone(), start_at.clone());
        threads.push(std::thread::spawn(move || -> Result<CommitterReport> {
            let prepared = prepare(&cfg, &topic, partition, &group);
            // Reach the barrier even after a failure, or everyone else waits forever.
            start_line.wait();
            let consumer = prepared?;
            let start = *start_at
                .get()
                .ok_or_else(|| anyhow!("no start time was set"))?;
            let deadline = start + window;
            let mut latencies_us = Vec::with_capacity(65_536);
            // Offsets rise by one per commit: the broker stores every one, and the final
            // OffsetFetch below proves the last one landed.
            let mut offset = 1i64;
            let mut finished = Instant::now();
            while finished < deadline {
                offset += 1;
                let tpl = one_offset(&topic, partition, Offset::Offset(offset))?;
                let t = Instant::now();
                consumer
                    .commit(&tpl, CommitMode::Sync)
                    .with_context(|| format!("commit {group} {topic}/{partition}@{offset}"))?;
                finished = Instant::now();
                let us = finished.duration_since(t).as_micros();
                latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            let tpl = one_offset(&topic, partition, Offset::Invalid)?;
            let stored = consumer
                .committed_offsets(tpl, SETUP_TIMEOUT)
                .with_context(|| format!("OffsetFetch for {group}"))?;
            let got = stored.find_partition(&topic, partition).map(|e| e.offset());
            if got != Some(Offset::Offset(offset)) {
                bail!("{group} {topic}/{partition}: last commit was {offset}, broker has {got:?}");
            }
            Ok(CommitterReport {
                latencies_us,
                finished,
            })
        }));
    }

    // Taken before the committers are released, so none can look at it too early.
    let cpu_before = broker_cpu(args.conn.broker_pid)?;
    let start = Instant::now();
    let _ = start_at.set(start);
    start_line.wait();
    eprintln!(
        "commits: {n} committer(s) for {:.1} s on {topic}",
        args.seconds
    );

    let mut latencies = Vec::new();
    let mut end = start;
    let mut first_error = None;
    for t in threads {
        match t.join() {
            Ok(Ok(report)) => {
                latencies.extend(report.latencies_us);
                end = end.max(report.finished);
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(anyhow!("a committer thread panicked"));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let cpu_after = broker_cpu(args.conn.broker_pid)?;
    let seconds = end.duration_since(start).as_secs_f64();
    latencies.sort_unstable();
    let ms = |q: f64| f64::from(percentile(&latencies, q)) / 1_000.0;
    let commits = latencies.len() as u64;
    let result = CommitsResult {
        kind: "commits".into(),
        topic,
        group: args.group.clone(),
        connections: args.connections,
        seconds,
        commits,
        commits_per_sec: commits as f64 / seconds.max(1e-9),
        latency_ms: Latency {
            p50: ms(0.50),
            p99: ms(0.99),
            p999: ms(0.999),
            max: ms(1.0),
        },
        broker_cpu_s: cpu_before.zip(cpu_after).map(|(b, a)| a - b),
    };
    eprintln!(
        "commits: {n} committer(s): {:.0} commits/s, p50 {:.2} ms, p99 {:.2} ms",
        result.commits_per_sec, result.latency_ms.p50, result.latency_ms.p99
    );
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// A consumer that has already committed once, so the coordinator is known and connected.
fn prepare(
    cfg: &rdkafka::ClientConfig,
    topic: &str,
    partition: i32,
    group: &str,
) -> Result<BaseConsumer<LogContext>> {
    let consumer: BaseConsumer<LogContext> = cfg
        .create_with_context(LogContext)
        .context("creating a committer")?;
    consumer
        .commit(
            &one_offset(topic, partition, Offset::Offset(1))?,
            CommitMode::Sync,
        )
        .with_context(|| format!("warm-up commit for {group} on {topic}/{partition}"))?;
    Ok(consumer)
}

fn one_offset(topic: &str, partition: i32, offset: Offset) -> Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::with_capacity(1);
    tpl.add_partition_offset(topic, partition, offset)
        .with_context(|| format!("{topic}/{partition}"))?;
    Ok(tpl)
}

fn broker_cpu(pid: Option<u32>) -> Result<Option<f64>> {
    pid.map(procfs::cpu_seconds).transpose()
}
