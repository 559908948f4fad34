//! Startup recovery: find the segments, check the last one batch by batch (header, CRC) and
//! truncate a torn tail, check every segment's indexes and rebuild the ones that look wrong,
//! and clean up leftovers of interrupted deletions and index rewrites.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use super::batch::HEADER_SIZE;
use super::index::{IndexProblem, OffsetIndex, TimeIndex, OFFSET_ENTRY_SIZE, TIME_ENTRY_SIZE};
use super::segment::{
    self, file_time_ms, io_err, segment_path, BatchMeta, MaxTimestamp, Segment, INDEX_EXT, LOG_EXT,
    TIME_INDEX_EXT,
};
use super::{LogConfig, LogError};

/// One thing recovery found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryAction {
    /// Bytes at the end of a segment that were not whole, valid batches were cut off.
    TruncatedTail {
        segment: PathBuf,
        position: u64,
        bytes: u64,
        reason: String,
    },
    /// A segment's `.index` / `.timeindex` were rebuilt from its `.log`.
    RebuiltIndex { segment: PathBuf, reason: String },
    /// A leftover of an interrupted operation was removed.
    RemovedFile { path: PathBuf, reason: String },
    /// A file that is not part of the log was left alone.
    IgnoredFile { path: PathBuf },
}

impl fmt::Display for RecoveryAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryAction::TruncatedTail {
                segment,
                position,
                bytes,
                reason,
            } => write!(
                f,
                "truncated {bytes} bytes at position {position} in segment {} ({reason})",
                segment.display()
            ),
            RecoveryAction::RebuiltIndex { segment, reason } => {
                write!(f, "rebuilt index of {} ({reason})", segment.display())
            }
            RecoveryAction::RemovedFile { path, reason } => {
                write!(f, "removed {} ({reason})", path.display())
            }
            RecoveryAction::IgnoredFile { path } => {
                write!(f, "ignored unknown file {}", path.display())
            }
        }
    }
}

/// What `PartitionLog::open` repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub actions: Vec<RecoveryAction>,
}

impl RecoveryReport {
    /// True when nothing needed repair (unknown files left alone do not count).
    pub fn is_clean(&self) -> bool {
        self.actions
            .iter()
            .all(|a| matches!(a, RecoveryAction::IgnoredFile { .. }))
    }

    fn push(&mut self, action: RecoveryAction) {
        match &action {
            RecoveryAction::IgnoredFile { .. } => tracing::warn!(%action, "recovery"),
            _ => tracing::warn!(%action, "recovery repaired the log"),
        }
        self.actions.push(action);
    }
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.actions.is_empty() {
            return write!(f, "clean");
        }
        for (i, a) in self.actions.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

/// `00000000000000000042.log` → (42, "log") for the three segment file kinds.
fn parse_segment_name(name: &str) -> Option<(i64, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if ![LOG_EXT, INDEX_EXT, TIME_INDEX_EXT].contains(&ext) {
        return None;
    }
    Some((stem.parse().ok()?, ext))
}

/// Recovers every segment in `dir` (created if missing), oldest first; creates segment 0 in
/// an empty directory.
pub(super) fn recover(
    dir: &Path,
    config: &LogConfig,
    now_ms: i64,
) -> Result<(Vec<Segment>, RecoveryReport), LogError> {
    std::fs::create_dir_all(dir).map_err(io_err("create partition dir", dir))?;
    let mut report = RecoveryReport::default();
    let mut logs = BTreeSet::new();
    let mut index_files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(io_err("list partition dir", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err("list partition dir", dir))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            report.push(RecoveryAction::IgnoredFile { path });
            continue;
        };
        // `.deleted`: a retention deletion interrupted after its rename; `.tmp`: an index
        // rewrite interrupted before its rename. Both are garbage by construction.
        if name.ends_with(".deleted") || name.ends_with(".tmp") {
            std::fs::remove_file(&path).map_err(io_err("remove leftover", &path))?;
            report.push(RecoveryAction::RemovedFile {
                path,
                reason: "leftover of an interrupted operation".into(),
            });
            continue;
        }
        match parse_segment_name(&name) {
            Some((base, LOG_EXT)) if path.is_file() => {
                logs.insert(base);
            }
            Some((base, _)) if path.is_file() => index_files.push((base, path)),
            _ => report.push(RecoveryAction::IgnoredFile { path }),
        }
    }
    for (base, path) in index_files {
        if !logs.contains(&base) {
            // The log went first when its segment was deleted; the index is an orphan.
            std::fs::remove_file(&path).map_err(io_err("remove orphan index", &path))?;
            report.push(RecoveryAction::RemovedFile {
                path,
                reason: "index without a segment".into(),
            });
        }
    }

