//! `rill-bench load`: many concurrent connections producing and consuming for a bounded run.
//!
//! librdkafka spends several threads per client, so 500 librdkafka clients would measure the
//! driver's scheduler more than the broker. This driver instead speaks the Kafka protocol
//! itself (requests encoded with `kafka-protocol`, as the broker's codec): one tokio task per
//! TCP connection, half of them sending Produce (acks=1, 10 records of 100 bytes, at a fixed
//! rate each) and half long-polling Fetch from the beginning of a partition, following it.
//! It reports request latency percentiles, errors (any non-zero error code, refused or dropped
//! connection), records produced and consumed, and the broker's resident memory sampled every
//! second, so "memory flat" is a number rather than a feeling.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::fetch_response::FetchResponse;
use kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use kafka_protocol::messages::produce_response::ProduceResponse;
use kafka_protocol::messages::{BrokerId, RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{ensure_topic, Conn};
use crate::procfs;

const PRODUCE_VERSION: i16 = 7;
const FETCH_VERSION: i16 = 11;
const RECORDS_PER_BATCH: usize = 10;
const RECORD_BYTES: usize = 100;
/// A response slower than this counts as an error: the broker is not keeping up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub conn: Conn,
    /// Concurrent TCP connections; half produce, half consume.
    #[arg(long, default_value_t = 500)]
    pub connections: usize,
    /// Partitions of the topic (created if missing).
    #[arg(long, default_value_t = 8)]
    pub partitions: i32,
    /// Length of the run.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Produce requests per second per producing connection.
    #[arg(long, default_value_t = 10)]
    pub rate: u32,
}

#[derive(Serialize)]
struct Report {
    connections: usize,
    seconds: f64,
    produce_requests: u64,
    records_produced: u64,
    records_consumed: u64,
    produce_p50_ms: f64,
    produce_p99_ms: f64,
    produce_p999_ms: f64,
    produce_max_ms: f64,
    fetch_p50_ms: f64,
    fetch_p99_ms: f64,
    errors: u64,
    first_error: Option<String>,
    /// Broker RSS (MiB) sampled once a second over the run.
    broker_rss_mib: Vec<f64>,
    /// Last RSS over the RSS after the first quarter of the run (warm-up excluded).
    broker_rss_growth: Option<f64>,
}

/// What every connection task shares.
struct Shared {
    stop: AtomicBool,
    records_produced: AtomicU64,
    records_consumed: AtomicU64,
    errors: AtomicU64,
    /// The first error, kept for the report.
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn error(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(message);
        }
    }
}

