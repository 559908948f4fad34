//! A minimal Kafka connection over plain TCP: connect, negotiate versions with ApiVersions,
//! and frame requests and responses encoded with `kafka-protocol` (never hand-rolled
//! framing). Shared by rill's own clients: the agent's producer ([`super::producer`]) and
//! `rill search`'s reader.
//!
//! Plaintext only: connections that need TLS or SASL go through librdkafka.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

use super::huge_pages::{FramePool, POOLED_FRAME_BYTES};

/// Largest response frame we accept: above any fetch rill asks for, so a corrupt length
/// cannot make us allocate gigabytes.
const MAX_FRAME: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The connection failed or timed out.
    #[error("{what}: {cause}")]
    Io { what: String, cause: std::io::Error },
    /// The broker sent something that is not the Kafka protocol as we know it.
    #[error("{what}: {detail}")]
    Protocol { what: String, detail: String },
    /// The broker answered with a Kafka error code.
    #[error("{what}: the broker answered {error} (Kafka error code {code})")]
    Kafka {
        what: String,
        error: String,
        code: i16,
    },
}

impl WireError {
    /// A Kafka error code as an error (`None` for 0, no error).
    pub fn check(code: i16, what: impl FnOnce() -> String) -> Result<(), WireError> {
        if code == 0 {
            return Ok(());
        }
        Err(WireError::Kafka {
            what: what(),
            error: error_name(code),
            code,
        })
    }
}

/// The name of a Kafka error code, for messages.
pub fn error_name(code: i16) -> String {
    match kafka_protocol::ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?}"),
        None => "an unknown error".to_string(),
    }
}

/// Which versions of which APIs a client speaks: `(api, lowest, highest)`.
pub type Spoken = [(ApiKey, i16, i16)];

/// One connection to one broker. Requests may be pipelined: `send` several, then `receive`
/// their responses in the same order (Kafka answers each connection's requests in order).
pub struct Connection {
    stream: TcpStream,
    /// The address as we were given it (for messages).
    pub addr: String,
    /// The negotiated version of each API of `spoken`, in its order.
    versions: Vec<i16>,
    framer: Framer,
    /// The requests sent and not yet answered, oldest first.
    in_flight: VecDeque<Pending>,
    /// The buffers large responses are read into, reused (see [`FramePool`]).
    frames: FramePool,
}

/// A request sent and waiting for its answer.
#[derive(Debug, Clone, Copy)]
pub struct Pending {
    pub correlation: i32,
    pub key: ApiKey,
    pub version: i16,
}

/// Encodes requests: numbers them and prefixes their length.
pub struct Framer {
    client_id: &'static str,
    next_correlation: i32,
}

impl Framer {
    pub fn new(client_id: &'static str) -> Framer {
        Framer {
            client_id,
            next_correlation: 1,
        }
    }

    /// The whole frame of a request (length prefix, header, body) and what to expect back.
    pub fn frame<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        size_hint: usize,
    ) -> Result<(BytesMut, Pending), String> {
        let key = ApiKey::try_from(R::KEY).map_err(|_| "unknown API key".to_string())?;
        let correlation = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let mut buf = BytesMut::with_capacity(128 + size_hint);
        buf.extend_from_slice(&[0; 4]);
        RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_static_str(self.client_id)))
            .encode(&mut buf, key.request_header_version(version))
            .and_then(|()| request.encode(&mut buf, version))
            .map_err(|e| format!("cannot encode {key:?}: {e}"))?;
        let len = (buf.len() - 4) as u32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        Ok((
            buf,
            Pending {
                correlation,
                key,
                version,
            },
        ))
    }
}

/// Reads one response frame (without its length prefix) from `stream`.
pub fn read_frame(stream: &mut impl Read) -> std::io::Result<Bytes> {
    read_pooled_frame(stream, None)
}

/// [`read_frame`], into a buffer of `pool` when the frame is large.
fn read_pooled_frame(stream: &mut impl Read, pool: Option<&FramePool>) -> std::io::Result<Bytes> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a {len}-byte response frame"),
        ));
    }
    if let Some(pool) = pool.filter(|_| len >= POOLED_FRAME_BYTES) {
        return pool.read(stream, len);
    }
    // Room for all of it at once (no regrowing copies); `len` is at most MAX_FRAME, and
    // memory reserved but never written costs nothing.
    let mut frame = Vec::with_capacity(len);
    let read = stream.take(len as u64).read_to_end(&mut frame)?;
    if read < len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    Ok(Bytes::from(frame))
}

/// Decodes a response frame to the request `pending`, which must be an `R`.
pub fn decode_response<R: Request>(
    mut frame: Bytes,
    pending: Pending,
) -> Result<R::Response, String> {
    let Pending {
        correlation,
        key,
        version,
    } = pending;
    if key as i16 != R::KEY {
        return Err(format!("expected a {key:?} answer next"));
    }
    let header = ResponseHeader::decode(&mut frame, key.response_header_version(version))
        .map_err(|e| format!("bad {key:?} response header: {e}"))?;
    if header.correlation_id != correlation {
        return Err(format!(
            "answer {} to request {correlation}",
            header.correlation_id
        ));
    }
    R::Response::decode(&mut frame, version)
        .map_err(|e| format!("bad {key:?} v{version} response: {e}"))
}

