//! One tailed file: its open descriptor, read position, line splitting and truncation
//! detection.
//!
//! The descriptor stays open for the file's whole life, so a rename (rotation) does not
//! interrupt reading, and a deleted file can still be drained to its end.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::checkpoint::WatchId;
use crate::config::FileRule;
use crate::fingerprint::{FileId, Fingerprint};
use crate::lines::{Line, LineSplitter, MultilineMerger};

/// What one read pass found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Read this many bytes; `more` if the file holds more than the pass's budget.
    Read { bytes: usize, more: bool },
    /// The file is shorter than our position, or its first bytes changed: it was truncated
    /// (copytruncate) or rewritten in place. Nothing was read.
    Truncated,
}

/// An open file with its identity, ready to be tailed.
pub struct OpenedFile {
    pub file: File,
    pub id: FileId,
    pub fingerprint: Fingerprint,
    pub len: u64,
}

impl OpenedFile {
    pub fn new(file: File) -> io::Result<OpenedFile> {
        let meta = file.metadata()?;
        Ok(OpenedFile {
            id: FileId::of(&meta),
            fingerprint: Fingerprint::of(&file)?,
            len: meta.len(),
            file,
        })
    }
}

pub struct FileWatcher {
    pub watch: WatchId,
    /// The path the file was last seen at.
    pub path: PathBuf,
    /// The `source` of its records: the path it was first seen at. It stays the same after
    /// a rename, so the record key (and so the partition, and so the order) stays the same.
    pub source: Arc<str>,
    pub topic: Arc<str>,
    pub file_id: FileId,
    file: File,
    /// Next byte to read.
    pub offset: u64,
    pub fingerprint: Fingerprint,
    splitter: LineSplitter,
    multiline: Option<MultilineMerger>,
    /// Set while no configured path leads to this file (renamed away or deleted).
    pub orphaned_since: Option<Instant>,
    /// Last time a read returned data, for the rotate wait.
    pub last_data: Instant,
}

impl FileWatcher {
    /// Starts tailing `opened` at `offset`, with the line handling of `rule`.
    pub fn new(
        watch: WatchId,
        path: PathBuf,
        topic: Arc<str>,
        rule: &FileRule,
        opened: OpenedFile,
        offset: u64,
    ) -> FileWatcher {
        FileWatcher {
            watch,
            source: Arc::from(path.to_string_lossy().as_ref()),
            path,
            topic,
            file_id: opened.id,
            file: opened.file,
            offset,
            fingerprint: opened.fingerprint,
            splitter: LineSplitter::new(rule.max_line_bytes),
            multiline: rule.multiline.as_ref().map(|m| {
                MultilineMerger::new(m.start_pattern.clone(), m.timeout, rule.max_line_bytes)
            }),
            orphaned_since: None,
            last_data: Instant::now(),
        }
    }

    /// Starts over at byte 0 under a new watch, after truncation. Call [`Self::flush_all`]
    /// first: the line state must not carry the old content over.
    pub fn restart(&mut self, watch: WatchId) -> io::Result<()> {
        self.fingerprint = Fingerprint::of(&self.file)?;
        self.watch = watch;
        self.offset = 0;
        Ok(())
    }

    /// Reads what was appended since the last pass, at most `budget` bytes, into `out`.
    pub fn read(
        &mut self,
        buf: &mut [u8],
        budget: usize,
        now: Instant,
        out: &mut Vec<Line>,
    ) -> io::Result<ReadOutcome> {
        let len = self.file.metadata()?.len();
        // Shorter than what was read: truncated. Its first bytes changed: truncated and
        // written again (copytruncate). The second is checked even when the file is exactly
        // as long as what was read: a rewrite that reached the old length before this pass
        // showed no new bytes, and its lines waited for growth that might never come.
        if len < self.offset || (len > 0 && !self.fingerprint.matches(&self.file)?) {
            return Ok(ReadOutcome::Truncated);
        }
        if !self.fingerprint.is_full() && len > u64::from(self.fingerprint.len) {
            self.fingerprint = Fingerprint::of(&self.file)?;
        }
        let mut total = 0;
        let mut lines = Vec::new();
        while total < budget {
            let want = buf.len().min(budget - total);
            let n = match self.file.read_at(&mut buf[..want], self.offset) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.offset += n as u64;
            total += n;
            self.splitter.push(&buf[..n], self.offset, &mut lines);
        }
        if total > 0 {
            self.last_data = now;
        }
        match &mut self.multiline {
            Some(m) => {
                for line in lines {
                    m.push(line, now, out);
                }
                m.flush_expired(now, out);
            }
            None => out.append(&mut lines),
        }
        Ok(ReadOutcome::Read {
            bytes: total,
            more: total >= budget,
        })
    }

