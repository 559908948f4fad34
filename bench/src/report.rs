//! `rill-bench report`: fold the JSON lines of several runs into one Markdown table of medians,
//! checked against the targets of issue 2 (produce, consume) and issue 3 (rebalance, commits).
//! Medians because the 2-core machine is noisy and one unlucky run should not decide the
//! verdict; the spread is printed next to each median.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use serde::de::DeserializeOwned;

use crate::commits::CommitsResult;
use crate::consume::ConsumeResult;
use crate::procfs;
use crate::produce::ProduceResult;
use crate::rebalance::RebalanceResult;

const PRODUCE_TARGET_RPS: f64 = 500_000.0;
const CONSUME_TARGET_RPS: f64 = 1_000_000.0;
const RSS_TARGET_MIB: f64 = 64.0;
/// Issue 3: a 4-member group forms within this much beyond the broker's initial join delay.
const REBALANCE_TARGET_MS: f64 = 500.0;
/// Issue 3: OffsetCommit throughput of the broker.
const COMMITS_TARGET_PER_SEC: f64 = 20_000.0;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// File of JSON lines printed by `produce`, `consume`, `rebalance` and `commits` (other
    /// lines are ignored). Each family present gets its own table.
    #[arg(long)]
    pub input: PathBuf,

    /// PID of the (still running) local broker: its peak RSS and total CPU go in the table.
    #[arg(long)]
    pub broker_pid: Option<u32>,

    /// Disk sequential write speed measured in the same run, MB/s (10^6 bytes).
    #[arg(long)]
    pub disk_mb_per_sec: Option<f64>,

    /// Name of the broker column.
    #[arg(long, default_value = "rill")]
    pub label: String,
}

/// What the broker process used over its whole life, read just before it is stopped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BrokerUsage {
    pub peak_rss_bytes: u64,
    pub cpu_seconds: f64,
}

pub fn run(args: &Args) -> Result<()> {
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let (produce, consume) = parse_results(&text)?;
    let (rebalance, commits) = parse_group_results(&text)?;
    let has_groups = !rebalance.is_empty() || !commits.is_empty();
    if produce.is_empty() && consume.is_empty() {
        if !has_groups {
            bail!(
                "{} holds no produce, consume, rebalance or commits results",
                args.input.display()
            );
        }
        // bench/groups.sh: only the consumer-group table.
        print!("{}", render_groups(&args.label, &rebalance, &commits));
        return Ok(());
    }
    let broker = match args.broker_pid {
        Some(pid) => Some(BrokerUsage {
            peak_rss_bytes: procfs::peak_rss_bytes(pid)?,
            cpu_seconds: procfs::cpu_seconds(pid)?,
        }),
        None => None,
    };
    print!(
        "{}",
        render(
            &args.label,
            &produce,
            &consume,
            broker,
            args.disk_mb_per_sec
        )
    );
    if has_groups {
        print!("\n{}", render_groups(&args.label, &rebalance, &commits));
    }
    Ok(())
}

fn parse_results(text: &str) -> Result<(Vec<ProduceResult>, Vec<ConsumeResult>)> {
    parse_two_kinds(text, "produce", "consume")
}

/// The `rebalance` and `commits` lines, for the consumer-group table.
fn parse_group_results(text: &str) -> Result<(Vec<RebalanceResult>, Vec<CommitsResult>)> {
    parse_two_kinds(text, "rebalance", "commits")
}

/// The JSON lines of `text` whose `kind` is `first` or `second`, each parsed as its type;
/// other lines (and lines of other kinds) are skipped.
fn parse_two_kinds<A: DeserializeOwned, B: DeserializeOwned>(
    text: &str,
    first: &str,
    second: &str,
) -> Result<(Vec<A>, Vec<B>)> {
    let (mut firsts, mut seconds) = (Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('{') {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("line {}: not JSON", n + 1))?;
        let kind = value.get("kind").and_then(|k| k.as_str());
        if kind == Some(first) {
            firsts.push(serde_json::from_value(value).with_context(|| format!("line {}", n + 1))?);
        } else if kind == Some(second) {
            seconds.push(serde_json::from_value(value).with_context(|| format!("line {}", n + 1))?);
        }
    }
    Ok((firsts, seconds))
}

