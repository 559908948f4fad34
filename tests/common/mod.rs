//! Shared fixtures for rill's integration tests: a real `rill broker` process on a free port with
//! its own data dir, bounded runners for external commands (kcat, python, `rill topics`), and a
//! tiny raw Kafka client (`wire`) for protocol-level tests.
//!
//! Every wait is bounded; a failure prints the broker's log (it is captured to a file).
#![allow(dead_code)]

pub mod agent;
pub mod security;
pub mod tmux;
pub mod wire;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long the broker may take to start accepting connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// SIGINT/SIGTERM must end the broker within this.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// A `rill broker` child process with its own port and data dir.
pub struct Broker {
    port: u16,
    dir: TempDir,
    config: Option<PathBuf>,
    child: Option<Child>,
    starts: u32,
}

/// A port that was free a moment ago (bind to :0, read it, release it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

impl Broker {
    /// Starts a broker with the default configuration.
    pub fn start() -> Broker {
        Broker::start_with_config("")
    }

    /// Starts a broker; a non-empty `config` is written to a TOML file passed with `--config`.
    /// `--listen` and `--data-dir` are always given on the command line.
    pub fn start_with_config(config: &str) -> Broker {
        Broker::start_with_setup(config, |_| {})
    }

    /// Like [`Broker::start_with_config`], with `setup` called on the (empty) data directory
    /// before the first start: e.g. to put it on another filesystem.
    pub fn start_with_setup(config: &str, setup: impl FnOnce(&Path)) -> Broker {
        let dir = tempfile::Builder::new()
            .prefix("rill-test-")
            .tempdir()
            .expect("create temp dir");
        let config_path = if config.trim().is_empty() {
            None
        } else {
            let path = dir.path().join("rill.toml");
            std::fs::write(&path, config).expect("write config file");
            Some(path)
        };
        std::fs::create_dir_all(dir.path().join("data")).expect("create data dir");
        setup(&dir.path().join("data"));
        let mut broker = Broker {
            port: free_port(),
            dir,
            config: config_path,
            child: None,
            starts: 0,
        };
        // free_port() only says the port was free a moment ago: another test may take it
        // before this broker binds it. Then this broker exits with "already in use"; pick
        // another port and try again.
        for _ in 0..5 {
            match broker.try_spawn() {
                Ok(()) => return broker,
                Err(log) if log.contains("already in use") => broker.port = free_port(),
                Err(log) => panic!("rill broker exited during start-up\n{log}"),
            }
        }
        panic!(
            "no free port for the broker after 5 tries\n{}",
            broker.log_excerpt()
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn socket_addr(&self) -> SocketAddr {
        self.addr().parse().expect("socket addr")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    /// A scratch directory that lives as long as the broker (for test input files).
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// The whole broker log so far (all runs of this fixture).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn log_len(&self) -> u64 {
        std::fs::metadata(self.log_path())
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// The process id of the running broker.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker is not running").id()
    }

    fn spawn(&mut self) {
        if let Err(log) = self.try_spawn() {
            panic!("rill broker exited during start-up\n{log}");
        }
    }

    /// Starts the process and waits until it is ready; Err(log excerpt) if it exited.
    fn try_spawn(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "broker already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open broker log");
        self.starts += 1;
        let mut header = log.try_clone().expect("clone log handle");
        writeln!(
            header,
            "==== rill-tests: broker start #{} ====",
            self.starts
        )
        .ok();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rill"));
        cmd.arg("broker")
            .arg("--listen")
            .arg(self.addr())
            .arg("--data-dir")
            .arg(self.data_dir());
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        cmd.env(
            "RILL_LOG",
            std::env::var("RILL_TEST_BROKER_LOG").unwrap_or("info".into()),
        )
        .env_remove("RILL_BROKERS")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log);
        let log_start = self.log_len() as usize;
        let child = cmd.spawn().expect("spawn rill broker");
        self.child = Some(child);
        self.wait_ready(log_start)
    }

