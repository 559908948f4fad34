//! PartitionLog tests against real files in temporary directories.

use super::batch::tests::encode_batch;
use super::*;
use kafka_protocol::records::Compression;
use std::fs;

fn config(segment_bytes: u64, index_interval_bytes: u32) -> LogConfig {
    LogConfig {
        segment_bytes,
        segment_ms: i64::MAX,
        retention_ms: None,
        retention_bytes: None,
        index_interval_bytes,
    }
}

/// Appends one uncompressed batch with these record timestamps.
fn append_ts(log: &mut PartitionLog, ts: &[i64], now_ms: i64) -> AppendInfo {
    let mut bytes = encode_batch(ts, Compression::None);
    batch::validate_batches(&bytes, 1 << 20).unwrap();
    log.append(&mut bytes, now_ms).unwrap()
}

/// Appends a batch of `n` records with timestamp `ts`.
fn append_n(log: &mut PartitionLog, n: usize, ts: i64) -> AppendInfo {
    append_ts(log, &vec![ts; n], ts)
}

/// The batches a read returns, both ways (see `read_bytes`).
fn read_batches(log: &PartitionLog, offset: i64, max_bytes: usize) -> Vec<BatchHeader> {
    let Some(bytes) = read_bytes(log, offset, max_bytes) else {
        panic!("out of range");
    };
    if bytes.is_empty() {
        return Vec::new();
    }
    // Whatever the log returns must still pass producer validation: CRCs intact.
    batch::validate_batches(&bytes, usize::MAX).unwrap()
}

/// The bytes a read returns (None: out of range), checking that a read of file ranges (the
/// zero-copy path) and a read copied into memory (the copying path) cut at the same batch.
fn read_bytes(log: &PartitionLog, offset: i64, max_bytes: usize) -> Option<Vec<u8>> {
    let read = |copy_below| match log.read(offset, max_bytes, true, copy_below).unwrap() {
        ReadOutcome::Batches(records) => Some(records.to_bytes().unwrap().to_vec()),
        ReadOutcome::OffsetOutOfRange => None,
    };
    let copied = read(usize::MAX);
    assert_eq!(read(0), copied, "offset {offset}, max_bytes {max_bytes}");
    assert_eq!(read(ZERO_COPY_MIN_BYTES), copied);
    copied
}

fn segment_files(dir: &Path, ext: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(&format!(".{ext}")))
        .collect();
    names.sort();
    names
}

#[test]
fn append_assigns_offsets_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, report) = PartitionLog::open(dir.path(), config(1 << 20, 4096)).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(log.log_end_offset(), 0);
    let a = append_ts(&mut log, &[10, 11, 12], 0);
    assert_eq!((a.base_offset, a.last_offset, a.max_timestamp), (0, 2, 12));
    // Two batches in one append.
    let mut two = encode_batch(&[20, 21], Compression::None);
    two.extend(encode_batch(&[30], Compression::Gzip));
    let b = log.append(&mut two, 0).unwrap();
    assert_eq!((b.base_offset, b.last_offset, b.max_timestamp), (3, 5, 30));
    assert_eq!(log.log_end_offset(), 6);

    let all = read_batches(&log, 0, 1 << 20);
    let spans: Vec<(i64, i64)> = all
        .iter()
        .map(|h| (h.base_offset, h.last_offset()))
        .collect();
    assert_eq!(spans, vec![(0, 2), (3, 4), (5, 5)]);
    // An offset inside a batch returns that whole batch.
    assert_eq!(read_batches(&log, 4, 1 << 20)[0].base_offset, 3);
    assert_eq!(read_bytes(&log, 6, 100), Some(Vec::new()));
    assert_eq!(read_bytes(&log, 7, 100), None);
    assert_eq!(read_bytes(&log, -1, 100), None);
    assert_eq!(log.max_timestamp(), Some((30, 5)));
    assert!(log.size_bytes() > 0);
}

#[test]
fn every_offset_is_found_through_a_sparse_index() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = PartitionLog::open(dir.path(), config(1 << 20, 200)).unwrap();
    for i in 0..200 {
        append_n(&mut log, 1 + i % 4, i as i64);
    }
    let leo = log.log_end_offset();
    for offset in 0..leo {
        let first = read_batches(&log, offset, 1)[0];
        assert!(
            first.base_offset <= offset && offset <= first.last_offset(),
            "{offset}"
        );
    }
    log.flush().unwrap();
    let index_len = fs::metadata(dir.path().join("00000000000000000000.index"))
        .unwrap()
        .len();
    assert!(index_len > 0 && index_len.is_multiple_of(8));
}

