//! Broker resource usage from /proc: CPU seconds and peak resident memory. Reading /proc needs
//! no cooperation from the broker, so the same numbers can be taken of any local process.

use anyhow::{anyhow, Context as _, Result};

/// Seconds of CPU (user + system, all threads) the process has used so far.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_stat_ticks(&stat).with_context(|| format!("parsing {path}"))?;
    Ok(ticks as f64 / clock_ticks_per_sec())
}

/// Peak resident set size in bytes (VmHWM): the high-water mark over the process's life, so
/// one read at the end catches a spike that sampling would miss.
pub fn peak_rss_bytes(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_status_kb(&status, "VmHWM")
        .map(|kb| kb * 1024)
        .with_context(|| format!("parsing {path}"))
}

/// Resident set size in bytes now (VmRSS), for sampling memory over a run.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_status_kb(&status, "VmRSS")
        .map(|kb| kb * 1024)
        .with_context(|| format!("parsing {path}"))
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // 100 is what Linux uses everywhere in practice; only a broken libc returns <= 0.
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// utime + stime, in clock ticks, from the text of /proc/PID/stat. The command name (field 2)
/// is in parentheses and may itself contain spaces or ')', so fields are counted from the
/// last ')'.
fn parse_stat_ticks(stat: &str) -> Result<u64> {
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| anyhow!("no ')' after the command name"))?;
    // After the name come field 3 (state) onwards; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .ok_or_else(|| anyhow!("field {n} missing"))?
            .parse::<u64>()
            .with_context(|| format!("field {n} is not a number"))
    };
    Ok(field(14)? + field(15)?)
}

/// The value in kB of a `Key:   123 kB` line of /proc/PID/status.
fn parse_status_kb(status: &str, key: &str) -> Result<u64> {
    let line = status
        .lines()
        .find(|l| l.split(':').next() == Some(key))
        .ok_or_else(|| anyhow!("no {key} line"))?;
    let value = line[key.len() + 1..]
        .split_whitespace()
        .next()
        .ok_or_else(|| anyhow!("{key} has no value"))?;
    value
        .parse()
        .with_context(|| format!("{key} value {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_skip_awkward_command_names() {
        let stat = "4242 (rill (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(parse_stat_ticks(stat).unwrap(), 325);
        assert!(parse_stat_ticks("4242 rill S 1").is_err());
        assert!(parse_stat_ticks("4242 (rill) S 1 2").is_err());
    }

    #[test]
    fn status_kb_finds_the_exact_key() {
        let status = "Name:\trill\nVmPeak:\t  999 kB\nVmHWM:\t   51234 kB\nVmRSS:\t 40000 kB\n";
        assert_eq!(parse_status_kb(status, "VmHWM").unwrap(), 51234);
        assert_eq!(parse_status_kb(status, "VmRSS").unwrap(), 40000);
        assert!(parse_status_kb(status, "VmSwap").is_err());
    }

    #[test]
    fn reads_our_own_process() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        assert!(peak_rss_bytes(pid).unwrap() > 0);
    }
}
