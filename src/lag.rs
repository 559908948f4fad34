//! Consumer-group lag: what a group has committed against what its partitions hold, and a
//! Burrow-style status computed from a window of such samples.
//!
//! Two halves. The pure half (decoders for the consumer protocol's member metadata and
//! assignment, lag arithmetic, the status evaluator) has no I/O and is unit-tested with
//! synthetic input. The [`Probe`] half takes samples over the plain Kafka protocol through
//! librdkafka (ListGroups + DescribeGroups, OffsetFetch, ListOffsets, and one Fetch per lagging
//! partition for the lag in time), so it works against rill and any Kafka cluster.
//!
//! The probe never joins the group it observes: the consumer that reads committed offsets and
//! the oldest unconsumed records carries the group's id (OffsetFetch needs it, and librdkafka
//! refuses `assign` without one) but is never subscribed, so it sends no JoinGroup, SyncGroup
//! or Heartbeat and cannot trigger a rebalance; with auto-commit and the offset store off it
//! never commits either.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::client::{BrokerArgs, DiagnosedConsumer};

// ---------------------------------------------------------------------------------------------
// The consumer protocol's member metadata and assignment bytes
// ---------------------------------------------------------------------------------------------

/// Why a member's metadata or assignment bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

/// A bounds-checked big-endian reader: every read either fits in what is left or fails, and
/// array counts are never trusted for allocation (a junk count of 2^31 must not allocate).
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| {
                DecodeError(format!(
                    "truncated at byte {} reading {what} ({n} bytes wanted, {} left)",
                    self.pos,
                    self.buf.len() - self.pos
                ))
            })?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn i16(&mut self, what: &str) -> Result<i16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, what: &str) -> Result<i32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, what: &str) -> Result<String, DecodeError> {
        let len = self.i16(what)?;
        if len < 0 {
            return Err(DecodeError(format!("null {what}")));
        }
        let bytes = self.take(len as usize, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError(format!("{what} is not UTF-8")))
    }

    /// An array count; -1 (null) reads as empty. Each element needs at least `min_size`
    /// bytes, so a count larger than what is left is junk, caught before any loop.
    fn count(&mut self, what: &str, min_size: usize) -> Result<usize, DecodeError> {
        let n = self.i32(what)?;
        if n < 0 {
            return Ok(0);
        }
        let n = n as usize;
        let left = self.buf.len() - self.pos;
        if n.saturating_mul(min_size) > left {
            return Err(DecodeError(format!(
                "{what} claims {n} entries but only {left} bytes follow"
            )));
        }
        Ok(n)
    }

    /// Nullable bytes (i32 length, -1 for null): returns the length, skipping the contents.
    fn skip_bytes(&mut self, what: &str) -> Result<Option<usize>, DecodeError> {
        let len = self.i32(what)?;
        if len < 0 {
            return Ok(None);
        }
        self.take(len as usize, what)?;
        Ok(Some(len as usize))
    }
}

/// A consumer-protocol assignment (ConsumerProtocolAssignment, versions 0-3 share this
/// layout): which partitions of which topics a member was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub version: i16,
    /// (topic, partitions) in the order the leader wrote them.
    pub topics: Vec<(String, Vec<i32>)>,
    /// Length of the assignor's opaque user data, if any.
    pub user_data_len: Option<usize>,
}

/// Decodes the assignment bytes a DescribeGroups response carries for a member of a group
/// with protocol type "consumer": version i16, array of (topic string, array of i32
/// partitions), nullable user data bytes. Empty input is a member that has no assignment yet
/// (a rebalance in progress). Trailing bytes after the user data are allowed, since newer
/// versions may append fields.
pub fn decode_assignment(bytes: &[u8]) -> Result<Assignment, DecodeError> {
    if bytes.is_empty() {
        return Ok(Assignment {
            version: 0,
            topics: Vec::new(),
            user_data_len: None,
        });
    }
    let mut r = Reader::new(bytes);
    let version = r.i16("assignment version")?;
    if version < 0 {
        return Err(DecodeError(format!("assignment version {version}")));
    }
    // A topic entry is at least a 2-byte name length and a 4-byte partition count.
    let topic_count = r.count("assigned topics", 6)?;
    let mut topics = Vec::new();
    for _ in 0..topic_count {
        let topic = r.string("assigned topic name")?;
        let partition_count = r.count("assigned partitions", 4)?;
        let mut partitions = Vec::with_capacity(partition_count);
        for _ in 0..partition_count {
            partitions.push(r.i32("assigned partition")?);
        }
        topics.push((topic, partitions));
    }
    // Some clients omit the user data entirely when it is empty.
    let user_data_len = if r.pos == bytes.len() {
        None
    } else {
        r.skip_bytes("assignment user data")?
    };
    Ok(Assignment {
        version,
        topics,
        user_data_len,
    })
}

