//! `rill up`: the embedded default. One process runs the broker, a local agent (tailing
//! files and sampling this host's metrics every 2 s) and the dashboard; `q` stops it all.
//!
//! The pieces are the same ones `rill broker`, `rill-agent` and `rill dash` run on their own,
//! talking Kafka over loopback to each other, so growing into a fleet changes addresses, not
//! components.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::sync::{mpsc, oneshot};

use rill::client::BrokerArgs;
use rill::config::{default_data_dir, RillConfig};
use rill::demo::Demo;
use rill_agent::agent::{self as agent, Signal};

/// Host metrics are sampled this often in `rill up` (a standalone agent defaults to 10 s).
const METRICS_INTERVAL_MS: u64 = 2000;
/// What `rill up` tails when neither --tail nor the config names files.
const DEFAULT_GLOBS: [&str; 2] = ["/var/log/*.log", "/var/log/*/*.log"];

#[derive(Debug, Args)]
#[command(after_help = "\
Everything stays on this machine: the broker listens on loopback, data goes under DIR:
  DIR/broker   topics (the same place `rill broker` uses by default)
  DIR/agent    the agent's checkpoints: a restart resumes where it stopped, no line lost
  DIR/demo     the --demo generators' log files
  DIR/rill-up.log   rill's own log while the dashboard owns the terminal

Examples:
  rill up                                 # this machine's /var/log/*.log and metrics
  rill up --tail './logs/*.log' --tail /var/log/syslog
  rill up --demo                          # an empty machine: generated traffic in every view
  rill up --config config/rill.toml       # every broker, agent and dashboard setting

Other tools reach the broker while it runs: `rill search ERROR`, `kcat -b 127.0.0.1:9092 -L`,
`rill dash` from a second terminal.")]
pub struct UpArgs {
    /// Root of rill's data [default: your data directory, e.g. ~/.local/share/rill]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address the broker listens on [default: 127.0.0.1:9092, or broker.listen from --config]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Tail the files matching this glob (repeatable; relative globs are taken from the
    /// current directory). Without --tail and without [[agent.files]] in the config, rill up
    /// tails the readable *.log files under /var/log, from their end
    #[arg(long = "tail", value_name = "GLOB")]
    tail: Vec<String>,
    /// A TOML config file with [broker], [agent] and [dash] sections (see config/rill.toml)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Add generated traffic: an HTTP service with latency and errors, a noisy worker, a cron
    /// job, and a consumer group that falls behind, so every view shows something
    #[arg(long)]
    demo: bool,
}

pub fn run(args: UpArgs) -> anyhow::Result<()> {
    // Read once: rill's sections and the agent's section are parsed from the same text.
    let config_text = match &args.config {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?,
        None => String::new(),
    };
    let config = match &args.config {
        Some(path) => RillConfig::parse(&config_text, path)?,
        None => RillConfig::default(),
    };
    let root = args.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&root)
        .with_context(|| format!("cannot create the data directory {}", root.display()))?;
    let log_path = root.join("rill-up.log");
    super::logging::init_to_file(&log_path)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rill-up")
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(up(args, config, config_text, root.clone()));
    // Threads stuck in librdkafka calls must not keep the process (and the port) alive.
    runtime.shutdown_timeout(Duration::from_secs(2));
    if result.is_ok() {
        eprintln!("rill up: stopped; data in {}", root.display());
    } else {
        eprintln!("rill up: rill's own log is {}", log_path.display());
    }
    result
}

