//! A private tmux server (its own socket) running one full-screen program in a session, for
//! end-to-end tests of the terminal UI: send-keys in, capture-pane out.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::run;

/// How long a wait for something on screen may take.
pub const WAIT: Duration = Duration::from_secs(30);

/// A tmux server of our own, killed on drop.
pub struct Tmux {
    socket: PathBuf,
    session: String,
}

impl Tmux {
    /// A server with its socket in `dir`, for a session named `session`.
    pub fn new(dir: &Path, session: &str) -> Tmux {
        let found = std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|d| d.join("tmux").is_file()))
            .unwrap_or(false);
        assert!(
            found,
            "tmux is not on PATH: run tests/run-all.sh, which installs it"
        );
        Tmux {
            socket: dir.join("tmux.sock"),
            session: session.to_string(),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = super::system_command("tmux");
        c.arg("-S").arg(&self.socket).arg("-f").arg("/dev/null");
        c
    }

    pub fn tmux(&self, args: &[&str]) {
        run(self.cmd().args(args), None, Duration::from_secs(10)).assert_ok();
    }

    /// Starts the session running the shell command `command` in a `width`x`height` window.
    pub fn start(&self, width: u16, height: u16, command: &str) {
        let (w, h) = (width.to_string(), height.to_string());
        self.tmux(&[
            "new-session",
            "-d",
            "-s",
            &self.session,
            "-x",
            &w,
            "-y",
            &h,
            command,
        ]);
    }

    pub fn screen(&self) -> String {
        self.capture(&[])
    }

    /// The screen with its colours and attributes, as escape sequences (`capture-pane -e`).
    pub fn screen_with_colours(&self) -> String {
        self.capture(&["-e"])
    }

    fn capture(&self, options: &[&str]) -> String {
        run(
            self.cmd()
                .args(["capture-pane", "-p", "-t", &self.session])
                .args(options),
            None,
            Duration::from_secs(10),
        )
        .assert_ok()
        .stdout
        .clone()
    }

    /// Waits until `pred` holds for the screen; panics with the screen after [`WAIT`].
    pub fn wait(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_for(&self, text: &str) -> String {
        self.wait(&format!("{text:?}"), |s| s.contains(text))
    }

    /// Sends each key (tmux key names: "Enter", "Escape", "q", ...).
    pub fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.tmux(&["send-keys", "-t", &self.session, k]);
            // Separate reads, so an Esc is never taken for the start of an Alt sequence.
            std::thread::sleep(Duration::from_millis(80));
        }
    }

    /// Types `text` literally.
    pub fn text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", &self.session, "-l", text]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}
