//! The on-disk spool: where records wait while the broker is away.
//!
//! Why a spool at all, when "the files still hold the lines"? Because they do not always:
//! a file rotated away *and deleted* during a long outage (logrotate's `rotate N` with
//! a small N, a service that removes its old logs) takes its unsent lines with it. The
//! spool holds records the agent has read but the broker has not acknowledged, durably
//! (fsynced), so such a file can be released without loss. It also lets checkpoints advance
//! past spooled lines, so a restart (even after SIGKILL) does not re-read a whole outage's
//! worth of lines from the files: it replays the spool, then resumes the files.
//!
//! Layout: `data_dir/spool/NNNNNNNNNNNNNNNNNNNN.seg`, numbered in write order. A segment is a
//! sequence of frames `[u32 body length][u32 CRC-32C of body][body]` (little-endian), each
//! one complete record (topic, key, value, timestamp, headers). Appends go to the newest
//! segment; the drain reads from the oldest; a segment is deleted once every record in it
//! is acknowledged. A crash mid-append leaves a torn last frame, which the next open
//! detects by its length or CRC and cuts off (that record was never reported as spooled,
//! so its line is still ahead of the checkpoint).
//!
//! The spool is bounded by `spool_max_bytes`; when it is full, the publisher stops taking
//! lines and tailing pauses (the lines wait in their files).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A segment is closed and a new one started past this size, so drained space is given
/// back to the file system as the drain goes, not only at the very end.
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
const FRAME_HEADER: usize = 8;
/// Larger frames cannot be written by the agent (records are at most ~1 MB): a length past
/// this is corruption, not a record.
const MAX_FRAME: usize = 64 * 1024 * 1024;
const SEGMENT_SUFFIX: &str = ".seg";
/// Bytes read from a segment at a time while draining.
const READ_CHUNK: usize = 1024 * 1024;

/// One record as it goes to Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    pub topic: String,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Kafka timestamp, milliseconds since the epoch.
    pub timestamp: i64,
    pub headers: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Where the drain is: a record of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolPos {
    pub segment: u64,
    pub index: u64,
}

struct Segment {
    id: u64,
    path: PathBuf,
    /// Valid bytes (a torn tail is cut off at open).
    bytes: u64,
    records: u64,
    /// Records at the front acknowledged by the broker.
    acked: u64,
}

/// The drain's read cursor in one segment.
struct Reader {
    segment: u64,
    file: File,
    /// File offset of `buf[0]`.
    buf_start: u64,
    buf: Vec<u8>,
    /// Position of the next frame in `buf`.
    pos: usize,
    index: u64,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segments: VecDeque<Segment>,
    /// Open for appending: the newest segment, if it is still being written.
    writer: Option<File>,
    /// Frames encoded but not yet written.
    pending: Vec<u8>,
    pending_records: u64,
    reader: Option<Reader>,
    /// Bytes of all segments (acknowledged records included until their segment goes).
    bytes: u64,
    next_id: u64,
}

