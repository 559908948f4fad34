//! `rill up --demo`: realistic traffic for an empty machine, through the real pipeline.
//!
//! The generators write ordinary log files (an HTTP service, a noisy worker, a cron job) that
//! the embedded agent tails like any other file, so the demo exercises tailing, level
//! detection, publishing and storage instead of bypassing them. Each source speaks a different
//! format (logfmt, JSON, plain text with a level word), as real fleets do. A consumer group
//! (`demo-archiver`) reads the logs topic slower than lines arrive, so the Lag view has a
//! group falling behind.
//!
//! Files are rotated (rename to `.1`) at [`ROTATE_BYTES`], so a demo left running for days
//! keeps at most twice that per source on disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

/// The consumer group that falls behind.
pub const SLOW_GROUP: &str = "demo-archiver";
/// Records per second the slow group processes: below what the generators write.
const SLOW_GROUP_RATE: u32 = 15;
/// A demo file is renamed to `<name>.1` (replacing the previous one) at this size.
const ROTATE_BYTES: u64 = 8 * 1024 * 1024;
/// The generators write in small bursts at this period.
const TICK: Duration = Duration::from_millis(100);

/// The files the generators write, inside the demo directory.
pub const FILES: [&str; 3] = ["http.log", "worker.log", "cron.log"];

/// A running demo: generator and slow-consumer threads. Dropping it without
/// [`Demo::stop`] leaves the threads running until the process exits.
pub struct Demo {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Demo {
    /// Starts writing demo logs under `dir` and a slow consumer group on `topic` at
    /// `brokers`. Fails only if the directory cannot be created.
    pub fn start(dir: &Path, brokers: &str, topic: &str) -> io::Result<Demo> {
        std::fs::create_dir_all(dir)?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();

        let generator = Generator::open(dir)?;
        let flag = Arc::clone(&stop);
        threads.push(
            std::thread::Builder::new()
                .name("rill-demo-logs".into())
                .spawn(move || generator.run(&flag))?,
        );

        let flag = Arc::clone(&stop);
        let (brokers, topic) = (brokers.to_string(), topic.to_string());
        threads.push(
            std::thread::Builder::new()
                .name("rill-demo-group".into())
                .spawn(move || slow_consumer(&brokers, &topic, &flag))?,
        );
        Ok(Demo { stop, threads })
    }

    /// Stops the generators and lets the slow consumer leave its group.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            if thread.join().is_err() {
                tracing::warn!("a demo thread panicked");
            }
        }
    }
}

/// One demo log file, appended to and rotated by size.
struct DemoFile {
    path: PathBuf,
    file: File,
    written: u64,
    buffer: Vec<u8>,
}

impl DemoFile {
    fn open(path: PathBuf) -> io::Result<DemoFile> {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let written = file.metadata()?.len();
        Ok(DemoFile {
            path,
            file,
            written,
            buffer: Vec::new(),
        })
    }

    fn line(&mut self, line: &str) {
        self.buffer.extend_from_slice(line.as_bytes());
        self.buffer.push(b'\n');
    }

    /// Writes what the tick produced in one write(2), as a logging library would.
    fn flush(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.buffer)?;
        self.written += self.buffer.len() as u64;
        self.buffer.clear();
        if self.written >= ROTATE_BYTES {
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            std::fs::rename(&self.path, &rotated)?;
            *self = DemoFile::open(self.path.clone())?;
        }
        Ok(())
    }
}

/// The three simulated services.
struct Generator {
    http: DemoFile,
    worker: DemoFile,
    cron: DemoFile,
    rng: fastrand::Rng,
    started: Instant,
    next_job_id: u64,
    next_cron: Instant,
}

impl Generator {
    fn open(dir: &Path) -> io::Result<Generator> {
        Ok(Generator {
            http: DemoFile::open(dir.join(FILES[0]))?,
            worker: DemoFile::open(dir.join(FILES[1]))?,
            cron: DemoFile::open(dir.join(FILES[2]))?,
            rng: fastrand::Rng::new(),
            started: Instant::now(),
            next_job_id: 48_000,
            next_cron: Instant::now() + Duration::from_secs(5),
        })
    }

    fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            self.tick(now);
            for file in [&mut self.http, &mut self.worker, &mut self.cron] {
                if let Err(e) = file.flush() {
                    tracing::warn!("demo: cannot write {}: {e}", file.path.display());
                }
            }
            std::thread::sleep(TICK.saturating_sub(now.elapsed()));
        }
    }

    fn tick(&mut self, now: Instant) {
        // Traffic swells and ebbs over two minutes, with an incident (errors and slow
        // responses) for 20 s of every five minutes.
        let t = now.duration_since(self.started).as_secs_f64();
        let swell = 1.0 + 0.6 * (t * std::f64::consts::TAU / 120.0).sin();
        let incident = (t % 300.0) > 240.0 && (t % 300.0) < 260.0;
        let requests = self.poisson(4.0 * swell);
        for _ in 0..requests {
            self.http_request(incident);
        }
        for _ in 0..self.poisson(0.8) {
            self.worker_event(incident);
        }
        if now >= self.next_cron {
            self.cron_run();
            self.next_cron = now + Duration::from_secs(30);
        }
    }

    /// A small-mean Poisson draw (Knuth's method), so bursts look like traffic, not a clock.
    fn poisson(&mut self, mean: f64) -> u32 {
        let limit = (-mean).exp();
        let mut product = self.rng.f64();
        let mut count = 0;
        while product > limit && count < 1000 {
            product *= self.rng.f64();
            count += 1;
        }
        count
    }

    fn http_request(&mut self, incident: bool) {
        const ROUTES: [(&str, &str, f64); 6] = [
            ("GET", "/api/orders/{id}", 18.0),
            ("GET", "/api/products?page={n}", 25.0),
            ("POST", "/api/orders", 60.0),
            ("GET", "/api/search?q=shoes", 140.0),
            ("GET", "/healthz", 1.0),
            ("PUT", "/api/cart/{id}", 35.0),
        ];
        let (method, route, mean_ms) = ROUTES[self.rng.usize(..ROUTES.len())];
        let path = route
            .replace("{id}", &self.rng.u32(1000..99_999).to_string())
            .replace("{n}", &self.rng.u8(1..40).to_string());
        let error_rate = if incident { 0.25 } else { 0.01 };
        let roll = self.rng.f64();
        let status = if roll < error_rate {
            [500, 502, 503][self.rng.usize(..3)]
        } else if roll < error_rate + 0.04 {
            [400, 401, 404, 429][self.rng.usize(..4)]
        } else if method == "POST" {
            201
        } else {
            200
        };
        // Exponential latency around the route's mean; an incident slows everything.
        let slowdown = if incident { 8.0 } else { 1.0 };
        let ms = (-mean_ms * slowdown * (1.0 - self.rng.f64()).ln()).max(0.3);
        let level = match status {
            500.. => "error",
            400.. => "warn",
            _ => "info",
        };
        let line = format!(
            "ts={} level={level} method={method} path={path} status={status} duration_ms={ms:.1} bytes={} client=10.0.{}.{}",
            now_rfc3339(),
            self.rng.u32(120..48_000),
            self.rng.u8(0..8),
            self.rng.u8(2..250),
        );
        self.http.line(&line);
    }

    fn worker_event(&mut self, incident: bool) {
        const JOBS: [&str; 4] = ["resize-image", "send-email", "sync-inventory", "render-pdf"];
        let job = JOBS[self.rng.usize(..JOBS.len())];
        let id = self.next_job_id;
        self.next_job_id += 1;
        let ts = now_rfc3339();
        // The noisy part: every job logs its debug chatter.
        self.worker.line(&format!(
            r#"{{"ts":"{ts}","level":"debug","msg":"job picked up","job":"{job}","id":{id},"queue_depth":{}}}"#,
            self.rng.u32(0..60)
        ));
        let roll = self.rng.f64();
        let fail_rate = if incident { 0.3 } else { 0.03 };
        if roll < fail_rate {
            self.worker.line(&format!(
                r#"{{"ts":"{ts}","level":"error","msg":"job failed","job":"{job}","id":{id},"error":"upstream timeout after 30s"}}"#
            ));
        } else if roll < fail_rate + 0.08 {
            self.worker.line(&format!(
                r#"{{"ts":"{ts}","level":"warn","msg":"retrying","job":"{job}","id":{id},"attempt":2}}"#
            ));
        } else {
            self.worker.line(&format!(
                r#"{{"ts":"{ts}","level":"info","msg":"job done","job":"{job}","id":{id},"ms":{}}}"#,
                self.rng.u32(5..900)
            ));
        }
    }

    fn cron_run(&mut self) {
        let stamp = || {
            let ts = now_rfc3339();
            // `2024-05-01 12:00:00`: the plain format many scripts write.
            ts.get(..19).unwrap_or(&ts).replace('T', " ")
        };
        let tables = self.rng.u32(8..20);
        self.cron
            .line(&format!("{} INFO backup: started (nightly-db)", stamp()));
        self.cron.line(&format!(
            "{} INFO backup: dumped {tables} tables ({:.1} MB)",
            stamp(),
            self.rng.f64() * 80.0 + 20.0
        ));
        if self.rng.f64() < 0.2 {
            self.cron.line(&format!(
                "{} ERROR backup: upload to s3://backups/db failed: connection reset by peer",
                stamp()
            ));
        } else {
            self.cron
                .line(&format!("{} INFO backup: uploaded, done", stamp()));
        }
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// A consumer group member that processes [`SLOW_GROUP_RATE`] records a second and
/// commits as it goes, so its lag grows steadily.
fn slow_consumer(brokers: &str, topic: &str, stop: &AtomicBool) {
    let consumer: BaseConsumer = match ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", SLOW_GROUP)
        .set("client.id", "rill-demo-archiver")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("auto.offset.reset", "earliest")
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Critical)
        .create()
    {
        Ok(consumer) => consumer,
        Err(e) => {
            tracing::warn!("demo: cannot create the slow consumer: {e}");
            return;
        }
    };
    if let Err(e) = consumer.subscribe(&[topic]) {
        tracing::warn!("demo: cannot subscribe the slow consumer to {topic}: {e}");
        return;
    }
    let per_record = Duration::from_secs(1) / SLOW_GROUP_RATE;
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(_)) => std::thread::sleep(per_record),
            // Unknown topic until the agent's first record, broker restarts: keep going.
            Some(Err(e)) => tracing::debug!("demo: slow consumer: {e}"),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_write_every_format_and_rotate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut generator = Generator::open(dir.path()).expect("open");
        let start = Instant::now();
        // 300 ticks: 30 simulated seconds, including one cron run.
        for i in 0..300 {
            generator.tick(start + TICK * i);
        }
        for file in [
            &mut generator.http,
            &mut generator.worker,
            &mut generator.cron,
        ] {
            file.flush().expect("flush");
        }
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).expect("read");
        let http = read("http.log");
        assert!(
            http.lines().count() > 300,
            "{} http lines",
            http.lines().count()
        );
        assert!(http
            .lines()
            .all(|l| l.starts_with("ts=") && l.contains(" status=")));
        let worker = read("worker.log");
        for line in worker.lines() {
            serde_json::from_str::<serde_json::Value>(line).expect("worker lines are JSON");
        }
        assert!(read("cron.log").contains("INFO backup: started"));

        generator.http.written = ROTATE_BYTES;
        generator.http.line("after rotation");
        generator.http.flush().expect("rotate");
        assert!(dir.path().join("http.log.1").exists());
        assert!(read("http.log.1").contains("after rotation"));
        assert_eq!(read("http.log"), "");
    }

    #[test]
    fn poisson_mean_is_close() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut generator = Generator::open(dir.path()).expect("open");
        let draws = 20_000;
        let total: u32 = (0..draws).map(|_| generator.poisson(4.0)).sum();
        let mean = f64::from(total) / f64::from(draws);
        assert!((mean - 4.0).abs() < 0.15, "mean {mean}");
    }
}
