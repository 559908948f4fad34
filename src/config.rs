//! rill's TOML configuration: types, defaults and validation.
//!
//! One file (`config/rill.toml` documents every key) configures the broker; unknown keys are
//! errors, so a typo never silently falls back to a default. Errors name the file, the line and
//! the key (the `toml` crate reports spans; we keep its message and add the path).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// Everything that can be wrong with a configuration file.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config file {path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// The whole configuration file: `[broker]`, `[agent]` (the local agent of `rill up`, with
/// rill-agent's keys; validated by the agent's own parser) and `[dash]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RillConfig {
    #[serde(default)]
    pub broker: BrokerConfig,
    /// Kept raw here; `rill up` hands the file to rill-agent's parser, which names the key and
    /// the line of anything wrong in it.
    #[serde(default)]
    pub agent: Option<toml::Table>,
    #[serde(default)]
    pub dash: DashConfig,
}

/// `[dash]`: the dashboard of `rill up`. (`rill dash` takes the same settings as flags.)
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashConfig {
    /// Records the Tail view keeps (a ring: memory stays bounded at any ingest rate).
    pub capacity: usize,
    /// The topic of log records.
    pub topic: String,
    /// The topic of metric samples.
    pub metrics_topic: String,
}

impl Default for DashConfig {
    fn default() -> Self {
        DashConfig {
            capacity: crate::dash::DEFAULT_CAPACITY,
            topic: crate::record::LOGS_TOPIC.into(),
            metrics_topic: crate::record::METRICS_TOPIC.into(),
        }
    }
}

/// How often appended data is fsynced: this bounds what a power loss can take.
/// A crash of the process alone loses nothing either way: a batch is written to the
/// file (the OS page cache) before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlushPolicy {
    /// fsync before every acknowledgement (safest, slowest).
    Every,
    /// fsync dirty partitions every `flush_interval_ms`.
    Interval,
}

/// `[broker]`: the Kafka-compatible broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Address to listen on. Loopback by default: no other host reaches it unless you say so.
    /// Its security protocol follows `tls` and `sasl` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL).
    pub listen: SocketAddr,
    /// A second listener without TLS, next to a TLS `listen` (plaintext is off when TLS is
    /// configured unless asked for here). It still requires SASL when `sasl` is set.
    pub listen_plaintext: Option<SocketAddr>,
    /// `[broker.tls]`: serve `listen` over TLS.
    pub tls: Option<TlsConfig>,
    /// `[broker.sasl]`: require SASL authentication on every listener.
    pub sasl: Option<SaslConfig>,
    /// Host name clients are told to connect to (Metadata). Defaults to the listen IP; set it
    /// when listening on 0.0.0.0.
    pub advertised_host: Option<String>,
    /// Where topics and metadata live. Defaults to `<user data dir>/rill/broker`.
    pub data_dir: Option<PathBuf>,
    /// This broker's node id in Metadata responses.
    pub node_id: i32,
    /// Largest request frame accepted; larger frames close the connection.
    pub max_request_bytes: usize,
    /// Most record bytes one Fetch response carries, whatever the client asks: a response is
    /// built in memory, so this bounds the broker's memory per connection (clients simply
    /// fetch again). The first batch is always returned whole (KIP-74).
    pub fetch_max_bytes: usize,
    /// Connections served at once; more wait in the accept queue.
    pub max_connections: usize,
    /// Connections idle this long are closed (Kafka's connections.max.idle.ms).
    pub idle_timeout_ms: u64,
    /// Create a topic when a client asks Metadata for one that does not exist.
    pub auto_create_topics: bool,
    /// Partition count for auto-created topics and CreateTopics with -1.
    pub default_partitions: i32,
    pub flush: FlushPolicy,
    pub flush_interval_ms: u64,
    /// How often retention runs.
    pub retention_check_interval_ms: u64,
    /// Defaults for every topic; each can be overridden per topic with Kafka's config names.
    pub log: LogDefaults,
    /// The consumer-group coordinator.
    pub groups: GroupSettings,
}

/// `[broker.tls]`: the certificate (chain, leaf first) and private key, PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// `[broker.sasl]`: the users file and the mechanisms offered (Kafka's sasl.enabled.mechanisms).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    pub users_file: PathBuf,
    #[serde(default = "default_mechanisms")]
    pub mechanisms: Vec<String>,
}

fn default_mechanisms() -> Vec<String> {
    vec!["SCRAM-SHA-256".into(), "PLAIN".into()]
}

impl SaslConfig {
    pub fn new(users_file: PathBuf) -> SaslConfig {
        SaslConfig {
            users_file,
            mechanisms: default_mechanisms(),
        }
    }
}

