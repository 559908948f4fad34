//! Everything that changes the dashboard's state goes through one [`Action`]: terminal input,
//! the clock, and what the data sources found. The event loop turns each into an action and
//! hands it to `App::update`.

use crossterm::event::{KeyEvent, MouseEvent};

use super::entry::LogEntry;
use crate::lag::GroupSnapshot;
use crate::record::MetricSample;

#[derive(Debug)]
pub enum Action {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Resize(u16, u16),
    /// The clock, in ms since the epoch: rates, ages and staleness are computed from it.
    Tick(i64),
    Data(DataEvent),
}

/// What a data source sends to the event loop.
#[derive(Debug)]
pub enum DataEvent {
    /// Records of the logs topic, oldest first.
    Logs(Vec<LogEntry>),
    /// Metric samples (the Kafka timestamp in ms alongside).
    Metrics(Vec<(i64, MetricSample)>),
    /// A lag sample of every consumer group.
    Lag(Vec<GroupSnapshot>),
    /// Topics with their partitions' offsets.
    Topics(Vec<TopicInfo>),
    /// A source's health: whether it reaches the broker, and the last problem it met.
    Source(SourceKind, SourceState),
    /// Hits of the search with this id, in time order.
    SearchHits(u64, Vec<LogEntry>),
    /// The search with this id ended (an error says why it stopped early).
    SearchDone(u64, Result<SearchProgress, String>),
    /// Progress of the running search.
    SearchProgress(u64, SearchProgress),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    Tail,
    Metrics,
    Lag,
    Topics,
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Tail => "tail",
            SourceKind::Metrics => "metrics",
            SourceKind::Lag => "lag",
            SourceKind::Topics => "topics",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceState {
    /// Working; the string says on what (e.g. "3 partitions").
    Ok(String),
    /// Cannot do its work right now; it retries on its own.
    Failing(String),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchProgress {
    pub scanned: u64,
    pub bytes: u64,
    pub matched: u64,
}

/// A topic as the Topics poller saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    /// (partition, log start offset, log end offset)
    pub partitions: Vec<(i32, i64, i64)>,
    /// retention.ms, when the cluster told us (DescribeConfigs).
    pub retention_ms: Option<i64>,
    /// retention.bytes, when set (-1 is unlimited).
    pub retention_bytes: Option<i64>,
    /// When the sample was taken (ms since the epoch).
    pub at_ms: i64,
}

impl TopicInfo {
    pub fn end_total(&self) -> i64 {
        self.partitions.iter().map(|p| p.2).sum()
    }

    pub fn records(&self) -> i64 {
        self.partitions.iter().map(|p| (p.2 - p.1).max(0)).sum()
    }
}
