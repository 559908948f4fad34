//! Search over the aggregated logs: the engine behind `rill search` and the dashboard's
//! Search view.
//!
//! [`query`] is pure (the matcher, field filters, time parsing). [`Search`] scans a topic
//! over the plain Kafka protocol, so it works against rill and any Kafka cluster:
//! `--since`/`--until` become per-partition offsets with ListOffsets by timestamp, the end
//! of each partition is its high watermark when the search starts (unless following), every
//! partition is read in parallel, and the hits are merged in time order and streamed through
//! a channel as they are found.
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
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

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

/// A running search. Hits arrive on [`Search::hits`] in time order; the channel closes when
/// the search is complete (never, with `follow`, until [`Search::stop`]). Dropping it stops it.
pub struct Search {
    pub hits: Receiver<Hit>,
    pub stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    errors: Arc<parking_lot::Mutex<Vec<SearchError>>>,
    running: Arc<AtomicUsize>,
    /// Which client reads: [`Search::finish`] waits for librdkafka's readers to close.
    reader: Reader,
}

/// What a partition reader tells the merger.
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

    /// Asks every reader to stop; the hit channel closes soon after.
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
        let (hit_tx, hit_rx) = std::sync::mpsc::sync_channel::<Hit>(256);
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
        let merger_stop = stop.clone();
        std::thread::Builder::new()
            .name("search-merge".into())
            .spawn(move || merge(partitions, item_rx, hit_tx, limit, follow, merger_stop))
            .map_err(SearchError::Thread)?;
        drop(open_gate);
        Ok(Search {
            hits: hit_rx,
            stats,
            stop,
            errors,
            running,
            reader,
        })
    }
}

/// The time-ordered k-way merge: a hit is released once every partition still being read
/// has a hit buffered (or has caught up), the oldest first (ties by partition, then offset).
/// Once every partition caught up (with `follow`), hits are passed on as they arrive.
fn merge(
    n: usize,
    items: Receiver<(usize, Item)>,
    out: SyncSender<Hit>,
    limit: Option<u64>,
    follow: bool,
    stop: Arc<AtomicBool>,
) {
    let mut buffers: Vec<VecDeque<Box<Hit>>> = (0..n).map(|_| VecDeque::new()).collect();
    let mut caught_up = vec![false; n];
    let mut sent = 0u64;
    let emit = |hit: Box<Hit>, sent: &mut u64| -> bool {
        if limit.is_some_and(|l| *sent >= l) {
            return false;
        }
        if out.send(*hit).is_err() {
            return false;
        }
        *sent += 1;
        limit.is_none_or(|l| *sent < l)
    };
    'outer: loop {
        // Release every hit that is known to be the oldest.
        loop {
            let mut best: Option<(usize, i64, i32, i64)> = None;
            let mut blocked = false;
            for (i, buf) in buffers.iter().enumerate() {
                match buf.front() {
                    Some(h) => {
                        let key = (i, h.timestamp_ms, h.partition, h.offset);
                        if best.is_none_or(|b| (key.1, key.2, key.3) < (b.1, b.2, b.3)) {
                            best = Some(key);
                        }
                    }
                    None if !caught_up[i] => blocked = true,
                    None => {}
                }
            }
            match best {
                Some((i, ..)) if !blocked => {
                    let hit = buffers[i].pop_front().expect("buffered hit");
                    if !emit(hit, &mut sent) {
                        break 'outer;
                    }
                }
                _ => break,
            }
        }
        // Without --follow, the search is complete once every partition reached its end
        // (without waiting for the readers to close their connections).
        if !follow && caught_up.iter().all(|&c| c) && buffers.iter().all(VecDeque::is_empty) {
            break;
        }
        match items.recv() {
            Ok((i, Item::Hit(hit))) => buffers[i].push_back(hit),
            Ok((i, Item::CaughtUp)) => caught_up[i] = true,
            Err(_) => {
                // Every reader ended: whatever is buffered is all there is.
                if buffers.iter().all(VecDeque::is_empty) {
                    break;
                }
                caught_up.iter_mut().for_each(|c| *c = true);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
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

    #[test]
    fn merge_orders_by_time_and_honours_limit() {
        let (tx, rx) = std::sync::mpsc::sync_channel(100);
        tx.send((0, Item::Hit(hit(0, 0, 10)))).unwrap();
        tx.send((0, Item::Hit(hit(0, 1, 30)))).unwrap();
        tx.send((1, Item::Hit(hit(1, 0, 20)))).unwrap();
        tx.send((1, Item::CaughtUp)).unwrap();
        tx.send((0, Item::CaughtUp)).unwrap();
        drop(tx);
        let (out_tx, out_rx) = std::sync::mpsc::sync_channel(100);
        merge(2, rx, out_tx, None, false, Arc::new(AtomicBool::new(false)));
        let order: Vec<i64> = out_rx.iter().map(|h| h.timestamp_ms).collect();
        assert_eq!(order, vec![10, 20, 30]);

        let (tx, rx) = std::sync::mpsc::sync_channel(100);
        for o in 0..10 {
            tx.send((0, Item::Hit(hit(0, o, o)))).unwrap();
        }
        drop(tx);
        let (out_tx, out_rx) = std::sync::mpsc::sync_channel(100);
        merge(
            1,
            rx,
            out_tx,
            Some(3),
            false,
            Arc::new(AtomicBool::new(false)),
        );
        assert_eq!(out_rx.iter().count(), 3);
    }
}
