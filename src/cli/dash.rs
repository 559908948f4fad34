//! `rill dash`: the live dashboard over the logs and metrics topics, and consumer lag.

use clap::Args;

use rill::client::BrokerArgs;
use rill::dash::{Options, StartFrom, DEFAULT_CAPACITY};
use rill::record::{LOGS_TOPIC, METRICS_TOPIC};

#[derive(Debug, Args)]
#[command(
    after_help = "Keys: 1-5 views · Tab cycles · / include filter · \\ exclude filter · \
l level · h hosts · Space pause · n/N match · e/E error · Enter record · ? help · q quit\n\n\
Examples:\n  rill dash\n  rill dash --brokers kafka1:9092 --from 1h\n  \
rill dash --from beginning --capacity 500000\n\n\
Environment: NO_COLOR turns colours off; RILL_DASH_LOG=FILE writes rill's diagnostics there \
(nothing is logged otherwise, the terminal is the dashboard's); RILL_DASH_STATS=FILE records \
frame and key timings (bench/dash.sh)."
)]
pub struct DashArgs {
    #[command(flatten)]
    brokers: BrokerArgs,
    /// The logs topic (rill's record contract; other records are shown as raw text)
    #[arg(long, default_value = LOGS_TOPIC)]
    topic: String,
    /// The metrics topic
    #[arg(long, default_value = METRICS_TOPIC)]
    metrics_topic: String,
    /// Where the Tail view starts: end (a few screens back, then follow), beginning, or a
    /// time (15m, 1h, 2d back, or RFC 3339)
    #[arg(long, default_value = "end", value_name = "end|beginning|TIME")]
    from: String,
    /// Records the Tail view keeps in memory (the oldest go first)
    #[arg(long, default_value_t = DEFAULT_CAPACITY as u64, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    capacity: u64,
}

pub fn run(args: DashArgs) -> anyhow::Result<()> {
    let from = StartFrom::parse(&args.from, rill::lag::now_ms())?;
    let options = Options {
        brokers: args.brokers,
        topic: args.topic,
        metrics_topic: args.metrics_topic,
        from,
        capacity: usize::try_from(args.capacity)?,
        label: None,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(rill::dash::run(options));
    // The sources stop within ~100 ms of the dashboard; a source stuck in a long broker
    // call must not keep the terminal waiting.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    Ok(result?)
}
