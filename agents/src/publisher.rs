//! Publishing: turns lines into records per the contract, hands them to librdkafka, and
//! advances checkpoints when the broker acknowledges them.
//!
//! Two tasks: the sender builds and enqueues records; the acker awaits their delivery
//! reports in the order they were sent, so a file's checkpoint only ever moves to the end of
//! a line whose predecessors are all acknowledged. A failed delivery is sent again (the
//! producer retries forever by itself; this covers permanent-looking errors too), so a
//! line is never given up on: at-least-once.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::Message;
use tokio::sync::mpsc;

use crate::checkpoint::{CheckpointStore, WatchId};
use crate::health::AgentStats;
use crate::level;
use crate::record::{self, LogRecord, HEADER_HOST, HEADER_LEVEL, HEADER_SOURCE};
use crate::tailer::Outgoing;

/// Largest record the agent produces: librdkafka's default `message.max.bytes`, which fits
/// the default 1 MiB limit of Kafka brokers and of rill's. Longer lines are cut to fit.
pub const MAX_RECORD_BYTES: usize = 1_000_000;
/// Room kept in a record for everything but the line: key, headers, JSON framing, batch
/// overhead.
const RECORD_OVERHEAD: usize = 1024;
/// Records sent and waiting for their delivery report in the acker, at most; this also bounds
/// what librdkafka holds (over 10 ms of lines at full speed, enough for linger.ms = 5).
const ACK_QUEUE: usize = 4096;
/// How long to wait before retrying when librdkafka's queue is full or a send failed.
const RETRY_DELAY: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot create Kafka producer: {0}")]
    Create(#[source] KafkaError),
}

/// Creates the producer: idempotent (no duplicates from its own retries), lz4-compressed,
/// and retrying forever (`message.timeout.ms = 0`), because the agent's promise is that a
/// line waits for the broker rather than being dropped. The in-memory queue is bounded;
/// when it is full, the tailer is held back and the lines wait in their files.
pub fn create_producer(brokers: &str) -> Result<FutureProducer, PublishError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "0")
        .set("message.max.bytes", MAX_RECORD_BYTES.to_string())
        .set("queue.buffering.max.messages", "20000")
        .set("queue.buffering.max.kbytes", "8192")
        .set("client.id", "rill-agent")
        .create()
        .map_err(PublishError::Create)
}

/// An enqueued record, waiting for its delivery report.
struct InFlight {
    delivery: DeliveryFuture,
    watch: WatchId,
    end_offset: u64,
}

/// Publishes lines from the tailer until its channel closes, then waits until every
/// enqueued record is acknowledged (or the producer is gone).
pub async fn publish_logs(
    producer: FutureProducer,
    host: Arc<str>,
    mut lines: mpsc::Receiver<Vec<Outgoing>>,
    store: Arc<CheckpointStore>,
    stats: Arc<AgentStats>,
) {
    // Bounded: librdkafka may deliver faster than the acker catches up, and every record
    // waiting here holds its delivery report; when full, sending waits (backpressure).
    let (ack_tx, ack_rx) = mpsc::channel(ACK_QUEUE);
    let acker = tokio::spawn(ack_loop(
        producer.clone(),
        ack_rx,
        Arc::clone(&store),
        Arc::clone(&stats),
    ));
    let mut ts_cache: Option<(SystemTime, String)> = None;
    let mut enc = LogEncoder::default();
    while let Some(batch) = lines.recv().await {
        for out in batch {
            // Lines of one read pass share a read time; format it once.
            let ts = match &ts_cache {
                Some((t, s)) if *t == out.read_at => s,
                _ => {
                    &ts_cache
                        .insert((out.read_at, record::format_ts(out.read_at)))
                        .1
                }
            };
            // The common case encodes into reused buffers (librdkafka copies key and
            // value), so a line costs no allocation here; a record too long for the
            // broker takes the slow path, which cuts the line.
            let delivery = if enc.encode(&host, &out, ts) {
                enqueue_encoded(&producer, &out, &host, &enc, &stats).await
            } else {
                let built = build_log_record(&host, &out, ts.clone());
                enqueue(&producer, &out.topic, &built, &stats).await
            };
            stats
                .in_flight
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if ack_tx
                .send(InFlight {
                    delivery,
                    watch: out.watch,
                    end_offset: out.line.end_offset,
                })
                .await
                .is_err()
            {
                return;
            }
        }
    }
    drop(ack_tx);
    if let Err(e) = acker.await {
        tracing::error!(error = %e, "acknowledgement task failed");
    }
}

/// Reused buffers for the `logs` record of one line: the key and the JSON value, written
/// exactly as `serde_json` writes a [`LogRecord`] (same field order, same escaping).
#[derive(Default)]
pub struct LogEncoder {
    key: String,
    value: Vec<u8>,
    level: Option<record::Level>,
}

