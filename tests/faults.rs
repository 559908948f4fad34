//! Faults: what a log pipeline must survive without losing what it acknowledged.
//!
//! - SIGKILL of the broker in the middle of an acks=all stream from a real client (five
//!   rounds, each at a random moment): every acknowledged record is stored after the restart.
//! - Damaged logs (segments truncated at random byte offsets, garbage appended, indexes deleted
//!   or overwritten): the broker starts, keeps every intact batch, repairs the rest and logs it.
//! - A full disk (a size-limited tmpfs): Produce gets KAFKA_STORAGE_ERROR, nothing stored is
//!   damaged, and writes resume when space returns.
//!
//! Random choices print their seed; `RILL_FAULT_SEED=N` replays one.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{kcat_read_partition, python, wire, Background, Broker};
use kafka_protocol::records::Compression;

const KCAT_TIMEOUT: Duration = Duration::from_secs(60);
/// Kafka's KAFKA_STORAGE_ERROR.
const KAFKA_STORAGE_ERROR: i16 = 56;

fn rng(test: &str) -> fastrand::Rng {
    let seed = std::env::var("RILL_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("{test}: seed {seed} (RILL_FAULT_SEED={seed} replays it)");
    fastrand::Rng::with_seed(seed)
}

/// Every record of `topic`/`partition` from the beginning to the end: offset → value.
fn stored(broker: &Broker, topic: &str, partition: i32) -> BTreeMap<i64, String> {
    let run = kcat_read_partition(&broker.addr(), topic, partition, "%o %s\n", KCAT_TIMEOUT);
    assert!(
        run.success(),
        "{}\n{}",
        run.describe(),
        broker.log_excerpt()
    );
    run.stdout
        .lines()
        .map(|line| {
            let (offset, value) = line.split_once(' ').expect("offset and value");
            (offset.parse().expect("offset"), value.to_string())
        })
        .collect()
}

// ---- SIGKILL under an acks=all stream -----------------------------------------------------

#[test]
fn sigkill_during_acks_all_stream_loses_nothing_acknowledged() {
    let mut rng = rng("sigkill_during_acks_all_stream");
    let mut broker = Broker::start();
    let topic = "stream";
    wire::Conn::connect(&broker.addr()).create_topic(topic, 3);
    let acked_path = broker.scratch().join("acked.txt");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/acks_all_stream.py");
    let mut total = 0;
    for round in 0..5 {
        let prefix = format!("round{round}");
        let producer = Background::spawn(
            Command::new(python())
                .arg("-u")
                .arg(&script)
                .arg(broker.addr())
                .arg(topic)
                .arg(&acked_path)
                .arg(&prefix),
        );
        // Kill mid-stream: after the stream is flowing, at a random moment.
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked(&acked_path)
            .iter()
            .filter(|(_, _, v)| v.starts_with(&format!("{prefix}-")))
            .count()
            < 200
        {
            assert!(
                Instant::now() < deadline,
                "round {round}: the producer got no acknowledgements\n{}",
                broker.log_excerpt()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(rng.u64(0..1500)));
        broker.kill_9();
        drop(producer);
        broker.restart();

        let acked = acked(&acked_path);
        let mut partitions: BTreeMap<i32, BTreeMap<i64, String>> = BTreeMap::new();
        for p in 0..3 {
            partitions.insert(p, stored(&broker, topic, p));
        }
        for (partition, offset, value) in &acked {
            let got = partitions[partition].get(offset);
            assert_eq!(
                got,
                Some(value),
                "round {round}: acknowledged {value} at {topic}-{partition}@{offset} is not stored"
            );
        }
        eprintln!(
            "round {round}: {} acknowledged records before the kill, all stored",
            acked.len() - total
        );
        total = acked.len();
    }
}

/// (partition, offset, value) of every acknowledged record in the file.
fn acked(path: &Path) -> Vec<(i32, i64, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        // A line being written when the producer was killed has no newline yet: not counted.
        .filter_map(|line| {
            let mut parts = line.splitn(3, ' ');
            let p = parts.next()?.parse().ok()?;
            let o = parts.next()?.parse().ok()?;
            let v = parts.next()?;
            Some((p, o, v.to_string()))
        })
        .collect()
}

// ---- damaged logs --------------------------------------------------------------------------

const RECORDS_PER_BATCH: i64 = 5;
const BATCHES: i64 = 80;

/// A partition written in known batches (batch j holds offsets 5j..5j+4 with values
/// `b{j}-r{i}`), over several small segments; the pristine files are kept to damage copies.
struct DamageLab {
    broker: Broker,
    partition_dir: PathBuf,
    pristine: PathBuf,
}

/// One batch as laid out in a segment file.
#[derive(Debug, Clone, Copy)]
struct BatchSpan {
    start: u64,
    end: u64,
    first_offset: i64,
    last_offset: i64,
}

impl DamageLab {
    fn new() -> DamageLab {
        let mut broker = Broker::start_with_config(
            "[broker.log]\nsegment_bytes = 4096\nindex_interval_bytes = 256\n",
        );
        let mut conn = wire::Conn::connect(&broker.addr());
        conn.create_topic("damage", 1);
        for j in 0..BATCHES {
            let values: Vec<String> = (0..RECORDS_PER_BATCH)
                .map(|i| format!("b{j}-r{i}"))
                .collect();
            let refs: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
            let resp = conn.produce(
                7,
                "damage",
                0,
                -1,
                wire::batch(&refs, Compression::None, wire::now_ms()),
            );
            assert_eq!(resp.error_code, 0, "produce batch {j}");
            assert_eq!(resp.base_offset, j * RECORDS_PER_BATCH);
        }
        broker.stop();
        let partition_dir = broker.data_dir().join("topics").join("damage-0");
        let pristine = broker.scratch().join("pristine");
        copy_dir(&partition_dir, &pristine);
        let lab = DamageLab {
            broker,
            partition_dir,
            pristine,
        };
        assert!(
            lab.segments().len() >= 3,
            "want several segments: {:?}",
            lab.segments()
        );
        lab
    }

    /// The `.log` files, oldest first.
    fn segments(&self) -> Vec<PathBuf> {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.pristine)
            .expect("list pristine")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        logs
    }

    /// The batches of a pristine segment, from their headers.
    fn batches(&self, segment: &Path) -> Vec<BatchSpan> {
        let bytes = std::fs::read(segment).expect("read segment");
        let mut spans = Vec::new();
        let mut pos = 0usize;
        while pos + 27 <= bytes.len() {
            let base = i64::from_be_bytes(bytes[pos..pos + 8].try_into().unwrap());
            let len = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
            let delta = i32::from_be_bytes(bytes[pos + 23..pos + 27].try_into().unwrap());
            let end = pos + 12 + len;
            spans.push(BatchSpan {
                start: pos as u64,
                end: end as u64,
                first_offset: base,
                last_offset: base + i64::from(delta),
            });
            pos = end;
        }
        assert_eq!(pos, bytes.len(), "pristine segment parses to its end");
        spans
    }

    /// Restores the pristine files, applies `damage` to the partition directory, starts the
    /// broker, and checks that exactly the `expected` offsets are served, with their values.
    /// Returns the broker log of this start.
    fn check(&mut self, what: &str, expected: &[i64], damage: impl FnOnce(&Path)) -> String {
        std::fs::remove_dir_all(&self.partition_dir).expect("remove partition dir");
        copy_dir(&self.pristine, &self.partition_dir);
        damage(&self.partition_dir);
        let log_start = self.broker.log_len() as usize;
        self.broker.restart();
        self.broker.assert_healthy(what);
        let got = stored(&self.broker, "damage", 0);
        let want: BTreeMap<i64, String> = expected
            .iter()
            .map(|&o| {
                (
                    o,
                    format!("b{}-r{}", o / RECORDS_PER_BATCH, o % RECORDS_PER_BATCH),
                )
            })
            .collect();
        let missing: Vec<_> = want.keys().filter(|o| !got.contains_key(o)).collect();
        let extra: Vec<_> = got.keys().filter(|o| !want.contains_key(o)).collect();
        assert!(
            missing.is_empty() && extra.is_empty() && got == want,
            "{what}: missing offsets {missing:?}, unexpected offsets {extra:?}\n{}",
            self.broker.log_excerpt()
        );
        // The repaired log takes new writes after its last batch.
        let next = expected.last().map_or(0, |o| o + 1);
        let mut conn = wire::Conn::connect(&self.broker.addr());
        let resp = conn.produce(
            7,
            "damage",
            0,
            -1,
            wire::batch(&[b"after"], Compression::None, wire::now_ms()),
        );
        assert_eq!(resp.error_code, 0, "{what}: produce after repair");
        assert!(
            resp.base_offset >= next,
            "{what}: new offset {} < {next}",
            resp.base_offset
        );
        self.broker.stop();
        let log = self.broker.log()[log_start..].to_string();
        eprintln!(
            "{what}: {} records kept; broker said: {}",
            got.len(),
            repairs(&log)
        );
        log
    }

    fn all_offsets(&self) -> Vec<i64> {
        (0..BATCHES * RECORDS_PER_BATCH).collect()
    }

    /// Every offset except those of `segment`'s batches at or after byte `cut`.
    fn offsets_without_tail(&self, segment: &Path, cut: u64) -> Vec<i64> {
        let lost: Vec<BatchSpan> = self
            .batches(segment)
            .into_iter()
            .filter(|b| b.end > cut)
            .collect();
        self.all_offsets()
            .into_iter()
            .filter(|o| {
                !lost
                    .iter()
                    .any(|b| (b.first_offset..=b.last_offset).contains(o))
            })
            .collect()
    }
}

/// The recovery lines of a broker log, for the test output.
fn repairs(log: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("recovery")).collect();
    if lines.is_empty() {
        "nothing to repair".into()
    } else {
        lines.join(" | ")
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("list dir") {
        let entry = entry.expect("dir entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy file");
    }
}

fn in_dir(dir: &Path, pristine_file: &Path) -> PathBuf {
    dir.join(pristine_file.file_name().expect("file name"))
}

fn truncate(path: &Path, len: u64) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    file.set_len(len).expect("truncate");
}

fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open");
    file.write_all(bytes).expect("append");
}

#[test]
fn damaged_segments_are_repaired_keeping_every_intact_batch() {
    let mut rng = rng("damaged_segments");
    let mut lab = DamageLab::new();
    let segments = lab.segments();
    let last = segments.last().expect("segments").clone();
    let middle = segments[segments.len() / 2].clone();
    let mut junk = wire::Junk::new(rng.u64(1..));

    // The last segment (the one a crash tears) cut at random byte offsets.
    let last_len = std::fs::metadata(&last).expect("stat").len();
    for _ in 0..3 {
        let cut = rng.u64(1..last_len);
        let expected = lab.offsets_without_tail(&last, cut);
        let log = lab.check(
            &format!("last segment cut at byte {cut}"),
            &expected,
            |dir| truncate(&in_dir(dir, &last), cut),
        );
        let torn = lab
            .batches(&last)
            .iter()
            .any(|b| b.start < cut && b.end > cut);
        if torn {
            assert!(
                log.contains("truncated"),
                "a torn batch is reported:\n{log}"
            );
        }
    }

    // An older segment cut in the middle: the batches after the cut are gone (nothing else
    // holds them); everything before and every later segment is kept, and readers cross the gap.
    let middle_len = std::fs::metadata(&middle).expect("stat").len();
    let cut = rng.u64(1..middle_len);
    let expected = lab.offsets_without_tail(&middle, cut);
    let log = lab.check(
        &format!("older segment cut at byte {cut}"),
        &expected,
        |dir| truncate(&in_dir(dir, &middle), cut),
    );
    assert!(log.contains("recovery"), "the repair is reported:\n{log}");

    // Garbage after the last batch of the last and of an older segment: cut off, nothing lost.
    for segment in [&last, &middle] {
        let garbage = junk.bytes(rng.usize(1..3000));
        let all = lab.all_offsets();
        let log = lab.check(
            &format!(
                "{} bytes of garbage after {}",
                garbage.len(),
                segment.display()
            ),
            &all,
            |dir| append(&in_dir(dir, segment), &garbage),
        );
        assert!(log.contains("truncated"), "the garbage is reported:\n{log}");
    }

    // Indexes deleted: rebuilt from the segments, nothing lost.
    let all = lab.all_offsets();
    let log = lab.check("every index deleted", &all, |dir| {
        for entry in std::fs::read_dir(dir).expect("list") {
            let path = entry.expect("entry").path();
            if path
                .extension()
                .is_some_and(|e| e == "index" || e == "timeindex")
            {
                std::fs::remove_file(&path).expect("remove index");
            }
        }
    });
    assert!(
        log.contains("rebuilt index"),
        "the rebuild is reported:\n{log}"
    );

    // Indexes overwritten with junk (same size, and longer): rebuilt, nothing lost.
    let log = lab.check("indexes overwritten with junk", &all, |dir| {
        for segment in &segments {
            for ext in ["index", "timeindex"] {
                let path = in_dir(dir, &segment.with_extension(ext));
                let len = std::fs::metadata(&path)
                    .map(|m| m.len() as usize)
                    .unwrap_or(0);
                std::fs::write(&path, junk.bytes(len.max(12) + 12 * rng.usize(0..3)))
                    .expect("overwrite index");
            }
        }
    });
    assert!(
        log.contains("rebuilt index"),
        "the rebuild is reported:\n{log}"
    );
}