/// The topics a member subscribed to, from its JoinGroup metadata (ConsumerProtocolSubscription:
/// version i16, array of topic strings, then fields this tool does not need).
pub fn decode_subscription(bytes: &[u8]) -> Result<Vec<String>, DecodeError> {
    let mut r = Reader::new(bytes);
    let version = r.i16("subscription version")?;
    if version < 0 {
        return Err(DecodeError(format!("subscription version {version}")));
    }
    let count = r.count("subscribed topics", 2)?;
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        topics.push(r.string("subscribed topic name")?);
    }
    Ok(topics)
}

// ---------------------------------------------------------------------------------------------
// Lag of one partition
// ---------------------------------------------------------------------------------------------

/// Records a group has not consumed from a partition. A committed offset is the next record
/// the group will read, so lag = end - committed (Kafka's and Burrow's definition; a commit
/// past the end, e.g. after a topic was re-created, counts as no lag). A partition the group
/// never committed counts from the log start: everything still in the log is unconsumed.
pub fn records_lag(committed: Option<i64>, start: i64, end: i64) -> i64 {
    let from = committed.unwrap_or(start);
    end.saturating_sub(from).max(0)
}

/// The offset of the oldest record the group has not consumed (where its lag in time is
/// read), or None when nothing is unconsumed.
pub fn first_unconsumed(committed: Option<i64>, start: i64, end: i64) -> Option<i64> {
    (records_lag(committed, start, end) > 0).then(|| committed.unwrap_or(start).max(start))
}

/// Milliseconds since the Unix epoch, as Kafka timestamps count.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------------------------

/// One member of a group, as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    /// Decoded assignment; None when the group's protocol type is not "consumer" or the
    /// bytes did not decode (then `assignment_error` says why).
    pub assignment: Option<Vec<(String, Vec<i32>)>>,
    pub assignment_error: Option<String>,
    /// Subscribed topics from the member metadata, when it decodes.
    pub subscription: Vec<String>,
}

/// A group from ListGroups + DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub group: String,
    /// Kafka's state name: Stable, PreparingRebalance, CompletingRebalance, Empty, Dead.
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<Member>,
}

/// Lag of one partition at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// None: the group never committed this partition (lag then counts from `start`).
    pub committed: Option<i64>,
    pub start: i64,
    pub end: i64,
    pub lag: i64,
    /// Age of the oldest unconsumed record (now - its timestamp), 0 when lag is 0; None when
    /// it was not read (not asked for, timed out, or the record has no timestamp).
    pub lag_ms: Option<i64>,
    /// The member assigned this partition, if any.
    pub owner: Option<String>,
}

/// A group and the lag of every partition it consumes, at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnapshot {
    pub info: GroupInfo,
    pub partitions: Vec<PartitionLag>,
    /// When the sample was taken (ms since the epoch).
    pub at_ms: i64,
}

impl GroupSnapshot {
    pub fn total_lag(&self) -> i64 {
        self.partitions.iter().map(|p| p.lag).sum()
    }