/// `[broker.groups]`: the consumer-group coordinator, under Kafka's names where it has them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupSettings {
    /// A new group waits this long for more members before its first assignment, so N
    /// consumers starting together cause one rebalance (group.initial.rebalance.delay.ms).
    pub initial_rebalance_delay_ms: u64,
    /// Session timeouts clients may ask for (group.min/max.session.timeout.ms).
    pub min_session_timeout_ms: u64,
    pub max_session_timeout_ms: u64,
    /// Committed offsets of a group with no members are deleted this long after its last
    /// commit (offsets.retention.minutes); -1 keeps them forever.
    pub offsets_retention_ms: i64,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 30 * 60 * 1000,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            listen_plaintext: None,
            tls: None,
            sasl: None,
            advertised_host: None,
            data_dir: None,
            node_id: 1,
            max_request_bytes: 100 * 1024 * 1024,
            fetch_max_bytes: 4 * 1024 * 1024,
            max_connections: 4096,
            idle_timeout_ms: 10 * 60 * 1000,
            auto_create_topics: true,
            default_partitions: 1,
            flush: FlushPolicy::Interval,
            flush_interval_ms: 1000,
            retention_check_interval_ms: 30_000,
            log: LogDefaults::default(),
            groups: GroupSettings::default(),
        }
    }
}

/// `[broker.log]`: per-topic defaults. Per-topic overrides use Kafka's names
/// (`retention.ms`, `retention.bytes`, `segment.bytes`, `segment.ms`, `max.message.bytes`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogDefaults {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    /// -1 keeps data forever.
    pub retention_ms: i64,
    /// -1 means no size limit.
    pub retention_bytes: i64,
    pub index_interval_bytes: u32,
    /// Largest record batch a producer may send (Kafka's message.max.bytes).
    pub max_message_bytes: usize,
}

impl Default for LogDefaults {
    fn default() -> Self {
        LogDefaults {
            segment_bytes: 128 * 1024 * 1024,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            max_message_bytes: 1024 * 1024 + 12,
        }
    }
}

impl RillConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<RillConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses config text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<RillConfig, ConfigError> {
        let config: RillConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config
            .broker
            .validate()
            .and_then(|()| config.dash.validate())
            .map_err(|(key, message)| ConfigError::Invalid {
                path: path.to_path_buf(),
                key,
                message,
            })?;
        Ok(config)
    }
}

impl BrokerConfig {
    /// Checks values serde cannot: returns the offending key and why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, message: &str| Err((key.to_string(), message.to_string()));
        if self.default_partitions < 1 {
            return fail("broker.default_partitions", "must be at least 1");
        }
        if self.max_request_bytes < 1024 {
            return fail("broker.max_request_bytes", "must be at least 1024");
        }
        if self.fetch_max_bytes < 1024 {
            return fail("broker.fetch_max_bytes", "must be at least 1024");
        }
        if self.max_connections == 0 {
            return fail("broker.max_connections", "must be at least 1");
        }
        if self.flush_interval_ms == 0 {
            return fail("broker.flush_interval_ms", "must be at least 1");
        }
        if self.log.segment_bytes < 1024 {
            return fail("broker.log.segment_bytes", "must be at least 1024");
        }
        if self.log.segment_ms < 1 {
            return fail("broker.log.segment_ms", "must be at least 1");
        }
        if self.log.index_interval_bytes == 0 {
            return fail("broker.log.index_interval_bytes", "must be at least 1");
        }
        if self.log.max_message_bytes < 64 {
            return fail("broker.log.max_message_bytes", "must be at least 64");
        }
        if self.listen_plaintext.is_some() && self.tls.is_none() {
            return fail(
                "broker.listen_plaintext",
                "needs [broker.tls]: without TLS, `listen` is already plaintext",
            );
        }
        if self.listen_plaintext == Some(self.listen) {
            return fail("broker.listen_plaintext", "must differ from broker.listen");
        }
        if let Some(sasl) = &self.sasl {
            if sasl.mechanisms.is_empty() {
                return fail("broker.sasl.mechanisms", "must list at least one mechanism");
            }
            if let Some(bad) = sasl
                .mechanisms
                .iter()
                .find(|m| !matches!(m.as_str(), "PLAIN" | "SCRAM-SHA-256"))
            {
                return Err((
                    "broker.sasl.mechanisms".to_string(),
                    format!("unknown mechanism `{bad}`: rill serves SCRAM-SHA-256 and PLAIN"),
                ));
            }
        }
        if self.groups.min_session_timeout_ms > self.groups.max_session_timeout_ms {
            return fail(
                "broker.groups.min_session_timeout_ms",
                "must not exceed broker.groups.max_session_timeout_ms",
            );
        }
        Ok(())
    }

    /// The data directory: as configured, else `<user data dir>/rill/broker`.
    pub fn resolved_data_dir(&self) -> PathBuf {
        match &self.data_dir {
            Some(dir) => dir.clone(),
            None => default_data_dir().join("broker"),
        }
    }

    /// The host clients should connect to.
    pub fn advertised_host(&self) -> String {
        match &self.advertised_host {
            Some(host) => host.clone(),
            None => self.listen.ip().to_string(),
        }
    }
}

