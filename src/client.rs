//! The thin layer over librdkafka (`rdkafka`) that rill's client commands share: how to find
//! the brokers, and a client configured the same way everywhere. Everything here speaks plain
//! Kafka, so it works against rill and any Kafka or Redpanda cluster.

use std::time::Duration;

use clap::Args;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::ClientConfig;

/// Where rill commands look for a broker when neither --brokers nor $RILL_BROKERS says.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";

/// `--brokers`, shared by every command that connects.
#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// Kafka bootstrap servers, comma-separated: rill or any Kafka cluster
    #[arg(long, env = "RILL_BROKERS", default_value = DEFAULT_BROKERS, value_name = "ADDR")]
    pub brokers: String,
    /// Give up on an unreachable broker after this many milliseconds
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub timeout_ms: u64,
}

impl BrokerArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// A librdkafka config for these brokers. librdkafka's own log lines (reconnect noise) are
    /// kept to critical ones: rill reports failures itself, with what to do about them.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", "rill")
            .set("socket.timeout.ms", self.timeout_ms.max(10).to_string())
            .set_log_level(RDKafkaLogLevel::Critical);
        config
    }

    /// The hint appended to "cannot reach the broker" errors.
    pub fn unreachable_hint(&self) -> String {
        format!(
            "cannot reach a Kafka broker at {} within {} ms. Is `rill broker` running? \
             Point --brokers (or RILL_BROKERS) at your broker",
            self.brokers, self.timeout_ms
        )
    }
}