    /// The part of the snapshot the status evaluator looks at.
    pub fn sample(&self) -> Sample {
        Sample {
            at_ms: self.at_ms,
            members: self.info.members.len(),
            partitions: self
                .partitions
                .iter()
                .map(|p| {
                    (
                        (p.topic.clone(), p.partition),
                        Point {
                            committed: p.committed,
                            lag: p.lag,
                        },
                    )
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Burrow-style status
// ---------------------------------------------------------------------------------------------

/// One partition in one sample: what the evaluator needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// None: never committed.
    pub committed: Option<i64>,
    pub lag: i64,
}

/// One sample of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub at_ms: i64,
    pub members: usize,
    pub partitions: BTreeMap<(String, i32), Point>,
}

/// A group's health, after LinkedIn Burrow's consumer lag evaluation rules, adapted to what a
/// Kafka client can see (Burrow watches commits as they happen; this tool samples).
///
/// Ordered from best to worst, so a group's status is the worst of its partitions'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Keeping up. A partition is OK when its lag was 0 in any sample of the window (Burrow
    /// rule 1: a consumer that caught up even once in the window is fine), or when its
    /// committed offset moved and its lag did not grow.
    Ok,
    /// Consuming but falling behind (Burrow's WARNING, rule 3): the committed offset moved
    /// over the window, yet the lag never shrank between consecutive samples and is higher at
    /// the end than at the start. Burrow also warns on flat lag; here flat lag with a moving
    /// offset is OK, since a consumer keeping pace at a constant distance is not falling
    /// behind.
    Lagging,
    /// Not making progress (Burrow's STALLED, rule 2): lag above 0 in every sample while the
    /// committed offset (or its absence, for a partition never committed) did not change
    /// across the window.
    Stalled,
    /// Nobody is consuming: the newest sample shows no members. Burrow infers a STOPPED
    /// consumer from commits that stopped arriving (rule 4); the coordinator states it
    /// directly, so this tool asks it. EMPTY wins over the partition statuses, whatever the
    /// lag: with no member, a lag of 0 is only a lag that has not started growing yet.
    Empty,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Lagging => "LAGGING",
            Status::Stalled => "STALLED",
            Status::Empty => "EMPTY",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status of one partition over its points, oldest first; None with fewer than 2.
///
/// A rewind (the committed offset went backwards: someone reset the group's offsets) starts
/// the evaluation afresh from the sample that shows it; Burrow reports REWIND as an error of
/// its own, but a reset is deliberate and says nothing about the consumer's speed.
pub fn partition_status(points: &[Point]) -> Option<Status> {
    let rewound_at = points
        .windows(2)
        .rposition(|w| match (w[0].committed, w[1].committed) {
            (Some(a), Some(b)) => b < a,
            // A commit disappearing (offsets deleted or expired) is a reset too.
            (Some(_), None) => true,
            _ => false,
        });
    let points = match rewound_at {
        Some(i) => &points[i + 1..],
        None => points,
    };
    if points.len() < 2 {
        return None;
    }
    // Rule 1: caught up at some point in the window.
    if points.iter().any(|p| p.lag == 0) {
        return Some(Status::Ok);
    }
    let first = points[0];
    let last = points[points.len() - 1];
    // Rule 2: lag > 0 throughout (rule 1 did not apply) and the offset did not move.
    if first.committed == last.committed {
        return Some(Status::Stalled);
    }
    // Rule 3, with strict growth over the window.
    let never_shrank = points.windows(2).all(|w| w[1].lag >= w[0].lag);
    if never_shrank && last.lag > first.lag {
        return Some(Status::Lagging);
    }
    Some(Status::Ok)
}

/// The status of a group over `samples`, oldest first; None with fewer than 2 samples
/// (a trend needs two points). EMPTY when the newest sample has no members; otherwise the
/// worst status among the partitions of the newest sample, each judged over the samples that
/// contain it (a partition seen only once is not judged yet; with none judged, OK).
pub fn evaluate(samples: &[Sample]) -> Option<Status> {
    if samples.len() < 2 {
        return None;
    }
    let latest = &samples[samples.len() - 1];
    if latest.members == 0 {
        return Some(Status::Empty);
    }
    let mut worst = Status::Ok;
    for key in latest.partitions.keys() {
        let points: Vec<Point> = samples
            .iter()
            .filter_map(|s| s.partitions.get(key).copied())
            .collect();
        if let Some(status) = partition_status(&points) {
            worst = worst.max(status);
        }
    }
    Some(worst)
}

/// The last `capacity` samples of one group.
#[derive(Debug, Clone)]
pub struct Window {
    capacity: usize,
    samples: VecDeque<Sample>,
}

impl Window {
    /// A window of at least 2 samples (fewer could never show a trend).
    pub fn new(capacity: usize) -> Self {
        Window {
            capacity: capacity.max(2),
            samples: VecDeque::new(),
        }
    }

    pub fn push(&mut self, sample: Sample) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Milliseconds between the oldest and newest sample.
    pub fn span_ms(&self) -> i64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(a), Some(b)) => b.at_ms - a.at_ms,
            _ => 0,
        }
    }

