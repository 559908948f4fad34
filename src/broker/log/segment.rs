//! One segment: a `.log` file of whole record batches plus its in-memory indexes, which are
//! mirrored to `.index` / `.timeindex` files.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use bytes::Bytes;

use super::batch::{self, BatchHeader, HEADER_SIZE, LOG_OVERHEAD};
use super::index::{OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};
use super::records::{pread_append, Chunk, FileSlice};
use super::LogError;

pub(crate) const LOG_EXT: &str = "log";
pub(crate) const INDEX_EXT: &str = "index";
pub(crate) const TIME_INDEX_EXT: &str = "timeindex";

/// Index entries are written to the files once this many are pending, so a long-lived active
/// segment does not hold its whole index only in memory; the files are a rebuildable cache.
const INDEX_PERSIST_BATCH: usize = 512;

/// Bytes of batch headers read at once when looking for where a zero-copy read must end:
/// twice the default index interval, so the walk from the last index entry is one pread.
const WALK_WINDOW: u64 = 8 * 1024;

/// `dir/00000000000000000042.ext`, Kafka's naming.
pub(crate) fn segment_path(dir: &Path, base_offset: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}"))
}

/// Where one batch of an append or a scan sits and what it contributes to the indexes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchMeta {
    pub size: u64,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

impl BatchMeta {
    pub fn of(h: &BatchHeader) -> Self {
        BatchMeta {
            size: h.total_size() as u64,
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
            max_timestamp: h.max_timestamp,
        }
    }
}

/// The largest timestamp in a segment and where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MaxTimestamp {
    pub timestamp: i64,
    /// Last offset of the batch holding it (what ListOffsets MAX_TIMESTAMP reports, as Kafka
    /// did before KIP-734 made it record-exact).
    pub offset: i64,
    /// Base offset of that batch: the time index points at batches.
    pub batch_base: i64,
}

pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LogError {
    let path = path.to_path_buf();
    move |source| LogError::Io { op, path, source }
}

/// Milliseconds since the epoch of a file's creation (or, where the file system does not
/// record it, last modification): the age of a segment reopened after a restart.
pub(crate) fn file_time_ms(file: &File) -> Option<i64> {
    let meta = file.metadata().ok()?;
    let t = meta.created().or_else(|_| meta.modified()).ok()?;
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: i64,
    /// Offset after the last batch (== base_offset when empty).
    pub next_offset: i64,
    /// Bytes of whole, acknowledged batches. Anything in the file beyond is not part of the log.
    pub size: u64,
    pub log_path: PathBuf,
    /// Shared with the [`FileSlice`]s of responses still being sent: the open handle keeps
    /// the file's bytes readable after retention unlinks it.
    file: Arc<File>,
    pub offset_index: OffsetIndex,
    pub time_index: TimeIndex,
    /// How many index entries are already in the index files.
    offset_persisted: usize,
    time_persisted: usize,
    pub max_timestamp: Option<MaxTimestamp>,
    bytes_since_index: u64,
    /// Wall time of the first append (or file creation): the start of the age-based roll clock.
    pub roll_base_ms: Option<i64>,
    /// Wall time of the last append, for time retention when batches carry no timestamps.
    pub last_modified_ms: i64,
    log_dirty: bool,
    index_dirty: bool,
    /// Test seam: the next append writes only this many bytes, then fails like ENOSPC.
    #[cfg(test)]
    pub fail_next_write_after: Option<usize>,
}

impl Segment {
    fn with_file(dir: &Path, base_offset: i64, file: File, now_ms: i64) -> Self {
        Segment {
            base_offset,
            next_offset: base_offset,
            size: 0,
            log_path: segment_path(dir, base_offset, LOG_EXT),
            file: Arc::new(file),
            offset_index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            offset_persisted: 0,
            time_persisted: 0,
            max_timestamp: None,
            bytes_since_index: 0,
            roll_base_ms: None,
            last_modified_ms: now_ms,
            log_dirty: false,
            index_dirty: false,
            #[cfg(test)]
            fail_next_write_after: None,
        }
    }

