//! Publishing: turns lines into records per the contract, hands them to librdkafka, spools
//! them while the broker is away, and advances checkpoints when they are safe.
//!
//! Two threads. The *sender* takes batches of lines from the tailer, encodes each into
//! reused buffers and enqueues it with a plain sequence number as its delivery opaque (no
//! allocation, no future per line). The *poller* serves librdkafka's delivery reports: an
//! acknowledged line is marked safe in the [`AckWindow`], which moves checkpoints forward
//! in send order.
//!
//! When the broker is away, librdkafka gives records back after `message.timeout.ms`; they
//! and every newer line then go to the [`Spool`] (fsynced before they count as safe), in
//! send order. The sender drains the spool oldest-first while it keeps appending, and
//! returns to sending directly once the spool is empty, so the order per file holds
//! throughout. When the spool is full, the sender stops taking lines and the tailer waits
//! (the lines stay in their files).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::error::KafkaError;

use crate::ack_window::AckWindow;
use crate::checkpoint::CheckpointStore;
use crate::health::AgentStats;
use crate::level;
use crate::producer::{AgentProducer, Record, SendError};
use crate::record::{self, Level, LogRecord, HEADER_HOST, HEADER_LEVEL, HEADER_SOURCE};
use crate::spool::{Spool, SpoolPos, SpoolRecord};
use crate::tailer::Outgoing;

/// Largest record the agent produces: librdkafka's default `message.max.bytes`, which fits
/// the default 1 MiB limit of Kafka brokers and of rill's. Longer lines are cut to fit.
pub const MAX_RECORD_BYTES: usize = 1_000_000;
/// Room kept in a record for everything but the line: key, headers, JSON framing, batch
/// overhead.
const RECORD_OVERHEAD: usize = 1024;
/// How long librdkafka tries to deliver a record before giving it back: then it goes to the
/// spool. Short enough that an outage moves to the spool quickly, long enough that a
/// broker pausing for a moment (a restart, a long fsync) does not.
pub(crate) const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Records read from the spool and waiting for acknowledgement, at most.
const DRAIN_WINDOW: usize = 16_384;
/// Pause between drain attempts while the broker stays away.
const DRAIN_RETRY: Duration = Duration::from_secs(1);
/// While the spool cannot be delivered, the reason is logged this often (not at every
/// attempt).
const DRAIN_WARN_EVERY: Duration = Duration::from_secs(30);
/// How long the sender waits when librdkafka's queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(1);
/// The sender's wake-up while idle (nothing spooled, nothing failed): it notices failed
/// deliveries at least this often.
const IDLE_WAKE: Duration = Duration::from_secs(1);
/// The sender's wake-up while spooling or draining.
const BUSY_WAKE: Duration = Duration::from_millis(20);
/// The poller's wake-up: how quickly it notices a stop. Delivery reports wake it at once.
const POLL_WAKE: Duration = Duration::from_millis(500);
/// Spool writes that failed (disk full) are retried this often; tailing waits meanwhile.
const SPOOL_RETRY: Duration = Duration::from_secs(1);

/// Delivery opaque of a metrics sample (not part of the window).
const OPAQUE_METRICS: usize = usize::MAX;
/// Delivery opaques with this bit are records drained from the spool.
const OPAQUE_DRAIN: usize = 1 << (usize::BITS - 2);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot create Kafka producer: {0}")]
    Create(#[source] KafkaError),
    #[error(transparent)]
    Wire(#[from] crate::kafka::producer::ProducerError),
    #[error("RILL_AGENT_PRODUCER=wire: rill's producer does not implement the [kafka] setting {0:?} (unset RILL_AGENT_PRODUCER to use librdkafka)")]
    Unsupported(String),
    #[error("cannot start the publisher thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
}

/// Producer settings the agent relies on for its no-loss promise; `[kafka]` may not
/// override them.
pub const RESERVED_KAFKA_KEYS: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "message.max.bytes",
];

/// State shared by the sender and the poller.
#[derive(Default)]
struct Shared {
    window: AckWindow,
    /// Lines whose delivery failed, with their sequence numbers: bound for the spool.
    failed: Vec<(u64, SpoolRecord)>,
    /// Lines enqueued directly whose delivery report has not come.
    direct_in_flight: u64,
    drain: DrainWindow,
}