#[test]
fn segments_roll_by_size_and_reads_span_them() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = PartitionLog::open(dir.path(), config(1000, 100)).unwrap();
    let mut sizes = Vec::new();
    for i in 0..30 {
        let before = log.size_bytes();
        append_n(&mut log, 3, i);
        sizes.push(log.size_bytes() - before);
    }
    let logs = segment_files(dir.path(), "log");
    assert!(logs.len() > 3, "{logs:?}");
    assert_eq!(logs[0], "00000000000000000000.log");
    for name in &logs {
        assert!(fs::metadata(dir.path().join(name)).unwrap().len() <= 1000);
    }
    // Everything, across segments, in order.
    let all = read_batches(&log, 0, usize::MAX);
    assert_eq!(all.len(), 30);
    for (i, h) in all.iter().enumerate() {
        assert_eq!(h.base_offset, 3 * i as i64);
    }
    // max_bytes is honoured with whole batches...
    let two = (sizes[0] + sizes[1]) as usize;
    assert_eq!(read_batches(&log, 0, two).len(), 2);
    assert_eq!(read_batches(&log, 0, two + 10).len(), 2);
    // ...but at least one batch is returned even if it is larger (KIP-74)...
    assert_eq!(read_batches(&log, 0, 1).len(), 1);
    assert_eq!(read_batches(&log, 0, 0).len(), 1);
    // ...unless an earlier partition of the fetch returned something: then nothing.
    for copy_below in [0, usize::MAX] {
        let read = |max_bytes| match log.read(0, max_bytes, false, copy_below).unwrap() {
            ReadOutcome::Batches(records) => records.len(),
            ReadOutcome::OffsetOutOfRange => unreachable!("offset 0 is in range"),
        };
        assert_eq!(read(1), 0);
        assert_eq!(read(two + 10), two);
    }
    // A read starting near a segment's end continues into the next one.
    let from_mid = read_batches(&log, 3 * 10 + 1, usize::MAX);
    assert_eq!(from_mid.len(), 20);
}

#[test]
fn segments_roll_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(1 << 20, 4096);
    cfg.segment_ms = 1000;
    let (mut log, _) = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    append_ts(&mut log, &[1], 10_000);
    append_ts(&mut log, &[1], 10_500);
    assert_eq!(segment_files(dir.path(), "log").len(), 1);
    append_ts(&mut log, &[1], 11_000);
    assert_eq!(
        segment_files(dir.path(), "log"),
        vec!["00000000000000000000.log", "00000000000000000002.log"]
    );
    // The new segment's clock starts at its own first append.
    append_ts(&mut log, &[1], 11_900);
    assert_eq!(segment_files(dir.path(), "log").len(), 2);
}

#[test]
fn retention_by_time_deletes_whole_expired_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(500, 100);
    cfg.retention_ms = Some(1000);
    let (mut log, _) = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    for ts in [100, 200, 300, 400, 5000, 5100, 5200] {
        append_n(&mut log, 5, ts);
    }
    let segments_before = segment_files(dir.path(), "log").len();
    assert!(segments_before >= 3);
    let report = log.apply_retention(5500).unwrap();
    assert!(report.segments_deleted >= 1, "{report}");
    assert_eq!(report.log_start_offset, log.log_start_offset());
    // Everything older than the retention is gone; newer data stays readable.
    assert!(log.log_start_offset() > 0);
    assert_eq!(
        log.offset_for_timestamp(5000).unwrap().map(|(o, _)| o),
        Some(20)
    );
    assert_eq!(read_bytes(&log, 0, 100), None);
    let first = read_batches(&log, log.log_start_offset(), 1);
    assert!(first[0].max_timestamp >= 5000 || first[0].base_offset < 20);
    assert!(segment_files(dir.path(), "deleted").is_empty());

    // When even the active segment is expired it is rolled and deleted too, leaving an empty
    // active segment at the log end.
    let leo = log.log_end_offset();
    let report = log.apply_retention(100_000).unwrap();
    assert!(report.segments_deleted >= 1);
    assert_eq!(log.log_start_offset(), leo);
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(log.size_bytes(), 0);
    assert_eq!(read_bytes(&log, leo, 100), Some(Vec::new()));
    assert_eq!(segment_files(dir.path(), "log").len(), 1);
    // An empty active segment is not rolled again.
    assert_eq!(log.apply_retention(200_000).unwrap().segments_deleted, 0);
    assert_eq!(append_n(&mut log, 1, 300_000).base_offset, leo);

    drop(log);
    let (log, report) = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(log.log_start_offset(), leo);
    assert_eq!(log.log_end_offset(), leo + 1);
}

