//! The thin layer over librdkafka (`rdkafka`) that rill's client commands share: how to find
//! the brokers, how to connect to them (TLS, SASL), and a client configured the same way
//! everywhere. Everything here speaks plain Kafka, so it works against rill and any Kafka or
//! Redpanda cluster.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

pub use crate::broker::listener::SecurityProtocol;

/// Where rill commands look for a broker when neither --brokers nor $RILL_BROKERS says.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";

/// The environment variable holding the SASL password (never a flag: `ps` shows arguments).
pub const PASSWORD_ENV: &str = "RILL_SASL_PASSWORD";

/// How to reach the brokers, shared by every command that connects: `--brokers`, TLS and SASL
/// options, and kcat-style `-X key=value` librdkafka properties.
#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// Kafka bootstrap servers, comma-separated: rill or any Kafka cluster
    #[arg(long, env = "RILL_BROKERS", default_value = DEFAULT_BROKERS, value_name = "ADDR")]
    pub brokers: String,
    /// Give up on an unreachable broker after this many milliseconds
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub timeout_ms: u64,
    /// plaintext, ssl, sasl_plaintext or sasl_ssl [default: sasl_* when --sasl-username is
    /// set, *ssl when --ca-cert is set, else plaintext]
    #[arg(
        long,
        env = "RILL_SECURITY_PROTOCOL",
        value_name = "PROTOCOL",
        help_heading = "Connection security"
    )]
    pub security_protocol: Option<SecurityProtocol>,
    /// CA certificate (PEM) to verify the broker's TLS certificate with [default: the system's]
    #[arg(
        long,
        env = "RILL_CA_CERT",
        value_name = "PEM",
        help_heading = "Connection security"
    )]
    pub ca_cert: Option<PathBuf>,
    /// SASL user; the password is read from $RILL_SASL_PASSWORD
    #[arg(
        long,
        env = "RILL_SASL_USERNAME",
        value_name = "USER",
        help_heading = "Connection security"
    )]
    pub sasl_username: Option<String>,
    /// SASL mechanism: SCRAM-SHA-256 (the password never crosses the wire), SCRAM-SHA-512 or
    /// PLAIN (use it with TLS only)
    #[arg(
        long,
        env = "RILL_SASL_MECHANISM",
        default_value = "SCRAM-SHA-256",
        value_parser = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"],
        value_name = "MECHANISM",
        help_heading = "Connection security"
    )]
    pub sasl_mechanism: String,
    /// The SASL password, from $RILL_SASL_PASSWORD.
    #[arg(skip = std::env::var(PASSWORD_ENV).ok())]
    pub sasl_password: Option<String>,
    /// A librdkafka property KEY=VALUE, as kcat's -X (repeatable; applied last, so it
    /// overrides the options above), e.g. -X ssl.endpoint.identification.algorithm=none
    #[arg(
        short = 'X',
        long = "property",
        value_name = "KEY=VALUE",
        value_parser = parse_property,
        help_heading = "Connection security"
    )]
    pub properties: Vec<(String, String)>,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!(
            "expected a librdkafka property KEY=VALUE (as kcat's -X), got {s:?}"
        )),
    }
}

impl Default for BrokerArgs {
    fn default() -> Self {
        BrokerArgs {
            brokers: DEFAULT_BROKERS.to_string(),
            timeout_ms: 10_000,
            security_protocol: None,
            ca_cert: None,
            sasl_username: None,
            sasl_mechanism: "SCRAM-SHA-256".to_string(),
            sasl_password: None,
            properties: Vec::new(),
        }
    }
}

