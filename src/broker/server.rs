//! The network side: accept connections (at most `max_connections` at once), read
//! length-prefixed request frames, answer each in order, and shut down cleanly.
//!
//! Like Kafka, a connection's requests are handled one at a time in arrival order (Kafka mutes
//! a channel until its response is sent), which keeps responses ordered without bookkeeping.
//! Anything that cannot be answered (a bad length, an undecodable or unknown request) closes
//! that one connection with a log line; every other client is unaffected.
//!
//! The main listener speaks TLS when the broker has a certificate; an optional second listener
//! (`broker.listen_plaintext`) does not. Each connection carries a [`Session`] with its
//! listener and SASL state.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::broker::api::{self, Reply};
use crate::broker::listener::Listener;
use crate::broker::response::{self, ResponseWriter};
use crate::broker::session::Session;
use crate::broker::Broker;
use crate::config::FlushPolicy;

/// A client has this long to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection closed after a final response waits for the client to hang up.
const LINGER: Duration = Duration::from_secs(1);
/// Largest frame accepted before SASL authentication completes (Kafka: 512 KiB).
const MAX_UNAUTHENTICATED_FRAME: usize = 512 * 1024;

/// Serves `listener` as the main listener (TLS when the broker has a certificate) until
/// `shutdown` completes; see [`serve_listeners`].
pub async fn serve(broker: Arc<Broker>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    serve_listeners(broker, listener, None, shutdown).await
}

/// Serves the main listener and, if given, a plaintext one until `shutdown` completes, then
/// stops accepting, drops open connections, and flushes every partition and the metadata store.
pub async fn serve_listeners(
    broker: Arc<Broker>,
    main: TcpListener,
    plaintext: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) {
    let describe = |tcp: &TcpListener, tls: bool| {
        let bound = tcp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        Arc::new(broker.listener(bound, tls))
    };
    let main_info = describe(&main, true);
    let plaintext_info = plaintext.as_ref().map(|tcp| describe(tcp, false));
    let limit = Arc::new(Semaphore::new(broker.config.max_connections));
    let mut connections = JoinSet::new();
    let mut background = JoinSet::new();
    background.spawn(retention_loop(broker.clone()));
    background.spawn(group_loop(broker.clone()));
    if broker.config.flush == FlushPolicy::Interval {
        background.spawn(flush_loop(broker.clone()));
    }
    tokio::pin!(shutdown);
    loop {
        // Wait for a free connection slot before accepting: excess clients wait in the
        // kernel's accept queue instead of costing us memory.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (accepted, listener) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = main.accept() => (accepted, main_info.clone()),
            accepted = accept_if(plaintext.as_ref()) => {
                (accepted, plaintext_info.clone().unwrap_or_else(|| main_info.clone()))
            }
        };
        // Reap finished connection tasks so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, peer)) => {
                let broker = broker.clone();
                connections.spawn(async move {
                    handle_connection(broker, stream, peer, listener).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tracing::info!("shutting down: closing {} connections", connections.len());
    connections.shutdown().await;
    background.shutdown().await;
    let failures = broker.flush_dirty();
    if let Err(e) = broker.meta.flush() {
        tracing::error!("flushing metadata failed: {e}");
    }
    if failures == 0 {
        tracing::info!("all data flushed; broker stopped");
    }
}

/// Accepts on `listener`, or never completes when there is none.
async fn accept_if(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

async fn handle_connection(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<Listener>,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, "set_nodelay failed: {e}");
    }
    tracing::debug!(%peer, protocol = %listener.protocol, "connection opened");
    let session = Session::new(peer, listener.clone());
    match &listener.tls {
        None => {
            // Owned halves of a TCP stream need no lock between reader and writer.
            let (read_half, write_half) = stream.into_split();
            serve_connection(broker, read_half, write_half, session).await
        }
        Some(acceptor) => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let (read_half, write_half) = tokio::io::split(tls);
                    serve_connection(broker, read_half, write_half, session).await
                }
                Ok(Err(e)) => tracing::info!(
                    %peer,
                    "TLS handshake failed: {e} (the client must use security.protocol=SSL or \
                     SASL_SSL and trust this broker's certificate)"
                ),
                Err(_) => tracing::info!(
                    %peer,
                    "TLS handshake not completed within {TLS_HANDSHAKE_TIMEOUT:?}"
                ),
            }
        }
    }
}