// ---- full disk -----------------------------------------------------------------------------

/// A size-limited tmpfs, unmounted on drop. Mounting needs root (CAP_SYS_ADMIN): the test
/// command runs as root in CI; anywhere else this test fails and says why rather than skip.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("rill-tmpfs-")
            .tempdir()
            .expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a {size} tmpfs for the full-disk test (needs root, as the test \
             command runs in CI): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes zeros until the filesystem is full; returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("create filler");
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if file.write_all(&chunk).is_err() {
            break;
        }
    }
    // What is left is smaller than a chunk: take it byte-wise in small writes.
    let small = [0u8; 512];
    while file.write_all(&small).is_ok() {}
    path
}

/// Produces `n` batches of ten 1000-byte records; returns how many were acknowledged (their
/// base offsets are added to `acked`) and the error codes of the others.
fn produce_kb_batches(conn: &mut wire::Conn, n: usize, acked: &mut Vec<i64>) -> (usize, Vec<i16>) {
    let value = vec![b'x'; 1000];
    let values: Vec<&[u8]> = vec![&value; 10];
    let mut errors = Vec::new();
    let mut ok = 0;
    for _ in 0..n {
        let batch = wire::batch(&values, Compression::None, wire::now_ms());
        let resp = conn.produce(7, "full", 0, -1, batch);
        if resp.error_code == 0 {
            acked.push(resp.base_offset);
            ok += 1;
        } else {
            errors.push(resp.error_code);
        }
    }
    (ok, errors)
}