    pub fn status(&self) -> Option<Status> {
        let samples: Vec<Sample> = self.samples.iter().cloned().collect();
        evaluate(&samples)
    }
}

// ---------------------------------------------------------------------------------------------
// Sampling over the Kafka protocol
// ---------------------------------------------------------------------------------------------

/// How long the lag-in-time read may take per sample: it is one fetch per lagging partition,
/// and a slow one must not hold a `--watch` redraw for a whole `--timeout-ms`.
const RECORD_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Takes lag samples of groups. Keeps its clients between samples (a `--watch` re-samples).
pub struct Probe {
    args: BrokerArgs,
    /// Metadata, group listing and watermarks; it has no group id, so it can neither join
    /// nor commit anything.
    client: DiagnosedConsumer,
    /// Per group: a consumer with that group id for OffsetFetch and for reading the oldest
    /// unconsumed records by `assign` (librdkafka refuses `assign` without a group id). Never
    /// subscribed, so it never joins; auto-commit and the offset store are off, so it never
    /// commits, not even on close.
    readers: HashMap<String, BaseConsumer>,
}

impl Probe {
    pub fn new(args: &BrokerArgs) -> anyhow::Result<Probe> {
        let client = args
            .diagnosed_consumer()
            .context("cannot create a Kafka client")?;
        Ok(Probe {
            args: args.clone(),
            client,
            readers: HashMap::new(),
        })
    }

    fn timeout(&self) -> Duration {
        self.args.timeout()
    }

    /// Every group the cluster knows (ListGroups, then DescribeGroups for each).
    pub fn list_groups(&self) -> anyhow::Result<Vec<GroupInfo>> {
        // Reach the cluster first, so an unreachable broker gets the usual hint (and a
        // refused password says so at once) rather than librdkafka's timeout code.
        self.args.metadata(&self.client).map_err(|e| anyhow!(e))?;
        self.fetch_groups(None)
    }

    /// One group; an error naming it when the cluster does not know it.
    pub fn group(&self, group: &str) -> anyhow::Result<GroupInfo> {
        if group.is_empty() {
            bail!("a group id cannot be empty");
        }
        self.args.metadata(&self.client).map_err(|e| anyhow!(e))?;
        let groups = self.fetch_groups(Some(group))?;
        match groups.into_iter().find(|g| g.group == group) {
            // Kafka describes a group it does not know as Dead rather than with an error.
            Some(info) if info.state != "Dead" => Ok(info),
            _ => bail!(
                "consumer group {group:?} not found on {} (see `rill groups list`)",
                self.args.brokers
            ),
        }
    }

