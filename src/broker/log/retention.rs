//! Retention: deleting whole segments by age (`retention.ms`) and by total size
//! (`retention.bytes`), oldest first, as Kafka's `UnifiedLog.deleteOldSegments` does.

use std::fmt;

use super::segment::{io_err, segment_path, Segment, INDEX_EXT, TIME_INDEX_EXT};
use super::{LogError, PartitionLog};

/// What one retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    /// The log start offset after the pass.
    pub log_start_offset: i64,
}

impl fmt::Display for RetentionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "deleted {} segments ({} bytes); log now starts at offset {}",
            self.segments_deleted, self.bytes_deleted, self.log_start_offset
        )
    }
}

/// Whether every record in `segment` is older than `retention_ms` at `now_ms`. A segment with
/// no timestamps at all is aged by its last write, as Kafka does.
fn expired(segment: &Segment, now_ms: i64, retention_ms: i64) -> bool {
    let newest = segment
        .max_timestamp
        .map_or(segment.last_modified_ms, |m| m.timestamp);
    now_ms.saturating_sub(newest) > retention_ms
}

impl PartitionLog {
    /// Deletes whole segments past `retention.ms` (by their newest timestamp) and then, oldest
    /// first, segments whose removal keeps the log at or above `retention.bytes` (Kafka's rule:
    /// the log never shrinks below the limit). An active segment that is itself fully expired is
    /// rolled first so it can go; the log always keeps an active segment.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<RetentionReport, LogError> {
        let mut report = RetentionReport::default();
        if let Some(retention_ms) = self.config.retention_ms {
            let active = self.active();
            if !active.is_empty() && expired(active, now_ms, retention_ms) {
                self.roll(now_ms)?;
            }
            while self.segments.len() > 1 && expired(&self.segments[0], now_ms, retention_ms) {
                self.delete_oldest(&mut report)?;
            }
        }
        if let Some(retention_bytes) = self.config.retention_bytes {
            while self.segments.len() > 1
                && self.size_bytes() - self.segments[0].size >= retention_bytes
            {
                self.delete_oldest(&mut report)?;
            }
        }
        report.log_start_offset = self.log_start_offset();
        if report.segments_deleted > 0 {
            tracing::info!(dir = %self.dir.display(), %report, "retention");
        }
        Ok(report)
    }

    /// Removes the oldest segment: first renamed to `.deleted` (atomic, so a crash leaves
    /// either the segment or a leftover that recovery removes), then unlinked.
    fn delete_oldest(&mut self, report: &mut RetentionReport) -> Result<(), LogError> {
        let oldest = &self.segments[0];
        let doomed = oldest.log_path.with_extension("log.deleted");
        std::fs::rename(&oldest.log_path, &doomed)
            .map_err(io_err("rename segment for deletion", &oldest.log_path))?;
        let segment = self.segments.remove(0);
        self.dir_dirty = true;
        report.segments_deleted += 1;
        report.bytes_deleted += segment.size;
        let base = segment.base_offset;
        drop(segment);
        // The segment is out of the log already; a file left behind here is cleaned up by the
        // next recovery, so failures are only worth a warning.
        let index = segment_path(&self.dir, base, INDEX_EXT);
        let time_index = segment_path(&self.dir, base, TIME_INDEX_EXT);
        for path in [doomed, index, time_index] {
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove deleted segment file");
                }
            }
        }
        Ok(())
    }
}
