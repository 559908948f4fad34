//! rill's own idempotent Kafka producer (plaintext): records go straight into per-partition
//! record batches ([`super::batch`]) and out in pipelined Produce requests, one connection
//! per partition leader.
//!
//! What it does, as librdkafka and the Java client do it:
//! - **Metadata**: the bootstrap brokers are asked for each topic's partitions and leaders
//!   (allowing auto-creation); records wait, unassigned, until a topic's metadata is known.
//!   Leader errors and connection failures refresh it.
//! - **Partitioning**: Kafka's murmur2 of the key ([`super::partitioner`]).
//! - **Idempotence**: a producer id from InitProducerId; every partition's batches carry
//!   consecutive sequence numbers, acks=all. A batch is resent with the same sequence after a
//!   retriable error (leader moved, timeout, connection lost), after every batch of that
//!   partition still in flight has answered, so the broker sees them in order.
//!   DUPLICATE_SEQUENCE_NUMBER means the broker already has the batch: success.
//!   OUT_OF_ORDER_SEQUENCE_NUMBER (with no earlier failure to explain it) and
//!   UNKNOWN_PRODUCER_ID reset the producer: once nothing is in flight, a new producer id
//!   and every unacknowledged batch renumbered from 0 (as librdkafka does; a batch the
//!   broker may already have then comes twice, at-least-once).
//! - **Too large**: MESSAGE_TOO_LARGE splits a batch into single records (same sequence
//!   numbers); a single record the broker still refuses fails with that error.
//! - **Delivery timeout**: a record not acknowledged within `delivery_timeout` fails and
//!   comes back to the caller ([`DeliverySink`]), as librdkafka's `message.timeout.ms` does;
//!   so does every record on [`WireProducer::purge`].
//!
//! Threads: the caller's thread appends records (under a short lock); a *writer* per leader
//! takes batches when full, after the linger, or at once when its connection is idle,
//! compresses them and writes the requests; a *reader* per connection handles the answers
//! and reports deliveries; a *housekeeper* fetches metadata and producer ids, expires
//! records and starts writers.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, MetadataRequest, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::batch::{self, BatchBuilder, Compression, OwnedRecord, ProducerStamp, RecordRef};
use super::partitioner::partition_of;
use super::wire::{self, Connection, Framer, Pending, WireError};

/// The client id in requests.
const CLIENT_ID: &str = "rill-agent";
/// The versions this producer speaks: Produce v3 is the first with record batches (magic
/// 2); v9 the last before Kafka 4 changes; Metadata as `rill search` speaks it.
const SPOKEN: [(ApiKey, i16, i16); 3] = [
    (ApiKey::Produce, 3, 9),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::InitProducerId, 0, 4),
];
const PRODUCE: usize = 0;
const METADATA: usize = 1;
const INIT_PRODUCER_ID: usize = 2;

/// A batch is closed at this many uncompressed bytes (one record larger than this gets a
/// batch of its own): large enough that the per-request work is small, small enough that a
/// few in flight fit the agent's memory budget.
const BATCH_BYTES: usize = 256 * 1024;
/// What records may hold in memory, uncompressed, from `send` until acknowledged; past it
/// `send` answers [`SendError::QueueFull`].
const MAX_BUFFERED_BYTES: usize = 2 * 1024 * 1024;
/// Spare buffers kept for reuse, per kind. Buffers are recycled rather than freed: a
/// batch buffer is filled on the sending thread and let go on a writer or reader thread,
/// and the allocator kept tens of MiB of such cross-thread frees around under load.
const SPARE_BUFFERS: usize = 4;
/// Records held before their topic's metadata is known (at start-up), at most.
const MAX_UNASSIGNED_BYTES: usize = 256 * 1024;
/// Produce requests in flight per connection: Kafka keeps idempotent order for up to 5.
const MAX_IN_FLIGHT: usize = 5;
/// A partly filled batch waits this long for more records while its connection is busy.
const LINGER: Duration = Duration::from_millis(5);
/// The broker's time to replicate a batch (acks=all) before it answers REQUEST_TIMED_OUT.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Connect and metadata timeouts.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a retriable error or a failed connection; doubles up to the maximum.
const BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How often the metadata is fetched without a reason (as librdkafka is configured).
const METADATA_REFRESH: Duration = Duration::from_secs(300);
/// The housekeeper's wake-up while nothing is pending.
const IDLE_WAKE: Duration = Duration::from_millis(250);

/// Settings of a [`WireProducer`].
#[derive(Debug, Clone)]
pub struct WireConfig {
    /// The bootstrap brokers, `host:port`, comma-separated.
    pub brokers: String,
    pub compression: Compression,
    /// A record not acknowledged within this time fails (and is given back).
    pub delivery_timeout: Duration,
}

/// A record given back to its sender.
#[derive(Debug)]
pub struct Failed {
    pub topic: Arc<str>,
    pub record: OwnedRecord,
    pub error: String,
    /// Given back by [`WireProducer::purge`], not by a failure.
    pub purged: bool,
}

/// Where deliveries are reported, from the producer's threads.
pub trait DeliverySink: Send + Sync {
    /// These records (their opaques, in send order per partition) were acknowledged.
    fn acked(&self, opaques: &[usize]);
    /// This record failed or was purged.
    fn failed(&self, opaque: usize, failed: Failed);
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the producer's queue is full")]
    QueueFull,
    #[error("a record of {size} bytes is larger than the producer accepts ({max})")]
    TooLarge { size: usize, max: usize },
    #[error("the producer is closed")]
    Closed,
}

#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    #[error("bad broker list {0:?}: expected host:port[,host:port...]")]
    Brokers(String),
    #[error("cannot start a producer thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// The producer. Dropping it without [`WireProducer::close`] leaves its threads running
/// until the process ends.
pub struct WireProducer {
    inner: Arc<Inner>,
}

struct Inner {
    config: WireConfig,
    bootstrap: Vec<String>,
    state: Mutex<State>,
    /// Wakes writers (batches ready, slots free) and the housekeeper.
    wake: Condvar,
    sink: Arc<dyn DeliverySink>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    max_record_bytes: usize,
}

#[derive(Default)]
struct State {
    topics: HashMap<Arc<str>, Topic>,
    nodes: HashMap<i32, Node>,
    /// None until InitProducerId answered (and again after a reset).
    producer: Option<(i64, i16)>,
    /// A reset is due: nothing is claimed until nothing is in flight and a new producer id
    /// renumbered every batch.
    reset: bool,
    metadata_wanted: bool,
    buffered: usize,
    closing: bool,
    alloc: Alloc,
}

/// Batch ids, and the buffers of finished batches for the next ones.
#[derive(Default)]
struct Alloc {
    next_batch: u64,
    records: Vec<Vec<u8>>,
    wires: Vec<Vec<u8>>,
    opaques: Vec<Vec<usize>>,
}

