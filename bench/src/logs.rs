//! `rill-bench logs`: a steady stream of record-contract log lines at a fixed rate (e.g. for
//! bench/dash.sh: 100,000 records/s into `logs` while the dashboard runs), from a few hosts,
//! with the contract's headers. Prints one JSON line: what it really produced.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde::Serialize;

use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::producer::{DeliveryResult, ProducerContext};

use crate::common::{self, Conn};

/// librdkafka's warnings to stderr, and a count of records the broker did not take.
#[derive(Default)]
struct Context {
    failed: AtomicU64,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        common::log_to_stderr(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        common::error_to_stderr(error, reason);
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub conn: Conn,
    /// Records per second to produce.
    #[arg(long, default_value_t = 100_000)]
    pub rate: u64,
    /// For how long.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Distinct hosts the records come from (web-1, web-2, ...).
    #[arg(long, default_value_t = 8)]
    pub hosts: u32,
    /// Partitions to create the topic with, if it does not exist.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
}

#[derive(Serialize)]
struct LogsResult {
    kind: &'static str,
    topic: String,
    target_rate: u64,
    records: u64,
    seconds: f64,
    records_per_sec: f64,
    /// Times the producer's queue was full and it had to wait (the broker or network behind).
    queue_full_waits: u64,
    /// Records the broker did not acknowledge.
    failed: u64,
}

const LEVELS: [&str; 5] = ["info", "info", "info", "warn", "error"];

pub fn run(args: &Args) -> Result<()> {
    common::ensure_topic(&args.conn, &args.conn.topic, args.partitions)?;
    let producer: BaseProducer<Context> = args
        .conn
        .client_config(&[
            ("linger.ms", "5"),
            ("acks", "1"),
            ("batch.num.messages", "10000"),
            ("queue.buffering.max.messages", "1000000"),
        ])
        .create_with_context(Context::default())
        .context("creating the producer")?;
    let topic = args.conn.topic.as_str();
    let hosts: Vec<String> = (1..=args.hosts.max(1))
        .map(|h| format!("web-{h}"))
        .collect();
    let source = "/var/log/app/access.log";
    let started = Instant::now();
    let end = started + Duration::from_secs(args.seconds);
    let mut sent = 0u64;
    let mut waits = 0u64;
    let mut last_progress = Instant::now();
    while Instant::now() < end {
        // Catch up to where the rate says we should be, then yield a millisecond.
        let due = (started.elapsed().as_secs_f64() * args.rate as f64) as u64;
        while sent < due {
            let host = &hosts[(sent % hosts.len() as u64) as usize];
            let level = LEVELS[(sent % LEVELS.len() as u64) as usize];
            let ts = humantime::format_rfc3339_millis(std::time::SystemTime::now());
            let value = format!(
                r#"{{"ts":"{ts}","host":"{host}","source":"{source}","line":"{} GET /api/orders/{sent} 200 {}ms","level":"{level}"}}"#,
                level.to_ascii_uppercase(),
                sent % 997
            );
            let key = format!("{host}:{source}");
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "host",
                    value: Some(host.as_str()),
                })
                .insert(Header {
                    key: "source",
                    value: Some(source),
                })
                .insert(Header {
                    key: "level",
                    value: Some(level),
                });
            let record = BaseRecord::to(topic)
                .key(&key)
                .payload(&value)
                .headers(headers);
            match producer.send(record) {
                Ok(()) => sent += 1,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    waits += 1;
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e).context("producing"),
            }
        }
        producer.poll(Duration::from_millis(1));
        if last_progress.elapsed() >= Duration::from_secs(10) {
            last_progress = Instant::now();
            eprintln!(
                "logs: {sent} records in {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .context("flushing the producer")?;
    let seconds = started.elapsed().as_secs_f64();
    let result = LogsResult {
        kind: "logs",
        topic: topic.to_string(),
        target_rate: args.rate,
        records: sent,
        seconds,
        records_per_sec: sent as f64 / seconds,
        queue_full_waits: waits,
        failed: producer.context().failed.load(Ordering::Relaxed),
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