    /// Creates a new, empty segment (and empty index files, so that a missing index later
    /// means something went wrong).
    pub fn create(dir: &Path, base_offset: i64, now_ms: i64) -> Result<Self, LogError> {
        let path = segment_path(dir, base_offset, LOG_EXT);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err("create segment", &path))?;
        let len = file
            .metadata()
            .map_err(io_err("stat segment", &path))?
            .len();
        if len != 0 {
            // Only reachable if offsets went backwards: refuse rather than overwrite data.
            return Err(LogError::Corrupt {
                path,
                position: 0,
                reason: format!("new segment file already holds {len} bytes"),
            });
        }
        for ext in [INDEX_EXT, TIME_INDEX_EXT] {
            let p = segment_path(dir, base_offset, ext);
            File::create(&p).map_err(io_err("create index", &p))?;
        }
        let mut seg = Segment::with_file(dir, base_offset, file, now_ms);
        seg.log_dirty = true;
        Ok(seg)
    }

    /// Opens an existing segment file for recovery; returns it empty (size 0) with the file's
    /// length, for the recovery code to fill in.
    pub fn open_existing(
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
    ) -> Result<(Self, u64), LogError> {
        let path = segment_path(dir, base_offset, LOG_EXT);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err("open segment", &path))?;
        let len = file
            .metadata()
            .map_err(io_err("stat segment", &path))?
            .len();
        let modified = file_time_ms(&file).unwrap_or(now_ms);
        let mut seg = Segment::with_file(dir, base_offset, file, now_ms);
        seg.last_modified_ms = modified;
        Ok((seg, len))
    }

    /// Forgets everything derived from the file, before a rebuild.
    pub fn reset(&mut self) {
        self.next_offset = self.base_offset;
        self.size = 0;
        self.offset_index = OffsetIndex::default();
        self.time_index = TimeIndex::default();
        self.max_timestamp = None;
        self.bytes_since_index = 0;
    }

    /// Records that the in-memory indexes are exactly what the index files hold.
    pub fn mark_index_persisted(&mut self) {
        self.offset_persisted = self.offset_index.len();
        self.time_persisted = self.time_index.len();
        self.index_dirty = false;
    }

    pub fn dir(&self) -> &Path {
        self.log_path.parent().unwrap_or(Path::new("."))
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub fn is_dirty(&self) -> bool {
        self.log_dirty || self.index_dirty
    }

    fn rel(&self, offset: i64) -> u32 {
        // Offsets before the segment map to its start, beyond the u32 range to its end.
        u32::try_from(offset.saturating_sub(self.base_offset).max(0)).unwrap_or(u32::MAX)
    }

    /// Accounts for one batch at `position` (already in the file): index entries every
    /// `index_interval` bytes (when `index` is set), max timestamp, next offset.
    pub fn note_batch(
        &mut self,
        position: u64,
        meta: &BatchMeta,
        index_interval: u32,
        index: bool,
    ) {
        if self
            .max_timestamp
            .is_none_or(|m| meta.max_timestamp > m.timestamp)
        {
            self.max_timestamp = Some(MaxTimestamp {
                timestamp: meta.max_timestamp,
                offset: meta.last_offset,
                batch_base: meta.base_offset,
            });
        }
        // Kafka's rule: once more than index_interval bytes went by unindexed, index the next
        // batch. Positions must fit the u32 file format; the roll policy keeps them there.
        if index && self.bytes_since_index > u64::from(index_interval) {
            if let Ok(position) = u32::try_from(position) {
                self.offset_index.push(OffsetEntry {
                    rel_offset: self.rel(meta.base_offset),
                    position,
                });
                if let Some(m) = self.max_timestamp {
                    self.time_index.maybe_push(TimeEntry {
                        timestamp: m.timestamp,
                        rel_offset: self.rel(m.batch_base),
                    });
                }
                self.index_dirty = true;
                self.bytes_since_index = 0;
            }
        }
        self.bytes_since_index += meta.size;
        self.next_offset = meta.last_offset + 1;
    }

    /// Writes `bytes` (whole batches described by `metas`, offsets already assigned) at the end
    /// of the log with one positional write. On failure the file is cut back to its previous
    /// length and nothing in memory changes.
    pub fn append(
        &mut self,
        bytes: &[u8],
        metas: &[BatchMeta],
        index_interval: u32,
        now_ms: i64,
    ) -> Result<(), LogError> {
        // Positional write at `size`, not an append-mode write: if cutting back a failed write
        // also fails, the next append still lands where the log really ends.
        if let Err(e) = self.write_at_end(bytes) {
            if let Err(trunc) = self.file.set_len(self.size) {
                tracing::error!(path = %self.log_path.display(), error = %trunc,
                    "could not cut back a failed append; the stray tail is beyond the log end and will be overwritten or recovered");
            }
            return Err(LogError::Io {
                op: "append",
                path: self.log_path.clone(),
                source: e,
            });
        }
        let mut position = self.size;
        for meta in metas {
            self.note_batch(position, meta, index_interval, true);
            position += meta.size;
        }
        self.size += bytes.len() as u64;
        self.log_dirty = true;
        self.roll_base_ms.get_or_insert(now_ms);
        self.last_modified_ms = now_ms;
        if self.offset_index.len() - self.offset_persisted >= INDEX_PERSIST_BATCH {
            self.persist_index(false)?;
        }
        Ok(())
    }

    fn write_at_end(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(n) = self.fail_next_write_after.take() {
            self.file
                .write_all_at(&bytes[..n.min(bytes.len())], self.size)?;
            return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
        }
        self.file.write_all_at(bytes, self.size)
    }

    /// Appends index entries not yet in the files; with `sync`, also fsyncs them.
    pub fn persist_index(&mut self, sync: bool) -> Result<(), LogError> {
        if !self.index_dirty {
            return Ok(());
        }
        let dir = self.dir().to_path_buf();
        let parts = [
            (
                INDEX_EXT,
                self.offset_index.encode_from(self.offset_persisted),
            ),
            (
                TIME_INDEX_EXT,
                self.time_index.encode_from(self.time_persisted),
            ),
        ];
        for (ext, bytes) in parts {
            let path = segment_path(&dir, self.base_offset, ext);
            let mut f = OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
                .map_err(io_err("open index", &path))?;
            f.write_all(&bytes).map_err(io_err("write index", &path))?;
            if sync {
                f.sync_data().map_err(io_err("fsync index", &path))?;
            }
        }
        self.offset_persisted = self.offset_index.len();
        self.time_persisted = self.time_index.len();
        // Unsynced entries stay "dirty" so a later flush fsyncs them.
        self.index_dirty = !sync;
        Ok(())
    }

    /// Replaces both index files with the in-memory indexes (after recovery rebuilt them),
    /// via a temporary file and rename so a crash never leaves half an index.
    pub fn rewrite_index_files(&mut self) -> Result<(), LogError> {
        let dir = self.dir().to_path_buf();
        let parts = [
            (INDEX_EXT, self.offset_index.encode_from(0)),
            (TIME_INDEX_EXT, self.time_index.encode_from(0)),
        ];
        for (ext, bytes) in parts {
            let path = segment_path(&dir, self.base_offset, ext);
            let tmp = path.with_extension(format!("{ext}.tmp"));
            std::fs::write(&tmp, &bytes).map_err(io_err("write index", &tmp))?;
            std::fs::rename(&tmp, &path).map_err(io_err("rename index", &path))?;
        }
        self.mark_index_persisted();
        Ok(())
    }

    /// Called when this segment stops being the active one: records its final max timestamp
    /// in the time index (so a reopened segment knows it without a scan, as Kafka does) and
    /// writes out pending index entries.
    pub fn seal(&mut self) -> Result<(), LogError> {
        if let Some(m) = self.max_timestamp {
            self.time_index.maybe_push(TimeEntry {
                timestamp: m.timestamp,
                rel_offset: self.rel(m.batch_base),
            });
        }
        // Entries written while active were never fsynced; mark them so the next flush does.
        self.index_dirty = true;
        self.persist_index(false)
    }

    /// fsyncs the log and, unless `active`, the index files. The active segment's index is
    /// rebuilt from a full scan at every startup, so syncing it would be wasted I/O.
    pub fn sync(&mut self, active: bool) -> Result<(), LogError> {
        if self.log_dirty {
            self.file
                .sync_data()
                .map_err(io_err("fsync segment", &self.log_path))?;
            self.log_dirty = false;
        }
        if active {
            if self.index_dirty && self.offset_persisted < self.offset_index.len() {
                self.persist_index(false)?;
            }
            self.index_dirty = false;
            Ok(())
        } else {
            self.persist_index(true)
        }
    }

    /// A second handle on the log file and the size it must be synced through, when there are
    /// appends not yet fsynced: lets the caller fsync without holding the partition lock.
    pub fn pending_log_sync(&self) -> Result<Option<(File, u64)>, LogError> {
        if !self.log_dirty {
            return Ok(None);
        }
        let file = self
            .file
            .try_clone()
            .map_err(io_err("duplicate segment handle", &self.log_path))?;
        Ok(Some((file, self.size)))
    }

    /// Records an fsync done through `pending_log_sync`; appends made since keep it dirty.
    pub fn log_synced_through(&mut self, size: u64) {
        if self.size == size {
            self.log_dirty = false;
        }
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Cuts the file to `len` bytes (recovery of a torn tail).
    pub fn truncate_file(&mut self, len: u64) -> Result<(), LogError> {
        self.file
            .set_len(len)
            .map_err(io_err("truncate segment", &self.log_path))?;
        self.log_dirty = true;
        Ok(())
    }

    fn corrupt(&self, position: u64, reason: impl Into<String>) -> LogError {
        LogError::Corrupt {
            path: self.log_path.clone(),
            position,
            reason: reason.into(),
        }
    }

    /// The header of the batch at `position`, None at the end of the log.
    pub fn header_at(&self, position: u64) -> Result<Option<BatchHeader>, LogError> {
        if position >= self.size {
            return Ok(None);
        }
        if position + HEADER_SIZE as u64 > self.size {
            return Err(self.corrupt(position, "partial batch header"));
        }
        let mut buf = [0u8; HEADER_SIZE];
        self.file
            .read_exact_at(&mut buf, position)
            .map_err(io_err("read segment", &self.log_path))?;
        let header =
            batch::parse_header(&buf).map_err(|e| self.corrupt(position, e.to_string()))?;
        if position + header.total_size() as u64 > self.size {
            return Err(self.corrupt(position, "batch runs past the end of the segment"));
        }
        Ok(Some(header))
    }

    /// Position of the first batch starting at or after `from` whose last offset is >= `offset`.
    pub fn locate_from(
        &self,
        mut position: u64,
        offset: i64,
    ) -> Result<Option<(u64, BatchHeader)>, LogError> {
        while let Some(h) = self.header_at(position)? {
            if h.last_offset() >= offset {
                return Ok(Some((position, h)));
            }
            position += h.total_size() as u64;
        }
        Ok(None)
    }

    /// The batch holding `offset` (or the first one after it), found via the offset index.
    pub fn locate(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let start = self.offset_index.lookup(self.rel(offset));
        self.locate_from(u64::from(start), offset)
    }

    /// Whole batches from `position` (where `first` starts) while they fit in `budget` bytes;
    /// with `min_one` the first batch is taken whatever its size (KIP-74). Reads shorter than
    /// `copy_below` bytes are copied into memory with one pread; longer ones become a
    /// [`FileSlice`] the connection sends with `sendfile`. Returns the chunk (None if not even
    /// the first batch fits) and whether it reaches the end of the segment.
    pub fn read_chunk(
        &self,
        position: u64,
        first: &BatchHeader,
        budget: usize,
        min_one: bool,
        copy_below: usize,
    ) -> Result<(Option<Chunk>, bool), LogError> {
        let first_size = first.total_size();
        let available = usize::try_from(self.size - position).unwrap_or(usize::MAX);
        let want = if first_size > budget {
            if !min_one {
                return Ok((None, false));
            }
            first_size
        } else {
            budget.min(available)
        };
        let (chunk, whole) = if want < copy_below {
            let bytes = self.read_copied(position, want)?;
            let whole = bytes.len() as u64;
            (Chunk::Copied(Bytes::from(bytes)), whole)
        } else {
            let whole = self.whole_batches(position, first_size, want)?;
            let slice = FileSlice::new(self.file.clone(), self.log_path.clone(), position, whole);
            (Chunk::File(slice), whole)
        };
        Ok((Some(chunk), position + whole == self.size))
    }

    /// The `want` bytes at `position`, cut back to the last whole batch (one pread).
    fn read_copied(&self, position: u64, want: usize) -> Result<Vec<u8>, LogError> {
        let mut out = Vec::new();
        pread_append(&self.file, &mut out, position, want)
            .map_err(io_err("read segment", &self.log_path))?;
        let mut whole = 0usize;
        while whole + LOG_OVERHEAD <= out.len() {
            let Some(size) = self.batch_size_at(&out[whole..], position + whole as u64) else {
                break;
            };
            if whole + size > out.len() {
                break;
            }
            whole += size;
        }
        out.truncate(whole);
        Ok(out)
    }

    /// Size of the batch whose header starts `head` (at least `LOG_OVERHEAD` bytes), None
    /// (with a warning) when its length field is impossible.
    fn batch_size_at(&self, head: &[u8], position: u64) -> Option<usize> {
        let len = i32::from_be_bytes([head[8], head[9], head[10], head[11]]);
        let size = usize::try_from(len).map_or(0, |l| l + LOG_OVERHEAD);
        if size < HEADER_SIZE {
            tracing::warn!(path = %self.log_path.display(), position,
                "bad batch length in segment; read stops here");
            return None;
        }
        Some(size)
    }

    /// How many bytes of whole batches start at `position` (a batch of `first_size` bytes)
    /// and end within `want` bytes, found without reading the records: the same cut
    /// `read_copied` makes.
    ///
    /// Reaching the segment's end needs no I/O (the segment holds only whole batches). Else
    /// the walk starts at the last offset-index entry before the limit, not at `position`:
    /// an entry follows every `index_interval_bytes` (4 KiB) of batches, so one small pread
    /// of headers finds the cut whether the batches are 1 MiB lz4 batches or kcat's
    /// one-record batches (a 12-byte pread per header would cost ~10,000 syscalls for a
    /// 1 MiB read of those, more than copying it).
    fn whole_batches(
        &self,
        position: u64,
        first_size: usize,
        want: usize,
    ) -> Result<u64, LogError> {
        let limit = position + want as u64;
        if limit >= self.size {
            return Ok(self.size - position);
        }
        let mut at = (position + first_size as u64).max(
            self.offset_index
                .last_position_at_or_before(limit)
                .unwrap_or(0),
        );
        let mut window = Vec::new();
        let mut window_at = at;
        while at + LOG_OVERHEAD as u64 <= limit {
            if at + LOG_OVERHEAD as u64 > window_at + window.len() as u64 {
                window.clear();
                window_at = at;
                let len = (limit - at).min(WALK_WINDOW) as usize;
                pread_append(&self.file, &mut window, at, len)
                    .map_err(io_err("read segment", &self.log_path))?;
            }
            let head = &window[(at - window_at) as usize..];
            let Some(size) = self.batch_size_at(head, at) else {
                break;
            };
            if at + size as u64 > limit {
                break;
            }
            at += size as u64;
        }
        Ok(at - position)
    }

    /// The first record with timestamp >= `ts` in the batch at `position` described by
    /// `header`: its records are read from the file, and decompressed, only as far as that
    /// record (a lookup used to read whole batches of up to 1 MB to find a record in their
    /// first block). A batch that does not decode is `Ok(Err(..))`, for the caller to skip;
    /// failing to read the file is the lookup's error.
    pub fn find_record_by_timestamp(
        &self,
        position: u64,
        header: &BatchHeader,
        ts: i64,
    ) -> Result<Result<Option<(i64, i64)>, batch::BatchError>, LogError> {
        let mut records = RecordsReader {
            file: &self.file,
            pos: position + HEADER_SIZE as u64,
            end: position + header.total_size() as u64,
            failed: None,
        };
        let found = batch::find_record_by_timestamp(header, &mut records, ts);
        match records.failed {
            Some(e) => Err(io_err("read segment", &self.log_path)(e)),
            None => Ok(found),
        }
    }

    /// A second handle on the log file, so a walk can run while the segment is updated.
    pub fn clone_file(&self) -> Result<File, LogError> {
        self.file
            .try_clone()
            .map_err(io_err("dup segment", &self.log_path))
    }
}

/// A batch's records (what follows its header), read from the segment file on demand.
struct RecordsReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
    /// The first read that failed: the decoders reading through this see only an error,
    /// which must not pass for an undecodable batch.
    failed: Option<std::io::Error>,
}

