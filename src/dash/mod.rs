//! `rill dash`: the live terminal dashboard (ratatui + crossterm on tokio).
//!
//! The component pattern: terminal input, the clock and what the data sources find become
//! [`action::Action`]s on one event loop ([`event_loop`]); [`app::App::update`] changes the
//! state; [`views::draw`] draws it, a pure function of the state. The network and decoding
//! run in [`sources`] on their own threads, so drawing never waits on the broker. Memory is
//! bounded: the Tail keeps the last `capacity` records whatever the ingest rate.
//!
//! [`run`] is the entry point for `rill dash` and for `rill up` (in the same process and
//! runtime): it owns the terminal while it runs and gives it back on every way out.

pub mod action;
pub mod app;
pub mod entry;
mod event_loop;
pub mod filter;
mod sources;
mod stats;
pub mod tail;
mod terminal;
pub mod theme;
pub mod views;
pub mod widgets;

use crate::client::BrokerArgs;

/// Records the Tail view keeps by default.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// Where the Tail view starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// A few screens back from the newest record, like `tail -f`.
    End,
    /// The oldest record still in the topic.
    Beginning,
    /// The first record at or after this time (ms since the epoch).
    Time(i64),
}

impl StartFrom {
    /// Parses `end`, `beginning`, a duration back from now (`15m`, `1h`, `2d`) or an RFC 3339
    /// time.
    pub fn parse(s: &str, now_ms: i64) -> Result<StartFrom, Error> {
        match s.trim() {
            "end" => Ok(StartFrom::End),
            "beginning" => Ok(StartFrom::Beginning),
            other => crate::search::parse_time(other, now_ms)
                .map(StartFrom::Time)
                .map_err(|e| {
                    Error::Options(format!("--from: expected end, beginning or a time: {e}"))
                }),
        }
    }
}

/// What the dashboard shows and where it reads it.
#[derive(Debug, Clone)]
pub struct Options {
    pub brokers: BrokerArgs,
    /// The logs topic (record contract: `rill::record`).
    pub topic: String,
    pub metrics_topic: String,
    pub from: StartFrom,
    /// Records the Tail view keeps (the oldest go first); at least 1.
    pub capacity: usize,
    /// Shown in the status bar, e.g. "rill up · data in ~/.local/share/rill".
    pub label: Option<String>,
}

impl Options {
    /// The defaults `rill dash` uses: topics `logs` and `metrics`, from the end, 100,000
    /// records, no label.
    pub fn new(brokers: BrokerArgs) -> Options {
        Options {
            brokers,
            topic: crate::record::LOGS_TOPIC.to_string(),
            metrics_topic: crate::record::METRICS_TOPIC.to_string(),
            from: StartFrom::End,
            capacity: DEFAULT_CAPACITY,
            label: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The options make no sense (the message says which and why).
    #[error("{0}")]
    Options(String),
    /// The terminal could not be set up, read or drawn to.
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
    /// RILL_DASH_STATS names a file that cannot be written.
    #[error("RILL_DASH_STATS: cannot write {path}: {source}")]
    Stats {
        path: String,
        source: std::io::Error,
    },
}

/// Runs the dashboard until the user quits (q or Ctrl-C). Takes over the terminal (raw mode,
/// alternate screen, mouse capture) and restores it when it returns, fails or panics. Needs a
/// tokio runtime (any flavour); installs no signal handler and no tracing subscriber.
pub async fn run(options: Options) -> Result<(), Error> {
    event_loop::run(options).await
}
#[cfg(test)]
mod tests;
