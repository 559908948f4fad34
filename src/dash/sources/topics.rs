//! The topics poller: every 2 s, the topics with their partitions' offsets (Metadata and
//! ListOffsets), and their retention (DescribeConfigs, every 30 s). It is also how the
//! dashboard knows whether the broker answers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::{Ctx, Reporter, POLL_INTERVAL};
use crate::client::SecurityProtocol;
use crate::dash::action::{DataEvent, SourceKind, TopicInfo};
use crate::lag::now_ms;

/// Per topic: retention.ms and retention.bytes, when known.
type Retentions = HashMap<String, (Option<i64>, Option<i64>)>;

const CONFIG_REFRESH: Duration = Duration::from_secs(30);

pub fn run(ctx: &Ctx) {
    let mut reporter = Reporter::new(SourceKind::Topics);
    let clients: anyhow::Result<(BaseConsumer, AdminClient<DefaultClientContext>)> = (|| {
        let consumer = ctx
            .args
            .client_config()
            .create()
            .context("cannot create a Kafka client")?;
        let admin = ctx
            .args
            .client_config()
            .create()
            .context("cannot create a Kafka admin client")?;
        Ok((consumer, admin))
    })();
    let (consumer, admin) = match clients {
        Ok(c) => c,
        Err(e) => {
            reporter.failing(ctx, format!("{e:#}"));
            return;
        }
    };
    let mut retention: Retentions = HashMap::new();
    let mut configs_at: Option<Instant> = None;
    // Why a TLS/SASL connection fails, asked once per outage (it takes a client and up to 5 s).
    let mut diagnosis: Option<Option<String>> = None;
    while !ctx.stopped() {
        let started = Instant::now();
        match sample(ctx, &consumer) {
            Ok(mut topics) => {
                diagnosis = None;
                reporter.ok(ctx, format!("{} topics", topics.len()));
                let stale = configs_at.is_none_or(|t| t.elapsed() > CONFIG_REFRESH)
                    || topics.iter().any(|t| !retention.contains_key(&t.name));
                if stale {
                    if let Ok(r) = retentions(ctx, &admin, &topics) {
                        retention = r;
                        configs_at = Some(Instant::now());
                    }
                }
                for t in &mut topics {
                    if let Some(&(ms, bytes)) = retention.get(&t.name) {
                        t.retention_ms = ms;
                        t.retention_bytes = bytes;
                    }
                }
                if !ctx.send(DataEvent::Topics(topics)) {
                    return;
                }
            }
            Err(e) => {
                // A wrong password or an untrusted certificate looks like a dead broker to
                // Metadata; librdkafka's own error says which it is.
                let cause = diagnosis.get_or_insert_with(|| {
                    (ctx.args.security_protocol() != SecurityProtocol::Plaintext)
                        .then(|| ctx.args.connection_problem())
                        .flatten()
                });
                match cause {
                    Some(cause) => reporter.failing(ctx, cause),
                    None => reporter.failing(ctx, format!("{e:#}")),
                }
            }
        }
        ctx.sleep(POLL_INTERVAL.saturating_sub(started.elapsed()));
    }
}

fn timeout(ctx: &Ctx) -> Duration {
    // The connection state must turn within a few seconds of the broker going away.
    ctx.args.timeout().min(Duration::from_secs(3))
}

fn sample(ctx: &Ctx, consumer: &BaseConsumer) -> anyhow::Result<Vec<TopicInfo>> {
    let md = consumer
        .fetch_metadata(None, timeout(ctx))
        .context("broker unreachable")?;
    let mut out = Vec::new();
    for t in md.topics() {
        // Kafka's internal topics (__consumer_offsets) are not the user's.
        if t.name().starts_with("__") || t.error().is_some() {
            continue;
        }
        let mut partitions = Vec::new();
        for p in t.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(t.name(), p.id(), timeout(ctx))
                .with_context(|| format!("cannot read the offsets of {}/{}", t.name(), p.id()))?;
            partitions.push((p.id(), low, high));
        }
        partitions.sort_unstable();
        out.push(TopicInfo {
            name: t.name().to_string(),
            partitions,
            retention_ms: None,
            retention_bytes: None,
            at_ms: now_ms(),
        });
    }
    Ok(out)
}

/// retention.ms and retention.bytes of each topic, in one DescribeConfigs.
fn retentions(
    ctx: &Ctx,
    admin: &AdminClient<DefaultClientContext>,
    topics: &[TopicInfo],
) -> anyhow::Result<Retentions> {
    let specs: Vec<ResourceSpecifier> = topics
        .iter()
        .map(|t| ResourceSpecifier::Topic(&t.name))
        .collect();
    let opts = AdminOptions::new().request_timeout(Some(timeout(ctx)));
    let answer = futures::executor::block_on(admin.describe_configs(specs.iter(), &opts))
        .context("DescribeConfigs failed")?;
    let mut out = HashMap::new();
    for (t, r) in topics.iter().zip(answer) {
        let Ok(r) = r else {
            continue;
        };
        let get = |k: &str| {
            r.get(k)
                .and_then(|e| e.value.as_deref())
                .and_then(|v| v.parse::<i64>().ok())
        };
        out.insert(
            t.name.clone(),
            (get("retention.ms"), get("retention.bytes")),
        );
    }
    Ok(out)
}
