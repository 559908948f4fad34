//! One log record as the dashboard keeps it: decoded once, when it arrives, so drawing and
//! filtering never parse JSON.

use std::collections::HashMap;
use std::sync::Arc;

use crate::record::{Level, LogRecord, HEADER_HOST, HEADER_LEVEL, HEADER_SOURCE};

/// A record of the logs topic (or a search hit), with the contract's fields pulled out.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub partition: i32,
    pub offset: i64,
    /// The Kafka timestamp (event time), ms since the epoch.
    pub ts_ms: i64,
    pub host: Arc<str>,
    pub source: Arc<str>,
    pub level: Option<Level>,
    /// The contract's `line`, or the whole value as text for records that do not follow it.
    pub line: Box<str>,
    pub headers: Box<[(Box<str>, Box<str>)]>,
    /// The raw value, for the record view (pretty JSON).
    pub value: Box<[u8]>,
}

impl LogEntry {
    /// The level filters and `e`/`E` go by: a line without a detected level counts as info.
    pub fn effective_level(&self) -> Level {
        self.level.unwrap_or(Level::Info)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| &**v)
    }
}

/// Parses a level name as the contract spells it (any case).
pub fn parse_level(s: &str) -> Option<Level> {
    match s.to_ascii_lowercase().as_str() {
        "error" => Some(Level::Error),
        "warn" | "warning" => Some(Level::Warn),
        "info" => Some(Level::Info),
        "debug" => Some(Level::Debug),
        "trace" => Some(Level::Trace),
        _ => None,
    }
}

/// Severity rank: lower is more severe (error = 0 .. trace = 4).
pub fn level_rank(level: Level) -> u8 {
    match level {
        Level::Error => 0,
        Level::Warn => 1,
        Level::Info => 2,
        Level::Debug => 3,
        Level::Trace => 4,
    }
}

/// Builds [`LogEntry`]s, sharing one allocation per distinct host and source: at 100,000
/// records/s from a few hosts, that is most of the memory a record would otherwise take.
#[derive(Debug, Default)]
pub struct Decoder {
    names: HashMap<Box<str>, Arc<str>>,
}

/// Bound on the interned names, so a producer writing a new host per record cannot grow it
/// without limit; past it, names are simply not shared.
const MAX_INTERNED: usize = 10_000;

impl Decoder {
    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.names.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        if self.names.len() < MAX_INTERNED {
            self.names.insert(Box::from(s), a.clone());
        }
        a
    }

    /// Decodes a record: the contract's JSON when the value is one, else the raw value as
    /// text with host, source and level from the headers (other producers write here too).
    pub fn decode(
        &mut self,
        partition: i32,
        offset: i64,
        ts_ms: i64,
        value: &[u8],
        headers: Vec<(Box<str>, Box<str>)>,
    ) -> LogEntry {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| &**k == name)
                .map(|(_, v)| v.to_string())
        };
        let record = match value.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => serde_json::from_slice::<LogRecord>(value).ok(),
            _ => None,
        };
        let (host, source, level, line) = match record {
            Some(rec) => (
                rec.host,
                rec.source,
                rec.level
                    .or_else(|| header(HEADER_LEVEL).and_then(|l| parse_level(&l))),
                rec.line,
            ),
            None => (
                header(HEADER_HOST).unwrap_or_default(),
                header(HEADER_SOURCE).unwrap_or_default(),
                header(HEADER_LEVEL).and_then(|l| parse_level(&l)),
                String::from_utf8_lossy(value).into_owned(),
            ),
        };
        LogEntry {
            partition,
            offset,
            ts_ms,
            host: self.intern(&host),
            source: self.intern(&source),
            level,
            line: line.into_boxed_str(),
            headers: headers.into_boxed_slice(),
            value: Box::from(value),
        }
    }
}

/// A Kafka message's headers as text (values that are not UTF-8 shown lossily).
pub fn headers_of<M: rdkafka::message::Message>(msg: &M) -> Vec<(Box<str>, Box<str>)> {
    use rdkafka::message::Headers;
    match msg.headers() {
        Some(h) => h
            .iter()
            .map(|h| {
                (
                    Box::from(h.key),
                    String::from_utf8_lossy(h.value.unwrap_or_default()).into(),
                )
            })
            .collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_and_raw_records() {
        let mut d = Decoder::default();
        let e = d.decode(
            1,
            7,
            1000,
            br#"{"ts":"t","host":"web1","source":"/a.log","line":"boom","level":"error","new":1}"#,
            vec![],
        );
        assert_eq!(&*e.host, "web1");
        assert_eq!(&*e.line, "boom");
        assert_eq!(e.level, Some(Level::Error));
        let e2 = d.decode(
            0,
            1,
            1,
            b"plain text",
            vec![
                ("host".into(), "h2".into()),
                ("level".into(), "WARN".into()),
            ],
        );
        assert_eq!(&*e2.host, "h2");
        assert_eq!(&*e2.source, "");
        assert_eq!(e2.level, Some(Level::Warn));
        assert_eq!(&*e2.line, "plain text");
        // Broken JSON is shown as it is.
        let e3 = d.decode(0, 2, 1, b"{not json", vec![]);
        assert_eq!(&*e3.line, "{not json");
        assert_eq!(e3.effective_level(), Level::Info);
    }

    #[test]
    fn names_are_shared() {
        let mut d = Decoder::default();
        let a = d.decode(
            0,
            0,
            0,
            br#"{"ts":"t","host":"h","source":"s","line":"1"}"#,
            vec![],
        );
        let b = d.decode(
            0,
            1,
            0,
            br#"{"ts":"t","host":"h","source":"s","line":"2"}"#,
            vec![],
        );
        assert!(Arc::ptr_eq(&a.host, &b.host));
    }
}