impl LogEncoder {
    /// Encodes a line's record. Returns false, leaving the buffers unspecified, when the
    /// record would exceed [`MAX_RECORD_BYTES`]: then [`build_log_record`] must cut it.
    pub fn encode(&mut self, host: &str, out: &Outgoing, ts: &str) -> bool {
        let limit = MAX_RECORD_BYTES - RECORD_OVERHEAD - 2 * out.source.len() - 2 * host.len();
        // JSON escaping grows a line up to 6x: skip the work when it cannot fit anyway.
        if out.line.bytes.len() > limit {
            return false;
        }
        let level = level::detect(&out.line.bytes);
        let v = &mut self.value;
        v.clear();
        v.extend_from_slice(b"{\"ts\":");
        json_str(v, ts);
        v.extend_from_slice(b",\"host\":");
        json_str(v, host);
        v.extend_from_slice(b",\"source\":");
        json_str(v, &out.source);
        v.extend_from_slice(b",\"line\":");
        json_str(v, &String::from_utf8_lossy(&out.line.bytes));
        if let Some(l) = level {
            v.extend_from_slice(b",\"level\":\"");
            v.extend_from_slice(l.as_str().as_bytes());
            v.push(b'"');
        }
        if out.line.truncated {
            v.extend_from_slice(b",\"truncated\":true");
        }
        v.push(b'}');
        if v.len() > limit {
            return false;
        }
        self.key.clear();
        self.key.push_str(host);
        self.key.push(':');
        self.key.push_str(&out.source);
        self.level = level;
        true
    }

    /// The encoded JSON value.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The encoded key, `host:source`.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Appends `s` as a JSON string, escaped exactly as `serde_json` does.
fn json_str(buf: &mut Vec<u8>, s: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, s);
}

/// Hands the record in `enc` to librdkafka (which copies key and value), waiting while its
/// queue is full.
async fn enqueue_encoded(
    producer: &FutureProducer,
    out: &Outgoing,
    host: &str,
    enc: &LogEncoder,
    stats: &AgentStats,
) -> DeliveryFuture {
    let timestamp = record::unix_millis(out.read_at);
    loop {
        let mut headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: HEADER_HOST,
                value: Some(host),
            })
            .insert(Header {
                key: HEADER_SOURCE,
                value: Some(out.source.as_ref()),
            });
        if let Some(l) = enc.level {
            headers = headers.insert(Header {
                key: HEADER_LEVEL,
                value: Some(l.as_str()),
            });
        }
        let record = FutureRecord::to(&out.topic)
            .key(enc.key())
            .payload(enc.value())
            .headers(headers)
            .timestamp(timestamp);
        match producer.send_result(record) {
            Ok(delivery) => return delivery,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(RETRY_DELAY).await;
            }
            Err((e, _)) => {
                tracing::warn!(error = %e, topic = %out.topic, "cannot enqueue record; retrying");
                stats.error();
                tokio::time::sleep(RETRY_DELAY * 10).await;
            }
        }
    }
}

/// A record ready to send.
pub struct Built {
    pub key: String,
    pub value: Vec<u8>,
    pub headers: OwnedHeaders,
    pub timestamp: i64,
}

/// Builds the contract's `logs` record for a line, cutting the line if the record would
/// exceed [`MAX_RECORD_BYTES`].
pub fn build_log_record(host: &str, out: &Outgoing, ts: String) -> Built {
    let level = level::detect(&out.line.bytes);
    let limit = MAX_RECORD_BYTES - RECORD_OVERHEAD - 2 * out.source.len() - 2 * host.len();
    let mut text = String::from_utf8_lossy(&out.line.bytes).into_owned();
    let mut truncated = out.line.truncated;
    let mut rec = LogRecord {
        ts,
        host: host.to_string(),
        source: out.source.to_string(),
        line: String::new(),
        level,
        fields: None,
        truncated,
    };
    let value = loop {
        rec.line = text;
        rec.truncated = truncated;
        // Serializing plain strings and numbers cannot fail.
        let value = serde_json::to_vec(&rec).unwrap_or_default();
        if value.len() <= limit {
            break value;
        }
        // JSON escaping can grow a line up to 6x; cut in proportion and try again.
        text = std::mem::take(&mut rec.line);
        let keep = text.len() * limit / value.len();
        let mut cut = keep.saturating_sub(16);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        truncated = true;
    };
    let mut headers = OwnedHeaders::new_with_capacity(3)
        .insert(Header {
            key: HEADER_HOST,
            value: Some(host),
        })
        .insert(Header {
            key: HEADER_SOURCE,
            value: Some(out.source.as_ref()),
        });
    if let Some(l) = level {
        headers = headers.insert(Header {
            key: HEADER_LEVEL,
            value: Some(l.as_str()),
        });
    }
    Built {
        key: rec.key(),
        value,
        headers,
        timestamp: record::unix_millis(out.read_at),
    }
}

/// Hands a record to librdkafka, waiting while its queue is full.
pub async fn enqueue(
    producer: &FutureProducer,
    topic: &str,
    built: &Built,
    stats: &AgentStats,
) -> DeliveryFuture {
    loop {
        let record = FutureRecord::to(topic)
            .key(built.key.as_bytes())
            .payload(built.value.as_slice())
            .headers(built.headers.clone())
            .timestamp(built.timestamp);
        match producer.send_result(record) {
            Ok(delivery) => return delivery,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(RETRY_DELAY).await;
            }
            Err((e, _)) => {
                tracing::warn!(error = %e, topic, "cannot enqueue record; retrying");
                stats.error();
                tokio::time::sleep(RETRY_DELAY * 10).await;
            }
        }
    }
}

