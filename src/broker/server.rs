//! The network side: accept connections (at most `max_connections` at once), read
//! length-prefixed request frames, answer each in order, and shut down cleanly.
//!
//! Like Kafka, a connection's requests are handled one at a time in arrival order (Kafka mutes
//! a channel until its response is sent), which keeps responses ordered without bookkeeping.
//! Anything that cannot be answered (a bad length, an undecodable or unknown request) closes
//! that one connection with a log line; every other client is unaffected.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::broker::api::{self, Reply};
use crate::broker::Broker;
use crate::config::FlushPolicy;

/// Serves until `shutdown` completes, then stops accepting, drops open connections, and
/// flushes every partition and the metadata store.
pub async fn serve(broker: Arc<Broker>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
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
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        // Reap finished connection tasks so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, peer)) => {
                let broker = broker.clone();
                connections.spawn(async move {
                    handle_connection(broker, stream, peer).await;
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

async fn handle_connection(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, "set_nodelay failed: {e}");
    }
    tracing::debug!(%peer, "connection opened");
    let idle = Duration::from_millis(broker.config.idle_timeout_ms);
    let max_request = broker.config.max_request_bytes;
    let (read_half, write_half) = stream.into_split();
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
        match api::handle(&broker, Bytes::from(frame), peer).await {
            Reply::Send(response) => {
                let written = async {
                    writer.write_u32(response.len() as u32).await?;
                    writer.write_all(&response).await?;
                    // Flush unless more requests are already buffered (pipelined clients).
                    if reader.buffer().is_empty() {
                        writer.flush().await?;
                    }
                    Ok::<(), std::io::Error>(())
                };
                if let Err(e) = written.await {
                    tracing::debug!(%peer, "write failed: {e}");
                    break;
                }
            }
            Reply::Nothing => {}
            Reply::Close(reason) => {
                tracing::warn!(%peer, "closing connection: {reason}");
                break;
            }
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
