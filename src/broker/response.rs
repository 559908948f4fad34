//! An encoded response on its way to the wire: encoded bytes and, for Fetch, ranges of
//! segment files holding the records, in wire order. On a plaintext connection the file
//! ranges go from the page cache to the socket with `sendfile` (Kafka's zero-copy transfer),
//! so the records are never copied through the broker's memory; a TLS connection reads them
//! in small pieces and writes them through rustls, which must encrypt in user space. Both
//! send the same bytes: the encoding is done once, here, for either.

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

#[cfg(test)]
use crate::broker::log::{append_chunks, LogError};
use crate::broker::log::{Chunk, FileSlice, Records};

/// Largest piece of a file range a TLS connection reads into memory at a time.
const COPY_PIECE: usize = 64 * 1024;

/// A response (header and body, without the length prefix) as parts in wire order.
#[derive(Debug, Default)]
pub struct Response {
    parts: Vec<Chunk>,
    /// Encoded bytes after the last part, still being appended to.
    tail: BytesMut,
}

impl From<BytesMut> for Response {
    fn from(tail: BytesMut) -> Self {
        Response {
            parts: Vec::new(),
            tail,
        }
    }
}

impl Response {
    /// The buffer the next encoded bytes go to.
    pub fn buf(&mut self) -> &mut BytesMut {
        &mut self.tail
    }

    /// Appends records: copied ones join the encoded bytes, file ranges become parts.
    pub fn push_records(&mut self, records: Records) {
        for chunk in records.into_chunks() {
            match chunk {
                Chunk::Copied(bytes) => self.tail.extend_from_slice(&bytes),
                file @ Chunk::File(_) => {
                    if !self.tail.is_empty() {
                        self.parts.push(Chunk::Copied(self.tail.split().freeze()));
                    }
                    self.parts.push(file);
                }
            }
        }
    }

