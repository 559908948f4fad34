//! The wire reader: finds the partitions' leaders (Metadata), resolves the offset ranges
//! (ListOffsets, by timestamp for `--since`/`--until`), then reads every partition on its own
//! thread and connection, one Fetch in flight while the previous answer is decoded and
//! scanned. The batches of every answer are scanned by whichever of these threads is free
//! ([`batch_queue`](crate::search::batch_queue)); each thread hands its own partition's
//! hits to the merge, in order.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, FetchRequest, ListOffsetsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use rill_agent::kafka::huge_pages;

use crate::client::BrokerArgs;
use crate::search::batch;
use crate::search::batch_queue::{BatchQueue, BatchScanner, Fetching, Job};
use crate::search::error::SearchError;
use crate::search::wire::Connection;
use crate::search::{resolve_range, Item, PartitionRange, Scope, Shared};

/// How long a caught-up `--follow` fetch waits at the broker for new records.
const FOLLOW_WAIT: Duration = Duration::from_millis(500);
/// Bytes asked for per fetch (a larger first batch still comes whole, KIP-74). With the
/// next fetch always in flight, round trips cost little; what costs is memory touched for
/// the first time, so the fetches are small enough for the connection to reuse one response
/// buffer over and over (4 MiB fetches faulted in every byte a scan read: 6 % more CPU, 9 %
/// more wall time; 512 KiB ones took 10 % more wall time). A little under 1 MiB, so that
/// an answer (records and a few hundred bytes of headers) fits the half huge page a 1 MiB
/// buffer gets. The first fetch asks for as much: a smaller one, to start scanning sooner,
/// cost a `--since` search over the newest 10 % 1 ms of its 14.
const FETCH_MAX_BYTES: i32 = (1 << 20) - (16 << 10);
/// Read committed, as librdkafka (and so the librdkafka reader) does by default: records of
/// aborted transactions are skipped, and a partition ends at its last stable offset.
const READ_COMMITTED: i8 = 1;
/// ListOffsets' special timestamps.
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;

/// A search's partitions, the longest ranges first.
pub(super) struct Prepared {
    partitions: Vec<PreparedPartition>,
}

/// A partition's index, its range and (unless there is nothing to read) its fetcher and
/// connection, the first Fetch already sent.
struct PreparedPartition {
    index: usize,
    range: PartitionRange,
    fetch: Option<(Fetcher, Connection)>,
}

/// Finds the partitions' leaders (Metadata), resolves their offset ranges (ListOffsets),
/// and sends each partition's first Fetch on a connection of its own.
pub(super) fn prepare(
    args: &BrokerArgs,
    scope: Scope,
    stop: &Arc<AtomicBool>,
) -> Result<Prepared, SearchError> {
    prefault_buffers();
    let timeout = args.timeout();
    let mut bootstrap = connect_bootstrap(args)?;
    let leaders = leaders(&mut bootstrap, scope.topic, &args.brokers)?;

    // One connection per leader for ListOffsets; the bootstrap one when it is the leader.
    let mut by_leader: HashMap<&str, Vec<i32>> = HashMap::new();
    for (partition, leader) in &leaders {
        by_leader
            .entry(leader.as_str())
            .or_default()
            .push(*partition);
    }
    let bootstrap_peer = bootstrap.peer();
    let mut bootstrap = Some(bootstrap);
    let mut ranges = Vec::with_capacity(leaders.len());
    let mut spare: HashMap<String, Connection> = HashMap::new();
    for (leader, partitions) in by_leader {
        let mut conn = match bootstrap.take_if(|_| same_peer(leader, bootstrap_peer)) {
            Some(conn) => conn,
            None => Connection::connect(leader, timeout)?,
        };
        for range in offset_ranges(&mut conn, scope, &partitions)? {
            ranges.push((range, leader.to_string()));
        }
        spare.insert(leader.to_string(), conn);
    }
    ranges.sort_by_key(|(r, _)| r.partition);
    tracing::debug!(?ranges, "offsets resolved");

    // Every partition's connection and first Fetch are set up here, before its thread
    // starts: the broker then reads all partitions while the threads are still being made.
    // The longest ranges go first, as they end last: the connection that looked up a
    // leader's offsets, already open, fetches that leader's longest range, and its other
    // partitions get connections of their own, so the broker serves them in parallel. (The
    // looked-up connection going last made the broker answer a longest range last: a
    // `--since` search then ended on one partition's scan, with one core idle.)
    let follow = scope.follows();
    let topic = TopicName(StrBytes::from_string(scope.topic.to_string()));
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(ranges[i].0.end - ranges[i].0.start));
    let mut fetches: Vec<Option<(Fetcher, Connection)>> = ranges.iter().map(|_| None).collect();
    let mut first_of_leader: HashMap<&str, usize> = HashMap::new();
    for &index in &order {
        let (range, leader) = &ranges[index];
        if range.start >= range.end && !follow {
            continue;
        }
        let sibling = first_of_leader
            .get(leader.as_str())
            .and_then(|&i| fetches[i].as_ref());
        let mut conn = match (spare.remove(leader.as_str()), sibling) {
            (Some(conn), _) => conn,
            (None, Some((_, sibling))) => sibling.another(timeout)?,
            (None, None) => Connection::connect(leader, timeout)?,
        };
        let fetcher = Fetcher {
            topic: topic.clone(),
            partition: range.partition,
            range: *range,
            follow,
            timeout,
            stop: stop.clone(),
        };
        fetcher.begin(&mut conn)?;
        first_of_leader.entry(leader.as_str()).or_insert(index);
        fetches[index] = Some((fetcher, conn));
    }
    let partitions = order
        .into_iter()
        .map(|index| PreparedPartition {
            index,
            range: ranges[index].0,
            fetch: fetches[index].take(),
        })
        .collect();
    Ok(Prepared { partitions })
}

