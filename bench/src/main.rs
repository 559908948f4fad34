//! `rill-bench`: load drivers for rill's benchmarks.
//!
//! The drivers are real librdkafka clients (through `rdkafka`), so the numbers are what a Kafka
//! user would see, and they work unchanged against rill or any Kafka cluster. `bench/broker.sh`
//! and `bench/groups.sh` run them; each subcommand prints progress on stderr and exactly one JSON
//! line per run on stdout, so the scripts can collect results without scraping human-readable
//! text.

mod agent;
mod commits;
mod common;
mod consume;
mod load;
mod logs;
mod procfs;
mod produce;
mod rebalance;
mod report;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rill-bench",
    version,
    about = "Benchmark drivers for rill (and any Kafka broker)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Produce N records as fast as the broker takes them; print throughput and latency as JSON.
    Produce(produce::Args),
    /// Read a topic back from its earliest offset to its end; print throughput as JSON.
    Consume(consume::Args),
    /// Time a consumer group forming (all join -> all assigned) over several runs; JSON per run.
    Rebalance(rebalance::Args),
    /// Commit offsets from N concurrent committers for a while; print throughput as JSON.
    Commits(commits::Args),
    /// Hold many connections producing and consuming for a while (raw Kafka protocol); JSON.
    Load(load::Args),
    /// Produce record-contract log lines at a fixed rate for a while (bench/dash.sh).
    Logs(logs::Args),
    /// Summarise the JSON lines of several runs (medians) as a Markdown table against targets.
    Report(report::Args),
    /// rill-agent benchmark drivers (bench/agent.sh): throughput, latency, idle, report.
    #[command(subcommand)]
    Agent(agent::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Produce(args) => produce::run(&args),
        Command::Consume(args) => consume::run(&args),
        Command::Rebalance(args) => rebalance::run(&args),
        Command::Commits(args) => commits::run(&args),
        Command::Load(args) => load::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Logs(args) => logs::run(&args),
        Command::Agent(cmd) => agent::run(&cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("rill-bench: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
