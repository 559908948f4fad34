//! `rill broker`: load the config, bind, open the data directory, serve until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use rill::broker::{server, Broker};
use rill::config::{BrokerConfig, RillConfig, SaslConfig, TlsConfig};

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  rill broker                                # 127.0.0.1:9092, data in your data directory\n  rill broker --listen 0.0.0.0:9092 --config /etc/rill/rill.toml\n  rill broker --tls-cert broker.pem --tls-key broker.key --users-file users.toml   # SASL_SSL\n  kcat -b 127.0.0.1:9092 -L                  # any Kafka client can talk to it"
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
    /// Serve TLS with this PEM certificate chain (broker.tls.cert_file); needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key (broker.tls.key_file).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require SASL (SCRAM-SHA-256, PLAIN) against this users file (broker.sasl.users_file);
    /// create it with `rill users add`.
    #[arg(long, value_name = "FILE")]
    users_file: Option<PathBuf>,
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
    if let (Some(cert_file), Some(key_file)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(TlsConfig {
            cert_file,
            key_file,
        });
    }
    if let Some(users_file) = args.users_file {
        match &mut config.sasl {
            Some(sasl) => sasl.users_file = users_file,
            None => config.sasl = Some(SaslConfig::new(users_file)),
        }
    }
    config
        .validate()
        .map_err(|(key, message)| anyhow::anyhow!("{key}: {message}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rill-broker")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

/// `what_next`: what the error says to do when the address is taken.
async fn bind(addr: SocketAddr, what_next: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                anyhow::anyhow!("{addr} is already in use: {what_next}")
            }
            _ => anyhow::anyhow!("cannot listen on {addr}: {e}"),
        })
}

/// A broker with its data directory open and its listeners bound, not serving yet.
pub struct Started {
    pub broker: Arc<Broker>,
    /// The main listener's address.
    pub bound: SocketAddr,
    main: tokio::net::TcpListener,
    plaintext: Option<tokio::net::TcpListener>,
}

impl Started {
    /// Serves until `shutdown` completes, then flushes everything.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        server::serve_listeners(self.broker, self.main, self.plaintext, shutdown).await;
    }
}

/// Binds the listeners, opens the data directory and logs what it serves (`rill broker` and
/// `rill up` alike). `in_use`: what to tell the user when the main address is taken.
pub async fn start(config: BrokerConfig, in_use: &str) -> anyhow::Result<Started> {
    let main = bind(config.listen, in_use).await?;
    let plaintext = match config.listen_plaintext {
        Some(addr) => Some(bind(addr, "pick another address for broker.listen_plaintext").await?),
        None => None,
    };
    let bound = main.local_addr().context("cannot read the bound address")?;
    raise_file_limit(config.max_connections);
    let broker = tokio::task::spawn_blocking(move || Broker::open(config, bound))
        .await
        .context("opening the data directory panicked")??;
    let main_listener = broker.listener(bound, true);
    let security = match &broker.auth {
        Some(auth) => format!(
            "{}, SASL {} against {}",
            main_listener.protocol,
            auth.mechanisms()
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>()
                .join("/"),
            auth.users_file().display()
        ),
        None => format!("{}, no authentication", main_listener.protocol),
    };
    let mut listeners = vec![main_listener];
    if let Some(plaintext) = &plaintext {
        let addr = plaintext
            .local_addr()
            .context("cannot read the bound address")?;
        let extra = broker.listener(addr, false);
        tracing::info!("also listening on {addr} ({})", extra.protocol);
        listeners.push(extra);
    }
    for listener in &listeners {
        if let Some(warning) = listener.exposure_warning() {
            tracing::warn!("{warning}");
        }
    }
    // Test harnesses and scripts wait for "listening on ADDR,", so it comes last (everything
    // above is in the log by then); keep that prefix.
    tracing::info!(
        "listening on {bound}, data in {} ({security})",
        broker.data_dir().display()
    );
    Ok(Started {
        broker,
        bound,
        main,
        plaintext,
    })
}

async fn serve(config: BrokerConfig) -> anyhow::Result<()> {
    let started = start(
        config,
        "is another rill broker (or Kafka) running there? Pick another address (--listen)",
    )
    .await?;
    started.serve(shutdown_signal()).await;
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
pub async fn shutdown_signal() {
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
