//! The data sources: each runs on its own thread from tokio's blocking pool (librdkafka's
//! calls block) and sends [`DataEvent`]s to the event loop, which never waits on them.
//!
//! None of them joins a consumer group: the readers `assign` partitions themselves and never
//! commit; the pollers only ask (Metadata, ListOffsets, ListGroups/DescribeGroups,
//! OffsetFetch, DescribeConfigs). Each keeps going when the broker goes away, says so, and
//! carries on when it is back (librdkafka reconnects on its own).

mod lag;
mod metrics;
mod reader;
mod search;
mod tail;
mod topics;

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::action::{DataEvent, SourceKind, SourceState};
use super::StartFrom;
use crate::client::BrokerArgs;

/// How often the Lag and Topics views refresh.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

thread_local! {
    /// Set on the sources' threads: a panic there is reported in the status bar by its
    /// supervisor, so the panic hook must not tear the terminal down for it.
    static ON_SOURCE_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread runs a data source.
pub fn on_source_thread() -> bool {
    ON_SOURCE_THREAD.with(Cell::get)
}

/// What every source gets: where the broker is, where to send, and when to stop.
#[derive(Clone)]
pub struct Ctx {
    pub args: BrokerArgs,
    tx: mpsc::Sender<DataEvent>,
    stop: Arc<AtomicBool>,
}

impl Ctx {
    pub fn new(args: BrokerArgs, tx: mpsc::Sender<DataEvent>, stop: Arc<AtomicBool>) -> Ctx {
        Ctx { args, tx, stop }
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.tx.is_closed()
    }

    /// Sends an event; false once the dashboard is gone. Blocks while the event loop is
    /// behind (bounded channel): the backlog stays in Kafka, not in memory.
    pub fn send(&self, ev: DataEvent) -> bool {
        !self.stopped() && self.tx.blocking_send(ev).is_ok()
    }

    /// Sleeps up to `d`, waking early to stop.
    pub fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.stopped() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }

    /// A client config for readers: only ever `assign`ed, never committing.
    pub fn reader_config(&self) -> rdkafka::ClientConfig {
        let mut c = self.args.client_config();
        c.set("group.id", "rill-dash")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "100")
            // Bounds what librdkafka prefetches per partition while the dashboard is busy
            // (its defaults allow 64 MiB and 100,000 records per partition).
            .set("queued.max.messages.kbytes", "4096")
            .set("queued.min.messages", "20000")
            // Past those bounds librdkafka pauses a partition's fetching for this long (1 s
            // by default, which capped the Tail near 30,000 records/s): resume quickly.
            .set("fetch.queue.backoff.ms", "10");
        c
    }
}

/// Reports a source's state when it changed (not on every poll).
pub struct Reporter {
    kind: SourceKind,
    last: Option<SourceState>,
}

impl Reporter {
    pub fn new(kind: SourceKind) -> Reporter {
        Reporter { kind, last: None }
    }

    pub fn report(&mut self, ctx: &Ctx, state: SourceState) {
        if self.last.as_ref() != Some(&state) {
            self.last = Some(state.clone());
            ctx.send(DataEvent::Source(self.kind, state));
        }
    }

    pub fn ok(&mut self, ctx: &Ctx, what: impl Into<String>) {
        self.report(ctx, SourceState::Ok(what.into()));
    }

    pub fn failing(&mut self, ctx: &Ctx, why: impl std::fmt::Display) {
        self.report(ctx, SourceState::Failing(short_error(&why.to_string())));
    }
}

/// librdkafka's errors are long; the status bar has one line.
fn short_error(e: &str) -> String {
    let e = e.trim();
    if e.contains("BrokerTransportFailure")
        || e.contains("AllBrokersDown")
        || e.contains("Connection refused")
    {
        return "broker unreachable".into();
    }
    if e.contains("OperationTimedOut") || e.contains("timed out") {
        return "broker does not answer (timed out)".into();
    }
    e.lines().next().unwrap_or(e).chars().take(120).collect()
}

/// Runs `body` on the blocking pool as source `kind`; a panic in it is reported as that
/// source's failure instead of ending the dashboard.
fn spawn(ctx: &Ctx, kind: SourceKind, body: impl FnOnce(Ctx) + Send + 'static) {
    let c = ctx.clone();
    let handle = tokio::task::spawn_blocking(move || {
        ON_SOURCE_THREAD.with(|f| f.set(true));
        body(c)
    });
    let ctx = ctx.clone();
    tokio::spawn(async move {
        if let Err(e) = handle.await {
            if e.is_panic() {
                let payload = e.into_panic();
                let msg = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                let _ = ctx
                    .tx
                    .send(DataEvent::Source(
                        kind,
                        SourceState::Failing(format!("crashed: {msg}")),
                    ))
                    .await;
            }
        }
    });
}

/// Starts the tail reader, the metrics reader and the lag and topics pollers.
pub fn start(ctx: &Ctx, topic: &str, metrics_topic: &str, from: StartFrom) {
    let t = topic.to_string();
    spawn(ctx, SourceKind::Tail, move |c| tail::run(&c, &t, from));
    let m = metrics_topic.to_string();
    spawn(ctx, SourceKind::Metrics, move |c| metrics::run(&c, &m));
    spawn(ctx, SourceKind::Lag, |c| lag::run(&c));
    spawn(ctx, SourceKind::Topics, |c| topics::run(&c));
}

/// The running searches, by id, so a new query (or quitting) stops the old one.
#[derive(Default)]
pub struct Searches {
    running: HashMap<u64, Arc<AtomicBool>>,
}

impl Searches {
    pub fn start(&mut self, ctx: &Ctx, id: u64, options: crate::search::Options) {
        let cancel = Arc::new(AtomicBool::new(false));
        self.running.insert(id, cancel.clone());
        let c = ctx.clone();
        tokio::task::spawn_blocking(move || {
            ON_SOURCE_THREAD.with(|f| f.set(true));
            search::run(&c, id, options, &cancel)
        });
    }

    pub fn stop(&mut self, id: u64) {
        if let Some(c) = self.running.remove(&id) {
            c.store(true, Ordering::Relaxed);
        }
    }

    pub fn stop_all(&mut self) {
        for (_, c) in self.running.drain() {
            c.store(true, Ordering::Relaxed);
        }
    }
}
