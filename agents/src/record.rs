//! The record contract: what rill writes to the `logs` and `metrics` topics.
//!
//! Other tools (the dashboard, search, anything speaking Kafka) read these records, so the
//! shapes here are a public contract: fields may be added as optional, never renamed.
//! Readers must ignore fields they do not know.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Default topic for log lines.
pub const LOGS_TOPIC: &str = "logs";
/// Default topic for host metric samples.
pub const METRICS_TOPIC: &str = "metrics";

/// Kafka header carrying the record's host, so consumers can filter without parsing JSON.
pub const HEADER_HOST: &str = "host";
/// Kafka header carrying the record's source (the file path for log lines).
pub const HEADER_SOURCE: &str = "source";
/// Kafka header carrying the detected level; absent when no level was detected.
pub const HEADER_LEVEL: &str = "level";

/// Severity of a log line, detected from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    /// The lowercase name used in JSON values and in the `level` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }
}

/// One log line (or one merged multiline event) on the `logs` topic.
///
/// Key: `host:source`. Kafka timestamp: the event time, which is `ts` (the time the agent
/// read the line: log formats disagree too much on timestamps to parse them reliably).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// RFC 3339 UTC with milliseconds, e.g. `2024-05-01T12:00:00.123Z`.
    pub ts: String,
    pub host: String,
    /// Where the line came from: the path of the tailed file.
    pub source: String,
    /// The line without its line terminator; invalid UTF-8 replaced with U+FFFD.
    pub line: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    /// Structured fields; the agent does not set them yet, other producers may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<serde_json::Map<String, serde_json::Value>>,
    /// Set when the line was longer than the agent's `max_line_bytes` and was cut.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl LogRecord {
    /// The Kafka key of this record: `host:source`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.host, self.source)
    }
}

/// One host metrics sample on the `metrics` topic. Key: `host`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    pub ts: String,
    pub host: String,
    pub cpu: CpuStats,
    pub mem: MemStats,
    /// Load averages over 1, 5 and 15 minutes.
    pub load: [f64; 3],
    pub disks: Vec<DiskStats>,
    pub net: Vec<NetStats>,
    pub procs: Vec<ProcStats>,
    /// The agent's own health; absent in samples from other producers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentHealth>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuStats {
    pub usage_pct: f32,
    pub cores_pct: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemStats {
    pub used_bytes: u64,
    pub total_bytes: u64,
    pub swap_used_bytes: u64,
    pub swap_total_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskStats {
    pub mount: String,
    pub used_bytes: u64,
    pub total_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetStats {
    pub iface: String,
    pub rx_bps: f64,
    pub tx_bps: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcStats {
    pub pid: u32,
    pub name: String,
    pub cpu_pct: f32,
    pub mem_bytes: u64,
}

/// The agent's own health over the last metrics interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentHealth {
    pub lines_per_s: f64,
    pub bytes_per_s: f64,
    pub files_watched: u64,
    /// Records handed to the producer and not yet acknowledged by the broker.
    pub in_flight: u64,
    /// Errors since the agent started (I/O, delivery, sampling).
    pub errors: u64,
    /// Bytes in the agent's on-disk spool: records read while the broker was away and not
    /// yet acknowledged. Absent from agents that predate the spool.
    #[serde(default)]
    pub spool_bytes: u64,
}

/// Formats a time as RFC 3339 UTC with millisecond precision, the contract's `ts` format.
pub fn format_ts(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Milliseconds since the Unix epoch, the unit of Kafka record timestamps.
pub fn unix_millis(t: SystemTime) -> i64 {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_record_json_matches_contract() {
        let rec = LogRecord {
            ts: format_ts(UNIX_EPOCH + Duration::from_millis(1_714_564_800_123)),
            host: "web1".into(),
            source: "/var/log/app.log".into(),
            line: "ERROR boom".into(),
            level: Some(Level::Error),
            fields: None,
            truncated: false,
        };
        let json = serde_json::to_string(&rec).expect("serialize");
        assert_eq!(
            json,
            r#"{"ts":"2024-05-01T12:00:00.123Z","host":"web1","source":"/var/log/app.log","line":"ERROR boom","level":"error"}"#
        );
        assert_eq!(rec.key(), "web1:/var/log/app.log");
        let back: LogRecord = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, rec);
    }

    #[test]
    fn readers_ignore_unknown_fields() {
        let json = r#"{"ts":"t","host":"h","source":"s","line":"l","future":1}"#;
        let rec: LogRecord = serde_json::from_str(json).expect("deserialize");
        assert_eq!(rec.level, None);
        assert!(!rec.truncated);
    }
}