impl Alloc {
    fn batch_id(&mut self) -> u64 {
        self.next_batch += 1;
        self.next_batch
    }

    fn records(&mut self) -> BatchBuilder {
        match self.records.pop() {
            Some(b) => BatchBuilder::from_buffer(b),
            None => BatchBuilder::from_buffer(Vec::with_capacity(BATCH_BYTES + 4096)),
        }
    }

    fn keep_records(&mut self, b: BatchBuilder) {
        if self.records.len() < SPARE_BUFFERS {
            self.records.push(b.into_buffer());
        }
    }

    fn keep_wire(&mut self, w: Bytes) {
        if self.wires.len() < SPARE_BUFFERS {
            if let Ok(w) = w.try_into_mut() {
                self.wires.push(w.into());
            }
        }
    }

    fn opaques(&mut self) -> Vec<usize> {
        self.opaques.pop().unwrap_or_default()
    }

    fn keep_opaques(&mut self, mut o: Vec<usize>) {
        if self.opaques.len() < SPARE_BUFFERS {
            o.clear();
            self.opaques.push(o);
        }
    }
}

struct Topic {
    partitions: Vec<Partition>,
    /// Records sent before the topic's metadata was known, in order.
    unassigned: VecDeque<Unassigned>,
    /// Why the metadata is missing, for the delivery error.
    error: Option<String>,
}

struct Unassigned {
    record: OwnedRecord,
    size: usize,
    opaque: usize,
    since: Instant,
}

struct Partition {
    index: i32,
    leader: i32,
    open: BatchBuilder,
    open_opaques: Vec<usize>,
    /// The records' share of `State::buffered`.
    open_bytes: usize,
    open_since: Instant,
    /// Sealed batches not yet acknowledged, in sequence order.
    batches: VecDeque<Batch>,
    next_seq: i32,
    /// The node this partition's batches in flight (those with `in_flight` set) went to: all
    /// on one.
    in_flight_node: i32,
    /// A batch failed retriably: nothing is sent until every batch in flight answered;
    /// then the batches are sent again in order, from the first unacknowledged one.
    blocked: bool,
    retry_at: Option<Instant>,
}

struct Batch {
    id: u64,
    /// The records until the batch is first sent (then compressed into `wire`); shared
    /// with the writer compressing them, so a batch failed meanwhile still has them.
    records: Option<Arc<BatchBuilder>>,
    wire: Option<Bytes>,
    count: i32,
    base_seq: i32,
    opaques: Vec<usize>,
    bytes: usize,
    since: Instant,
    in_flight: bool,
}

struct Node {
    addr: String,
    /// The connection's socket, to shut it down (close, a stuck request).
    stream: Option<TcpStream>,
    /// Requests sent on the current connection, oldest first.
    requests: VecDeque<Request>,
    generation: u64,
}

struct Request {
    pending: Pending,
    sent: Instant,
    /// (topic, partition index, batch id) of each batch in the request.
    batches: Vec<(Arc<str>, i32, u64)>,
}

impl Request {
    /// The request carrying `claimed`, sent now.
    fn new(pending: Pending, claimed: &[Claimed]) -> Request {
        Request {
            pending,
            sent: Instant::now(),
            batches: claimed
                .iter()
                .map(|c| (Arc::clone(&c.topic), c.partition, c.id))
                .collect(),
        }
    }
}

/// What to tell the sink once the lock is released.
#[derive(Default)]
struct Reports {
    acked: Vec<Vec<usize>>,
    failed: Vec<(usize, Failed)>,
}

impl Reports {
    /// Reports to the sink; returns the acknowledged opaques' buffers, for reuse.
    fn deliver(self, sink: &dyn DeliverySink) -> Vec<Vec<usize>> {
        for opaques in &self.acked {
            sink.acked(opaques);
        }
        for (opaque, failed) in self.failed {
            sink.failed(opaque, failed);
        }
        self.acked
    }
}

impl WireProducer {
    /// Starts the producer's housekeeper (writers start once leaders are known). Nothing
    /// is connected yet: an absent broker shows as records failing after the delivery
    /// timeout, as with librdkafka.
    pub fn start(
        config: WireConfig,
        max_record_bytes: usize,
        sink: Arc<dyn DeliverySink>,
    ) -> Result<WireProducer, ProducerError> {
        let bootstrap: Vec<String> = config
            .brokers
            .split(',')
            .map(|b| b.trim().to_string())
            .filter(|b| !b.is_empty())
            .collect();
        if bootstrap.is_empty() || bootstrap.iter().any(|b| !b.contains(':')) {
            return Err(ProducerError::Brokers(config.brokers.clone()));
        }
        let inner = Arc::new(Inner {
            config,
            bootstrap,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            sink,
            threads: Mutex::new(Vec::new()),
            max_record_bytes,
        });
        let hk = Arc::clone(&inner);
        let handle = std::thread::Builder::new()
            .name("rill-producer".into())
            .spawn(move || Housekeeper::new(hk).run())
            .map_err(ProducerError::Thread)?;
        inner.threads().push(handle);
        Ok(WireProducer { inner })
    }

    /// Appends a record for `topic`. `QueueFull` asks the caller to wait a moment.
    pub fn send(&self, topic: &str, rec: &RecordRef<'_>, opaque: usize) -> Result<(), SendError> {
        let size = rec.size_hint();
        let max = self.inner.max_record_bytes;
        if size > max + batch::RECORD_OVERHEAD + 1024 {
            return Err(SendError::TooLarge { size, max });
        }
        let mut st = self.inner.lock();
        if st.closing {
            return Err(SendError::Closed);
        }
        if st.buffered > 0 && st.buffered + size > MAX_BUFFERED_BYTES {
            return Err(SendError::QueueFull);
        }
        let State {
            topics,
            metadata_wanted,
            alloc,
            buffered,
            ..
        } = &mut *st;
        if !topics.contains_key(topic) {
            *metadata_wanted = true;
            self.inner.wake.notify_all();
            topics.insert(
                Arc::from(topic),
                Topic {
                    partitions: Vec::new(),
                    unassigned: VecDeque::new(),
                    error: None,
                },
            );
        }
        let Some(topic) = topics.get_mut(topic) else {
            return Err(SendError::Closed);
        };
        if topic.partitions.is_empty() || !topic.unassigned.is_empty() {
            // Records waiting for their topic's metadata are held one by one (a few
            // allocations each): only a little of them.
            let waiting: usize = topic.unassigned.iter().map(|u| u.size).sum();
            if !topic.unassigned.is_empty() && waiting + size > MAX_UNASSIGNED_BYTES {
                return Err(SendError::QueueFull);
            }
            *buffered += size;
            topic.unassigned.push_back(Unassigned {
                record: owned(rec),
                size,
                opaque,
                since: Instant::now(),
            });
            return Ok(());
        }
        *buffered += size;
        let n = partition_of(rec.key, topic.partitions.len());
        let part = &mut topic.partitions[n];
        if part.append(rec, size, opaque, alloc) {
            self.inner.wake.notify_all();
        }
        Ok(())
    }