impl Prepared {
    /// Starts a reader per partition, the longest ranges first; returns how many there are.
    pub(super) fn start(
        self,
        shared: &Shared,
        items: &SyncSender<(usize, Item)>,
    ) -> Result<usize, SearchError> {
        let count = self.partitions.len();
        let queue = BatchQueue::new(shared.stop.clone());
        for PreparedPartition {
            index,
            range,
            fetch,
        } in self.partitions
        {
            let reader = PartitionReader {
                shared: shared.clone(),
                items: items.clone(),
                index,
                range,
                fetch: fetch.map(|(fetcher, conn)| (fetcher, conn, queue.fetching())),
                queue: queue.clone(),
            };
            shared.spawn(format!("search-p{}", range.partition), move || reader.run())?;
        }
        Ok(count)
    }
}

/// Faults in, on a thread of its own while the connections are set up, the buffers the
/// partition readers will take first: a response buffer each, for one reader more than
/// there are cores, and one half page more, whose quarters are four readers'
/// decompression windows (at most one mapping's worth). The first
/// touch of a huge page clears it; done here, on the core that idles until the readers
/// start, instead of on the cores that scan (A/B over 400 interleaved runs, when it also
/// faulted in whole-batch decompression buffers: a `--since` search over the newest 10 %
/// took 9.37 ms with, 9.64 without).
fn prefault_buffers() {
    let spawned = std::thread::Builder::new()
        .name("search-prefault".into())
        .spawn(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            if let Err(e) = huge_pages::prefault_small_buffers(cores + 2) {
                tracing::debug!(error = %e, "cannot fault in buffers ahead");
            }
        });
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "cannot start the thread that faults in buffers");
    }
}

/// Connects to the first bootstrap broker that answers.
fn connect_bootstrap(args: &BrokerArgs) -> Result<Connection, SearchError> {
    let mut last = None;
    for addr in args
        .brokers
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        match Connection::connect(addr, args.timeout()) {
            Ok(conn) => return Ok(conn),
            Err(SearchError::Io { cause, .. }) => last = Some(cause),
            Err(e) => return Err(e),
        }
    }
    Err(SearchError::Unreachable {
        hint: args.unreachable_hint(),
        cause: last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "no broker address given")
        }),
    })
}

fn same_peer(addr: &str, peer: Option<SocketAddr>) -> bool {
    use std::net::ToSocketAddrs;
    peer.is_some_and(|peer| {
        addr.to_socket_addrs()
            .is_ok_and(|mut addrs| addrs.any(|a| a == peer))
    })
}