#[test]
fn full_disk_gives_storage_error_and_writes_resume_when_space_returns() {
    let tmpfs = Tmpfs::mount("8m");
    let data = tmpfs.path().join("data");
    let mut broker = Broker::start_with_setup("", |dir| {
        std::fs::remove_dir(dir).expect("remove data dir");
        std::fs::create_dir(&data).expect("create data dir on tmpfs");
        std::os::unix::fs::symlink(&data, dir).expect("symlink data dir to tmpfs");
    });
    let mut conn = wire::Conn::connect(&broker.addr());
    conn.create_topic("full", 1);
    let mut acked = Vec::new();
    let (ok, errors) = produce_kb_batches(&mut conn, 100, &mut acked);
    assert_eq!(
        (ok, errors.len()),
        (100, 0),
        "produce before the disk fills: {errors:?}"
    );

    let filler = fill(tmpfs.path());
    let (_, errors) = produce_kb_batches(&mut conn, 50, &mut acked);
    assert!(
        !errors.is_empty() && errors.iter().all(|&e| e == KAFKA_STORAGE_ERROR),
        "a full disk must answer KAFKA_STORAGE_ERROR ({KAFKA_STORAGE_ERROR}), got {errors:?}\n{}",
        broker.log_excerpt()
    );
    broker.assert_healthy("writes to a full disk");
    let before = stored(&broker, "full", 0);
    assert_eq!(
        before.len(),
        acked.len() * 10,
        "every acknowledged record is readable while the disk is full"
    );

    std::fs::remove_file(&filler).expect("remove filler");
    let (ok, errors) = produce_kb_batches(&mut conn, 50, &mut acked);
    assert_eq!(
        (ok, errors.len()),
        (50, 0),
        "writes resume when space returns: {errors:?}"
    );
    let after = stored(&broker, "full", 0);
    assert_eq!(
        after.len(),
        acked.len() * 10,
        "every acknowledged record stored"
    );
    // No holes or leftovers of the failed writes: offsets are contiguous from 0.
    assert!(
        after.keys().copied().eq(0..after.len() as i64),
        "offsets contiguous"
    );

    // And the files on disk are sound: a SIGKILL and restart recovers all of it.
    broker.kill_9();
    broker.restart();
    assert_eq!(stored(&broker, "full", 0), after, "after a restart");
    drop(broker);
}