/// Median and range of a set of runs.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

fn stat(values: impl IntoIterator<Item = f64>) -> Option<Stat> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    };
    Some(Stat {
        median,
        min: v[0],
        max: v[v.len() - 1],
    })
}

struct Row {
    metric: String,
    value: String,
    target: String,
    /// None: no target. Some(true): met. Some(false): missed.
    met: Option<bool>,
}

impl Row {
    fn info(metric: impl Into<String>, value: String) -> Self {
        Row {
            metric: metric.into(),
            value,
            target: String::new(),
            met: None,
        }
    }
}

fn render(
    label: &str,
    produce: &[ProduceResult],
    consume: &[ConsumeResult],
    broker: Option<BrokerUsage>,
    disk_mb_per_sec: Option<f64>,
) -> String {
    let mut groups: BTreeMap<i32, (Vec<&ProduceResult>, Vec<&ConsumeResult>)> = BTreeMap::new();
    for p in produce {
        groups.entry(p.partitions).or_default().0.push(p);
    }
    for c in consume {
        groups.entry(c.partitions).or_default().1.push(c);
    }

    let mut rows = Vec::new();
    for (partitions, (ps, cs)) in &groups {
        let part = if *partitions == 1 {
            "1 partition".to_string()
        } else {
            format!("{partitions} partitions")
        };
        if let Some(s) = stat(ps.iter().map(|p| p.records_per_sec)) {
            rows.push(Row {
                metric: format!("produce records/s, {part}"),
                value: spread(s, thousands),
                target: format!("≥ {}", thousands(PRODUCE_TARGET_RPS)),
                met: Some(s.median >= PRODUCE_TARGET_RPS),
            });
        }
        if let Some(s) = stat(ps.iter().map(|p| p.mb_per_sec)) {
            rows.push(Row::info(
                format!("produce MB/s, {part}"),
                spread(s, |x| format!("{x:.1}")),
            ));
        }
        if let Some(s) = stat(ps.iter().map(|p| p.latency_ms.p50)) {
            rows.push(Row::info(
                format!("produce latency p50 ms, {part}"),
                spread(s, ms),
            ));
        }
        if let Some(s) = stat(ps.iter().map(|p| p.latency_ms.p99)) {
            rows.push(Row::info(
                format!("produce latency p99 ms, {part}"),
                spread(s, ms),
            ));
        }
        if let Some(s) = stat(cs.iter().map(|c| c.records_per_sec)) {
            rows.push(Row {
                metric: format!("consume records/s, {part}"),
                value: spread(s, thousands),
                target: format!("≥ {}", thousands(CONSUME_TARGET_RPS)),
                met: Some(s.median >= CONSUME_TARGET_RPS),
            });
        }
        if let Some(s) = stat(cs.iter().map(|c| c.mb_per_sec)) {
            rows.push(Row::info(
                format!("consume MB/s, {part}"),
                spread(s, |x| format!("{x:.1}")),
            ));
        }
        // CPU seconds per phase, and as cores busy: on a 2-core box shared with the client,
        // a broker near 1 core is the bottleneck; one well under it is waiting on something.
        let cpu_row = |phase: &str, pairs: Vec<(Option<f64>, f64)>| {
            let cpu = stat(pairs.iter().filter_map(|(c, _)| *c))?;
            let cores = stat(pairs.iter().filter_map(|(c, s)| c.map(|c| c / s.max(1e-9))))?;
            Some(Row::info(
                format!("broker CPU s during {phase}, {part}"),
                format!("{:.2} ({:.2} cores)", cpu.median, cores.median),
            ))
        };
        rows.extend(cpu_row(
            "produce",
            ps.iter().map(|p| (p.broker_cpu_s, p.seconds)).collect(),
        ));
        rows.extend(cpu_row(
            "consume",
            cs.iter().map(|c| (c.broker_cpu_s, c.seconds)).collect(),
        ));
        if let (Some(disk), Some(s)) = (disk_mb_per_sec, stat(ps.iter().map(|p| p.mb_per_sec))) {
            if disk > 0.0 {
                rows.push(Row::info(
                    format!("produce MB/s ÷ disk MB/s, {part}"),
                    format!("{:.2}", s.median / disk),
                ));
            }
        }
    }

    match broker {
        Some(b) => {
            let mib = b.peak_rss_bytes as f64 / (1024.0 * 1024.0);
            rows.push(Row {
                metric: "broker peak RSS MiB (VmHWM)".into(),
                value: format!("{mib:.1}"),
                target: format!("≤ {RSS_TARGET_MIB:.0}"),
                met: Some(mib <= RSS_TARGET_MIB),
            });
            rows.push(Row::info(
                "broker CPU s, whole life",
                format!("{:.2}", b.cpu_seconds),
            ));
        }
        None => {
            rows.push(Row {
                metric: "broker peak RSS MiB (VmHWM)".into(),
                value: "n/a".into(),
                target: format!("≤ {RSS_TARGET_MIB:.0}"),
                met: None,
            });
            rows.push(Row::info("broker CPU s, whole life", "n/a".into()));
        }
    }
    rows.push(Row::info(
        "disk sequential write MB/s (dd, fdatasync)",
        disk_mb_per_sec.map_or("n/a".into(), |d| format!("{d:.1}")),
    ));

    let mut out = String::new();
    if let Some(p) = produce.first() {
        out.push_str(&format!(
            "{} records × {} B, acks={}; {} produce and {} consume runs; median (min–max). \
             MB = 10^6 payload bytes.\n\n",
            thousands(p.records as f64),
            p.record_bytes,
            p.acks,
            produce.len(),
            consume.len()
        ));
    }
    out.push_str(&format!(
        "| metric | {label} | target | status |\n|---|---:|---:|---|\n"
    ));
    for r in &rows {
        let status = match r.met {
            None => "",
            Some(true) => "ok",
            Some(false) => "**MISSED**",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {status} |\n",
            r.metric, r.value, r.target
        ));
    }
    out.push('\n');
    let missed: Vec<&Row> = rows.iter().filter(|r| r.met == Some(false)).collect();
    if missed.is_empty() {
        out.push_str("All targets met.\n");
    } else {
        for r in missed {
            out.push_str(&format!(
                "MISSED: {} = {} (target {})\n",
                r.metric, r.value, r.target
            ));
        }
    }
    out
}

