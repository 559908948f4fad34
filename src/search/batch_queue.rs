//! The fetched batches not yet scanned, shared by the wire reader's partition threads.
//!
//! Each partition thread fetches its own partition and queues the batches of every answer
//! here; then, until its own batches are scanned, it scans whichever batch is first in the
//! queue, its partition's or another's. It still hands its partition's hits to the merge
//! in offset order: it takes its batches' results in turn. A thread whose partition is
//! complete goes on scanning the other partitions' batches until no thread is fetching.
//!
//! Why: partitions differ in size, and more partition threads than cores share the cores
//! unevenly. With each thread scanning only its own partition, a search ended on one
//! partition's scan with the other cores idle: a `--since` search over the newest 10 %
//! (three partitions, two cores) spent its last 2.1 ms, a fifth of its time, with one
//! partition left and 1.8 ms of CPU idle (medians of 20 runs, from scheduler traces).

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::search::batch::{self, BatchError, BatchHeader, Decoder, Record};
use crate::search::error::SearchError;
use crate::search::scan::{scan_batch, Scanned};
use crate::search::{Hit, Options};

/// One batch to scan.
pub(super) struct Job {
    pub partition: i32,
    /// `topic/partition`, for messages.
    pub what: Arc<str>,
    pub header: BatchHeader,
    /// The whole batch: a slice of the Fetch answer it came in.
    pub raw: Bytes,
    /// The offsets to scan: a batch may begin before the partition's range or end after it.
    pub offsets: Range<i64>,
}

/// A scanned batch: what it held, and its hits (none when only counting).
pub(super) struct Done {
    pub scanned: Scanned,
    pub hits: Vec<Hit>,
}

/// A job's outcome; a panic while scanning is carried to the job's partition thread.
type Outcome = std::thread::Result<Result<Done, SearchError>>;

/// The queue: the batches waiting, the results not yet taken, and how many partition
/// threads may still queue batches.
pub(super) struct BatchQueue {
    state: Mutex<State>,
    /// Notified when a batch is queued or scanned, and when a thread stops fetching.
    changed: Condvar,
    /// The search's stop flag: batches queued after it is set are not scanned.
    stop: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<(u64, Job)>,
    done: HashMap<u64, Outcome>,
    next_id: u64,
    /// The [`Fetching`]s alive.
    fetching: usize,
}

impl BatchQueue {
    pub(super) fn new(stop: Arc<AtomicBool>) -> Arc<BatchQueue> {
        Arc::new(BatchQueue {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stop,
        })
    }

    /// What a partition thread holds while it may queue batches: threads that help wait for
    /// batches while any is held. Each is taken before the threads start.
    pub(super) fn fetching(self: &Arc<BatchQueue>) -> Fetching {
        self.state.lock().fetching += 1;
        Fetching(self.clone())
    }

    /// Queues `jobs`, in order; their tickets, for [`BatchQueue::result`].
    pub(super) fn queue(&self, jobs: Vec<Job>) -> Range<u64> {
        let count = jobs.len() as u64;
        let mut state = self.state.lock();
        let first = state.next_id;
        state.next_id += count;
        state.waiting.extend((first..).zip(jobs));
        drop(state);
        self.changed.notify_all();
        first..first + count
    }

    /// The result of the batch with ticket `id`, scanning queued batches (any partition's)
    /// with `scanner` until it is there.
    pub(super) fn result(&self, id: u64, scanner: &mut BatchScanner) -> Result<Done, SearchError> {
        let mut state = self.state.lock();
        loop {
            if let Some(outcome) = state.done.remove(&id) {
                return unwrap_outcome(outcome);
            }
            match state.waiting.pop_front() {
                Some((next, job)) => {
                    drop(state);
                    let outcome = self.scan(&job, scanner);
                    if next == id {
                        return unwrap_outcome(outcome);
                    }
                    state = self.store(next, outcome);
                }
                None => self.changed.wait(&mut state),
            }
        }
    }

    /// Scans other partitions' batches with `scanner` until no partition thread is fetching.
    pub(super) fn help(&self, scanner: &mut BatchScanner) {
        let mut state = self.state.lock();
        loop {
            match state.waiting.pop_front() {
                Some((next, job)) => {
                    drop(state);
                    let outcome = self.scan(&job, scanner);
                    state = self.store(next, outcome);
                }
                None if state.fetching == 0 || self.stop.load(Ordering::Relaxed) => return,
                None => self.changed.wait(&mut state),
            }
        }
    }

