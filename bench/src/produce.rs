//! `rill-bench produce`: push N fixed-size records through a librdkafka producer as fast as the
//! broker acknowledges them, and time each record from enqueue to delivery report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use serde::{Deserialize, Serialize};

use crate::common::{self, Conn, Progress, SETUP_TIMEOUT};
use crate::procfs;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub conn: Conn,

    /// Number of records to produce.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,

    /// Payload size of each record, in bytes (records have no key).
    #[arg(long, default_value_t = 100)]
    pub record_bytes: usize,

    /// Partitions to create the topic with, if it does not exist. Records go round-robin.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,

    /// Producer acks: all (= -1), 1 or 0. Idempotence is on exactly when acks=all, as
    /// librdkafka requires.
    #[arg(long, default_value = "all", value_parser = ["all", "-1", "1", "0"])]
    pub acks: String,

    /// linger.ms: how long librdkafka waits to fill a batch.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u32,

    /// Give up if the records are not all acknowledged within this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
}

/// One produce run, as printed on stdout.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ProduceResult {
    pub kind: String,
    pub topic: String,
    pub partitions: i32,
    pub records: u64,
    pub record_bytes: usize,
    pub acks: String,
    /// From the first enqueue to the last delivery report.
    pub seconds: f64,
    pub records_per_sec: f64,
    /// Payload bytes only (10^6 bytes per MB); record framing on the wire and disk is extra.
    pub mb_per_sec: f64,
    pub latency_ms: Latency,
    /// Broker CPU seconds (user + system) spent during `seconds`, if --broker-pid was given.
    pub broker_cpu_s: Option<f64>,
}

/// Enqueue-to-delivery-report latency. It includes the time a record waits in librdkafka's
/// queue behind earlier ones, which is what an application calling produce() experiences.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// Receives delivery reports on the ThreadedProducer's polling thread. That thread waits on the
/// event queue, so a report is timed as soon as librdkafka hands it over, not whenever the send
/// loop next gets around to polling.
struct ProduceContext {
    epoch: Instant,
    latencies_us: Mutex<Vec<u32>>,
    delivered: AtomicU64,
    failed: AtomicU64,
    /// Nanoseconds after `epoch` of the latest report: the end of the timed window.
    last_report_ns: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for ProduceContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        common::log_to_stderr(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        common::error_to_stderr(error, reason);
    }
}

impl ProducerContext for ProduceContext {
    /// Enqueue time in nanoseconds after `epoch`: carrying it in the opaque pointer costs no
    /// allocation per record.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, enqueued_ns: usize) {
        let now_ns = self.epoch.elapsed().as_nanos() as u64;
        match result {
            Ok(_) => {
                let latency_us = now_ns.saturating_sub(enqueued_ns as u64) / 1_000;
                if let Ok(mut v) = self.latencies_us.lock() {
                    v.push(u32::try_from(latency_us).unwrap_or(u32::MAX));
                }
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((err, _)) => {
                if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                    if let Ok(mut first) = self.first_error.lock() {
                        *first = Some(err.to_string());
                    }
                }
            }
        }
        self.last_report_ns.fetch_max(now_ns, Ordering::Relaxed);
    }
}

