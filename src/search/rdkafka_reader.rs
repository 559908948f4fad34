//! The librdkafka reader: used when the connection needs TLS or SASL (see
//! `search::reader_for`), which librdkafka implements and the wire reader does not. Slower
//! (librdkafka's work per message dominates a scan) but the same results: every record is
//! decided by the same `scan::examine`.
//!
//! `--since`/`--until` become per-partition offsets with `offsets_for_times`, every partition
//! is read by its own consumer that is only ever `assign`ed (never subscribed, never
//! committing).

use std::sync::mpsc::SyncSender;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::client::{BrokerArgs, DiagnosedConsumer};
use crate::search::error::SearchError;
use crate::search::scan::{examine, Scanned};
use crate::search::{resolve_range, Item, PartitionRange, Shared};

fn client_error(what: impl Into<String>) -> impl FnOnce(KafkaError) -> SearchError {
    let what = what.into();
    move |cause| SearchError::Client { what, cause }
}

/// Starts a reader per partition; returns how many there are.
pub(super) fn start(
    args: &BrokerArgs,
    shared: &Shared,
    items: &SyncSender<(usize, Item)>,
) -> Result<usize, SearchError> {
    let timeout = args.timeout();
    let options = &shared.options;
    // No group id: metadata and ListOffsets only (a consumer with a group id takes a
    // coordinator round on close).
    let client = args
        .diagnosed_consumer()
        .map_err(client_error("cannot create a Kafka client"))?;
    let metadata = args.metadata(&client).map_err(SearchError::NoMetadata)?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == options.topic)
        .ok_or_else(|| SearchError::UnknownTopic {
            topic: options.topic.clone(),
            brokers: args.brokers.clone(),
        })?;
    if let Some(err) = topic.error() {
        return Err(SearchError::Kafka {
            what: format!("metadata of topic {:?}", options.topic),
            error: format!("{err:?}"),
            code: -1,
        });
    }
    let mut partitions: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
    partitions.sort_unstable();

    let since = times_to_offsets(
        &client,
        &options.topic,
        &partitions,
        options.since_ms,
        timeout,
    )?;
    let until = times_to_offsets(
        &client,
        &options.topic,
        &partitions,
        options.until_ms.map(|u| u.saturating_add(1)),
        timeout,
    )?;
    for (index, &partition) in partitions.iter().enumerate() {
        let (low, high) = client
            .fetch_watermarks(&options.topic, partition, timeout)
            .map_err(client_error(format!(
                "cannot read the offsets of {}/{partition}",
                options.topic
            )))?;
        let range = resolve_range(
            partition,
            low,
            high,
            since.as_ref().map(|s| s[index]),
            until.as_ref().map(|u| u[index]),
        );
        let reader = PartitionReader {
            args: args.clone(),
            shared: shared.clone(),
            items: items.clone(),
            index,
            range,
        };
        shared.spawn(format!("search-p{partition}"), move || reader.run())?;
    }
    Ok(partitions.len())
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
/// None when no record is that recent. None without a time.
fn times_to_offsets(
    client: &DiagnosedConsumer,
    topic: &str,
    partitions: &[i32],
    time: Option<i64>,
    timeout: Duration,
) -> Result<Option<Vec<Option<i64>>>, SearchError> {
    let Some(time) = time else {
        return Ok(None);
    };
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition_offset(topic, p, Offset::Offset(time))
            .map_err(client_error("cannot build the ListOffsets request"))?;
    }
    let answer = client
        .offsets_for_times(tpl, timeout)
        .map_err(client_error(format!(
            "ListOffsets by timestamp failed for topic {topic:?}"
        )))?;
    Ok(Some(
        partitions
            .iter()
            .map(
                |&p| match answer.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => Some(o),
                    _ => None,
                },
            )
            .collect(),
    ))
}

struct PartitionReader {
    args: BrokerArgs,
    shared: Shared,
    items: SyncSender<(usize, Item)>,
    index: usize,
    range: PartitionRange,
}

impl PartitionReader {
    fn run(self) -> Result<(), SearchError> {
        let options = &self.shared.options;
        let follow = options.follows();
        let PartitionRange {
            partition,
            start,
            end,
        } = self.range;
        let mut caught_up = start >= end;
        if caught_up && (self.items.send((self.index, Item::CaughtUp)).is_err() || !follow) {
            return Ok(());
        }
        let consumer: BaseConsumer = scan_config(&self.args)
            .create()
            .map_err(client_error("cannot create a Kafka consumer"))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&options.topic, partition, Offset::Offset(start))
            .map_err(client_error("cannot build the assignment"))?;
        consumer.assign(&tpl).map_err(client_error(format!(
            "cannot assign {}/{partition}",
            options.topic
        )))?;
        // Counted in batches: one shared counter bumped per record by every reader would
        // bounce its cache line between cores.
        let mut scanned = Scanned::default();
        while !self.shared.stopped() {
            let Some(result) = consumer.poll(Duration::from_millis(100)) else {
                // Offsets that hold no record to deliver (transaction markers, records
                // removed by retention or compaction) can end a partition: ask where we are.
                if !caught_up && self.position(&consumer) >= end {
                    caught_up = true;
                    if self.items.send((self.index, Item::CaughtUp)).is_err() || !follow {
                        break;
                    }
                }
                continue;
            };
            let msg = result.map_err(client_error(format!(
                "cannot read {}/{partition}",
                options.topic
            )))?;
            let offset = msg.offset();
            if !follow && offset >= end {
                break;
            }
            let value = msg.payload().unwrap_or_default();
            scanned.records += 1;
            scanned.bytes += value.len() as u64;
            let headers = msg.headers();
            let header = |name: &str| -> Option<String> {
                headers?
                    .iter()
                    .find(|h| h.key == name)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            };
            let ts = msg.timestamp().to_millis().unwrap_or(0);
            if let Some(hit) = examine(options, partition, offset, ts, msg.key(), value, header) {
                scanned.matched += 1;
                if !options.count_only
                    && self
                        .items
                        .send((self.index, Item::Hit(Box::new(hit))))
                        .is_err()
                {
                    break;
                }
            }
            if scanned.records >= 4096 || scanned.matched > 0 {
                self.shared.add(&std::mem::take(&mut scanned));
            }
            if !caught_up && offset + 1 >= end {
                caught_up = true;
                if self.items.send((self.index, Item::CaughtUp)).is_err() || !follow {
                    break;
                }
            }
        }
        self.shared.add(&scanned);
        if !caught_up {
            let _ = self.items.send((self.index, Item::CaughtUp));
        }
        Ok(())
    }

    /// The consumer's position in this partition (the next offset it will fetch), or -1.
    fn position(&self, consumer: &BaseConsumer) -> i64 {
        consumer
            .position()
            .ok()
            .and_then(|tpl| {
                tpl.find_partition(&self.shared.options.topic, self.range.partition)
                    .map(|e| e.offset())
            })
            .and_then(|o| match o {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .unwrap_or(-1)
    }
}
