//! The agent's TOML configuration: parsing, defaults and validation.
//!
//! Every error names the file, the line and the key, because the person reading it is
//! usually on a remote host with only the config file and this message in front of them.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::bytes::Regex;
use serde::Deserialize;
use toml::Spanned;

use crate::record::{LOGS_TOPIC, METRICS_TOPIC};

/// Default cap on one line; longer lines are cut and flagged.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1024 * 1024;
/// Upper bound on `max_line_bytes`: one record must still fit a Kafka message.
const MAX_MAX_LINE_BYTES: u64 = 16 * 1024 * 1024;
/// How long a multiline event waits for a continuation line before it is sent.
const DEFAULT_MULTILINE_TIMEOUT_MS: u64 = 1000;
const DEFAULT_METRICS_INTERVAL_MS: u64 = 10_000;
/// Shorter metric intervals would make the sampler itself a noticeable CPU cost.
const MIN_METRICS_INTERVAL_MS: u64 = 100;
/// Default cap on the on-disk spool.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// The spool must hold at least a couple of its segments and a full in-flight window.
const MIN_SPOOL_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// A configuration error, located in its file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Box<Located>),
}

/// A problem at a place in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub path: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// The dotted key the problem is about, e.g. `files[0].include`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: key `{}`: {}",
            self.path.display(),
            self.line,
            self.key,
            self.message
        )
    }
}

/// Where a file's existing content is read from on the agent's very first start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    Beginning,
    End,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Comma-separated `host:port` list, passed to the Kafka client as given.
    pub brokers: String,
    pub host: String,
    pub data_dir: PathBuf,
    pub files: Vec<FileRule>,
    pub metrics: MetricsConfig,
    /// Cap on the on-disk spool in `data_dir/spool`; when full, tailing pauses.
    pub spool_max_bytes: u64,
    /// `[kafka]`: librdkafka settings passed through as given (security, compression...).
    pub kafka: Vec<(String, String)>,
}

/// One `[[files]]` section: which files to tail and how.
#[derive(Debug, Clone)]
pub struct FileRule {
    /// Absolute glob patterns, as written.
    pub include: Vec<String>,
    pub exclude: Vec<glob::Pattern>,
    pub read_from: ReadFrom,
    pub topic: String,
    pub max_line_bytes: usize,
    pub multiline: Option<Multiline>,
}

impl FileRule {
    /// Whether an include pattern is the same set of rules; used by reload to tell new
    /// sections (whose `read_from` applies) from ones that were already being tailed.
    pub fn same_source(&self, other: &FileRule) -> bool {
        self.include == other.include
    }
}

#[derive(Debug, Clone)]
pub struct Multiline {
    /// A line matching this starts a new event; other lines continue the current one.
    pub start_pattern: Regex,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `None` when metrics are turned off (`interval_ms = 0`).
    pub interval: Option<Duration>,
    pub topic: String,
}

// ---- raw, as written in TOML ------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    brokers: Spanned<String>,
    host: Option<Spanned<String>>,
    data_dir: Spanned<String>,
    #[serde(default)]
    files: Vec<RawFiles>,
    metrics: Option<RawMetrics>,
    spool_max_bytes: Option<Spanned<u64>>,
    kafka: Option<Spanned<toml::Table>>,
}

/// rill's own config file, seen from the agent: only `[agent]` (the rest is rill's to check).
#[derive(Deserialize)]
struct RillFileAgentView {
    agent: Option<RawSection>,
}

/// `[agent]` in rill's config file: an agent config without `brokers` and `data_dir`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSection {
    host: Option<Spanned<String>>,
    #[serde(default)]
    files: Vec<RawFiles>,
    metrics: Option<RawMetrics>,
    spool_max_bytes: Option<Spanned<u64>>,
    kafka: Option<Spanned<toml::Table>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFiles {
    include: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    read_from: Option<ReadFrom>,
    topic: Option<Spanned<String>>,
    max_line_bytes: Option<Spanned<u64>>,
    multiline: Option<RawMultiline>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMultiline {
    start_pattern: Spanned<String>,
    timeout_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    interval_ms: Option<Spanned<u64>>,
    topic: Option<Spanned<String>>,
}

/// Turns byte spans into located errors.
struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
    /// Put before key names: `agent.` when the keys sit in rill's own config file.
    prefix: &'a str,
}