/// Spool records sent and waiting for acknowledgement, in read order.
#[derive(Default)]
struct DrainWindow {
    base: u64,
    /// Each record's position and its delivery report: `None` until it comes, then
    /// whether it was acknowledged.
    entries: std::collections::VecDeque<(SpoolPos, Option<bool>)>,
    failed: bool,
    /// Why the first of them that failed did (one string per window, not one per record:
    /// a window of 16,384 records failing together would copy it 16,384 times).
    error: Option<String>,
}

impl DrainWindow {
    fn push(&mut self, pos: SpoolPos) -> u64 {
        self.entries.push_back((pos, None));
        self.base + self.entries.len() as u64 - 1
    }

    fn report(&mut self, seq: u64, acked: bool) {
        if let Some(i) = seq.checked_sub(self.base) {
            if let Some(e) = self.entries.get_mut(i as usize) {
                e.1 = Some(acked);
            }
        }
        self.failed |= !acked;
    }

    /// Acknowledged records at the front, in order.
    fn pop_acked(&mut self) -> Option<SpoolPos> {
        if self.entries.front().is_some_and(|e| e.1 == Some(true)) {
            self.base += 1;
            return self.entries.pop_front().map(|e| e.0);
        }
        None
    }

    /// Whether every record sent has its delivery report.
    fn all_reported(&self) -> bool {
        self.entries.iter().all(|e| e.1.is_some())
    }
}

/// Where deliveries are reported (by either producer, from its threads): an acknowledged
/// line is marked safe in the window; a failed one is bound for the spool.
pub struct DeliveryContext {
    shared: Arc<Mutex<Shared>>,
    /// Set by a failed delivery (other than our own purge): the sender must stop sending
    /// and take back what the producer still queues, so that nothing queued after the
    /// failed record can be delivered before it.
    failing: Arc<AtomicBool>,
    store: Arc<CheckpointStore>,
    stats: Arc<AgentStats>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // The data stays consistent if a holder panicked: flags and counters only.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl DeliveryContext {
    /// These records were acknowledged.
    pub fn report_acked(&self, opaques: &[usize]) {
        let mut shared = lock(&self.shared);
        for &opaque in opaques {
            if opaque == OPAQUE_METRICS {
                continue;
            }
            if opaque & OPAQUE_DRAIN != 0 {
                shared.drain.report((opaque & !OPAQUE_DRAIN) as u64, true);
                continue;
            }
            shared.direct_in_flight = shared.direct_in_flight.saturating_sub(1);
            shared.window.complete(opaque as u64, &self.store);
        }
    }

    /// This record failed (or was taken back, `purged`): `record` is it, whole.
    pub fn report_failed(&self, opaque: usize, error: &str, purged: bool, record: SpoolRecord) {
        if opaque == OPAQUE_METRICS {
            if !purged {
                tracing::warn!(error, "metrics sample not delivered");
                self.stats.error();
            }
            return;
        }
        if !purged {
            self.failing.store(true, Ordering::Release);
        }
        let mut shared = lock(&self.shared);
        if opaque & OPAQUE_DRAIN != 0 {
            shared.drain.report((opaque & !OPAQUE_DRAIN) as u64, false);
            shared.drain.error.get_or_insert_with(|| error.to_owned());
            return;
        }
        shared.direct_in_flight = shared.direct_in_flight.saturating_sub(1);
        if shared.failed.is_empty() {
            tracing::warn!(error, "delivery failed; spooling until the broker is back");
        }
        shared.failed.push((opaque as u64, record));
    }
}

/// Everything the sender thread needs.
pub struct PublisherSetup {
    pub producer: Arc<AgentProducer>,
    /// Where `producer` reports deliveries.
    pub delivery: Arc<DeliveryContext>,
    pub host: Arc<str>,
    pub lines: Receiver<Vec<Outgoing>>,
    /// Where emptied batches go back to the tailer, for reuse.
    pub recycle: SyncSender<Vec<Outgoing>>,
    pub spool: Spool,
    pub store: Arc<CheckpointStore>,
    pub stats: Arc<AgentStats>,
    /// How long a stop waits for the broker before spooling what is in flight.
    pub stop_timeout: Duration,
}

/// The running publisher: its two threads.
pub struct Publisher {
    producer: Arc<AgentProducer>,
    sender: std::thread::JoinHandle<()>,
    poller: Option<std::thread::JoinHandle<()>>,
    stop_polling: Arc<AtomicBool>,
}

/// Creates the producer context and the shared state for [`start`].
pub fn context(store: &Arc<CheckpointStore>, stats: &Arc<AgentStats>) -> DeliveryContext {
    DeliveryContext {
        shared: Arc::new(Mutex::new(Shared::default())),
        failing: Arc::new(AtomicBool::new(false)),
        store: Arc::clone(store),
        stats: Arc::clone(stats),
    }
}

