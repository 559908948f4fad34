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
    #[command(about = cli::search::ABOUT)]
    Search(cli::search::SearchArgs),
    /// Broker + local agent + dashboard in one command: this machine's logs and metrics, live
    Up(cli::up::UpArgs),
    /// Print a shell completion script: rill completions bash > /etc/bash_completion.d/rill
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

/// `rill search` alone, parsed as [`Cli`] parses it: a search starts without building the
/// parsers of every other command (0.2 ms of a 9 ms search over the newest records).
#[derive(Debug, Parser)]
#[command(name = "rill", version, propagate_version = true)]
struct SearchCli {
    #[command(subcommand)]
    command: SearchCommand,
}

#[derive(Debug, Subcommand)]
enum SearchCommand {
    #[command(about = cli::search::ABOUT)]
    Search(cli::search::SearchArgs),
}

fn main() -> std::process::ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "search") {
        let SearchCli {
            command: SearchCommand::Search(args),
        } = SearchCli::parse();
        cli::logging::init();
        return exit_code(cli::search::run(args));
    }
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
    exit_code(result)
}

fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rill: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rill search`'s own parser must be the full command line's, to the letter.
    #[test]
    fn the_search_parser_is_the_full_command_lines() {
        let render = |mut command: clap::Command| {
            command.build();
            let search = command
                .find_subcommand_mut("search")
                .expect("a search subcommand");
            (
                search.render_long_help().to_string(),
                search.render_usage().to_string(),
                search.render_long_version(),
            )
        };
        assert_eq!(render(SearchCli::command()), render(Cli::command()));
        let argv = ["rill", "search", "x", "--since", "1h", "--count"];
        let SearchCli {
            command: SearchCommand::Search(quick),
        } = SearchCli::try_parse_from(argv).expect("parses");
        let Command::Search(full) = Cli::try_parse_from(argv).expect("parses").command else {
            panic!("not a search");
        };
        assert_eq!(format!("{quick:?}"), format!("{full:?}"));
        for bad in [
            &["rill", "search"][..],
            &["rill", "search", "x", "--count", "--json"],
        ] {
            let quick = SearchCli::try_parse_from(bad)
                .expect_err("refused")
                .to_string();
            let full = Cli::try_parse_from(bad).expect_err("refused").to_string();
            assert_eq!(quick, full);
        }
    }
}