    let mut segments: Vec<Segment> = Vec::with_capacity(logs.len());
    let count = logs.len();
    for (i, &base) in logs.iter().enumerate() {
        let segment = recover_segment(dir, base, i + 1 == count, config, now_ms, &mut report)?;
        if let Some(prev) = segments.last() {
            if prev.next_offset > segment.base_offset {
                return Err(LogError::Corrupt {
                    path: segment.log_path.clone(),
                    position: 0,
                    reason: format!(
                        "segment starts at offset {} but the previous one ends at {}",
                        segment.base_offset,
                        prev.next_offset - 1
                    ),
                });
            }
        }
        segments.push(segment);
    }
    if segments.is_empty() {
        segments.push(Segment::create(dir, 0, now_ms)?);
    }
    Ok((segments, report))
}

/// Reads an index file, or None if it is missing. A file larger than any index this log could
/// have (one entry per minimal batch) is reported as bad without reading it into memory.
fn read_index_file(
    path: &Path,
    log_size: u64,
    entry_size: usize,
) -> Result<Result<Vec<u8>, IndexProblem>, LogError> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        // An empty segment has nothing to index: its missing index needs no repair.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && log_size == 0 => {
            return Ok(Ok(Vec::new()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Err(IndexProblem::Missing))
        }
        Err(e) => return Err(io_err("stat index", path)(e)),
    };
    let max_entries = log_size / HEADER_SIZE as u64 + 1;
    if len > max_entries * entry_size as u64 {
        return Ok(Err(IndexProblem::BadSize(
            usize::try_from(len).unwrap_or(usize::MAX),
        )));
    }
    std::fs::read(path)
        .map(Ok)
        .map_err(io_err("read index", path))
}

fn recover_segment(
    dir: &Path,
    base: i64,
    last: bool,
    config: &LogConfig,
    now_ms: i64,
    report: &mut RecoveryReport,
) -> Result<Segment, LogError> {
    let (mut seg, file_len) = Segment::open_existing(dir, base, now_ms)?;
    let index_path = segment_path(dir, base, INDEX_EXT);
    let time_path = segment_path(dir, base, TIME_INDEX_EXT);
    if last {
        // The last segment may end in a torn write: check every batch, CRC included (Kafka
        // recovers unflushed segments the same way), building its indexes on the way.
        rebuild(&mut seg, file_len, true, config, report)?;
        let on_disk = load_indexes(&seg, &index_path, &time_path)?;
        match on_disk {
            Err(problem) => {
                report.push(RecoveryAction::RebuiltIndex {
                    segment: seg.log_path.clone(),
                    reason: problem.to_string(),
                });
                seg.rewrite_index_files()?;
            }
            // A valid index that differs (entries not yet written, or another
            // index_interval_bytes) is silently replaced by the complete one.
            Ok((oi, ti)) if oi != seg.offset_index || ti != seg.time_index => {
                seg.rewrite_index_files()?;
            }
            Ok(_) => {}
        }
        if !seg.is_empty() {
            seg.roll_base_ms = Some(file_time_ms_or(&seg, now_ms));
        }
        return Ok(seg);
    }

    // Older segments are trusted for content; only their indexes are checked. Start from the
    // last offset-index entry and walk headers to the end, which also yields the segment's end
    // offset and any max timestamp newer than the time index's last entry.
    seg.size = file_len;
    let offset_index = match read_index_file(&index_path, file_len, OFFSET_ENTRY_SIZE)? {
        Ok(bytes) => OffsetIndex::decode(&bytes, file_len),
        Err(p) => Err(p),
    };
    let offset_index = match offset_index {
        Ok(oi) => oi,
        Err(problem) => return rebuild_older(seg, file_len, problem, config, report),
    };
    let (from, min_offset) = offset_index.last().map_or((0, base), |e| {
        (u64::from(e.position), base + i64::from(e.rel_offset))
    });
    let file = seg.clone_file()?;
    let path = seg.log_path.clone();
    let mut first_ok = None;
    let (_, problem) = segment::walk(&file, &path, from, file_len, min_offset, false, |pos, h| {
        if first_ok.is_none() {
            first_ok = Some(h.base_offset == min_offset);
        }
        seg.note_batch(pos, &BatchMeta::of(h), config.index_interval_bytes, false);
    })?;
    if problem.is_some() || (from > 0 && first_ok != Some(true)) {
        let problem = IndexProblem::PastEnd(offset_index.len().saturating_sub(1));
        return rebuild_older(seg, file_len, problem, config, report);
    }
    let next_rel = u64::try_from(seg.next_offset - base).unwrap_or(0);
    let time_index = match read_index_file(&time_path, file_len, TIME_ENTRY_SIZE)? {
        Ok(bytes) => TimeIndex::decode(&bytes, next_rel),
        Err(p) => Err(p),
    };
    let time_index = match time_index {
        Ok(ti) => ti,
        Err(problem) => return rebuild_older(seg, file_len, problem, config, report),
    };
    seg.offset_index = offset_index;
    seg.time_index = time_index;
    seg.mark_index_persisted();
    // The time index's last entry is the max timestamp of everything before `from`; the walk
    // only saw what came after.
    if let Some(t) = seg.time_index.last() {
        if seg.max_timestamp.is_none_or(|m| t.timestamp > m.timestamp) {
            let batch_base = base + i64::from(t.rel_offset);
            let offset = seg
                .locate(batch_base)?
                .map_or(batch_base, |(_, h)| h.last_offset());
            seg.max_timestamp = Some(MaxTimestamp {
                timestamp: t.timestamp,
                offset,
                batch_base,
            });
        }
    }
    Ok(seg)
}

