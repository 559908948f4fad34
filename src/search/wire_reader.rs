//! The wire reader: finds the partitions' leaders (Metadata), resolves the offset ranges
//! (ListOffsets, by timestamp for `--since`/`--until`), then reads every partition on its own
//! thread and connection, one Fetch in flight while the previous answer is decoded and
//! scanned.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::mpsc::SyncSender;
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

use crate::client::BrokerArgs;
use crate::search::batch;
use crate::search::error::SearchError;
use crate::search::scan::scan_batch;
use crate::search::wire::Connection;
use crate::search::{resolve_range, Item, PartitionRange, Shared};

/// How long a caught-up `--follow` fetch waits at the broker for new records.
const FOLLOW_WAIT: Duration = Duration::from_millis(500);
/// Bytes asked for per fetch (a larger first batch still comes whole, KIP-74). With the
/// next fetch always in flight, round trips cost little; what costs is memory touched for
/// the first time, so the fetches are small enough for the connection to reuse a few
/// response buffers over and over (4 MiB fetches faulted in every byte a scan read: 6 %
/// more CPU, 9 % more wall time).
const FETCH_MAX_BYTES: i32 = 1 << 20;
/// The first fetch of a partition asks for less, so decoding starts while the broker still
/// reads the rest: a broker answers a fetch only once it has read all of it.
const FIRST_FETCH_BYTES: i32 = 256 << 10;
/// Read committed, as librdkafka (and so the librdkafka reader) does by default: records of
/// aborted transactions are skipped, and a partition ends at its last stable offset.
const READ_COMMITTED: i8 = 1;
/// ListOffsets' special timestamps.
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;

