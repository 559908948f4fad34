//! Search over the aggregated logs: the engine behind `rill search` and the dashboard's
//! Search view.
//!
//! [`query`] is pure (the matcher, field filters, time parsing). [`Search`] scans a topic
//! over the plain Kafka protocol, so it works against rill and any Kafka cluster:
//! `--since`/`--until` become per-partition offsets with ListOffsets by timestamp, the end
//! of each partition is its high watermark when the search starts (unless following), every
//! partition is read in parallel, and the hits are merged in time order as they are found, on
//! the thread that takes them ([`Search::next_hit`]).
//!
//! Two readers do the reading (see [`reader_for`]):
//! - the wire reader ([`wire`], [`wire_reader`]): rill's own minimal Kafka client. It fetches
//!   whole record batches, decodes and decompresses them itself ([`batch`]) and matches
//!   whole batches at once ([`scan`]). Plaintext connections use it: it is the fast one.
//! - the librdkafka reader ([`rdkafka_reader`]): for connections that need TLS or SASL,
//!   which librdkafka implements and the wire client does not.
//!
//! Records that do not follow the record contract (other producers write to the topic too)
//! are searched as raw text: their whole value, with host/source/level from their headers.

pub mod batch;
mod batch_queue;
mod error;
mod inflate;
mod lz4_frame;
pub mod query;
mod rdkafka_reader;
mod scan;
mod wire;
mod wire_reader;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use error::SearchError;
pub use query::{parse_time, Fields, Filter, Matcher};

use crate::client::BrokerArgs;

/// What to search for and where.
#[derive(Debug, Clone)]
pub struct Options {
    pub topic: String,
    pub matcher: Matcher,
    pub filter: Filter,
    /// Inclusive bounds on the Kafka timestamp (event time), ms since the epoch.
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Stop after this many hits (in time order).
    pub limit: Option<u64>,
    /// Only count: hits are not sent, [`Stats::matched`] counts them.
    pub count_only: bool,
    /// Go on searching records that arrive after the search started.
    pub follow: bool,
}

impl Options {
    /// Whether the search goes on with records that arrive after it started (`--follow`
    /// without an `--until`).
    pub fn follows(&self) -> bool {
        self.scope().follows()
    }

    /// Where these options search.
    pub fn scope(&self) -> Scope<'_> {
        Scope {
            topic: &self.topic,
            since_ms: self.since_ms,
            until_ms: self.until_ms,
            follow: self.follow,
        }
    }
}

/// Where a search reads: the part of [`Options`] its connections are set up from (see
/// [`Search::prepare`]).
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub topic: &'a str,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub follow: bool,
}

impl Scope<'_> {
    /// Whether the search goes on with records that arrive after it started (`--follow`
    /// without an `--until`).
    pub fn follows(&self) -> bool {
        self.follow && self.until_ms.is_none()
    }
}

/// One matching record.
#[derive(Debug, Clone)]
pub struct Hit {
    pub partition: i32,
    pub offset: i64,
    /// The Kafka timestamp (event time), ms since the epoch.
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    /// The raw Kafka value.
    pub value: Vec<u8>,
    pub fields: Fields,
}

/// Counters of a running search, shared with its readers (for a progress line).
#[derive(Debug, Default)]
pub struct Stats {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub matched: AtomicU64,
}

/// Which client reads the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// rill's own Kafka client: plaintext connections (the default, and the fast one).
    Wire,
    /// librdkafka: connections that need TLS or SASL.
    Librdkafka,
}

/// The reader for these connection settings: librdkafka when the client configuration
/// `BrokerArgs` builds asks for TLS or SASL (`security.protocol` other than plaintext, or any
/// `ssl.*`/`sasl.*` setting), the wire reader otherwise. `RILL_SEARCH_READER=librdkafka` (or
/// `wire`) overrides the choice, e.g. to compare the two.
pub fn reader_for(args: &BrokerArgs) -> Reader {
    match std::env::var("RILL_SEARCH_READER").as_deref() {
        Ok("librdkafka") => return Reader::Librdkafka,
        Ok("wire") => return Reader::Wire,
        _ => {}
    }
    let config = args.client_config();
    let secured = config
        .get("security.protocol")
        .is_some_and(|p| !p.eq_ignore_ascii_case("plaintext"))
        || config
            .config_map()
            .keys()
            .any(|k| k.starts_with("ssl.") || k.starts_with("sasl."));
    if secured {
        Reader::Librdkafka
    } else {
        Reader::Wire
    }
}