impl BrokerArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The security protocol: as given, else inferred from the other options.
    pub fn security_protocol(&self) -> SecurityProtocol {
        self.security_protocol.unwrap_or(
            match (self.sasl_username.is_some(), self.ca_cert.is_some()) {
                (false, false) => SecurityProtocol::Plaintext,
                (false, true) => SecurityProtocol::Ssl,
                (true, false) => SecurityProtocol::SaslPlaintext,
                (true, true) => SecurityProtocol::SaslSsl,
            },
        )
    }

    /// A librdkafka config for these brokers, with TLS and SASL as asked and the `-X`
    /// properties last. librdkafka's own log lines (reconnect noise) are kept to critical
    /// ones: rill reports failures itself, with what to do about them.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", "rill")
            .set("socket.timeout.ms", self.timeout_ms.max(10).to_string())
            .set_log_level(RDKafkaLogLevel::Critical);
        let protocol = self.security_protocol();
        if protocol != SecurityProtocol::Plaintext {
            config.set("security.protocol", protocol.to_string());
        }
        if let Some(ca) = &self.ca_cert {
            config.set("ssl.ca.location", ca.display().to_string());
        }
        if protocol.sasl() {
            config.set("sasl.mechanism", &self.sasl_mechanism);
            if let Some(user) = &self.sasl_username {
                config.set("sasl.username", user);
            }
            if let Some(password) = &self.sasl_password {
                config.set("sasl.password", password);
            }
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// What is wrong with the connection options before even trying, e.g. a SASL user without
    /// a password. Commands call it first so the user hears the cause, not a timeout.
    pub fn check(&self) -> Result<(), String> {
        let sasl = self.security_protocol().sasl();
        let has = |key: &str| self.properties.iter().any(|(k, _)| k == key);
        if sasl && self.sasl_username.is_none() && !has("sasl.username") {
            return Err("SASL needs a user: pass --sasl-username (or RILL_SASL_USERNAME)".into());
        }
        if sasl && self.sasl_password.is_none() && !has("sasl.password") {
            return Err(format!(
                "SASL user {} has no password: set {PASSWORD_ENV}",
                self.sasl_username.as_deref().unwrap_or("?")
            ));
        }
        if let Some(ca) = &self.ca_cert {
            if !ca.is_file() {
                return Err(format!("--ca-cert {}: no such file", ca.display()));
            }
        }
        Ok(())
    }

    /// Why a connection fails, as librdkafka reports it (a refused password, an untrusted
    /// certificate, a refused connection): a fresh client connects and the first error it
    /// reports is returned. Called only after a failure, so its wait costs nothing otherwise.
    pub fn connection_problem(&self) -> Option<String> {
        let client = self.diagnosed_consumer().ok()?;
        let deadline = Instant::now() + self.timeout().min(Duration::from_secs(5));
        while Instant::now() < deadline {
            // Serves the error callbacks; there is nothing to consume.
            let _ = client.poll(Duration::from_millis(50));
            if client.context().has_cause() {
                break;
            }
        }
        client.context().best()
    }

    /// A client for metadata and offsets that keeps the reasons its connections fail, for
    /// [`Self::metadata`] and [`Self::connection_problem`].
    pub fn diagnosed_consumer(&self) -> rdkafka::error::KafkaResult<DiagnosedConsumer> {
        self.client_config()
            // Connection failures (FAIL) are logged at error level, some only there.
            .set_log_level(RDKafkaLogLevel::Error)
            .create_with_context(ErrorCapture::default())
    }

    /// The cluster's metadata (all topics: asking for one by name could auto-create it).
    /// Gives up as soon as librdkafka reports that connecting cannot work (a refused
    /// password, a TLS failure) instead of waiting out the timeout; otherwise the error is
    /// the unreachable-broker hint.
    pub fn metadata(
        &self,
        client: &DiagnosedConsumer,
    ) -> Result<rdkafka::metadata::Metadata, String> {
        let deadline = Instant::now() + self.timeout();
        loop {
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(METADATA_SLICE);
            match client.fetch_metadata(None, slice) {
                Ok(metadata) => return Ok(metadata),
                Err(e) => {
                    // Serves the error callbacks (an authentication failure comes there).
                    let _ = client.poll(Duration::ZERO);
                    if let Some(cause) = client.context().fatal() {
                        return Err(format!(
                            "cannot connect to the Kafka broker at {}: {cause}",
                            self.brokers
                        ));
                    }
                    if Instant::now() >= deadline {
                        // This client already heard every cause librdkafka reported: no
                        // second client to ask (as `unreachable_hint` would).
                        let secured = self.security_protocol() != SecurityProtocol::Plaintext;
                        return Err(match client.context().best().filter(|_| secured) {
                            Some(cause) => format!(
                                "cannot connect to the Kafka broker at {}: {cause}",
                                self.brokers
                            ),
                            None => format!("{} (librdkafka: {e})", self.unreachable_text()),
                        });
                    }
                }
            }
        }
    }

    /// The hint appended to "cannot reach the broker" errors. With TLS or SASL it asks
    /// librdkafka what went wrong (see [`Self::connection_problem`]), so a wrong password says
    /// so instead of looking like a dead broker.
    pub fn unreachable_hint(&self) -> String {
        if self.security_protocol() != SecurityProtocol::Plaintext {
            if let Some(problem) = self.connection_problem() {
                return format!(
                    "cannot connect to the Kafka broker at {}: {problem}",
                    self.brokers
                );
            }
        }
        self.unreachable_text()
    }

    /// The hint without asking librdkafka: where rill looked, and what to check.
    fn unreachable_text(&self) -> String {
        let protocol = self.security_protocol();
        let auth = match protocol {
            SecurityProtocol::Plaintext => String::new(),
            _ => format!(
                " If it is up, check the connection security ({}{}): a wrong password, an \
                 untrusted certificate (--ca-cert) or the wrong --security-protocol look the \
                 same from here; the broker's log says which",
                protocol,
                self.sasl_username
                    .as_deref()
                    .map(|u| format!(", user {u}"))
                    .unwrap_or_default()
            ),
        };
        format!(
            "cannot reach a Kafka broker at {} within {} ms. Is `rill broker` running? \
             Point --brokers (or RILL_BROKERS) at your broker.{auth}",
            self.brokers, self.timeout_ms
        )
    }
}