async fn up(
    args: UpArgs,
    config: RillConfig,
    config_text: String,
    root: PathBuf,
) -> anyhow::Result<()> {
    let mut broker_config = config.broker.clone();
    if let Some(listen) = args.listen {
        broker_config.listen = listen;
    }
    broker_config.data_dir = Some(match (&args.data_dir, &config.broker.data_dir) {
        (None, Some(dir)) => dir.clone(),
        _ => root.join("broker"),
    });
    if broker_config.tls.is_some() || broker_config.sasl.is_some() {
        anyhow::bail!(
            "rill up connects its own agent and dashboard to the broker over loopback, without \
             credentials: remove [broker.tls] and [broker.sasl] from the config for rill up, or run \
             `rill broker` with them and connect `rill dash` and rill-agent with credentials"
        );
    }
    let listen = broker_config.listen;
    // Checked before anything starts: a mistake in [agent] is reported with its line.
    let mut agent_config = agent_config(&args, &config, &config_text, &root, &listen.to_string())?;
    let in_use = format!(
        "is another rill running? Watch it with `rill dash --brokers {listen}`, or start this \
         one elsewhere with --listen"
    );
    let started = super::broker::start(broker_config, &in_use).await?;
    let bound = started.bound;
    let (stop_broker, broker_stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(started.serve(async {
        let _ = broker_stopped.await;
    }));
    let brokers = bound.to_string();
    agent_config.brokers = brokers.clone();

    let demo = if args.demo {
        Some(
            Demo::start(&root.join("demo"), &brokers, &config.dash.topic)
                .context("cannot start the demo generators")?,
        )
    } else {
        None
    };

    let (agent_signals, signals) = mpsc::channel(4);
    let agent_task = tokio::spawn(agent::run(None, agent_config, signals));

    let mut options = rill::dash::Options::new(BrokerArgs {
        brokers: brokers.clone(),
        ..BrokerArgs::default()
    });
    options.label = Some(format!("rill up · data in {}", root.display()));
    options.topic = config.dash.topic.clone();
    options.metrics_topic = config.dash.metrics_topic.clone();
    options.capacity = config.dash.capacity;
    let dash = rill::dash::run(options);
    let outcome = tokio::select! {
        outcome = dash => outcome.map_err(anyhow::Error::from),
        // SIGTERM, or SIGINT from elsewhere (raw mode turns Ctrl-C into a key).
        () = super::broker::shutdown_signal() => Ok(()),
    };

    // Stop in dependency order: generators, then the agent (it flushes to the broker), then
    // the broker (it fsyncs on the way out).
    if let Some(demo) = demo {
        let _ = tokio::task::spawn_blocking(move || demo.stop()).await;
    }
    let _ = agent_signals.send(Signal::Stop).await;
    match agent_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("agent: {e}"),
        Err(e) => tracing::error!("agent task failed: {e}"),
    }
    let _ = stop_broker.send(());
    if let Err(e) = server.await {
        tracing::error!("broker task failed: {e}");
    }
    outcome
}

/// The local agent's configuration: the config file's `[agent]` section (validated by the
/// agent's parser, which names the line and key of a mistake), plus the --tail globs (read
/// from their beginning), the demo's files, and, when neither --tail nor the config names any
/// files, the *.log files under /var/log (from their end). Host metrics every 2 s unless the
/// config says otherwise.
fn agent_config(
    args: &UpArgs,
    config: &RillConfig,
    config_text: &str,
    root: &Path,
    brokers: &str,
) -> anyhow::Result<rill_agent::config::Config> {
    let data_dir = root.join("agent");
    let config_path = args.config.as_deref().unwrap_or(Path::new("(no config)"));
    let mut agent =
        rill_agent::config::Config::parse_section(config_path, config_text, brokers, &data_dir)?;
    let metrics_configured = config
        .agent
        .as_ref()
        .and_then(|agent| agent.get("metrics"))
        .and_then(|metrics| metrics.get("interval_ms"))
        .is_some();
    if !metrics_configured {
        agent.metrics.interval = Some(Duration::from_millis(METRICS_INTERVAL_MS));
    }

    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let absolute = |glob: &str| -> String {
        if Path::new(glob).is_absolute() {
            glob.to_string()
        } else {
            cwd.join(glob.trim_start_matches("./"))
                .to_string_lossy()
                .into_owned()
        }
    };
    let mut files = Vec::new();
    if args.tail.is_empty() && agent.files.is_empty() {
        files.push(files_section(
            DEFAULT_GLOBS.iter().map(|g| g.to_string()).collect(),
            "end",
        ));
    }
    if !args.tail.is_empty() {
        files.push(files_section(
            args.tail.iter().map(|g| absolute(g)).collect(),
            "beginning",
        ));
    }
    if args.demo {
        let demo_glob = root.join("demo").join("*.log");
        files.push(files_section(
            vec![demo_glob.to_string_lossy().into_owned()],
            "beginning",
        ));
    }
    // The extra rules go through the agent's parser too, so they are checked like a file's.
    let mut table = toml::Table::new();
    table.insert("brokers".into(), brokers.into());
    table.insert(
        "data_dir".into(),
        data_dir.to_string_lossy().as_ref().into(),
    );
    table.insert("files".into(), toml::Value::Array(files));
    let text = toml::to_string(&table).context("cannot write the agent's file rules")?;
    let extra = rill_agent::config::Config::parse(Path::new("(rill up --tail)"), &text)
        .context("invalid --tail glob")?;
    agent.files.extend(extra.files);
    Ok(agent)
}

fn files_section(include: Vec<String>, read_from: &str) -> toml::Value {
    let mut section = toml::Table::new();
    section.insert(
        "include".into(),
        toml::Value::Array(include.into_iter().map(toml::Value::from).collect()),
    );
    section.insert("read_from".into(), read_from.into());
    section.into()
}
