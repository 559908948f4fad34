//! `rill broker`: load the config, bind, open the data directory, serve until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use rill::broker::{server, Broker};
use rill::config::{BrokerConfig, RillConfig};

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  rill broker                                # 127.0.0.1:9092, data in your data directory\n  rill broker --listen 0.0.0.0:9092 --config /etc/rill/rill.toml\n  kcat -b 127.0.0.1:9092 -L                  # any Kafka client can talk to it"
)]
pub struct BrokerArgs {
    /// Address to listen on [default: 127.0.0.1:9092, or broker.listen from --config]. Loopback
    /// keeps other hosts out; use 0.0.0.0:9092 (and broker.advertised_host) to serve a fleet.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Where topics and metadata live [default: <your data dir>/rill/broker, e.g.
    /// ~/.local/share/rill/broker, or broker.data_dir from --config].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A TOML config file (see config/rill.toml for every key, documented).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

pub fn run(args: BrokerArgs) -> anyhow::Result<()> {
    let mut config: BrokerConfig = match &args.config {
        Some(path) => RillConfig::load(path)?.broker,
        None => BrokerConfig::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = Some(dir);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rill-broker")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: BrokerConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
                "{} is already in use: is another rill broker (or Kafka) running there? \
                 Pick another address with --listen",
                config.listen
            ),
            _ => anyhow::anyhow!("cannot listen on {}: {e}", config.listen),
        })?;
    let bound = listener
        .local_addr()
        .context("cannot read the bound address")?;
    raise_file_limit(config.max_connections);
    if !bound.ip().is_loopback() {
        tracing::warn!("listening on {bound}, reachable from other hosts, without authentication");
    }
    let broker = tokio::task::spawn_blocking(move || Broker::open(config, bound))
        .await
        .context("opening the data directory panicked")??;
    tracing::info!(
        "listening on {bound}, data in {}",
        broker.data_dir().display()
    );
    server::serve(broker, listener, shutdown_signal()).await;
    Ok(())
}

/// Each connection and each open segment holds a file descriptor; the usual soft limit of 1024
/// would refuse clients long before `max_connections`, so raise it to the hard limit, as
/// Kafka's packaging does.
fn raise_file_limit(max_connections: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if (limit as usize) < max_connections + 256 => tracing::warn!(
            "the open-file limit is {limit}: fewer than broker.max_connections ({max_connections}) \
             clients can connect; raise it (ulimit -n) or lower max_connections"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM ({e}); only Ctrl-C stops the broker");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