/// The topic's partitions and the `host:port` of each one's leader.
fn leaders(
    conn: &mut Connection,
    topic: &str,
    brokers: &str,
) -> Result<Vec<(i32, String)>, SearchError> {
    let version = conn.versions.metadata;
    let request = if version >= 4 {
        // Asking for the topic by name, never auto-creating it.
        MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                TopicName(StrBytes::from_string(topic.to_string())),
            ))]))
            .with_allow_auto_topic_creation(false)
    } else {
        // All topics: asking for a missing one by name would create it.
        MetadataRequest::default().with_topics(None)
    };
    let metadata = conn.call(&request, version)?;
    let not_found = || SearchError::UnknownTopic {
        topic: topic.to_string(),
        brokers: brokers.to_string(),
    };
    let found = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .ok_or_else(not_found)?;
    if found.error_code == ResponseError::UnknownTopicOrPartition.code() {
        return Err(not_found());
    }
    SearchError::check(found.error_code, || format!("metadata of topic {topic:?}"))?;
    let addrs: HashMap<BrokerId, String> = metadata
        .brokers
        .iter()
        .map(|b| (b.node_id, format!("{}:{}", b.host.as_str(), b.port)))
        .collect();
    let mut out = Vec::with_capacity(found.partitions.len());
    for p in &found.partitions {
        let what = || format!("partition {topic}/{}", p.partition_index);
        SearchError::check(p.error_code, what)?;
        let leader = addrs.get(&p.leader_id).ok_or_else(|| SearchError::Kafka {
            what: what(),
            error: "no leader (LeaderNotAvailable); retry in a moment".into(),
            code: ResponseError::LeaderNotAvailable.code(),
        })?;
        out.push((p.partition_index, leader.clone()));
    }
    out.sort_unstable();
    Ok(out)
}

/// The `[start, end)` of each partition: four ListOffsets (earliest, latest, `--since`,
/// `--until`) pipelined on one connection (one request cannot ask about a partition twice).
fn offset_ranges(
    conn: &mut Connection,
    scope: Scope,
    partitions: &[i32],
) -> Result<Vec<PartitionRange>, SearchError> {
    let version = conn.versions.list_offsets;
    let times = [
        Some(EARLIEST),
        Some(LATEST),
        scope.since_ms,
        scope.until_ms.map(|u| u.saturating_add(1)),
    ];
    let request = |time: i64| {
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(READ_COMMITTED)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(scope.topic.to_string())))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|&p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(p)
                                .with_current_leader_epoch(-1)
                                .with_timestamp(time)
                        })
                        .collect(),
                )])
    };
    for time in times.iter().flatten() {
        conn.send(&request(*time), version)?;
    }
    // answers[t][p]: the offset for time t in partition p (-1: no such record).
    let mut answers: Vec<Option<HashMap<i32, i64>>> = Vec::with_capacity(times.len());
    for time in times {
        if time.is_none() {
            answers.push(None);
            continue;
        }
        let response = conn.receive::<ListOffsetsRequest>()?;
        let mut offsets = HashMap::new();
        for topic in &response.topics {
            for p in &topic.partitions {
                SearchError::check(p.error_code, || {
                    format!("ListOffsets for {}/{}", scope.topic, p.partition_index)
                })?;
                offsets.insert(p.partition_index, p.offset);
            }
        }
        answers.push(Some(offsets));
    }
    let found = |t: usize, p: i32| -> Result<Option<i64>, SearchError> {
        let offsets = answers[t].as_ref().expect("asked");
        offsets
            .get(&p)
            .map(|&o| (o >= 0).then_some(o))
            .ok_or_else(|| SearchError::Protocol {
                what: format!("broker {}", conn.addr),
                detail: format!("ListOffsets did not answer for partition {p}"),
            })
    };
    partitions
        .iter()
        .map(|&p| {
            let low = found(0, p)?.unwrap_or(0);
            let high = found(1, p)?.unwrap_or(low);
            let since = answers[2].is_some().then(|| found(2, p)).transpose()?;
            let until = answers[3].is_some().then(|| found(3, p)).transpose()?;
            Ok(resolve_range(p, low, high, since, until))
        })
        .collect()
}

struct PartitionReader {
    shared: Shared,
    items: SyncSender<(usize, Item)>,
    index: usize,
    range: PartitionRange,
    /// The partition's fetcher and its connection, the first Fetch already sent; none when
    /// there is nothing to read.
    fetch: Option<(Fetcher, Connection, Fetching)>,
    /// Where the batches it fetches wait to be scanned, by it or another reader.
    queue: Arc<BatchQueue>,
}