    fn fetch_groups(&self, group: Option<&str>) -> anyhow::Result<Vec<GroupInfo>> {
        let list = self
            .client
            .fetch_group_list(group, self.timeout())
            .with_context(|| {
                format!(
                    "cannot list consumer groups (ListGroups/DescribeGroups) on {}",
                    self.args.brokers
                )
            })?;
        // rdkafka's accessors panic on names that are not UTF-8; a broker's or client's junk
        // must become an error here, not a crash.
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            list.groups()
                .iter()
                .map(|g| {
                    let consumer = g.protocol_type() == "consumer";
                    GroupInfo {
                        group: g.name().to_string(),
                        state: g.state().to_string(),
                        protocol_type: g.protocol_type().to_string(),
                        protocol: g.protocol().to_string(),
                        members: g
                            .members()
                            .iter()
                            .map(|m| {
                                let (assignment, assignment_error) =
                                    match (consumer, m.assignment()) {
                                        (false, _) => (None, None),
                                        (true, None) => (Some(Vec::new()), None),
                                        (true, Some(bytes)) => match decode_assignment(bytes) {
                                            Ok(a) => (Some(a.topics), None),
                                            Err(e) => (None, Some(e.0)),
                                        },
                                    };
                                let subscription = match (consumer, m.metadata()) {
                                    (true, Some(bytes)) => {
                                        decode_subscription(bytes).unwrap_or_default()
                                    }
                                    _ => Vec::new(),
                                };
                                Member {
                                    member_id: m.id().to_string(),
                                    client_id: m.client_id().to_string(),
                                    host: m.client_host().to_string(),
                                    assignment,
                                    assignment_error,
                                    subscription,
                                }
                            })
                            .collect(),
                    }
                })
                .collect()
        }))
        .map_err(|_| anyhow!("the broker described a group with a name that is not UTF-8"))
    }

    fn reader(&mut self, group: &str) -> anyhow::Result<&BaseConsumer> {
        if !self.readers.contains_key(group) {
            let consumer: BaseConsumer = self
                .args
                .client_config()
                .set("group.id", group)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                // Where the committed offset's record was deleted by retention, the oldest
                // unconsumed record is the first one left.
                .set("auto.offset.reset", "earliest")
                .set("enable.partition.eof", "false")
                // One record per partition is all a sample reads: do not prefetch more.
                .set("queued.min.messages", "1")
                .set("fetch.wait.max.ms", "100")
                .create()
                .context("cannot create a Kafka client")?;
            self.readers.insert(group.to_string(), consumer);
        }
        self.readers
            .get(group)
            .ok_or_else(|| anyhow!("reader for {group:?} vanished"))
    }

    /// A lag snapshot of `info`'s group. Which topics: those the group committed offsets for,
    /// those assigned to its members and those they subscribed to; every partition of each.
    /// `with_times` also reads the oldest unconsumed record of each lagging partition for the
    /// lag in time (one fetch each); without it `lag_ms` is None where lag > 0.
    pub fn snapshot(&mut self, info: GroupInfo, with_times: bool) -> anyhow::Result<GroupSnapshot> {
        let timeout = self.timeout();
        let metadata = self.args.metadata(&self.client).map_err(|e| anyhow!(e))?;
        let mut topics: BTreeMap<String, Vec<i32>> = metadata
            .topics()
            .iter()
            // Kafka's internal topics (__consumer_offsets, ...) are nobody's lag.
            .filter(|t| !t.name().starts_with("__") && t.error().is_none())
            .map(|t| {
                let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
                ids.sort_unstable();
                (t.name().to_string(), ids)
            })
            .collect();

        // One OffsetFetch for every partition of every topic: the consumer API has no "all
        // the group's offsets" form, and unknown commits come back as "none".
        let mut request = TopicPartitionList::new();
        for (topic, partitions) in &topics {
            for &p in partitions {
                request
                    .add_partition_offset(topic, p, Offset::Invalid)
                    .with_context(|| format!("cannot ask for {topic}/{p}"))?;
            }
        }
        let mut committed: HashMap<(String, i32), i64> = HashMap::new();
        if request.count() > 0 {
            let reader = self.reader(&info.group)?;
            let answer = reader
                .committed_offsets(request, timeout)
                .with_context(|| {
                    format!(
                        "cannot read the committed offsets of group {:?} (OffsetFetch)",
                        info.group
                    )
                })?;
            for e in answer.elements() {
                if let Offset::Offset(offset) = e.offset() {
                    if e.error().is_ok() && offset >= 0 {
                        committed.insert((e.topic().to_string(), e.partition()), offset);
                    }
                }
            }
        }

        let mut wanted: BTreeSet<String> = committed.keys().map(|(t, _)| t.clone()).collect();
        let mut owners: HashMap<(String, i32), String> = HashMap::new();
        for m in &info.members {
            for (topic, partitions) in m.assignment.iter().flatten() {
                wanted.insert(topic.clone());
                for &p in partitions {
                    owners.insert((topic.clone(), p), m.member_id.clone());
                }
            }
            wanted.extend(m.subscription.iter().cloned());
        }
        topics.retain(|t, _| wanted.contains(t));

        let mut partitions = Vec::new();
        for (topic, ids) in &topics {
            for &p in ids {
                let (start, end) = self
                    .client
                    .fetch_watermarks(topic, p, timeout)
                    .with_context(|| {
                        format!("cannot read the offsets of {topic}/{p} (ListOffsets)")
                    })?;
                let committed = committed.get(&(topic.clone(), p)).copied();
                let lag = records_lag(committed, start, end);
                partitions.push(PartitionLag {
                    topic: topic.clone(),
                    partition: p,
                    committed,
                    start,
                    end,
                    lag,
                    lag_ms: (lag == 0).then_some(0),
                    owner: owners.get(&(topic.clone(), p)).cloned(),
                });
            }
        }
        let at_ms = now_ms();
        if with_times {
            self.read_lag_times(&info.group, &mut partitions, at_ms)?;
        }
        Ok(GroupSnapshot {
            info,
            partitions,
            at_ms,
        })
    }

    /// Fills `lag_ms` of lagging partitions: the age of the record at the first unconsumed
    /// offset. One assign of all of them and polls until each gave a record or time is up;
    /// a partition that gave none keeps `lag_ms` None.
    fn read_lag_times(
        &mut self,
        group: &str,
        partitions: &mut [PartitionLag],
        now: i64,
    ) -> anyhow::Result<()> {
        let mut assignment = TopicPartitionList::new();
        let mut pending: HashMap<(String, i32), (usize, i64)> = HashMap::new();
        for (i, p) in partitions.iter().enumerate() {
            if let Some(offset) = first_unconsumed(p.committed, p.start, p.end) {
                assignment
                    .add_partition_offset(&p.topic, p.partition, Offset::Offset(offset))
                    .with_context(|| format!("cannot ask for {}/{}", p.topic, p.partition))?;
                pending.insert((p.topic.clone(), p.partition), (i, offset));
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + RECORD_READ_TIMEOUT.min(self.timeout());
        let reader = self.reader(group)?;
        reader
            .assign(&assignment)
            .context("cannot assign partitions to read the oldest unconsumed records")?;
        while !pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // Fetch errors (e.g. a partition without a leader) leave that lag_ms unknown.
            let Some(Ok(msg)) = reader.poll(left) else {
                continue;
            };
            let key = (msg.topic().to_string(), msg.partition());
            // An offset below the one asked for is a leftover of an earlier sample's fetch.
            if let Some(&(i, from)) = pending.get(&key) {
                if msg.offset() >= from {
                    partitions[i].lag_ms = msg.timestamp().to_millis().map(|ts| (now - ts).max(0));
                    pending.remove(&key);
                }
            }
        }
        // Stop fetching until the next sample.
        reader
            .unassign()
            .context("cannot unassign the record reader")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment_bytes(
        version: i16,
        topics: &[(&str, &[i32])],
        user_data: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&version.to_be_bytes());
        b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
        for (topic, partitions) in topics {
            b.extend_from_slice(&(topic.len() as i16).to_be_bytes());
            b.extend_from_slice(topic.as_bytes());
            b.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
            for p in *partitions {
                b.extend_from_slice(&p.to_be_bytes());
            }
        }
        match user_data {
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(d) => {
                b.extend_from_slice(&(d.len() as i32).to_be_bytes());
                b.extend_from_slice(d);
            }
        }
        b
    }

    #[test]
    fn decodes_an_assignment() {
        let bytes = assignment_bytes(1, &[("logs", &[0, 2]), ("audit", &[1])], Some(b"xyz"));
        let a = decode_assignment(&bytes).expect("decodes");
        assert_eq!(a.version, 1);
        assert_eq!(
            a.topics,
            vec![
                ("logs".to_string(), vec![0, 2]),
                ("audit".to_string(), vec![1])
            ]
        );
        assert_eq!(a.user_data_len, Some(3));

        let null_user_data = assignment_bytes(0, &[("t", &[5])], None);
        assert_eq!(
            decode_assignment(&null_user_data).unwrap().user_data_len,
            None
        );

        // Empty: a member mid-rebalance, not yet assigned.
        assert!(decode_assignment(&[]).unwrap().topics.is_empty());

        // No user data field at all, and trailing bytes of a newer version: both accepted.
        let mut short = assignment_bytes(0, &[("t", &[5])], None);
        short.truncate(short.len() - 4);
        assert_eq!(decode_assignment(&short).unwrap().topics.len(), 1);
        let mut longer = assignment_bytes(3, &[("t", &[5])], Some(b""));
        longer.extend_from_slice(&[0, 0, 0, 9]);
        assert_eq!(decode_assignment(&longer).unwrap().topics.len(), 1);
    }

    #[test]
    fn junk_assignments_are_errors_not_panics() {
        let good = assignment_bytes(0, &[("logs", &[0, 1, 2])], Some(b"data"));
        // Every truncation of a good assignment fails cleanly (or decodes, when the cut falls
        // exactly before the optional user data).
        for n in 1..good.len() {
            let _ = decode_assignment(&good[..n]);
        }
        assert!(decode_assignment(&good[..1]).is_err());
        assert!(decode_assignment(&good[..9]).is_err());

        // A count of 2^31-1 topics with nothing behind it must not allocate or loop.
        let mut huge = vec![0, 0];
        huge.extend_from_slice(&i32::MAX.to_be_bytes());
        let e = decode_assignment(&huge).unwrap_err();
        assert!(e.0.contains("claims"), "{e}");

        // Huge partition count.
        let mut b = vec![0, 0, 0, 0, 0, 1, 0, 1, b't'];
        b.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_assignment(&b).is_err());

        // Negative version, negative topic name length, non-UTF-8 topic name.
        assert!(decode_assignment(&[0xff, 0xff, 0, 0, 0, 0]).is_err());
        assert!(decode_assignment(&[0, 0, 0, 0, 0, 1, 0xff, 0xff, 0, 0, 0, 0]).is_err());
        assert!(decode_assignment(&[0, 0, 0, 0, 0, 1, 0, 1, 0xff, 0, 0, 0, 0]).is_err());

        // User data longer than what follows.
        let mut b = assignment_bytes(0, &[], None);
        let n = b.len();
        b[n - 4..].copy_from_slice(&100i32.to_be_bytes());
        assert!(decode_assignment(&b).is_err());

        // Pseudo-random junk: never a panic.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..400 {
            let junk: Vec<u8> = (0..len % 64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode_assignment(&junk);
            let _ = decode_subscription(&junk);
        }
    }

    #[test]
    fn decodes_a_subscription() {
        let mut b = vec![0, 1, 0, 0, 0, 2];
        for t in ["logs", "audit"] {
            b.extend_from_slice(&(t.len() as i16).to_be_bytes());
            b.extend_from_slice(t.as_bytes());
        }
        b.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(decode_subscription(&b).unwrap(), vec!["logs", "audit"]);
        assert!(decode_subscription(&[0, 1, 0x7f, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn lag_counts_from_the_commit_or_the_log_start() {
        assert_eq!(records_lag(Some(7), 0, 10), 3);
        assert_eq!(records_lag(Some(10), 0, 10), 0);
        // Committed past the end (topic re-created): no lag, never negative.
        assert_eq!(records_lag(Some(50), 0, 10), 0);
        // Never committed: everything still in the log.
        assert_eq!(records_lag(None, 4, 10), 6);
        assert_eq!(first_unconsumed(Some(7), 0, 10), Some(7));
        assert_eq!(first_unconsumed(None, 4, 10), Some(4));
        // The committed record was deleted by retention: the first one left.
        assert_eq!(first_unconsumed(Some(2), 4, 10), Some(4));
        assert_eq!(first_unconsumed(Some(10), 0, 10), None);
    }

    fn p(committed: i64, lag: i64) -> Point {
        Point {
            committed: Some(committed),
            lag,
        }
    }

    /// A one-partition group sample series: (committed, lag) per sample.
    fn samples(members: usize, points: &[(i64, i64)]) -> Vec<Sample> {
        points
            .iter()
            .enumerate()
            .map(|(i, &(c, l))| Sample {
                at_ms: i as i64 * 2000,
                members,
                partitions: [(("t".to_string(), 0), p(c, l))].into_iter().collect(),
            })
            .collect()
    }

    #[test]
    fn status_needs_two_samples() {
        assert_eq!(evaluate(&[]), None);
        assert_eq!(evaluate(&samples(1, &[(0, 5)])), None);
        assert_eq!(evaluate(&samples(0, &[(0, 5)])), None);
    }

    #[test]
    fn ok_when_caught_up_once_or_keeping_pace() {
        // Rule 1: a zero anywhere in the window.
        assert_eq!(
            evaluate(&samples(1, &[(10, 5), (10, 0), (10, 7)])),
            Some(Status::Ok)
        );
        // Moving with flat lag.
        assert_eq!(
            evaluate(&samples(1, &[(10, 5), (15, 5), (20, 5)])),
            Some(Status::Ok)
        );
        // Moving and catching up.
        assert_eq!(
            evaluate(&samples(1, &[(10, 9), (15, 7), (20, 4)])),
            Some(Status::Ok)
        );
        // Growth that shrank on the way is not a steady fall behind.
        assert_eq!(
            evaluate(&samples(1, &[(10, 5), (15, 9), (20, 6), (25, 8)])),
            Some(Status::Ok)
        );
        // Idle and fully consumed.
        assert_eq!(evaluate(&samples(1, &[(10, 0), (10, 0)])), Some(Status::Ok));
    }

    #[test]
    fn lagging_when_moving_but_lag_grows() {
        assert_eq!(
            evaluate(&samples(1, &[(10, 5), (12, 8), (14, 8), (16, 12)])),
            Some(Status::Lagging)
        );
        assert_eq!(
            evaluate(&samples(1, &[(10, 5), (11, 6)])),
            Some(Status::Lagging)
        );
    }

    #[test]
    fn stalled_when_the_offset_does_not_move() {
        assert_eq!(
            evaluate(&samples(1, &[(10, 5), (10, 5)])),
            Some(Status::Stalled)
        );
        assert_eq!(
            evaluate(&samples(1, &[(10, 5), (10, 9), (10, 20)])),
            Some(Status::Stalled)
        );
        // Never committed, records waiting, members present.
        let never = vec![
            Sample {
                at_ms: 0,
                members: 1,
                partitions: [(
                    ("t".to_string(), 0),
                    Point {
                        committed: None,
                        lag: 4
                    }
                )]
                .into(),
            };
            2
        ];
        assert_eq!(evaluate(&never), Some(Status::Stalled));
    }

    #[test]
    fn empty_when_no_members_whatever_the_lag() {
        assert_eq!(
            evaluate(&samples(0, &[(10, 5), (10, 5)])),
            Some(Status::Empty)
        );
        assert_eq!(
            evaluate(&samples(0, &[(10, 0), (10, 0)])),
            Some(Status::Empty)
        );
        // Members left between the samples: the newest sample decides.
        let mut s = samples(1, &[(10, 5), (12, 5)]);
        s[1].members = 0;
        assert_eq!(evaluate(&s), Some(Status::Empty));
        s[1].members = 2;
        s[0].members = 0;
        assert_eq!(evaluate(&s), Some(Status::Ok));
    }

    #[test]
    fn a_rewind_restarts_the_evaluation() {
        // Offsets reset from 100 back to 10: judged from the reset on.
        assert_eq!(
            evaluate(&samples(1, &[(100, 1), (10, 90), (10, 90)])),
            Some(Status::Stalled)
        );
        // Too few samples after the reset to judge: the partition is not judged (OK).
        assert_eq!(
            evaluate(&samples(1, &[(100, 5), (100, 5), (10, 90)])),
            Some(Status::Ok)
        );
    }

    #[test]
    fn the_group_takes_its_worst_partition() {
        let mk = |a: Point, b: Point| Sample {
            at_ms: 0,
            members: 2,
            partitions: [(("t".to_string(), 0), a), (("t".to_string(), 1), b)].into(),
        };
        let s = vec![
            mk(p(0, 0), p(5, 5)),
            mk(p(3, 0), p(6, 9)),
            mk(p(4, 0), p(6, 9)),
        ];
        // Partition 1: committed 5 -> 6 over the window, lag 5 -> 9, never shrinking.
        assert_eq!(evaluate(&s), Some(Status::Lagging));
        let s = vec![mk(p(0, 1), p(5, 5)), mk(p(3, 2), p(5, 5))];
        assert_eq!(evaluate(&s), Some(Status::Stalled));
        // A partition present only in the newest sample is not judged yet.
        let mut s = samples(1, &[(10, 5), (15, 5)]);
        s[1].partitions.insert(("new".to_string(), 0), p(0, 50));
        assert_eq!(evaluate(&s), Some(Status::Ok));
    }

    #[test]
    fn the_window_keeps_the_newest_samples() {
        let mut w = Window::new(3);
        assert!(w.is_empty());
        for s in samples(1, &[(10, 5), (10, 5), (11, 6), (12, 7), (13, 8)]) {
            w.push(s);
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.span_ms(), 4000);
        assert_eq!(w.status(), Some(Status::Lagging));
        // A capacity below 2 could never show a trend.
        let mut w = Window::new(0);
        for s in samples(1, &[(10, 5), (10, 5)]) {
            w.push(s);
        }
        assert_eq!(w.status(), Some(Status::Stalled));
    }
}