    /// Gives back every record not yet sent (and with `in_flight`, those sent and not yet
    /// acknowledged too) as failed with `purged` set.
    pub fn purge(&self, in_flight: bool) {
        let mut reports = Reports::default();
        {
            let mut st = self.inner.lock();
            st.purge(in_flight, &mut reports);
        }
        self.inner.wake.notify_all();
        reports.deliver(&*self.inner.sink);
    }

    /// Stops the producer's threads; what is not acknowledged is given back (purged).
    pub fn close(&self) {
        let mut reports = Reports::default();
        {
            let mut st = self.inner.lock();
            st.closing = true;
            st.purge(true, &mut reports);
        }
        self.inner.wake.notify_all();
        reports.deliver(&*self.inner.sink);
        // Writers may start readers while we join: take the list until it stays empty.
        loop {
            let threads: Vec<JoinHandle<()>> = std::mem::take(&mut *self.inner.threads());
            if threads.is_empty() {
                break;
            }
            for t in threads {
                if t.join().is_err() {
                    tracing::error!("a producer thread panicked");
                }
            }
        }
    }
}

fn owned(rec: &RecordRef<'_>) -> OwnedRecord {
    OwnedRecord {
        key: rec.key.to_vec(),
        value: rec.value.to_vec(),
        headers: rec
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect(),
        timestamp: rec.timestamp,
    }
}

fn borrowed(rec: &OwnedRecord, f: impl FnOnce(&RecordRef<'_>)) {
    let headers: Vec<(&str, &[u8])> = rec
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    f(&RecordRef {
        key: &rec.key,
        value: &rec.value,
        headers: &headers,
        timestamp: rec.timestamp,
    });
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent if a holder panicked: every change is made whole
        // under the lock.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn threads(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State>, timeout: Duration) -> MutexGuard<'a, State> {
        match self.wake.wait_timeout(guard, timeout) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        }
    }

    fn spawn(self: &Arc<Self>, name: String, f: impl FnOnce(Arc<Inner>) + Send + 'static) {
        let inner = Arc::clone(self);
        match std::thread::Builder::new()
            .name(name)
            .spawn(move || f(inner))
        {
            Ok(h) => self.threads().push(h),
            Err(e) => tracing::error!(error = %e, "cannot start a producer thread"),
        }
    }
}

impl Partition {
    fn new(index: i32, leader: i32) -> Partition {
        Partition {
            index,
            leader,
            open: BatchBuilder::default(),
            open_opaques: Vec::new(),
            open_bytes: 0,
            open_since: Instant::now(),
            batches: VecDeque::new(),
            next_seq: 0,
            in_flight_node: -1,
            blocked: false,
            retry_at: None,
        }
    }

    /// Appends a record; true when a writer should look (a batch started or filled).
    fn append(
        &mut self,
        rec: &RecordRef<'_>,
        size: usize,
        opaque: usize,
        alloc: &mut Alloc,
    ) -> bool {
        let started = self.open.is_empty();
        if started {
            self.open = alloc.records();
            self.open_opaques = alloc.opaques();
            self.open_since = Instant::now();
        }
        self.open.append(rec);
        self.open_opaques.push(opaque);
        self.open_bytes += size;
        if self.open.bytes() >= BATCH_BYTES {
            self.seal(alloc);
            return true;
        }
        started
    }

    /// Closes the open batch: it gets its sequence numbers and waits for its writer.
    fn seal(&mut self, alloc: &mut Alloc) {
        if self.open.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.open);
        let count = records.count();
        self.batches.push_back(Batch {
            id: alloc.batch_id(),
            count,
            base_seq: self.next_seq,
            bytes: std::mem::take(&mut self.open_bytes),
            records: Some(Arc::new(records)),
            wire: None,
            opaques: std::mem::take(&mut self.open_opaques),
            since: self.open_since,
            in_flight: false,
        });
        self.next_seq = self.next_seq.wrapping_add(count);
    }

    /// Whether a batch of this partition is claimed: being sent, or waiting for its answer.
    fn any_in_flight(&self) -> bool {
        self.batches.iter().any(|b| b.in_flight)
    }

    /// Gives sequence numbers from 0 again (a new producer id).
    fn renumber(&mut self, stamp: (i64, i16)) {
        let mut seq = 0i32;
        for b in &mut self.batches {
            b.base_seq = seq;
            seq = seq.wrapping_add(b.count);
            if let Some(wire) = b.wire.take() {
                let mut w = wire.to_vec();
                batch::restamp(
                    &mut w,
                    ProducerStamp {
                        id: stamp.0,
                        epoch: stamp.1,
                        base_sequence: b.base_seq,
                    },
                );
                b.wire = Some(Bytes::from(w));
            }
        }
        self.next_seq = seq;
        self.blocked = false;
        self.retry_at = None;
    }
}

/// A batch's records, decoded back for the caller.
fn records_of(b: &Batch) -> Vec<OwnedRecord> {
    let decoded = match (&b.records, &b.wire) {
        (Some(r), _) => r
            .seal(
                Compression::None,
                ProducerStamp {
                    id: -1,
                    epoch: -1,
                    base_sequence: -1,
                },
            )
            .and_then(|w| batch::decode(&w)),
        (None, Some(w)) => batch::decode(w),
        (None, None) => Ok(Vec::new()),
    };
    match decoded {
        Ok(r) => r,
        Err(e) => {
            // Cannot happen for batches we encoded; said loudly if it does.
            tracing::error!(error = %e, records = b.count, "cannot decode a failed batch: its records are lost from memory (they are still in their files)");
            Vec::new()
        }
    }
}

impl State {
    /// Fails a batch's records.
    fn fail_batch(
        &mut self,
        topic: &Arc<str>,
        b: Batch,
        error: &str,
        purged: bool,
        reports: &mut Reports,
    ) {
        self.buffered = self.buffered.saturating_sub(b.bytes);
        for (rec, opaque) in records_of(&b).into_iter().zip(b.opaques) {
            reports.failed.push((
                opaque,
                Failed {
                    topic: Arc::clone(topic),
                    record: rec,
                    error: error.to_string(),
                    purged,
                },
            ));
        }
    }

