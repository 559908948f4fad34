//! Wiring: the tailer thread, the publisher and metrics tasks, the checkpoint saver, and
//! the reaction to reload and stop signals.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::checkpoint::{CheckpointError, CheckpointStore};
use crate::config::{Config, ConfigError};
use crate::health::AgentStats;
use crate::metrics;
use crate::publisher::{self, PublishError};
use crate::tailer::{Control, Tailer, TailerSetup};

/// How often acknowledged positions are written to disk. A crash repeats at most this
/// much of what the broker already has (duplicates), never skips anything.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// How long a stop waits for the broker to acknowledge what is in flight.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Batches of lines buffered between the tailer and the publisher.
const LINE_CHANNEL_BATCHES: usize = 2;

/// What the process was told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Re-read the config file (SIGHUP).
    Reload,
    /// Flush and exit (SIGTERM, SIGINT).
    Stop,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("cannot start the tailer thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Runs the agent until a [`Signal::Stop`] arrives (or the signal channel closes).
pub async fn run(
    config_path: PathBuf,
    config: Config,
    mut signals: mpsc::Receiver<Signal>,
) -> Result<(), AgentError> {
    raise_open_file_limit();
    let (store, existed) = CheckpointStore::open(&config.data_dir)?;
    let store = Arc::new(store);
    let producer = publisher::create_producer(&config.brokers)?;
    let stats = Arc::new(AgentStats::default());
    let host: Arc<str> = Arc::from(config.host.as_str());
    tracing::info!(brokers = %config.brokers, host = %config.host, data_dir = %config.data_dir.display(), first_start = !existed, "rill-agent starting");

    let (line_tx, line_rx) = mpsc::channel(LINE_CHANNEL_BATCHES);
    let (control_tx, control_rx) = std::sync::mpsc::channel();
    let tailer = Tailer::new(TailerSetup {
        rules: config.files.clone(),
        store: Arc::clone(&store),
        first_start: !existed,
        stats: Arc::clone(&stats),
        out: line_tx,
        control: control_rx,
        control_tx: control_tx.clone(),
    });
    let tailer_thread = std::thread::Builder::new()
        .name("rill-tailer".into())
        .spawn(move || tailer.run())
        .map_err(AgentError::Thread)?;

    let mut publisher_task = tokio::spawn(publisher::publish_logs(
        producer.clone(),
        host,
        line_rx,
        Arc::clone(&store),
        Arc::clone(&stats),
    ));
    let (metrics_tx, metrics_rx) = watch::channel(config.metrics.clone());
    let metrics_task = tokio::spawn(metrics::publish_metrics(
        producer.clone(),
        config.host.clone(),
        metrics_rx,
        Arc::clone(&stats),
    ));
    let saver_store = Arc::clone(&store);
    let saver_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
        loop {
            tick.tick().await;
            save(&saver_store).await;
        }
    });

    let mut running = config;
    while let Some(signal) = signals.recv().await {
        match signal {
            Signal::Stop => break,
            Signal::Reload => reload(&config_path, &mut running, &control_tx, &metrics_tx),
        }
    }

    tracing::info!("stopping: waiting for in-flight lines to be acknowledged");
    // The tailer may be gone already (publisher stopped); then there is nothing to tell.
    let _ = control_tx.send(Control::Shutdown);
    match tokio::time::timeout(STOP_TIMEOUT, &mut publisher_task).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "publisher task failed"),
        Err(_) => {
            tracing::warn!("broker did not acknowledge everything in time; unacknowledged lines will be read again at the next start");
            publisher_task.abort();
        }
    }
    metrics_task.abort();
    saver_task.abort();
    publisher::flush(&producer, Duration::from_secs(1));
    // The tailer ends once it sees the shutdown or its channel closes (publisher gone).
    if tokio::task::spawn_blocking(move || tailer_thread.join())
        .await
        .is_err()
    {
        tracing::error!("tailer thread panicked");
    }
    save(&store).await;
    tracing::info!("stopped");
    Ok(())
}

fn reload(
    path: &Path,
    running: &mut Config,
    control: &std::sync::mpsc::Sender<Control>,
    metrics: &watch::Sender<crate::config::MetricsConfig>,
) {
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e @ (ConfigError::Read { .. } | ConfigError::Invalid(_))) => {
            tracing::error!(error = %e, "reload failed; keeping the running config");
            return;
        }
    };
    if new.brokers != running.brokers
        || new.host != running.host
        || new.data_dir != running.data_dir
    {
        tracing::warn!("brokers, host and data_dir changes take effect at the next restart");
    }
    if control.send(Control::Reload(new.files.clone())).is_err() {
        tracing::error!("tailer is not running; reload ignored");
    }
    metrics.send_replace(new.metrics.clone());
    running.files = new.files;
    running.metrics = new.metrics;
    tracing::info!(path = %path.display(), "config reloaded");
}

async fn save(store: &Arc<CheckpointStore>) {
    let store = Arc::clone(store);
    match tokio::task::spawn_blocking(move || store.save()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "cannot save checkpoints"),
        Err(e) => tracing::error!(error = %e, "checkpoint save task failed"),
    }
}

/// Tailing keeps one descriptor open per file, and thousands of files exceed the usual
/// soft limit of 1024: raise it to the hard limit.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
    }
}
