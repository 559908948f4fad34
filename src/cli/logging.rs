//! rill's own diagnostics go through `tracing` to stderr; `RILL_LOG` sets the filter
//! (e.g. `RILL_LOG=debug` or `RILL_LOG=rill::broker=debug`), NO_COLOR turns colour off.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_env("RILL_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // sled's debug output is about its own pages, never about rill's data: keep it out.
        .add_directive("sled=warn".parse().expect("static directive"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .init();
}

/// Logs to the file named by the environment variable `var` (appending), with `RILL_LOG`'s
/// filter; nothing is logged when it is unset or the file cannot be opened. For commands
/// that own the terminal.
pub fn init_file_from_env(var: &str) {
    let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) else {
        return;
    };
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    else {
        return;
    };
    let filter = EnvFilter::try_from_env("RILL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .init();
}
