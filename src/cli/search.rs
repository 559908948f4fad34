//! `rill search`: search the aggregated logs over the plain Kafka protocol, so it works on rill
//! and on any Kafka cluster. The engine lives in the library (`rill::search`) for the
//! dashboard's Search view to share.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use serde_json::Value;

use rill::client::BrokerArgs;
use rill::record::{format_ts, LOGS_TOPIC};
use rill::search::query::now_ms;
use rill::search::{parse_time, Filter, Hit, Matcher, Options, Scope, Search};

/// What `rill search` does, for its entry in `rill --help` and its own help.
pub const ABOUT: &str =
    "Search the aggregated logs by regex, time, host, source and level, merged in time order";

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  rill search 'timeout|refused' --since 1h --level error\n  \
                        rill search -F 'GET /api?id=' --host web1 --host web2 --source '/var/log/*.log'\n  \
                        rill search panic --count"
)]
pub struct SearchArgs {
    /// A regex (the regex crate's syntax) matched against each record's line
    query: String,
    #[command(flatten)]
    brokers: BrokerArgs,
    /// The topic to search
    #[arg(long, default_value = LOGS_TOPIC)]
    topic: String,
    /// Only records from this long ago (15m, 1h, 2d) or this RFC 3339 time on
    #[arg(long, value_name = "1h|RFC3339")]
    since: Option<String>,
    /// Only records up to this long ago (15m, 1h, 2d) or this RFC 3339 time
    #[arg(long, value_name = "1h|RFC3339")]
    until: Option<String>,
    /// Only records from this host (repeatable: any of them)
    #[arg(long = "host", value_name = "H")]
    hosts: Vec<String>,
    /// Only records whose source (file path) matches this glob, e.g. '/var/log/nginx/*'
    #[arg(long, value_name = "GLOB")]
    source: Option<String>,
    /// Only records of this level: error, warn, info, debug, trace
    #[arg(long, value_name = "LEVEL")]
    level: Option<String>,
    /// Take QUERY literally, not as a regex
    #[arg(short = 'F', long = "fixed-strings")]
    fixed: bool,
    /// Ignore case
    #[arg(short = 'i', long = "ignore-case")]
    ignore_case: bool,
    /// Stop after N matching records (the oldest N)
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Print only the number of matching records
    #[arg(long, conflicts_with_all = ["json", "follow"])]
    count: bool,
    /// Print the matching records as JSON, one object per line
    #[arg(long)]
    json: bool,
    /// Go on searching new records as they arrive (Ctrl-C exits)
    #[arg(long, conflicts_with = "until")]
    follow: bool,
}

/// Exit status for bad input that is the user's to fix (an invalid regex or time).
const EXIT_USAGE: i32 = 2;

fn usage_error(msg: &str) -> ! {
    eprintln!("rill: error: {msg}");
    std::process::exit(EXIT_USAGE)
}

fn invalid_query(e: regex::Error) -> ! {
    usage_error(&format!("invalid query: {e}"))
}