    fn purge(&mut self, in_flight: bool, reports: &mut Reports) {
        let mut removed = Vec::new();
        let mut failed_unassigned = Vec::new();
        for (name, topic) in &mut self.topics {
            for u in topic.unassigned.drain(..) {
                failed_unassigned.push((Arc::clone(name), u));
            }
            for p in &mut topic.partitions {
                p.seal(&mut self.alloc);
                let mut keep = VecDeque::new();
                for b in p.batches.drain(..) {
                    if b.in_flight && !in_flight {
                        keep.push_back(b);
                    } else {
                        removed.push((Arc::clone(name), b));
                    }
                }
                p.batches = keep;
            }
        }
        if in_flight {
            for node in self.nodes.values_mut() {
                node.requests.clear();
                node.generation += 1;
                if let Some(s) = node.stream.take() {
                    let _ = s.shutdown(Shutdown::Both);
                }
            }
        }
        if !removed.is_empty() {
            // Sequence numbers were handed out for these: start afresh.
            self.reset = true;
        }
        for (topic, b) in removed {
            self.fail_batch(&topic, b, "purged", true, reports);
        }
        for (topic, u) in failed_unassigned {
            self.fail_unassigned(topic, u, "purged".into(), true, reports);
        }
    }

    /// Fails a record that never got a partition.
    fn fail_unassigned(
        &mut self,
        topic: Arc<str>,
        u: Unassigned,
        error: String,
        purged: bool,
        reports: &mut Reports,
    ) {
        self.buffered = self.buffered.saturating_sub(u.size);
        let failed = Failed {
            topic,
            record: u.record,
            error,
            purged,
        };
        reports.failed.push((u.opaque, failed));
    }

    /// Claims the batches a writer of `node` sends next: per partition it leads, the first
    /// unsent batch, or its open batch when full, lingered, or the connection is idle.
    fn claim(&mut self, node: i32, now: Instant) -> Vec<Claimed> {
        let mut out = Vec::new();
        let Some(stamp) = self.producer.filter(|_| !self.reset) else {
            return out;
        };
        let idle = self.nodes.get(&node).is_none_or(|n| n.requests.is_empty());
        let State { topics, alloc, .. } = self;
        for (name, topic) in topics.iter_mut() {
            for p in &mut topic.partitions {
                if p.leader != node || (p.any_in_flight() && p.in_flight_node != node) {
                    continue;
                }
                if p.blocked {
                    if p.any_in_flight() || p.retry_at.is_some_and(|t| now < t) {
                        continue;
                    }
                    p.blocked = false;
                    p.retry_at = None;
                }
                if !p.batches.iter().any(|b| !b.in_flight)
                    && !p.open.is_empty()
                    && (idle || now.duration_since(p.open_since) >= LINGER)
                {
                    p.seal(alloc);
                }
                let Some(b) = p.batches.iter_mut().find(|b| !b.in_flight) else {
                    continue;
                };
                b.in_flight = true;
                p.in_flight_node = node;
                out.push(Claimed {
                    topic: Arc::clone(name),
                    partition: p.index,
                    id: b.id,
                    stamp: ProducerStamp {
                        id: stamp.0,
                        epoch: stamp.1,
                        base_sequence: b.base_seq,
                    },
                    records: b.records.clone(),
                    wire: b.wire.clone(),
                });
            }
        }
        out
    }

    /// How long until an open batch led by `node` lingered enough, if one is open.
    fn next_linger(&self, node: i32, now: Instant) -> Option<Duration> {
        self.topics
            .values()
            .flat_map(|t| &t.partitions)
            .filter(|p| p.leader == node && !p.open.is_empty())
            .map(|p| LINGER.saturating_sub(now.duration_since(p.open_since)))
            .min()
    }

    fn batch_mut(
        &mut self,
        topic: &str,
        partition: i32,
        id: u64,
    ) -> Option<(&mut Partition, usize)> {
        let p = self
            .topics
            .get_mut(topic)?
            .partitions
            .iter_mut()
            .find(|p| p.index == partition)?;
        let i = p.batches.iter().position(|b| b.id == id)?;
        Some((p, i))
    }

    /// A connection ended: its batches in flight are sent again (in order, same sequence
    /// numbers) once a connection to the leader is back.
    fn connection_lost(&mut self, node: i32, generation: u64) {
        let Some(n) = self.nodes.get_mut(&node) else {
            return;
        };
        if n.generation != generation {
            return;
        }
        n.generation += 1;
        // The reader may still wait on the socket: wake it (it sees the new generation).
        if let Some(s) = n.stream.take() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let requests = std::mem::take(&mut n.requests);
        for r in requests {
            self.unclaim(r.batches);
        }
        self.metadata_wanted = true;
    }

    /// A producer id is due: none yet, or a reset once nothing is in flight (answers to
    /// the old id must not be mistaken for answers to the new one).
    fn wants_producer_id(&self) -> bool {
        self.producer.is_none()
            || (self.reset
                && !self
                    .topics
                    .values()
                    .flat_map(|t| &t.partitions)
                    .any(Partition::any_in_flight))
    }

    /// Gives claimed batches back, to be sent again (in order, same sequence numbers) after
    /// a pause. A claim is its batch's `in_flight` flag, so a batch failed or purged meanwhile
    /// holds nothing back; one never given back would hold its partition and any producer-id
    /// reset forever.
    fn unclaim(&mut self, batches: Vec<(Arc<str>, i32, u64)>) {
        for (topic, partition, id) in batches {
            if let Some((p, i)) = self.batch_mut(&topic, partition, id) {
                p.batches[i].in_flight = false;
                p.blocked = true;
                p.retry_at = Some(Instant::now() + BACKOFF);
            }
        }
    }

    /// Records a request about to be written on `node`'s connection `generation`. False
    /// when that connection was given up while the writer compressed the batches (lost,
    /// stuck, purged): its requests were given back with it, and so are these claims now.
    fn record_request(&mut self, node: i32, generation: u64, request: Request) -> bool {
        match self
            .nodes
            .get_mut(&node)
            .filter(|n| n.generation == generation)
        {
            Some(n) => {
                n.requests.push_back(request);
                true
            }
            None => {
                self.unclaim(request.batches);
                false
            }
        }
    }
}

/// A batch a writer took, to compress (first time) and send.
struct Claimed {
    topic: Arc<str>,
    partition: i32,
    id: u64,
    stamp: ProducerStamp,
    records: Option<Arc<BatchBuilder>>,
    wire: Option<Bytes>,
}