pub fn run(args: &Args) -> Result<()> {
    if args.connections < 2 {
        bail!("--connections must be at least 2 (one producer, one consumer)");
    }
    let partitions = ensure_topic(&args.conn, &args.conn.topic, args.partitions)?;
    let addr = args
        .conn
        .brokers
        .split(',')
        .next()
        .context("--brokers is empty")?
        .trim()
        .to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let report = runtime.block_on(drive(args, &addr, partitions))?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

async fn drive(args: &Args, addr: &str, partitions: i32) -> Result<Report> {
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        records_produced: AtomicU64::new(0),
        records_consumed: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        first_error: Default::default(),
    });
    let batch = encoded_batch()?;
    let producers = args.connections / 2;
    let mut tasks = Vec::with_capacity(args.connections);
    eprintln!(
        "load: opening {} connections to {addr} ({producers} producing at {}/s each, {} consuming)",
        args.connections,
        args.rate,
        args.connections - producers
    );
    for i in 0..args.connections {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connection {i} to {addr}"))?;
        stream.set_nodelay(true).ok();
        let shared = Arc::clone(&shared);
        let topic = args.conn.topic.clone();
        let partition = (i as i32) % partitions;
        if i < producers {
            let period = Duration::from_secs(1) / args.rate.max(1);
            // Spread the first requests over one period so they do not arrive in lockstep.
            let offset = period * (i as u32) / (producers as u32);
            let batch = batch.clone();
            tasks.push(tokio::spawn(async move {
                produce_loop(stream, &topic, partition, batch, period, offset, &shared).await
            }));
        } else {
            tasks.push(tokio::spawn(async move {
                fetch_loop(stream, &topic, partition, &shared).await
            }));
        }
    }

    let started = Instant::now();
    let mut rss = Vec::new();
    let mut last_print = Instant::now();
    while started.elapsed() < Duration::from_secs(args.seconds) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(pid) = args.conn.broker_pid {
            let mib = procfs::rss_bytes(pid)? as f64 / (1024.0 * 1024.0);
            rss.push((mib * 10.0).round() / 10.0);
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            last_print = Instant::now();
            eprintln!(
                "load: {:>3.0} s, {} records produced, {} consumed, {} errors, broker RSS {} MiB",
                started.elapsed().as_secs_f64(),
                shared.records_produced.load(Ordering::Relaxed),
                shared.records_consumed.load(Ordering::Relaxed),
                shared.errors.load(Ordering::Relaxed),
                rss.last().map_or("?".into(), |r| format!("{r:.1}")),
            );
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let mut produce_us = Vec::new();
    let mut fetch_us = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Latencies { produce, fetch }) => {
                produce_us.extend(produce);
                fetch_us.extend(fetch);
            }
            Err(e) => shared.error(format!("connection task failed: {e}")),
        }
    }
    produce_us.sort_unstable();
    fetch_us.sort_unstable();
    let growth = match (rss.get(rss.len() / 4), rss.last()) {
        (Some(&quarter), Some(&last)) if quarter > 0.0 => Some(last / quarter),
        _ => None,
    };
    Ok(Report {
        connections: args.connections,
        seconds: elapsed,
        produce_requests: produce_us.len() as u64,
        records_produced: shared.records_produced.load(Ordering::Relaxed),
        records_consumed: shared.records_consumed.load(Ordering::Relaxed),
        produce_p50_ms: percentile_ms(&produce_us, 0.50),
        produce_p99_ms: percentile_ms(&produce_us, 0.99),
        produce_p999_ms: percentile_ms(&produce_us, 0.999),
        produce_max_ms: produce_us.last().map_or(0.0, |&us| us as f64 / 1000.0),
        fetch_p50_ms: percentile_ms(&fetch_us, 0.50),
        fetch_p99_ms: percentile_ms(&fetch_us, 0.99),
        errors: shared.errors.load(Ordering::Relaxed),
        first_error: shared.first_error.lock().ok().and_then(|e| e.clone()),
        broker_rss_mib: rss,
        broker_rss_growth: growth,
    })
}

fn percentile_ms(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() - 1) as f64 * q).round() as usize;
    f64::from(sorted_us[i]) / 1000.0
}

/// Request latencies of one connection, in microseconds.
#[derive(Default)]
struct Latencies {
    produce: Vec<u32>,
    fetch: Vec<u32>,
}

/// One batch of [`RECORDS_PER_BATCH`] records, encoded once and sent again and again: the
/// broker assigns offsets by rewriting the base offset, which the CRC does not cover.
fn encoded_batch() -> Result<Bytes> {
    let value = Bytes::from(vec![b'x'; RECORD_BYTES]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let records: Vec<Record> = (0..RECORDS_PER_BATCH)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever offset - sequence changes: keep it constant.
            sequence: i as i32,
            timestamp: now,
            key: None,
            value: Some(value.clone()),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .context("encode record batch")?;
    Ok(buf.freeze())
}

/// A connection speaking one request at a time.
struct Connection {
    stream: TcpStream,
    correlation_id: i32,
    buf: Vec<u8>,
}

impl Connection {
    async fn request<R: Request>(&mut self, version: i16, req: &R) -> Result<R::Response> {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("rill-bench-load")));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version))?;
        req.encode(&mut body, version)?;
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&(body.len() as i32).to_be_bytes());
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).await?;

        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).await?;
        let len = i32::from_be_bytes(len);
        if !(0..=64 * 1024 * 1024).contains(&len) {
            bail!("response length {len}");
        }
        self.buf.resize(len as usize, 0);
        self.stream.read_exact(&mut self.buf).await?;
        let mut bytes = Bytes::copy_from_slice(&self.buf);
        let header = ResponseHeader::decode(&mut bytes, R::Response::header_version(version))?;
        if header.correlation_id != self.correlation_id {
            bail!(
                "correlation id {} answered request {}",
                header.correlation_id,
                self.correlation_id
            );
        }
        R::Response::decode(&mut bytes, version)
    }

    /// `request` within [`REQUEST_TIMEOUT`].
    async fn timed<R: Request>(&mut self, version: i16, req: &R) -> Result<R::Response> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.request(version, req)).await {
            Ok(result) => result,
            Err(_) => bail!("no response to api {} within {REQUEST_TIMEOUT:?}", R::KEY),
        }
    }
}