/// What a partition's fetcher hands its scanner, in offset order.
enum Fetched {
    /// The records a Fetch returned (whole batches; a partial one at the end is left out),
    /// to be scanned from `offset` on, and the aborted transactions the broker listed.
    Records {
        offset: i64,
        bytes: Bytes,
        aborted: Vec<(i64, i64)>,
    },
    /// The partition reached the end it had when the search started.
    CaughtUp,
}

impl PartitionReader {
    /// Reads the partition on this one thread. Each Fetch is asked for before the answer to
    /// the previous one is scanned, so the broker sends it into the socket's buffers
    /// meanwhile and it is there to read when the scan is done. (A fetcher thread of its
    /// own per partition, handing answers over, cost more than it overlapped: 2.7 ms of a
    /// full scan's 72 ms CPU and 1.6 ms of its 50 ms wall time, in the thread hand-overs and
    /// a second response buffer per partition.)
    fn run(self) -> Result<(), SearchError> {
        let PartitionReader {
            shared,
            items,
            index,
            range,
            fetch,
            queue,
        } = self;
        let what = format!("{}/{}", shared.options.topic, range.partition);
        let mut batch_scanner =
            BatchScanner::new(&shared.options).map_err(|cause| SearchError::Batch {
                partition: what.clone(),
                cause,
            })?;
        let Some((fetcher, conn, fetching)) = fetch else {
            // Nothing to read, and not following: help the others.
            let _ = items.send((index, Item::CaughtUp));
            queue.help(&mut batch_scanner);
            return Ok(());
        };
        let mut scanner = Scanner {
            shared,
            items,
            index,
            partition: range.partition,
            what: what.into(),
            follow: fetcher.follow,
            scan_end: if fetcher.follow { i64::MAX } else { range.end },
            batch_scanner,
            queue,
            transactions: Transactions::default(),
            caught_up: false,
        };
        // Following from the end: caught up before the first fetch.
        if range.start >= range.end && !scanner.take(Fetched::CaughtUp)? {
            return Ok(());
        }
        fetcher.fetch_all(conn, |fetched| scanner.take(fetched))?;
        scanner.finish();
        // This partition is done: scan the others' batches while they are fetched.
        drop(fetching);
        scanner.queue.help(&mut scanner.batch_scanner);
        Ok(())
    }
}

/// Decodes and scans a partition's records as they are fetched: queues each answer's
/// batches, then takes their results in order (scanning queued batches meanwhile).
struct Scanner {
    shared: Shared,
    items: SyncSender<(usize, Item)>,
    index: usize,
    partition: i32,
    /// `topic/partition`, for messages.
    what: Arc<str>,
    follow: bool,
    scan_end: i64,
    batch_scanner: BatchScanner,
    queue: Arc<BatchQueue>,
    transactions: Transactions,
    caught_up: bool,
}

impl Scanner {
    fn failed(&self, cause: batch::BatchError) -> SearchError {
        SearchError::Batch {
            partition: self.what.to_string(),
            cause,
        }
    }

    /// Scans what a fetch brought; `false` when the search is over for this partition.
    fn take(&mut self, fetched: Fetched) -> Result<bool, SearchError> {
        if self.shared.stopped() {
            return Ok(false);
        }
        let (offset, bytes, aborted) = match fetched {
            Fetched::CaughtUp => {
                self.caught_up = true;
                let sent = self.items.send((self.index, Item::CaughtUp)).is_ok();
                return Ok(sent && self.follow);
            }
            Fetched::Records {
                offset,
                bytes,
                aborted,
            } => (offset, bytes, aborted),
        };
        let scanning = std::time::Instant::now();
        // Which batches to skip depends on the transaction markers before them: decided
        // here, in offset order, before any is scanned.
        self.transactions.aborted(aborted.into_iter());
        let mut jobs = Vec::new();
        for item in batch::batches(&bytes) {
            let (header, raw) = item.map_err(|cause| self.failed(cause))?;
            if header.next_offset() <= offset {
                continue;
            }
            let skip = self.transactions.skips(&header);
            if header.is_control() {
                // A marker is the batch's one record: the first window decides.
                let (transactions, mut first) = (&mut self.transactions, true);
                let decoded = self.batch_scanner.decode(&header, raw, |data, records| {
                    if std::mem::take(&mut first) {
                        transactions.marker(&header, data, records);
                    }
                    Ok(())
                });
                if let Err(cause) = decoded {
                    return Err(self.failed(cause));
                }
                continue;
            }
            if skip {
                continue;
            }
            jobs.push(Job {
                partition: self.partition,
                what: self.what.clone(),
                header,
                raw: bytes.slice_ref(raw),
                offsets: offset..self.scan_end,
            });
        }
        let tickets = self.queue.queue(jobs);
        for ticket in tickets.clone() {
            let done = match self.queue.result(ticket, &mut self.batch_scanner) {
                Ok(done) => done,
                Err(e) => {
                    self.queue.forget(tickets);
                    return Err(e);
                }
            };
            self.shared.add(&done.scanned);
            for hit in done.hits {
                if self
                    .items
                    .send((self.index, Item::Hit(Box::new(hit))))
                    .is_err()
                {
                    self.queue.forget(tickets);
                    return Ok(false);
                }
            }
        }
        tracing::debug!(
            partition = self.partition,
            offset,
            bytes = bytes.len(),
            scanned_us = scanning.elapsed().as_micros() as u64,
            "scanned"
        );
        Ok(true)
    }