/// Connects a TCP socket to `addr` (`host:port`, trying each address it resolves to).
pub fn connect_tcp(addr: &str, timeout: Duration) -> std::io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for a in &addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => {
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl Connection {
    /// Connects to `addr` (`host:port`) and negotiates the versions of `spoken` with
    /// ApiVersions. `client_id` names the client in requests (and in messages).
    pub fn connect(
        addr: &str,
        timeout: Duration,
        client_id: &'static str,
        spoken: &Spoken,
    ) -> Result<Connection, WireError> {
        let mut conn = Connection::open(addr, timeout, client_id, Vec::new())?;
        conn.versions = conn.negotiate(client_id, spoken)?;
        Ok(conn)
    }

    /// One more connection to the same broker, with the versions already negotiated: they
    /// are the broker's, so asking again would only cost a round trip.
    pub fn another(&self, timeout: Duration) -> Result<Connection, WireError> {
        Connection::open(
            &self.addr,
            timeout,
            self.framer.client_id,
            self.versions.clone(),
        )
    }

    /// A TCP connection to `addr` that speaks `versions`.
    fn open(
        addr: &str,
        timeout: Duration,
        client_id: &'static str,
        versions: Vec<i16>,
    ) -> Result<Connection, WireError> {
        let stream = connect_tcp(addr, timeout).map_err(|cause| WireError::Io {
            what: format!("cannot connect to the Kafka broker at {addr}"),
            cause,
        })?;
        Ok(Connection {
            stream,
            addr: addr.to_string(),
            versions,
            framer: Framer::new(client_id),
            in_flight: VecDeque::new(),
            frames: FramePool::default(),
        })
    }

    /// The negotiated version of the `i`-th API of the `spoken` list given to `connect`.
    pub fn version(&self, i: usize) -> i16 {
        self.versions.get(i).copied().unwrap_or(0)
    }

    /// The socket, e.g. to read and write on different threads (`try_clone`).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The peer's socket address (to recognise a leader we are already connected to).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.stream.peer_addr().ok()
    }

    /// Lets a read wait this long (fetches that long-poll need more than the default).
    pub fn set_read_timeout(&self, timeout: Duration) -> Result<(), WireError> {
        self.stream
            .set_read_timeout(Some(timeout))
            .map_err(|source| self.io_error("cannot set a socket timeout", source))
    }

    fn negotiate(&mut self, client: &str, spoken: &Spoken) -> Result<Vec<i16>, WireError> {
        // v0: every broker answers it, with a v0 response header.
        let response = self.call(&ApiVersionsRequest::default(), 0)?;
        WireError::check(response.error_code, || {
            format!("ApiVersions to {}", self.addr)
        })?;
        let mut chosen = Vec::with_capacity(spoken.len());
        for &(key, low, high) in spoken {
            let theirs = response
                .api_keys
                .iter()
                .find(|k| k.api_key == key as i16)
                .ok_or_else(|| self.protocol(format!("the broker does not support {key:?}")))?;
            let version = high.min(theirs.max_version);
            if version < low.max(theirs.min_version) {
                return Err(self.protocol(format!(
                    "no common {key:?} version: the broker speaks {}..={}, {client} {low}..={high}",
                    theirs.min_version, theirs.max_version
                )));
            }
            chosen.push(version);
        }
        Ok(chosen)
    }

    /// Sends one request and waits for its answer.
    pub fn call<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, WireError> {
        self.send(request, version)?;
        self.receive::<R>()
    }

    /// Sends a request without waiting for its answer.
    pub fn send<R: Request>(&mut self, request: &R, version: i16) -> Result<(), WireError> {
        let (buf, pending) = self
            .framer
            .frame(request, version, 0)
            .map_err(|e| self.protocol(e))?;
        self.stream
            .write_all(&buf)
            .map_err(|source| self.io_error(&format!("cannot send {:?}", pending.key), source))?;
        self.in_flight.push_back(pending);
        Ok(())
    }

    /// Receives the answer to the oldest request in flight, which must be an `R`.
    pub fn receive<R: Request>(&mut self) -> Result<R::Response, WireError> {
        let Some(pending) = self.in_flight.pop_front() else {
            return Err(self.protocol("no request in flight".into()));
        };
        let frame = read_pooled_frame(&mut self.stream, Some(&self.frames)).map_err(|source| {
            let what = format!("no answer to {:?}", pending.key);
            if source.kind() == std::io::ErrorKind::InvalidData {
                self.protocol(source.to_string())
            } else {
                self.io_error(&what, source)
            }
        })?;
        decode_response::<R>(frame, pending).map_err(|e| self.protocol(e))
    }

    fn io_error(&self, what: &str, source: std::io::Error) -> WireError {
        io_error(&self.addr, what, source)
    }

    fn protocol(&self, detail: String) -> WireError {
        WireError::Protocol {
            what: format!("broker {}", self.addr),
            detail,
        }
    }
}

/// An I/O error on the connection to `addr`, with timeouts named as such.
pub fn io_error(addr: &str, what: &str, source: std::io::Error) -> WireError {
    let source = if matches!(
        source.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ) {
        std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out")
    } else {
        source
    };
    WireError::Io {
        what: format!("{what} (broker {addr})"),
        cause: source,
    }
}
