//! A real `rill-agent` process for end-to-end tests. The agent binary is found next to the
//! `rill` binary (the test command builds the whole workspace first).

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub fn agent_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_rill")).with_file_name("rill-agent");
    assert!(
        bin.exists(),
        "rill-agent binary not found at {}: run `cargo build --workspace` before these tests",
        bin.display()
    );
    bin
}

/// A running `rill-agent --config`.
pub struct Agent {
    child: Option<Child>,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Agent {
    pub fn start(config: &Path) -> Agent {
        let log = config.with_extension("log");
        let mut agent = Agent {
            child: None,
            config: config.to_path_buf(),
            log,
        };
        agent.spawn();
        agent
    }

    pub fn spawn(&mut self) {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("agent log");
        let child = Command::new(agent_bin())
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone"))
            .stderr(out)
            .spawn()
            .expect("spawn rill-agent");
        self.child = Some(child);
    }

    /// The running agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("agent running").id()
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.pid();
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(ok.success(), "kill -{sig} {pid}");
    }

    pub fn kill_9(&mut self) {
        let mut child = self.child.take().expect("agent running");
        child.kill().expect("SIGKILL agent");
        child.wait().expect("wait");
    }

    /// SIGTERM; returns the exit status, bounded in time.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal("TERM");
        let mut child = self.child.take().expect("agent running");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "rill-agent did not exit within 20 s of SIGTERM\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let mut start = text.len().saturating_sub(6000);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].to_string()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