fn file_time_ms_or(seg: &Segment, now_ms: i64) -> i64 {
    seg.clone_file()
        .ok()
        .and_then(|f| file_time_ms(&f))
        .unwrap_or(now_ms)
}

fn load_indexes(
    seg: &Segment,
    index_path: &Path,
    time_path: &Path,
) -> Result<Result<(OffsetIndex, TimeIndex), IndexProblem>, LogError> {
    let next_rel = u64::try_from(seg.next_offset - seg.base_offset).unwrap_or(0);
    let oi = match read_index_file(index_path, seg.size, OFFSET_ENTRY_SIZE)? {
        Ok(bytes) => OffsetIndex::decode(&bytes, seg.size),
        Err(p) => Err(p),
    };
    let ti = match read_index_file(time_path, seg.size, TIME_ENTRY_SIZE)? {
        Ok(bytes) => TimeIndex::decode(&bytes, next_rel),
        Err(p) => Err(p),
    };
    Ok(oi.and_then(|oi| ti.map(|ti| (oi, ti))))
}

fn rebuild_older(
    mut seg: Segment,
    file_len: u64,
    problem: IndexProblem,
    config: &LogConfig,
    report: &mut RecoveryReport,
) -> Result<Segment, LogError> {
    rebuild(&mut seg, file_len, false, config, report)?;
    report.push(RecoveryAction::RebuiltIndex {
        segment: seg.log_path.clone(),
        reason: problem.to_string(),
    });
    seg.rewrite_index_files()?;
    Ok(seg)
}

/// Walks the whole segment, rebuilding its in-memory indexes, and cuts off whatever follows
/// the last good batch.
fn rebuild(
    seg: &mut Segment,
    file_len: u64,
    verify_crc: bool,
    config: &LogConfig,
    report: &mut RecoveryReport,
) -> Result<(), LogError> {
    seg.reset();
    let file = seg.clone_file()?;
    let path = seg.log_path.clone();
    let base = seg.base_offset;
    let (end, problem) = segment::walk(&file, &path, 0, file_len, base, verify_crc, |pos, h| {
        seg.note_batch(pos, &BatchMeta::of(h), config.index_interval_bytes, true);
    })?;
    seg.size = end;
    if let Some(reason) = problem {
        seg.truncate_file(end)?;
        report.push(RecoveryAction::TruncatedTail {
            segment: path,
            position: end,
            bytes: file_len - end,
            reason,
        });
    }
    Ok(())
}
