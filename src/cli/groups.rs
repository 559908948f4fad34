//! `rill groups`: consumer groups and their lag over the plain Kafka protocol (ListGroups,
//! DescribeGroups, OffsetFetch, ListOffsets, Fetch), so it works on rill and on any Kafka
//! cluster. It only observes: it never joins a group nor commits for one. The lag arithmetic
//! and the Burrow-style status live in the library (`rill::lag`) for the dashboard to share.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use rill::client::BrokerArgs;
use rill::lag::{GroupSnapshot, Probe, Status, Window};

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List consumer groups: state, members and total lag (status too, with --watch)
    List(Common),
    /// Show a group's members, assignments and per-partition lag in records and in time
    #[command(after_help = "Example:\n  rill groups describe billing --watch --interval 5")]
    Describe {
        /// The consumer group id
        group: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Args)]
pub struct Common {
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Print JSON instead of a table (with --watch: one JSON document per line per sample)
    #[arg(long)]
    json: bool,
    /// Re-sample every --interval seconds and show a status (OK, LAGGING, STALLED, EMPTY)
    /// from the last --window samples; Ctrl-C exits
    #[arg(long)]
    watch: bool,
    /// Seconds between samples with --watch
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS", value_parser = parse_interval)]
    interval: f64,
    /// Samples the --watch status looks back over (at least 2)
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u32).range(2..=10_000))]
    window: u32,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.1..=86_400.0).contains(&v) => Ok(v),
        _ => Err(format!("expected seconds between 0.1 and 86400, got {s:?}")),
    }
}

pub fn run(command: GroupsCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match command {
            GroupsCommand::List(common) => list(&common).await,
            GroupsCommand::Describe { group, common } => describe(&common, &group).await,
        }
    })
}

/// Colour for the status word, only on a terminal and never with NO_COLOR set.
struct Style {
    colour: bool,
}

