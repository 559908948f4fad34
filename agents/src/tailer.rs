//! The tailing loop: finds files, reads what was appended, hands lines to the publisher,
//! and follows rotation, truncation and deletion.
//!
//! It runs on its own thread with blocking file I/O. It wakes on inotify events (a file was
//! written, a file appeared), and polls every file once a second and rescans the globs every
//! few seconds as a fallback for what inotify does not report (a file renamed into an
//! unwatched directory, an overflowed event queue, network file systems). An idle file costs
//! one `fstat` a second; thousands of files cost no more than that each.
//!
//! Lines go to the publisher through a bounded channel: when the broker is slow or away, the
//! channel fills, the loop blocks, and the unread lines simply stay in the files.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::checkpoint::{Checkpoint, CheckpointStore, WatchId};
use crate::config::{FileRule, ReadFrom};
use crate::fingerprint::FileId;
use crate::health::AgentStats;
use crate::lines::Line;
use crate::paths::{self, Matched, WatchDir};
use crate::watcher::{FileWatcher, OpenedFile, ReadOutcome};

/// Fallback poll of every file, for writes inotify did not report.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Fallback glob rescan, for files inotify did not report.
const RESCAN_INTERVAL: Duration = Duration::from_secs(5);
/// How long a rotated-away or deleted file must stay quiet before it is released: the
/// writer may still hold it open for a moment after rotation (Fluent Bit's rotate_wait).
pub const ROTATE_WAIT: Duration = Duration::from_secs(5);
/// Bytes read from one file per pass, so one busy file cannot starve the others.
const READ_BUDGET: usize = 128 * 1024;
/// Lines per batch sent to the publisher. With `READ_BUDGET`, what bounds the lines between
/// the tailer and the producer (each a small allocation): part of the memory budget.
const BATCH_LINES: usize = 1024;

/// Messages to the tailer thread.
pub enum Control {
    /// A file system event from inotify.
    Fs(notify::Result<notify::Event>),
    /// New `[[files]]` rules (SIGHUP).
    Reload(Vec<FileRule>),
    /// Stop reading and return (SIGTERM).
    Shutdown,
}

/// A line on its way to the broker.
#[derive(Debug)]
pub struct Outgoing {
    pub watch: WatchId,
    pub topic: Arc<str>,
    pub source: Arc<str>,
    pub line: Line,
    pub read_at: SystemTime,
}

/// Startup settings of the tailer.
pub struct TailerSetup {
    pub rules: Vec<FileRule>,
    pub store: Arc<CheckpointStore>,
    /// True when no checkpoints existed: the agent's first start, where `read_from` applies.
    pub first_start: bool,
    pub stats: Arc<AgentStats>,
    pub out: std::sync::mpsc::SyncSender<Vec<Outgoing>>,
    /// Batches the publisher is done with, emptied, to fill again: a batch allocated here
    /// and freed on the publisher's thread, hundreds of times a second, kept megabytes of
    /// freed memory around in the allocator.
    pub recycled: Receiver<Vec<Outgoing>>,
    pub control: Receiver<Control>,
    /// A sender for the same channel, given to inotify.
    pub control_tx: Sender<Control>,
}

pub struct Tailer {
    rules: Vec<FileRule>,
    /// Per rule: whether its `read_from` applies to the files of its next scan.
    read_from_pending: Vec<bool>,
    watchers: HashMap<WatchId, FileWatcher>,
    by_file: HashMap<FileId, WatchId>,
    by_path: HashMap<PathBuf, WatchId>,
    /// Files with news to read before the next full poll.
    dirty: HashSet<WatchId>,
    next_watch: WatchId,
    first_scan_done: bool,
    store: Arc<CheckpointStore>,
    stats: Arc<AgentStats>,
    out: std::sync::mpsc::SyncSender<Vec<Outgoing>>,
    batch: Vec<Outgoing>,
    recycled: Receiver<Vec<Outgoing>>,
    control: Receiver<Control>,
    control_tx: Sender<Control>,
    inotify: Option<RecommendedWatcher>,
    /// Some watched directory did not exist yet: retry at each rescan.
    watches_incomplete: bool,
    buf: Vec<u8>,
}