/// The writer of one leader: connects, takes batches, writes Produce requests.
fn writer(inner: Arc<Inner>, node: i32) {
    let mut backoff = BACKOFF;
    loop {
        let addr = {
            let st = inner.lock();
            if st.closing {
                return;
            }
            match st.nodes.get(&node) {
                Some(n) => n.addr.clone(),
                None => return,
            }
        };
        let conn = match Connection::connect(&addr, CONNECT_TIMEOUT, CLIENT_ID, &SPOKEN) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, node, "cannot connect to a partition leader; retrying");
                let mut st = inner.lock();
                st.metadata_wanted = true;
                inner.wake.notify_all();
                let until = Instant::now() + backoff;
                while !st.closing && Instant::now() < until {
                    st = inner.wait(st, until.saturating_duration_since(Instant::now()));
                }
                if st.closing {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let version = conn.version(PRODUCE);
        let streams = conn
            .stream()
            .try_clone()
            .and_then(|w| Ok((w, conn.stream().try_clone()?)));
        let (mut out, reader_stream) = match streams {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, node, "cannot use the connection to a partition leader");
                std::thread::sleep(backoff);
                continue;
            }
        };
        if let Err(e) = out
            .set_write_timeout(Some(REQUEST_TIMEOUT))
            .and_then(|()| reader_stream.set_read_timeout(None))
        {
            tracing::warn!(error = %e, node, "cannot set socket timeouts");
        }
        let generation = {
            let mut st = inner.lock();
            if st.closing {
                return;
            }
            let Some(n) = st.nodes.get_mut(&node) else {
                return;
            };
            n.generation += 1;
            n.stream = out.try_clone().ok();
            let generation = n.generation;
            // Nothing is left of the last connection (it was given up with its requests);
            // were anything left, it goes back to be sent again rather than be forgotten.
            for r in std::mem::take(&mut n.requests) {
                st.unclaim(r.batches);
            }
            generation
        };
        backoff = BACKOFF;
        tracing::debug!(node, addr = %addr, "connected to a partition leader");
        inner.spawn(format!("rill-producer-r{node}"), move |inner| {
            reader(inner, node, generation, reader_stream)
        });
        drop(conn);
        let mut framer = Framer::new(CLIENT_ID);
        if !write_loop(&inner, node, generation, &mut out, &mut framer, version) {
            return;
        }
    }
}

/// Takes and writes batches until the connection ends (true: reconnect) or the producer
/// closes (false).
fn write_loop(
    inner: &Arc<Inner>,
    node: i32,
    generation: u64,
    out: &mut TcpStream,
    framer: &mut Framer,
    version: i16,
) -> bool {
    loop {
        let (mut claimed, mut spare_wires) = {
            let mut st = inner.lock();
            loop {
                if st.closing {
                    return false;
                }
                let Some(n) = st.nodes.get(&node) else {
                    return false;
                };
                if n.generation != generation {
                    return true;
                }
                let now = Instant::now();
                if n.requests.len() < MAX_IN_FLIGHT {
                    let c = st.claim(node, now);
                    if !c.is_empty() {
                        break (c, std::mem::take(&mut st.alloc.wires));
                    }
                }
                let wait = st
                    .next_linger(node, now)
                    .unwrap_or(IDLE_WAKE)
                    .max(Duration::from_millis(1));
                st = inner.wait(st, wait);
            }
        };
        let codec = inner.config.compression;
        let mut sealed_now = Vec::new();
        let mut used_records = Vec::new();
        for c in &mut claimed {
            if c.wire.is_none() {
                let Some(records) = c.records.take() else {
                    continue;
                };
                let out = spare_wires.pop().unwrap_or_default();
                match records.seal_into(out, codec, c.stamp) {
                    Ok(w) => {
                        let w = Bytes::from(w);
                        sealed_now.push((c.id, w.clone()));
                        c.wire = Some(w);
                    }
                    Err(e) => {
                        // Compression of bytes in memory does not fail; if it does, send
                        // them uncompressed rather than lose them.
                        tracing::error!(error = %e, "cannot compress a batch; sending it uncompressed");
                        if let Ok(w) = records.seal(Compression::None, c.stamp) {
                            let w = Bytes::from(w);
                            sealed_now.push((c.id, w.clone()));
                            c.wire = Some(w);
                        }
                    }
                }
                used_records.push(records);
            }
        }
        let mut topic_data: Vec<TopicProduceData> = Vec::new();
        let mut size = 0;
        for c in &claimed {
            let Some(wire) = &c.wire else { continue };
            size += wire.len();
            let part = PartitionProduceData::default()
                .with_index(c.partition)
                .with_records(Some(wire.clone()));
            match topic_data
                .iter_mut()
                .find(|t| t.name.0.as_str() == &*c.topic)
            {
                Some(t) => t.partition_data.push(part),
                None => topic_data.push(
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(c.topic.to_string())))
                        .with_partition_data(vec![part]),
                ),
            }
        }
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(REQUEST_TIMEOUT.as_millis() as i32)
            .with_topic_data(topic_data);
        let framed = framer.frame(&request, version, size);
        {
            let mut st = inner.lock();
            for (id, w) in sealed_now {
                if let Some(c) = claimed.iter().find(|c| c.id == id) {
                    if let Some((p, i)) = st.batch_mut(&c.topic, c.partition, id) {
                        p.batches[i].wire = Some(w);
                        p.batches[i].records = None;
                    }
                }
            }
            for r in used_records {
                if let Ok(b) = Arc::try_unwrap(r) {
                    st.alloc.keep_records(b);
                }
            }
            st.alloc.wires.append(&mut spare_wires);
            let pending = match &framed {
                Ok((_, pending)) => *pending,
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode a Produce request");
                    Pending {
                        correlation: -1,
                        key: ApiKey::Produce,
                        version,
                    }
                }
            };
            if !st.record_request(node, generation, Request::new(pending, &claimed)) {
                inner.wake.notify_all();
                return !st.closing;
            }
            if framed.is_err() {
                // Its batches go back with the connection, to be encoded again.
                st.connection_lost(node, generation);
                inner.wake.notify_all();
                return true;
            }
        }
        let Ok((frame, _)) = framed else { return true };
        if let Err(e) = out.write_all(&frame) {
            tracing::debug!(error = %e, node, "cannot write to a partition leader; reconnecting");
            let _ = out.shutdown(Shutdown::Both);
            let mut st = inner.lock();
            st.connection_lost(node, generation);
            inner.wake.notify_all();
            return true;
        }
    }
}

/// What an error code in a Produce answer means for its batch.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Acked,
    /// Send it again (same sequence numbers), after a pause.
    Retry {
        refresh_metadata: bool,
    },
    /// The producer id is no longer good: reset, then send again.
    Reset,
    /// Too large: split, or fail when it is one record.
    TooLarge,
    /// Refused for good.
    Fail,
}

fn outcome(code: i16, blocked: bool) -> Outcome {
    use ResponseError as E;
    match ResponseError::try_from_code(code) {
        None if code == 0 => Outcome::Acked,
        Some(E::DuplicateSequenceNumber) => Outcome::Acked,
        Some(
            E::NotLeaderOrFollower
            | E::LeaderNotAvailable
            | E::UnknownTopicOrPartition
            | E::NotEnoughReplicas
            | E::NotEnoughReplicasAfterAppend
            | E::FencedLeaderEpoch
            | E::UnknownLeaderEpoch
            | E::KafkaStorageError,
        ) => Outcome::Retry {
            refresh_metadata: true,
        },
        Some(
            E::RequestTimedOut
            | E::NetworkException
            | E::CorruptMessage
            | E::ThrottlingQuotaExceeded
            | E::ConcurrentTransactions,
        ) => Outcome::Retry {
            refresh_metadata: false,
        },
        // An earlier batch failed and was not written: this one is out of order because
        // of it, and goes again after it.
        Some(E::OutOfOrderSequenceNumber) if blocked => Outcome::Retry {
            refresh_metadata: false,
        },
        Some(E::OutOfOrderSequenceNumber | E::UnknownProducerId | E::InvalidProducerEpoch) => {
            Outcome::Reset
        }
        Some(E::MessageTooLarge | E::RecordListTooLarge) => Outcome::TooLarge,
        _ => Outcome::Fail,
    }
}

