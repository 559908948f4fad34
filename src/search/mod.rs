//! Search over the aggregated logs: the engine behind `rill search` and the dashboard's
//! Search view.
//!
//! Two halves. [`query`] is pure (the matcher, field filters, time parsing) and unit-tested.
//! [`Search`] scans a topic over the plain Kafka protocol through librdkafka, so it works
//! against rill and any Kafka cluster: `--since`/`--until` become per-partition offsets with
//! ListOffsets by timestamp (`offsets_for_times`), the end of each partition is its high
//! watermark when the search starts (unless following), every partition is read in parallel
//! by its own consumer that is only ever `assign`ed (never subscribed, never committing), and
//! the hits are merged in time order and streamed through a channel as they are found.
//!
//! Records that do not follow the record contract (other producers write to the topic too)
//! are searched as raw text: their whole value, with host/source/level from their headers.

pub mod query;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

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

/// A running search. Hits arrive on [`Search::hits`] in time order; the channel closes when
/// the search is complete (never, with `follow`, until [`Search::stop`]). Dropping it stops it.
pub struct Search {
    pub hits: Receiver<Hit>,
    pub stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    errors: Arc<parking_lot::Mutex<Vec<String>>>,
}

/// What a partition reader tells the merger.
enum Item {
    Hit(Box<Hit>),
    /// The partition reached the end it had when the search started (with `follow`, it goes on).
    CaughtUp,
}

impl Search {
    /// Resolves the topic's partitions and their offset ranges, then starts reading. Errors
    /// here: an unreachable broker (with the `BrokerArgs` hint) and an unknown topic.
    pub fn start(args: &BrokerArgs, options: Options) -> anyhow::Result<Search> {
        let timeout = args.timeout();
        // No group id: metadata and ListOffsets only (a consumer with a group id takes a
        // coordinator round on close).
        let client: BaseConsumer = args
            .client_config()
            .create()
            .context("cannot create a Kafka client")?;
        // All topics, never one by name: asking for a missing topic would auto-create it.
        let metadata = client
            .fetch_metadata(None, timeout)
            .with_context(|| args.unreachable_hint())?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == options.topic)
            .ok_or_else(|| {
                anyhow!(
                    "topic {:?} not found on {} (see `rill topics list`)",
                    options.topic,
                    args.brokers
                )
            })?;
        if let Some(err) = topic.error() {
            bail!("topic {:?}: {:?}", options.topic, err);
        }
        let mut partitions: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
        partitions.sort_unstable();

        // Per partition [start, end): start by --since, end by --until or the high watermark.
        let mut ranges = Vec::with_capacity(partitions.len());
        let starts = times_to_offsets(
            &client,
            &options.topic,
            &partitions,
            options.since_ms,
            timeout,
        )?;
        let ends = times_to_offsets(
            &client,
            &options.topic,
            &partitions,
            options.until_ms.map(|u| u.saturating_add(1)),
            timeout,
        )?;
        for (i, &p) in partitions.iter().enumerate() {
            let (low, high) = client
                .fetch_watermarks(&options.topic, p, timeout)
                .with_context(|| format!("cannot read the offsets of {}/{p}", options.topic))?;
            let start = starts[i].unwrap_or(high).clamp(low, high);
            let end = if options.until_ms.is_some() {
                ends[i].unwrap_or(high).clamp(start, high)
            } else {
                high
            };
            ranges.push((p, start, end));
        }

        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let (item_tx, item_rx) = mpsc::sync_channel::<(usize, Item)>(4096);
        let (hit_tx, hit_rx) = mpsc::sync_channel::<Hit>(1024);
        let options = Arc::new(options);
        for (index, &(partition, start, end)) in ranges.iter().enumerate() {
            let reader = PartitionReader {
                args: args.clone(),
                options: options.clone(),
                stats: stats.clone(),
                stop: stop.clone(),
                index,
                partition,
                start,
                end,
            };
            let tx = item_tx.clone();
            let errors = errors.clone();
            let stop_on_err = stop.clone();
            // Detached: every thread ends on its own once the search is complete or stopped
            // (a closed channel or the stop flag); nobody waits for librdkafka's close.
            std::thread::Builder::new()
                .name(format!("search-p{partition}"))
                .spawn(move || {
                    if let Err(e) = reader.run(&tx) {
                        errors.lock().push(format!("{e:#}"));
                        stop_on_err.store(true, Ordering::Relaxed);
                    }
                })
                .context("cannot start a reader thread")?;
        }
        drop(item_tx);
        let merger_stop = stop.clone();
        let n = ranges.len();
        let limit = options.limit;
        let follow = options.follow;
        std::thread::Builder::new()
            .name("search-merge".into())
            .spawn(move || merge(n, item_rx, hit_tx, limit, follow, merger_stop))
            .context("cannot start the merge thread")?;
        Ok(Search {
            hits: hit_rx,
            stats,
            stop,
            errors,
        })
    }

    /// Asks every reader to stop; the hit channel closes soon after.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Ends the search (call it once the hit channel closed, or to give up early) and
    /// returns the first error a reader hit. Readers that are still closing their
    /// connections finish in the background.
    pub fn finish(self) -> anyhow::Result<()> {
        self.stop();
        let first = self.errors.lock().first().cloned();
        match first {
            Some(e) => Err(anyhow!("{e}")),
            None => Ok(()),
        }
    }
}