/// Starts the sender and poller threads. The sender returns when the tailer's channel
/// closes and what was sent is safe (acknowledged or spooled), or the stop timeout passed.
pub fn start(setup: PublisherSetup) -> Result<Publisher, PublishError> {
    let stop_polling = Arc::new(AtomicBool::new(false));
    let producer = Arc::clone(&setup.producer);
    let poller = if producer.needs_polling() {
        let producer = Arc::clone(&setup.producer);
        let stop = Arc::clone(&stop_polling);
        let poller = std::thread::Builder::new()
            .name("rill-poller".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    producer.poll(POLL_WAKE);
                }
            })
            .map_err(PublishError::Thread)?;
        Some(poller)
    } else {
        None
    };
    let sender = std::thread::Builder::new()
        .name("rill-sender".into())
        .spawn(move || Sender::new(setup).run())
        .map_err(PublishError::Thread)?;
    Ok(Publisher {
        producer,
        sender,
        poller,
        stop_polling,
    })
}

impl Publisher {
    /// Waits for the sender to finish (after the tailer stopped), then stops the poller
    /// and the producer's threads.
    pub fn join(self) {
        if self.sender.join().is_err() {
            tracing::error!("publisher thread panicked");
        }
        self.stop_polling.store(true, Ordering::Relaxed);
        if self.poller.is_some_and(|p| p.join().is_err()) {
            tracing::error!("delivery poller thread panicked");
        }
        self.producer.close();
    }
}

