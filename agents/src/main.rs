//! rill-agent: the command line. Parses arguments, loads the config, and runs the agent
//! (or only checks the config).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use rill_agent::agent::{self, Signal};
use rill_agent::config::{Config, ReadFrom};
use rill_agent::paths;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// mimalloc, with librdkafka's C allocations routed to it as well (`override`): the
/// producer allocates each message on the sending thread and frees it on the delivery
/// thread, a pattern on which glibc's malloc spent a third of the agent's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tails log files and samples host metrics into Kafka topics (rill's per-host agent).
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Run with this config file.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "check_config",
        conflicts_with = "check_config"
    )]
    config: Option<PathBuf>,
    /// Validate this config file, print what would be tailed, and exit.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match (cli.check_config, cli.config) {
        (Some(path), _) => check_config(&path),
        (None, Some(path)) => run(path),
        (None, None) => Err(anyhow::anyhow!(
            "--config FILE or --check-config FILE is required"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rill-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    println!("{}: ok", path.display());
    println!("brokers:  {}", config.brokers);
    println!("host:     {}", config.host);
    println!("data_dir: {}", config.data_dir.display());
    println!("spool:    at most {} bytes", config.spool_max_bytes);
    if !config.kafka.is_empty() {
        // Keys only: values may be secrets (sasl.password).
        let keys: Vec<&str> = config.kafka.iter().map(|(k, _)| k.as_str()).collect();
        println!("kafka:    {}", keys.join(", "));
    }
    let matched = paths::scan(&config.files);
    for (i, rule) in config.files.iter().enumerate() {
        let read_from = match rule.read_from {
            ReadFrom::Beginning => "beginning",
            ReadFrom::End => "end",
        };
        println!(
            "files[{i}]: topic {}, read_from {read_from}, max_line_bytes {}{}",
            rule.topic,
            rule.max_line_bytes,
            rule.multiline
                .as_ref()
                .map(|m| format!(", multiline start /{}/", m.start_pattern.as_str()))
                .unwrap_or_default()
        );
        println!("  include: {}", rule.include.join(", "));
        let files: Vec<_> = matched.iter().filter(|m| m.rule == i).collect();
        println!("  would tail {} file(s) now:", files.len());
        for m in files {
            println!("    {}", m.path.display());
        }
    }
    match &config.metrics.interval {
        Some(every) => println!(
            "metrics: every {} ms to topic {}",
            every.as_millis(),
            config.metrics.topic
        ),
        None => println!("metrics: off"),
    }
    Ok(())
}

/// A spool write past a file size limit (`ulimit -f`) must be an error the agent handles
/// (it holds the records and retries), not SIGXFSZ's default of killing the process.
fn ignore_file_size_signal() {
    // SAFETY: setting a signal's disposition to "ignore" installs no handler code.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

fn run(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&path)?;
    agent::raise_open_file_limit();
    ignore_file_size_signal();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // The agent must stay light: the tailer has its own thread; two workers carry the
        // publisher, acknowledgements and metrics.
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let (tx, rx) = mpsc::channel(4);
        let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        tokio::spawn(async move {
            loop {
                let sig = tokio::select! {
                    _ = hup.recv() => Signal::Reload,
                    _ = term.recv() => Signal::Stop,
                    _ = int.recv() => Signal::Stop,
                };
                if tx.send(sig).await.is_err() || sig == Signal::Stop {
                    return;
                }
            }
        });
        agent::run(Some(path), config, rx)
            .await
            .context("agent failed")
    })
}