#[test]
fn retention_by_size_keeps_at_least_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(400, 100);
    cfg.retention_bytes = Some(1000);
    let (mut log, _) = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    for i in 0..40 {
        append_n(&mut log, 2, i);
    }
    let before = log.size_bytes();
    let report = log.apply_retention(0).unwrap();
    assert!(report.segments_deleted > 0);
    assert_eq!(log.size_bytes(), before - report.bytes_deleted);
    assert!(log.size_bytes() >= 1000);
    // Deleting one more segment would go below the limit.
    assert_eq!(log.apply_retention(0).unwrap().segments_deleted, 0);
    let oldest = log.segments[0].size;
    assert!(log.size_bytes() - oldest < 1000);
    assert!(read_batches(&log, log.log_start_offset(), usize::MAX).len() > 1);
}

#[test]
fn torn_tail_is_truncated_and_the_log_stays_appendable() {
    for (case, cut) in [1usize, 7, 12, 30, 61, 62, 90, usize::MAX]
        .into_iter()
        .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = PartitionLog::open(dir.path(), config(1 << 20, 100)).unwrap();
        for i in 0..10 {
            append_n(&mut log, 3, i);
        }
        let good_size = log.size_bytes();
        let last = append_n(&mut log, 4, 99);
        let full_size = log.size_bytes();
        drop(log);
        let path = dir.path().join("00000000000000000000.log");
        let torn_len = if cut == usize::MAX {
            // Whole last batch intact, followed by garbage.
            let mut data = fs::read(&path).unwrap();
            data.extend_from_slice(&[0xAB; 100]);
            fs::write(&path, &data).unwrap();
            full_size
        } else {
            let torn = good_size + cut as u64;
            fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(torn)
                .unwrap();
            good_size
        };

        let (mut log, report) = PartitionLog::open(dir.path(), config(1 << 20, 100)).unwrap();
        assert!(!report.is_clean(), "case {case}");
        assert!(report.to_string().contains("truncated"), "{report}");
        assert!(matches!(
            report.actions[0],
            RecoveryAction::TruncatedTail { position, .. } if position == torn_len
        ));
        assert_eq!(fs::metadata(&path).unwrap().len(), torn_len);
        let expected_leo = if cut == usize::MAX {
            last.last_offset + 1
        } else {
            30
        };
        assert_eq!(log.log_end_offset(), expected_leo, "case {case}");
        let next = append_n(&mut log, 2, 100);
        assert_eq!(next.base_offset, expected_leo);
        let all = read_batches(&log, 0, usize::MAX);
        assert_eq!(all.last().unwrap().base_offset, expected_leo);
        drop(log);
        let (_, report) = PartitionLog::open(dir.path(), config(1 << 20, 100)).unwrap();
        assert!(report.is_clean(), "case {case}: {report}");
    }
}

#[test]
fn flipped_byte_in_last_batch_fails_crc_and_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = PartitionLog::open(dir.path(), config(1 << 20, 100)).unwrap();
    append_n(&mut log, 3, 1);
    let good = log.size_bytes();
    append_n(&mut log, 3, 2);
    drop(log);
    let path = dir.path().join("00000000000000000000.log");
    let mut data = fs::read(&path).unwrap();
    let last = data.len() - 3;
    data[last] ^= 0x55;
    fs::write(&path, &data).unwrap();
    let (log, report) = PartitionLog::open(dir.path(), config(1 << 20, 100)).unwrap();
    assert!(report.to_string().contains("CRC"), "{report}");
    assert_eq!(log.size_bytes(), good);
    assert_eq!(log.log_end_offset(), 3);
}

/// A log with several segments, each with several index entries; returns the dir.
fn multi_segment_log() -> (tempfile::TempDir, LogConfig, Vec<i64>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(2000, 150);
    let (mut log, _) = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    let mut bases = Vec::new();
    for i in 0..60 {
        bases.push(append_ts(&mut log, &[i * 10, i * 10 + 5], i).base_offset);
    }
    log.flush().unwrap();
    assert!(segment_files(dir.path(), "log").len() >= 3);
    (dir, cfg, bases)
}