/// The publisher went away: nothing more can be sent.
struct Stopped;

impl Tailer {
    pub fn new(setup: TailerSetup) -> Tailer {
        let n = setup.rules.len();
        Tailer {
            rules: setup.rules,
            read_from_pending: vec![setup.first_start; n],
            watchers: HashMap::new(),
            by_file: HashMap::new(),
            by_path: HashMap::new(),
            dirty: HashSet::new(),
            next_watch: 1,
            first_scan_done: false,
            store: setup.store,
            stats: setup.stats,
            out: setup.out,
            batch: Vec::new(),
            recycled: setup.recycled,
            control: setup.control,
            control_tx: setup.control_tx,
            inotify: None,
            watches_incomplete: false,
            buf: vec![0; 64 * 1024],
        }
    }

    /// Runs until shutdown or until the publisher is gone.
    pub fn run(mut self) {
        self.set_watches();
        let now = Instant::now();
        self.rescan(now);
        self.recover_rotated(now);
        self.first_scan_done = true;
        // Saved checkpoints no file claimed belong to files that are gone.
        self.store.drop_unclaimed();
        // Save the starting positions at once: were the agent killed before its first
        // periodic save, the next start would otherwise count as a first start again and
        // apply `read_from = "end"` a second time, skipping what was written in between.
        if let Err(e) = self.store.save() {
            tracing::error!(error = %e, "cannot save checkpoints");
            self.stats.error();
        }
        let mut next_poll = now + POLL_INTERVAL;
        let mut next_rescan = now + RESCAN_INTERVAL;
        let mut rescan_needed = false;
        let mut poll_all = true;
        loop {
            let now = Instant::now();
            if rescan_needed || now >= next_rescan {
                if self.watches_incomplete {
                    self.set_watches();
                }
                self.rescan(now);
                rescan_needed = false;
                next_rescan = now + RESCAN_INTERVAL;
            }
            if now >= next_poll {
                poll_all = true;
                next_poll = now + POLL_INTERVAL;
            }
            // A multiline event whose timeout passed is sent by reading its file.
            let expired = self
                .watchers
                .values()
                .filter(|w| w.deadline().is_some_and(|d| d <= now));
            self.dirty
                .extend(expired.map(|w| w.watch).collect::<Vec<_>>());
            let more = match self.read_pass(poll_all, now) {
                Ok(more) => more,
                Err(Stopped) => return,
            };
            if poll_all && self.release_orphans(now).is_err() {
                return;
            }
            poll_all = false;

            let wake = self
                .watchers
                .values()
                .filter_map(FileWatcher::deadline)
                .chain([next_poll, next_rescan])
                .min()
                .unwrap_or(next_poll);
            let timeout = if more {
                Duration::ZERO
            } else {
                wake.saturating_duration_since(Instant::now())
            };
            let first = match self.control.recv_timeout(timeout) {
                Ok(msg) => Some(msg),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            // Drain everything queued, so a burst of events costs one pass.
            let mut msgs: Vec<Control> = first.into_iter().collect();
            msgs.extend(self.control.try_iter());
            for msg in msgs {
                match msg {
                    Control::Shutdown => return,
                    Control::Reload(rules) => {
                        self.reload(rules);
                        rescan_needed = true;
                    }
                    // Our own reads raise access/open/close events on the files we tail
                    // (and on rotated ones we drain): acting on them would make every read
                    // trigger another rescan, a busy loop. Only changes matter.
                    Control::Fs(Ok(event)) if matches!(event.kind, EventKind::Access(_)) => {}
                    Control::Fs(Ok(event)) => {
                        let namespace_change = matches!(
                            event.kind,
                            EventKind::Create(_)
                                | EventKind::Remove(_)
                                | EventKind::Modify(notify::event::ModifyKind::Name(_))
                        );
                        rescan_needed |= namespace_change;
                        for path in &event.paths {
                            if let Some(&w) = self.by_path.get(path) {
                                self.dirty.insert(w);
                            }
                        }
                    }
                    Control::Fs(Err(e)) => {
                        // E.g. the inotify queue overflowed: events were lost, so look again.
                        tracing::warn!(error = %e, "file watch error; rescanning");
                        rescan_needed = true;
                        poll_all = true;
                    }
                }
            }
        }
    }

    /// (Re)creates the inotify watches on the directories the globs can match in.
    fn set_watches(&mut self) {
        self.inotify = None;
        self.watches_incomplete = false;
        let tx = self.control_tx.clone();
        let mut watcher = match notify::recommended_watcher(move |res| {
            // The tailer is gone when this fails; nothing to do then.
            let _ = tx.send(Control::Fs(res));
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "inotify unavailable; relying on polling");
                return;
            }
        };
        for WatchDir { dir, recursive } in paths::watch_dirs(&self.rules) {
            let mode = if recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            if let Err(e) = watcher.watch(&dir, mode) {
                tracing::debug!(dir = %dir.display(), error = %e, "cannot watch directory yet");
                self.watches_incomplete = true;
            }
        }
        self.inotify = Some(watcher);
    }