/// The reader of one connection: answers in order, deliveries reported.
fn reader(inner: Arc<Inner>, node: i32, generation: u64, mut stream: TcpStream) {
    loop {
        let frame = wire::read_frame(&mut stream);
        let mut st = inner.lock();
        let Some(n) = st
            .nodes
            .get_mut(&node)
            .filter(|n| n.generation == generation)
        else {
            return;
        };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                if !st.closing {
                    tracing::debug!(error = %e, node, "connection to a partition leader lost; resending what was in flight");
                }
                st.connection_lost(node, generation);
                inner.wake.notify_all();
                return;
            }
        };
        let Some(request) = n.requests.pop_front() else {
            tracing::warn!(node, "an answer to no request; reconnecting");
            st.connection_lost(node, generation);
            inner.wake.notify_all();
            return;
        };
        let response = match wire::decode_response::<ProduceRequest>(frame, request.pending) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, node, "bad Produce answer; reconnecting");
                n.requests.push_front(request);
                st.connection_lost(node, generation);
                inner.wake.notify_all();
                return;
            }
        };
        let mut reports = Reports::default();
        st.handle_response(&inner, request, &response, &mut reports);
        drop(st);
        inner.wake.notify_all();
        let done = reports.deliver(&*inner.sink);
        let mut st = inner.lock();
        for o in done {
            st.alloc.keep_opaques(o);
        }
    }
}

impl State {
    fn handle_response(
        &mut self,
        inner: &Inner,
        request: Request,
        response: &ProduceResponse,
        reports: &mut Reports,
    ) {
        let mut alloc = std::mem::take(&mut self.alloc);
        for (topic, partition, id) in request.batches {
            let code = response
                .responses
                .iter()
                .filter(|t| t.name.0.as_str() == &*topic)
                .flat_map(|t| &t.partition_responses)
                .find(|p| p.index == partition)
                .map_or(ResponseError::NetworkException.code(), |p| p.error_code);
            let Some((p, i)) = self.batch_mut(&topic, partition, id) else {
                // Failed meanwhile (timeout, purge): nothing to report.
                continue;
            };
            let result = outcome(code, p.blocked);
            let name = || wire::error_name(code);
            match result {
                Outcome::Acked => {
                    if let Some(b) = p.batches.remove(i) {
                        self.buffered = self.buffered.saturating_sub(b.bytes);
                        if let Some(w) = b.wire {
                            alloc.keep_wire(w);
                        }
                        reports.acked.push(b.opaques);
                    }
                }
                Outcome::Retry { refresh_metadata } => {
                    tracing::debug!(topic = %topic, partition, error = %name(), "produce failed; retrying");
                    p.batches[i].in_flight = false;
                    p.blocked = true;
                    p.retry_at = Some(Instant::now() + BACKOFF);
                    self.metadata_wanted |= refresh_metadata;
                }
                Outcome::Reset => {
                    tracing::info!(topic = %topic, partition, error = %name(), "the broker lost track of the producer's sequence; resetting the producer id");
                    p.batches[i].in_flight = false;
                    self.reset = true;
                }
                Outcome::TooLarge if p.batches[i].count > 1 => {
                    tracing::info!(topic = %topic, partition, records = p.batches[i].count, "batch too large for the broker; sending its records one by one");
                    if let Some(b) = p.batches.remove(i) {
                        let singles = split(&b, &mut alloc);
                        for (j, s) in singles.into_iter().enumerate() {
                            p.batches.insert(i + j, s);
                        }
                    }
                    p.blocked = true;
                    p.retry_at = None;
                }
                Outcome::TooLarge | Outcome::Fail => {
                    let max = inner.max_record_bytes;
                    let error = if result == Outcome::TooLarge {
                        format!("the broker refused a record as too large ({}; the agent's records are at most {max} bytes: raise the topic's max.message.bytes)", name())
                    } else {
                        format!(
                            "the broker refused the batch: {} (Kafka error code {code})",
                            name()
                        )
                    };
                    tracing::warn!(topic = %topic, partition, %error, "records not accepted");
                    if let Some(b) = p.batches.remove(i) {
                        // The sequence numbers of the refused batch are a gap now.
                        self.reset = true;
                        self.fail_batch(&topic, b, &error, false, reports);
                    }
                }
            }
        }
        self.alloc = alloc;
    }
}

/// A batch as single-record batches with the same sequence numbers.
fn split(b: &Batch, alloc: &mut Alloc) -> Vec<Batch> {
    records_of(b)
        .into_iter()
        .zip(&b.opaques)
        .enumerate()
        .map(|(i, (rec, &opaque))| {
            let mut one = BatchBuilder::default();
            borrowed(&rec, |r| one.append(r));
            Batch {
                id: alloc.batch_id(),
                bytes: b.bytes / b.opaques.len().max(1),
                records: Some(Arc::new(one)),
                wire: None,
                count: 1,
                base_seq: b.base_seq.wrapping_add(i as i32),
                opaques: vec![opaque],
                since: b.since,
                in_flight: false,
            }
        })
        .collect()
}

/// Metadata, producer ids, expiry, and starting writers.
struct Housekeeper {
    inner: Arc<Inner>,
    /// A connection for metadata and InitProducerId, to any broker.
    conn: Option<Connection>,
    next_bootstrap: usize,
    metadata_after: Instant,
    /// When the metadata was last fetched whole: it is fetched again every
    /// [`METADATA_REFRESH`], to notice partitions added and leaders moved without an error.
    metadata_at: Instant,
    producer_after: Instant,
    backoff: Duration,
}

impl Housekeeper {
    fn new(inner: Arc<Inner>) -> Housekeeper {
        Housekeeper {
            inner,
            conn: None,
            next_bootstrap: 0,
            metadata_after: Instant::now(),
            metadata_at: Instant::now(),
            producer_after: Instant::now(),
            backoff: BACKOFF,
        }
    }

