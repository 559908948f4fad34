//! Detecting a line's severity from the common log formats, cheaply: no full parse, only a
//! look at the places a level usually sits.
//!
//! Tried in order: a syslog `<PRI>` prefix; a JSON `"level"` (or `"lvl"`, `"severity"`)
//! string; logfmt `level=`; a level word among the first few words (`ERROR`, `[WARN]`,
//! `2024-05-01 12:00:00 INFO ...`).

use std::sync::LazyLock;

use memchr::memmem::Finder;

use crate::record::Level;

/// Only the head of a line is searched: levels sit at the start, and long lines must not
/// cost more than short ones.
const HEAD_BYTES: usize = 512;
/// How many leading words may precede a bare level word (date, time, thread, logger...).
const LEADING_WORDS: usize = 6;

pub fn detect(line: &[u8]) -> Option<Level> {
    let head = &line[..line.len().min(HEAD_BYTES)];
    syslog(head)
        .or_else(|| json_or_logfmt(head))
        .or_else(|| leading_word(head))
}

/// `<PRI>`: severity is PRI mod 8 (0 emerg .. 7 debug).
fn syslog(head: &[u8]) -> Option<Level> {
    let rest = head.strip_prefix(b"<")?;
    let close = rest.iter().take(4).position(|&b| b == b'>')?;
    let pri: u32 = std::str::from_utf8(&rest[..close]).ok()?.parse().ok()?;
    Some(match pri % 8 {
        0..=3 => Level::Error,
        4 => Level::Warn,
        5 | 6 => Level::Info,
        _ => Level::Debug,
    })
}

fn json_or_logfmt(head: &[u8]) -> Option<Level> {
    // Built once: building a searcher costs more than searching a short line.
    static FINDERS: LazyLock<[Finder<'static>; 3]> = LazyLock::new(|| {
        [
            Finder::new(b"level"),
            Finder::new(b"lvl"),
            Finder::new(b"severity"),
        ]
    });
    for finder in FINDERS.iter() {
        let key = finder.needle();
        let mut from = 0;
        while let Some(i) = finder.find(&head[from..]) {
            let at = from + i;
            from = at + key.len();
            let before = at.checked_sub(1).map(|p| head[p]);
            let after = &head[from..];
            // JSON: "level" : "error"
            if before == Some(b'"') && after.first() == Some(&b'"') {
                let v = skip(&after[1..], b" \t");
                if let Some(v) = v.strip_prefix(b":") {
                    if let Some(v) = skip(v, b" \t").strip_prefix(b"\"") {
                        return word_level(take_word(v));
                    }
                }
            }
            // logfmt: level=error or level="error"
            if matches!(before, None | Some(b' ') | Some(b'\t')) {
                if let Some(v) = after.strip_prefix(b"=") {
                    let v = v.strip_prefix(b"\"").unwrap_or(v);
                    return word_level(take_word(v));
                }
            }
        }
    }
    None
}

fn leading_word(head: &[u8]) -> Option<Level> {
    head.split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .take(LEADING_WORDS)
        .find_map(|w| {
            let w = w
                .strip_prefix(b"[")
                .unwrap_or(w)
                .strip_suffix(b":")
                .unwrap_or(w.strip_prefix(b"[").unwrap_or(w));
            let w = w.strip_suffix(b"]").unwrap_or(w);
            // Bare words must be upper case: "Error" or "info" in prose is not a level.
            if w.iter().all(|b| b.is_ascii_uppercase()) {
                word_level(w)
            } else {
                None
            }
        })
}

fn skip<'a>(mut s: &'a [u8], set: &[u8]) -> &'a [u8] {
    while let Some((first, rest)) = s.split_first() {
        if !set.contains(first) {
            break;
        }
        s = rest;
    }
    s
}

fn take_word(s: &[u8]) -> &[u8] {
    let end = s
        .iter()
        .position(|b| !b.is_ascii_alphabetic())
        .unwrap_or(s.len());
    &s[..end]
}

fn word_level(w: &[u8]) -> Option<Level> {
    // The longest level word is 11 bytes; lower-case on the stack, not the heap.
    let mut buf = [0u8; 11];
    let lower = buf.get_mut(..w.len())?;
    lower.copy_from_slice(w);
    lower.make_ascii_lowercase();
    Some(match &*lower {
        b"error" | b"err" | b"fatal" | b"crit" | b"critical" | b"alert" | b"emerg"
        | b"emergency" | b"panic" | b"severe" => Level::Error,
        b"warn" | b"warning" => Level::Warn,
        b"info" | b"information" | b"notice" => Level::Info,
        b"debug" | b"dbg" => Level::Debug,
        b"trace" => Level::Trace,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_common_formats() {
        let cases: &[(&str, Option<Level>)] = &[
            (r#"{"ts":1,"level":"error","msg":"x"}"#, Some(Level::Error)),
            (r#"{"lvl" : "WARNING"}"#, Some(Level::Warn)),
            (r#"{"severity":"debug"}"#, Some(Level::Debug)),
            ("ts=1 level=info msg=hi", Some(Level::Info)),
            (r#"level="warn" msg=x"#, Some(Level::Warn)),
            ("<11>May  1 12:00:00 host app: boom", Some(Level::Error)),
            ("<14>May  1 12:00:00 host app: hi", Some(Level::Info)),
            ("<15>May  1 12:00:00 host app: hi", Some(Level::Debug)),
            ("ERROR something broke", Some(Level::Error)),
            ("[WARN] disk at 91%", Some(Level::Warn)),
            (
                "2024-05-01 12:00:00,123 INFO main started",
                Some(Level::Info),
            ),
            (
                "2024-05-01T12:00:00Z [main] TRACE enter",
                Some(Level::Trace),
            ),
            ("FATAL: out of memory", Some(Level::Error)),
            ("an error occurred in the info panel", None),
            ("plain line", None),
            ("", None),
            ("multilevel=3", None),
        ];
        for (line, want) in cases {
            assert_eq!(detect(line.as_bytes()), *want, "line: {line}");
        }
    }

    #[test]
    fn binary_junk_is_harmless() {
        assert_eq!(detect(&[0xff, 0xfe, b'<', 0x80, b'>', 0]), None);
    }
}