impl Locator<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn error(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        self.located(span, format!("{}{}", self.prefix, key.into()), message)
    }

    /// An error at `span` for a key named in full.
    fn located(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid(Box::new(Located {
            path: self.path.to_path_buf(),
            line: self.line_of(span.start),
            key: key.into(),
            message: message.into(),
        }))
    }

    /// Locates a TOML syntax or type error. The toml crate gives a span and a message but
    /// not the key, so the key is recovered from the message (unknown/missing field) or
    /// from the `key = value` text on the error's line, qualified by the enclosing table.
    fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
        let span = err.span().unwrap_or(0..0);
        let message = err.message().trim().to_string();
        let line_start = self.text[..span.start.min(self.text.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let line_text = self.text[line_start..].lines().next().unwrap_or("");
        let named = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|p| message.split_once(p))
            .and_then(|(_, rest)| rest.split('`').next())
            .map(str::to_string);
        let on_line = line_text
            .split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"').to_string())
            .filter(|k| !k.is_empty() && !k.starts_with('['));
        let table = self.enclosing_table(line_start);
        let leaf = named.or(on_line);
        let key = match (table, leaf) {
            (Some(t), Some(k)) => format!("{t}.{k}"),
            (Some(t), None) => t,
            (None, Some(k)) => k,
            (None, None) => "(document)".to_string(),
        };
        self.located(span, key, message)
    }

    /// Where a dotted key (`a.b` or `"a.b"`) is written inside a table's span: toml gives
    /// spans for values, not for keys of a free-form table.
    fn key_in(&self, table: &Range<usize>, key: &str) -> Range<usize> {
        let end = table.end.min(self.text.len());
        let start = table.start.min(end);
        let quoted = format!("\"{key}\"");
        let mut offset = start;
        for line in self.text[start..end].split_inclusive('\n') {
            let t = line.trim_start();
            let written = t
                .split_once('=')
                .map(|(k, _)| k.trim().replace(['"', ' '], ""));
            if t.starts_with(&quoted) || written.as_deref() == Some(key) {
                return offset..offset;
            }
            offset += line.len();
        }
        table.clone()
    }

    /// The `[table]` or `[[array]]` header in force at a byte offset, if any.
    fn enclosing_table(&self, offset: usize) -> Option<String> {
        self.text[..offset.min(self.text.len())]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Validates config text; `path` is used for error messages and to resolve a relative
    /// `data_dir` (relative to the config file, not to wherever the agent was started).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let loc = Locator {
            path,
            text,
            prefix: "",
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| loc.toml_error(&e))?;
        Config::from_raw(&loc, raw)
    }

    /// The `[agent]` section of rill's own config file (for the agent `rill up` embeds): the
    /// keys of an agent config, except `brokers` and `data_dir`, which the embedding process
    /// sets. A missing section is an agent with no files and default metrics. Errors name the
    /// file, the line and the key (`agent.files[0].include`); other sections are left to
    /// their own parsers.
    pub fn parse_section(
        path: &Path,
        text: &str,
        brokers: &str,
        data_dir: &Path,
    ) -> Result<Config, ConfigError> {
        let loc = Locator {
            path,
            text,
            prefix: "agent.",
        };
        let file: RillFileAgentView = toml::from_str(text).map_err(|e| loc.toml_error(&e))?;
        let section = file.agent.unwrap_or_default();
        let raw = RawConfig {
            brokers: Spanned::new(0..0, brokers.to_string()),
            host: section.host,
            data_dir: Spanned::new(0..0, data_dir.to_string_lossy().into_owned()),
            files: section.files,
            metrics: section.metrics,
            spool_max_bytes: section.spool_max_bytes,
            kafka: section.kafka,
        };
        Config::from_raw(&loc, raw)
    }

    fn from_raw(loc: &Locator<'_>, raw: RawConfig) -> Result<Config, ConfigError> {
        let path = loc.path;
        let brokers = raw.brokers.get_ref().trim().to_string();
        validate_brokers(&brokers).map_err(|m| loc.error(raw.brokers.span(), "brokers", m))?;

        let host = match raw.host {
            Some(h) if h.get_ref().trim().is_empty() => {
                return Err(loc.error(
                    h.span(),
                    "host",
                    "must not be empty (omit it to use the machine's host name)",
                ));
            }
            Some(h) => h.into_inner().trim().to_string(),
            None => gethostname::gethostname().to_string_lossy().into_owned(),
        };

        if raw.data_dir.get_ref().trim().is_empty() {
            return Err(loc.error(raw.data_dir.span(), "data_dir", "must not be empty"));
        }
        let mut data_dir = PathBuf::from(raw.data_dir.get_ref());
        if data_dir.is_relative() {
            if let Some(parent) = path.parent() {
                data_dir = parent.join(data_dir);
            }
        }

        let files = raw
            .files
            .into_iter()
            .enumerate()
            .map(|(i, f)| file_rule(loc, i, f))
            .collect::<Result<Vec<_>, _>>()?;

        let metrics = match raw.metrics {
            None => MetricsConfig {
                interval: Some(Duration::from_millis(DEFAULT_METRICS_INTERVAL_MS)),
                topic: METRICS_TOPIC.to_string(),
            },
            Some(m) => {
                let interval = match m.interval_ms {
                    None => Some(Duration::from_millis(DEFAULT_METRICS_INTERVAL_MS)),
                    Some(ms) if *ms.get_ref() == 0 => None,
                    Some(ms) if *ms.get_ref() < MIN_METRICS_INTERVAL_MS => {
                        return Err(loc.error(
                            ms.span(),
                            "metrics.interval_ms",
                            format!("must be 0 (off) or at least {MIN_METRICS_INTERVAL_MS}"),
                        ));
                    }
                    Some(ms) => Some(Duration::from_millis(*ms.get_ref())),
                };
                let topic = topic(loc, m.topic, "metrics.topic", METRICS_TOPIC)?;
                MetricsConfig { interval, topic }
            }
        };

        let spool_max_bytes = match raw.spool_max_bytes {
            None => DEFAULT_SPOOL_MAX_BYTES,
            Some(b) if *b.get_ref() < MIN_SPOOL_MAX_BYTES => {
                return Err(loc.error(
                    b.span(),
                    "spool_max_bytes",
                    format!("must be at least {MIN_SPOOL_MAX_BYTES} (16 MiB)"),
                ));
            }
            Some(b) => *b.get_ref(),
        };

        let mut kafka = Vec::new();
        if let Some(table) = raw.kafka {
            let span = table.span();
            for (key, value) in table.into_inner() {
                flatten_kafka(loc, key, value, &span, &mut kafka)?;
            }
        }

        Ok(Config {
            brokers,
            host,
            data_dir,
            files,
            metrics,
            spool_max_bytes,
            kafka,
        })
    }
}

