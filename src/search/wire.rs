//! A minimal Kafka client over plain TCP for the search's scan: connect, ApiVersions,
//! Metadata, ListOffsets and Fetch, encoded with `kafka-protocol` (never hand-rolled framing).
//!
//! Why not librdkafka here: a search reads every record once and throws most away, and
//! librdkafka's per-message work (a message object, a queue hop, a poll per record) cost
//! about ten times what matching does; its client start-up took ~150 ms before the first
//! fetch. This client sends a few requests and hands whole record batches to the scanner.
//! It speaks plaintext only: connections that need TLS or SASL use the librdkafka reader
//! (see `search::reader_for`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

use crate::search::error::SearchError;

/// Largest response frame we accept: above any fetch we ask for (see `FETCH_MAX_BYTES`),
/// so a corrupt length cannot make us allocate gigabytes.
const MAX_FRAME: usize = 256 << 20;

/// The versions this client speaks, per API: the highest one the broker also speaks is used.
/// The lower bounds are what every broker since Kafka 1.0 has (Kafka 4 dropped older ones);
/// the upper bounds keep topic names (not ids) in Fetch and Metadata.
const SPOKEN: [(ApiKey, i16, i16); 3] = [
    (ApiKey::Metadata, 1, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Fetch, 4, 12),
];

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
    stream: TcpStream,
    /// The address as we were given it (for messages).
    pub addr: String,
    pub versions: Versions,
    next_correlation: i32,
    /// Correlation ids of the requests sent and not yet answered, oldest first.
    in_flight: std::collections::VecDeque<(i32, ApiKey, i16)>,
}

impl Connection {
    /// Connects to `addr` (`host:port`) and negotiates versions with ApiVersions.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Connection, SearchError> {
        let io = |cause| SearchError::Io {
            what: format!("cannot connect to the Kafka broker at {addr}"),
            cause,
        };
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(io)?.collect();
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        let mut stream = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let stream = stream.ok_or_else(|| io(last))?;
        stream.set_nodelay(true).map_err(io)?;
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        let mut conn = Connection {
            stream,
            addr: addr.to_string(),
            versions: Versions {
                metadata: 0,
                list_offsets: 0,
                fetch: 0,
            },
            next_correlation: 1,
            in_flight: Default::default(),
        };
        conn.versions = conn.negotiate()?;
        Ok(conn)
    }

    /// The peer's socket address (to recognise a leader we are already connected to).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.stream.peer_addr().ok()
    }

    /// Lets a read wait this long (fetches that long-poll need more than the default).
    pub fn set_read_timeout(&self, timeout: Duration) -> Result<(), SearchError> {
        self.stream
            .set_read_timeout(Some(timeout))
            .map_err(|source| self.io_error("cannot set a socket timeout", source))
    }

    fn negotiate(&mut self) -> Result<Versions, SearchError> {
        // v0: every broker answers it, with a v0 response header.
        let response = self.call(&ApiVersionsRequest::default(), 0)?;
        SearchError::check(response.error_code, || {
            format!("ApiVersions to {}", self.addr)
        })?;
        let mut chosen = [0i16; SPOKEN.len()];
        for (i, &(key, low, high)) in SPOKEN.iter().enumerate() {
            let theirs = response
                .api_keys
                .iter()
                .find(|k| k.api_key == key as i16)
                .ok_or_else(|| self.protocol(format!("the broker does not support {key:?}")))?;
            let version = high.min(theirs.max_version);
            if version < low.max(theirs.min_version) {
                return Err(self.protocol(format!(
                    "no common {key:?} version: the broker speaks {}..={}, rill search {low}..={high}",
                    theirs.min_version, theirs.max_version
                )));
            }
            chosen[i] = version;
        }
        Ok(Versions {
            metadata: chosen[0],
            list_offsets: chosen[1],
            fetch: chosen[2],
        })
    }

    /// Sends one request and waits for its answer.
    pub fn call<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, SearchError> {
        self.send(request, version)?;
        self.receive::<R>()
    }

    /// Sends a request without waiting for its answer.
    pub fn send<R: Request>(&mut self, request: &R, version: i16) -> Result<(), SearchError> {
        let key = ApiKey::try_from(R::KEY).map_err(|_| self.protocol("unknown API key".into()))?;
        let correlation = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let mut buf = BytesMut::with_capacity(128);
        buf.extend_from_slice(&[0; 4]);
        RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_static_str("rill")))
            .encode(&mut buf, key.request_header_version(version))
            .and_then(|()| request.encode(&mut buf, version))
            .map_err(|e| self.protocol(format!("cannot encode {key:?}: {e}")))?;
        let len = (buf.len() - 4) as u32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream
            .write_all(&buf)
            .map_err(|source| self.io_error(&format!("cannot send {key:?}"), source))?;
        self.in_flight.push_back((correlation, key, version));
        Ok(())
    }

    /// Receives the answer to the oldest request in flight, which must be an `R`.
    pub fn receive<R: Request>(&mut self) -> Result<R::Response, SearchError> {
        let Some((correlation, key, version)) = self.in_flight.pop_front() else {
            return Err(self.protocol("no request in flight".into()));
        };
        if key as i16 != R::KEY {
            return Err(self.protocol(format!("expected a {key:?} answer next")));
        }
        let what = format!("no answer to {key:?}");
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .map_err(|source| self.io_error(&what, source))?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(self.protocol(format!("a {len}-byte response frame")));
        }
        // Read into uninitialised capacity: zeroing megabytes first cost a twentieth of a scan.
        let mut frame = Vec::with_capacity(len);
        let read = (&mut self.stream)
            .take(len as u64)
            .read_to_end(&mut frame)
            .map_err(|source| self.io_error(&what, source))?;
        if read < len {
            let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed");
            return Err(self.io_error(&what, eof));
        }
        let mut frame = Bytes::from(frame);
        let header = ResponseHeader::decode(&mut frame, key.response_header_version(version))
            .map_err(|e| self.protocol(format!("bad {key:?} response header: {e}")))?;
        if header.correlation_id != correlation {
            return Err(self.protocol(format!(
                "answer {} to request {correlation}",
                header.correlation_id
            )));
        }
        R::Response::decode(&mut frame, version)
            .map_err(|e| self.protocol(format!("bad {key:?} v{version} response: {e}")))
    }

    fn io_error(&self, what: &str, source: std::io::Error) -> SearchError {
        let source = if matches!(
            source.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out")
        } else {
            source
        };
        SearchError::Io {
            what: format!("{what} (broker {})", self.addr),
            cause: source,
        }
    }

    fn protocol(&self, detail: String) -> SearchError {
        SearchError::Protocol {
            what: format!("broker {}", self.addr),
            detail,
        }
    }
}