    fn run(mut self) {
        loop {
            let (want_metadata, want_producer) = {
                let st = self.inner.lock();
                if st.closing {
                    return;
                }
                let unknown = st.topics.values().any(|t| t.partitions.is_empty());
                (
                    (st.metadata_wanted || unknown) && !st.topics.is_empty(),
                    st.wants_producer_id(),
                )
            };
            let now = Instant::now();
            let stale = now.duration_since(self.metadata_at) >= METADATA_REFRESH;
            if (want_metadata || stale) && now >= self.metadata_after {
                self.refresh_metadata();
            }
            if want_producer && now >= self.producer_after {
                self.init_producer_id();
            }
            let mut reports = Reports::default();
            let st = {
                let mut st = self.inner.lock();
                expire(&self.inner, &mut st, &mut reports);
                st
            };
            let pending = st.metadata_wanted
                || st.producer.is_none()
                || st.reset
                || st.topics.values().any(|t| !t.unassigned.is_empty());
            let wake = if pending {
                BACKOFF.min(self.backoff)
            } else {
                IDLE_WAKE
            };
            if reports.acked.is_empty() && reports.failed.is_empty() {
                drop(self.inner.wait(st, wake));
            } else {
                drop(st);
                self.inner.wake.notify_all();
                reports.deliver(&*self.inner.sink);
            }
        }
    }

    fn connection(&mut self) -> Option<&mut Connection> {
        if self.conn.is_none() {
            let n = self.inner.bootstrap.len();
            for _ in 0..n {
                let addr = &self.inner.bootstrap[self.next_bootstrap % n];
                self.next_bootstrap += 1;
                match Connection::connect(addr, CONNECT_TIMEOUT, CLIENT_ID, &SPOKEN) {
                    Ok(c) => {
                        self.conn = Some(c);
                        break;
                    }
                    Err(e) => tracing::debug!(error = %e, "bootstrap broker unavailable"),
                }
            }
        }
        self.conn.as_mut()
    }

    fn failed(&mut self, what: &str, e: &WireError) {
        tracing::debug!(error = %e, "{what} failed; retrying");
        if matches!(e, WireError::Io { .. } | WireError::Protocol { .. }) {
            self.conn = None;
        }
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn refresh_metadata(&mut self) {
        let names: Vec<Arc<str>> = self.inner.lock().topics.keys().cloned().collect();
        let Some(conn) = self.connection() else {
            self.metadata_after = Instant::now() + self.backoff;
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            return;
        };
        let version = conn.version(METADATA);
        let request = MetadataRequest::default()
            .with_topics(Some(
                names
                    .iter()
                    .map(|n| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(n.to_string()))))
                    })
                    .collect(),
            ))
            .with_allow_auto_topic_creation(true);
        let response = match conn.call(&request, version) {
            Ok(r) => r,
            Err(e) => {
                self.failed("metadata request", &e);
                self.metadata_after = Instant::now() + self.backoff;
                return;
            }
        };
        let addrs: HashMap<i32, String> = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        let mut complete = true;
        let mut new_nodes = Vec::new();
        let mut st = self.inner.lock();
        for (id, addr) in &addrs {
            match st.nodes.get_mut(id) {
                Some(n) if &n.addr != addr => {
                    n.addr = addr.clone();
                    if let Some(s) = n.stream.take() {
                        let _ = s.shutdown(Shutdown::Both);
                    }
                }
                Some(_) => {}
                None => {
                    st.nodes.insert(
                        *id,
                        Node {
                            addr: addr.clone(),
                            stream: None,
                            requests: VecDeque::new(),
                            generation: 0,
                        },
                    );
                    new_nodes.push(*id);
                }
            }
        }
        let State { topics, alloc, .. } = &mut *st;
        for t in &response.topics {
            let Some(name) = t.name.as_ref() else {
                continue;
            };
            let Some(topic) = topics.get_mut(name.0.as_str()) else {
                continue;
            };
            if t.error_code != 0 || t.partitions.is_empty() {
                // Being created (LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION) or
                // refused: ask again; the records wait, then time out.
                topic.error = Some(format!(
                    "no metadata for the topic: {}",
                    wire::error_name(t.error_code)
                ));
                complete = false;
                continue;
            }
            topic.error = None;
            let mut parts: Vec<(i32, i32)> = t
                .partitions
                .iter()
                .map(|p| {
                    let known = addrs.contains_key(&p.leader_id.0);
                    (p.partition_index, if known { p.leader_id.0 } else { -1 })
                })
                .collect();
            parts.sort_unstable();
            for (index, leader) in parts {
                complete &= leader >= 0;
                match topic.partitions.iter_mut().find(|p| p.index == index) {
                    Some(p) => p.leader = leader,
                    None => topic.partitions.push(Partition::new(index, leader)),
                }
            }
            topic.partitions.sort_by_key(|p| p.index);
            // Records that waited for the metadata go to their partitions, in order.
            while let Some(u) = topic.unassigned.pop_front() {
                let n = partition_of(&u.record.key, topic.partitions.len());
                let part = &mut topic.partitions[n];
                borrowed(&u.record, |r| {
                    part.append(r, u.size, u.opaque, alloc);
                });
                part.open_since = part.open_since.min(u.since);
            }
        }
        st.metadata_wanted = !complete;
        drop(st);
        self.inner.wake.notify_all();
        for id in new_nodes {
            self.inner
                .spawn(format!("rill-producer-w{id}"), move |inner| {
                    writer(inner, id)
                });
        }
        self.backoff = BACKOFF;
        self.metadata_at = Instant::now();
        self.metadata_after = Instant::now() + if complete { Duration::ZERO } else { BACKOFF };
    }

    fn init_producer_id(&mut self) {
        let Some(conn) = self.connection() else {
            self.producer_after = Instant::now() + self.backoff;
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            return;
        };
        let version = conn.version(INIT_PRODUCER_ID);
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(i32::MAX)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1);
        let result = conn
            .call(&request, version)
            .and_then(|r| WireError::check(r.error_code, || "InitProducerId".into()).map(|()| r));
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                self.failed("InitProducerId", &e);
                self.producer_after = Instant::now() + self.backoff;
                return;
            }
        };
        let stamp = (response.producer_id.0, response.producer_epoch);
        // Nothing is in flight: claims wait for a producer id and for a reset to finish.
        let mut st = self.inner.lock();
        let was = st.producer;
        st.producer = Some(stamp);
        st.reset = false;
        for t in st.topics.values_mut() {
            for p in &mut t.partitions {
                p.renumber(stamp);
            }
        }
        drop(st);
        if was.is_some() {
            tracing::info!(producer_id = stamp.0, "producer id reset");
        } else {
            tracing::debug!(producer_id = stamp.0, "producer id");
        }
        self.backoff = BACKOFF;
        self.inner.wake.notify_all();
    }
}