    /// Ready means this process logged that it listens on our address (a successful connect
    /// alone could reach another test's process on a reused port) and accepts connections.
    fn wait_ready(&mut self, log_start: usize) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let listening = format!("listening on {},", self.addr());
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().expect("try_wait") {
                self.child = None;
                return Err(format!("exit status {status}\n{}", self.log_excerpt()));
            }
            let logged = self
                .log()
                .get(log_start..)
                .is_some_and(|since| since.contains(&listening));
            if logged
                && TcpStream::connect_timeout(&self.socket_addr(), Duration::from_millis(200))
                    .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                panic!(
                    "rill broker did not accept on {} within {:?}\n{}",
                    self.addr(),
                    START_TIMEOUT,
                    self.log_excerpt()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Is the process still running?
    pub fn is_alive(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(child) => child.try_wait().expect("try_wait").is_none(),
        }
    }

    /// Panics (printing the log) unless the process runs and a fresh connection gets an
    /// ApiVersions answer with error 0.
    pub fn assert_healthy(&mut self, after: &str) {
        assert!(
            self.is_alive(),
            "broker process died after {after}\n{}",
            self.log_excerpt()
        );
        let result = std::panic::catch_unwind(|| {
            let mut conn = wire::Conn::connect(&self.addr());
            let resp = conn.api_versions(3);
            assert_eq!(resp.error_code, 0, "ApiVersions error code");
            assert!(!resp.api_keys.is_empty(), "ApiVersions lists no APIs");
        });
        if result.is_err() {
            panic!(
                "broker no longer answers ApiVersions after {after}\n{}",
                self.log_excerpt()
            );
        }
    }

    /// SIGKILL and reap.
    pub fn kill_9(&mut self) {
        let mut child = self.child.take().expect("broker is not running");
        child.kill().expect("SIGKILL broker");
        child.wait().expect("wait for killed broker");
    }

    /// Starts again on the same port with the same data dir and config.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
    }

    /// SIGTERM; asserts a clean exit (status 0) within [`SHUTDOWN_TIMEOUT`]. Returns the time taken.
    pub fn stop(&mut self) -> Duration {
        self.stop_with("TERM")
    }

    /// Sends `signal` ("TERM", "INT") and asserts a clean exit within [`SHUTDOWN_TIMEOUT`].
    pub fn stop_with(&mut self, signal: &str) -> Duration {
        let pid = self.pid();
        let started = Instant::now();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
        let status = self.wait_exit(SHUTDOWN_TIMEOUT);
        let took = started.elapsed();
        match status {
            Some(status) => {
                self.child = None;
                assert!(
                    status.success(),
                    "broker exited with {status} after SIG{signal} (expected status 0)\n{}",
                    self.log_excerpt()
                );
                took
            }
            None => {
                let excerpt = self.log_excerpt();
                self.kill_9();
                panic!("broker still running {SHUTDOWN_TIMEOUT:?} after SIG{signal}\n{excerpt}");
            }
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("broker is not running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The last part of the broker log, framed for a panic message.
    pub fn log_excerpt(&self) -> String {
        let log = self.log();
        const MAX: usize = 12_000;
        let tail = if log.len() > MAX {
            let mut start = log.len() - MAX;
            while !log.is_char_boundary(start) {
                start += 1;
            }
            format!("[... {} bytes cut ...]\n{}", start, &log[start..])
        } else {
            log
        };
        format!(
            "----- broker log ({}) -----\n{}\n----- end of broker log -----",
            self.log_path().display(),
            tail
        )
    }

    /// Waits until the log grows past `len` (something was logged), bounded.
    pub fn wait_log_grows(&self, len: u64, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.log_len() <= len {
            if Instant::now() > deadline {
                panic!(
                    "broker logged nothing about {what} within 5 s\n{}",
                    self.log_excerpt()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log_excerpt());
        }
    }
}

/// The venv python from `RILL_TEST_PYTHON`. Never skips: an unset variable is a failure.
pub fn python() -> PathBuf {
    match std::env::var_os("RILL_TEST_PYTHON") {
        Some(p) if !p.is_empty() => {
            let path = PathBuf::from(p);
            assert!(
                path.exists(),
                "RILL_TEST_PYTHON={} does not exist: run tests/run-all.sh, which creates the venv",
                path.display()
            );
            path
        }
        _ => panic!("RILL_TEST_PYTHON is not set: run tests/run-all.sh, which creates the venv"),
    }
}

/// `kcat`, checked to be on PATH. Never skips: a missing kcat is a failure.
pub fn kcat() -> &'static str {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join("kcat").is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "kcat is not on PATH: run tests/run-all.sh, which installs it (Debian package kcat)"
    );
    "kcat"
}

/// A command for a program a user would run from their system (kcat): without the
/// `LD_LIBRARY_PATH` that `cargo test` sets. That path holds the build's own librdkafka.so (the
/// one rdkafka-sys builds, 2.12), which Debian's kcat then loaded instead of the system's (2.0):
/// the tests ran a kcat no user has, and hid that librdkafka before 2.6.1 sends the SCRAM
/// nonce in a form rill refused.
pub fn system_command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_remove("LD_LIBRARY_PATH");
    cmd
}