/// A running search. [`Search::next_hit`] hands out its hits in time order, until the search
/// is complete (never, with `follow`, until [`Search::stop`]). Dropping it stops it.
pub struct Search {
    merge: Merge,
    pub stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    errors: Arc<parking_lot::Mutex<Vec<SearchError>>>,
    running: Arc<AtomicUsize>,
    /// Which client reads: [`Search::finish`] waits for librdkafka's readers to close.
    reader: Reader,
}

/// What a partition reader tells the merge.
enum Item {
    Hit(Box<Hit>),
    /// The partition reached the end it had when the search started (with `follow`, it goes on).
    CaughtUp,
}

/// One partition to read: `[start, end)` in offsets.
#[derive(Debug, Clone, Copy)]
struct PartitionRange {
    partition: i32,
    start: i64,
    end: i64,
}

/// Per partition `[start, end)` from the offsets a reader looked up: `start` by `--since`,
/// `end` by `--until` or the high watermark. `since`/`until` are None without those flags,
/// and Some(None) when no record is that recent.
fn resolve_range(
    partition: i32,
    low: i64,
    high: i64,
    since: Option<Option<i64>>,
    until: Option<Option<i64>>,
) -> PartitionRange {
    let start = match since {
        None => low,
        Some(found) => found.unwrap_or(high).clamp(low, high),
    };
    let end = match until {
        None => high,
        Some(found) => found.unwrap_or(high).clamp(start, high),
    };
    PartitionRange {
        partition,
        start,
        end,
    }
}

/// What every partition reader shares.
#[derive(Clone)]
struct Shared {
    options: Arc<Options>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    errors: Arc<parking_lot::Mutex<Vec<SearchError>>>,
    /// Reader threads still running (see [`Search::finish`]).
    running: Arc<AtomicUsize>,
    /// Holds the reader threads back until all of them are started.
    gate: Arc<StartGate>,
}

/// Holds a search's threads back until the thread starting them has started them all.
/// Why: a new thread may run at once and scan, and a search's threads were started one
/// by one on the thread that set the search up, which then waited for a core to start the
/// next: starting three readers and the merger took from 0.2 to 3.3 ms (eight runs of a
/// `--since` search over the newest 10 %, two cores), and a partition whose reader started
/// last was read last, while the cores had nothing left to share.
#[derive(Default)]
struct StartGate {
    open: parking_lot::Mutex<bool>,
    opened: parking_lot::Condvar,
}

impl StartGate {
    fn wait(&self) {
        let mut open = self.open.lock();
        while !*open {
            self.opened.wait(&mut open);
        }
    }

    fn open(&self) {
        *self.open.lock() = true;
        self.opened.notify_all();
    }
}