    /// Forgets the batches of `ids` that a partition thread gave up on (its search stopped or
    /// failed): queued ones are not scanned, scanned ones are dropped. One that another
    /// thread is scanning at that moment leaves its result behind, until the queue goes.
    pub(super) fn forget(&self, ids: Range<u64>) {
        let mut state = self.state.lock();
        state.waiting.retain(|(id, _)| !ids.contains(id));
        state.done.retain(|id, _| !ids.contains(id));
    }

    /// Leaves the outcome of ticket `id` for its partition thread; the lock, still held.
    fn store(&self, id: u64, outcome: Outcome) -> MutexGuard<'_, State> {
        let mut state = self.state.lock();
        state.done.insert(id, outcome);
        self.changed.notify_all();
        state
    }

    fn scan(&self, job: &Job, scanner: &mut BatchScanner) -> Outcome {
        if self.stop.load(Ordering::Relaxed) {
            return Ok(Ok(Done {
                scanned: Scanned::default(),
                hits: Vec::new(),
            }));
        }
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| scanner.scan(job)));
        // A batch scanned, the core goes to any thread waiting for it: one that has not yet
        // read its partition's answer queues that answer's batches for all to share. Without
        // this (and before the readers started behind a gate), a partition thread that
        // started while the others scanned waited up to 3 ms for a core (scheduler traces),
        // and the others ran out of batches meanwhile. It costs a system call per batch.
        std::thread::yield_now();
        outcome
    }
}