impl Style {
    fn new() -> Style {
        Style {
            colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn status(&self, status: Option<Status>) -> String {
        let Some(status) = status else {
            return "-".to_string();
        };
        if !self.colour {
            return status.to_string();
        }
        let code = match status {
            Status::Ok => "32",
            Status::Lagging => "33",
            Status::Stalled => "31",
            Status::Empty => "2",
        };
        format!("\x1b[{code}m{status}\x1b[0m")
    }
}

/// How a `--watch` frame reaches the screen: redrawn in place on a terminal, appended
/// otherwise (a pipe or a file gets successive snapshots).
fn emit(frame: &str, redraw: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if redraw {
        // Home and clear, then the frame: a plain redraw, no alternate screen to restore.
        write!(out, "\x1b[H\x1b[2J")?;
    }
    out.write_all(frame.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Runs `sample` every interval until Ctrl-C. The first sample's error ends the command (a
/// typo in a group name or broker address should not loop); later errors are shown and the
/// next sample retried, since a broker restart during a watch is worth riding out.
async fn watch_loop<F>(common: &Common, mut sample: F) -> anyhow::Result<()>
where
    F: FnMut() -> anyhow::Result<String>,
{
    let redraw = std::io::stdout().is_terminal() && !common.json;
    let interval = Duration::from_secs_f64(common.interval);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut first = true;
    loop {
        match sample() {
            // Appended text snapshots are told apart by a blank line; JSON lines need none.
            Ok(frame) if !first && !redraw && !common.json => emit(&format!("\n{frame}"), false)?,
            Ok(frame) => emit(&frame, redraw)?,
            Err(e) if first => return Err(e),
            Err(e) => {
                let when = utc_time(rill::lag::now_ms());
                emit(&format!("sample at {when} failed: {e:#}\n"), false)?;
            }
        }
        first = false;
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// list
// ---------------------------------------------------------------------------------------------

async fn list(common: &Common) -> anyhow::Result<()> {
    common.brokers.check().map_err(anyhow::Error::msg)?;
    let mut probe = Probe::new(&common.brokers)?;
    if !common.watch {
        let snapshots = list_sample(&mut probe)?;
        if common.json {
            let rows: Vec<Value> = snapshots.iter().map(|s| list_json(s, None)).collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else if snapshots.is_empty() {
            eprintln!("no consumer groups");
        } else {
            print!("{}", list_table(&snapshots, None, &Style::new()));
        }
        return Ok(());
    }
    let style = Style::new();
    let mut windows: std::collections::HashMap<String, Window> = Default::default();
    watch_loop(common, || {
        let snapshots = list_sample(&mut probe)?;
        // Groups that disappeared take their history with them.
        windows.retain(|g, _| snapshots.iter().any(|s| &s.info.group == g));
        let mut statuses = Vec::new();
        for s in &snapshots {
            let window = windows
                .entry(s.info.group.clone())
                .or_insert_with(|| Window::new(common.window as usize));
            window.push(s.sample());
            statuses.push(window.status());
        }
        if common.json {
            let rows: Vec<Value> = snapshots
                .iter()
                .zip(&statuses)
                .map(|(s, status)| list_json(s, Some(*status)))
                .collect();
            Ok(format!("{}\n", Value::Array(rows)))
        } else {
            Ok(format!(
                "{}{}",
                watch_header(common),
                list_table(&snapshots, Some(&statuses), &style)
            ))
        }
    })
    .await
}

fn list_sample(probe: &mut Probe) -> anyhow::Result<Vec<GroupSnapshot>> {
    let mut groups = probe.list_groups()?;
    groups.sort_by(|a, b| a.group.cmp(&b.group));
    groups
        .into_iter()
        .map(|g| probe.snapshot(g, false))
        .collect()
}

/// `status`: None outside --watch (no "status" key); Some(None) while the window is short.
fn list_json(s: &GroupSnapshot, status: Option<Option<Status>>) -> Value {
    let mut row = json!({
        "group": s.info.group,
        "state": s.info.state,
        "protocol_type": s.info.protocol_type,
        "members": s.info.members.len(),
        "total_lag": s.total_lag(),
    });
    if let Some(status) = status {
        row["status"] = json!(status.map(Status::as_str));
    }
    row
}

fn list_table(
    snapshots: &[GroupSnapshot],
    statuses: Option<&[Option<Status>]>,
    style: &Style,
) -> String {
    let width = snapshots
        .iter()
        .map(|s| s.info.group.chars().count())
        .max()
        .unwrap_or(0)
        .max(5);
    let mut out = format!(
        "{:width$}  {:<19}  {:>7}  {:>12}",
        "GROUP", "STATE", "MEMBERS", "LAG"
    );
    if statuses.is_some() {
        out.push_str("  STATUS");
    }
    out.push('\n');
    for (i, s) in snapshots.iter().enumerate() {
        out.push_str(&format!(
            "{:width$}  {:<19}  {:>7}  {:>12}",
            s.info.group,
            s.info.state,
            s.info.members.len(),
            s.total_lag()
        ));
        if let Some(statuses) = statuses {
            out.push_str("  ");
            out.push_str(&style.status(statuses.get(i).copied().flatten()));
        }
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------------------------
// describe
// ---------------------------------------------------------------------------------------------

async fn describe(common: &Common, group: &str) -> anyhow::Result<()> {
    common.brokers.check().map_err(anyhow::Error::msg)?;
    let mut probe = Probe::new(&common.brokers)?;
    if !common.watch {
        let info = probe.group(group)?;
        let snapshot = probe.snapshot(info, true)?;
        if common.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&describe_json(&snapshot, None))?
            );
        } else {
            print!("{}", describe_text(&snapshot, None, &Style::new()));
        }
        return Ok(());
    }
    let style = Style::new();
    let mut window = Window::new(common.window as usize);
    watch_loop(common, || {
        let info = probe.group(group)?;
        let snapshot = probe.snapshot(info, true)?;
        window.push(snapshot.sample());
        let status = window.status();
        if common.json {
            Ok(format!("{}\n", describe_json(&snapshot, Some(status))))
        } else {
            Ok(format!(
                "{}{}",
                watch_header(common),
                describe_text(&snapshot, Some((status, &window)), &style)
            ))
        }
    })
    .await
}

fn watch_header(common: &Common) -> String {
    format!(
        "every {}s, sampled {} (Ctrl-C to stop)\n",
        common.interval,
        utc_time(rill::lag::now_ms())
    )
}

/// HH:MM:SS UTC of a Unix-epoch millisecond time: enough to see the frames advance, without
/// a date-time dependency.
fn utc_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

const NO_COMMIT_NOTE: &str = "no commit; lag from log start";

fn describe_json(s: &GroupSnapshot, status: Option<Option<Status>>) -> Value {
    let members: Vec<Value> = s
        .info
        .members
        .iter()
        .map(|m| {
            let assignment = m.assignment.as_ref().map(|a| {
                a.iter()
                    .map(|(topic, partitions)| json!({"topic": topic, "partitions": partitions}))
                    .collect::<Vec<_>>()
            });
            let mut v = json!({
                "member_id": m.member_id,
                "client_id": m.client_id,
                "host": m.host,
                "assignment": assignment,
            });
            if let Some(e) = &m.assignment_error {
                v["assignment_error"] = json!(e);
            }
            v
        })
        .collect();
    let partitions: Vec<Value> = s
        .partitions
        .iter()
        .map(|p| {
            let mut v = json!({
                "topic": p.topic,
                "partition": p.partition,
                "committed": p.committed,
                "start": p.start,
                "end": p.end,
                "lag": p.lag,
                "lag_ms": p.lag_ms,
                "owner": p.owner,
            });
            if p.committed.is_none() {
                v["note"] = json!(NO_COMMIT_NOTE);
            }
            v
        })
        .collect();
    let mut v = json!({
        "group": s.info.group,
        "state": s.info.state,
        "protocol_type": s.info.protocol_type,
        "protocol": s.info.protocol,
        "sampled_at_ms": s.at_ms,
        "total_lag": s.total_lag(),
        "members": members,
        "partitions": partitions,
    });
    if let Some(status) = status {
        v["status"] = json!(status.map(Status::as_str));
    }
    v
}

fn describe_text(
    s: &GroupSnapshot,
    watch: Option<(Option<Status>, &Window)>,
    style: &Style,
) -> String {
    let info = &s.info;
    let mut out = format!("group {}: {}", info.group, info.state);
    if !info.protocol.is_empty() {
        out.push_str(&format!(", {} {}", info.protocol_type, info.protocol));
    }
    out.push_str(&format!(
        ", {} member{}, total lag {}\n",
        info.members.len(),
        if info.members.len() == 1 { "" } else { "s" },
        s.total_lag()
    ));
    if let Some((status, window)) = watch {
        match status {
            Some(status) => out.push_str(&format!(
                "status: {} (over {} samples, {})\n",
                style.status(Some(status)),
                window.len(),
                human_ms(window.span_ms())
            )),
            None => out.push_str("status: - (needs 2 samples)\n"),
        }
    }

    out.push('\n');
    if s.partitions.is_empty() {
        out.push_str("no committed offsets and no assigned partitions\n");
    } else {
        // The member column shows client id and host; member ids are long and listed below.
        let owner_name = |id: &str| {
            info.members
                .iter()
                .find(|m| m.member_id == id)
                .map(|m| format!("{} {}", m.client_id, m.host))
                .unwrap_or_else(|| id.to_string())
        };
        let rows: Vec<[String; 7]> = s
            .partitions
            .iter()
            .map(|p| {
                [
                    p.topic.clone(),
                    p.partition.to_string(),
                    p.committed
                        .map_or_else(|| "-".to_string(), |c| c.to_string()),
                    p.end.to_string(),
                    if p.committed.is_none() {
                        format!("{}*", p.lag)
                    } else {
                        p.lag.to_string()
                    },
                    p.lag_ms.map_or_else(|| "?".to_string(), human_ms),
                    p.owner
                        .as_deref()
                        .map(owner_name)
                        .unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        let header = [
            "TOPIC",
            "PARTITION",
            "COMMITTED",
            "END",
            "LAG",
            "LAG TIME",
            "MEMBER",
        ];
        out.push_str(&table(
            &header,
            &rows,
            &[false, true, true, true, true, true, false],
        ));
        if s.partitions.iter().any(|p| p.committed.is_none()) {
            out.push_str("* no commit: lag counted from the log start\n");
        }
        if s.partitions.iter().any(|p| p.lag_ms.is_none()) {
            out.push_str("? the oldest unconsumed record could not be read in time\n");
        }
    }

    if !info.members.is_empty() {
        out.push('\n');
        let rows: Vec<[String; 4]> = info
            .members
            .iter()
            .map(|m| {
                let assignment = match (&m.assignment, &m.assignment_error) {
                    (Some(a), _) if a.is_empty() => "-".to_string(),
                    (Some(a), _) => a
                        .iter()
                        .map(|(t, ps)| {
                            let ps: Vec<String> = ps.iter().map(i32::to_string).collect();
                            format!("{t}[{}]", ps.join(","))
                        })
                        .collect::<Vec<_>>()
                        .join(" "),
                    (None, Some(e)) => format!("(undecodable: {e})"),
                    (None, None) => format!("({} protocol)", info.protocol_type),
                };
                [
                    m.member_id.clone(),
                    m.client_id.clone(),
                    m.host.clone(),
                    assignment,
                ]
            })
            .collect();
        out.push_str(&table(
            &["MEMBER ID", "CLIENT ID", "HOST", "ASSIGNMENT"],
            &rows,
            &[false; 4],
        ));
    }
    out
}

/// A left/right-aligned text table; the last column is never padded.
fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]], right: &[bool; N]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            if i + 1 == N {
                s.push_str(cell);
            } else if right[i] {
                s.push_str(&format!("{cell:>w$}", w = widths[i]));
            } else {
                s.push_str(&format!("{cell:<w$}", w = widths[i]));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// 850ms, 3.2s, 5m02s, 2h05m, 3d04h: precise where small, short where large.
fn human_ms(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = ms / 1000;
    if secs < 60 {
        return format!("{:.1}s", ms as f64 / 1000.0);
    }
    if secs < 3600 {
        return format!("{}m{:02}s", secs / 60, secs % 60);
    }
    if secs < 86_400 {
        return format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60);
    }
    format!("{}d{:02}h", secs / 86_400, (secs % 86_400) / 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_ms(-5), "0ms");
        assert_eq!(human_ms(850), "850ms");
        assert_eq!(human_ms(3_240), "3.2s");
        assert_eq!(human_ms(302_000), "5m02s");
        assert_eq!(human_ms(7_500_000), "2h05m");
        assert_eq!(human_ms(3 * 86_400_000 + 4 * 3_600_000), "3d04h");
        assert_eq!(utc_time(1_795_636_764_461), "19:59:24 UTC");
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["A", "N", "LAST"],
            &[
                ["x".into(), "10".into(), "z".into()],
                ["long".into(), "2".into(), "".into()],
            ],
            &[false, true, false],
        );
        assert_eq!(t, "A      N  LAST\nx     10  z\nlong   2  \n");
    }
}
