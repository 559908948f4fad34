//! The Tail view's filters: stacked regex includes and excludes, a minimum level and a set of
//! hosts. A record is shown when every include matches its line, no exclude does, its level
//! is at least the minimum and its host is picked (or no host is).

use std::collections::BTreeSet;
use std::sync::Arc;

use regex::Regex;

use super::entry::{level_rank, LogEntry};
use crate::record::Level;

/// One `/` (include) or `\` (exclude) pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub include: bool,
    pub regex: Regex,
}

impl Pattern {
    /// Compiles the pattern; the error is the regex crate's, with its position.
    pub fn new(text: &str, include: bool) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("empty pattern".into());
        }
        Regex::new(text)
            .map(|regex| Pattern { include, regex })
            .map_err(|e| e.to_string())
    }

    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }
}

#[derive(Debug, Clone, Default)]
pub struct TailFilter {
    /// In the order they were added (Backspace on an empty prompt removes the last).
    pub patterns: Vec<Pattern>,
    /// None: every level.
    pub min_level: Option<Level>,
    /// Empty: every host.
    pub hosts: BTreeSet<Arc<str>>,
}

impl TailFilter {
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty() && self.min_level.is_none() && self.hosts.is_empty()
    }

    pub fn accepts(&self, e: &LogEntry) -> bool {
        if let Some(min) = self.min_level {
            if level_rank(e.effective_level()) > level_rank(min) {
                return false;
            }
        }
        if !self.hosts.is_empty() && !self.hosts.contains(&e.host) {
            return false;
        }
        self.patterns
            .iter()
            .all(|p| p.regex.is_match(&e.line) == p.include)
    }

    /// The next minimum level for `l`: all, debug, info, warn, error, then all again.
    pub fn cycle_level(&mut self) {
        self.min_level = match self.min_level {
            None => Some(Level::Debug),
            Some(Level::Trace) | Some(Level::Debug) => Some(Level::Info),
            Some(Level::Info) => Some(Level::Warn),
            Some(Level::Warn) => Some(Level::Error),
            Some(Level::Error) => None,
        };
    }

    /// Byte ranges of the include patterns' matches in `line`, sorted, not overlapping.
    pub fn highlights(&self, line: &str) -> Vec<(usize, usize)> {
        let mut ranges: Vec<(usize, usize)> = self
            .patterns
            .iter()
            .filter(|p| p.include)
            .flat_map(|p| p.regex.find_iter(line).map(|m| (m.start(), m.end())))
            .filter(|(s, e)| s < e)
            .collect();
        merge_ranges(&mut ranges);
        ranges
    }
}

/// Sorts ranges and merges the overlapping ones.
pub fn merge_ranges(ranges: &mut Vec<(usize, usize)>) {
    ranges.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for &(s, e) in ranges.iter() {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    *ranges = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dash::entry::Decoder;

    fn entry(host: &str, level: Option<&str>, line: &str) -> LogEntry {
        let lvl = level
            .map(|l| format!(r#","level":"{l}""#))
            .unwrap_or_default();
        let json = format!(r#"{{"ts":"t","host":"{host}","source":"s","line":"{line}"{lvl}}}"#);
        Decoder::default().decode(0, 0, 0, json.as_bytes(), vec![])
    }

    #[test]
    fn stacked_patterns_levels_and_hosts() {
        let mut f = TailFilter::default();
        assert!(f.accepts(&entry("a", None, "x")));
        f.patterns.push(Pattern::new("GET|POST", true).unwrap());
        f.patterns.push(Pattern::new("health", false).unwrap());
        assert!(f.accepts(&entry("a", None, "GET /x")));
        assert!(!f.accepts(&entry("a", None, "GET /health")));
        assert!(!f.accepts(&entry("a", None, "PUT /x")));
        f.cycle_level(); // debug
        f.cycle_level(); // info
        f.cycle_level(); // warn
        assert_eq!(f.min_level, Some(Level::Warn));
        assert!(!f.accepts(&entry("a", Some("info"), "GET")));
        assert!(
            !f.accepts(&entry("a", None, "GET")),
            "no level counts as info"
        );
        assert!(f.accepts(&entry("a", Some("error"), "GET")));
        f.hosts.insert(Arc::from("b"));
        assert!(!f.accepts(&entry("a", Some("error"), "GET")));
        assert!(f.accepts(&entry("b", Some("error"), "GET")));
        f.cycle_level();
        f.cycle_level();
        assert_eq!(f.min_level, None);
        assert!(Pattern::new("a(", true).is_err());
    }

    #[test]
    fn highlights_merge() {
        let mut f = TailFilter::default();
        f.patterns.push(Pattern::new("ab", true).unwrap());
        f.patterns.push(Pattern::new("bc", true).unwrap());
        f.patterns.push(Pattern::new("zz", false).unwrap());
        assert_eq!(f.highlights("xabcx ab"), vec![(1, 4), (6, 8)]);
    }
}
