//! `rill-bench rebalance`: how long a consumer group takes to form. Per run, M librdkafka
//! consumers subscribe to one topic in a fresh group at the same instant; the run is timed from
//! the moment all of them have called subscribe() to the moment the last one holds its share of
//! the final assignment, which is checked to be an even, non-overlapping split of every
//! partition. The consumers then close (LeaveGroup) before the next run.

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use serde::{Deserialize, Serialize};

use crate::common::{self, Conn, SETUP_TIMEOUT};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub conn: Conn,

    /// Partitions to create the topic with, if it does not exist.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,

    /// Consumers in the group.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub members: u32,

    /// Rebalances to time, each with a fresh group id.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,

    /// The broker's initial rebalance delay (group.initial.rebalance.delay.ms, rill's
    /// [broker.groups] initial_rebalance_delay_ms) in ms. The client cannot see it, so the
    /// caller says what it configured; it is subtracted to give the broker's own cost.
    #[arg(long, default_value_t = 3000)]
    pub join_delay_ms: u64,

    /// partition.assignment.strategy. range (the default here and librdkafka's first choice)
    /// is eager: one round, every member gets its whole share at once. cooperative-sticky
    /// hands partitions out incrementally, which with members arriving apart takes more rounds.
    #[arg(long, default_value = "range", value_parser = ["range", "roundrobin", "cooperative-sticky"])]
    pub assignor: String,

    /// Give up on a run whose group has not formed after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
}

/// One rebalance run, as printed on stdout.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RebalanceResult {
    pub kind: String,
    pub topic: String,
    pub group: String,
    pub run: u32,
    pub partitions: i32,
    pub members: u32,
    pub assignor: String,
    pub join_delay_ms: u64,
    /// From the last subscribe() call to the last member holding its final assignment.
    pub ms: f64,
    /// `ms` minus `join_delay_ms`: what the broker and the protocol cost beyond the wait.
    pub beyond_delay_ms: f64,
    /// From the first subscribe() call to the last: how together the members really started.
    pub subscribe_spread_ms: f64,
    /// Assignment callbacks over all members: `members` means one round, more means the group
    /// went through several generations before settling.
    pub assign_callbacks: u32,
    /// Partitions each member ended with.
    pub shares: Vec<usize>,
    /// From the first close() to the last consumer closed (LeaveGroup included).
    pub close_ms: f64,
}

/// What one member's rebalance callbacks saw.
#[derive(Default)]
struct MemberState {
    /// The member's whole assignment after the latest callback.
    partitions: BTreeSet<i32>,
    /// When the latest callback finished.
    changed_at: Option<Instant>,
    assign_callbacks: u32,
}

/// Records every assignment change as it is applied. post_rebalance runs on the consumer's
/// poll() thread right after rdkafka's default rebalance handler has called assign() (or
/// incremental_assign() for cooperative-sticky), so `assignment()` there is the member's full
/// current share under either protocol.
struct RebalanceContext {
    topic: String,
    state: Arc<Mutex<MemberState>>,
}

impl ClientContext for RebalanceContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        common::log_to_stderr(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        common::error_to_stderr(error, reason);
    }
}

impl ConsumerContext for RebalanceContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let now = Instant::now();
        let assigned = match rebalance {
            Rebalance::Assign(_) => true,
            Rebalance::Revoke(_) => false,
            Rebalance::Error(err) => {
                eprintln!("rebalance error: {err}");
                return;
            }
        };
        let partitions = match consumer.assignment() {
            Ok(tpl) => tpl
                .elements()
                .iter()
                .filter(|e| e.topic() == self.topic)
                .map(|e| e.partition())
                .collect(),
            Err(err) => {
                eprintln!("assignment(): {err}");
                return;
            }
        };
        if let Ok(mut state) = self.state.lock() {
            state.partitions = partitions;
            state.changed_at = Some(now);
            if assigned {
                state.assign_callbacks += 1;
            }
        }
    }
}