    /// Says the partition is done, if a fetch has not said so.
    fn finish(&mut self) {
        if !self.caught_up {
            self.caught_up = true;
            let _ = self.items.send((self.index, Item::CaughtUp));
        }
    }
}

/// A partition's fetcher: Fetch requests from the range's start on, the next one in flight
/// while the previous answer is scanned.
struct Fetcher {
    topic: TopicName,
    partition: i32,
    range: PartitionRange,
    follow: bool,
    /// The connection's timeout, to which a caught-up fetch's long-poll is added.
    timeout: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Fetcher {
    /// Sends the first Fetch.
    fn begin(&self, conn: &mut Connection) -> Result<(), SearchError> {
        conn.set_read_timeout(self.timeout + FOLLOW_WAIT)?;
        let PartitionRange { start, end, .. } = self.range;
        let wait = if start < end {
            Duration::ZERO
        } else {
            FOLLOW_WAIT
        };
        conn.send(&self.request(start, wait), conn.versions.fetch)
    }

    /// Goes on from [`Fetcher::begin`]: fetches until the end of the range (forever with
    /// `follow`), `deliver` says to stop or the search stops.
    fn fetch_all(
        &self,
        mut conn: Connection,
        mut deliver: impl FnMut(Fetched) -> Result<bool, SearchError>,
    ) -> Result<(), SearchError> {
        let PartitionRange {
            partition,
            start,
            end,
        } = self.range;
        let version = conn.versions.fetch;
        let what = || format!("fetch from {}/{partition}", self.topic.0);
        let mut offset = start;
        let mut caught_up = start >= end;
        let mut in_flight = true;
        while !self.stop.load(std::sync::atomic::Ordering::Relaxed) {
            if !in_flight {
                let wait = if caught_up {
                    FOLLOW_WAIT
                } else {
                    Duration::ZERO
                };
                conn.send(&self.request(offset, wait), version)?;
            }
            let response = conn.receive::<FetchRequest>()?;
            in_flight = false;
            SearchError::check(response.error_code, what)?;
            let data = response
                .responses
                .iter()
                .flat_map(|t| &t.partitions)
                .find(|p| p.partition_index == partition)
                .ok_or_else(|| SearchError::Protocol {
                    what: what(),
                    detail: "the answer lacks the partition".into(),
                })?;
            if data.error_code == ResponseError::OffsetOutOfRange.code()
                && offset < data.log_start_offset
            {
                // Retention removed records since the offsets were looked up.
                offset = data.log_start_offset;
                continue;
            }
            SearchError::check(data.error_code, what)?;
            let bytes = data.records.clone().unwrap_or_default();
            let next = batch::batches(&bytes)
                .filter_map(Result::ok)
                .map(|(h, _)| h.next_offset())
                .last()
                .unwrap_or(offset)
                .max(offset);
            // Ask for the next records before handing these over: the broker reads and
            // sends them while the scanner decodes.
            if (self.follow || next < end) && next > offset {
                conn.send(&self.request(next, Duration::ZERO), version)?;
                in_flight = true;
            }
            if next == offset && !caught_up && data.high_watermark <= offset {
                // Nothing more at this offset: the partition shrank (records deleted).
                offset = end;
            } else if next == offset && !caught_up {
                return Err(SearchError::Protocol {
                    what: what(),
                    detail: format!("no records at offset {offset} below the high watermark"),
                });
            }
            if next > offset {
                let aborted = data
                    .aborted_transactions
                    .iter()
                    .flatten()
                    .map(|a| (a.producer_id.0, a.first_offset))
                    .collect();
                let records = Fetched::Records {
                    offset,
                    bytes,
                    aborted,
                };
                if !deliver(records)? {
                    return Ok(());
                }
                offset = next;
            }
            if !caught_up && offset >= end {
                caught_up = true;
                if !deliver(Fetched::CaughtUp)? || !self.follow {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn request(&self, offset: i64, wait: Duration) -> FetchRequest {
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(wait.as_millis() as i32)
            .with_min_bytes(1)
            .with_max_bytes(FETCH_MAX_BYTES)
            .with_isolation_level(READ_COMMITTED)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(self.topic.clone())
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(self.partition)
                    .with_current_leader_epoch(-1)
                    .with_fetch_offset(offset)
                    .with_log_start_offset(-1)
                    .with_partition_max_bytes(FETCH_MAX_BYTES)])])
    }
}

/// Which transactional batches to skip when reading committed: Kafka's consumer algorithm.
/// A Fetch lists the aborted transactions in its range (producer id, first offset); a
/// transactional batch of a producer whose aborted transaction began at or before it is
/// skipped, until that producer's abort marker.
#[derive(Default)]
struct Transactions {
    /// Aborted transactions not yet reached, by first offset.
    pending: std::collections::BTreeSet<(i64, i64)>,
    /// Producers inside an aborted transaction.
    aborting: std::collections::HashSet<i64>,
}

impl Transactions {
    fn aborted(&mut self, list: impl Iterator<Item = (i64, i64)>) {
        self.pending
            .extend(list.map(|(producer, first)| (first, producer)));
    }