impl Spool {
    /// Opens (creating) the spool in `dir`, checking every segment's frames and cutting off a
    /// torn or corrupt tail. Returns the spool and how many bytes were cut off.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Spool, u64), SpoolError> {
        let io_err = |source| SpoolError::Io {
            path: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(io_err)?;
        let mut ids = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err)? {
            let name = entry.map_err(io_err)?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name
                .strip_suffix(SEGMENT_SUFFIX)
                .and_then(|n| n.parse::<u64>().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let mut segments = VecDeque::new();
        let mut cut = 0;
        let mut bytes = 0;
        for id in ids {
            let path = segment_path(dir, id);
            let seg_err = |source| SpoolError::Io {
                path: path.clone(),
                source,
            };
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(seg_err)?;
            let len = file.metadata().map_err(seg_err)?.len();
            let (valid, records) = scan_frames(&file, len).map_err(seg_err)?;
            if valid < len {
                tracing::warn!(segment = %path.display(), valid, len, "spool segment has a torn or corrupt tail; cutting it off");
                file.set_len(valid).map_err(seg_err)?;
                file.sync_all().map_err(seg_err)?;
                cut += len - valid;
            }
            if records == 0 {
                fs::remove_file(&path).map_err(seg_err)?;
                continue;
            }
            bytes += valid;
            segments.push_back(Segment {
                id,
                path,
                bytes: valid,
                records,
                acked: 0,
            });
        }
        let next_id = segments.back().map_or(0, |s| s.id + 1);
        Ok((
            Spool {
                dir: dir.to_path_buf(),
                max_bytes,
                segments,
                writer: None,
                pending: Vec::new(),
                pending_records: 0,
                reader: None,
                bytes,
                next_id,
            },
            cut,
        ))
    }

    /// Bytes on disk (and about to be).
    pub fn bytes(&self) -> u64 {
        self.bytes + self.pending.len() as u64
    }

    /// Whether the spool reached `spool_max_bytes`: take no more lines.
    pub fn is_full(&self) -> bool {
        self.bytes() >= self.max_bytes
    }

    /// Whether every spooled record is acknowledged (nothing to drain or wait for).
    pub fn is_empty(&self) -> bool {
        self.pending_records == 0 && self.segments.iter().all(|s| s.acked == s.records)
    }

    /// Encodes a record for the next [`Self::sync`].
    pub fn append(&mut self, rec: &SpoolRecord) {
        let start = self.pending.len();
        self.pending.extend_from_slice(&[0; FRAME_HEADER]);
        encode_body(&mut self.pending, rec);
        let body_len = (self.pending.len() - start - FRAME_HEADER) as u32;
        let crc = crc32c::crc32c(&self.pending[start + FRAME_HEADER..]);
        self.pending[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
        self.pending[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        self.pending_records += 1;
    }

    /// Writes and fsyncs what was appended. Only after it returns Ok are those records
    /// durable. On error nothing appended is lost from memory: the write is undone (the
    /// segment cut back) and the records stay pending for the next try.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rotate = self
            .segments
            .back()
            .is_none_or(|s| self.writer.is_none() || s.bytes >= SEGMENT_BYTES);
        if rotate {
            self.writer = None;
            let id = self.next_id;
            let path = segment_path(&self.dir, id);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&path)
                .map_err(|source| SpoolError::Io {
                    path: path.clone(),
                    source,
                })?;
            // The new name must be durable too, or a crash could lose the whole segment.
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|source| SpoolError::Io {
                    path: self.dir.clone(),
                    source,
                })?;
            self.next_id += 1;
            self.segments.push_back(Segment {
                id,
                path,
                bytes: 0,
                records: 0,
                acked: 0,
            });
            self.writer = Some(file);
        }
        let (Some(seg), Some(file)) = (self.segments.back_mut(), self.writer.as_mut()) else {
            return Ok(());
        };
        let result = file
            .write_all(&self.pending)
            .and_then(|()| file.sync_data());
        if let Err(source) = result {
            // Undo a partial write so the segment stays a clean sequence of frames; a
            // segment left empty goes (the next try starts a new one).
            let _ = file.set_len(seg.bytes);
            self.writer = None;
            let path = seg.path.clone();
            if seg.records == 0 {
                let _ = fs::remove_file(&path);
                self.segments.pop_back();
            }
            return Err(SpoolError::Io { path, source });
        }
        seg.bytes += self.pending.len() as u64;
        seg.records += self.pending_records;
        self.bytes += self.pending.len() as u64;
        self.pending.clear();
        self.pending_records = 0;
        Ok(())
    }

    /// Whether every record written to disk is acknowledged: nothing older than the
    /// pending (unwritten) records waits in the spool.
    pub fn disk_drained(&self) -> bool {
        self.segments.iter().all(|s| s.acked == s.records)
    }

    /// Takes back the records appended but not written (the disk refused them), in
    /// append order, to send them another way.
    pub fn take_pending(&mut self) -> Vec<SpoolRecord> {
        let pending = std::mem::take(&mut self.pending);
        self.pending_records = 0;
        let mut out = Vec::new();
        let mut rest = pending.as_slice();
        while rest.len() >= FRAME_HEADER {
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let Some(body) = rest.get(FRAME_HEADER..FRAME_HEADER + len) else {
                break;
            };
            // Encoded by `append` in this process: always well-formed.
            out.extend(decode_body(body));
            rest = &rest[FRAME_HEADER + len..];
        }
        out
    }

