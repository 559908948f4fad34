//! `rill-bench agent ...`: drivers for the rill-agent benchmark (`bench/agent.sh`).
//!
//! - `throughput`: appends 100-byte lines to a file the agent tails, as fast as one writer
//!   can, and times until the topic's end offset (ListOffsets) shows every line acknowledged
//!   by the broker. Also reports the agent's CPU seconds and peak RSS (VmHWM).
//! - `latency`: appends time-stamped lines at a modest rate, one `write` each, while a
//!   consumer reads the topic; a line's latency is consumer receive time minus append time
//!   (an upper bound of append → acknowledged).
//! - `idle`: the agent's CPU % of one core and RSS over a quiet window.
//! - `report`: medians of the JSON lines above as a Markdown table against the targets.
//!
//! Each measuring subcommand prints one JSON line on stdout, like the other drivers.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::common::{self, Conn, LogContext, SETUP_TIMEOUT};
use crate::procfs;

const MIB: f64 = 1024.0 * 1024.0;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Append lines as fast as possible; time until the broker holds them all.
    Throughput(ThroughputArgs),
    /// Append time-stamped lines at a steady rate; measure append → consumed latency.
    Latency(LatencyArgs),
    /// Measure an idle agent's CPU and RSS.
    Idle(IdleArgs),
    /// Summarise the JSON lines of agent runs as a Markdown table.
    Report(ReportArgs),
}

#[derive(clap::Args, Debug)]
pub struct ThroughputArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// The file to append to (the agent must tail it).
    #[arg(long)]
    pub file: PathBuf,
    /// Bytes to append (whole lines).
    #[arg(long, default_value_t = 1_000_000_000)]
    pub bytes: u64,
    /// Bytes per line, newline included.
    #[arg(long, default_value_t = 100)]
    pub line_bytes: usize,
    /// The agent's PID: its CPU seconds and peak RSS go into the result.
    #[arg(long)]
    pub agent_pid: u32,
    /// Which producer the agent uses (`rill`, `librdkafka`), recorded in the result.
    #[arg(long, default_value = "rill")]
    pub producer: String,
    /// Give up when the end offset has not moved for this many seconds.
    #[arg(long, default_value_t = 30)]
    pub idle_timeout_secs: u64,
}

#[derive(clap::Args, Debug)]
pub struct LatencyArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[arg(long)]
    pub file: PathBuf,
    /// Lines appended per second.
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// Seconds to append for.
    #[arg(long, default_value_t = 15)]
    pub seconds: u64,
}

#[derive(clap::Args, Debug)]
pub struct IdleArgs {
    #[arg(long)]
    pub agent_pid: u32,
    /// Seconds to watch.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Files the agent watches (for the result only).
    #[arg(long, default_value_t = 100)]
    pub files: u64,
}

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// JSON lines from the other agent subcommands.
    #[arg(long)]
    pub input: PathBuf,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(tag = "kind")]
pub enum AgentResult {
    #[serde(rename = "agent_throughput")]
    Throughput {
        lines: u64,
        bytes: u64,
        /// From the first append to the end offset covering every line.
        seconds: f64,
        /// When the writer finished appending (the writer's own speed bound).
        write_seconds: f64,
        mib_per_sec: f64,
        lines_per_sec: f64,
        agent_cpu_s: f64,
        agent_peak_rss_mib: f64,
        /// The broker's and this process's (the writer's, the end-offset poller's) CPU
        /// over the same time.
        #[serde(default)]
        broker_cpu_s: Option<f64>,
        #[serde(default)]
        bench_cpu_s: Option<f64>,
        /// The agent's producer; absent in results from before there were two.
        #[serde(default)]
        producer: Option<String>,
    },
    #[serde(rename = "agent_latency")]
    Latency {
        lines: u64,
        p50_ms: f64,
        p99_ms: f64,
        max_ms: f64,
    },
    #[serde(rename = "agent_idle")]
    Idle {
        files: u64,
        seconds: f64,
        cpu_pct: f64,
        rss_mib: f64,
    },
}

