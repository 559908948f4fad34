//! `rill up` end to end in tmux, run exactly as the README's quickstart writes it: lines
//! appended to a tailed file show up in the dashboard within seconds, this host appears in the
//! Metrics view, and `q` stops everything (the broker's port is closed once the process exits).

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::tmux::Tmux;

/// The address `rill up` listens on by default (the README's command gives no --listen).
const DEFAULT_ADDR: &str = "127.0.0.1:9092";

/// The quickstart's `rill up --tail ...` line, as written in the README.
fn readme_up_command() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let quickstart = readme
        .split("\n## ")
        .find(|section| section.starts_with("Quickstart"))
        .expect("README has a Quickstart section");
    quickstart
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("rill up --tail "))
        .map(|line| line.split(" #").next().unwrap_or(line).trim().to_string())
        .expect("the Quickstart shows `rill up --tail ...`")
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("read the host name")
        .trim()
        .to_string()
}

#[test]
fn rill_up_from_the_readme_shows_logs_and_metrics_and_q_stops_it() {
    let command = readme_up_command();
    assert!(
        command.contains("./logs/"),
        "the quickstart tails ./logs: {command}"
    );
    assert!(
        TcpStream::connect(DEFAULT_ADDR).is_err(),
        "{DEFAULT_ADDR} is taken before the test starts: stop whatever listens there"
    );
    let dir = tempfile::Builder::new()
        .prefix("rill-up-test-")
        .tempdir()
        .expect("temp dir");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("create logs dir");
    std::fs::create_dir_all(dir.path().join("home")).expect("create home");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_rill"))
        .parent()
        .expect("binary dir")
        .display()
        .to_string();
    // A home of its own, so the data directory (~/.local/share/rill) is the test's.
    let shell = format!(
        "cd {dir} && env -u XDG_DATA_HOME HOME={dir}/home PATH={bin_dir}:$PATH {command}; \
         echo UP-EXITED $?; sleep 60",
        dir = dir.path().display(),
    );
    let tmux = Tmux::new(dir.path(), "up");
    tmux.start(120, 32, &shell);
    tmux.wait_for("connected");

    let marker = format!("rill-up-e2e-{}", std::process::id());
    let appended = Instant::now();
    std::fs::write(logs.join("app.log"), format!("ERROR {marker} appended\n"))
        .expect("append a line");
    tmux.wait_for(&marker);
    let took = appended.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "an appended line took {took:?} to show"
    );

    tmux.keys(&["2"]);
    let host = this_host();
    let screen = tmux.wait_for(&host);
    assert!(screen.contains("CPU"), "{screen}");

    tmux.keys(&["q"]);
    let screen = tmux.wait_for("UP-EXITED");
    assert!(screen.contains("UP-EXITED 0"), "{screen}");
    assert!(screen.contains("rill up: stopped"), "{screen}");
    assert!(
        TcpStream::connect(DEFAULT_ADDR).is_err(),
        "the broker's port is still open after q"
    );
    assert!(
        dir.path().join("home/.local/share/rill/broker").is_dir(),
        "the data went to the user's data directory"
    );
}