fn assert_all_offsets_readable(log: &PartitionLog) {
    for offset in 0..log.log_end_offset() {
        let h = read_batches(log, offset, 1)[0];
        assert!(h.base_offset <= offset && offset <= h.last_offset());
    }
    // Batch i has records at i*10 and i*10+5, offsets 2i and 2i+1.
    assert_eq!(log.offset_for_timestamp(101).unwrap(), Some((21, 105)));
    assert_eq!(log.offset_for_timestamp(400).unwrap(), Some((80, 400)));
}

#[test]
fn missing_truncated_or_corrupt_indexes_are_rebuilt() {
    let (dir, cfg, _) = multi_segment_log();
    let (log, report) = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_all_offsets_readable(&log);
    let max_before = log.max_timestamp();
    let indexes_before: Vec<Vec<u8>> = segment_files(dir.path(), "index")
        .iter()
        .map(|n| fs::read(dir.path().join(n)).unwrap())
        .collect();
    drop(log);

    let first = dir.path().join("00000000000000000000.index");
    let index_names = segment_files(dir.path(), "index");
    let second = dir.path().join(&index_names[1]);
    let second_time = second.with_extension("timeindex");
    fs::remove_file(&first).unwrap();
    let len = fs::metadata(&second).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&second)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    // Non-monotonic time index entries.
    let mut t = fs::read(&second_time).unwrap();
    assert!(t.len() >= 24);
    t[..12].copy_from_slice(&[0x7f; 12]);
    fs::write(&second_time, &t).unwrap();

    let (log, report) = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    let rebuilt = report
        .actions
        .iter()
        .filter(|a| matches!(a, RecoveryAction::RebuiltIndex { .. }))
        .count();
    assert_eq!(rebuilt, 2, "{report}");
    assert!(report.to_string().contains("missing"));
    assert_all_offsets_readable(&log);
    assert_eq!(log.max_timestamp(), max_before);
    let indexes_after: Vec<Vec<u8>> = segment_files(dir.path(), "index")
        .iter()
        .map(|n| fs::read(dir.path().join(n)).unwrap())
        .collect();
    assert_eq!(indexes_after, indexes_before);
    drop(log);

    // An index entry pointing past the end of its log.
    let mut idx = fs::read(&first).unwrap();
    let n = idx.len();
    idx[n - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
    fs::write(&first, &idx).unwrap();
    let (log, report) = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    assert!(report.to_string().contains("past the end"), "{report}");
    assert_all_offsets_readable(&log);
}

#[test]
fn last_segment_index_garbage_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(1 << 20, 100);
    let (mut log, _) = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    for i in 0..20 {
        append_n(&mut log, 2, i);
    }
    drop(log);
    fs::write(dir.path().join("00000000000000000000.index"), [1, 2, 3]).unwrap();
    let (log, report) = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    assert!(
        matches!(report.actions[..], [RecoveryAction::RebuiltIndex { .. }]),
        "{report}"
    );
    assert_eq!(read_batches(&log, 17, 1)[0].base_offset, 16);
    assert_eq!(
        fs::metadata(dir.path().join("00000000000000000000.index"))
            .unwrap()
            .len()
            % 8,
        0
    );
}

#[test]
fn append_after_reopen_continues_offsets() {
    let (dir, cfg, bases) = multi_segment_log();
    let (mut log, report) = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(log.log_end_offset(), bases.last().unwrap() + 2);
    let info = append_n(&mut log, 3, 1000);
    assert_eq!(info.base_offset, 120);
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(log.max_timestamp(), Some((1000, 122)));
    let headers = log.recent_batch_headers().unwrap();
    assert_eq!(headers.last().unwrap().base_offset, 120);
    assert_eq!(headers.last().unwrap().records_count, 3);
}

#[test]
fn failed_write_leaves_the_log_intact() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(1 << 20, 100);
    let (mut log, _) = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    append_n(&mut log, 3, 1);
    let size = log.size_bytes();
    log.active_mut().fail_next_write_after = Some(40);
    let mut bytes = encode_batch(&[5, 6], Compression::None);
    let err = log.append(&mut bytes, 2).unwrap_err();
    assert!(matches!(err, LogError::Io { op: "append", .. }), "{err}");
    let path = dir.path().join("00000000000000000000.log");
    assert_eq!(fs::metadata(&path).unwrap().len(), size);
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(read_batches(&log, 0, usize::MAX).len(), 1);
    // The same bytes can be retried and get the same offsets.
    let info = log.append(&mut bytes, 3).unwrap();
    assert_eq!(info.base_offset, 3);
    drop(log);
    let (log, report) = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(log.log_end_offset(), 5);
}

