//! The agent's producer, one small interface over two implementations, picked per
//! connection settings (the way `rill search` picks its reader):
//!
//! - **rill's own** ([`crate::kafka::producer`]): plaintext connections, compression lz4
//!   (default), zstd or none. It writes record batches itself: at one record per line,
//!   librdkafka's per-message work (a message object, header lists, queue hops, a delivery
//!   report per message) was most of the agent's CPU.
//! - **librdkafka** (`BaseProducer`): TLS, SASL, and any other `[kafka]` setting, which it
//!   implements and rill's producer does not.
//!
//! `RILL_AGENT_PRODUCER=librdkafka` (or `wire`) overrides the choice, for comparisons.
//!
//! Both report deliveries to the same [`DeliveryContext`] with the record's opaque
//! (its sequence number), and give failed records back whole, for the spool.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::Message;

use crate::kafka::batch::{Compression, RecordRef};
use crate::kafka::producer::{self as wire, DeliverySink, WireConfig, WireProducer};
use crate::publisher::{DeliveryContext, PublishError, DELIVERY_TIMEOUT, MAX_RECORD_BYTES};
use crate::spool::SpoolRecord;

/// One record to send.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub topic: &'a str,
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub headers: &'a [(&'a str, &'a [u8])],
    /// Milliseconds since the epoch.
    pub timestamp: i64,
}