impl Drop for Search {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A consumer for scanning: large fetches, only ever `assign`ed, never committing.
fn scan_config(args: &BrokerArgs) -> rdkafka::ClientConfig {
    let mut config = args.client_config();
    config
        // librdkafka refuses `assign` without a group id; the group is never joined.
        .set("group.id", "rill-search")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "16777216")
        .set("queued.max.messages.kbytes", "65536")
        .set("fetch.wait.max.ms", "10")
        .set("queued.min.messages", "1000000")
        .set("fetch.queue.backoff.ms", "0");
    config
}

/// ListOffsets by timestamp: per partition, the first offset with a timestamp >= `time`, or
/// None when no record is that recent (or no time was given).
fn times_to_offsets(
    client: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    time: Option<i64>,
    timeout: Duration,
) -> anyhow::Result<Vec<Option<i64>>> {
    let Some(time) = time else {
        return Ok(vec![Some(0); partitions.len()]);
    };
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition_offset(topic, p, Offset::Offset(time))
            .context("cannot build the ListOffsets request")?;
    }
    let answer = client
        .offsets_for_times(tpl, timeout)
        .with_context(|| format!("ListOffsets by timestamp failed for topic {topic:?}"))?;
    Ok(partitions
        .iter()
        .map(
            |&p| match answer.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            },
        )
        .collect())
}

struct PartitionReader {
    args: BrokerArgs,
    options: Arc<Options>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    index: usize,
    partition: i32,
    start: i64,
    end: i64,
}