pub fn run(args: &Args) -> Result<()> {
    let topic = args.conn.topic.as_str();
    let partitions = common::ensure_topic(&args.conn, topic, args.partitions)?;
    if partitions % args.members as i32 != 0 {
        eprintln!(
            "warning: {partitions} partitions do not split evenly over {} members; \
             checking for shares that differ by at most one",
            args.members
        );
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let mut ms_all = Vec::new();
    for run in 1..=args.runs {
        let group = format!("rill-bench-rebalance-{stamp}-{}-r{run}", std::process::id());
        let result = one_run(args, partitions, &group, run)?;
        eprintln!(
            "rebalance run {run}/{}: {:.1} ms ({:.1} ms beyond the {} ms join delay; \
             subscribes {:.1} ms apart), {} assign callbacks, shares {:?}, close {:.0} ms",
            args.runs,
            result.ms,
            result.beyond_delay_ms,
            args.join_delay_ms,
            result.subscribe_spread_ms,
            result.assign_callbacks,
            result.shares,
            result.close_ms
        );
        ms_all.push(result.ms);
        println!("{}", serde_json::to_string(&result)?);
    }
    ms_all.sort_by(f64::total_cmp);
    eprintln!(
        "rebalance: median {:.1} ms over {} runs (join delay {} ms)",
        ms_all[ms_all.len() / 2],
        ms_all.len(),
        args.join_delay_ms
    );
    Ok(())
}

fn one_run(args: &Args, partitions: i32, group: &str, run: u32) -> Result<RebalanceResult> {
    let topic = args.conn.topic.clone();
    let members = args.members as usize;
    let tuning = [
        ("group.id", group),
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
        ("partition.assignment.strategy", args.assignor.as_str()),
        ("enable.auto.commit", "false"),
        ("auto.offset.reset", "latest"),
    ];
    let states: Vec<Arc<Mutex<MemberState>>> = (0..members).map(|_| Arc::default()).collect();
    // Every thread creates its consumer and fetches metadata first, so connecting and the
    // bootstrap round trips are over before the clock starts; the barrier then releases all
    // subscribe() calls together.
    let start_line = Arc::new(Barrier::new(members + 1));
    // Members keep polling (which is what runs the rebalance callbacks) until the main thread
    // has seen the group settle, then all close together at the second barrier.
    let close_line = Arc::new(Barrier::new(members + 1));
    let subscribed_at: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut threads = Vec::with_capacity(members);
    for state in &states {
        let cfg = args.conn.client_config(&tuning);
        let context = RebalanceContext {
            topic: topic.clone(),
            state: state.clone(),
        };
        let (topic, start_line, close_line, subscribed_at, stop) = (
            topic.clone(),
            start_line.clone(),
            close_line.clone(),
            subscribed_at.clone(),
            stop.clone(),
        );
        threads.push(std::thread::spawn(move || -> Result<Duration> {
            // A failure before a barrier must still reach it, or the other threads would wait
            // forever; the error is returned after.
            let consumer: Result<BaseConsumer<RebalanceContext>> = cfg
                .create_with_context(context)
                .context("creating a consumer")
                .and_then(|c: BaseConsumer<RebalanceContext>| {
                    c.fetch_metadata(Some(&topic), SETUP_TIMEOUT)
                        .context("Metadata before subscribing")?;
                    Ok(c)
                });
            start_line.wait();
            let consumer = match consumer {
                Ok(c) => c,
                Err(e) => {
                    close_line.wait();
                    return Err(e);
                }
            };
            let t = Instant::now();
            let subscribed = consumer.subscribe(&[&topic]).context("subscribe");
            if let Ok(mut v) = subscribed_at.lock() {
                v.push(t);
            }
            if let Err(e) = subscribed {
                close_line.wait();
                return Err(e);
            }
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // The callback fires inside poll() as soon as librdkafka has the assignment;
                // the short timeout only bounds how late this loop notices `stop`.
                if let Some(Err(err)) = consumer.poll(Duration::from_millis(20)) {
                    eprintln!("consumer poll: {err}");
                }
            }
            close_line.wait();
            let t = Instant::now();
            // Dropping a group consumer closes it: revoke, LeaveGroup, wait until closed.
            drop(consumer);
            Ok(t.elapsed())
        }));
    }

    start_line.wait();
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let settled = loop {
        if let Some(at) = settled_at(&states, partitions)? {
            // Read now: closing revokes everything, so afterwards every share is empty.
            break Ok((at, shares(&states)));
        }
        let started = subscribed_at.lock().map(|v| v.len()).unwrap_or(0);
        if Instant::now() >= deadline {
            let shares = shares(&states);
            break Err(anyhow!(
                "group {group} did not settle within {}s ({started}/{members} subscribed, \
                 shares {shares:?})",
                args.timeout_secs
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    close_line.wait();
    let mut close_ms = 0.0f64;
    let mut first_error = None;
    for t in threads {
        match t.join() {
            Ok(Ok(d)) => close_ms = close_ms.max(d.as_secs_f64() * 1e3),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(anyhow!("a consumer thread panicked"));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let (settled, settled_shares) = settled?;
    let subscribed = subscribed_at.lock().map_err(|_| anyhow!("poisoned"))?;
    let (Some(&first_subscribed), Some(&all_subscribed)) =
        (subscribed.iter().min(), subscribed.iter().max())
    else {
        bail!("no member subscribed");
    };
    let ms = settled
        .saturating_duration_since(all_subscribed)
        .as_secs_f64()
        * 1e3;
    let assign_callbacks = states
        .iter()
        .map(|s| s.lock().map(|s| s.assign_callbacks).unwrap_or(0))
        .sum();
    Ok(RebalanceResult {
        kind: "rebalance".into(),
        topic,
        group: group.into(),
        run,
        partitions,
        members: args.members,
        assignor: args.assignor.clone(),
        join_delay_ms: args.join_delay_ms,
        ms,
        beyond_delay_ms: ms - args.join_delay_ms as f64,
        subscribe_spread_ms: all_subscribed
            .duration_since(first_subscribed)
            .as_secs_f64()
            * 1e3,
        assign_callbacks,
        shares: settled_shares,
        close_ms,
    })
}

fn shares(states: &[Arc<Mutex<MemberState>>]) -> Vec<usize> {
    states
        .iter()
        .map(|s| s.lock().map(|s| s.partitions.len()).unwrap_or(0))
        .collect()
}

/// When every partition is owned by exactly one member and the shares are even (differ by at
/// most one), the time of the change that made it so; None while the group is still forming.
/// An overlap is only an error once it cannot be a moment in a rebalance: that is left to
/// the timeout, since eager members briefly hold stale partitions between rounds.
fn settled_at(states: &[Arc<Mutex<MemberState>>], partitions: i32) -> Result<Option<Instant>> {
    let mut owned = BTreeSet::new();
    let mut total = 0usize;
    let (mut smallest, mut largest) = (usize::MAX, 0usize);
    let mut latest: Option<Instant> = None;
    for s in states {
        let s = s.lock().map_err(|_| anyhow!("member state poisoned"))?;
        total += s.partitions.len();
        owned.extend(s.partitions.iter().copied());
        smallest = smallest.min(s.partitions.len());
        largest = largest.max(s.partitions.len());
        latest = latest.max(s.changed_at);
    }
    let complete = owned.len() == partitions as usize
        && owned.iter().all(|&p| (0..partitions).contains(&p))
        && total == owned.len()
        && largest - smallest <= 1;
    Ok(if complete { latest } else { None })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(parts: &[i32], at: Instant) -> Arc<Mutex<MemberState>> {
        Arc::new(Mutex::new(MemberState {
            partitions: parts.iter().copied().collect(),
            changed_at: Some(at),
            assign_callbacks: 1,
        }))
    }

    #[test]
    fn settles_only_on_an_even_disjoint_cover() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(7);
        let even = [
            member(&[0, 1], t0),
            member(&[2, 3], t1),
            member(&[4, 5], t0),
        ];
        assert_eq!(settled_at(&even, 6).unwrap(), Some(t1));
        // One member still holds everything from a first, single-member round.
        let lopsided = [member(&[0, 1, 2, 3, 4, 5], t0), member(&[], t1)];
        assert_eq!(settled_at(&lopsided, 6).unwrap(), None);
        // Overlap: partition 1 owned twice, 5 by nobody.
        let overlap = [member(&[0, 1, 2], t0), member(&[1, 3, 4], t1)];
        assert_eq!(settled_at(&overlap, 6).unwrap(), None);
        // 5 over 2 members: 3 + 2 is as even as it gets.
        let uneven = [member(&[0, 1, 2], t0), member(&[3, 4], t1)];
        assert_eq!(settled_at(&uneven, 5).unwrap(), Some(t1));
    }
}