/// The consumer-group table: rebalance time per configured join delay, and OffsetCommit
/// throughput and latency per number of concurrent committers. Rows with a target carry the
/// ratio of the median to the target, so "how far off" is read without arithmetic.
fn render_groups(label: &str, rebalance: &[RebalanceResult], commits: &[CommitsResult]) -> String {
    // (row, median / target)
    let mut rows: Vec<(Row, Option<f64>)> = Vec::new();

    let mut by_setup: BTreeMap<(std::cmp::Reverse<u64>, &str, u32, i32), Vec<&RebalanceResult>> =
        BTreeMap::new();
    for r in rebalance {
        by_setup
            .entry((
                std::cmp::Reverse(r.join_delay_ms),
                r.assignor.as_str(),
                r.members,
                r.partitions,
            ))
            .or_default()
            .push(r);
    }
    for ((std::cmp::Reverse(delay), assignor, members, partitions), rs) in &by_setup {
        let setup = format!(
            "{members} members × {partitions} partitions, {assignor}, join delay {delay} ms"
        );
        if let Some(s) = stat(rs.iter().map(|r| r.ms)) {
            rows.push((
                Row::info(format!("rebalance ms, {setup}"), spread(s, ms0)),
                None,
            ));
        }
        if let Some(s) = stat(rs.iter().map(|r| r.beyond_delay_ms)) {
            rows.push((
                Row {
                    metric: format!("rebalance ms beyond the join delay, {setup}"),
                    value: spread(s, ms0),
                    target: format!("≤ {REBALANCE_TARGET_MS:.0}"),
                    met: Some(s.median <= REBALANCE_TARGET_MS),
                },
                Some(s.median / REBALANCE_TARGET_MS),
            ));
        }
        if let Some(s) = stat(
            rs.iter()
                .map(|r| f64::from(r.assign_callbacks) / f64::from(*members)),
        ) {
            rows.push((
                Row::info(
                    format!("assignment rounds (assign callbacks ÷ members), {setup}"),
                    spread(s, |x| format!("{x:.2}")),
                ),
                None,
            ));
        }
        if let Some(s) = stat(rs.iter().map(|r| r.close_ms)) {
            rows.push((
                Row::info(format!("close (LeaveGroup) ms, {setup}"), spread(s, ms0)),
                None,
            ));
        }
    }

    let mut by_conns: BTreeMap<u32, Vec<&CommitsResult>> = BTreeMap::new();
    for c in commits {
        by_conns.entry(c.connections).or_default().push(c);
    }
    let mut best: Option<(u32, Stat)> = None;
    for (conns, cs) in &by_conns {
        let who = committers(*conns);
        if let Some(s) = stat(cs.iter().map(|c| c.commits_per_sec)) {
            rows.push((
                Row::info(
                    format!("OffsetCommit commits/s, {who}"),
                    spread(s, thousands),
                ),
                None,
            ));
            if best.is_none_or(|(_, b)| s.median > b.median) {
                best = Some((*conns, s));
            }
        }
        if let Some(s) = stat(cs.iter().map(|c| c.latency_ms.p50)) {
            rows.push((
                Row::info(format!("commit latency p50 ms, {who}"), spread(s, ms)),
                None,
            ));
        }
        if let Some(s) = stat(cs.iter().map(|c| c.latency_ms.p99)) {
            rows.push((
                Row::info(format!("commit latency p99 ms, {who}"), spread(s, ms)),
                None,
            ));
        }
        if let Some(s) = stat(cs.iter().map(|c| c.latency_ms.max)) {
            rows.push((
                Row::info(format!("commit latency max ms, {who}"), spread(s, ms)),
                None,
            ));
        }
        // Broker CPU per commit says what the broker could do with the cores to itself; with
        // the clients on the same 2 cores, the client side is often the limit.
        let cpu: Vec<(f64, f64)> = cs
            .iter()
            .filter_map(|c| c.broker_cpu_s.map(|cpu| (cpu, c.seconds)))
            .collect();
        if let (Some(cores), Some(per)) = (
            stat(cpu.iter().map(|(cpu, s)| cpu / s.max(1e-9))),
            stat(cs.iter().filter_map(|c| {
                c.broker_cpu_s
                    .map(|cpu| cpu * 1e6 / (c.commits.max(1) as f64))
            })),
        ) {
            rows.push((
                Row::info(
                    format!("broker CPU during commits, {who}"),
                    format!("{:.2} cores, {:.1} µs/commit", cores.median, per.median),
                ),
                None,
            ));
        }
    }
    // The target is the broker's throughput, so it is judged on the committer count that got
    // the most out of it: one librdkafka consumer only ever has one commit in flight.
    if let Some((conns, s)) = best {
        rows.push((
            Row {
                metric: format!("OffsetCommit commits/s, best ({})", committers(conns)),
                value: thousands(s.median),
                target: format!("≥ {}", thousands(COMMITS_TARGET_PER_SEC)),
                met: Some(s.median >= COMMITS_TARGET_PER_SEC),
            },
            Some(s.median / COMMITS_TARGET_PER_SEC),
        ));
    }

    let mut out = format!(
        "{} rebalance and {} commit runs; median (min–max). Ratio = median ÷ target.\n\n",
        rebalance.len(),
        commits.len()
    );
    out.push_str(&format!(
        "| metric | {label} | target | ratio | status |\n|---|---:|---:|---:|---|\n"
    ));
    for (r, ratio) in &rows {
        let status = match r.met {
            None => "",
            Some(true) => "ok",
            Some(false) => "**MISSED**",
        };
        let ratio = ratio.map_or(String::new(), |x| format!("{x:.2}"));
        out.push_str(&format!(
            "| {} | {} | {} | {ratio} | {status} |\n",
            r.metric, r.value, r.target
        ));
    }
    out.push('\n');
    let missed: Vec<&Row> = rows
        .iter()
        .map(|(r, _)| r)
        .filter(|r| r.met == Some(false))
        .collect();
    if missed.is_empty() {
        out.push_str("All targets met.\n");
    } else {
        for r in missed {
            out.push_str(&format!(
                "MISSED: {} = {} (target {})\n",
                r.metric, r.value, r.target
            ));
        }
    }
    out
}