impl PartitionReader {
    fn run(self, tx: &SyncSender<(usize, Item)>) -> anyhow::Result<()> {
        let options = &self.options;
        let follow = options.follow && options.until_ms.is_none();
        if self.start >= self.end && !follow {
            let _ = tx.send((self.index, Item::CaughtUp));
            return Ok(());
        }
        let consumer: BaseConsumer = scan_config(&self.args)
            .create()
            .context("cannot create a Kafka consumer")?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&options.topic, self.partition, Offset::Offset(self.start))
            .context("cannot build the assignment")?;
        consumer
            .assign(&tpl)
            .with_context(|| format!("cannot assign {}/{}", options.topic, self.partition))?;
        let caught_up = self.start >= self.end;
        let mut scanned = (0u64, 0u64);
        let result = self.read(&consumer, tx, follow, caught_up, &mut scanned);
        self.flush_stats(&mut scanned);
        result
    }

    fn flush_stats(&self, scanned: &mut (u64, u64)) {
        self.stats.records.fetch_add(scanned.0, Ordering::Relaxed);
        self.stats.bytes.fetch_add(scanned.1, Ordering::Relaxed);
        *scanned = (0, 0);
    }

    fn read(
        &self,
        consumer: &BaseConsumer,
        tx: &SyncSender<(usize, Item)>,
        follow: bool,
        mut caught_up: bool,
        scanned: &mut (u64, u64),
    ) -> anyhow::Result<()> {
        let options = &self.options;
        if caught_up && tx.send((self.index, Item::CaughtUp)).is_err() {
            return Ok(());
        }
        while !self.stop.load(Ordering::Relaxed) {
            let Some(result) = consumer.poll(Duration::from_millis(100)) else {
                // Offsets that hold no record to deliver (transaction markers, records
                // removed by retention or compaction) can end a partition: ask where we are.
                if !caught_up && self.position(consumer) >= self.end {
                    caught_up = true;
                    if tx.send((self.index, Item::CaughtUp)).is_err() || !follow {
                        return Ok(());
                    }
                }
                continue;
            };
            let msg = result
                .with_context(|| format!("cannot read {}/{}", options.topic, self.partition))?;
            let offset = msg.offset();
            if !follow && offset >= self.end {
                break;
            }
            // Counted in batches: one shared counter bumped per record by every reader
            // would bounce its cache line between cores.
            scanned.0 += 1;
            scanned.1 += msg.payload_len() as u64;
            if scanned.0 >= 4096 {
                self.flush_stats(scanned);
            }
            if let Some(hit) = self.examine(&msg) {
                if options.count_only {
                    let matched = self.stats.matched.fetch_add(1, Ordering::Relaxed) + 1;
                    if options.limit.is_some_and(|l| matched >= l) {
                        self.stop.store(true, Ordering::Relaxed);
                    }
                } else if tx.send((self.index, Item::Hit(Box::new(hit)))).is_err() {
                    return Ok(());
                }
            }
            if !caught_up && offset + 1 >= self.end {
                caught_up = true;
                if tx.send((self.index, Item::CaughtUp)).is_err() || !follow {
                    return Ok(());
                }
            }
        }
        if !caught_up {
            let _ = tx.send((self.index, Item::CaughtUp));
        }
        Ok(())
    }

    /// The consumer's position in this partition (the next offset it will fetch), or -1.
    fn position(&self, consumer: &BaseConsumer) -> i64 {
        consumer
            .position()
            .ok()
            .and_then(|tpl| {
                tpl.find_partition(&self.options.topic, self.partition)
                    .map(|e| e.offset())
            })
            .and_then(|o| match o {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .unwrap_or(-1)
    }

    fn examine(&self, msg: &BorrowedMessage<'_>) -> Option<Hit> {
        let options = &self.options;
        let value = msg.payload().unwrap_or_default();
        let ts = msg.timestamp().to_millis().unwrap_or(0);
        if options.since_ms.is_some_and(|s| ts < s) || options.until_ms.is_some_and(|u| ts > u) {
            return None;
        }
        if !options.matcher.prefilter(value) {
            return None;
        }
        let headers = msg.headers();
        let header = |name: &str| -> Option<String> {
            let headers = headers?;
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let fields = Fields::decode(value, header);
        let matched = match &fields.record {
            Some(_) => options.matcher.is_match(fields.line.as_bytes()),
            // Raw text is searched as the bytes it is, like grep.
            None => options.matcher.is_match(value),
        };
        if !matched || !options.filter.accepts(&fields) {
            return None;
        }
        Some(Hit {
            partition: self.partition,
            offset: msg.offset(),
            timestamp_ms: ts,
            key: msg.key().map(<[u8]>::to_vec),
            value: value.to_vec(),
            fields,
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
    fn merge_orders_by_time_and_honours_limit() {
        let (tx, rx) = mpsc::sync_channel(100);
        tx.send((0, Item::Hit(hit(0, 0, 10)))).unwrap();
        tx.send((0, Item::Hit(hit(0, 1, 30)))).unwrap();
        tx.send((1, Item::Hit(hit(1, 0, 20)))).unwrap();
        tx.send((1, Item::CaughtUp)).unwrap();
        tx.send((0, Item::CaughtUp)).unwrap();
        drop(tx);
        let (out_tx, out_rx) = mpsc::sync_channel(100);
        merge(2, rx, out_tx, None, false, Arc::new(AtomicBool::new(false)));
        let order: Vec<i64> = out_rx.iter().map(|h| h.timestamp_ms).collect();
        assert_eq!(order, vec![10, 20, 30]);

        let (tx, rx) = mpsc::sync_channel(100);
        for o in 0..10 {
            tx.send((0, Item::Hit(hit(0, o, o)))).unwrap();
        }
        drop(tx);
        let (out_tx, out_rx) = mpsc::sync_channel(100);
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
