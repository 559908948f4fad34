//! What the drivers share: connection flags, client configuration, logging, topic set-up.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// How long set-up steps (metadata, topic creation) may take before we call the broker broken.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(15);

/// Connection flags common to every driver.
#[derive(clap::Args, Debug, Clone)]
pub struct Conn {
    /// Bootstrap brokers, host:port[,host:port...]. Follows the rill rule: $RILL_BROKERS, then
    /// 127.0.0.1:9092.
    #[arg(long, env = "RILL_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,

    /// Topic to drive.
    #[arg(long)]
    pub topic: String,

    /// Extra librdkafka property, KEY=VALUE (repeatable, like kcat -X). Applied last, so it
    /// overrides the benchmark's own tuning.
    #[arg(short = 'X', long = "set", value_name = "KEY=VALUE", value_parser = parse_kv)]
    pub set: Vec<(String, String)>,

    /// PID of a local broker: CPU seconds it burns during the timed window go into the result.
    #[arg(long)]
    pub broker_pid: Option<u32>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

impl Conn {
    /// A client config with the brokers set; `tuning` is the driver's own settings, and the
    /// user's `-X` overrides go on top so an experiment never needs a rebuild.
    pub fn client_config(&self, tuning: &[(&str, &str)]) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.brokers)
            .set("client.id", "rill-bench")
            // Only warnings and worse reach LogContext::log; debug chatter would skew timings.
            .set_log_level(RDKafkaLogLevel::Warning);
        for (k, v) in tuning {
            cfg.set(*k, *v);
        }
        for (k, v) in &self.set {
            cfg.set(k, v);
        }
        cfg
    }
}

/// Routes librdkafka's warnings and errors to stderr. rdkafka's default context sends them to
/// the `log` crate, which has no logger here, so a refused connection would otherwise look like
/// a silent hang.
pub struct LogContext;

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_to_stderr(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        error_to_stderr(error, reason);
    }
}

/// No rebalance or commit hooks: the consumer uses assign() and never joins a group.
impl ConsumerContext for LogContext {}

/// librdkafka already filters by `log_level` (set in `client_config`), so whatever arrives is
/// worth showing.
pub fn log_to_stderr(level: RDKafkaLogLevel, fac: &str, log_message: &str) {
    eprintln!("librdkafka {level:?} {fac}: {log_message}");
}

pub fn error_to_stderr(error: KafkaError, reason: &str) {
    eprintln!("librdkafka error: {error}: {reason}");
}

/// Creates topic `name` with `partitions` partitions (replication 1) unless it exists, then waits
/// until metadata shows every partition with a leader. Creating it explicitly, before any
/// producer asks for metadata, keeps broker-side auto-creation (and its default partition
/// count) out of the measurement. Returns the partition count the topic really has.
pub fn ensure_topic(conn: &Conn, name: &str, partitions: i32) -> Result<i32> {
    let admin: AdminClient<LogContext> = conn
        .client_config(&[])
        .create_with_context(LogContext)
        .context("creating the admin client")?;
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new()
        .request_timeout(Some(SETUP_TIMEOUT))
        .operation_timeout(Some(SETUP_TIMEOUT));
    // rdkafka's admin calls are futures; a throwaway current-thread runtime is all they need.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a tokio runtime for the admin client")?;
    let results = runtime
        .block_on(admin.create_topics([&topic], &opts))
        .with_context(|| {
            format!(
                "CreateTopics {name} on {} (is a broker listening there?)",
                conn.brokers
            )
        })?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                eprintln!("topic {} already exists; using it as it is", name);
            }
            Err((name, code)) => bail!("CreateTopics {name} failed: {code}"),
        }
    }

    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        let md = admin
            .inner()
            .fetch_metadata(Some(name), SETUP_TIMEOUT)
            .with_context(|| format!("Metadata for {} on {}", name, conn.brokers))?;
        if let Some(t) = md.topics().iter().find(|t| t.name() == name) {
            let ready = t.error().is_none()
                && !t.partitions().is_empty()
                && t.partitions()
                    .iter()
                    .all(|p| p.leader() >= 0 && p.error().is_none());
            if ready {
                let have = t.partitions().len() as i32;
                if have != partitions {
                    eprintln!(
                        "warning: topic {} has {have} partitions, not the {partitions} asked for",
                        name
                    );
                }
                return Ok(have);
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "topic {} has no leader for every partition after {SETUP_TIMEOUT:?}",
                name
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Throughput in MB/s, where MB is 10^6 bytes (as dd reports it, so the two compare directly).
pub fn mb_per_sec(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / seconds / 1e6
    } else {
        0.0
    }
}

/// Per-second progress line on stderr, so a long or stuck run is visibly alive.
pub struct Progress {
    what: &'static str,
    start: Instant,
    last: Instant,
}

impl Progress {
    pub fn new(what: &'static str) -> Self {
        let now = Instant::now();
        Self {
            what,
            start: now,
            last: now,
        }
    }

    pub fn tick(&mut self, done: u64, total: u64) {
        if self.last.elapsed() >= Duration::from_secs(1) {
            self.last = Instant::now();
            let secs = self.start.elapsed().as_secs_f64();
            eprintln!(
                "{}: {done}/{total} records, {:.0} records/s",
                self.what,
                done as f64 / secs.max(1e-9)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_parses_and_rejects() {
        assert_eq!(
            parse_kv("linger.ms=5"),
            Ok(("linger.ms".into(), "5".into()))
        );
        assert_eq!(parse_kv("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_kv("novalue").is_err());
        assert!(parse_kv("=x").is_err());
    }

    #[test]
    fn mb_per_sec_uses_decimal_megabytes() {
        assert_eq!(mb_per_sec(100_000_000, 2.0), 50.0);
        assert_eq!(mb_per_sec(1, 0.0), 0.0);
    }
}