impl SpoolRecord {
    /// Calls `f` with this record borrowed as a [`Record`].
    pub fn with_record<T>(&self, f: impl FnOnce(&Record<'_>) -> T) -> T {
        let headers: Vec<(&str, &[u8])> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        f(&Record {
            topic: &self.topic,
            key: &self.key,
            value: &self.value,
            headers: &headers,
            timestamp: self.timestamp,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The producer holds as much as it may: wait a moment and send again.
    #[error("the producer's queue is full")]
    QueueFull,
    #[error("{0}")]
    Refused(String),
}

/// Which implementation a connection gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Wire(Compression),
    Librdkafka,
}

/// `[kafka]` settings rill's producer implements itself; any other goes to librdkafka.
fn wire_setting(key: &str, value: &str) -> Option<Option<Compression>> {
    match key {
        "compression.type" | "compression.codec" => Compression::parse(value).map(Some),
        "security.protocol" if value.eq_ignore_ascii_case("plaintext") => Some(None),
        _ => None,
    }
}

/// The implementation for these `[kafka]` settings: rill's own unless one of them needs
/// librdkafka (TLS, SASL, anything else), or `forced` (`RILL_AGENT_PRODUCER`) says
/// otherwise.
pub fn kind_for(extra: &[(String, String)], forced: Option<&str>) -> Result<Kind, PublishError> {
    let mut compression = Compression::Lz4;
    let mut unsupported = None;
    for (k, v) in extra {
        match wire_setting(k, v) {
            Some(Some(c)) => compression = c,
            Some(None) => {}
            None => {
                unsupported.get_or_insert(k.clone());
            }
        }
    }
    match forced {
        Some("librdkafka") => Ok(Kind::Librdkafka),
        Some("wire") => match unsupported {
            Some(key) => Err(PublishError::Unsupported(key)),
            None => Ok(Kind::Wire(compression)),
        },
        _ if unsupported.is_some() => Ok(Kind::Librdkafka),
        _ => Ok(Kind::Wire(compression)),
    }
}

/// The agent's producer.
pub enum AgentProducer {
    Wire(WireProducer),
    Librdkafka(BaseProducer<RdkafkaContext>),
}

impl AgentProducer {
    /// Creates the producer [`kind_for`] the settings picks. `extra` are the `[kafka]`
    /// settings.
    pub fn create(
        brokers: &str,
        extra: &[(String, String)],
        delivery: Arc<DeliveryContext>,
    ) -> Result<AgentProducer, PublishError> {
        let forced = std::env::var("RILL_AGENT_PRODUCER").ok();
        match kind_for(extra, forced.as_deref())? {
            Kind::Wire(compression) => {
                let config = WireConfig {
                    brokers: brokers.to_string(),
                    compression,
                    delivery_timeout: DELIVERY_TIMEOUT,
                };
                WireProducer::start(config, MAX_RECORD_BYTES, delivery)
                    .map(AgentProducer::Wire)
                    .map_err(PublishError::Wire)
            }
            Kind::Librdkafka => create_librdkafka(brokers, extra, RdkafkaContext(delivery))
                .map(AgentProducer::Librdkafka),
        }
    }

    /// Which implementation this is, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            AgentProducer::Wire(_) => "rill",
            AgentProducer::Librdkafka(_) => "librdkafka",
        }
    }

    /// Hands a record over; its delivery is reported with `opaque`.
    pub fn send(&self, rec: &Record<'_>, opaque: usize) -> Result<(), SendError> {
        match self {
            AgentProducer::Wire(p) => {
                let r = RecordRef {
                    key: rec.key,
                    value: rec.value,
                    headers: rec.headers,
                    timestamp: rec.timestamp,
                };
                p.send(rec.topic, &r, opaque).map_err(|e| match e {
                    wire::SendError::QueueFull => SendError::QueueFull,
                    e => SendError::Refused(e.to_string()),
                })
            }
            AgentProducer::Librdkafka(p) => {
                let mut headers = OwnedHeaders::new_with_capacity(rec.headers.len());
                for (k, v) in rec.headers {
                    headers = headers.insert(Header {
                        key: k,
                        value: Some(*v),
                    });
                }
                let record = BaseRecord::with_opaque_to(rec.topic, opaque)
                    .key(rec.key)
                    .payload(rec.value)
                    .headers(headers)
                    .timestamp(rec.timestamp);
                p.send(record).map_err(|(e, _)| match e {
                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => {
                        SendError::QueueFull
                    }
                    e => SendError::Refused(e.to_string()),
                })
            }
        }
    }

    /// Takes back what is queued and not yet sent (with `in_flight`, what is sent and not
    /// yet acknowledged too): reported as failed deliveries, purged.
    pub fn purge(&self, in_flight: bool) {
        match self {
            AgentProducer::Wire(p) => p.purge(in_flight),
            AgentProducer::Librdkafka(p) => {
                let mut how = rdkafka::producer::PurgeConfig::default().queue();
                if in_flight {
                    how = how.inflight();
                }
                p.purge(how);
            }
        }
    }

    /// Whether delivery reports need [`AgentProducer::poll`] calls (librdkafka's do;
    /// rill's producer reports from its own threads).
    pub fn needs_polling(&self) -> bool {
        matches!(self, AgentProducer::Librdkafka(_))
    }

    /// Serves delivery reports for up to `timeout`.
    pub fn poll(&self, timeout: Duration) {
        match self {
            AgentProducer::Wire(_) => std::thread::sleep(timeout),
            AgentProducer::Librdkafka(p) => {
                p.poll(timeout);
            }
        }
    }

    /// Stops the producer's threads (rill's; librdkafka stops when dropped).
    pub fn close(&self) {
        if let AgentProducer::Wire(p) = self {
            p.close();
        }
    }
}

/// Creates librdkafka's producer: idempotent (no duplicates or reordering from its own
/// retries), lz4-compressed, with large batches (a line costs little when batched by
/// thousands). `extra` are the `[kafka]` settings (security, compression...), applied last.
fn create_librdkafka(
    brokers: &str,
    extra: &[(String, String)],
    context: RdkafkaContext,
) -> Result<BaseProducer<RdkafkaContext>, PublishError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "10")
        .set("batch.num.messages", "4096")
        .set("batch.size", "1000000")
        // Kafka's Java client's partitioner, so a key lands where other producers put it;
        // also cheaper per record than librdkafka's default CRC32 one.
        .set("partitioner", "murmur2_random")
        .set(
            "message.timeout.ms",
            DELIVERY_TIMEOUT.as_millis().to_string(),
        )
        .set("message.max.bytes", MAX_RECORD_BYTES.to_string())
        // What librdkafka holds, at most: enough for a few batches in flight at full speed,
        // small enough for the agent's memory budget (a queued record costs ~0.5 KB).
        .set("queue.buffering.max.messages", "8192")
        .set("queue.buffering.max.kbytes", "2048")
        // librdkafka's own timers: fewer wake-ups while idle.
        .set("statistics.interval.ms", "0")
        .set("topic.metadata.refresh.interval.ms", "300000")
        .set("client.id", "rill-agent");
    for (k, v) in extra {
        config.set(k, v);
    }
    config
        .create_with_context(context)
        .map_err(PublishError::Create)
}

