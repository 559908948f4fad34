//! `rill topics`: topic administration over the Kafka protocol (Metadata, CreateTopics,
//! DeleteTopics, DescribeConfigs, ListOffsets), so it works on rill and on any Kafka cluster.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::metadata::Metadata;
use serde_json::json;

use rill::client::BrokerArgs;

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// List topics with their partition counts
    List(Common),
    /// Create a topic
    #[command(
        after_help = "Example:\n  rill topics create logs --partitions 3 --config retention.ms=86400000"
    )]
    Create {
        /// Topic name: 1-249 of a-z A-Z 0-9 . _ -
        name: String,
        /// Number of partitions [default: the broker's default]
        #[arg(long, short)]
        partitions: Option<i32>,
        /// A topic config as KEY=VALUE (repeatable): retention.ms, retention.bytes,
        /// segment.bytes, segment.ms, max.message.bytes, cleanup.policy=delete
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        #[command(flatten)]
        common: Common,
    },
    /// Show a topic's partitions, their offsets and its configuration
    Describe {
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// Delete a topic and all its records
    Delete {
        name: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Args)]
pub struct Common {
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

pub fn run(command: TopicsCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match command {
            TopicsCommand::List(common) => list(&common),
            TopicsCommand::Create {
                name,
                partitions,
                configs,
                common,
            } => create(&common, &name, partitions, &configs).await,
            TopicsCommand::Describe { name, common } => describe(&common, &name).await,
            TopicsCommand::Delete { name, common } => delete(&common, &name).await,
        }
    })
}

fn admin(common: &Common) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    common.brokers.check().map_err(anyhow::Error::msg)?;
    common
        .brokers
        .client_config()
        .create()
        .context("cannot create a Kafka admin client")
}

fn options(common: &Common) -> AdminOptions {
    AdminOptions::new().request_timeout(Some(common.brokers.timeout()))
}

fn metadata(
    common: &Common,
    admin: &AdminClient<DefaultClientContext>,
) -> anyhow::Result<Metadata> {
    // All topics, never one by name: asking for a missing topic by name would auto-create it.
    admin
        .inner()
        .fetch_metadata(None, common.brokers.timeout())
        .with_context(|| common.brokers.unreachable_hint())
}

fn list(common: &Common) -> anyhow::Result<()> {
    let admin = admin(common)?;
    let metadata = metadata(common, &admin)?;
    let mut topics: Vec<(&str, usize)> = metadata
        .topics()
        .iter()
        .filter(|t| !t.name().starts_with("__"))
        .map(|t| (t.name(), t.partitions().len()))
        .collect();
    topics.sort();
    if common.json {
        let rows: Vec<_> = topics
            .iter()
            .map(|(name, partitions)| json!({"name": name, "partitions": partitions}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if topics.is_empty() {
        eprintln!("no topics (create one with `rill topics create NAME`)");
    } else {
        let width = topics
            .iter()
            .map(|(n, _)| n.len())
            .max()
            .unwrap_or(5)
            .max(5);
        println!("{:width$}  PARTITIONS", "TOPIC");
        for (name, partitions) in topics {
            println!("{name:width$}  {partitions}");
        }
    }
    Ok(())
}

async fn create(
    common: &Common,
    name: &str,
    partitions: Option<i32>,
    configs: &[(String, String)],
) -> anyhow::Result<()> {
    let admin = admin(common)?;
    // -1 asks the broker for its default partition count and replication factor (KIP-464).
    let mut topic = NewTopic::new(name, partitions.unwrap_or(-1), TopicReplication::Fixed(-1));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let results = admin
        .create_topics([&topic], &options(common))
        .await
        .with_context(|| common.brokers.unreachable_hint())?;
    for result in results {
        if let Err((topic, code)) = result {
            bail!("cannot create topic {topic:?}: {code}");
        }
    }
    if common.json {
        println!("{}", json!({"created": name}));
    } else {
        println!("created topic {name}");
    }
    Ok(())
}

async fn describe(common: &Common, name: &str) -> anyhow::Result<()> {
    let admin = admin(common)?;
    let metadata = metadata(common, &admin)?;
    let Some(topic) = metadata.topics().iter().find(|t| t.name() == name) else {
        bail!("topic {name:?} does not exist (see `rill topics list`)");
    };
    let mut partitions = Vec::new();
    for p in topic.partitions() {
        let (start, end) = admin
            .inner()
            .fetch_watermarks(name, p.id(), common.brokers.timeout())
            .with_context(|| format!("cannot read offsets of {name}/{}", p.id()))?;
        partitions.push((p.id(), p.leader(), start, end));
    }
    let resources = admin
        .describe_configs([&ResourceSpecifier::Topic(name)], &options(common))
        .await
        .with_context(|| common.brokers.unreachable_hint())?;
    let mut configs = Vec::new();
    for resource in resources {
        let resource = resource
            .map_err(|code| anyhow::anyhow!("cannot describe configs of {name:?}: {code}"))?;
        for entry in resource.entries {
            configs.push((
                entry.name,
                entry.value.unwrap_or_default(),
                entry.is_default,
            ));
        }
    }
    configs.sort();
    if common.json {
        let parts: Vec<_> = partitions
            .iter()
            .map(|(partition, leader, start, end)| {
                json!({"partition": partition, "leader": leader, "log_start_offset": start, "log_end_offset": end})
            })
            .collect();
        let config_map: serde_json::Map<String, serde_json::Value> = configs
            .iter()
            .map(|(k, v, _)| (k.clone(), json!(v)))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"name": name, "partitions": parts, "configs": config_map})
            )?
        );
        return Ok(());
    }
    println!("topic {name}: {} partitions", partitions.len());
    println!(
        "{:>9}  {:>6}  {:>12}  {:>12}  {:>10}",
        "PARTITION", "LEADER", "START", "END", "RECORDS"
    );
    for (partition, leader, start, end) in &partitions {
        println!(
            "{partition:>9}  {leader:>6}  {start:>12}  {end:>12}  {:>10}",
            end - start
        );
    }
    if !configs.is_empty() {
        println!("configs:");
        for (key, value, is_default) in &configs {
            let origin = if *is_default { "default" } else { "topic" };
            println!("  {key} = {value}  ({origin})");
        }
    }
    Ok(())
}

async fn delete(common: &Common, name: &str) -> anyhow::Result<()> {
    let admin = admin(common)?;
    let results = admin
        .delete_topics(&[name], &options(common))
        .await
        .with_context(|| common.brokers.unreachable_hint())?;
    for result in results {
        if let Err((topic, code)) = result {
            bail!("cannot delete topic {topic:?}: {code}");
        }
    }
    if common.json {
        println!("{}", json!({"deleted": name}));
    } else {
        println!("deleted topic {name}");
    }
    Ok(())
}