pub fn run(cmd: &Command) -> Result<()> {
    let result = match cmd {
        Command::Throughput(a) => throughput(a)?,
        Command::Latency(a) => latency(a)?,
        Command::Idle(a) => idle(a)?,
        Command::Report(a) => return report(a),
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

fn consumer(conn: &Conn) -> Result<BaseConsumer<LogContext>> {
    conn.client_config(&[
        ("group.id", "rill-bench-agent"),
        ("enable.auto.commit", "false"),
        ("fetch.wait.max.ms", "5"),
    ])
    .create_with_context(LogContext)
    .context("creating the consumer")
}

/// Sum over partitions of the high watermarks (ListOffsets latest).
fn end_offsets(c: &BaseConsumer<LogContext>, topic: &str, partitions: i32) -> Result<i64> {
    let mut sum = 0;
    for p in 0..partitions {
        let (_, high) = c
            .fetch_watermarks(topic, p, SETUP_TIMEOUT)
            .with_context(|| format!("ListOffsets {topic}/{p}"))?;
        sum += high;
    }
    Ok(sum)
}

fn throughput(a: &ThroughputArgs) -> Result<AgentResult> {
    let topic = a.conn.topic.as_str();
    if a.line_bytes < 2 {
        bail!("--line-bytes must be at least 2");
    }
    let partitions = common::ensure_topic(&a.conn, topic, 1)?;
    let c = consumer(&a.conn)?;
    let base = end_offsets(&c, topic, partitions)?;
    let lines = a.bytes / a.line_bytes as u64;
    let bytes = lines * a.line_bytes as u64;

    // One 1 MiB-ish block of whole lines, appended over and over; each line is distinct
    // enough (a counter) not to be trivially compressible to nothing.
    let per_block = (1 << 20) / a.line_bytes;
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.file)
        .with_context(|| format!("opening {}", a.file.display()))?;
    let cpu0 = procfs::cpu_seconds(a.agent_pid)?;
    let broker0 = a.conn.broker_pid.map(procfs::cpu_seconds).transpose()?;
    let bench0 = procfs::cpu_seconds(std::process::id())?;
    let start = Instant::now();
    let writer_file = a.file.clone();
    let line_bytes = a.line_bytes;
    let writer = std::thread::spawn(move || -> Result<f64> {
        let mut block = Vec::with_capacity(per_block * line_bytes);
        let mut written = 0u64;
        while written < lines {
            block.clear();
            let n = (lines - written).min(per_block as u64);
            for i in 0..n {
                let start = block.len();
                write!(block, "{:012} INFO bench line ", written + i)?;
                block.resize(start + line_bytes - 1, b'x');
                block.push(b'\n');
            }
            file.write_all(&block)
                .with_context(|| format!("appending to {}", writer_file.display()))?;
            written += n;
        }
        Ok(start.elapsed().as_secs_f64())
    });

    let target = base + lines as i64;
    let mut last = base;
    let mut last_move = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let end = end_offsets(&c, topic, partitions)?;
        if end >= target {
            break;
        }
        if end != last {
            last = end;
            last_move = Instant::now();
        } else if last_move.elapsed() > Duration::from_secs(a.idle_timeout_secs) {
            bail!(
                "the topic's end offset stopped at {} of {lines} lines for {} s",
                end - base,
                a.idle_timeout_secs
            );
        }
        if last_print.elapsed() >= Duration::from_secs(2) {
            last_print = Instant::now();
            eprintln!(
                "agent throughput: {}/{lines} lines acknowledged after {:.1} s",
                end - base,
                start.elapsed().as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let seconds = start.elapsed().as_secs_f64();
    let write_seconds = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer thread panicked"))??;
    let agent_cpu_s = procfs::cpu_seconds(a.agent_pid)? - cpu0;
    let agent_peak_rss_mib = procfs::peak_rss_bytes(a.agent_pid)? as f64 / MIB;
    let broker_cpu_s = match (a.conn.broker_pid, broker0) {
        (Some(pid), Some(c0)) => Some(procfs::cpu_seconds(pid)? - c0),
        _ => None,
    };
    let bench_cpu_s = Some(procfs::cpu_seconds(std::process::id())? - bench0);
    Ok(AgentResult::Throughput {
        lines,
        bytes,
        seconds,
        write_seconds,
        mib_per_sec: bytes as f64 / MIB / seconds,
        lines_per_sec: lines as f64 / seconds,
        agent_cpu_s,
        agent_peak_rss_mib,
        broker_cpu_s,
        bench_cpu_s,
        producer: Some(a.producer.clone()),
    })
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// Marker of the latency lines, so other lines on the topic are ignored.
const LAT_MARK: &str = "rill-bench-latency";

fn latency(a: &LatencyArgs) -> Result<AgentResult> {
    let topic = a.conn.topic.as_str();
    let partitions = common::ensure_topic(&a.conn, topic, 1)?;
    let c = consumer(&a.conn)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (_, high) = c.fetch_watermarks(topic, p, SETUP_TIMEOUT)?;
        tpl.add_partition_offset(topic, p, Offset::Offset(high))?;
    }
    c.assign(&tpl).context("assign")?;

    let total = a.rate * a.seconds;
    let interval = Duration::from_secs_f64(1.0 / a.rate.max(1) as f64);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.file)
        .with_context(|| format!("opening {}", a.file.display()))?;
    let writer = std::thread::spawn(move || -> Result<()> {
        let start = Instant::now();
        for seq in 0..total {
            let due = start + interval * seq as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let line = format!("{LAT_MARK} {seq} {} INFO latency probe\n", unix_nanos());
            file.write_all(line.as_bytes())?;
        }
        Ok(())
    });

    let mut latencies: HashMap<u64, f64> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(a.seconds + 30);
    while (latencies.len() as u64) < total {
        if Instant::now() > deadline {
            bail!(
                "only {} of {total} latency lines arrived within 30 s of the last append",
                latencies.len()
            );
        }
        let Some(msg) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        let now = unix_nanos();
        let msg = msg.context("consuming")?;
        let Some(value) = msg.payload() else { continue };
        let rec: serde_json::Value = serde_json::from_slice(value).context("record value")?;
        let Some(line) = rec.get("line").and_then(|l| l.as_str()) else {
            continue;
        };
        let mut parts = line.split(' ');
        if parts.next() != Some(LAT_MARK) {
            continue;
        }
        let (Some(seq), Some(sent)) = (
            parts.next().and_then(|s| s.parse::<u64>().ok()),
            parts.next().and_then(|s| s.parse::<u128>().ok()),
        ) else {
            bail!("malformed latency line {line:?}");
        };
        latencies.insert(seq, now.saturating_sub(sent) as f64 / 1e6);
    }
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer thread panicked"))??;
    let mut v: Vec<f64> = latencies.into_values().collect();
    v.sort_by(f64::total_cmp);
    let pct = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    Ok(AgentResult::Latency {
        lines: total,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
    })
}

fn rss_bytes(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .with_context(|| format!("no VmRSS in {path}"))?;
    Ok(kb * 1024)
}

fn idle(a: &IdleArgs) -> Result<AgentResult> {
    let cpu0 = procfs::cpu_seconds(a.agent_pid)?;
    let start = Instant::now();
    let mut rss_max = 0;
    while start.elapsed() < Duration::from_secs(a.seconds) {
        rss_max = rss_max.max(rss_bytes(a.agent_pid)?);
        std::thread::sleep(Duration::from_millis(500));
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu = procfs::cpu_seconds(a.agent_pid)? - cpu0;
    Ok(AgentResult::Idle {
        files: a.files,
        seconds,
        cpu_pct: cpu / seconds * 100.0,
        rss_mib: rss_max as f64 / MIB,
    })
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn report(a: &ReportArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.input)
        .with_context(|| format!("reading {}", a.input.display()))?;
    let mut results = Vec::new();
    for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
        results.push(serde_json::from_str::<AgentResult>(line).context("parsing a result")?);
    }
    let pick = |f: &dyn Fn(&AgentResult) -> Option<f64>| -> (Option<f64>, usize) {
        let v: Vec<f64> = results.iter().filter_map(f).collect();
        let n = v.len();
        (median(v), n)
    };
    // The default producer's throughput runs; the librdkafka (TLS/SASL) path's are
    // reference rows.
    let is_librdkafka = |p: &Option<String>| p.as_deref() == Some("librdkafka");
    let throughput = |librdkafka: bool, f: &dyn Fn(&AgentResult) -> Option<f64>| {
        pick(&|r| match r {
            AgentResult::Throughput { producer, .. } if is_librdkafka(producer) == librdkafka => {
                f(r)
            }
            _ => None,
        })
    };
    let mib_per_sec = |r: &AgentResult| match r {
        AgentResult::Throughput { mib_per_sec, .. } => Some(*mib_per_sec),
        _ => None,
    };
    let peak_rss = |r: &AgentResult| match r {
        AgentResult::Throughput {
            agent_peak_rss_mib, ..
        } => Some(*agent_peak_rss_mib),
        _ => None,
    };
    // CPU seconds per MiB shipped, of the agent, the broker or the bench's writer.
    let cpu_per_mib = |who: fn(&AgentResult) -> Option<f64>| {
        move |r: &AgentResult| match r {
            AgentResult::Throughput { bytes, .. } => {
                who(r).map(|s| s / (*bytes as f64 / MIB) * 1000.0)
            }
            _ => None,
        }
    };
    let agent_cpu = cpu_per_mib(|r| match r {
        AgentResult::Throughput { agent_cpu_s, .. } => Some(*agent_cpu_s),
        _ => None,
    });
    let broker_cpu = cpu_per_mib(|r| match r {
        AgentResult::Throughput { broker_cpu_s, .. } => *broker_cpu_s,
        _ => None,
    });
    let bench_cpu = cpu_per_mib(|r| match r {
        AgentResult::Throughput { bench_cpu_s, .. } => *bench_cpu_s,
        _ => None,
    });
    type Row<'a> = (&'a str, (Option<f64>, usize), &'a str, f64, bool, &'a str);
    let rows: Vec<Row> = vec![
        (
            "file → broker acknowledged, 100-byte lines",
            throughput(false, &mib_per_sec),
            "MiB/s",
            150.0,
            true,
            ">= 150 MiB/s",
        ),
        (
            "agent peak RSS under that load (VmHWM)",
            throughput(false, &peak_rss),
            "MiB",
            30.0,
            false,
            "<= 30 MiB",
        ),
        (
            "agent CPU per MiB shipped",
            throughput(false, &agent_cpu),
            "ms CPU/MiB",
            f64::NAN,
            false,
            "(info)",
        ),
        (
            "broker CPU per MiB shipped (same runs)",
            throughput(false, &broker_cpu),
            "ms CPU/MiB",
            f64::NAN,
            false,
            "(info)",
        ),
        (
            "writer + offset poller CPU per MiB (same runs)",
            throughput(false, &bench_cpu),
            "ms CPU/MiB",
            f64::NAN,
            false,
            "(info)",
        ),
        (
            "reference: librdkafka producer (TLS/SASL path), file → broker",
            throughput(true, &mib_per_sec),
            "MiB/s",
            f64::NAN,
            true,
            "(info)",
        ),
        (
            "reference: librdkafka producer, agent CPU per MiB",
            throughput(true, &agent_cpu),
            "ms CPU/MiB",
            f64::NAN,
            false,
            "(info)",
        ),
        (
            "reference: librdkafka producer, broker CPU per MiB",
            throughput(true, &broker_cpu),
            "ms CPU/MiB",
            f64::NAN,
            false,
            "(info)",
        ),
        (
            "reference: librdkafka producer, agent peak RSS",
            throughput(true, &peak_rss),
            "MiB",
            f64::NAN,
            false,
            "(info)",
        ),
        (
            "idle, 100 files + 10 s metrics: CPU",
            pick(&|r| match r {
                AgentResult::Idle { cpu_pct, .. } => Some(*cpu_pct),
                _ => None,
            }),
            "% of a core",
            1.0,
            false,
            "<= 1 %",
        ),
        (
            "idle, 100 files + 10 s metrics: RSS",
            pick(&|r| match r {
                AgentResult::Idle { rss_mib, .. } => Some(*rss_mib),
                _ => None,
            }),
            "MiB",
            15.0,
            false,
            "<= 15 MiB",
        ),
        (
            "line appended → record acknowledged, p99",
            pick(&|r| match r {
                AgentResult::Latency { p99_ms, .. } => Some(*p99_ms),
                _ => None,
            }),
            "ms",
            100.0,
            false,
            "<= 100 ms",
        ),
        (
            "line appended → record acknowledged, p50",
            pick(&|r| match r {
                AgentResult::Latency { p50_ms, .. } => Some(*p50_ms),
                _ => None,
            }),
            "ms",
            f64::NAN,
            false,
            "(info)",
        ),
    ];
    println!("| metric | rill-agent | target | status |");
    println!("|---|---|---|---|");
    for (name, (value, n), unit, target, higher_better, target_text) in rows {
        let Some(v) = value else {
            println!("| {name} | not measured | {target_text} | - |");
            continue;
        };
        let status = if target.is_nan() {
            "-"
        } else if (higher_better && v >= target) || (!higher_better && v <= target) {
            "ok"
        } else {
            "MISSED"
        };
        let runs = if n > 1 {
            format!(" (median of {n})")
        } else {
            String::new()
        };
        println!("| {name} | {v:.2} {unit}{runs} | {target_text} | {status} |");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn results_round_trip_as_tagged_json() {
        let r = AgentResult::Idle {
            files: 100,
            seconds: 30.0,
            cpu_pct: 0.1,
            rss_mib: 9.0,
        };
        let s = serde_json::to_string(&r).unwrap();
        assert!(s.starts_with(r#"{"kind":"agent_idle""#));
        assert!(matches!(
            serde_json::from_str::<AgentResult>(&s).unwrap(),
            AgentResult::Idle { files: 100, .. }
        ));
    }
}