fn committers(n: u32) -> String {
    if n == 1 {
        "1 committer".into()
    } else {
        format!("{n} committers")
    }
}

fn spread(s: Stat, fmt: impl Fn(f64) -> String) -> String {
    if s.min == s.max {
        fmt(s.median)
    } else {
        format!("{} ({}–{})", fmt(s.median), fmt(s.min), fmt(s.max))
    }
}

fn ms(x: f64) -> String {
    format!("{x:.2}")
}

/// Whole milliseconds: rebalances take seconds, and their spread is tens of ms.
fn ms0(x: f64) -> String {
    format!("{x:.0}")
}

/// 1234567.8 -> "1,234,568".
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 && digits != "0" {
        out.insert(0, '-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::produce::Latency;

    fn produce(partitions: i32, rps: f64, cpu: Option<f64>) -> ProduceResult {
        ProduceResult {
            kind: "produce".into(),
            topic: "t".into(),
            partitions,
            records: 1_000_000,
            record_bytes: 100,
            acks: "all".into(),
            seconds: 1_000_000.0 / rps,
            records_per_sec: rps,
            mb_per_sec: rps * 100.0 / 1e6,
            latency_ms: Latency {
                p50: 5.0,
                p99: 20.0,
                p999: 30.0,
                max: 40.0,
            },
            broker_cpu_s: cpu,
        }
    }

    fn consume(partitions: i32, rps: f64) -> ConsumeResult {
        ConsumeResult {
            kind: "consume".into(),
            topic: "t".into(),
            partitions,
            records: 1_000_000,
            bytes: 100_000_000,
            seconds: 1_000_000.0 / rps,
            records_per_sec: rps,
            mb_per_sec: rps * 100.0 / 1e6,
            broker_cpu_s: Some(0.5),
        }
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(-1234.0), "-1,234");
    }

    #[test]
    fn median_of_odd_and_even_runs() {
        assert_eq!(
            stat([3.0, 1.0, 2.0]),
            Some(Stat {
                median: 2.0,
                min: 1.0,
                max: 3.0
            })
        );
        assert_eq!(stat([4.0, 1.0, 2.0, 3.0]).map(|s| s.median), Some(2.5));
        assert_eq!(stat([f64::NAN]), None);
        assert_eq!(stat(Vec::new()), None);
    }

    #[test]
    fn parses_only_result_lines() {
        let p = serde_json::to_string(&produce(1, 1.0, None)).unwrap();
        let c = serde_json::to_string(&consume(1, 1.0)).unwrap();
        let text = format!("noise\n{p}\n{{\"kind\":\"other\"}}\n\n{c}\n");
        let (ps, cs) = parse_results(&text).unwrap();
        assert_eq!((ps.len(), cs.len()), (1, 1));
        assert!(parse_results("{not json").is_err());
    }

    #[test]
    fn table_marks_missed_targets_by_median() {
        let ps = [
            produce(1, 400_000.0, Some(2.0)),
            produce(1, 450_000.0, Some(2.0)),
            produce(1, 900_000.0, Some(2.0)),
        ];
        let cs = [consume(1, 1_500_000.0)];
        let usage = BrokerUsage {
            peak_rss_bytes: 100 << 20,
            cpu_seconds: 9.0,
        };
        let out = render("rill", &ps, &cs, Some(usage), Some(200.0));
        assert!(out.contains("| produce records/s, 1 partition | 450,000 (400,000–900,000) | ≥ 500,000 | **MISSED** |"), "{out}");
        assert!(
            out.contains("| consume records/s, 1 partition | 1,500,000 | ≥ 1,000,000 | ok |"),
            "{out}"
        );
        assert!(
            out.contains("| broker peak RSS MiB (VmHWM) | 100.0 | ≤ 64 | **MISSED** |"),
            "{out}"
        );
        assert!(
            out.contains("| produce MB/s ÷ disk MB/s, 1 partition | 0.23 |"),
            "{out}"
        );
        assert!(
            out.contains("broker CPU s during produce, 1 partition | 2.00 (0.90 cores)"),
            "{out}"
        );
        assert!(out.contains("MISSED: produce records/s"), "{out}");
        assert!(!out.contains("All targets met"));
    }

    fn rebalance(delay: u64, ms: f64) -> RebalanceResult {
        RebalanceResult {
            kind: "rebalance".into(),
            topic: "t".into(),
            group: "g".into(),
            run: 1,
            partitions: 16,
            members: 4,
            assignor: "range".into(),
            join_delay_ms: delay,
            ms,
            beyond_delay_ms: ms - delay as f64,
            subscribe_spread_ms: 0.1,
            assign_callbacks: 4,
            shares: vec![4, 4, 4, 4],
            close_ms: 100.0,
        }
    }

    fn commits(connections: u32, rate: f64) -> CommitsResult {
        CommitsResult {
            kind: "commits".into(),
            topic: "t".into(),
            group: "g".into(),
            connections,
            seconds: 5.0,
            commits: (rate * 5.0) as u64,
            commits_per_sec: rate,
            latency_ms: Latency {
                p50: 0.5,
                p99: 2.0,
                p999: 3.0,
                max: 9.0,
            },
            broker_cpu_s: Some(2.5),
        }
    }

    #[test]
    fn groups_table_judges_medians_and_the_best_committer_count() {
        let rs = [
            rebalance(3000, 3100.0),
            rebalance(3000, 3700.0),
            rebalance(3000, 3600.0),
            rebalance(0, 40.0),
        ];
        let cs = [commits(1, 5_000.0), commits(16, 25_000.0)];
        let text: String = rs
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .chain(cs.iter().map(|c| serde_json::to_string(c).unwrap()))
            .collect::<Vec<_>>()
            .join("\n");
        let (parsed_r, parsed_c) = parse_group_results(&text).unwrap();
        assert_eq!((parsed_r.len(), parsed_c.len()), (4, 2));
        assert_eq!(parse_results(&text).unwrap(), (vec![], vec![]));

        let out = render_groups("rill", &parsed_r, &parsed_c);
        let delay_3000 = "4 members × 16 partitions, range, join delay 3000 ms";
        assert!(
            out.contains(&format!(
                "| rebalance ms beyond the join delay, {delay_3000} | 600 (100–700) | ≤ 500 | 1.20 | **MISSED** |"
            )),
            "{out}"
        );
        assert!(
            out.contains("join delay 0 ms | 40 | ≤ 500 | 0.08 | ok |"),
            "{out}"
        );
        // The 3000 ms group comes first: it is the headline setting.
        assert!(out.find("join delay 3000").unwrap() < out.find("join delay 0 ms").unwrap());
        assert!(
            out.contains("| OffsetCommit commits/s, 1 committer | 5,000 |  |  |  |"),
            "{out}"
        );
        assert!(
            out.contains(
                "| OffsetCommit commits/s, best (16 committers) | 25,000 | ≥ 20,000 | 1.25 | ok |"
            ),
            "{out}"
        );
        assert!(
            out.contains("broker CPU during commits, 16 committers | 0.50 cores, 20.0 µs/commit"),
            "{out}"
        );
        assert!(
            out.contains("MISSED: rebalance ms beyond the join delay"),
            "{out}"
        );
    }

    #[test]
    fn table_without_a_local_broker() {
        let c = ConsumeResult {
            broker_cpu_s: None,
            ..consume(3, 2e6)
        };
        let out = render("kafka", &[produce(3, 600_000.0, None)], &[c], None, None);
        assert!(
            out.contains("| metric | kafka | target | status |"),
            "{out}"
        );
        assert!(
            out.contains("produce records/s, 3 partitions | 600,000 |"),
            "{out}"
        );
        assert!(
            out.contains("| broker peak RSS MiB (VmHWM) | n/a | ≤ 64 |  |"),
            "{out}"
        );
        assert!(!out.contains("broker CPU s during"));
        assert!(out.contains("All targets met."));
    }
}
