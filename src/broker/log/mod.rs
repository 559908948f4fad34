//! The partition log: Kafka's on-disk design. A directory per partition holds segments named
//! by base offset; each `.log` holds record batches v2 exactly as the producer sent them (only
//! `baseOffset` rewritten, which lies outside the CRC span), with a sparse `.index`
//! (offset → position) and `.timeindex` (timestamp → offset). Segments roll by size or age;
//! retention deletes whole segments; startup recovery checks the tail by CRC and truncates a
//! torn write.
//!
//! Appends are one positional write of the producer's bytes. Reads find whole batches via
//! the index and return them as ranges of the segment files ([`FileSlice`]), which the
//! connection sends with `sendfile`; only small reads are copied into memory (one pread).
//! Nothing is mmapped, so memory stays at the (small) in-memory indexes.

pub mod batch;
mod index;
mod records;
mod recovery;
mod retention;
mod segment;
#[cfg(test)]
pub(crate) mod test_batches;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub use batch::{BatchError, BatchHeader};
#[cfg(test)]
pub use records::append_chunks;
pub use records::{Chunk, FileSlice, Records};
pub use recovery::{RecoveryAction, RecoveryReport};
pub use retention::RetentionReport;

use segment::{io_err, BatchMeta, Segment};

/// Per-partition log settings (Kafka's topic configs of the same names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would exceed this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment's first append is this old.
    pub segment_ms: i64,
    /// `retention.ms`: delete segments whose newest record is older than this.
    pub retention_ms: Option<i64>,
    /// `retention.bytes`: delete oldest segments while the log stays at least this big.
    pub retention_bytes: Option<u64>,
    /// `index.interval.bytes`: bytes of log between offset-index entries.
    pub index_interval_bytes: u32,
}

impl Default for LogConfig {
    /// Kafka's defaults: 1 GiB segments, rolled weekly, kept a week, index every 4 KiB.
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            index_interval_bytes: 4096,
        }
    }
}

#[derive(thiserror::Error, Debug)]
pub enum LogError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt log data in {} at byte {position}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    /// The bytes given to `append` are not whole v2 batches (they should have been validated).
    #[error("invalid append: {0}")]
    InvalidBatch(#[from] BatchError),
}

/// An fsync of the active segment prepared under the partition lock and run outside it.
pub struct ActiveSync {
    file: File,
    path: PathBuf,
    base_offset: i64,
    size: u64,
}

impl ActiveSync {
    pub fn sync(&self) -> Result<(), LogError> {
        self.file
            .sync_data()
            .map_err(io_err("fsync segment", &self.path))
    }
}

/// Reads shorter than this are copied into memory with one pread; longer ones are sent from
/// the file with `sendfile`. Per read, zero-copy costs a flush of the connection's buffer and
/// a sendfile call (plus a pread to find the last whole batch), where copying costs one pread
/// and the copies; for small reads, such as a tailing consumer's fetch of the newest records,
/// the system calls cost more than copying the bytes. Measured (broker CPU while kcat reads
/// 150,000 one-record batches with `fetch.message.max.bytes` N, everything zero-copy vs
/// everything copied; `perf stat` of the broker by hand, see commit fd38fa7): 4 KiB 96-99
/// vs 73-82 ms, 12 KiB 33-36 vs 21-24 ms, 16 KiB about even, 32 KiB 11-17 vs 20-22 ms, 64 KiB
/// 9-11 vs 15-16 ms.
pub const ZERO_COPY_MIN_BYTES: usize = 16 * 1024;

/// The result of a read.
#[derive(Debug, Clone)]
pub enum ReadOutcome {
    /// Whole batches, back to back; empty at the log end.
    Batches(Records),
    OffsetOutOfRange,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

/// One partition's log. Not internally synchronized: the broker keeps it behind a mutex.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    /// Oldest first; never empty; the last one is the active segment.
    segments: Vec<Segment>,
    /// Files were created or removed since the directory was last fsynced.
    dir_dirty: bool,
}

impl PartitionLog {
    /// Opens (creating if missing) the log in `dir`, recovering from an unclean shutdown.
    pub fn open(dir: &Path, config: LogConfig) -> Result<(PartitionLog, RecoveryReport), LogError> {
        let (segments, report) = recovery::recover(dir, &config, wall_clock_ms())?;
        if !report.is_clean() {
            tracing::warn!(dir = %dir.display(), %report, "partition log recovered");
        }
        let log = PartitionLog {
            dir: dir.to_path_buf(),
            config,
            segments,
            dir_dirty: true,
        };
        Ok((log, report))
    }