fn unwrap_outcome(outcome: Outcome) -> Result<Done, SearchError> {
    outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Held by a partition thread while it may queue batches; dropping it tells the threads
/// that help that one fewer is fetching.
pub(super) struct Fetching(Arc<BatchQueue>);

impl Drop for Fetching {
    fn drop(&mut self) {
        self.0.state.lock().fetching -= 1;
        self.0.changed.notify_all();
    }
}

/// A thread's means to scan any partition's batches: its own copy of the search options
/// (each regex copy keeps its own match cache: a shared one is a lock taken on every
/// search), decoder (decompression window and record index) and scan scratch.
pub(super) struct BatchScanner {
    options: Options,
    decoder: Decoder,
    candidates: Vec<(usize, Option<Range<usize>>)>,
}

impl BatchScanner {
    /// Makes the decompression window and the matcher's caches now (a thread calls this
    /// while its first fetch is on the way) rather than when the first batch arrives.
    pub(super) fn new(options: &Options) -> Result<BatchScanner, BatchError> {
        let mut scanner = BatchScanner {
            options: options.clone(),
            decoder: Decoder::default(),
            candidates: Vec::new(),
        };
        scanner.decoder.prepare().map_err(BatchError::Buffer)?;
        scanner.options.matcher.scan_find(b"", 0..0);
        Ok(scanner)
    }

    /// Decodes one batch, handing its records to `each` a window at a time.
    pub(super) fn decode(
        &mut self,
        header: &BatchHeader,
        raw: &[u8],
        each: impl FnMut(&[u8], &[Record]) -> Result<(), BatchError>,
    ) -> Result<(), BatchError> {
        self.decoder
            .decode(header, raw, each)
            .map_err(|cause| undecodable(header, raw, cause))
    }

    fn scan(&mut self, job: &Job) -> Result<Done, SearchError> {
        let mut hits = Vec::new();
        let scanned = scan_batch(
            &self.options,
            job.partition,
            &mut self.decoder,
            &job.header,
            &job.raw,
            job.offsets.clone(),
            &mut self.candidates,
            &mut hits,
        )
        .map_err(|cause| SearchError::Batch {
            partition: job.what.to_string(),
            cause: undecodable(&job.header, &job.raw, cause),
        })?;
        Ok(Done { scanned, hits })
    }
}

/// Why a batch does not decode: corrupt, when its CRC says so, else `cause`.
fn undecodable(header: &BatchHeader, raw: &[u8], cause: BatchError) -> BatchError {
    batch::check_crc(header, raw).err().unwrap_or(cause)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::batch::tests::{encode, Spec};
    use crate::search::{Filter, Matcher};
    use kafka_protocol::records::Compression;

    fn options(count_only: bool) -> Options {
        Options {
            topic: "logs".into(),
            matcher: Matcher::new("needle", false, false).expect("regex"),
            filter: Filter::default(),
            since_ms: None,
            until_ms: None,
            limit: None,
            count_only,
            follow: false,
        }
    }

    /// Four batches of ten records from offset 0; every third record holds the needle.
    fn jobs(partition: i32) -> Vec<Job> {
        (0..4i64)
            .map(|b| {
                let specs: Vec<Spec> = (0..10i64)
                    .map(|i| {
                        let offset = b * 10 + i;
                        let line = if offset % 3 == 0 { "a needle" } else { "hay" };
                        let value = format!(r#"{{"line":"{line} {offset}"}}"#);
                        (offset, None, Some(value.into_bytes()), vec![])
                    })
                    .collect();
                let raw = Bytes::from(encode(b * 10, &specs, Compression::Lz4));
                let (header, _) = batch::batches(&raw)
                    .next()
                    .expect("a batch")
                    .expect("decodes");
                Job {
                    partition,
                    what: "logs/0".into(),
                    header,
                    raw,
                    offsets: 5..i64::MAX,
                }
            })
            .collect()
    }

    fn hit_offsets(done: &Done) -> Vec<i64> {
        done.hits.iter().map(|h| h.offset).collect()
    }

    #[test]
    fn another_thread_scans_the_batches_and_their_results_come_back_in_order() {
        let options = options(false);
        let queue = BatchQueue::new(Arc::new(AtomicBool::new(false)));
        let fetching = queue.fetching();
        let tickets = queue.queue(jobs(0));
        let helper = {
            let (queue, options) = (queue.clone(), options.clone());
            std::thread::spawn(move || {
                let mut scanner = BatchScanner::new(&options).expect("scanner");
                queue.help(&mut scanner);
            })
        };
        // The helper takes every batch while this thread waits.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !queue.state.lock().waiting.is_empty() {
            assert!(std::time::Instant::now() < deadline, "no thread helped");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let mut scanner = BatchScanner::new(&options).expect("scanner");
        let mut offsets = Vec::new();
        let mut records = 0;
        for ticket in tickets {
            let done = queue.result(ticket, &mut scanner).expect("scanned");
            records += done.scanned.records;
            offsets.extend(hit_offsets(&done));
        }
        let expected: Vec<i64> = (5..40).filter(|o| o % 3 == 0).collect();
        assert_eq!(offsets, expected, "every match, in offset order");
        assert_eq!(records, 35, "offsets 5 to 39");
        drop(fetching);
        helper
            .join()
            .expect("the helper ends once no reader fetches");
    }

    #[test]
    fn the_waiting_reader_scans_queued_batches_itself() {
        let options = options(true);
        let queue = BatchQueue::new(Arc::new(AtomicBool::new(false)));
        let mut scanner = BatchScanner::new(&options).expect("scanner");
        let matched: u64 = queue
            .queue(jobs(0))
            .map(|t| {
                queue
                    .result(t, &mut scanner)
                    .expect("scanned")
                    .scanned
                    .matched
            })
            .sum();
        assert_eq!(matched, (5..40).filter(|o| o % 3 == 0).count() as u64);
        let state = queue.state.lock();
        assert!(state.waiting.is_empty() && state.done.is_empty());
    }

    #[test]
    fn forgotten_batches_are_not_scanned_and_stopped_searches_scan_nothing() {
        let stop = Arc::new(AtomicBool::new(false));
        let queue = BatchQueue::new(stop.clone());
        let mut scanner = BatchScanner::new(&options(false)).expect("scanner");
        let tickets = queue.queue(jobs(0));
        let first = tickets.start;
        queue.result(first, &mut scanner).expect("scanned");
        queue.forget(tickets);
        let state = queue.state.lock();
        assert!(state.waiting.is_empty() && state.done.is_empty());
        drop(state);

        stop.store(true, Ordering::Relaxed);
        let tickets = queue.queue(jobs(0));
        for ticket in tickets {
            let done = queue
                .result(ticket, &mut scanner)
                .expect("stopped, not failed");
            assert_eq!((done.scanned, done.hits.len()), (Scanned::default(), 0));
        }
        // With the search stopped, a helper does not wait for more.
        queue.help(&mut scanner);
    }

    #[test]
    fn a_corrupt_batch_is_an_error_for_its_partition() {
        let queue = BatchQueue::new(Arc::new(AtomicBool::new(false)));
        let mut scanner = BatchScanner::new(&options(false)).expect("scanner");
        let mut jobs = jobs(0);
        let mut raw = jobs[1].raw.to_vec();
        let last = raw.len() - 1;
        raw[last] ^= 0xff;
        jobs[1].raw = Bytes::from(raw);
        let tickets = queue.queue(jobs);
        assert!(queue.result(tickets.start, &mut scanner).is_ok());
        let err = queue
            .result(tickets.start + 1, &mut scanner)
            .err()
            .expect("the corrupt batch fails");
        assert!(err.to_string().contains("logs/0"), "{err}");
        assert!(err.to_string().contains("CRC"), "{err}");
    }
}