    /// Total bytes on the wire (without the length prefix).
    pub fn len(&self) -> usize {
        self.parts.iter().map(Chunk::len).sum::<usize>() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole response in memory, file ranges read: what the wire carries (tests compare
    /// it with a fully encoded response).
    #[cfg(test)]
    pub fn to_bytes(&self) -> Result<bytes::Bytes, LogError> {
        let mut out = Vec::with_capacity(self.len());
        append_chunks(&self.parts, &mut out)?;
        out.extend_from_slice(&self.tail);
        Ok(bytes::Bytes::from(out))
    }
}

/// A connection's write side. The TCP socket under a plaintext connection can take file
/// ranges with `sendfile`; a TLS stream cannot (rustls encrypts in user space), so it gets
/// the bytes copied.
pub trait ResponseWriter: AsyncWrite + Unpin + Send {
    /// The socket `sendfile` may write to, after the connection's buffer is flushed.
    fn socket(&self) -> Option<&TcpStream> {
        None
    }
}

impl ResponseWriter for OwnedWriteHalf {
    fn socket(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

impl<T: AsyncWrite + Send> ResponseWriter for tokio::io::WriteHalf<T> {}

/// Writes `response` with its length prefix; flushes the buffer afterwards if `flush` (a
/// pipelining client's next request is answered first otherwise). An error leaves the
/// response half sent: the caller must close the connection.
pub async fn write<W: ResponseWriter>(
    writer: &mut BufWriter<W>,
    response: &Response,
    flush: bool,
) -> io::Result<()> {
    let len = u32::try_from(response.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "response over 4 GiB"))?;
    writer.write_u32(len).await?;
    for part in &response.parts {
        match part {
            Chunk::Copied(bytes) => writer.write_all(bytes).await?,
            Chunk::File(slice) => {
                if writer.get_ref().socket().is_some() {
                    // Whatever is buffered goes first: sendfile bypasses the buffer.
                    writer.flush().await?;
                }
                match writer.get_ref().socket() {
                    Some(socket) => send_file(socket, slice).await?,
                    None => copy_file(writer, slice).await?,
                }
            }
        }
    }
    writer.write_all(&response.tail).await?;
    if flush {
        writer.flush().await?;
    }
    Ok(())
}

/// Sends `slice` from the page cache to `socket` (non-blocking: waits for room in the socket
/// buffer and resumes after short writes).
async fn send_file(socket: &TcpStream, slice: &FileSlice) -> io::Result<()> {
    // Linux sends at most 0x7ffff000 bytes per call.
    const MAX_PER_CALL: u64 = 0x7fff_f000;
    let mut offset = slice.position();
    let end = offset + slice.len();
    while offset < end {
        let count = (end - offset).min(MAX_PER_CALL) as usize;
        socket.writable().await?;
        let sent = socket.try_io(tokio::io::Interest::WRITABLE, || {
            rustix::fs::sendfile(socket, slice.file(), Some(&mut offset), count)
                .map_err(io::Error::from)
        });
        match sent {
            Ok(0) => {
                // Only a file cut shorter than the log says (never while the broker runs).
                tracing::error!(path = %slice.path().display(), offset, end,
                    "segment file ends before the records being sent; closing the connection");
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} ends before byte {end}", slice.path().display()),
                ));
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads `slice` a piece at a time and writes it through `writer` (TLS connections).
async fn copy_file<W: AsyncWrite + Unpin>(
    writer: &mut BufWriter<W>,
    slice: &FileSlice,
) -> io::Result<()> {
    let mut piece = Vec::with_capacity(COPY_PIECE.min(slice.len() as usize));
    let mut done = 0;
    while done < slice.len() {
        let len = (slice.len() - done).min(COPY_PIECE as u64) as usize;
        piece.clear();
        slice.read_part(done, len, &mut piece)?;
        writer.write_all(&piece).await?;
        done += len as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;
    use crate::broker::log::PartitionLog;
    use crate::broker::log::ReadOutcome;

    /// A log of `batches` batches of `records` records each, and a read of all of it as file
    /// ranges (no copying).
    fn log_and_records(
        batches: usize,
        records: usize,
    ) -> (tempfile::TempDir, PartitionLog, Records) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = crate::broker::log::LogConfig {
            segment_bytes: 2 << 20,
            ..Default::default()
        };
        let (mut log, _) = PartitionLog::open(dir.path(), config).expect("open");
        let value = "0123456789abcdef".repeat(64);
        for i in 0..batches {
            let records: Vec<(i64, String)> =
                (0..records).map(|_| (i as i64, value.clone())).collect();
            let mut bytes = crate::broker::log::test_batches::encode(
                &records,
                None,
                kafka_protocol::records::Compression::None,
            );
            log.append(&mut bytes, 0).expect("append");
        }
        let Ok(ReadOutcome::Batches(read)) = log.read(0, usize::MAX, true, 0) else {
            panic!("read");
        };
        (dir, log, read)
    }

    /// A response as `fetch::encode` lays it out: encoded bytes, file ranges, encoded bytes.
    fn response(records: Records) -> Response {
        let mut response = Response::from(BytesMut::from(&b"head"[..]));
        response.push_records(records);
        response.buf().extend_from_slice(b"tail");
        response
    }

    /// What the peer receives: the length prefix and then that many bytes.
    async fn receive(mut peer: impl tokio::io::AsyncRead + Unpin) -> Vec<u8> {
        let len = peer.read_u32().await.expect("length");
        let mut body = vec![0; len as usize];
        peer.read_exact(&mut body).await.expect("body");
        body
    }

    #[tokio::test]
    async fn sendfile_sends_the_same_bytes_through_a_full_socket_buffer() {
        // 8 MiB over several segments: far more than a socket buffer holds, so sendfile
        // meets WouldBlock and short writes while the peer reads slowly.
        let (_dir, mut log, records) = log_and_records(80, 100);
        assert!(records.chunks().len() > 1);
        let response = response(records);
        let expected = response.to_bytes().expect("bytes");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move {
            let mut peer = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let mut first = [0u8; 1000];
            peer.read_exact(&mut first).await.expect("read");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let mut rest = Vec::new();
            peer.read_to_end(&mut rest).await.expect("read");
            [&first[..], &rest].concat()
        });
        let (stream, _) = listener.accept().await.expect("accept");
        let (_read, write_half) = stream.into_split();
        let mut writer = BufWriter::with_capacity(64, write_half);
        // Retention deletes the segments while they are being sent: the open handles
        // keep their bytes.
        assert!(
            log.apply_retention(i64::MAX)
                .expect("retention")
                .segments_deleted
                > 0
        );
        write(&mut writer, &response, false).await.expect("send");
        // Pipelining: the next response follows in the same buffer before one flush.
        write(
            &mut writer,
            &Response::from(BytesMut::from(&b"next"[..])),
            true,
        )
        .await
        .expect("send");
        drop(writer);
        let got = client.await.expect("client");
        let len = u32::from_be_bytes(got[..4].try_into().expect("4 bytes")) as usize;
        assert_eq!(len, expected.len());
        assert!(got[4..4 + len] == expected[..], "the bytes differ");
        assert_eq!(&got[4 + len..], b"\0\0\0\x04next");
    }

    #[tokio::test]
    async fn a_stream_without_a_socket_gets_the_file_ranges_copied() {
        let (_dir, _log, records) = log_and_records(3, 100);
        let response = response(records);
        let expected = response.to_bytes().expect("bytes");
        // Like TLS: a WriteHalf of some other stream, which `sendfile` cannot write to.
        let (near, far) = tokio::io::duplex(4096);
        let (_read, write_half) = tokio::io::split(near);
        let reader = tokio::spawn(receive(far));
        let mut writer = BufWriter::new(write_half);
        write(&mut writer, &response, true).await.expect("send");
        assert!(reader.await.expect("reader") == expected[..]);
    }

    #[tokio::test]
    async fn a_file_cut_short_is_an_error_not_a_hang() {
        let (_dir, _log, records) = log_and_records(1, 10);
        let Chunk::File(slice) = &records.chunks()[0] else {
            panic!("expected a file range");
        };
        // Only recovery truncates a segment, at startup; anything else cutting the file
        // while a range of it is on its way must fail the response, not send garbage.
        std::fs::OpenOptions::new()
            .write(true)
            .open(slice.path())
            .and_then(|f| f.set_len(10))
            .expect("truncate");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move {
            let mut peer = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let mut all = Vec::new();
            let _ = peer.read_to_end(&mut all).await;
        });
        let (stream, _) = listener.accept().await.expect("accept");
        let (_read, write_half) = stream.into_split();
        let mut writer = BufWriter::new(write_half);
        let err = write(&mut writer, &response(records), true)
            .await
            .expect_err("short file");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        drop(writer);
        client.await.expect("client");
    }
}
