//! The search's Kafka connection: rill's minimal plaintext client
//! (`rill_agent::kafka::wire`, shared with the agent's producer) with the versions the scan
//! needs (Metadata, ListOffsets, Fetch) and its errors as [`SearchError`]s.
//!
//! Why not librdkafka here: a search reads every record once and throws most away, and
//! librdkafka's per-message work (a message object, a queue hop, a poll per record) cost
//! about ten times what matching does; its client start-up took ~150 ms before the first
//! fetch. This client sends a few requests and hands whole record batches to the scanner.
//! It speaks plaintext only: connections that need TLS or SASL use the librdkafka reader
//! (see `search::reader_for`).

use std::net::SocketAddr;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Request;
use rill_agent::kafka::wire::{self, WireError};

use crate::search::error::SearchError;

/// The versions this client speaks, per API: the highest one the broker also speaks is used.
/// The lower bounds are what every broker since Kafka 1.0 has (Kafka 4 dropped older ones);
/// the upper bounds keep topic names (not ids) in Fetch and Metadata.
const SPOKEN: [(ApiKey, i16, i16); 3] = [
    (ApiKey::Metadata, 1, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Fetch, 4, 12),
];

/// The socket receive buffer a search asks for: room for a whole Fetch answer (just under
/// 1 MiB) and most of the next, so the broker sends the next answer while the previous one
/// is scanned instead of waiting for the scan to make room. Linux starts a connection with
/// 128 KiB and grows it only as data flows: a short search (`--since` over the newest 10 %)
/// ended before it had grown, and waited on the broker for most of its second answer.
const RECEIVE_BUFFER: usize = 2 << 20;

/// The versions negotiated with one broker.
#[derive(Debug, Clone, Copy)]
pub struct Versions {
    pub metadata: i16,
    pub list_offsets: i16,
    pub fetch: i16,
}

/// One connection to one broker. Requests may be pipelined: `send` several, then `receive`
/// their responses in the same order (Kafka answers each connection's requests in order).
pub struct Connection {
    inner: wire::Connection,
    /// The address as we were given it (for messages).
    pub addr: String,
    pub versions: Versions,
}

impl From<WireError> for SearchError {
    fn from(e: WireError) -> SearchError {
        match e {
            WireError::Io { what, cause } => SearchError::Io { what, cause },
            WireError::Protocol { what, detail } => SearchError::Protocol { what, detail },
            WireError::Kafka { what, error, code } => SearchError::Kafka { what, error, code },
        }
    }
}

impl Connection {
    /// Connects to `addr` (`host:port`) and negotiates versions with ApiVersions.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Connection, SearchError> {
        let inner = wire::Connection::connect(addr, timeout, "rill", &SPOKEN)?;
        Ok(Connection {
            addr: inner.addr.clone(),
            versions: Versions {
                metadata: inner.version(0),
                list_offsets: inner.version(1),
                fetch: inner.version(2),
            },
            inner,
        }
        .with_receive_buffer())
    }

    /// One more connection to the same broker, without asking its versions again.
    pub fn another(&self, timeout: Duration) -> Result<Connection, SearchError> {
        Ok(Connection {
            inner: self.inner.another(timeout)?,
            addr: self.addr.clone(),
            versions: self.versions,
        }
        .with_receive_buffer())
    }

    /// Asks for a [`RECEIVE_BUFFER`] when the system allows one that large: a fixed size
    /// turns the kernel's growing of the buffer off, so a smaller one (the kernel caps it at
    /// `net.core.rmem_max`, 208 KiB by default) would cost long scans more than it saves.
    fn with_receive_buffer(self) -> Connection {
        static ALLOWED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let allowed = ALLOWED.get_or_init(|| {
            std::fs::read_to_string("/proc/sys/net/core/rmem_max")
                .ok()
                .and_then(|max| max.trim().parse::<usize>().ok())
                .is_some_and(|max| max >= RECEIVE_BUFFER)
        });
        if *allowed {
            let socket = socket2::SockRef::from(self.inner.stream());
            if let Err(e) = socket.set_recv_buffer_size(RECEIVE_BUFFER) {
                tracing::debug!(error = %e, "cannot enlarge the socket receive buffer");
            }
        }
        self
    }

    /// The peer's socket address (to recognise a leader we are already connected to).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.inner.peer()
    }

    /// Lets a read wait this long (fetches that long-poll need more than the default).
    pub fn set_read_timeout(&self, timeout: Duration) -> Result<(), SearchError> {
        Ok(self.inner.set_read_timeout(timeout)?)
    }

    /// Sends one request and waits for its answer.
    pub fn call<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, SearchError> {
        Ok(self.inner.call(request, version)?)
    }

    /// Sends a request without waiting for its answer.
    pub fn send<R: Request>(&mut self, request: &R, version: i16) -> Result<(), SearchError> {
        Ok(self.inner.send(request, version)?)
    }

    /// Receives the answer to the oldest request in flight, which must be an `R`.
    pub fn receive<R: Request>(&mut self) -> Result<R::Response, SearchError> {
        Ok(self.inner.receive::<R>()?)
    }
}