impl Read for RecordsReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.end - self.pos).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let read = match self.file.read_at(&mut buf[..want], self.pos) {
            Ok(0) => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the segment ends inside a batch",
            )),
            other => other,
        };
        match read {
            Ok(n) => {
                self.pos += n as u64;
                Ok(n)
            }
            Err(e) => {
                let copy = std::io::Error::new(e.kind(), e.to_string());
                self.failed.get_or_insert(e);
                Err(copy)
            }
        }
    }
}

/// Walks batches sequentially from `from` up to `file_len` bytes of file, checking each
/// header (and, with `verify_crc`, its CRC, codec and record count) and that offsets only
/// grow from `min_offset`. Calls `f(position, header)` for each good batch and returns where
/// the good data ends plus, if it ended early, why.
pub(crate) fn walk(
    file: &File,
    path: &Path,
    from: u64,
    file_len: u64,
    min_offset: i64,
    verify_crc: bool,
    mut f: impl FnMut(u64, &BatchHeader),
) -> Result<(u64, Option<String>), LogError> {
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    {
        use std::io::{Seek, SeekFrom};
        reader
            .seek(SeekFrom::Start(from))
            .map_err(io_err("seek segment", path))?;
    }
    let mut position = from;
    let mut expected = min_offset;
    let mut body = Vec::new();
    let mut head = [0u8; HEADER_SIZE];
    loop {
        let remaining = file_len - position;
        if remaining == 0 {
            return Ok((position, None));
        }
        if remaining < HEADER_SIZE as u64 {
            return Ok((position, Some(format!("{remaining} trailing bytes"))));
        }
        reader
            .read_exact(&mut head)
            .map_err(io_err("read segment", path))?;
        let h = match batch::parse_header(&head) {
            Ok(h) => h,
            Err(e) => return Ok((position, Some(e.to_string()))),
        };
        let size = h.total_size() as u64;
        if size > remaining {
            return Ok((
                position,
                Some(format!("batch of {size} bytes runs past the end")),
            ));
        }
        if h.base_offset < expected || h.last_offset_delta < 0 {
            return Ok((
                position,
                Some(format!(
                    "batch offsets {}..={} out of order (expected >= {expected})",
                    h.base_offset,
                    h.last_offset()
                )),
            ));
        }
        let rest = (size as usize) - HEADER_SIZE;
        if verify_crc {
            body.clear();
            body.extend_from_slice(&head);
            body.resize(size as usize, 0);
            reader
                .read_exact(&mut body[HEADER_SIZE..])
                .map_err(io_err("read segment", path))?;
            if let Err(e) = batch::check_batch(&h, &body) {
                return Ok((position, Some(e.to_string())));
            }
        } else {
            reader
                .seek_relative(rest as i64)
                .map_err(io_err("seek segment", path))?;
        }
        f(position, &h);
        expected = h.last_offset() + 1;
        position += size;
    }
}