    fn reload(&mut self, rules: Vec<FileRule>) {
        // A section that was not there before is new: its read_from applies to the files
        // it finds now. Existing files keep their watchers (and their position).
        self.read_from_pending = rules
            .iter()
            .map(|r| !self.rules.iter().any(|old| old.same_source(r)))
            .collect();
        self.rules = rules;
        self.set_watches();
        tracing::info!(rules = self.rules.len(), "file rules reloaded");
    }

    /// Matches the globs against the file system: opens new files, follows renamed ones,
    /// and marks tracked files that no configured path leads to any more as orphans.
    fn rescan(&mut self, now: Instant) {
        let mut seen = HashSet::new();
        let mut by_path = HashMap::new();
        for Matched { path, rule } in paths::scan(&self.rules) {
            let id = match std::fs::metadata(&path) {
                Ok(meta) => FileId::of(&meta),
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "file vanished during scan");
                    continue;
                }
            };
            if !seen.insert(id) {
                continue; // another link or path to a file already matched
            }
            let watch = match self.by_file.get(&id) {
                Some(&w) => w,
                None => match self.start(path.clone(), rule) {
                    Some(w) => w,
                    None => continue,
                },
            };
            if let Some(w) = self.watchers.get_mut(&watch) {
                w.orphaned_since = None;
                if w.path != path {
                    tracing::info!(from = %w.path.display(), to = %path.display(), "file renamed");
                    w.path.clone_from(&path);
                    self.store.update_identity(watch, &w.path, w.fingerprint);
                }
            }
            by_path.insert(path, watch);
        }
        for w in self.watchers.values_mut() {
            if !seen.contains(&w.file_id) && w.orphaned_since.is_none() {
                tracing::info!(path = %w.path.display(), "file rotated away or deleted; draining it");
                w.orphaned_since = Some(now);
                // Read what is left soon, without waiting for the next poll.
                self.dirty.insert(w.watch);
            }
        }
        self.by_path = by_path;
        self.read_from_pending.iter_mut().for_each(|p| *p = false);
        self.stats
            .files_watched
            .store(self.watchers.len() as u64, Ordering::Relaxed);
    }

    /// Finds files with a saved checkpoint that no glob matches any more: rotated (renamed)
    /// while the agent was down, e.g. killed in the middle of a rotation. Rotation renames
    /// within a directory, so the checkpoint's directory is searched for the same file
    /// (device, inode and first bytes); found, it is drained from its checkpoint under its
    /// old source, then released like any rotated-away file.
    fn recover_rotated(&mut self, now: Instant) {
        for cp in self.store.unclaimed() {
            let Some(dir) = cp.path.parent() else {
                continue;
            };
            let Some(rule) = paths::rule_for(&self.rules, &cp.path) else {
                continue;
            };
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let found = entries.filter_map(Result::ok).find(|e| {
                e.metadata()
                    .is_ok_and(|m| m.is_file() && FileId::of(&m) == cp.file)
            });
            let Some(entry) = found else {
                continue;
            };
            let path = entry.path();
            let opened = match File::open(&path).and_then(OpenedFile::new) {
                Ok(o) if o.id == cp.file => o,
                _ => continue,
            };
            if !matches!(cp.fingerprint.matches(&opened.file), Ok(true)) || opened.len < cp.offset {
                continue;
            }
            let Some(rule_def) = self.rules.get(rule) else {
                continue;
            };
            self.store.claim(cp.file);
            let watch = self.next_watch;
            self.next_watch += 1;
            tracing::info!(path = %path.display(), was = %cp.path.display(), offset = cp.offset, "found a file rotated while the agent was down; draining it");
            self.store.register(
                watch,
                Checkpoint {
                    path: path.clone(),
                    ..cp.clone()
                },
            );
            let topic: Arc<str> = Arc::from(rule_def.topic.as_str());
            let mut watcher =
                FileWatcher::new(watch, cp.path.clone(), topic, rule_def, opened, cp.offset);
            watcher.path = path;
            watcher.orphaned_since = Some(now);
            self.by_file.insert(watcher.file_id, watch);
            self.watchers.insert(watch, watcher);
            self.dirty.insert(watch);
        }
    }

    /// Starts tailing a newly matched file; decides where to start reading.
    fn start(&mut self, path: PathBuf, rule_index: usize) -> Option<WatchId> {
        let opened = match File::open(&path).and_then(OpenedFile::new) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot open file");
                self.stats.error();
                return None;
            }
        };
        let rule = self.rules.get(rule_index)?;
        let saved = if self.first_scan_done {
            None
        } else {
            self.store.claim(opened.id)
        };
        let offset = match saved {
            Some(cp) => match cp.fingerprint.matches(&opened.file) {
                Ok(true) if opened.len >= cp.offset => cp.offset,
                Ok(_) => {
                    tracing::info!(path = %path.display(), "file was replaced or truncated while the agent was down; reading it from the start");
                    0
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read file");
                    self.stats.error();
                    return None;
                }
            },
            None if self
                .read_from_pending
                .get(rule_index)
                .copied()
                .unwrap_or(false) =>
            {
                match rule.read_from {
                    ReadFrom::Beginning => 0,
                    ReadFrom::End => opened.len,
                }
            }
            // A file that appeared while we run (or while we were down) is new: all of it.
            None => 0,
        };
        let watch = self.next_watch;
        self.next_watch += 1;
        tracing::info!(path = %path.display(), offset, "tailing file");
        self.store.register(
            watch,
            Checkpoint {
                path: path.clone(),
                file: opened.id,
                fingerprint: opened.fingerprint,
                offset,
            },
        );
        let topic: Arc<str> = Arc::from(rule.topic.as_str());
        let watcher = FileWatcher::new(watch, path, topic, rule, opened, offset);
        self.by_file.insert(watcher.file_id, watch);
        self.watchers.insert(watch, watcher);
        self.dirty.insert(watch);
        Some(watch)
    }

    /// Reads the dirty files (or all of them). Returns whether some file has more to read.
    fn read_pass(&mut self, all: bool, now: Instant) -> Result<bool, Stopped> {
        let targets: Vec<WatchId> = if all {
            self.dirty.clear();
            self.watchers.keys().copied().collect()
        } else {
            self.dirty.drain().collect()
        };
        let mut more = false;
        let read_at = SystemTime::now();
        let mut lines = Vec::new();
        for watch in targets {
            let Some(w) = self.watchers.get_mut(&watch) else {
                continue;
            };
            let outcome = w.read(&mut self.buf, READ_BUDGET, now, &mut lines);
            match outcome {
                Ok(ReadOutcome::Read { bytes, more: m }) => {
                    if bytes > 0 {
                        AgentStats::add(&self.stats.bytes_read, bytes as u64);
                        self.store.update_identity(watch, &w.path, w.fingerprint);
                    }
                    if m {
                        more = true;
                        self.dirty.insert(watch);
                    }
                    self.emit(watch, &mut lines, read_at)?;
                }
                Ok(ReadOutcome::Truncated) => self.restart_truncated(watch, read_at)?,
                Err(e) => {
                    tracing::warn!(path = %w.path.display(), error = %e, "read failed");
                    self.stats.error();
                }
            }
            if all {
                if let Some(w) = self.watchers.get_mut(&watch) {
                    if w.orphaned_since.is_none() && w.is_deleted().unwrap_or(false) {
                        tracing::info!(path = %w.path.display(), "file deleted; draining it");
                        w.orphaned_since = Some(now);
                    }
                    w.flush_expired(now, &mut lines);
                }
                self.emit(watch, &mut lines, read_at)?;
            }
        }
        self.send_batch()?;
        Ok(more)
    }

    /// Queues `lines` of one watch for the publisher.
    fn emit(
        &mut self,
        watch: WatchId,
        lines: &mut Vec<Line>,
        read_at: SystemTime,
    ) -> Result<(), Stopped> {
        let Some(w) = self.watchers.get(&watch) else {
            return Ok(());
        };
        AgentStats::add(&self.stats.lines_read, lines.len() as u64);
        for line in lines.drain(..) {
            self.batch.push(Outgoing {
                watch,
                topic: Arc::clone(&w.topic),
                source: Arc::clone(&w.source),
                line,
                read_at,
            });
        }
        if self.batch.len() >= BATCH_LINES {
            self.send_batch()?;
        }
        Ok(())
    }

    fn send_batch(&mut self) -> Result<(), Stopped> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let next = self
            .recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH_LINES));
        let batch = std::mem::replace(&mut self.batch, next);
        // Blocks while the publisher is behind: that is the backpressure.
        self.out.send(batch).map_err(|_| Stopped)
    }

    /// A truncated file (copytruncate) is tailed again from byte 0 under a new watch, so
    /// acknowledgements still in flight for its old content cannot move the new checkpoint.
    fn restart_truncated(&mut self, watch: WatchId, read_at: SystemTime) -> Result<(), Stopped> {
        let mut lines = Vec::new();
        let Some(w) = self.watchers.get_mut(&watch) else {
            return Ok(());
        };
        tracing::info!(path = %w.path.display(), "file truncated; reading it from the start");
        // The old content's unfinished line and pending event go out under the old watch.
        w.flush_all(&mut lines);
        self.emit(watch, &mut lines, read_at)?;
        let Some(mut w) = self.watchers.remove(&watch) else {
            return Ok(());
        };
        self.store.release(watch);
        let new_watch = self.next_watch;
        self.next_watch += 1;
        if let Err(e) = w.restart(new_watch) {
            tracing::warn!(path = %w.path.display(), error = %e, "cannot re-read truncated file");
            self.stats.error();
            self.by_file.remove(&w.file_id);
            self.by_path.retain(|_, v| *v != watch);
            return Ok(());
        }
        self.store.register(
            new_watch,
            Checkpoint {
                path: w.path.clone(),
                file: w.file_id,
                fingerprint: w.fingerprint,
                offset: 0,
            },
        );
        self.by_file.insert(w.file_id, new_watch);
        for v in self.by_path.values_mut() {
            if *v == watch {
                *v = new_watch;
            }
        }
        self.watchers.insert(new_watch, w);
        self.dirty.insert(new_watch);
        Ok(())
    }

    /// Releases orphaned files once drained, quiet for [`ROTATE_WAIT`], and acknowledged.
    fn release_orphans(&mut self, now: Instant) -> Result<(), Stopped> {
        let quiet: Vec<WatchId> = self
            .watchers
            .values()
            .filter(|w| {
                w.orphaned_since
                    .is_some_and(|t| now.duration_since(t) >= ROTATE_WAIT)
                    && now.duration_since(w.last_data) >= ROTATE_WAIT
            })
            .map(|w| w.watch)
            .collect();
        let read_at = SystemTime::now();
        for watch in quiet {
            let mut lines = Vec::new();
            let Some(w) = self.watchers.get_mut(&watch) else {
                continue;
            };
            if w.has_unread().unwrap_or(false) {
                // Data arrived since the last read: keep reading it first.
                continue;
            }
            // Nothing more will come: send the unfinished last line and pending event.
            w.flush_all(&mut lines);
            let offset = w.offset;
            self.emit(watch, &mut lines, read_at)?;
            let acked = self.store.acked(watch).unwrap_or(offset);
            if acked >= offset {
                if let Some(w) = self.watchers.remove(&watch) {
                    tracing::info!(path = %w.path.display(), "released file");
                    self.by_file.remove(&w.file_id);
                    self.store.release(watch);
                }
            }
        }
        self.send_batch()?;
        self.stats
            .files_watched
            .store(self.watchers.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}