impl DashConfig {
    /// Checks values serde cannot: returns the offending key and why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.capacity == 0 {
            return Err(("dash.capacity".into(), "must be at least 1".into()));
        }
        for (key, topic) in [
            ("dash.topic", &self.topic),
            ("dash.metrics_topic", &self.metrics_topic),
        ] {
            if topic.trim().is_empty() {
                return Err((key.into(), "must not be empty".into()));
            }
        }
        Ok(())
    }
}

/// `<user data dir>/rill` (e.g. ~/.local/share/rill), or ./rill-data when there is none.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("rill"))
        .unwrap_or_else(|| PathBuf::from("rill-data"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_example_parses_and_matches_the_defaults() {
        let text = include_str!("../config/rill.toml");
        let config =
            RillConfig::parse(text, Path::new("config/rill.toml")).expect("example parses");
        let defaults = BrokerConfig::default();
        assert_eq!(config.broker.listen, defaults.listen);
        assert_eq!(config.broker.log.segment_bytes, defaults.log.segment_bytes);
        assert_eq!(
            config.broker.log.max_message_bytes,
            defaults.log.max_message_bytes
        );
        assert_eq!(config.broker.flush, defaults.flush);
    }

    #[test]
    fn shipped_example_is_a_valid_rill_up_config() {
        let path = Path::new("config/rill.toml");
        let text = include_str!("../config/rill.toml");
        let config = RillConfig::parse(text, path).expect("example parses");
        assert_eq!(config.dash.capacity, crate::dash::DEFAULT_CAPACITY);
        let agent = rill_agent::config::Config::parse_section(
            path,
            text,
            "127.0.0.1:9092",
            Path::new("/tmp/agent"),
        )
        .expect("its [agent] section is a valid agent config");
        assert_eq!(
            agent.metrics.interval,
            Some(std::time::Duration::from_millis(2000))
        );
    }

    #[test]
    fn a_mistake_in_the_agent_section_names_line_and_key() {
        let text =
            "[broker]\n\n[[agent.files]]\ninclude = [\"/var/log/*.log\"]\nread_from = \"middle\"\n";
        RillConfig::parse(text, Path::new("rill.toml")).expect("rill's part is fine");
        let err = rill_agent::config::Config::parse_section(
            Path::new("rill.toml"),
            text,
            "127.0.0.1:9092",
            Path::new("/tmp/agent"),
        )
        .expect_err("bad read_from")
        .to_string();
        assert!(err.contains("rill.toml:5"), "{err}");
        assert!(err.contains("agent.files"), "{err}");
    }

    #[test]
    fn empty_config_gives_defaults() {
        let config = RillConfig::parse("", Path::new("x.toml")).expect("empty config is valid");
        assert_eq!(config.broker.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(config.broker.flush, FlushPolicy::Interval);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = "[broker]\nlisten = \"127.0.0.1:9000\"\nretension_ms = 5\n";
        let err = RillConfig::parse(text, Path::new("rill.toml"))
            .expect_err("unknown key must fail")
            .to_string();
        assert!(err.contains("rill.toml"), "{err}");
        assert!(err.contains("retension_ms"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn invalid_value_names_key() {
        let text = "[broker]\ndefault_partitions = 0\n";
        let err = RillConfig::parse(text, Path::new("rill.toml"))
            .expect_err("zero partitions must fail")
            .to_string();
        assert!(err.contains("broker.default_partitions"), "{err}");
    }

    #[test]
    fn security_sections_parse_and_are_checked() {
        let text = "[broker]\nlisten_plaintext = \"127.0.0.1:9093\"\n[broker.tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n[broker.sasl]\nusers_file = \"users.toml\"\n";
        let config = RillConfig::parse(text, Path::new("rill.toml")).expect("valid");
        let sasl = config.broker.sasl.expect("sasl");
        assert_eq!(sasl.mechanisms, ["SCRAM-SHA-256", "PLAIN"]);
        assert!(config.broker.tls.is_some());

        let err = RillConfig::parse(
            "[broker]\nlisten_plaintext = \"127.0.0.1:9093\"\n",
            Path::new("rill.toml"),
        )
        .expect_err("plaintext listener without TLS")
        .to_string();
        assert!(err.contains("broker.listen_plaintext"), "{err}");

        let err = RillConfig::parse(
            "[broker.sasl]\nusers_file = \"u\"\nmechanisms = [\"GSSAPI\"]\n",
            Path::new("rill.toml"),
        )
        .expect_err("unknown mechanism")
        .to_string();
        assert!(
            err.contains("broker.sasl.mechanisms") && err.contains("GSSAPI"),
            "{err}"
        );

        let err = RillConfig::parse("[broker.tls]\ncert_file = \"c\"\n", Path::new("rill.toml"))
            .expect_err("missing key_file")
            .to_string();
        assert!(err.contains("key_file"), "{err}");
    }

    #[test]
    fn bad_type_is_reported() {
        let text = "[broker]\nflush = \"sometimes\"\n";
        let err = RillConfig::parse(text, Path::new("rill.toml"))
            .expect_err("bad enum must fail")
            .to_string();
        assert!(err.contains("flush"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }
}