/// Fails records older than the delivery timeout, and shuts connections whose oldest
/// request is older than the request timeout (the reader then resends).
fn expire(inner: &Inner, st: &mut State, reports: &mut Reports) {
    let now = Instant::now();
    let timeout = inner.config.delivery_timeout;
    let expired = |since: Instant| now.duration_since(since) >= timeout;
    // A connection with an expired batch in flight is given up first (its other
    // batches go back to be sent again), so that a late answer cannot be mistaken.
    let stuck: Vec<(i32, u64)> = st
        .topics
        .values()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.any_in_flight() && p.batches.front().is_some_and(|b| expired(b.since)))
        .filter_map(|p| {
            st.nodes
                .get(&p.in_flight_node)
                .map(|n| (p.in_flight_node, n.generation))
        })
        .collect();
    for (node, generation) in stuck {
        if let Some(s) = st.nodes.get_mut(&node).and_then(|n| n.stream.take()) {
            let _ = s.shutdown(Shutdown::Both);
        }
        st.connection_lost(node, generation);
    }
    let mut failed_batches = Vec::new();
    let mut failed_unassigned = Vec::new();
    for (name, topic) in &mut st.topics {
        while topic.unassigned.front().is_some_and(|u| expired(u.since)) {
            if let Some(u) = topic.unassigned.pop_front() {
                let error = topic
                    .error
                    .clone()
                    .unwrap_or_else(|| "no metadata for the topic (broker unreachable?)".into());
                failed_unassigned.push((Arc::clone(name), u, error));
            }
        }
        for p in &mut topic.partitions {
            if !p.open.is_empty() && expired(p.open_since) {
                p.seal(&mut st.alloc);
            }
            // A batch expires with every batch after it (they are newer): order kept.
            if p.batches.front().is_some_and(|b| expired(b.since)) {
                p.blocked = false;
                p.retry_at = None;
                for b in p.batches.drain(..) {
                    failed_batches.push((Arc::clone(name), b));
                }
            }
        }
    }
    for n in st.nodes.values_mut() {
        let stale = n
            .requests
            .front()
            .is_some_and(|r| now.duration_since(r.sent) >= REQUEST_TIMEOUT);
        if stale {
            if let Some(s) = &n.stream {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
    if !failed_batches.is_empty() {
        st.reset = true;
    }
    for (topic, b) in failed_batches {
        st.fail_batch(
            &topic,
            b,
            "delivery timed out (broker unreachable or too slow)",
            false,
            reports,
        );
    }
    for (topic, u, error) in failed_unassigned {
        st.fail_unassigned(topic, u, error, false, reports);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: i32 = 1;
    const TOPIC: &str = "logs";

    /// A producer's state with one partition led by `NODE`, a producer id, a connection
    /// (generation 1) and one sealed batch of three records.
    fn state_with_a_batch() -> State {
        let mut st = State {
            producer: Some((7, 0)),
            ..State::default()
        };
        st.nodes.insert(
            NODE,
            Node {
                addr: "127.0.0.1:9".into(),
                stream: None,
                requests: VecDeque::new(),
                generation: 1,
            },
        );
        let mut partition = Partition::new(0, NODE);
        for (i, line) in ["a", "b", "c"].iter().enumerate() {
            let rec = RecordRef {
                key: b"",
                value: line.as_bytes(),
                headers: &[],
                timestamp: 1,
            };
            partition.append(&rec, rec.size_hint(), i, &mut st.alloc);
        }
        partition.seal(&mut st.alloc);
        st.topics.insert(
            Arc::from(TOPIC),
            Topic {
                partitions: vec![partition],
                unassigned: VecDeque::new(),
                error: None,
            },
        );
        st
    }

    fn request_for(claimed: &[Claimed]) -> Request {
        let pending = Pending {
            correlation: 0,
            key: ApiKey::Produce,
            version: 9,
        };
        Request::new(pending, claimed)
    }

    fn partition(st: &State) -> &Partition {
        &st.topics[TOPIC].partitions[0]
    }

    #[test]
    fn claims_whose_connection_is_lost_before_they_are_sent_go_back() {
        let mut st = state_with_a_batch();
        let claimed = st.claim(NODE, Instant::now());
        assert_eq!(claimed.len(), 1);
        assert!(partition(&st).any_in_flight());
        // While the writer compresses the batch (lock released), the reader finds the
        // connection gone and gives up its requests: this claim is not one of them yet.
        st.connection_lost(NODE, 1);
        assert!(!st.record_request(NODE, 1, request_for(&claimed)));

        assert!(!partition(&st).any_in_flight());
        // A reset asked for meanwhile can happen: nothing holds it any more.
        st.reset = true;
        assert!(st.wants_producer_id());
        st.reset = false;
        // And the batch is sent again after its pause, on the next connection.
        let again = st.claim(NODE, Instant::now() + BACKOFF * 2);
        assert_eq!(
            again.iter().map(|c| c.id).collect::<Vec<_>>(),
            claimed.iter().map(|c| c.id).collect::<Vec<_>>()
        );
    }

    #[test]
    fn claims_purged_before_they_are_sent_are_no_longer_counted() {
        let mut st = state_with_a_batch();
        let claimed = st.claim(NODE, Instant::now());
        let mut reports = Reports::default();
        st.purge(true, &mut reports);
        assert_eq!(
            reports.failed.len(),
            3,
            "the batch's records are given back"
        );
        assert!(!st.record_request(NODE, 1, request_for(&claimed)));
        assert!(st.reset && st.wants_producer_id());
    }

    #[test]
    fn a_claim_recorded_on_its_connection_stays_in_flight_until_answered_or_lost() {
        let mut st = state_with_a_batch();
        let claimed = st.claim(NODE, Instant::now());
        assert!(st.record_request(NODE, 1, request_for(&claimed)));
        st.reset = true;
        assert!(
            !st.wants_producer_id(),
            "a reset waits for what is in flight"
        );
        st.connection_lost(NODE, 1);
        assert!(st.wants_producer_id());
    }

    #[test]
    fn a_claim_whose_batch_failed_before_it_was_sent_holds_nothing_back() {
        let mut st = state_with_a_batch();
        let claimed = st.claim(NODE, Instant::now());
        // While the writer compresses: the connection is given up, and the batch fails (as
        // expiry fails it) before the writer records its request.
        st.connection_lost(NODE, 1);
        let failed = st.topics.get_mut(TOPIC).unwrap().partitions[0]
            .batches
            .pop_front();
        assert!(failed.is_some_and(|b| b.in_flight));
        assert!(!st.record_request(NODE, 1, request_for(&claimed)));
        // The partition is not held back: its next batch goes out after the pause.
        let rec = RecordRef {
            key: b"",
            value: b"d",
            headers: &[],
            timestamp: 1,
        };
        let p = &mut st.topics.get_mut(TOPIC).unwrap().partitions[0];
        p.append(&rec, rec.size_hint(), 3, &mut st.alloc);
        p.seal(&mut st.alloc);
        assert!(!partition(&st).any_in_flight());
        assert_eq!(st.claim(NODE, Instant::now() + BACKOFF * 2).len(), 1);
    }
}