#[test]
fn offset_for_timestamp_is_exact_inside_compressed_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = PartitionLog::open(dir.path(), config(600, 64)).unwrap();
    let mut plain = encode_batch(&[100, 110, 120], Compression::None);
    log.append(&mut plain, 0).unwrap(); // offsets 0..=2
    let mut gz = encode_batch(&[200, 250, 230, 300], Compression::Gzip);
    log.append(&mut gz, 0).unwrap(); // 3..=6
    let mut lz = encode_batch(&[400, 410, 420, 430, 440], Compression::Lz4);
    log.append(&mut lz, 0).unwrap(); // 7..=11
    for i in 0..10 {
        append_ts(&mut log, &[1000 + i * 10, 1005 + i * 10], 0); // 12..=31
    }
    assert!(segment_files(dir.path(), "log").len() > 1);

    let f = |ts| log.offset_for_timestamp(ts).unwrap();
    assert_eq!(f(i64::MIN), Some((0, 100)));
    assert_eq!(f(105), Some((1, 110)));
    assert_eq!(f(121), Some((3, 200)));
    assert_eq!(f(240), Some((4, 250)));
    assert_eq!(f(251), Some((6, 300)));
    assert_eq!(f(415), Some((9, 420)));
    assert_eq!(f(440), Some((11, 440)));
    assert_eq!(f(441), Some((12, 1000)));
    assert_eq!(f(1052), Some((23, 1055)));
    assert_eq!(f(1095), Some((31, 1095)));
    assert_eq!(f(1096), None);
    assert_eq!(log.max_timestamp(), Some((1095, 31)));

    // Same answers after a restart (indexes loaded from disk, not rebuilt).
    drop(log);
    let (log, report) = PartitionLog::open(dir.path(), config(600, 64)).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(log.offset_for_timestamp(251).unwrap(), Some((6, 300)));
    assert_eq!(log.offset_for_timestamp(1052).unwrap(), Some((23, 1055)));
    assert_eq!(log.max_timestamp(), Some((1095, 31)));
}

/// The lookup reads a batch's records from the file only as far as it needs; a file that
/// cannot give them (here cut short under the open log) is an error, not a batch to skip.
#[test]
fn offset_for_timestamp_reads_records_from_the_file_and_reports_failed_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = PartitionLog::open(dir.path(), config(64 << 20, 4096)).unwrap();
    let timestamps: Vec<i64> = (0..20_000).map(|i| 1000 + i).collect();
    let mut lz = encode_batch(&timestamps, Compression::Lz4);
    log.append(&mut lz, 0).unwrap();
    assert_eq!(log.offset_for_timestamp(1003).unwrap(), Some((3, 1003)));
    assert_eq!(
        log.offset_for_timestamp(20_999).unwrap(),
        Some((19_999, 20_999))
    );

    let path = dir.path().join(&segment_files(dir.path(), "log")[0]);
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(200).unwrap();
    let err = log.offset_for_timestamp(20_999).unwrap_err();
    assert!(err.to_string().contains("read segment"), "{err}");
}

#[test]
fn leftovers_and_unknown_files_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(1 << 20, 100);
    let (mut log, _) = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    append_n(&mut log, 2, 1);
    drop(log);
    let d = dir.path();
    fs::write(d.join("00000000000000000000.log.deleted"), b"old").unwrap();
    fs::write(d.join("00000000000000000000.index.tmp"), b"x").unwrap();
    fs::write(d.join("00000000000000000099.index"), b"").unwrap();
    fs::write(d.join("notes.txt"), b"hello").unwrap();
    let (log, report) = PartitionLog::open(d, cfg.clone()).unwrap();
    assert_eq!(report.actions.len(), 4, "{report}");
    assert!(!report.is_clean());
    assert!(!d.join("00000000000000000000.log.deleted").exists());
    assert!(!d.join("00000000000000000099.index").exists());
    assert!(d.join("notes.txt").exists());
    assert_eq!(log.log_end_offset(), 2);
    drop(log);

    // A stray empty segment at the end is simply the (empty) active segment.
    fs::write(d.join("00000000000000000002.log"), b"").unwrap();
    let (mut log, report) = PartitionLog::open(d, cfg.clone()).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(append_n(&mut log, 1, 5).base_offset, 2);
    assert_eq!(read_batches(&log, 0, usize::MAX).len(), 2);
}

