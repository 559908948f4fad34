//! rill's own diagnostics go through `tracing` to stderr; `RILL_LOG` sets the filter
//! (e.g. `RILL_LOG=debug` or `RILL_LOG=rill::broker=debug`), NO_COLOR turns colour off.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;

use tracing_subscriber::EnvFilter;

fn filter() -> EnvFilter {
    EnvFilter::try_from_env("RILL_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // sled's debug output is about its own pages, never about rill's data: keep it out.
        .add_directive("sled=warn".parse().expect("static directive"))
}

pub fn init() {
    let filter = filter();
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .init();
}

/// For commands whose terminal belongs to the dashboard: diagnostics go to a file instead.
pub fn init_to_file(path: &Path) -> anyhow::Result<()> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the log file {}", path.display()))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .init();
    Ok(())
}

/// `rill dash`: logs to the file named by the environment variable `var` when it is set, and
/// nowhere otherwise (the terminal belongs to the dashboard).
pub fn init_file_from_env(var: &str) {
    let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) else {
        return;
    };
    if let Err(e) = init_to_file(Path::new(&path)) {
        // Said before the dashboard takes the screen; it runs without a log.
        eprintln!("rill: {e:#}; running without a log");
    }
}