impl DeliverySink for DeliveryContext {
    fn acked(&self, opaques: &[usize]) {
        self.report_acked(opaques);
    }

    fn failed(&self, opaque: usize, failed: wire::Failed) {
        let record = SpoolRecord {
            topic: failed.topic.to_string(),
            key: failed.record.key,
            value: failed.record.value,
            timestamp: failed.record.timestamp,
            headers: failed.record.headers,
        };
        self.report_failed(opaque, &failed.error, failed.purged, record);
    }
}

/// librdkafka's context: delivery reports (on the poller thread) go to the
/// [`DeliveryContext`]; its log lines to `tracing`.
pub struct RdkafkaContext(Arc<DeliveryContext>);

impl ClientContext for RdkafkaContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, "{message}");
            }
            _ => tracing::debug!(target: "librdkafka", facility = fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Connection errors while the broker is away come here and through `log` alike
        // (and the spool takes over): only a fatal error is news.
        if matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::Fatal)) {
            tracing::error!(target: "librdkafka", error = %error, "{reason}");
        } else {
            tracing::debug!(target: "librdkafka", error = %error, "{reason}");
        }
    }
}

impl ProducerContext for RdkafkaContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        match result {
            Ok(_) => self.0.report_acked(&[opaque]),
            Err((e, msg)) => {
                let purged = matches!(
                    e.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
                );
                let headers = msg
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                let record = SpoolRecord {
                    topic: msg.topic().to_string(),
                    key: msg.key().unwrap_or_default().to_vec(),
                    value: msg.payload().unwrap_or_default().to_vec(),
                    timestamp: msg.timestamp().to_millis().unwrap_or_default(),
                    headers,
                };
                self.0.report_failed(opaque, &e.to_string(), purged, record);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn plaintext_settings_get_rills_producer_and_security_gets_librdkafka() {
        assert_eq!(kind_for(&[], None).ok(), Some(Kind::Wire(Compression::Lz4)));
        assert_eq!(
            kind_for(&settings(&[("compression.type", "zstd")]), None).ok(),
            Some(Kind::Wire(Compression::Zstd))
        );
        assert_eq!(
            kind_for(
                &settings(&[
                    ("security.protocol", "PLAINTEXT"),
                    ("compression.codec", "none")
                ]),
                None
            )
            .ok(),
            Some(Kind::Wire(Compression::None))
        );
        for s in [
            [("security.protocol", "SASL_SSL")],
            [("compression.type", "gzip")],
            [("ssl.ca.location", "/x")],
            [("linger.ms", "50")],
        ] {
            assert_eq!(
                kind_for(&settings(&s), None).ok(),
                Some(Kind::Librdkafka),
                "{s:?}"
            );
            // Forcing rill's producer on settings it does not implement is an error.
            assert!(kind_for(&settings(&s), Some("wire")).is_err(), "{s:?}");
        }
    }

    #[test]
    fn the_environment_can_force_either_producer() {
        assert_eq!(
            kind_for(&[], Some("librdkafka")).ok(),
            Some(Kind::Librdkafka)
        );
        assert_eq!(
            kind_for(&[], Some("wire")).ok(),
            Some(Kind::Wire(Compression::Lz4))
        );
    }
}