/// Collects `[kafka]` entries. librdkafka's names contain dots, which TOML reads as nested
/// tables unless quoted: both spellings are accepted and joined back into dotted names.
fn flatten_kafka(
    loc: &Locator<'_>,
    key: String,
    value: toml::Value,
    span: &Range<usize>,
    out: &mut Vec<(String, String)>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::Table(table) => {
            for (k, v) in table {
                flatten_kafka(loc, format!("{key}.{k}"), v, span, out)?;
            }
            Ok(())
        }
        toml::Value::String(text) => {
            let at = loc.key_in(span, &key);
            out.push(kafka_setting(loc, key, text, &at)?);
            Ok(())
        }
        _ => Err(loc.error(
            loc.key_in(span, &key),
            format!("kafka.{key}"),
            "must be a string, as librdkafka takes it (e.g. \"5000\", \"true\")",
        )),
    }
}

/// One `[kafka]` entry: a key librdkafka knows with a value it accepts, and not one of the
/// settings the agent's no-loss promise rests on.
fn kafka_setting(
    loc: &Locator<'_>,
    key: String,
    text: String,
    span: &Range<usize>,
) -> Result<(String, String), ConfigError> {
    let name = format!("kafka.{key}");
    if crate::publisher::RESERVED_KAFKA_KEYS.contains(&key.as_str()) {
        let hint = if key == "bootstrap.servers" || key == "metadata.broker.list" {
            "set `brokers` instead"
        } else {
            "the agent sets it itself: at-least-once delivery depends on it"
        };
        return Err(loc.error(span.clone(), name, format!("cannot be set here: {hint}")));
    }
    // librdkafka checks each property and value as it is set: ask it now, so a typo is
    // reported with its line instead of failing at start-up.
    if let Err(e) = rdkafka::ClientConfig::new()
        .set(&key, &text)
        .create_native_config()
    {
        return Err(loc.error(span.clone(), name, format!("rejected by librdkafka: {e}")));
    }
    Ok((key, text))
}

fn validate_brokers(brokers: &str) -> Result<(), String> {
    if brokers.is_empty() {
        return Err("must list at least one host:port".to_string());
    }
    for b in brokers.split(',').map(str::trim) {
        let port = b.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
        match port {
            Some((h, Ok(p))) if !h.is_empty() && p != 0 => {}
            _ => return Err(format!("`{b}` is not host:port")),
        }
    }
    Ok(())
}