async fn serve_connection<R, W>(
    broker: Arc<Broker>,
    read_half: R,
    write_half: W,
    mut session: Session,
) where
    R: AsyncRead + Send + Unpin,
    W: ResponseWriter,
{
    let peer = session.peer;
    let idle = Duration::from_millis(broker.config.idle_timeout_ms);
    let max_request = broker.config.max_request_bytes;
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let mut writer = BufWriter::with_capacity(64 * 1024, write_half);
    loop {
        let length = match tokio::time::timeout(idle, reader.read_i32()).await {
            Err(_) => {
                tracing::debug!(%peer, "closing connection idle for {idle:?}");
                break;
            }
            Ok(Err(_)) => break, // the client closed the connection
            Ok(Ok(length)) => length,
        };
        if length <= 0 || length as usize > max_request {
            tracing::warn!(%peer, length, max_request, "closing connection: request frame length out of range (broker.max_request_bytes)");
            break;
        }
        if !session.is_authenticated() && length as usize > MAX_UNAUTHENTICATED_FRAME {
            // Kafka's sasl.server.max.receive.size: a stranger cannot make us buffer 100 MiB.
            tracing::warn!(%peer, length, "closing connection: {length}-byte frame before authentication");
            break;
        }
        // Grow the buffer as bytes arrive rather than trusting the length up front, so a
        // client announcing a large frame and sending nothing costs no memory.
        let mut frame = Vec::with_capacity((length as usize).min(64 * 1024));
        let mut body = (&mut reader).take(length as u64);
        match tokio::time::timeout(idle, body.read_to_end(&mut frame)).await {
            Ok(Ok(n)) if n == length as usize => {}
            Ok(Ok(n)) => {
                tracing::warn!(%peer, "closing connection: truncated request ({n} of {length} bytes)");
                break;
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, "read failed: {e}");
                break;
            }
            Err(_) => {
                tracing::warn!(%peer, "closing connection: request body not received within {idle:?}");
                break;
            }
        }
        let (response, close) = match api::handle(&broker, Bytes::from(frame), &mut session).await {
            Reply::Send(response) => (response, None),
            Reply::SendAndClose(response, reason) => (response, Some(reason)),
            Reply::Nothing => continue,
            Reply::Close(reason) => {
                tracing::warn!(%peer, "closing connection: {reason}");
                break;
            }
        };
        // Flush unless more requests are already buffered (pipelined clients), and always
        // before closing.
        let flush = reader.buffer().is_empty() || close.is_some();
        if let Err(e) = response::write(&mut writer, &response, flush).await {
            // The length is out already: the rest of the stream would be garbage.
            tracing::debug!(%peer, "write failed: {e}");
            break;
        }
        if let Some(reason) = close {
            tracing::warn!(%peer, "closing connection: {reason}");
            // The client must read this last response (e.g. why authentication failed)
            // before the connection goes: some clients (kafka-python over TLS) report only
            // "disconnected" when the close arrives with it. Give it time to read and hang up
            // itself, draining what it sends (closing with unread input would reset the
            // connection), then close with TLS close_notify and FIN.
            let _ = tokio::time::timeout(LINGER, async {
                let mut sink = [0u8; 4096];
                while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
            let _ = tokio::time::timeout(LINGER, writer.shutdown()).await;
            return;
        }
    }
    let _ = writer.flush().await;
    tracing::debug!(%peer, "connection closed");
}

async fn flush_loop(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(Duration::from_millis(broker.config.flush_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let broker = broker.clone();
        // fsync blocks; keep it off the threads that serve requests.
        let _ = tokio::task::spawn_blocking(move || broker.flush_dirty()).await;
    }
}

async fn retention_loop(broker: Arc<Broker>) {
    let period = Duration::from_millis(broker.config.retention_check_interval_ms);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let broker = broker.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let now = api::now_ms();
            broker.apply_retention(now);
            broker.groups.expire_offsets(now);
        })
        .await;
    }
}

/// Drives group session expiry (checked every 200 ms) and join deadlines (met on time, so a
/// new group's first assignment comes right when its initial delay ends).
async fn group_loop(broker: Arc<Broker>) {
    loop {
        let poll = tokio::time::Instant::now() + Duration::from_millis(200);
        let wake = match broker.groups.next_deadline() {
            Some(deadline) => poll.min(tokio::time::Instant::from_std(deadline)),
            None => poll,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = broker.groups.deadline_set() => {}
        }
        broker.groups.tick();
    }
}