async fn produce_loop(
    stream: TcpStream,
    topic: &str,
    partition: i32,
    batch: Bytes,
    period: Duration,
    offset: Duration,
    shared: &Shared,
) -> Latencies {
    let mut conn = Connection {
        stream,
        correlation_id: 0,
        buf: Vec::new(),
    };
    let mut latencies = Latencies::default();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !shared.stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        let req = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch.clone()))])]);
        let sent = Instant::now();
        match conn.timed(PRODUCE_VERSION, &req).await {
            Ok(ProduceResponse { responses, .. }) => {
                latencies.produce.push(micros(sent.elapsed()));
                let code = responses
                    .first()
                    .and_then(|t| t.partition_responses.first())
                    .map(|p| p.error_code);
                match code {
                    Some(0) => {
                        shared
                            .records_produced
                            .fetch_add(RECORDS_PER_BATCH as u64, Ordering::Relaxed);
                    }
                    other => shared.error(format!("produce error code {other:?}")),
                }
            }
            Err(e) => {
                shared.error(format!("produce: {e:#}"));
                return latencies;
            }
        }
    }
    latencies
}

async fn fetch_loop(stream: TcpStream, topic: &str, partition: i32, shared: &Shared) -> Latencies {
    let mut conn = Connection {
        stream,
        correlation_id: 0,
        buf: Vec::new(),
    };
    let mut latencies = Latencies::default();
    let mut offset = 0i64;
    while !shared.stop.load(Ordering::Relaxed) {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(1024 * 1024)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1024 * 1024)])]);
        let sent = Instant::now();
        match conn.timed(FETCH_VERSION, &req).await {
            Ok(FetchResponse { responses, .. }) => {
                let Some(data) = responses.first().and_then(|t| t.partitions.first()) else {
                    shared.error("fetch: no partition in the response".into());
                    return latencies;
                };
                if data.error_code != 0 {
                    shared.error(format!("fetch error code {}", data.error_code));
                    continue;
                }
                let records = data.records.as_ref().map_or(0, |r| r.len());
                if records > 0 {
                    // Long polls that waited for data say nothing about the broker's speed.
                    latencies.fetch.push(micros(sent.elapsed()));
                }
                if let Some(bytes) = &data.records {
                    let (next, count) = walk_batches(bytes.clone(), offset);
                    offset = next;
                    shared.records_consumed.fetch_add(count, Ordering::Relaxed);
                }
            }
            Err(e) => {
                shared.error(format!("fetch: {e:#}"));
                return latencies;
            }
        }
    }
    latencies
}

/// Walks whole batches in fetched bytes: the offset after the last whole batch, and how many
/// records at or after `from` they hold. A trailing partial batch (cut by max_bytes) is left
/// for the next fetch.
fn walk_batches(mut bytes: Bytes, from: i64) -> (i64, u64) {
    let mut next = from;
    let mut count = 0u64;
    while bytes.remaining() >= 27 {
        let base = i64::from_be_bytes(bytes[0..8].try_into().unwrap_or([0; 8]));
        let length = i32::from_be_bytes(bytes[8..12].try_into().unwrap_or([0; 4]));
        let Ok(total) = usize::try_from(length).map(|l| l + 12) else {
            break;
        };
        if total > bytes.remaining() {
            break;
        }
        let delta = i32::from_be_bytes(bytes[23..27].try_into().unwrap_or([0; 4]));
        let last = base + i64::from(delta);
        if last >= next {
            count += u64::try_from(last + 1 - next.max(base)).unwrap_or(0);
            next = last + 1;
        }
        bytes.advance(total);
    }
    (next, count)
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_whole_batches_and_skips_a_partial_one() {
        let batch = encoded_batch().expect("batch");
        let mut two = BytesMut::new();
        two.extend_from_slice(&batch);
        // The second batch at base offset 10.
        let mut second = batch.to_vec();
        second[0..8].copy_from_slice(&10i64.to_be_bytes());
        two.extend_from_slice(&second);
        two.extend_from_slice(&batch[..20]);
        assert_eq!(walk_batches(two.freeze(), 0), (20, 20));
        // Starting inside the first batch counts only what is at or after the offset.
        assert_eq!(walk_batches(batch.clone(), 4), (10, 6));
    }

    #[test]
    fn percentiles() {
        let us: Vec<u32> = (1..=1000).collect();
        assert_eq!(percentile_ms(&us, 0.5), 0.501);
        assert_eq!(percentile_ms(&us, 0.99), 0.990);
        assert_eq!(percentile_ms(&[], 0.99), 0.0);
    }
}
