//! `rill-bench consume`: read a whole topic back, from each partition's earliest offset to the
//! high watermark it had when the run started, and time it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::common::{self, Conn, LogContext, Progress, SETUP_TIMEOUT};
use crate::procfs;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub conn: Conn,

    /// Records the topic must hold; the run fails if the watermarks or the read-back disagree.
    #[arg(long)]
    pub records: Option<u64>,

    /// Give up when no record has arrived for this many seconds.
    #[arg(long, default_value_t = 30)]
    pub idle_timeout_secs: u64,
}

/// One consume run, as printed on stdout.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ConsumeResult {
    pub kind: String,
    pub topic: String,
    pub partitions: i32,
    pub records: u64,
    /// Payload bytes read.
    pub bytes: u64,
    /// From assign() to the last record.
    pub seconds: f64,
    pub records_per_sec: f64,
    /// Payload bytes only, 10^6 bytes per MB.
    pub mb_per_sec: f64,
    /// Broker CPU seconds (user + system) spent during `seconds`, if --broker-pid was given.
    pub broker_cpu_s: Option<f64>,
}

/// Where one partition's read-back stands.
struct PartitionCursor {
    /// Next offset we expect to see.
    next: i64,
    /// High watermark at the start: the read-back is complete at this offset.
    end: i64,
}

pub fn run(args: &Args) -> Result<()> {
    let topic = args.conn.topic.as_str();
    let tuning = [
        // assign() needs a group.id in librdkafka, but nothing here joins a group or commits:
        // rill has no group coordinator, and the benchmark measures fetching only.
        ("group.id", "rill-bench"),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("enable.partition.eof", "false"),
        // Big fetches, so the read-back is bound by the broker's read path rather than by
        // round trips; the prefetch queue is deep enough to hold several of them.
        ("fetch.max.bytes", "52428800"),
        ("max.partition.fetch.bytes", "10485760"),
        ("fetch.min.bytes", "1"),
        ("fetch.wait.max.ms", "100"),
        ("queued.min.messages", "1000000"),
        ("queued.max.messages.kbytes", "262144"),
    ];
    let consumer: BaseConsumer<LogContext> = args
        .conn
        .client_config(&tuning)
        .create_with_context(LogContext)
        .context("creating the consumer")?;

    let md = consumer
        .fetch_metadata(Some(topic), SETUP_TIMEOUT)
        .with_context(|| format!("Metadata for {topic} on {}", args.conn.brokers))?;
    let Some(md_topic) = md.topics().iter().find(|t| t.name() == topic) else {
        bail!("topic {topic} is not in the metadata");
    };
    if let Some(err) = md_topic.error() {
        bail!("topic {topic}: metadata error {err:?}");
    }
    let mut partition_ids: Vec<i32> = md_topic.partitions().iter().map(|p| p.id()).collect();
    partition_ids.sort_unstable();
    if partition_ids.is_empty() {
        bail!("topic {topic} has no partitions");
    }

    let mut cursors = Vec::with_capacity(partition_ids.len());
    let mut assignment = TopicPartitionList::new();
    let mut expected = 0u64;
    for &p in &partition_ids {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, SETUP_TIMEOUT)
            .with_context(|| format!("ListOffsets for {topic}/{p}"))?;
        expected += (high - low).max(0) as u64;
        cursors.push(PartitionCursor {
            next: low,
            end: high,
        });
        // An explicit offset rather than Offset::Beginning spares a ListOffsets round trip
        // inside the timed window.
        assignment
            .add_partition_offset(topic, p, Offset::Offset(low))
            .with_context(|| format!("assigning {topic}/{p}"))?;
    }
    if let Some(want) = args.records {
        if want != expected {
            bail!("topic {topic} holds {expected} records by its watermarks, expected {want}");
        }
    }

    let cpu_before = broker_cpu(args.conn.broker_pid)?;
    let start = Instant::now();
    consumer.assign(&assignment).context("assign")?;
    let idle_limit = Duration::from_secs(args.idle_timeout_secs);
    let mut last_record = Instant::now();
    let mut last_at = start;
    let (mut records, mut bytes, mut gaps, mut repeats) = (0u64, 0u64, 0u64, 0u64);
    let mut unfinished = cursors.iter().filter(|c| c.next < c.end).count();
    let mut progress = Progress::new("consume");

    while unfinished > 0 {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(msg)) => {
                last_record = Instant::now();
                let Ok(idx) = partition_ids.binary_search(&msg.partition()) else {
                    bail!("record from unassigned partition {}", msg.partition());
                };
                let cursor = &mut cursors[idx];
                let offset = msg.offset();
                // Offsets in a partition written by one producer, with no compaction and no
                // transactions, must be dense: anything else is a broker bug worth reporting.
                if offset < cursor.next {
                    repeats += 1;
                    continue;
                }
                if offset > cursor.next {
                    gaps += (offset - cursor.next) as u64;
                }
                let was_open = cursor.next < cursor.end;
                cursor.next = offset + 1;
                if was_open && cursor.next >= cursor.end {
                    unfinished -= 1;
                }
                if offset < cursor.end {
                    records += 1;
                    bytes += msg.payload_len() as u64;
                    last_at = last_record;
                }
            }
            Some(Err(err)) => eprintln!("consume: {err}"),
            None => {}
        }
        if last_record.elapsed() >= idle_limit {
            bail!(
                "no record for {idle_limit:?}: read {records} of {expected} from {topic} \
                 ({unfinished} partitions unfinished)"
            );
        }
        progress.tick(records, expected);
    }
    let seconds = last_at.duration_since(start).as_secs_f64();
    let cpu_after = broker_cpu(args.conn.broker_pid)?;

    let result = ConsumeResult {
        kind: "consume".into(),
        topic: topic.into(),
        partitions: partition_ids.len() as i32,
        records,
        bytes,
        seconds,
        records_per_sec: records as f64 / seconds.max(1e-9),
        mb_per_sec: common::mb_per_sec(bytes, seconds),
        broker_cpu_s: cpu_before.zip(cpu_after).map(|(b, a)| a - b),
    };
    println!("{}", serde_json::to_string(&result)?);
    if gaps > 0 || repeats > 0 || records != expected {
        bail!(
            "read-back of {topic} is wrong: {records} of {expected} records, {gaps} offsets \
             missing, {repeats} offsets repeated"
        );
    }
    Ok(())
}

fn broker_cpu(pid: Option<u32>) -> Result<Option<f64>> {
    pid.map(procfs::cpu_seconds).transpose()
}
