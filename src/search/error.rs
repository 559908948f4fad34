//! What can go wrong in a search, for the library's callers (the CLI and the dashboard) to
//! report. The messages say what to do next where there is something to do. Each message
//! holds its cause (so `{}` alone tells the whole story); the cause is therefore not also
//! chained as a `source`, which would print it twice under `{:#}`.

use crate::search::batch::BatchError;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// No bootstrap broker answered.
    #[error("{hint}: {cause}")]
    Unreachable { hint: String, cause: std::io::Error },
    /// librdkafka could not get the cluster's metadata; the message says why (a refused
    /// password, a TLS failure) or what to check.
    #[error("{0}")]
    NoMetadata(String),
    #[error("topic {topic:?} not found on {brokers} (see `rill topics list`)")]
    UnknownTopic { topic: String, brokers: String },
    /// A broker answered a request with a Kafka error code.
    #[error("{what}: the broker answered {error} (Kafka error code {code})")]
    Kafka {
        what: String,
        error: String,
        code: i16,
    },
    /// The connection to a broker failed or timed out mid-search.
    #[error("{what}: {cause}")]
    Io { what: String, cause: std::io::Error },
    /// A broker sent something that is not the Kafka protocol as we know it.
    #[error("{what}: {detail}")]
    Protocol { what: String, detail: String },
    #[error("{partition}: {cause}")]
    Batch {
        partition: String,
        cause: BatchError,
    },
    /// librdkafka (the reader used for TLS/SASL connections) failed.
    #[error("{what}: {cause}")]
    Client {
        what: String,
        cause: rdkafka::error::KafkaError,
    },
    #[error("cannot start a search thread: {0}")]
    Thread(std::io::Error),
}

impl SearchError {
    /// A Kafka error code as an error (`None` for 0, no error).
    pub(crate) fn check(code: i16, what: impl FnOnce() -> String) -> Result<(), SearchError> {
        if code == 0 {
            return Ok(());
        }
        let error = match kafka_protocol::ResponseError::try_from_code(code) {
            Some(e) => format!("{e:?}"),
            None => "an unknown error".to_string(),
        };
        Err(SearchError::Kafka {
            what: what(),
            error,
            code,
        })
    }
}
