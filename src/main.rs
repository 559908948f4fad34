//! The `rill` command line: parse, set up logging, and hand over to the library.

use clap::{CommandFactory, Parser, Subcommand};

mod cli;

/// rill: a terminal log-aggregation and monitoring appliance that speaks the Kafka protocol.
///
/// Every rill command that connects to a broker takes --brokers, which defaults to
/// $RILL_BROKERS and then to 127.0.0.1:9092; it works against rill or any Kafka cluster.
#[derive(Debug, Parser)]
#[command(name = "rill", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Kafka-compatible broker (data on this machine, loopback by default)
    Broker(cli::broker::BrokerArgs),
    /// List, create, describe and delete topics on rill or any Kafka cluster
    #[command(subcommand)]
    Topics(cli::topics::TopicsCommand),
    /// List consumer groups and show their lag on rill or any Kafka cluster (never joins them)
    #[command(subcommand)]
    Groups(cli::groups::GroupsCommand),
    /// The live dashboard: logs from every host, metrics, consumer lag, topics, search
    Dash(cli::dash::DashArgs),
    /// Manage the broker's users file: SCRAM credentials and topic permissions
    #[command(subcommand)]
    Users(cli::users::UsersCommand),
    /// Search the aggregated logs by regex, time, host, source and level, merged in time order
    Search(cli::search::SearchArgs),
    /// Broker + local agent + dashboard in one command: this machine's logs and metrics, live
    Up(cli::up::UpArgs),
    /// Print a shell completion script: rill completions bash > /etc/bash_completion.d/rill
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        // The dashboard owns the terminal: its diagnostics go to a file, or nowhere.
        Command::Dash(_) => cli::logging::init_file_from_env("RILL_DASH_LOG"),
        // `rill up` logs to a file in its data directory, opened once that is known.
        Command::Up(_) => {}
        _ => cli::logging::init(),
    }
    let result = match cli.command {
        Command::Dash(args) => cli::dash::run(args),
        Command::Broker(args) => cli::broker::run(args),
        Command::Topics(command) => cli::topics::run(command),
        Command::Groups(command) => cli::groups::run(command),
        Command::Search(args) => cli::search::run(args),
        Command::Users(command) => cli::users::run(command),
        Command::Up(args) => cli::up::run(args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "rill", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rill: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