    /// Reads the next record to send, if any is written and not yet read.
    pub fn read_next(&mut self) -> Result<Option<(SpoolPos, SpoolRecord)>, SpoolError> {
        loop {
            if self.reader.is_none() {
                let Some(seg) = self.segments.iter().find(|s| s.acked < s.records) else {
                    return Ok(None);
                };
                self.reader = Some(Reader::open(seg)?);
            }
            let Some(reader) = self.reader.as_mut() else {
                return Ok(None);
            };
            let Some(seg) = self.segments.iter().find(|s| s.id == reader.segment) else {
                self.reader = None;
                continue;
            };
            if reader.index < seg.records {
                let path = seg.path.clone();
                let rec = reader.next(seg.bytes).map_err(|source| SpoolError::Io {
                    path: path.clone(),
                    source,
                })?;
                let pos = SpoolPos {
                    segment: reader.segment,
                    index: reader.index,
                };
                reader.index += 1;
                return match rec {
                    Some(rec) => Ok(Some((pos, rec))),
                    None => Err(SpoolError::Io {
                        path,
                        source: io::Error::new(
                            io::ErrorKind::InvalidData,
                            "frame changed since it was written",
                        ),
                    }),
                };
            }
            // This segment is read to its end; move on if a newer one exists.
            let current = reader.segment;
            match self.segments.iter().find(|s| s.id > current) {
                Some(next) => self.reader = Some(Reader::open(next)?),
                None => return Ok(None),
            }
        }
    }

    /// Records that everything up to and including `pos` is acknowledged (the drain
    /// acknowledges in order). Deletes segments that are wholly acknowledged.
    pub fn ack(&mut self, pos: SpoolPos) -> Result<(), SpoolError> {
        for seg in &mut self.segments {
            if seg.id < pos.segment {
                seg.acked = seg.records;
            } else if seg.id == pos.segment {
                seg.acked = seg.acked.max(pos.index + 1);
            }
        }
        self.release_acked()
    }

