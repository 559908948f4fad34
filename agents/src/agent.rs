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
use crate::producer::AgentProducer;
use crate::publisher::{self, PublishError, PublisherSetup};
use crate::spool::{Spool, SpoolError};
use crate::tailer::{Control, Tailer, TailerSetup};

/// How often acknowledged positions are written to disk. A crash repeats at most this
/// much of what the broker already has (duplicates), never skips anything.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// How long a stop waits for the broker to acknowledge what is in flight before it spools it.
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
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("cannot start the tailer thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Runs the agent until a [`Signal::Stop`] arrives (or the signal channel closes).
///
/// It touches no process-wide state (no signal handlers, no log subscriber, no stdout), so
/// it can run inside another program's runtime; the caller turns its signals into
/// [`Signal`]s and may call [`raise_open_file_limit`] first. `config_path` is the file a
/// reload re-reads; `None` when the config did not come from a file (reloads are then
/// refused with a log line).
pub async fn run(
    config_path: Option<PathBuf>,
    config: Config,
    mut signals: mpsc::Receiver<Signal>,
) -> Result<(), AgentError> {
    let (store, existed) = CheckpointStore::open(&config.data_dir)?;
    let store = Arc::new(store);
    let (spool, cut) = Spool::open(&config.data_dir.join("spool"), config.spool_max_bytes)?;
    let stats = Arc::new(AgentStats::default());
    if cut > 0 {
        stats.error();
    }
    let delivery = Arc::new(publisher::context(&store, &stats));
    let producer = Arc::new(AgentProducer::create(
        &config.brokers,
        &config.kafka,
        Arc::clone(&delivery),
    )?);
    let host: Arc<str> = Arc::from(config.host.as_str());
    tracing::info!(brokers = %config.brokers, producer = %producer.name(), host = %config.host, data_dir = %config.data_dir.display(), first_start = !existed, spool_bytes = spool.bytes(), "rill-agent starting");

    let (line_tx, line_rx) = std::sync::mpsc::sync_channel(LINE_CHANNEL_BATCHES);
    let (control_tx, control_rx) = std::sync::mpsc::channel();
    let (recycle_tx, recycle_rx) = std::sync::mpsc::sync_channel(1);
    let tailer = Tailer::new(TailerSetup {
        rules: config.files.clone(),
        store: Arc::clone(&store),
        first_start: !existed,
        stats: Arc::clone(&stats),
        out: line_tx,
        recycled: recycle_rx,
        control: control_rx,
        control_tx: control_tx.clone(),
    });
    let publisher = publisher::start(PublisherSetup {
        producer: Arc::clone(&producer),
        delivery,
        host,
        lines: line_rx,
        recycle: recycle_tx,
        spool,
        store: Arc::clone(&store),
        stats: Arc::clone(&stats),
        stop_timeout: STOP_TIMEOUT,
    })?;
    let tailer_thread = std::thread::Builder::new()
        .name("rill-tailer".into())
        .spawn(move || tailer.run())
        .map_err(AgentError::Thread)?;

    let (metrics_tx, metrics_rx) = watch::channel(config.metrics.clone());
    let metrics_task = tokio::spawn(metrics::publish_metrics(
        Arc::clone(&producer),
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
            Signal::Reload => match &config_path {
                Some(path) => reload(path, &mut running, &control_tx, &metrics_tx),
                None => tracing::info!(
                    "reload requested, but the config did not come from a file: nothing to reload"
                ),
            },
        }
    }

    tracing::info!("stopping: waiting for in-flight lines to be acknowledged or spooled");
    // The tailer may be gone already (publisher stopped); then there is nothing to tell.
    let _ = control_tx.send(Control::Shutdown);
    metrics_task.abort();
    // The tailer ends on the shutdown; then the publisher sees its channel close, makes
    // what is in flight safe (acknowledged, or spooled after STOP_TIMEOUT) and ends.
    let joined = tokio::task::spawn_blocking(move || {
        if tailer_thread.join().is_err() {
            tracing::error!("tailer thread panicked");
        }
        publisher.join();
    })
    .await;
    if let Err(e) = joined {
        tracing::error!(error = %e, "stopping the agent's threads failed");
    }
    saver_task.abort();
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
        || new.spool_max_bytes != running.spool_max_bytes
        || new.kafka != running.kafka
    {
        tracing::warn!("brokers, host, data_dir, spool_max_bytes and [kafka] changes take effect at the next restart");
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
/// soft limit of 1024: raise it to the hard limit. Process-wide, so it is the caller's
/// call (the `rill-agent` binary makes it), not [`run`]'s.
pub fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
    }
}