fn topic(
    loc: &Locator<'_>,
    raw: Option<Spanned<String>>,
    key: &str,
    default: &str,
) -> Result<String, ConfigError> {
    match raw {
        None => Ok(default.to_string()),
        Some(t) => {
            let name = t.get_ref().trim();
            let valid = !name.is_empty()
                && name.len() <= 249
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if valid {
                Ok(name.to_string())
            } else {
                Err(loc.error(t.span(), key, "a Kafka topic name: 1-249 of [a-zA-Z0-9._-]"))
            }
        }
    }
}

fn file_rule(loc: &Locator<'_>, i: usize, raw: RawFiles) -> Result<FileRule, ConfigError> {
    let key = |k: &str| format!("files[{i}].{k}");
    if raw.include.get_ref().is_empty() {
        return Err(loc.error(
            raw.include.span(),
            key("include"),
            "must list at least one glob",
        ));
    }
    let mut include = Vec::new();
    for pat in raw.include.get_ref() {
        let text = pat.get_ref();
        if !Path::new(text).is_absolute() {
            return Err(loc.error(
                pat.span(),
                key("include"),
                format!("`{text}` must be an absolute path"),
            ));
        }
        glob::Pattern::new(text).map_err(|e| {
            loc.error(
                pat.span(),
                key("include"),
                format!("`{text}` is not a valid glob: {e}"),
            )
        })?;
        include.push(text.clone());
    }
    let exclude = raw
        .exclude
        .iter()
        .map(|pat| {
            glob::Pattern::new(pat.get_ref()).map_err(|e| {
                loc.error(
                    pat.span(),
                    key("exclude"),
                    format!("`{}` is not a valid glob: {e}", pat.get_ref()),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let max_line_bytes = match raw.max_line_bytes {
        None => DEFAULT_MAX_LINE_BYTES,
        Some(m) => {
            let v = *m.get_ref();
            if v == 0 || v > MAX_MAX_LINE_BYTES {
                return Err(loc.error(
                    m.span(),
                    key("max_line_bytes"),
                    format!("must be between 1 and {MAX_MAX_LINE_BYTES}"),
                ));
            }
            usize::try_from(v).map_err(|_| {
                loc.error(
                    m.span(),
                    key("max_line_bytes"),
                    "too large for this machine",
                )
            })?
        }
    };
    let multiline = match raw.multiline {
        None => None,
        Some(m) => {
            let start_pattern = Regex::new(m.start_pattern.get_ref()).map_err(|e| {
                loc.error(
                    m.start_pattern.span(),
                    key("multiline.start_pattern"),
                    format!("not a valid regex: {e}"),
                )
            })?;
            let timeout_ms = match m.timeout_ms {
                None => DEFAULT_MULTILINE_TIMEOUT_MS,
                Some(t) if *t.get_ref() == 0 => {
                    return Err(loc.error(
                        t.span(),
                        key("multiline.timeout_ms"),
                        "must be at least 1",
                    ));
                }
                Some(t) => *t.get_ref(),
            };
            Some(Multiline {
                start_pattern,
                timeout: Duration::from_millis(timeout_ms),
            })
        }
    };
    Ok(FileRule {
        include,
        exclude,
        read_from: raw.read_from.unwrap_or(ReadFrom::End),
        topic: topic(loc, raw.topic, &key("topic"), LOGS_TOPIC)?,
        max_line_bytes,
        multiline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/rill/agent.toml"), text)
    }

    fn located(text: &str) -> Located {
        match parse(text) {
            Err(ConfigError::Invalid(l)) => *l,
            other => panic!("expected a located error, got {other:?}"),
        }
    }

    const GOOD: &str = r#"
brokers = "127.0.0.1:9092"
host = "web1"
data_dir = "/var/lib/rill-agent"

[[files]]
include = ["/var/log/*.log"]
exclude = ["*.gz"]
read_from = "beginning"
multiline.start_pattern = '^\d{4}-'

[metrics]
interval_ms = 0
"#;

    #[test]
    fn parses_the_documented_shape() {
        let c = parse(GOOD).expect("valid");
        assert_eq!(c.brokers, "127.0.0.1:9092");
        assert_eq!(c.host, "web1");
        assert_eq!(c.files.len(), 1);
        assert_eq!(c.files[0].read_from, ReadFrom::Beginning);
        assert_eq!(c.files[0].topic, "logs");
        assert_eq!(c.files[0].max_line_bytes, DEFAULT_MAX_LINE_BYTES);
        assert!(c.files[0].multiline.is_some());
        assert_eq!(c.metrics.interval, None);
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/agent.toml");
        let c = Config::load(&path).expect("config/agent.toml must validate");
        assert!(!c.files.is_empty());
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let l = located("brokers = \"a:1\"\ndata_dir = \"/x\"\n\n[metrics]\nintervall_ms = 5\n");
        assert_eq!(l.line, 5);
        assert_eq!(l.key, "metrics.intervall_ms");
        assert_eq!(l.path, Path::new("/etc/rill/agent.toml"));
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        let l = located("brokers = \"a:1\"\ndata_dir = \"/x\"\n[metrics]\ninterval_ms = \"ten\"\n");
        assert_eq!(l.line, 4);
        assert_eq!(l.key, "metrics.interval_ms");
    }

    #[test]
    fn syntax_error_names_line() {
        let l = located("brokers = \"a:1\"\ndata_dir = \n");
        assert_eq!(l.line, 2);
        assert_eq!(l.key, "data_dir");
    }

    #[test]
    fn missing_key_is_named() {
        let l = located("data_dir = \"/x\"\n");
        assert_eq!(l.key, "brokers");
    }

    #[test]
    fn semantic_errors_name_line_and_key() {
        let l = located("brokers = \"a:1\"\ndata_dir = \"/x\"\n[[files]]\ninclude = [\"/a/*.log\"]\nmultiline.start_pattern = '(['\n");
        assert_eq!(
            (l.line, l.key.as_str()),
            (5, "files[0].multiline.start_pattern")
        );

        let l = located("brokers = \"a:1\"\ndata_dir = \"/x\"\n[[files]]\ninclude = [\n \"/a/*.log\",\n \"rel/*.log\"]\n");
        assert_eq!((l.line, l.key.as_str()), (6, "files[0].include"));

        let l = located("brokers = \"nohost\"\ndata_dir = \"/x\"\n");
        assert_eq!((l.line, l.key.as_str()), (1, "brokers"));

        let l = located("brokers = \"a:1\"\ndata_dir = \"/x\"\n[[files]]\ninclude = [\"/a\"]\nmax_line_bytes = 0\n");
        assert_eq!((l.line, l.key.as_str()), (5, "files[0].max_line_bytes"));

        let l = located("brokers = \"a:1\"\ndata_dir = \"/x\"\n[[files]]\ninclude = [\"/a\"]\nread_from = \"middle\"\n");
        assert_eq!((l.line, l.key.as_str()), (5, "files.read_from"));
    }

    #[test]
    fn kafka_settings_pass_through_and_bad_ones_are_located() {
        let base = "brokers = \"a:1\"\ndata_dir = \"/x\"\n[kafka]\n";
        let c = parse(&format!(
            "{base}\"security.protocol\" = \"sasl_plaintext\"\nsasl.mechanism = \"PLAIN\"\n"
        ))
        .expect("valid");
        assert_eq!(
            c.kafka,
            [
                ("sasl.mechanism".to_string(), "PLAIN".to_string()),
                (
                    "security.protocol".to_string(),
                    "sasl_plaintext".to_string()
                ),
            ]
        );
        let l = located(&format!(
            "{base}\"linger.ms\" = \"5\"\n\"batch.size\" = 5\n"
        ));
        assert_eq!((l.line, l.key.as_str()), (5, "kafka.batch.size"));
        assert!(l.message.contains("string"), "{}", l.message);
        let l = located(&format!("{base}\"enable.idempotence\" = \"false\"\n"));
        assert_eq!((l.line, l.key.as_str()), (4, "kafka.enable.idempotence"));
        let l = located(&format!("{base}\"bootstrap.servers\" = \"b:2\"\n"));
        assert!(l.message.contains("brokers"), "{}", l.message);
        let l = located(&format!("{base}\"no.such.setting\" = \"1\"\n"));
        assert_eq!((l.line, l.key.as_str()), (4, "kafka.no.such.setting"));
        assert!(l.message.contains("librdkafka"), "{}", l.message);
    }

    #[test]
    fn spool_cap_has_a_floor() {
        let c = parse("brokers = \"a:1\"\ndata_dir = \"/x\"\n").expect("valid");
        assert_eq!(c.spool_max_bytes, DEFAULT_SPOOL_MAX_BYTES);
        let l = located("brokers = \"a:1\"\ndata_dir = \"/x\"\nspool_max_bytes = 1000\n");
        assert_eq!((l.line, l.key.as_str()), (3, "spool_max_bytes"));
    }

    #[test]
    fn relative_data_dir_is_relative_to_the_config_file() {
        let c = parse("brokers = \"a:1\"\ndata_dir = \"state\"\n").expect("valid");
        assert_eq!(c.data_dir, Path::new("/etc/rill/state"));
    }
}
