//! The command line a new user meets first: `--help` names every command with its purpose,
//! and shell completions are generated for the shells clap supports.

mod common;

use std::time::Duration;

#[test]
fn help_lists_every_command_with_a_purpose() {
    let run = common::run(
        &mut common::rill_cmd(["--help"]),
        None,
        Duration::from_secs(10),
    );
    run.assert_ok();
    for command in [
        "broker",
        "topics",
        "groups",
        "search",
        "dash",
        "up",
        "users",
        "completions",
    ] {
        let line = run
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(command))
            .unwrap_or_else(|| panic!("`rill --help` does not list {command}:\n{}", run.stdout));
        assert!(
            line.trim_start().len() > command.len() + 10,
            "{command} has no one-line purpose: {line:?}"
        );
    }
}

#[test]
fn completions_are_generated_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let run = common::run(
            &mut common::rill_cmd(["completions", shell]),
            None,
            Duration::from_secs(10),
        );
        run.assert_ok();
        assert!(
            run.stdout.contains("rill"),
            "{shell} completions:\n{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("topics"),
            "{shell} completions lack subcommands"
        );
    }
    let run = common::run(
        &mut common::rill_cmd(["completions", "tcsh"]),
        None,
        Duration::from_secs(10),
    );
    assert!(!run.success(), "an unknown shell must be refused");
}