    /// Whether the file was deleted (no name links to it any more).
    pub fn is_deleted(&self) -> io::Result<bool> {
        Ok(self.file.metadata()?.nlink() == 0)
    }

    /// Emits everything held back: a pending multiline event and an unterminated last line.
    /// Used when the file will get no more data (released, or truncated).
    pub fn flush_all(&mut self, out: &mut Vec<Line>) {
        let tail = self.splitter.finish(self.offset);
        match &mut self.multiline {
            Some(m) => {
                if let Some(t) = tail {
                    m.push(t, Instant::now(), out);
                }
                m.flush(out);
            }
            None => out.extend(tail),
        }
    }

    /// When a pending multiline event times out, if one is pending.
    pub fn deadline(&self) -> Option<Instant> {
        self.multiline.as_ref().and_then(MultilineMerger::deadline)
    }

    /// Emits a pending multiline event whose timeout passed.
    pub fn flush_expired(&mut self, now: Instant, out: &mut Vec<Line>) {
        if let Some(m) = &mut self.multiline {
            m.flush_expired(now, out);
        }
    }

    /// Whether the file holds bytes not read yet.
    pub fn has_unread(&self) -> io::Result<bool> {
        Ok(self.file.metadata()?.len() > self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReadFrom;
    use std::io::Write;

    fn watcher(path: &std::path::Path) -> FileWatcher {
        let rule = FileRule {
            include: vec![path.display().to_string()],
            exclude: vec![],
            read_from: ReadFrom::Beginning,
            topic: "logs".into(),
            max_line_bytes: 1024,
            multiline: None,
        };
        let opened = OpenedFile::new(File::open(path).expect("open")).expect("opened");
        FileWatcher::new(1, path.to_path_buf(), Arc::from("logs"), &rule, opened, 0)
    }

    fn pass(w: &mut FileWatcher) -> (ReadOutcome, Vec<String>) {
        let (mut buf, mut out) = (vec![0u8; 4096], Vec::new());
        let outcome = w
            .read(&mut buf, 1 << 20, Instant::now(), &mut out)
            .expect("read");
        let lines = out
            .iter()
            .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
            .collect();
        (outcome, lines)
    }

    /// copytruncate, then as many bytes written again before the next pass: the file is as
    /// long as what was read, but it is not the same file (seen in CI: the new lines never
    /// came).
    #[test]
    fn a_rewrite_to_the_same_length_is_a_truncation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        std::fs::write(&path, b"line-000000\nline-000001\n").expect("write");
        let mut w = watcher(&path);
        let (outcome, lines) = pass(&mut w);
        assert_eq!(
            outcome,
            ReadOutcome::Read {
                bytes: 24,
                more: false
            }
        );
        assert_eq!(lines, ["line-000000", "line-000001"]);
        // Nothing new, nothing changed: an idle pass.
        assert_eq!(
            pass(&mut w).0,
            ReadOutcome::Read {
                bytes: 0,
                more: false
            }
        );

        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        f.set_len(0).expect("truncate");
        f.write_all(b"line-000002\nline-000003\n").expect("rewrite");
        assert_eq!(pass(&mut w).0, ReadOutcome::Truncated);
        w.restart(2).expect("restart");
        assert_eq!(pass(&mut w).1, ["line-000002", "line-000003"]);
    }
}