    fn release_acked(&mut self) -> Result<(), SpoolError> {
        // A wholly acknowledged segment goes, even the one being appended to: the next
        // write then starts a new segment.
        while self.segments.front().is_some_and(|s| s.acked >= s.records) {
            let Some(seg) = self.segments.pop_front() else {
                break;
            };
            if self.segments.is_empty() {
                self.writer = None;
            }
            if self.reader.as_ref().is_some_and(|r| r.segment == seg.id) {
                self.reader = None;
            }
            self.bytes -= seg.bytes;
            fs::remove_file(&seg.path).map_err(|source| SpoolError::Io {
                path: seg.path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Starts reading again at the oldest unacknowledged record: after a failed send, the
    /// drain retries from there (records after it may be sent twice: at-least-once).
    pub fn rewind(&mut self) {
        self.reader = None;
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}{SEGMENT_SUFFIX}"))
}

impl Reader {
    fn open(seg: &Segment) -> Result<Reader, SpoolError> {
        let file = File::open(&seg.path).map_err(|source| SpoolError::Io {
            path: seg.path.clone(),
            source,
        })?;
        let mut reader = Reader {
            segment: seg.id,
            file,
            buf_start: 0,
            buf: Vec::new(),
            pos: 0,
            index: 0,
        };
        // Skip what is already acknowledged.
        while reader.index < seg.acked {
            reader.skip(seg.bytes).map_err(|source| SpoolError::Io {
                path: seg.path.clone(),
                source,
            })?;
            reader.index += 1;
        }
        Ok(reader)
    }

    /// Makes `n` bytes at `pos` available in `buf`, reading up to `limit` (the segment's
    /// valid length). False if the segment ends first.
    fn fill(&mut self, n: usize, limit: u64) -> io::Result<bool> {
        if self.buf.len() - self.pos >= n {
            return Ok(true);
        }
        self.buf.drain(..self.pos);
        self.buf_start += self.pos as u64;
        self.pos = 0;
        while self.buf.len() < n {
            let at = self.buf_start + self.buf.len() as u64;
            if at >= limit {
                return Ok(false);
            }
            let want = (n - self.buf.len())
                .max(READ_CHUNK)
                .min((limit - at) as usize);
            let old = self.buf.len();
            self.buf.resize(old + want, 0);
            let got = self.file.read_at(&mut self.buf[old..], at)?;
            self.buf.truncate(old + got);
            if got == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn frame(&mut self, limit: u64) -> io::Result<Option<&[u8]>> {
        if !self.fill(FRAME_HEADER, limit)? {
            return Ok(None);
        }
        let h = &self.buf[self.pos..self.pos + FRAME_HEADER];
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        if len > MAX_FRAME || !self.fill(FRAME_HEADER + len, limit)? {
            return Ok(None);
        }
        let body = &self.buf[self.pos + FRAME_HEADER..self.pos + FRAME_HEADER + len];
        if crc32c::crc32c(body) != crc {
            return Ok(None);
        }
        self.pos += FRAME_HEADER + len;
        Ok(Some(body))
    }

    fn skip(&mut self, limit: u64) -> io::Result<()> {
        match self.frame(limit)? {
            Some(_) => Ok(()),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "spool frame changed since it was written",
            )),
        }
    }

    fn next(&mut self, limit: u64) -> io::Result<Option<SpoolRecord>> {
        Ok(self.frame(limit)?.and_then(decode_body))
    }
}

/// Counts the valid frames of a segment; returns the length they cover and their number.
fn scan_frames(file: &File, len: u64) -> io::Result<(u64, u64)> {
    let mut reader = Reader {
        segment: 0,
        file: file.try_clone()?,
        buf_start: 0,
        buf: Vec::new(),
        pos: 0,
        index: 0,
    };
    let mut records = 0;
    loop {
        let at = reader.buf_start + reader.pos as u64;
        match reader.frame(len)? {
            Some(body) if decode_body(body).is_some() => records += 1,
            _ => return Ok((at, records)),
        }
    }
}

fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(bytes);
}

fn encode_body(buf: &mut Vec<u8>, rec: &SpoolRecord) {
    put_bytes(buf, rec.topic.as_bytes());
    put_bytes(buf, &rec.key);
    put_bytes(buf, &rec.value);
    buf.extend_from_slice(&rec.timestamp.to_le_bytes());
    buf.extend_from_slice(&(rec.headers.len() as u32).to_le_bytes());
    for (name, value) in &rec.headers {
        put_bytes(buf, name.as_bytes());
        put_bytes(buf, value);
    }
}

/// Parses a frame body; `None` if it is not a well-formed record.
fn decode_body(body: &[u8]) -> Option<SpoolRecord> {
    let mut cur = Cursor { rest: body };
    let topic = String::from_utf8(cur.bytes()?.to_vec()).ok()?;
    let key = cur.bytes()?.to_vec();
    let value = cur.bytes()?.to_vec();
    let timestamp = i64::from_le_bytes(cur.take(8)?.try_into().ok()?);
    let n = cur.u32()?;
    let mut headers = Vec::with_capacity(n.min(16) as usize);
    for _ in 0..n {
        let name = String::from_utf8(cur.bytes()?.to_vec()).ok()?;
        headers.push((name, cur.bytes()?.to_vec()));
    }
    cur.rest.is_empty().then_some(SpoolRecord {
        topic,
        key,
        value,
        timestamp,
        headers,
    })
}

struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize) -> SpoolRecord {
        SpoolRecord {
            topic: "logs".into(),
            key: format!("h:/f{}", i % 3).into_bytes(),
            value: format!("{{\"line\":\"line {i}\"}}").into_bytes(),
            timestamp: 1_700_000_000_000 + i as i64,
            headers: vec![("host".into(), b"h".to_vec()), ("level".into(), vec![])],
        }
    }

    fn drain_all(spool: &mut Spool) -> Vec<(SpoolPos, SpoolRecord)> {
        std::iter::from_fn(|| spool.read_next().expect("read")).collect()
    }

    #[test]
    fn records_come_back_in_order_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spool, cut) = Spool::open(dir.path(), 1 << 30).expect("open");
        assert_eq!(cut, 0);
        assert!(spool.is_empty());
        for i in 0..100 {
            spool.append(&rec(i));
        }
        assert!(!spool.is_empty());
        spool.sync().expect("sync");
        let read = drain_all(&mut spool);
        assert_eq!(read.len(), 100);
        assert!(read.iter().enumerate().all(|(i, (_, r))| *r == rec(i)));
        // Acknowledge the first 40 only; the rest must come back after a restart.
        spool.ack(read[39].0).expect("ack");
        drop(spool);
        let (mut spool, _) = Spool::open(dir.path(), 1 << 30).expect("reopen");
        let again = drain_all(&mut spool);
        // The segment is replayed whole (acknowledgements are not persisted): duplicates,
        // never a gap.
        assert_eq!(again.len(), 100);
        spool.ack(again[99].0).expect("ack");
        assert!(spool.is_empty());
        assert_eq!(spool.bytes(), 0);
        assert_eq!(fs::read_dir(dir.path()).expect("dir").count(), 0);
    }

    #[test]
    fn a_rewind_resends_from_the_oldest_unacknowledged_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spool, _) = Spool::open(dir.path(), 1 << 30).expect("open");
        for i in 0..10 {
            spool.append(&rec(i));
        }
        spool.sync().expect("sync");
        let read = drain_all(&mut spool);
        spool.ack(read[3].0).expect("ack");
        spool.rewind();
        let again = drain_all(&mut spool);
        assert_eq!(again.len(), 6);
        assert_eq!(again[0].1, rec(4));
        // Appends after the drain caught up are read next.
        spool.append(&rec(10));
        spool.sync().expect("sync");
        let more = drain_all(&mut spool);
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].1, rec(10));
    }

    #[test]
    fn large_spools_span_segments_and_free_them_as_they_drain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spool, _) = Spool::open(dir.path(), 1 << 30).expect("open");
        let big = SpoolRecord {
            value: vec![b'x'; 1 << 20],
            ..rec(0)
        };
        for _ in 0..20 {
            spool.append(&big);
            spool.sync().expect("sync");
        }
        let segments = fs::read_dir(dir.path()).expect("dir").count();
        assert!(segments >= 2, "{segments} segments");
        let read = drain_all(&mut spool);
        assert_eq!(read.len(), 20);
        spool.ack(read[10].0).expect("ack");
        assert!(fs::read_dir(dir.path()).expect("dir").count() < segments);
        assert!(spool.bytes() < 20 << 20);
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_cut_off_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spool, _) = Spool::open(dir.path(), 1 << 30).expect("open");
        for i in 0..5 {
            spool.append(&rec(i));
        }
        spool.sync().expect("sync");
        drop(spool);
        let seg = fs::read_dir(dir.path())
            .expect("dir")
            .next()
            .expect("segment")
            .expect("entry")
            .path();
        let len = fs::metadata(&seg).expect("meta").len();
        // A crash in the middle of the sixth frame, then a flipped byte in the fifth.
        let mut f = OpenOptions::new().append(true).open(&seg).expect("open");
        f.write_all(&[200, 0, 0, 0, 1, 2]).expect("write");
        drop(f);
        let (mut spool, cut) = Spool::open(dir.path(), 1 << 30).expect("reopen");
        assert_eq!(cut, 6);
        assert_eq!(drain_all(&mut spool).len(), 5);
        drop(spool);
        let f = OpenOptions::new().write(true).open(&seg).expect("open");
        f.write_all_at(b"!", len - 2).expect("corrupt");
        let (mut spool, cut) = Spool::open(dir.path(), 1 << 30).expect("reopen");
        assert!(cut > 0);
        let read = drain_all(&mut spool);
        assert_eq!(read.len(), 4);
        assert_eq!(read[3].1, rec(3));
    }

    #[test]
    fn the_cap_counts_what_is_written_and_pending() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spool, _) = Spool::open(dir.path(), 1000).expect("open");
        while !spool.is_full() {
            spool.append(&rec(0));
        }
        let pending = spool.bytes();
        spool.sync().expect("sync");
        assert_eq!(spool.bytes(), pending);
        assert!(spool.is_full());
    }
}