/// Starts a reader per partition; returns how many there are.
pub(super) fn start(
    args: &BrokerArgs,
    shared: &Shared,
    items: &SyncSender<(usize, Item)>,
) -> Result<usize, SearchError> {
    let timeout = args.timeout();
    let options = &shared.options;
    let mut bootstrap = connect_bootstrap(args)?;
    let leaders = leaders(&mut bootstrap, &options.topic, &args.brokers)?;

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
        for range in offset_ranges(&mut conn, options, &partitions)? {
            ranges.push((range, leader.to_string()));
        }
        spare.insert(leader.to_string(), conn);
    }
    ranges.sort_by_key(|(r, _)| r.partition);
    tracing::debug!(?ranges, "offsets resolved");

    for (index, (range, leader)) in ranges.iter().enumerate() {
        let reader = PartitionReader {
            shared: shared.clone(),
            items: items.clone(),
            index,
            range: *range,
            // The connection that looked up the offsets goes on to fetch.
            conn: spare.remove(leader),
            leader: leader.clone(),
            timeout,
        };
        shared.spawn(format!("search-p{}", range.partition), move || reader.run())?;
    }
    Ok(ranges.len())
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
    options: &crate::search::Options,
    partitions: &[i32],
) -> Result<Vec<PartitionRange>, SearchError> {
    let version = conn.versions.list_offsets;
    let times = [
        Some(EARLIEST),
        Some(LATEST),
        options.since_ms,
        options.until_ms.map(|u| u.saturating_add(1)),
    ];
    let request = |time: i64| {
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(READ_COMMITTED)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(options.topic.clone())))
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
                    format!("ListOffsets for {}/{}", options.topic, p.partition_index)
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
    conn: Option<Connection>,
    leader: String,
    timeout: Duration,
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
    /// Reads the partition on two threads: a fetcher that keeps the next Fetch in flight and
    /// reads its answer off the socket while this thread decodes and scans the previous
    /// one. With one thread, the broker's answer waited in a full socket buffer while the
    /// scan ran, and the scan then waited for the rest of it: a third of a full scan's wall
    /// time went to that wait.
    fn run(self) -> Result<(), SearchError> {
        let PartitionReader {
            shared,
            items,
            index,
            range,
            conn,
            leader,
            timeout,
        } = self;
        // A copy per thread: each regex copy has its own match cache (a shared one is a
        // lock taken on every search).
        let options = (*shared.options).clone();
        let follow = options.follow && options.until_ms.is_none();
        let partition = range.partition;
        if range.start >= range.end && (items.send((index, Item::CaughtUp)).is_err() || !follow) {
            return Ok(());
        }
        // A hand-over, not a queue: the fetcher holds the next answer until the scanner
        // takes it, with the Fetch after it already asked for, so that one waits in the
        // socket's buffers rather than in ours. Two response buffers per partition then
        // suffice (one scanned, one filled); every further one is 2 MiB of fresh memory the
        // kernel clears (a queue of one cost three, and 1 ms of a 44 ms full scan).
        let (fetched_tx, fetched) = std::sync::mpsc::sync_channel(0);
        let fetcher = Fetcher {
            topic: TopicName(StrBytes::from_string(options.topic.clone())),
            partition,
            range,
            follow,
            timeout,
            stop: shared.stop.clone(),
            out: fetched_tx,
        };
        shared.spawn(format!("search-f{partition}"), move || {
            let conn = match conn {
                Some(conn) => conn,
                None => Connection::connect(&leader, timeout)?,
            };
            fetcher.run(conn)
        })?;

        let scan_end = if follow { i64::MAX } else { range.end };
        let what = || format!("{}/{partition}", options.topic);
        let (mut scratch, mut records, mut candidates, mut hits) = (
            batch::Scratch::default(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        let mut transactions = Transactions::default();
        let mut caught_up = false;
        // While the first fetch is on its way: fault in the decompression buffer and make
        // this thread's matcher caches, which the first batch otherwise waits for.
        scratch.prepare().map_err(|cause| SearchError::Batch {
            partition: what(),
            cause: batch::BatchError::Buffer(cause),
        })?;
        options.matcher.scan_find(b"", 0..0);
        for fetched in fetched {
            if shared.stopped() {
                break;
            }
            let (offset, bytes, aborted) = match fetched? {
                Fetched::CaughtUp => {
                    caught_up = true;
                    if items.send((index, Item::CaughtUp)).is_err() || !follow {
                        return Ok(());
                    }
                    continue;
                }
                Fetched::Records {
                    offset,
                    bytes,
                    aborted,
                } => (offset, bytes, aborted),
            };
            let scanning = std::time::Instant::now();
            transactions.aborted(aborted.into_iter());
            for item in batch::batches(&bytes) {
                let (header, raw) = item.map_err(|cause| SearchError::Batch {
                    partition: what(),
                    cause,
                })?;
                if header.next_offset() <= offset {
                    continue;
                }
                let skip = transactions.skips(&header);
                // A batch that does not decode: corrupt (its CRC says so) or not.
                let failed = |cause| SearchError::Batch {
                    partition: what(),
                    cause: batch::check_crc(&header, raw).err().unwrap_or(cause),
                };
                let data =
                    batch::decode(&header, raw, &mut scratch, &mut records).map_err(failed)?;
                if header.is_control() {
                    transactions.marker(&header, data, &records);
                    continue;
                }
                if skip {
                    continue;
                }
                let scanned = scan_batch(
                    &options,
                    partition,
                    data,
                    &records,
                    offset..scan_end,
                    &mut candidates,
                    &mut hits,
                )
                .map_err(failed)?;
                shared.add(&scanned);
                for hit in hits.drain(..) {
                    if items.send((index, Item::Hit(Box::new(hit)))).is_err() {
                        return Ok(());
                    }
                }
            }
            tracing::debug!(
                partition,
                offset,
                bytes = bytes.len(),
                scanned_us = scanning.elapsed().as_micros() as u64,
                "scanned"
            );
        }
        if !caught_up {
            let _ = items.send((index, Item::CaughtUp));
        }
        Ok(())
    }
}

/// A partition's fetcher: Fetch requests from the range's start on, one in flight while the
/// previous answer goes to the scanner.
struct Fetcher {
    topic: TopicName,
    partition: i32,
    range: PartitionRange,
    follow: bool,
    /// The connection's timeout, to which a caught-up fetch's long-poll is added.
    timeout: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    out: SyncSender<Result<Fetched, SearchError>>,
}

impl Fetcher {
    /// Fetches until the end of the range (forever with `follow`), the scanner hangs up or
    /// the search stops. Its error goes to the scanner.
    fn run(self, conn: Connection) -> Result<(), SearchError> {
        if let Err(e) = self.fetch_all(conn) {
            let _ = self.out.send(Err(e));
        }
        Ok(())
    }

    fn fetch_all(&self, mut conn: Connection) -> Result<(), SearchError> {
        let PartitionRange {
            partition,
            start,
            end,
        } = self.range;
        conn.set_read_timeout(self.timeout + FOLLOW_WAIT)?;
        let version = conn.versions.fetch;
        let what = || format!("fetch from {}/{partition}", self.topic.0);
        let mut offset = start;
        let mut caught_up = start >= end;
        let mut in_flight = false;
        while !self.stop.load(std::sync::atomic::Ordering::Relaxed) {
            if !in_flight {
                let wait = if caught_up {
                    FOLLOW_WAIT
                } else {
                    Duration::ZERO
                };
                let first = offset == start && !caught_up;
                let max_bytes = if first {
                    FIRST_FETCH_BYTES
                } else {
                    FETCH_MAX_BYTES
                };
                conn.send(&self.request(offset, wait, max_bytes), version)?;
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
                conn.send(
                    &self.request(next, Duration::ZERO, FETCH_MAX_BYTES),
                    version,
                )?;
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
                if self.out.send(Ok(records)).is_err() {
                    return Ok(());
                }
                offset = next;
            }
            if !caught_up && offset >= end {
                caught_up = true;
                if self.out.send(Ok(Fetched::CaughtUp)).is_err() || !self.follow {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn request(&self, offset: i64, wait: Duration, max_bytes: i32) -> FetchRequest {
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(wait.as_millis() as i32)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
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
                    .with_partition_max_bytes(max_bytes)])])
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