/// A `kcat` command against `broker`: the system's kcat, with the system's librdkafka.
pub fn kcat_cmd(broker: &str) -> Command {
    let mut cmd = system_command(kcat());
    cmd.arg("-b").arg(broker);
    cmd
}

/// `rill` with the given arguments (RILL_BROKERS removed from the environment).
/// Runs kcat reading `topic`/`partition` from the beginning to its end, one `format` line per
/// record (kcat's -f syntax), within `timeout`.
pub fn kcat_read_partition(
    broker: &str,
    topic: &str,
    partition: i32,
    format: &str,
    timeout: Duration,
) -> Run {
    run(
        kcat_cmd(broker).args([
            "-C",
            "-t",
            topic,
            "-p",
            &partition.to_string(),
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            format,
        ]),
        None,
        timeout,
    )
}

pub fn rill_cmd<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rill"));
    cmd.args(args).env_remove("RILL_BROKERS");
    cmd
}

/// The result of a bounded external command.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
    pub what: String,
}

impl Run {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics with the command's output unless it exited 0.
    pub fn assert_ok(&self) -> &Self {
        assert!(
            self.status.success(),
            "{} failed: {}",
            self.what,
            self.describe()
        );
        self
    }

    /// Panics with the command's output unless it failed and said `needle` on stderr.
    pub fn assert_fails_with(&self, needle: &str) -> &Self {
        assert!(
            !self.status.success() && self.stderr.contains(needle),
            "{} should fail saying {needle:?}: {}",
            self.what,
            self.describe()
        );
        self
    }

    pub fn describe(&self) -> String {
        format!(
            "{}\nexit: {} (after {:?})\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.what,
            self.status,
            self.took,
            truncate(&self.stdout, 20_000),
            truncate(&self.stderr, 20_000)
        )
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[... {} more bytes ...]", &s[..end], s.len() - end)
}

/// Runs `cmd` with `stdin` (or /dev/null), killing it and panicking after `timeout`.
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Run {
    let what = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {what}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let out_reader = reader(child.stdout.take().unwrap());
    let err_reader = reader(child.stderr.take().unwrap());
    let deadline = started + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = out_reader.join().unwrap_or_default();
            let stderr = err_reader.join().unwrap_or_default();
            panic!(
                "{what} did not finish within {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                truncate(&stdout, 20_000),
                truncate(&stderr, 20_000)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = started.elapsed();
    Run {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
        took,
        what,
    }
}

fn reader<R: Read + Send + 'static>(mut pipe: R) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// A child process killed when dropped (for long-running clients such as a `kcat -C` without -e).
pub struct Background {
    pub child: Child,
}

impl Background {
    pub fn spawn(cmd: &mut Command) -> Background {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn background process");
        Background { child }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a python interop script from tests/interop with the venv python.
pub fn run_interop(script: &str, args: &[&str], timeout: Duration) -> Run {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop")
        .join(script);
    let mut cmd = Command::new(python());
    cmd.arg("-u").arg(path).args(args);
    run(&mut cmd, None, timeout)
}

/// Writes `contents` to `path`.
pub fn write_file(path: &Path, contents: &str) {
    let mut f = File::create(path).expect("create file");
    f.write_all(contents.as_bytes()).expect("write file");
}