/// How long one metadata attempt of [`BrokerArgs::metadata`] waits before it looks at the
/// errors librdkafka reported.
const METADATA_SLICE: Duration = Duration::from_millis(250);

/// A consumer used for metadata and offsets that records why its connections fail.
pub type DiagnosedConsumer = BaseConsumer<ErrorCapture>;

/// Records the errors librdkafka reports, silencing its own logging.
#[derive(Default)]
pub struct ErrorCapture {
    errors: Mutex<Vec<(RDKafkaErrorCode, String)>>,
}

/// Most telling first. ("All brokers are down" is left out: it only says that something else
/// went wrong, and the generic hint says more.)
const CAUSES: [RDKafkaErrorCode; 3] = [
    RDKafkaErrorCode::Authentication,
    RDKafkaErrorCode::SSL,
    RDKafkaErrorCode::BrokerTransportFailure,
];

impl ErrorCapture {
    /// Has an error with a cause (not just "all brokers down") been reported?
    fn has_cause(&self) -> bool {
        self.errors.lock().is_ok_and(|e| {
            e.iter()
                .any(|(code, _)| *code != RDKafkaErrorCode::AllBrokersDown)
        })
    }

    /// An error that retrying will not cure: a refused password, a TLS failure.
    fn fatal(&self) -> Option<String> {
        let errors = self.errors.lock().ok()?;
        errors
            .iter()
            .find(|(code, _)| {
                matches!(
                    code,
                    RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL
                )
            })
            .map(|(_, reason)| reason.clone())
    }

    fn best(&self) -> Option<String> {
        let errors = self.errors.lock().ok()?;
        CAUSES.iter().find_map(|cause| {
            errors
                .iter()
                .find(|(code, _)| code == cause)
                .map(|(_, reason)| reason.clone())
        })
    }
}

impl ClientContext for ErrorCapture {
    fn log(&self, _level: RDKafkaLogLevel, fac: &str, message: &str) {
        // e.g. "Disconnected while requesting ApiVersion: might be caused by incorrect
        // security.protocol configuration (connecting to a SSL listener?)"
        if fac == "FAIL" {
            if let Ok(mut errors) = self.errors.lock() {
                errors.push((
                    RDKafkaErrorCode::BrokerTransportFailure,
                    message.to_string(),
                ));
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(code) = error.rdkafka_error_code().filter(|c| CAUSES.contains(c)) {
            if let Ok(mut errors) = self.errors.lock() {
                errors.push((code, reason.to_string()));
            }
        }
    }
}

impl ConsumerContext for ErrorCapture {}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(config: &ClientConfig, key: &str) -> Option<String> {
        config.get(key).map(str::to_string)
    }

    #[test]
    fn plaintext_by_default() {
        let args = BrokerArgs::default();
        let config = args.client_config();
        assert_eq!(get(&config, "security.protocol"), None);
        assert_eq!(get(&config, "sasl.mechanism"), None);
        assert!(args.check().is_ok());
    }

    #[test]
    fn sasl_and_tls_options_map_to_librdkafka_properties() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "x").expect("write");
        let args = BrokerArgs {
            sasl_username: Some("dash".into()),
            sasl_password: Some("pw".into()),
            ca_cert: Some(ca.clone()),
            properties: vec![("sasl.mechanism".into(), "PLAIN".into())],
            ..BrokerArgs::default()
        };
        assert!(args.check().is_ok());
        let config = args.client_config();
        assert_eq!(
            get(&config, "security.protocol").as_deref(),
            Some("SASL_SSL")
        );
        assert_eq!(get(&config, "sasl.username").as_deref(), Some("dash"));
        assert_eq!(get(&config, "sasl.password").as_deref(), Some("pw"));
        assert_eq!(
            get(&config, "ssl.ca.location"),
            Some(ca.display().to_string())
        );
        // -X comes last and wins.
        assert_eq!(get(&config, "sasl.mechanism").as_deref(), Some("PLAIN"));

        let explicit = BrokerArgs {
            security_protocol: Some(SecurityProtocol::Ssl),
            ..BrokerArgs::default()
        };
        assert_eq!(
            get(&explicit.client_config(), "security.protocol").as_deref(),
            Some("SSL")
        );
    }

    #[test]
    fn missing_credentials_are_reported_before_connecting() {
        let no_password = BrokerArgs {
            sasl_username: Some("dash".into()),
            ..BrokerArgs::default()
        };
        let err = no_password.check().expect_err("no password");
        assert!(err.contains(PASSWORD_ENV), "{err}");
        let no_user = BrokerArgs {
            security_protocol: Some(SecurityProtocol::SaslSsl),
            ..BrokerArgs::default()
        };
        assert!(no_user
            .check()
            .expect_err("no user")
            .contains("--sasl-username"));
        assert!(parse_property("novalue").is_err());
        assert_eq!(
            parse_property("a.b=c=d").expect("valid"),
            ("a.b".to_string(), "c=d".to_string())
        );
    }
}
