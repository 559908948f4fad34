//! The pure half of search: the query matcher, the field filters and time parsing. No I/O.

use std::time::{SystemTime, UNIX_EPOCH};

use std::ops::Range;

use regex::bytes::{Regex, RegexBuilder};
use regex_syntax::hir::{Hir, HirKind, Repetition};

use crate::record::LogRecord;

/// The query: a regex (the `regex` crate's syntax) or, with `literal`, a plain string.
#[derive(Debug, Clone)]
pub struct Matcher {
    regex: Regex,
    /// The query without its look-around assertions (`^`, `$`, `\b`, ...), for scanning many
    /// records' bytes at once: it matches wherever the query matches, whatever bytes
    /// surround the text, so a record it finds nothing in cannot match (see [`Matcher::scan_find`]).
    scan: regex_automata::meta::Regex,
    /// The query has no look-around, so `scan` and the query are the same: a `scan` match
    /// lying inside a record's line proves that the line matches.
    scan_is_exact: bool,
}

impl Matcher {
    /// Builds the matcher; an invalid regex is the regex crate's error, with its position.
    pub fn new(query: &str, literal: bool, ignore_case: bool) -> Result<Matcher, regex::Error> {
        let pattern = pattern(query, literal);
        let regex = RegexBuilder::new(&pattern)
            .case_insensitive(ignore_case)
            .build()?;
        let hir = parse(&pattern, ignore_case)?;
        let scan_is_exact = hir.properties().look_set().is_empty();
        let scan = regex_automata::meta::Builder::new()
            .configure(regex_automata::meta::Config::new().utf8_empty(false))
            .build_from_hir(&without_looks(hir))
            .map_err(|e| regex::Error::Syntax(e.to_string()))?;
        Ok(Matcher {
            regex,
            scan,
            scan_is_exact,
        })
    }

    /// Checks the query as [`Matcher::new`] parses it (the same errors, with their
    /// positions) without building it: 40 µs, where building takes 300.
    pub fn check(query: &str, literal: bool, ignore_case: bool) -> Result<(), regex::Error> {
        parse(&pattern(query, literal), ignore_case).map(drop)
    }

    pub fn is_match(&self, text: &[u8]) -> bool {
        self.regex.is_match(text)
    }

    /// Byte ranges of the matches in `text` (for highlighting).
    pub fn find_ranges(&self, text: &str) -> Vec<(usize, usize)> {
        self.regex
            .find_iter(text.as_bytes())
            .filter(|m| m.start() < m.end())
            .map(|m| (m.start(), m.end()))
            .collect()
    }

    /// The leftmost match of the query without its look-arounds in `haystack[range]`.
    /// Any text the query matches, wherever it is embedded, holds such a match.
    pub fn scan_find(&self, haystack: &[u8], range: Range<usize>) -> Option<Range<usize>> {
        let input = regex_automata::Input::new(haystack).range(range);
        self.scan.find(input).map(|m| m.range())
    }

    /// Whether a `scan_find` match inside a line proves that the line matches.
    pub fn scan_is_exact(&self) -> bool {
        self.scan_is_exact
    }

    /// `false` when the record whose raw Kafka value is `value` certainly does not match,
    /// without parsing it. Sound because a value without a backslash holds its JSON strings
    /// verbatim (the line is a substring) and a non-JSON value is searched as it is, and the
    /// scan regex matches wherever the query does.
    pub fn prefilter(&self, value: &[u8]) -> bool {
        memchr::memchr(b'\\', value).is_some() || self.scan_find(value, 0..value.len()).is_some()
    }
}

/// The regex a query stands for: itself, or with `literal` the query escaped.
fn pattern(query: &str, literal: bool) -> String {
    if literal {
        regex::escape(query)
    } else {
        query.to_string()
    }
}

/// Parses `pattern` the way `regex::bytes` does (Unicode on, UTF-8 not required), so the
/// scan regex built from it and the query agree on what every byte string matches, and a
/// syntax error reads as the regex crate words it.
fn parse(pattern: &str, ignore_case: bool) -> Result<Hir, regex::Error> {
    regex_syntax::ParserBuilder::new()
        .case_insensitive(ignore_case)
        .utf8(false)
        .build()
        .parse(pattern)
        .map_err(|e| regex::Error::Syntax(e.to_string()))
}

/// `hir` with every look-around assertion replaced by the empty regex: it matches a superset
/// of what `hir` matches, and where it matches no longer depends on the surrounding bytes.
/// Capture groups go too (the scan wants only where a match is): a regex without them that
/// is a set of literals, such as `time(d )?out|refused`, is then searched by its literal
/// searcher alone, with no automaton run at each match.
fn without_looks(hir: Hir) -> Hir {
    match hir.into_kind() {
        HirKind::Empty | HirKind::Look(_) => Hir::empty(),
        HirKind::Literal(lit) => Hir::literal(lit.0),
        HirKind::Class(class) => Hir::class(class),
        HirKind::Repetition(rep) => Hir::repetition(Repetition {
            sub: Box::new(without_looks(*rep.sub)),
            ..rep
        }),
        HirKind::Capture(cap) => without_looks(*cap.sub),
        HirKind::Concat(subs) => Hir::concat(subs.into_iter().map(without_looks).collect()),
        HirKind::Alternation(subs) => {
            Hir::alternation(subs.into_iter().map(without_looks).collect())
        }
    }
}

/// What a record is matched and filtered on: its contract fields, or its headers and its raw
/// value when it does not follow the record contract.
#[derive(Debug, Clone, PartialEq)]
pub struct Fields {
    pub host: Option<String>,
    pub source: Option<String>,
    pub level: Option<String>,
    /// The line searched: the contract's `line`, or the whole value as (lossy) text.
    pub line: String,
    /// The parsed record when the value follows the record contract.
    pub record: Option<LogRecord>,
}