    fn active(&self) -> &Segment {
        // `segments` is never empty (open creates one; retention keeps the last).
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// Appends producer batches (already checked by `batch::validate_batches`), assigning
    /// consecutive offsets from the log end by rewriting each `baseOffset` in place.
    pub fn append(&mut self, batches: &mut [u8], now_ms: i64) -> Result<AppendInfo, LogError> {
        let base_offset = self.log_end_offset();
        let mut metas = Vec::new();
        let mut next = base_offset;
        let mut max_timestamp = i64::MIN;
        let mut pos = 0;
        while pos < batches.len() {
            let header = batch::parse_header(&batches[pos..])?;
            let size = header.total_size();
            if pos + size > batches.len() {
                return Err(BatchError::Truncated {
                    needed: size,
                    available: batches.len() - pos,
                }
                .into());
            }
            if header.last_offset_delta < 0 {
                return Err(BatchError::InvalidRecordCount {
                    records_count: header.records_count,
                    last_offset_delta: header.last_offset_delta,
                }
                .into());
            }
            batches[pos..pos + 8].copy_from_slice(&next.to_be_bytes());
            let last = next + i64::from(header.last_offset_delta);
            metas.push(BatchMeta {
                size: size as u64,
                base_offset: next,
                last_offset: last,
                max_timestamp: header.max_timestamp,
            });
            max_timestamp = max_timestamp.max(header.max_timestamp);
            next = last + 1;
            pos += size;
        }
        if metas.is_empty() {
            return Err(BatchError::Empty.into());
        }
        if self.should_roll(batches.len() as u64, next - 1, now_ms) {
            self.roll(now_ms)?;
        }
        let interval = self.config.index_interval_bytes;
        self.active_mut()
            .append(batches, &metas, interval, now_ms)?;
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            max_timestamp,
        })
    }

    fn should_roll(&self, bytes: u64, last_offset: i64, now_ms: i64) -> bool {
        let active = self.active();
        if active.is_empty() {
            return false;
        }
        let new_size = active.size + bytes;
        new_size > self.config.segment_bytes
            // Index entries hold positions and relative offsets as 32-bit numbers.
            || new_size > u64::from(u32::MAX)
            || last_offset - active.base_offset > i64::from(i32::MAX)
            || active
                .roll_base_ms
                .is_some_and(|t| now_ms.saturating_sub(t) >= self.config.segment_ms)
    }

    /// Seals the active segment and starts a new one at the log end.
    fn roll(&mut self, now_ms: i64) -> Result<(), LogError> {
        let base = self.log_end_offset();
        self.active_mut().seal()?;
        let segment = Segment::create(&self.dir, base, now_ms)?;
        tracing::debug!(dir = %self.dir.display(), base_offset = base, "rolled segment");
        self.segments.push(segment);
        self.dir_dirty = true;
        Ok(())
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes`, across segments. With
    /// `min_one` the first batch comes whatever its size (KIP-74: the fetch's first partition
    /// to return anything, so that a consumer always makes progress); without, a first batch
    /// over `max_bytes` means nothing is returned. Reads from a segment shorter than
    /// `copy_below` bytes are copied into memory, longer ones returned as file ranges (the
    /// broker passes [`ZERO_COPY_MIN_BYTES`]; `usize::MAX` copies everything, 0 nothing).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        copy_below: usize,
    ) -> Result<ReadOutcome, LogError> {
        if offset < self.log_start_offset() || offset > self.log_end_offset() {
            return Ok(ReadOutcome::OffsetOutOfRange);
        }
        let mut out = Records::default();
        let first = self
            .segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        for segment in &self.segments[first..] {
            // An offset in a gap (after a truncated older segment) lands on the next batch.
            let Some((position, header)) = segment.locate(offset)? else {
                continue;
            };
            let budget = max_bytes.saturating_sub(out.len());
            let min_one = min_one && out.is_empty();
            let (chunk, to_end) =
                segment.read_chunk(position, &header, budget, min_one, copy_below)?;
            if let Some(chunk) = chunk {
                out.push(chunk);
            }
            if !to_end {
                break;
            }
        }
        Ok(ReadOutcome::Batches(out))
    }

    /// Offset of the first batch in the log (Kafka's log start offset).
    pub fn log_start_offset(&self) -> i64 {
        self.segments[0].base_offset
    }

    /// Offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    /// The earliest record with timestamp >= `ts`: `(offset, timestamp)`.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        for segment in &self.segments {
            if segment.max_timestamp.is_none_or(|m| m.timestamp < ts) {
                continue;
            }
            let start = segment
                .time_index
                .start_for(ts)
                .map_or(segment.base_offset, |rel| {
                    segment.base_offset + i64::from(rel)
                });
            let Some((mut position, _)) = segment.locate(start)? else {
                continue;
            };
            while let Some(header) = segment.header_at(position)? {
                if header.max_timestamp >= ts {
                    match segment.find_record_by_timestamp(position, &header, ts)? {
                        Ok(Some(found)) => return Ok(Some(found)),
                        Ok(None) => {}
                        // One undecodable batch should not make the whole lookup fail.
                        Err(e) => tracing::warn!(path = %segment.log_path.display(), position,
                            error = %e, "cannot decode batch records; skipping it"),
                    }
                }
                position += header.total_size() as u64;
            }
        }
        Ok(None)
    }

    /// The largest timestamp in the log and the last offset of the batch holding it.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        let mut best: Option<(i64, i64)> = None;
        for m in self.segments.iter().filter_map(|s| s.max_timestamp) {
            if best.is_none_or(|(ts, _)| m.timestamp > ts) {
                best = Some((m.timestamp, m.offset));
            }
        }
        best
    }

    /// Bytes of log data (the `.log` files).
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// New settings take effect from the next append / retention pass.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// fsyncs every segment written since the last flush (and their sealed indexes).
    pub fn flush(&mut self) -> Result<(), LogError> {
        let last = self.segments.len() - 1;
        for (i, segment) in self.segments.iter_mut().enumerate() {
            if segment.is_dirty() {
                segment.sync(i == last)?;
            }
        }
        if self.dir_dirty {
            // Makes new segment files and deletions themselves durable.
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err("fsync dir", &self.dir))?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// The active segment's unsynced appends, as a handle the caller can fsync after releasing
    /// the partition lock, so producers are not held up by a flush (see [`ActiveSync`]).
    pub fn active_sync(&self) -> Result<Option<ActiveSync>, LogError> {
        let Some(active) = self.segments.last() else {
            return Ok(None);
        };
        Ok(active.pending_log_sync()?.map(|(file, size)| ActiveSync {
            file,
            path: active.log_path().to_path_buf(),
            base_offset: active.base_offset,
            size,
        }))
    }

    /// Marks the active segment synced through what `sync` covered.
    pub fn mark_synced(&mut self, sync: &ActiveSync) {
        if let Some(active) = self.segments.last_mut() {
            if active.base_offset == sync.base_offset {
                active.log_synced_through(sync.size);
            }
        }
    }

    pub fn is_dirty(&self) -> bool {
        self.dir_dirty || self.segments.iter().any(Segment::is_dirty)
    }

    /// Removes the partition directory and everything in it.
    pub fn delete(self) -> Result<(), LogError> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).map_err(io_err("delete partition", &dir))
    }

    /// Headers of the batches in the active segment, oldest first, for rebuilding idempotent
    /// producer state. Right after a roll the active segment is empty, so the previous
    /// segment's batches are returned instead: that is where the producers' last batches are.
    pub fn recent_batch_headers(&self) -> Result<Vec<BatchHeader>, LogError> {
        let Some(segment) = self.segments.iter().rev().find(|s| !s.is_empty()) else {
            return Ok(Vec::new());
        };
        let file = segment.clone_file()?;
        let mut headers = Vec::new();
        let (_, problem) = segment::walk(
            &file,
            &segment.log_path,
            0,
            segment.size,
            segment.base_offset,
            false,
            |_, h| headers.push(*h),
        )?;
        if let Some(reason) = problem {
            tracing::warn!(path = %segment.log_path.display(), reason,
                "batch headers end early; producer state may be incomplete");
        }
        Ok(headers)
    }
}

#[cfg(test)]
mod tests;