pub fn run(args: SearchArgs) -> anyhow::Result<()> {
    Matcher::check(&args.query, args.fixed, args.ignore_case).unwrap_or_else(|e| invalid_query(e));
    let now = now_ms();
    let time = |flag: &str, v: &Option<String>| -> Option<i64> {
        v.as_deref()
            .map(|s| parse_time(s, now).unwrap_or_else(|e| usage_error(&format!("--{flag}: {e}"))))
    };
    let since_ms = time("since", &args.since);
    let until_ms = time("until", &args.until);
    let source = args
        .source
        .as_deref()
        .map(|g| Filter::source_glob(g).unwrap_or_else(|e| usage_error(&e)));
    let level = args.level.as_deref().map(|l| {
        let l = l.to_ascii_lowercase();
        if !["error", "warn", "info", "debug", "trace"].contains(&l.as_str()) {
            usage_error(&format!(
                "--level: expected error, warn, info, debug or trace, got {l:?}"
            ));
        }
        l
    });
    args.brokers.check().map_err(anyhow::Error::msg)?;
    // The regex takes about as long to build as the connections take to set up (0.3 ms
    // each), and the connections mostly wait on the broker: both at once.
    let build = || Matcher::new(&args.query, args.fixed, args.ignore_case);
    let scope = Scope {
        topic: &args.topic,
        since_ms,
        until_ms,
        follow: args.follow,
    };
    let (matcher, prepared) = std::thread::scope(|s| {
        let building = std::thread::Builder::new()
            .name("search-regex".into())
            .spawn_scoped(s, build);
        let prepared = Search::prepare(&args.brokers, scope);
        let matcher = match building {
            Ok(building) => building
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => build(),
        };
        (matcher, prepared)
    });
    let matcher = matcher.unwrap_or_else(|e| invalid_query(e));
    let options = Options {
        topic: args.topic.clone(),
        matcher: matcher.clone(),
        filter: Filter {
            hosts: args.hosts.clone(),
            source,
            level,
        },
        since_ms,
        until_ms,
        limit: args.limit,
        count_only: args.count,
        follow: args.follow,
    };
    let mut search = prepared?.start(options)?;
    let progress = std::io::stderr().is_terminal();
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut shown_progress = false;
    let mut printed = 0u64;
    loop {
        match search.next_hit(Duration::from_millis(200)) {
            Ok(hit) => {
                printed += 1;
                if shown_progress {
                    eprint!("\r\x1b[K");
                    shown_progress = false;
                }
                let written = if args.json {
                    writeln!(out, "{}", json_line(&hit))
                } else {
                    writeln!(out, "{}", text_line(&hit, &matcher, colour))
                };
                if let Err(e) = written {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return Ok(());
                    }
                    return Err(e).context("cannot write to stdout");
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = out.flush();
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if progress
            && started.elapsed() > Duration::from_millis(500)
            && last_progress.elapsed() > Duration::from_millis(200)
        {
            last_progress = Instant::now();
            let stats = &search.stats;
            let records = stats.records.load(std::sync::atomic::Ordering::Relaxed);
            let bytes = stats.bytes.load(std::sync::atomic::Ordering::Relaxed);
            let matched = if args.count {
                stats.matched.load(std::sync::atomic::Ordering::Relaxed)
            } else {
                printed
            };
            eprint!(
                "\r\x1b[Kscanned {records} records, {:.1} MB; {matched} matched",
                bytes as f64 / 1e6
            );
            shown_progress = true;
        }
    }
    if shown_progress {
        eprint!("\r\x1b[K");
    }
    let matched = search
        .stats
        .matched
        .load(std::sync::atomic::Ordering::Relaxed);
    search.finish()?;
    if args.count {
        let n = args.limit.map_or(matched, |l| matched.min(l));
        writeln!(out, "{n}")?;
    }
    out.flush().or_else(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    Ok(())
}

/// The record as JSON: a contract record as it was written (unknown fields kept), anything
/// else in the contract's shape with its raw value as the line.
fn json_line(hit: &Hit) -> String {
    if hit.fields.record.is_some() {
        if let Ok(text) = std::str::from_utf8(&hit.value) {
            let text = text.trim();
            if !text.contains('\n') {
                return text.to_string();
            }
        }
        if let Ok(v) = serde_json::from_slice::<Value>(&hit.value) {
            return v.to_string();
        }
    }
    // Written by hand to keep the contract's field order (ts, host, source, line, level).
    let ts = format_ts(UNIX_EPOCH + Duration::from_millis(hit.timestamp_ms.max(0) as u64));
    let mut out = format!("{{\"ts\":{}", Value::String(ts));
    for (key, value) in [("host", &hit.fields.host), ("source", &hit.fields.source)] {
        if let Some(v) = value {
            out.push_str(&format!(",\"{key}\":{}", Value::String(v.clone())));
        }
    }
    out.push_str(&format!(
        ",\"line\":{}",
        Value::String(hit.fields.line.clone())
    ));
    if let Some(level) = &hit.fields.level {
        out.push_str(&format!(",\"level\":{}", Value::String(level.clone())));
    }
    out.push('}');
    out
}

/// `time host level source line`, with the level coloured and the matches highlighted on a
/// terminal.
fn text_line(hit: &Hit, matcher: &Matcher, colour: bool) -> String {
    let ts = match &hit.fields.record {
        Some(rec) => rec.ts.clone(),
        None => format_ts(UNIX_EPOCH + Duration::from_millis(hit.timestamp_ms.max(0) as u64)),
    };
    let host = hit.fields.host.as_deref().unwrap_or("-");
    let source = hit.fields.source.as_deref().unwrap_or("-");
    let level = hit.fields.level.as_deref().unwrap_or("-");
    if !colour {
        return format!(
            "{ts} {host} {level:<5} {source} {}",
            hit.fields.line.replace('\n', "\\n")
        );
    }
    let level_code = match level {
        "error" => "31",
        "warn" => "33",
        "info" => "32",
        "debug" => "36",
        _ => "2",
    };
    let line = &hit.fields.line;
    let mut highlighted = String::with_capacity(line.len() + 16);
    let mut pos = 0;
    for (start, end) in matcher.find_ranges(line) {
        if !line.is_char_boundary(start) || !line.is_char_boundary(end) || start < pos {
            continue;
        }
        highlighted.push_str(&line[pos..start]);
        highlighted.push_str("\x1b[1;31m");
        highlighted.push_str(&line[start..end]);
        highlighted.push_str("\x1b[0m");
        pos = end;
    }
    highlighted.push_str(&line[pos..]);
    format!(
        "\x1b[2m{ts}\x1b[0m \x1b[1m{host}\x1b[0m \x1b[{level_code}m{level:<5}\x1b[0m \x1b[34m{source}\x1b[0m {highlighted}"
    )
}