/// Sends a metrics sample; its delivery is not retried (the next sample supersedes it).
pub fn send_metric(producer: &AgentProducer, record: &Record<'_>) -> Result<(), SendError> {
    producer.send(record, OPAQUE_METRICS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Lines go straight to the producer.
    Direct,
    /// Lines go to the spool; the spool drains to the producer.
    Spooling,
}

struct Sender {
    producer: Arc<AgentProducer>,
    shared: Arc<Mutex<Shared>>,
    failing: Arc<AtomicBool>,
    host: Arc<str>,
    lines: Receiver<Vec<Outgoing>>,
    recycle: SyncSender<Vec<Outgoing>>,
    spool: Spool,
    store: Arc<CheckpointStore>,
    stats: Arc<AgentStats>,
    stop_timeout: Duration,
    mode: Mode,
    /// Sequence numbers of records appended to the spool and not yet fsynced.
    unsynced: Vec<u64>,
    /// A spool write failed (disk full): retry at this time; no lines are taken meanwhile.
    spool_retry_at: Option<Instant>,
    /// Whether the spool was full at the last look, to log the change once.
    spool_was_full: bool,
    /// Whether the broker's return is unconfirmed (at start, and after a failed drain):
    /// then one record is sent, and the rest only once it is acknowledged. A full window
    /// sent to an absent broker would time out record by record; were the broker to come
    /// back in between, a later record could be delivered before an earlier, timed-out one.
    probe: bool,
    /// No drain before this time (the broker was away at the last attempt).
    drain_after: Instant,
    /// When it was last logged that spooled records are not delivered (None once they are).
    drain_warned_at: Option<Instant>,
    enc: LogEncoder,
    /// The contract's `ts` of the last read time: lines of one read pass share it.
    ts: (SystemTime, String, i64),
    closed: bool,
}

impl Sender {
    fn new(setup: PublisherSetup) -> Sender {
        let shared = Arc::clone(&setup.delivery.shared);
        let failing = Arc::clone(&setup.delivery.failing);
        let mode = if setup.spool.is_empty() {
            Mode::Direct
        } else {
            tracing::info!(
                bytes = setup.spool.bytes(),
                "the spool holds records from before; draining them first"
            );
            Mode::Spooling
        };
        Sender {
            producer: setup.producer,
            shared,
            failing,
            host: setup.host,
            lines: setup.lines,
            recycle: setup.recycle,
            spool: setup.spool,
            store: setup.store,
            stats: setup.stats,
            stop_timeout: setup.stop_timeout,
            mode,
            unsynced: Vec::new(),
            spool_retry_at: None,
            spool_was_full: false,
            probe: true,
            drain_after: Instant::now(),
            drain_warned_at: None,
            enc: LogEncoder::default(),
            ts: (UNIX_EPOCH, record::format_ts(UNIX_EPOCH), 0),
            closed: false,
        }
    }

    fn run(mut self) {
        while !self.closed {
            self.take_back_on_failure();
            if self.mode == Mode::Direct && !lock(&self.shared).failed.is_empty() {
                self.mode = Mode::Spooling;
            }
            let accept = match self.mode {
                Mode::Direct => true,
                Mode::Spooling => self.spool_step(),
            };
            self.publish_health();
            let wait = if self.mode == Mode::Direct {
                IDLE_WAKE
            } else {
                BUSY_WAKE
            };
            if !accept {
                std::thread::sleep(wait);
                continue;
            }
            match self.lines.recv_timeout(wait) {
                Ok(mut batch) => {
                    match self.mode {
                        Mode::Direct => self.send_direct(&batch),
                        Mode::Spooling => self.send_to_spool(&batch),
                    }
                    batch.clear();
                    // Back to the tailer to fill again; if it has a spare one, this goes.
                    let _ = self.recycle.try_send(batch);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.closed = true,
            }
        }
        self.finish();
    }

    /// After a failed delivery: take back every record librdkafka still queues (they come
    /// back as failed deliveries, in order, and go to the spool with the failed one). A
    /// record queued behind a failed one must not reach the broker before it: it would if
    /// the broker came back between their timeouts.
    fn take_back_on_failure(&mut self) -> bool {
        if !self.failing.swap(false, Ordering::AcqRel) {
            return false;
        }
        self.producer.purge(false);
        if self.mode == Mode::Direct {
            self.mode = Mode::Spooling;
        }
        true
    }

    fn publish_health(&self) {
        self.stats
            .spool_bytes
            .store(self.spool.bytes(), Ordering::Relaxed);
        let in_flight = {
            let s = lock(&self.shared);
            s.window.len() as u64 + s.drain.entries.len() as u64
        };
        self.stats.in_flight.store(in_flight, Ordering::Relaxed);
    }

    /// One round of spool work: move failed records in, fsync, drain, and go back to
    /// direct sending when all is clear. Returns whether lines may be taken now.
    fn spool_step(&mut self) -> bool {
        // Records still in librdkafka may yet fail, and must enter the spool before any
        // newer line does: wait for all of them first.
        let (direct_in_flight, failed) = {
            let mut s = lock(&self.shared);
            let failed = if s.direct_in_flight == 0 {
                std::mem::take(&mut s.failed)
            } else {
                Vec::new()
            };
            (s.direct_in_flight, failed)
        };
        if !failed.is_empty() {
            let mut failed = failed;
            failed.sort_by_key(|(seq, _)| *seq);
            for (seq, rec) in &failed {
                self.spool.append(rec);
                self.unsynced.push(*seq);
            }
        }
        let spool_ok = self.sync_spool();
        self.drain();
        if !spool_ok
            && direct_in_flight == 0
            && self.spool.disk_drained()
            && lock(&self.shared).drain.entries.is_empty()
        {
            // The disk refuses the spool (full) and nothing older waits in it: send the
            // held records directly rather than wait for space. If the broker is away
            // too, they fail again and come back here.
            self.send_held();
            // Wait for them like for any direct record before taking new lines.
            return false;
        }
        let clear = direct_in_flight == 0
            && spool_ok
            && self.unsynced.is_empty()
            && self.spool.is_empty()
            && {
                let s = lock(&self.shared);
                s.failed.is_empty() && s.drain.entries.is_empty()
            };
        if clear {
            tracing::info!("spool drained; sending directly again");
            self.mode = Mode::Direct;
            return true;
        }
        let full = self.spool.is_full();
        if full != self.spool_was_full {
            self.spool_was_full = full;
            if full {
                tracing::warn!(
                    bytes = self.spool.bytes(),
                    "spool full: tailing paused until it drains (the lines wait in their files)"
                );
            } else {
                tracing::info!("spool has room again: tailing resumes");
            }
        }
        direct_in_flight == 0 && spool_ok && !full
    }

    /// Writes and fsyncs appended records, then marks them safe. False while the spool
    /// cannot be written (the records stay in memory, and tailing waits).
    fn sync_spool(&mut self) -> bool {
        if self.unsynced.is_empty() {
            return true;
        }
        if self
            .spool_retry_at
            .is_some_and(|at| Instant::now() < at && !self.closed)
        {
            return false;
        }
        match self.spool.sync() {
            Ok(()) => {
                if self.spool_retry_at.take().is_some() {
                    tracing::info!("spool writable again");
                }
                let mut s = lock(&self.shared);
                for seq in self.unsynced.drain(..) {
                    s.window.complete(seq, &self.store);
                }
                true
            }
            Err(e) => {
                if self.spool_retry_at.is_none() {
                    tracing::error!(error = %e, "cannot write the spool; tailing waits until it can (the lines are held in memory and in their files)");
                }
                self.stats.error();
                self.spool_retry_at = Some(Instant::now() + SPOOL_RETRY);
                false
            }
        }
    }

    /// Sends the records the spool could not write straight to the producer, under their
    /// own sequence numbers (so their acknowledgement makes them safe).
    fn send_held(&mut self) {
        let records = self.spool.take_pending();
        let seqs = std::mem::take(&mut self.unsynced);
        lock(&self.shared).direct_in_flight += records.len() as u64;
        for (rec, seq) in records.into_iter().zip(seqs) {
            while let Err(e) = rec.with_record(|r| self.enqueue(r, seq as usize)) {
                tracing::warn!(error = %e, "cannot enqueue a held record; retrying");
                self.stats.error();
                std::thread::sleep(SPOOL_RETRY);
            }
        }
    }

    /// Hands a record to the producer, waiting while its queue is full.
    fn enqueue(&self, record: &Record<'_>, opaque: usize) -> Result<(), SendError> {
        loop {
            match self.producer.send(record, opaque) {
                Err(SendError::QueueFull) => std::thread::sleep(QUEUE_FULL_WAIT),
                done => return done,
            }
        }
    }

    /// Says why spooled records are not delivered, at the first failed attempt and then
    /// every [`DRAIN_WARN_EVERY`]: a spool that does not shrink is never silent.
    fn warn_undelivered(&mut self, error: Option<&str>) {
        let now = Instant::now();
        if self
            .drain_warned_at
            .is_some_and(|at| now.duration_since(at) < DRAIN_WARN_EVERY)
        {
            return;
        }
        self.drain_warned_at = Some(now);
        tracing::warn!(
            error = error.unwrap_or("unknown"),
            spooled_bytes = self.spool.bytes(),
            retry_every = ?DRAIN_RETRY,
            "spooled records are not being delivered; retrying"
        );
    }

    /// Sends spooled records to the broker, oldest first, and frees acknowledged ones.
    fn drain(&mut self) {
        let failed = {
            let mut s = lock(&self.shared);
            let mut acked = Vec::new();
            while let Some(pos) = s.drain.pop_acked() {
                acked.push(pos);
            }
            drop(s);
            if !acked.is_empty() {
                self.probe = false;
                if self.drain_warned_at.take().is_some() {
                    tracing::info!("spooled records are being delivered again");
                }
            }
            for pos in acked {
                if let Err(e) = self.spool.ack(pos) {
                    tracing::error!(error = %e, "cannot free drained spool segment");
                    self.stats.error();
                }
            }
            let mut s = lock(&self.shared);
            if s.drain.failed && s.drain.all_reported() {
                // Every sent record has reported, some failed: start over from the oldest
                // unacknowledged one, after a pause.
                let done: Vec<SpoolPos> = std::iter::from_fn(|| s.drain.pop_acked()).collect();
                let error = s.drain.error.take();
                s.drain = DrainWindow {
                    base: s.drain.base,
                    ..DrainWindow::default()
                };
                drop(s);
                for pos in done {
                    let _ = self.spool.ack(pos);
                }
                self.spool.rewind();
                self.drain_after = Instant::now() + DRAIN_RETRY;
                self.probe = true;
                self.warn_undelivered(error.as_deref());
                true
            } else {
                s.drain.failed
            }
        };
        if failed || Instant::now() < self.drain_after {
            return;
        }
        loop {
            if self.take_back_on_failure() {
                return;
            }
            let sent = lock(&self.shared).drain.entries.len();
            if sent >= DRAIN_WINDOW || (self.probe && sent > 0) {
                return;
            }
            let (pos, rec) = match self.spool.read_next() {
                Ok(Some(next)) => next,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the spool; retrying");
                    self.stats.error();
                    self.spool.rewind();
                    self.drain_after = Instant::now() + DRAIN_RETRY;
                    return;
                }
            };
            let seq = lock(&self.shared).drain.push(pos);
            if let Err(e) = rec.with_record(|r| self.enqueue(r, OPAQUE_DRAIN | seq as usize)) {
                tracing::warn!(error = %e, "cannot enqueue a spooled record; retrying");
                self.stats.error();
                lock(&self.shared).drain.report(seq, false);
                return;
            }
        }
    }

    /// Sends a batch straight to the producer. Should deliveries start failing meanwhile,
    /// the rest of the batch goes to the spool's queue (after the failed ones).
    fn send_direct(&mut self, batch: &[Outgoing]) {
        let first_seq = {
            let mut s = lock(&self.shared);
            s.direct_in_flight += batch.len() as u64;
            let mut first = None;
            for out in batch {
                let seq = s.window.push(out.watch, out.line.end_offset);
                first.get_or_insert(seq);
            }
            first.unwrap_or(0)
        };
        for (i, out) in batch.iter().enumerate() {
            let seq = first_seq + i as u64;
            if self.failing.load(Ordering::Relaxed) && self.take_back_on_failure() {
                self.divert(&batch[i..], seq);
                return;
            }
            self.refresh_ts(out.read_at);
            self.enc.encode(&self.host, out, &self.ts.1);
            loop {
                let err = match self.send_encoded(out, seq) {
                    Ok(()) => break,
                    Err(e) => e,
                };
                if !matches!(err, SendError::QueueFull) {
                    tracing::warn!(error = %err, topic = %out.topic, "cannot enqueue record; retrying");
                    self.stats.error();
                }
                if self.take_back_on_failure() {
                    self.divert(&batch[i..], seq);
                    return;
                }
                std::thread::sleep(QUEUE_FULL_WAIT);
            }
        }
    }

    /// Sends the line just encoded (`self.enc`) as the contract's record.
    fn send_encoded(&self, out: &Outgoing, seq: u64) -> Result<(), SendError> {
        let headers: [(&str, &[u8]); 3] = [
            (HEADER_HOST, self.host.as_bytes()),
            (HEADER_SOURCE, out.source.as_bytes()),
            (
                HEADER_LEVEL,
                self.enc.level.map_or(&b""[..], |l| l.as_str().as_bytes()),
            ),
        ];
        let record = Record {
            topic: &out.topic,
            key: self.enc.key().as_bytes(),
            value: self.enc.value(),
            // The level header only when a level was detected.
            headers: &headers[..if self.enc.level.is_some() { 3 } else { 2 }],
            timestamp: self.ts.2,
        };
        self.producer.send(&record, seq as usize)
    }

    /// The broker is away: these lines (numbered from `first_seq`, counted in flight but
    /// not sent) join the failed ones, bound for the spool in order.
    fn divert(&mut self, lines: &[Outgoing], first_seq: u64) {
        let mut failed = Vec::with_capacity(lines.len());
        for (j, out) in lines.iter().enumerate() {
            self.refresh_ts(out.read_at);
            let rec = self.enc.spool_record(&self.host, out, &self.ts.1);
            failed.push((first_seq + j as u64, rec));
        }
        let mut s = lock(&self.shared);
        s.direct_in_flight -= lines.len() as u64;
        s.failed.extend(failed);
    }

    /// Appends a batch to the spool and fsyncs it; its lines are safe once written.
    fn send_to_spool(&mut self, batch: &[Outgoing]) {
        {
            let mut s = lock(&self.shared);
            for out in batch {
                self.unsynced
                    .push(s.window.push(out.watch, out.line.end_offset));
            }
        }
        for out in batch {
            self.refresh_ts(out.read_at);
            let rec = self.enc.spool_record(&self.host, out, &self.ts.1);
            self.spool.append(&rec);
        }
        self.sync_spool();
    }

    fn refresh_ts(&mut self, at: SystemTime) {
        if self.ts.0 != at {
            self.ts = (at, record::format_ts(at), record::unix_millis(at));
        }
    }

    /// After the tailer stopped: wait for what is in flight, spooling it if the broker
    /// does not acknowledge it in time, so that everything read is safe at exit.
    fn finish(&mut self) {
        let deadline = Instant::now() + self.stop_timeout;
        let mut purged = false;
        loop {
            let (in_flight, failed) = {
                let s = lock(&self.shared);
                (s.direct_in_flight, !s.failed.is_empty())
            };
            if failed || self.mode == Mode::Spooling {
                self.mode = Mode::Spooling;
                self.spool_step();
            }
            let s = lock(&self.shared);
            if s.direct_in_flight == 0 && s.failed.is_empty() && self.unsynced.is_empty() {
                break;
            }
            drop(s);
            if Instant::now() >= deadline {
                if purged || in_flight == 0 {
                    tracing::warn!(
                        "not everything in flight is safe; it will be read again at the next start"
                    );
                    break;
                }
                // The broker is too slow or away: take the records back from librdkafka
                // (they come back as failed deliveries) and spool them.
                tracing::info!("broker did not acknowledge in time; spooling what is in flight");
                self.producer.purge(true);
                purged = true;
                continue;
            }
            std::thread::sleep(BUSY_WAKE);
        }
        lock(&self.shared).window.report(&self.store);
        self.publish_health();
    }
}

/// Reused buffers for the `logs` record of one line: the key and the JSON value, written
/// exactly as `serde_json` writes a [`LogRecord`] (same field order, same escaping).
#[derive(Default)]
pub struct LogEncoder {
    key: String,
    value: Vec<u8>,
    level: Option<Level>,
    /// `{"ts":…,"host":…,"source":…,"line":` of the last line: lines of one read pass of
    /// one file share it, so host, source and time are escaped once per pass, not per line.
    prefix: Vec<u8>,
    prefix_of: Option<(String, String, Arc<str>)>,
}

impl LogEncoder {
    /// Encodes a line's record, cutting the line if the record would exceed
    /// [`MAX_RECORD_BYTES`].
    pub fn encode(&mut self, host: &str, out: &Outgoing, ts: &str) {
        let same = self.prefix_of.as_ref().is_some_and(|(t, h, s)| {
            Arc::ptr_eq(s, &out.source) && t.as_str() == ts && h.as_str() == host
        });
        if !same {
            self.key.clear();
            self.key.push_str(host);
            self.key.push(':');
            self.key.push_str(&out.source);
            let p = &mut self.prefix;
            p.clear();
            p.extend_from_slice(b"{\"ts\":");
            json_str(p, ts);
            p.extend_from_slice(b",\"host\":");
            json_str(p, host);
            p.extend_from_slice(b",\"source\":");
            json_str(p, &out.source);
            p.extend_from_slice(b",\"line\":");
            self.prefix_of = Some((ts.to_string(), host.to_string(), Arc::clone(&out.source)));
        }
        self.level = level::detect(&out.line.bytes);
        if !self.encode_fast(host, out) {
            self.value = build_log_value(host, out, ts.to_string(), self.level);
        }
    }

    fn encode_fast(&mut self, host: &str, out: &Outgoing) -> bool {
        let limit = MAX_RECORD_BYTES - RECORD_OVERHEAD - 2 * out.source.len() - 2 * host.len();
        // JSON escaping grows a line up to 6x: skip the work when it cannot fit anyway.
        if out.line.bytes.len() > limit {
            return false;
        }
        let v = &mut self.value;
        v.clear();
        v.extend_from_slice(&self.prefix);
        let line = &out.line.bytes;
        if plain_json(line) {
            v.push(b'"');
            v.extend_from_slice(line);
            v.push(b'"');
        } else {
            json_str(v, &String::from_utf8_lossy(line));
        }
        if let Some(l) = self.level {
            v.extend_from_slice(b",\"level\":\"");
            v.extend_from_slice(l.as_str().as_bytes());
            v.push(b'"');
        }
        if out.line.truncated {
            v.extend_from_slice(b",\"truncated\":true");
        }
        v.push(b'}');
        v.len() <= limit
    }

    /// The encoded JSON value.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The encoded key, `host:source`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The whole record of a line, owned, for the spool.
    fn spool_record(&mut self, host: &str, out: &Outgoing, ts: &str) -> SpoolRecord {
        self.encode(host, out, ts);
        let mut headers = vec![
            (HEADER_HOST.to_string(), host.as_bytes().to_vec()),
            (HEADER_SOURCE.to_string(), out.source.as_bytes().to_vec()),
        ];
        if let Some(l) = self.level {
            headers.push((HEADER_LEVEL.to_string(), l.as_str().as_bytes().to_vec()));
        }
        SpoolRecord {
            topic: out.topic.to_string(),
            key: self.key.as_bytes().to_vec(),
            value: self.value.clone(),
            timestamp: record::unix_millis(out.read_at),
            headers,
        }
    }
}

/// Whether `bytes` is printable ASCII without `"` or `\\`: valid UTF-8 that JSON takes as
/// it is (most log lines). Checked in 32-byte chunks without early exit, which the
/// compiler turns into vector instructions: cheaper than UTF-8 validation plus escaping.
fn plain_json(bytes: &[u8]) -> bool {
    bytes.chunks(32).all(|chunk| {
        chunk.iter().fold(true, |ok, &b| {
            ok & (0x20..0x80).contains(&b) & (b != b'"') & (b != b'\\')
        })
    })
}

/// Appends `s` as a JSON string, escaped exactly as `serde_json` does.
fn json_str(buf: &mut Vec<u8>, s: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, s);
}