pub fn run(args: &Args) -> Result<()> {
    if args.records == 0 {
        bail!("--records must be at least 1");
    }
    let topic = args.conn.topic.as_str();
    let partitions = common::ensure_topic(&args.conn, topic, args.partitions)?;
    let warmup_topic = format!("{topic}-warmup");
    common::ensure_topic(&args.conn, &warmup_topic, 1)?;

    let acks_all = matches!(args.acks.as_str(), "all" | "-1");
    let linger = args.linger_ms.to_string();
    let tuning = [
        ("acks", args.acks.as_str()),
        (
            "enable.idempotence",
            if acks_all { "true" } else { "false" },
        ),
        ("linger.ms", linger.as_str()),
        // Batches up to ~1 MB (the Kafka default max message size) so per-request costs are
        // amortised over thousands of records; batch.num.messages must not be what cuts them.
        ("batch.size", "1000000"),
        ("batch.num.messages", "100000"),
        ("compression.type", "none"),
        // librdkafka's default queue: deep enough to keep 5 requests of full batches in flight,
        // small enough that queueing does not dwarf the broker's own latency.
        ("queue.buffering.max.messages", "100000"),
        ("queue.buffering.max.kbytes", "1048576"),
    ];
    let cfg = args.conn.client_config(&tuning);
    let context = ProduceContext {
        epoch: Instant::now(),
        latencies_us: Mutex::new(Vec::with_capacity(args.records as usize)),
        delivered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        last_report_ns: AtomicU64::new(0),
        first_error: Mutex::new(None),
    };
    let producer: ThreadedProducer<ProduceContext> = cfg
        .create_with_context(context)
        .context("creating the producer")?;
    let payload = make_payload(args.record_bytes);
    let ctx = producer.context();
    warm_up(&producer, &warmup_topic, &payload)?;
    producer
        .client()
        .fetch_metadata(Some(topic), SETUP_TIMEOUT)
        .with_context(|| format!("Metadata for {topic} on {}", args.conn.brokers))?;
    let cpu_before = broker_cpu(args.conn.broker_pid)?;
    let start_ns = ctx.epoch.elapsed().as_nanos() as u64;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut progress = Progress::new("produce");
    let total = args.records;

    for i in 0..total {
        let partition = (i % partitions as u64) as i32;
        let mut record = BaseRecord::with_opaque_to(topic, 0usize)
            .payload(payload.as_slice())
            .partition(partition);
        loop {
            record.delivery_opaque = ctx.epoch.elapsed().as_nanos() as usize;
            match producer.send::<(), [u8]>(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The broker is the bottleneck: wait for acknowledgements to drain the
                    // queue. Sleeping, not spinning, leaves the shared cores to the broker.
                    record = back;
                    check_progress(ctx, deadline, total)?;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err((err, _)) => return Err(err).context("enqueueing a record"),
            }
        }
        if i % 4096 == 0 {
            progress.tick(ctx.delivered.load(Ordering::Relaxed), total);
        }
    }

    loop {
        let settled = check_progress(ctx, deadline, total)?;
        progress.tick(ctx.delivered.load(Ordering::Relaxed), total);
        if settled {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let cpu_after = broker_cpu(args.conn.broker_pid)?;

    let failed = ctx.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = ctx.first_error.lock().ok().and_then(|e| e.clone());
        bail!(
            "{failed} of {total} records were not delivered; first error: {}",
            first.unwrap_or_else(|| "unknown".into())
        );
    }
    let seconds = (ctx
        .last_report_ns
        .load(Ordering::Relaxed)
        .saturating_sub(start_ns)) as f64
        / 1e9;
    let mut latencies = std::mem::take(
        &mut *ctx
            .latencies_us
            .lock()
            .map_err(|_| anyhow::anyhow!("latency recorder poisoned"))?,
    );
    latencies.sort_unstable();
    let ms = |q: f64| f64::from(percentile(&latencies, q)) / 1_000.0;
    let result = ProduceResult {
        kind: "produce".into(),
        topic: topic.into(),
        partitions,
        records: total,
        record_bytes: args.record_bytes,
        acks: args.acks.clone(),
        seconds,
        records_per_sec: total as f64 / seconds.max(1e-9),
        mb_per_sec: common::mb_per_sec(total * args.record_bytes as u64, seconds),
        latency_ms: Latency {
            p50: ms(0.50),
            p99: ms(0.99),
            p999: ms(0.999),
            max: ms(1.0),
        },
        broker_cpu_s: cpu_before.zip(cpu_after).map(|(b, a)| a - b),
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// Delivers one record to a side topic and forgets it, so that connecting, the idempotent
/// producer's InitProducerId (librdkafka retries it on a 500 ms timer if its first try races
/// the connection) and the first metadata are all done before the clock starts. Without this,
/// a run's first batch sometimes waits half a second and the latency tail measures librdkafka's
/// start-up, not the broker.
fn warm_up(producer: &ThreadedProducer<ProduceContext>, topic: &str, payload: &[u8]) -> Result<()> {
    let ctx = producer.context();
    let record = BaseRecord::<(), [u8], usize>::with_opaque_to(topic, 0).payload(payload);
    producer
        .send(record)
        .map_err(|(err, _)| err)
        .context("enqueueing the warm-up record")?;
    let deadline = Instant::now() + SETUP_TIMEOUT;
    while !check_progress(ctx, deadline, 1).context("warming up")? {
        std::thread::sleep(Duration::from_millis(1));
    }
    if ctx.failed.load(Ordering::Relaxed) > 0 {
        let first = ctx.first_error.lock().ok().and_then(|e| e.clone());
        bail!(
            "the warm-up record was not delivered: {}",
            first.unwrap_or_default()
        );
    }
    // Nothing else is in flight, so the counters can be reset without a race.
    ctx.delivered.store(0, Ordering::Relaxed);
    ctx.last_report_ns.store(0, Ordering::Relaxed);
    if let Ok(mut v) = ctx.latencies_us.lock() {
        v.clear();
    }
    Ok(())
}

/// True once every record has a delivery report; an error once the deadline has passed.
fn check_progress(ctx: &ProduceContext, deadline: Instant, total: u64) -> Result<bool> {
    let reported = ctx.delivered.load(Ordering::Relaxed) + ctx.failed.load(Ordering::Relaxed);
    if reported >= total {
        return Ok(true);
    }
    if Instant::now() >= deadline {
        bail!("timed out: {reported} of {total} records acknowledged");
    }
    Ok(false)
}

fn broker_cpu(pid: Option<u32>) -> Result<Option<f64>> {
    pid.map(procfs::cpu_seconds).transpose()
}

/// A printable, non-repeating-looking payload. Content does not matter without compression,
/// but readable bytes make a dumped segment easy to eyeball.
fn make_payload(len: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len)
        .map(|i| ALPHABET[(i * 7 + i / 13) % ALPHABET.len()])
        .collect()
}

/// The q-quantile (0..=1) of an ascending slice, by the nearest-rank method; 0 when empty.
pub fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&v, 0.999), 100);
        assert_eq!(percentile(&v, 1.0), 100);
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&[], 0.5), 0);
        assert_eq!(percentile(&[7], 0.99), 7);
    }

    #[test]
    fn payload_has_the_asked_size() {
        assert_eq!(make_payload(100).len(), 100);
        assert!(make_payload(0).is_empty());
        assert!(make_payload(1000).iter().all(u8::is_ascii_alphanumeric));
    }

    #[test]
    fn result_round_trips_as_json() {
        let r = ProduceResult {
            kind: "produce".into(),
            topic: "t".into(),
            partitions: 1,
            records: 10,
            record_bytes: 100,
            acks: "all".into(),
            seconds: 1.0,
            records_per_sec: 10.0,
            mb_per_sec: 0.001,
            latency_ms: Latency {
                p50: 1.0,
                p99: 2.0,
                p999: 3.0,
                max: 4.0,
            },
            broker_cpu_s: None,
        };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<ProduceResult>(&line).unwrap(), r);
    }
}