/// Opens the gate when dropped: when every thread is started, or starting one failed.
struct OpenOnDrop(Arc<StartGate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

impl Shared {
    /// Counts what a reader scanned; when only counting, stops every reader at the limit.
    fn add(&self, scanned: &scan::Scanned) {
        self.stats
            .records
            .fetch_add(scanned.records, Ordering::Relaxed);
        self.stats.bytes.fetch_add(scanned.bytes, Ordering::Relaxed);
        if self.options.count_only && scanned.matched > 0 {
            let matched = self
                .stats
                .matched
                .fetch_add(scanned.matched, Ordering::Relaxed)
                + scanned.matched;
            if self.options.limit.is_some_and(|l| matched >= l) {
                self.stop.store(true, Ordering::Relaxed);
            }
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Runs a partition reader on its own thread; its error stops the search.
    fn spawn(
        &self,
        name: String,
        run: impl FnOnce() -> Result<(), SearchError> + Send + 'static,
    ) -> Result<(), SearchError> {
        let errors = self.errors.clone();
        let stop = self.stop.clone();
        let running = self.running.clone();
        let gate = self.gate.clone();
        running.fetch_add(1, Ordering::SeqCst);
        // Detached: every thread ends on its own once the search is complete or stopped
        // (a closed channel or the stop flag).
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                gate.wait();
                if let Err(e) = run() {
                    errors.lock().push(e);
                    stop.store(true, Ordering::Relaxed);
                }
                running.fetch_sub(1, Ordering::SeqCst);
            })
            .map(drop)
            .map_err(|e| {
                self.running.fetch_sub(1, Ordering::SeqCst);
                SearchError::Thread(e)
            })
    }
}

/// A search whose connections are set up, waiting for its [`Options`]: see
/// [`Search::prepare`].
pub struct Prepared {
    args: BrokerArgs,
    topic: String,
    stop: Arc<AtomicBool>,
    reader: PreparedReader,
}

enum PreparedReader {
    /// The partitions' connections, their first fetches already asked for.
    Wire(wire_reader::Prepared),
    /// librdkafka's consumers are made when the search starts.
    Librdkafka,
}

impl Search {
    /// Resolves the topic's partitions and their offset ranges, then starts reading. Errors
    /// here: an unreachable broker (with the `BrokerArgs` hint) and an unknown topic.
    pub fn start(args: &BrokerArgs, options: Options) -> Result<Search, SearchError> {
        Search::prepare(args, options.scope())?.start(options)
    }

    /// The first half of [`Search::start`], which needs no matcher: the connections, the
    /// topic's partitions and offset ranges, and the first fetches (the wire reader). The
    /// command line builds its regex meanwhile on another thread: both take about 0.3 ms.
    pub fn prepare(args: &BrokerArgs, scope: Scope) -> Result<Prepared, SearchError> {
        let stop = Arc::new(AtomicBool::new(false));
        let reader = match reader_for(args) {
            Reader::Wire => PreparedReader::Wire(wire_reader::prepare(args, scope, &stop)?),
            Reader::Librdkafka => PreparedReader::Librdkafka,
        };
        Ok(Prepared {
            args: args.clone(),
            topic: scope.topic.to_string(),
            stop,
            reader,
        })
    }

    /// The next hit in time order, waiting up to `timeout`: `Timeout` when the readers have
    /// not yet found what comes next, `Disconnected` once the search is complete (or reached
    /// its limit, or was stopped and its readers ended). The readers stop then.
    pub fn next_hit(&mut self, timeout: Duration) -> Result<Hit, RecvTimeoutError> {
        let next = self.merge.next(timeout);
        if matches!(next, Err(RecvTimeoutError::Disconnected)) {
            self.stop();
        }
        next
    }

    /// Asks every reader to stop; [`Search::next_hit`] says `Disconnected` soon after.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Ends the search (call it once the hit channel closed, or to give up early) and
    /// returns the first error a reader hit. With librdkafka, waits (up to 2 s) for the
    /// readers to close their connections: a process that exits while librdkafka threads
    /// still tear down TLS sessions can crash in OpenSSL's exit handlers (seen as SIGSEGV
    /// after the output). The wire reader's threads need no such wait, and a short search
    /// should not pay for one.
    pub fn finish(self) -> Result<(), SearchError> {
        self.stop();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while self.reader == Reader::Librdkafka
            && self.running.load(Ordering::SeqCst) > 0
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let first = std::mem::take(&mut *self.errors.lock()).into_iter().next();
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Search {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Prepared {
    /// Starts reading, with `options` (which search where [`Search::prepare`] was told).
    pub fn start(self, options: Options) -> Result<Search, SearchError> {
        debug_assert_eq!(options.topic, self.topic, "prepared for another topic");
        let Prepared {
            args, stop, reader, ..
        } = self;
        let stats = Arc::new(Stats::default());
        let errors = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let running = Arc::new(AtomicUsize::new(0));
        let (item_tx, item_rx) = std::sync::mpsc::sync_channel::<(usize, Item)>(4096);
        let limit = options.limit;
        let follow = options.follow;
        let shared = Shared {
            options: Arc::new(options),
            stats: stats.clone(),
            stop: stop.clone(),
            errors: errors.clone(),
            running: running.clone(),
            gate: Arc::default(),
        };
        let open_gate = OpenOnDrop(shared.gate.clone());
        let (reader, partitions) = match reader {
            PreparedReader::Wire(prepared) => (Reader::Wire, prepared.start(&shared, &item_tx)?),
            PreparedReader::Librdkafka => (
                Reader::Librdkafka,
                rdkafka_reader::start(&args, &shared, &item_tx)?,
            ),
        };
        drop(item_tx);
        drop(open_gate);
        Ok(Search {
            merge: Merge::new(partitions, item_rx, limit, follow),
            stats,
            stop,
            errors,
            running,
            reader,
        })
    }
}

/// The time-ordered k-way merge of the readers' hits. It runs on the thread that takes the
/// hits ([`Search::next_hit`]), not on one of its own: a thread more to start cost a `--since`
/// search more than the merge itself (see the README's search performance notes), and every
/// hit took one more hand-over between threads.
///
/// A hit is released once every partition still being read has a hit buffered (or has
/// caught up), the oldest first (ties by partition, then offset). Once every partition
/// caught up (with `follow`), hits are passed on as they arrive.
struct Merge {
    items: Receiver<(usize, Item)>,
    buffers: Vec<VecDeque<Box<Hit>>>,
    caught_up: Vec<bool>,
    released: u64,
    limit: Option<u64>,
    follow: bool,
    ended: bool,
}

impl Merge {
    fn new(
        partitions: usize,
        items: Receiver<(usize, Item)>,
        limit: Option<u64>,
        follow: bool,
    ) -> Merge {
        Merge {
            items,
            buffers: (0..partitions).map(|_| VecDeque::new()).collect(),
            caught_up: vec![false; partitions],
            released: 0,
            limit,
            follow,
            ended: false,
        }
    }

    /// The next hit in time order, waiting up to `timeout` for the readers: `Timeout` when
    /// none is known to be next yet, `Disconnected` once the search is complete or reached
    /// its limit.
    fn next(&mut self, timeout: Duration) -> Result<Hit, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.ended || self.limit.is_some_and(|l| self.released >= l) {
                self.ended = true;
                return Err(RecvTimeoutError::Disconnected);
            }
            if let Some(hit) = self.release() {
                self.released += 1;
                return Ok(*hit);
            }
            // Without --follow, the search is complete once every partition reached its end
            // (without waiting for the readers to close their connections).
            let empty = self.buffers.iter().all(VecDeque::is_empty);
            if !self.follow && empty && self.caught_up.iter().all(|&c| c) {
                self.ended = true;
                continue;
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.items.recv_timeout(wait) {
                Ok((i, Item::Hit(hit))) => self.buffers[i].push_back(hit),
                Ok((i, Item::CaughtUp)) => self.caught_up[i] = true,
                Err(RecvTimeoutError::Timeout) => return Err(RecvTimeoutError::Timeout),
                // Every reader ended: whatever is buffered is all there is.
                Err(RecvTimeoutError::Disconnected) if empty => self.ended = true,
                Err(RecvTimeoutError::Disconnected) => self.caught_up.fill(true),
            }
        }
    }

    /// The oldest buffered hit, once it is known to be the oldest: no partition still being
    /// read has nothing buffered.
    fn release(&mut self) -> Option<Box<Hit>> {
        let mut oldest: Option<(usize, (i64, i32, i64))> = None;
        for (i, buffer) in self.buffers.iter().enumerate() {
            match buffer.front() {
                Some(h) => {
                    let key = (h.timestamp_ms, h.partition, h.offset);
                    if oldest.is_none_or(|(_, k)| key < k) {
                        oldest = Some((i, key));
                    }
                }
                None if !self.caught_up[i] => return None,
                None => {}
            }
        }
        self.buffers[oldest?.0].pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(partition: i32, offset: i64, ts: i64) -> Box<Hit> {
        Box::new(Hit {
            partition,
            offset,
            timestamp_ms: ts,
            key: None,
            value: Vec::new(),
            fields: Fields::decode(b"x", |_| None),
        })
    }

    #[test]
    fn the_start_gate_holds_threads_until_it_opens() {
        let gate = Arc::new(StartGate::default());
        let passed = Arc::new(AtomicBool::new(false));
        let thread = {
            let (gate, passed) = (gate.clone(), passed.clone());
            std::thread::spawn(move || {
                gate.wait();
                passed.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!passed.load(Ordering::SeqCst), "through a closed gate");
        drop(OpenOnDrop(gate.clone()));
        thread.join().expect("the thread ends");
        assert!(passed.load(Ordering::SeqCst));
        gate.wait(); // An open gate lets anyone through.
    }

    /// Every hit the merge hands out until it says the search is complete.
    fn drain(merge: &mut Merge) -> Vec<(i32, i64, i64)> {
        let mut out = Vec::new();
        loop {
            match merge.next(Duration::from_secs(5)) {
                Ok(h) => out.push((h.partition, h.offset, h.timestamp_ms)),
                Err(RecvTimeoutError::Disconnected) => return out,
                Err(RecvTimeoutError::Timeout) => panic!("the merge waited for nothing"),
            }
        }
    }

    #[test]
    fn merge_orders_by_time_and_honours_limit() {
        let (tx, rx) = std::sync::mpsc::sync_channel(100);
        tx.send((0, Item::Hit(hit(0, 0, 10)))).unwrap();
        tx.send((0, Item::Hit(hit(0, 1, 30)))).unwrap();
        tx.send((1, Item::Hit(hit(1, 0, 20)))).unwrap();
        tx.send((1, Item::CaughtUp)).unwrap();
        tx.send((0, Item::CaughtUp)).unwrap();
        let mut merge = Merge::new(2, rx, None, false);
        let order: Vec<i64> = drain(&mut merge).iter().map(|h| h.2).collect();
        assert_eq!(order, vec![10, 20, 30]);
        // Complete once both partitions caught up, although the readers still hold the
        // channel (they close their connections after).
        drop(tx);

        let (tx, rx) = std::sync::mpsc::sync_channel(100);
        for o in 0..10 {
            tx.send((0, Item::Hit(hit(0, o, o)))).unwrap();
        }
        drop(tx);
        assert_eq!(drain(&mut Merge::new(1, rx, Some(3), false)).len(), 3);
    }

    #[test]
    fn merge_waits_for_a_partition_that_has_not_answered_yet() {
        let (tx, rx) = std::sync::mpsc::sync_channel(100);
        let mut merge = Merge::new(2, rx, None, false);
        tx.send((0, Item::Hit(hit(0, 0, 20)))).unwrap();
        // Partition 1 may still hold an older hit: nothing is released yet.
        let waited = merge.next(Duration::from_millis(20)).map(|h| h.offset);
        assert_eq!(waited, Err(RecvTimeoutError::Timeout));
        tx.send((1, Item::Hit(hit(1, 0, 10)))).unwrap();
        tx.send((1, Item::CaughtUp)).unwrap();
        tx.send((0, Item::CaughtUp)).unwrap();
        assert_eq!(drain(&mut merge), vec![(1, 0, 10), (0, 0, 20)]);
        // A reader that ended without catching up (an error, or a stop) ends its partition:
        // what the others buffered is still handed out.
        let (tx, rx) = std::sync::mpsc::sync_channel(100);
        tx.send((0, Item::Hit(hit(0, 5, 50)))).unwrap();
        drop(tx);
        assert_eq!(drain(&mut Merge::new(2, rx, None, false)), vec![(0, 5, 50)]);
    }

    #[test]
    fn a_following_merge_passes_hits_on_as_they_arrive_once_caught_up() {
        let (tx, rx) = std::sync::mpsc::sync_channel(100);
        let mut merge = Merge::new(2, rx, None, true);
        tx.send((0, Item::CaughtUp)).unwrap();
        tx.send((1, Item::CaughtUp)).unwrap();
        let idle = merge.next(Duration::from_millis(20)).map(|h| h.offset);
        assert_eq!(
            idle,
            Err(RecvTimeoutError::Timeout),
            "following: never complete"
        );
        tx.send((1, Item::Hit(hit(1, 7, 70)))).unwrap();
        let next = merge.next(Duration::from_secs(5)).map(|h| h.offset);
        assert_eq!(next, Ok(7));
    }
}