/// Builds the contract's `logs` value for a line through serde, cutting the line until the
/// record fits [`MAX_RECORD_BYTES`].
pub fn build_log_value(host: &str, out: &Outgoing, ts: String, level: Option<Level>) -> Vec<u8> {
    let limit = MAX_RECORD_BYTES - RECORD_OVERHEAD - 2 * out.source.len() - 2 * host.len();
    let mut text = String::from_utf8_lossy(&out.line.bytes).into_owned();
    let mut truncated = out.line.truncated;
    let mut rec = LogRecord {
        ts,
        host: host.to_string(),
        source: out.source.to_string(),
        line: String::new(),
        level,
        fields: None,
        truncated,
    };
    loop {
        rec.line = text;
        rec.truncated = truncated;
        // Serializing plain strings and numbers cannot fail.
        let value = serde_json::to_vec(&rec).unwrap_or_default();
        if value.len() <= limit {
            return value;
        }
        // JSON escaping can grow a line up to 6x; cut in proportion and try again.
        text = std::mem::take(&mut rec.line);
        let keep = text.len() * limit / value.len();
        let mut cut = keep.saturating_sub(16);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        truncated = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lines::Line;
    use std::time::{Duration, UNIX_EPOCH};

    fn outgoing(bytes: &[u8], truncated: bool) -> Outgoing {
        Outgoing {
            watch: 1,
            topic: Arc::from("logs"),
            source: Arc::from("/var/log/a \"b\"\\c.log"),
            line: Line {
                bytes: bytes.to_vec(),
                truncated,
                end_offset: 10,
            },
            read_at: UNIX_EPOCH + Duration::from_millis(1_714_564_800_123),
        }
    }

    #[test]
    fn fast_encoding_matches_the_serde_record() {
        let lines: [&[u8]; 7] = [
            b"plain line",
            b"ERROR boom \"quoted\" \\ back",
            b"{\"level\":\"warn\",\"msg\":\"x\"}",
            b"tab\there\x01\x1f\x7f ctl",
            b"bad utf8 \xff\xfe end",
            "unicode \u{e9}\u{1f600} INFO".as_bytes(),
            b"",
        ];
        let mut enc = LogEncoder::default();
        for line in lines {
            for truncated in [false, true] {
                let out = outgoing(line, truncated);
                let ts = record::format_ts(out.read_at);
                enc.encode("web \"1\"", &out, &ts);
                let slow = build_log_value("web \"1\"", &out, ts, level::detect(line));
                assert_eq!(
                    String::from_utf8_lossy(enc.value()),
                    String::from_utf8_lossy(&slow)
                );
                assert_eq!(enc.key(), "web \"1\":/var/log/a \"b\"\\c.log");
            }
        }
    }

    proptest::proptest! {
        /// Any line, from alternating files and read passes, encodes as serde writes it.
        #[test]
        fn any_line_encodes_as_serde_does(
            lines in proptest::collection::vec(
                (proptest::collection::vec(proptest::num::u8::ANY, 0..80), 0usize..2, 0u64..2),
                1..20,
            ),
        ) {
            let sources: [Arc<str>; 2] = [Arc::from("/var/log/a.log"), Arc::from("/x/\"b\".log")];
            let mut enc = LogEncoder::default();
            for (bytes, source, pass) in lines {
                let mut out = outgoing(&bytes, false);
                out.source = Arc::clone(&sources[source]);
                out.read_at += Duration::from_millis(pass);
                let ts = record::format_ts(out.read_at);
                enc.encode("h1", &out, &ts);
                let slow = build_log_value("h1", &out, ts, level::detect(&bytes));
                proptest::prop_assert_eq!(enc.value(), &slow[..]);
                proptest::prop_assert_eq!(enc.key(), format!("h1:{}", out.source));
            }
        }
    }

    #[test]
    fn too_long_records_are_cut_to_fit() {
        let out = outgoing(&vec![b'"'; MAX_RECORD_BYTES / 2], false);
        let ts = record::format_ts(out.read_at);
        let mut enc = LogEncoder::default();
        enc.encode("h", &out, &ts);
        assert!(enc.value().len() <= MAX_RECORD_BYTES);
        let rec: LogRecord = serde_json::from_slice(enc.value()).expect("json");
        assert!(rec.truncated);
    }
}
