//! Reading every partition of a topic by `assign` (never joining a group): where to start,
//! the time-ordered backlog, then following. Shared by the tail and the metrics readers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{Ctx, Reporter};

/// Where a reader starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// This many records back from the end, spread over the partitions.
    Back(i64),
    Beginning,
    /// The first record at or after this time (ms since the epoch).
    Time(i64),
}

/// How often the reader looks for partitions added to its topic.
const REFRESH: Duration = Duration::from_secs(10);
/// Live records are handed over in batches of at most this many or this old.
const BATCH: usize = 2000;
const BATCH_AGE: Duration = Duration::from_millis(50);
/// The backlog is sent sorted in chunks this large (memory stays bounded for
/// `--from beginning` over a big topic).
const BACKLOG_CHUNK: usize = 20_000;
/// A backlog that stops growing for this long is complete (records deleted by retention
/// under the reader's feet leave offsets that never arrive).
const BACKLOG_IDLE: Duration = Duration::from_secs(3);

/// Reads `topic` from `start` until the dashboard stops, handing decoded items to `send`
/// (false: stop) oldest first. Survives the broker going away and the topic not existing yet.
pub fn read<T>(
    ctx: &Ctx,
    reporter: &mut Reporter,
    topic: &str,
    start: Start,
    mut decode: impl FnMut(&BorrowedMessage<'_>) -> Option<T>,
    ts: impl Fn(&T) -> i64,
    mut send: impl FnMut(Vec<T>) -> bool,
) {
    let consumer: BaseConsumer = match ctx.reader_config().create() {
        Ok(c) => c,
        Err(e) => {
            reporter.failing(ctx, format!("cannot create a Kafka consumer: {e}"));
            return;
        }
    };
    // Where each assigned partition starts, and (during the backlog) where it ends.
    let mut assigned: HashMap<i32, i64> = HashMap::new();
    let mut backlog_end: HashMap<i32, i64> = HashMap::new();
    let mut backlog: Vec<T> = Vec::new();
    let mut in_backlog = true;
    let mut last_backlog_growth = Instant::now();
    let mut next_refresh = Instant::now();
    let mut batch: Vec<T> = Vec::new();
    let mut batch_started = Instant::now();
    while !ctx.stopped() {
        if Instant::now() >= next_refresh {
            match assign_new(
                ctx,
                &consumer,
                topic,
                start,
                &mut assigned,
                &mut backlog_end,
            ) {
                Ok(0) if assigned.is_empty() => {
                    reporter.failing(ctx, format!("topic {topic:?} does not exist yet"));
                    next_refresh = Instant::now() + Duration::from_secs(2);
                }
                Ok(_) => {
                    reporter.ok(ctx, format!("{} partitions", assigned.len()));
                    next_refresh = Instant::now() + REFRESH;
                }
                Err(e) => {
                    reporter.failing(ctx, format!("{e:#}"));
                    next_refresh = Instant::now() + Duration::from_secs(2);
                }
            }
            if assigned.is_empty() {
                ctx.sleep(next_refresh.saturating_duration_since(Instant::now()));
                continue;
            }
        }
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(msg)) => {
                let (p, o) = (msg.partition(), msg.offset());
                if let Some(item) = decode(&msg) {
                    if in_backlog {
                        backlog.push(item);
                        last_backlog_growth = Instant::now();
                    } else {
                        if batch.is_empty() {
                            batch_started = Instant::now();
                        }
                        batch.push(item);
                    }
                }
                if in_backlog {
                    if backlog_end.get(&p).is_some_and(|&end| o + 1 >= end) {
                        backlog_end.remove(&p);
                    }
                    if backlog.len() >= BACKLOG_CHUNK && !send_sorted(&mut backlog, &ts, &mut send)
                    {
                        return;
                    }
                }
            }
            Some(Err(e)) => reporter.failing(ctx, e),
            None => {}
        }
        if in_backlog && (backlog_end.is_empty() || last_backlog_growth.elapsed() > BACKLOG_IDLE) {
            in_backlog = false;
            if !send_sorted(&mut backlog, &ts, &mut send) {
                return;
            }
            backlog = Vec::new();
        }
        let batch_due = batch.len() >= BATCH || batch_started.elapsed() >= BATCH_AGE;
        if !batch.is_empty() && batch_due && !send_sorted(&mut batch, &ts, &mut send) {
            return;
        }
    }
}

/// Sends `items` in time order (partitions interleave by time, not by arrival).
fn send_sorted<T>(
    items: &mut Vec<T>,
    ts: &impl Fn(&T) -> i64,
    send: &mut impl FnMut(Vec<T>) -> bool,
) -> bool {
    if items.is_empty() {
        return true;
    }
    items.sort_by_key(|i| ts(i));
    send(std::mem::take(items))
}

/// Assigns the partitions of `topic` not assigned yet (all of them the first time), each
/// from where `start` says (partitions that appear later: from their beginning). Returns
/// how many it added.
fn assign_new(
    ctx: &Ctx,
    consumer: &BaseConsumer,
    topic: &str,
    start: Start,
    assigned: &mut HashMap<i32, i64>,
    backlog_end: &mut HashMap<i32, i64>,
) -> anyhow::Result<usize> {
    let timeout = ctx.args.timeout().min(Duration::from_secs(5));
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .with_context(|| ctx.args.unreachable_hint())?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(0);
    };
    if t.error().is_some() || t.partitions().is_empty() {
        return Ok(0);
    }
    let first_time = assigned.is_empty();
    let new: Vec<i32> = t
        .partitions()
        .iter()
        .map(|p| p.id())
        .filter(|p| !assigned.contains_key(p))
        .collect();
    if new.is_empty() {
        return Ok(0);
    }
    let mut tpl = TopicPartitionList::new();
    let mut by_time: HashMap<i32, Option<i64>> = HashMap::new();
    if let (true, Start::Time(ms)) = (first_time, start) {
        let mut q = TopicPartitionList::new();
        for &p in &new {
            q.add_partition_offset(topic, p, Offset::Offset(ms))
                .context("cannot build the ListOffsets request")?;
        }
        let answer = consumer
            .offsets_for_times(q, timeout)
            .with_context(|| format!("ListOffsets by time failed for {topic:?}"))?;
        for &p in &new {
            let o = match answer.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) if o >= 0 => Some(o),
                _ => None,
            };
            by_time.insert(p, o);
        }
    }
    let per_partition = match start {
        Start::Back(n) => (n / new.len() as i64).max(1),
        _ => 0,
    };
    for &p in &new {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .with_context(|| format!("cannot read the offsets of {topic}/{p}"))?;
        let from = if !first_time {
            low
        } else {
            match start {
                Start::Back(_) => (high - per_partition).max(low),
                Start::Beginning => low,
                Start::Time(_) => by_time
                    .get(&p)
                    .copied()
                    .flatten()
                    .unwrap_or(high)
                    .clamp(low, high),
            }
        };
        tpl.add_partition_offset(topic, p, Offset::Offset(from))
            .context("cannot build the assignment")?;
        if from < high {
            backlog_end.insert(p, high);
        }
        assigned.insert(p, from);
    }
    if !first_time {
        consumer
            .incremental_assign(&tpl)
            .with_context(|| format!("cannot assign the new partitions of {topic:?}"))?;
    } else {
        consumer
            .assign(&tpl)
            .with_context(|| format!("cannot assign the partitions of {topic:?}"))?;
    }
    if assigned.is_empty() {
        bail!("topic {topic:?} has no partitions");
    }
    Ok(new.len())
}