impl Fields {
    /// Decodes a Kafka value; `header` looks up a header's value by name.
    pub fn decode(value: &[u8], header: impl Fn(&str) -> Option<String>) -> Fields {
        let record = match value.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => serde_json::from_slice::<LogRecord>(value).ok(),
            _ => None,
        };
        match record {
            Some(rec) => Fields {
                host: Some(rec.host.clone()),
                source: Some(rec.source.clone()),
                level: rec
                    .level
                    .map(|l| l.as_str().to_string())
                    .or_else(|| header(crate::record::HEADER_LEVEL)),
                line: rec.line.clone(),
                record: Some(rec),
            },
            None => Fields {
                host: header(crate::record::HEADER_HOST),
                source: header(crate::record::HEADER_SOURCE),
                level: header(crate::record::HEADER_LEVEL),
                line: String::from_utf8_lossy(value).into_owned(),
                record: None,
            },
        }
    }
}

/// Field filters: `--host` (any of), `--source` (a glob), `--level`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub hosts: Vec<String>,
    pub source: Option<glob::Pattern>,
    pub level: Option<String>,
}

impl Filter {
    /// Parses the `--source` glob.
    pub fn source_glob(glob: &str) -> Result<glob::Pattern, String> {
        glob::Pattern::new(glob).map_err(|e| format!("invalid --source glob {glob:?}: {e}"))
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.source.is_none() && self.level.is_none()
    }

    pub fn accepts(&self, fields: &Fields) -> bool {
        if !self.hosts.is_empty()
            && !fields
                .host
                .as_deref()
                .is_some_and(|h| self.hosts.iter().any(|want| want == h))
        {
            return false;
        }
        if let Some(glob) = &self.source {
            if !fields.source.as_deref().is_some_and(|s| glob.matches(s)) {
                return false;
            }
        }
        if let Some(level) = &self.level {
            if !fields
                .level
                .as_deref()
                .is_some_and(|l| l.eq_ignore_ascii_case(level))
            {
                return false;
            }
        }
        true
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Parses `--since`/`--until`: a duration back from `now_ms` (`90s`, `15m`, `1h`, `2d`,
/// `1h30m`) or an RFC 3339 time (`2024-05-01T12:00:00Z`). Milliseconds since the epoch.
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0));
    }
    Err(format!(
        "expected a duration back from now (15m, 1h, 2d) or an RFC 3339 time \
         (2024-05-01T12:00:00Z), got {s:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `check` refuses exactly what `new` refuses, with the same message (the command line
    /// reports `check`'s error before it connects, and builds the matcher meanwhile).
    #[test]
    fn check_agrees_with_new() {
        for (query, literal, ignore_case) in [
            ("time(d )?out|refused", false, false),
            ("(unclosed", false, false),
            ("a{2,1}", false, true),
            (r"\p{NoSuchClass}", false, false),
            ("[z-a]", false, false),
            ("(unclosed", true, false),
            (r"(?-u:\xFF)", false, false),
            ("é+", false, true),
        ] {
            let checked = Matcher::check(query, literal, ignore_case).map_err(|e| e.to_string());
            let built = Matcher::new(query, literal, ignore_case)
                .map(drop)
                .map_err(|e| e.to_string());
            assert_eq!(checked, built, "{query:?} literal {literal}");
        }
    }

    #[test]
    fn durations_and_rfc3339() {
        let now = 1_714_564_800_000;
        assert_eq!(parse_time("1h", now), Ok(now - 3_600_000));
        assert_eq!(parse_time("15m", now), Ok(now - 900_000));
        assert_eq!(parse_time("2d", now), Ok(now - 2 * 86_400_000));
        assert_eq!(
            parse_time("2024-05-01T12:00:00.123Z", now),
            Ok(1_714_564_800_123)
        );
        assert!(parse_time("yesterday", now).is_err());
    }

    #[test]
    fn literal_and_case() {
        let m = Matcher::new("a.b(", true, false).unwrap();
        assert!(m.is_match(b"xa.b(y"));
        assert!(!m.is_match(b"axb("));
        let m = Matcher::new("error", false, true).unwrap();
        assert!(m.is_match(b"ERROR"));
        assert!(Matcher::new("a(b", false, false).is_err());
    }

    #[test]
    fn prefilter_is_sound_for_contract_values() {
        let value = br#"{"ts":"t","host":"web1","source":"/a","line":"GET /x 200"}"#;
        let m = Matcher::new("GET", false, false).unwrap();
        assert!(m.prefilter(value));
        let m = Matcher::new("POST", false, false).unwrap();
        assert!(!m.prefilter(value));
        // Anchored: the raw value starts with `{`, the line with GET.
        let m = Matcher::new("^GET", false, false).unwrap();
        assert!(m.prefilter(value));
        // Escapes: fall back to parsing.
        let m = Matcher::new("a\"b", false, false).unwrap();
        assert!(m.prefilter(br#"{"line":"a\"b"}"#));
    }

    #[test]
    fn contract_and_raw_fields() {
        let f = Fields::decode(
            br#"{"ts":"t","host":"web1","source":"/a.log","line":"boom","level":"error"}"#,
            |_| None,
        );
        assert_eq!(f.host.as_deref(), Some("web1"));
        assert_eq!(f.line, "boom");
        let f = Fields::decode(b"plain text", |h| (h == "host").then(|| "h2".to_string()));
        assert_eq!(f.host.as_deref(), Some("h2"));
        assert_eq!(f.line, "plain text");
        assert!(f.record.is_none());
        let filter = Filter {
            hosts: vec!["h2".into()],
            source: None,
            level: Some("ERROR".into()),
        };
        assert!(!filter.accepts(&f));
    }
}