#[test]
fn flush_clears_dirty_and_delete_removes_the_directory() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("topic-0");
    let (mut log, _) = PartitionLog::open(&dir, config(300, 100)).unwrap();
    assert!(dir.is_dir());
    for i in 0..10 {
        append_n(&mut log, 2, i);
    }
    assert!(log.is_dirty());
    log.flush().unwrap();
    assert!(!log.is_dirty());
    append_n(&mut log, 1, 11);
    assert!(log.is_dirty());
    log.delete().unwrap();
    assert!(!dir.exists());
}

#[test]
fn recent_batch_headers_after_roll_come_from_the_previous_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = PartitionLog::open(dir.path(), config(1 << 20, 100)).unwrap();
    assert!(log.recent_batch_headers().unwrap().is_empty());
    append_n(&mut log, 2, 1);
    append_n(&mut log, 3, 2);
    log.roll(3).unwrap();
    assert!(log.active().is_empty());
    let headers = log.recent_batch_headers().unwrap();
    assert_eq!(
        headers.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
        vec![0, 2]
    );
    assert_eq!(headers[1].last_offset(), 4);
}

#[test]
fn file_ranges_outlive_the_segment_files_retention_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(1024, 100);
    cfg.retention_ms = Some(1000);
    let (mut log, _) = PartitionLog::open(dir.path(), cfg).unwrap();
    for i in 0..40 {
        append_n(&mut log, 3, i);
    }
    let ReadOutcome::Batches(records) = log.read(0, usize::MAX, true, 0).unwrap() else {
        panic!("out of range");
    };
    assert!(records.chunks().len() > 1, "{records:?}");
    let expected = read_bytes(&log, 0, usize::MAX).unwrap();
    // A response is still being sent while retention deletes every segment it reads from.
    let leo = log.log_end_offset();
    assert!(log.apply_retention(100_000).unwrap().segments_deleted > 1);
    assert_eq!(log.log_start_offset(), leo);
    assert_eq!(records.to_bytes().unwrap().to_vec(), expected);
}

#[test]
fn a_file_range_ends_where_the_log_ended_when_it_was_read() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = PartitionLog::open(dir.path(), config(1 << 20, 4096)).unwrap();
    append_n(&mut log, 200, 1);
    let before = read_bytes(&log, 0, usize::MAX).unwrap();
    let ReadOutcome::Batches(records) = log.read(0, usize::MAX, true, 0).unwrap() else {
        panic!("out of range");
    };
    // Appends while the response is on its way do not make it longer.
    append_n(&mut log, 200, 2);
    assert_eq!(records.to_bytes().unwrap().to_vec(), before);
    assert_eq!(read_batches(&log, 0, usize::MAX).len(), 2);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever the batch sizes (kcat's tiny one-record batches or batches larger than a
    /// segment), segment size, index density and limits, a zero-copy read (file ranges found
    /// from the offset index and batch headers) cuts exactly where the copying read (one
    /// pread, cut by parsing what it read) does: KIP-74's first batch over the limit, a limit
    /// inside a segment's last batch, reads spanning segments, offsets out of range.
    #[test]
    fn zero_copy_reads_cut_where_copied_reads_do(
        batches in proptest::collection::vec(
            proptest::collection::vec(
                proptest::prop_oneof![4 => 0usize..40, 1 => 0usize..3000],
                1..4,
            ),
            1..200,
        ),
        segment_bytes in 1024u64..30_000,
        index_interval in proptest::sample::select(vec![1u32, 100, 4096, 1 << 20]),
        reads in proptest::collection::vec((0i64..600, 0usize..40_000), 1..16),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) =
            PartitionLog::open(dir.path(), config(segment_bytes, index_interval)).unwrap();
        for (i, sizes) in batches.iter().enumerate() {
            let records: Vec<(i64, String)> =
                sizes.iter().map(|&n| (i as i64, "v".repeat(n))).collect();
            let mut bytes = test_batches::encode(&records, None, Compression::None);
            log.append(&mut bytes, 0).unwrap();
        }
        let leo = log.log_end_offset();
        for (offset, max_bytes) in reads {
            let offset = offset % (leo + 2);
            let Some(read) = read_bytes(&log, offset, max_bytes) else {
                continue;
            };
            // Limits exactly at, just before and just after a batch boundary.
            for exact in [read.len().saturating_sub(1), read.len(), read.len() + 1] {
                read_bytes(&log, offset, exact);
            }
        }
    }
}