    /// Whether the data batch `header` belongs to an aborted transaction.
    fn skips(&mut self, header: &batch::BatchHeader) -> bool {
        while let Some(&(first, producer)) = self.pending.first() {
            if first >= header.next_offset() {
                break;
            }
            self.pending.pop_first();
            self.aborting.insert(producer);
        }
        header.is_transactional() && self.aborting.contains(&header.producer_id)
    }

    /// A control batch: an abort marker (control type 0 in its record's key) ends the
    /// producer's aborted transaction.
    fn marker(&mut self, header: &batch::BatchHeader, data: &[u8], records: &[batch::Record]) {
        let kind = records
            .first()
            .and_then(|r| r.parts(data)?.key)
            .and_then(|k| data.get(k.start + 2..k.start + 4))
            .map(|t| i16::from_be_bytes([t[0], t[1]]));
        if kind == Some(0) {
            self.aborting.remove(&header.producer_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::batch::{BatchHeader, Record};

    fn header(base_offset: i64, producer_id: i64, attributes: i16) -> BatchHeader {
        BatchHeader {
            base_offset,
            len: 0,
            magic: 2,
            crc: 0,
            attributes,
            last_offset_delta: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            record_count: 1,
        }
    }

    const TRANSACTIONAL: i16 = 0x10;
    const CONTROL: i16 = 0x20;

    /// Kafka's read-committed rule: a producer's transactional batches are skipped from the
    /// first offset of its aborted transaction up to its abort marker, and no others.
    #[test]
    fn aborted_transactions_are_skipped_until_their_marker() {
        let mut t = Transactions::default();
        t.aborted([(7, 2)].into_iter());
        assert!(
            !t.skips(&header(0, 7, TRANSACTIONAL)),
            "before the aborted transaction"
        );
        assert!(!t.skips(&header(1, 9, 0)), "a plain batch");
        assert!(t.skips(&header(2, 7, TRANSACTIONAL)));
        assert!(!t.skips(&header(3, 8, TRANSACTIONAL)), "another producer");
        assert!(t.skips(&header(4, 7, TRANSACTIONAL)));
        // The abort marker: a control record whose key is (version 0, type 0).
        // Length 10, attributes, timestamp and offset deltas 0, a 4-byte key (zigzag 8),
        // a null value (zigzag -1), no headers.
        let data = [20u8, 0, 0, 0, 8, 0, 0, 0, 0, 1, 0];
        let marker = Record {
            offset: 5,
            timestamp: 0,
            span: 0..data.len(),
        };
        let control = header(5, 7, TRANSACTIONAL | CONTROL);
        t.skips(&control);
        t.marker(&control, &data, &[marker]);
        assert!(!t.skips(&header(6, 7, TRANSACTIONAL)), "after the marker");
    }
}