/// Acknowledgements of one watch applied to the checkpoint store at once, at most.
const ACK_COALESCE: u32 = 1024;

/// Awaits delivery reports in send order and advances checkpoints. Consecutive
/// acknowledgements of one file are applied together (when the file changes, the queue
/// runs empty, or [`ACK_COALESCE`] are pending), so the store's lock is not taken per line.
async fn ack_loop(
    producer: FutureProducer,
    mut pending: mpsc::Receiver<InFlight>,
    store: Arc<CheckpointStore>,
    stats: Arc<AgentStats>,
) {
    let mut acked: Option<(WatchId, u64)> = None;
    let mut coalesced = 0u32;
    let flush = |acked: &mut Option<(WatchId, u64)>| {
        if let Some((watch, offset)) = acked.take() {
            store.ack(watch, offset);
        }
    };
    loop {
        let mut item = match pending.try_recv() {
            Ok(item) => item,
            Err(mpsc::error::TryRecvError::Empty) => {
                flush(&mut acked);
                match pending.recv().await {
                    Some(item) => item,
                    None => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        loop {
            match (&mut item.delivery).await {
                Ok(Ok(_)) => break,
                Ok(Err((e, msg))) => {
                    tracing::warn!(error = %e, "delivery failed; sending again");
                    stats.error();
                    tokio::time::sleep(RETRY_DELAY * 10).await;
                    item.delivery = resend(&producer, &msg, &stats).await;
                }
                Err(_) => {
                    // The producer was dropped: shutting down without acknowledgement, so
                    // the checkpoint stays put and the line is read again next start.
                    flush(&mut acked);
                    return;
                }
            }
        }
        stats
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        match &mut acked {
            Some((watch, offset)) if *watch == item.watch && coalesced < ACK_COALESCE => {
                *offset = item.end_offset;
                coalesced += 1;
            }
            _ => {
                flush(&mut acked);
                acked = Some((item.watch, item.end_offset));
                coalesced = 0;
            }
        }
    }
    flush(&mut acked);
}

async fn resend(
    producer: &FutureProducer,
    msg: &OwnedMessage,
    stats: &AgentStats,
) -> DeliveryFuture {
    let headers = msg.headers().cloned().unwrap_or_else(OwnedHeaders::new);
    let built = Built {
        key: String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned(),
        value: msg.payload().unwrap_or_default().to_vec(),
        headers,
        timestamp: msg.timestamp().to_millis().unwrap_or_default(),
    };
    enqueue(producer, msg.topic(), &built, stats).await
}

/// Waits for everything librdkafka holds to be delivered, for a graceful stop.
pub fn flush(producer: &FutureProducer, timeout: Duration) {
    if let Err(e) = producer.flush(timeout) {
        tracing::warn!(error = %e, "not everything in flight was acknowledged before the stop timeout; it will be read again at the next start");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lines::Line;
    use std::time::{Duration, UNIX_EPOCH};

    fn outgoing(bytes: &[u8], truncated: bool) -> Outgoing {
        Outgoing {
            watch: 1,
            topic: Arc::from("logs"),
            source: Arc::from("/var/log/a \"b\"\\c.log"),
            line: Line {
                bytes: bytes.to_vec(),
                truncated,
                end_offset: 10,
            },
            read_at: UNIX_EPOCH + Duration::from_millis(1_714_564_800_123),
        }
    }

    #[test]
    fn fast_encoding_matches_the_serde_record() {
        let lines: [&[u8]; 7] = [
            b"plain line",
            b"ERROR boom \"quoted\" \\ back",
            b"{\"level\":\"warn\",\"msg\":\"x\"}",
            b"tab\there\x01\x1f\x7f ctl",
            b"bad utf8 \xff\xfe end",
            "unicode \u{e9}\u{1f600} INFO".as_bytes(),
            b"",
        ];
        let mut enc = LogEncoder::default();
        for line in lines {
            for truncated in [false, true] {
                let out = outgoing(line, truncated);
                let ts = record::format_ts(out.read_at);
                assert!(enc.encode("web \"1\"", &out, &ts));
                let built = build_log_record("web \"1\"", &out, ts);
                assert_eq!(
                    String::from_utf8_lossy(enc.value()),
                    String::from_utf8_lossy(&built.value)
                );
                assert_eq!(enc.key(), built.key);
            }
        }
    }

    #[test]
    fn too_long_records_take_the_cutting_path() {
        let out = outgoing(&vec![b'"'; MAX_RECORD_BYTES / 2], false);
        let ts = record::format_ts(out.read_at);
        let mut enc = LogEncoder::default();
        assert!(!enc.encode("h", &out, &ts));
        let built = build_log_record("h", &out, ts);
        assert!(built.value.len() <= MAX_RECORD_BYTES);
    }
}
