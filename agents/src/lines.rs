//! Turning a file's bytes into lines: splitting on `\n`, capping over-long lines, and
//! merging multiline events (stack traces) by a start pattern.
//!
//! Every line carries the file offset just past its terminator, so the checkpoint of a
//! file can advance exactly to the end of the last acknowledged line.

use std::time::{Duration, Instant};

use regex::bytes::Regex;

/// One line (or merged multiline event) read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The raw bytes, without the line terminator; may be invalid UTF-8.
    pub bytes: Vec<u8>,
    /// File offset just past this line's `\n`: where reading resumes after it.
    pub end_offset: u64,
    /// The line was longer than the limit and was cut.
    pub truncated: bool,
}

/// Splits a byte stream into lines of at most `max_line_bytes`.
///
/// A line longer than the limit keeps its first `max_line_bytes` bytes and is flagged; the
/// rest is skipped up to the next `\n`. It is emitted only once its `\n` arrives, so its
/// `end_offset` covers the skipped bytes and a restart never resumes mid-line.
#[derive(Debug)]
pub struct LineSplitter {
    max_line_bytes: usize,
    partial: Vec<u8>,
    truncated: bool,
}

impl LineSplitter {
    pub fn new(max_line_bytes: usize) -> LineSplitter {
        LineSplitter {
            max_line_bytes,
            partial: Vec::new(),
            truncated: false,
        }
    }

    /// Feeds `chunk`, which ends at file offset `chunk_end`; complete lines go to `out`.
    pub fn push(&mut self, chunk: &[u8], chunk_end: u64, out: &mut Vec<Line>) {
        let chunk_start = chunk_end - chunk.len() as u64;
        let mut rest = chunk;
        let mut pos = chunk_start;
        while !rest.is_empty() {
            match memchr::memchr(b'\n', rest) {
                Some(i) => {
                    self.append(&rest[..i]);
                    pos += i as u64 + 1;
                    let (bytes, truncated) = self.take_line(true);
                    out.push(Line {
                        bytes,
                        end_offset: pos,
                        truncated,
                    });
                    rest = &rest[i + 1..];
                }
                None => {
                    self.append(rest);
                    rest = &[];
                }
            }
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        // One byte beyond the limit is held: it may be the `\r` of a `\r\n` terminator, which
        // is not part of the line, so a line of exactly the limit is not flagged as cut.
        let room = (self.max_line_bytes + 1).saturating_sub(self.partial.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Whether bytes of an unfinished line are held.
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty() || self.truncated
    }

    /// Emits an unfinished last line: used when a file is released (rotated away or
    /// deleted) and will never get its `\n`.
    pub fn finish(&mut self, end_offset: u64) -> Option<Line> {
        if !self.has_partial() {
            return None;
        }
        let (bytes, truncated) = self.take_line(false);
        Some(Line {
            bytes,
            end_offset,
            truncated,
        })
    }

    /// The held line, without a `\r` before its `\n` (`terminated`), cut to the limit.
    fn take_line(&mut self, terminated: bool) -> (Vec<u8>, bool) {
        let mut bytes = std::mem::take(&mut self.partial);
        let mut truncated = std::mem::take(&mut self.truncated);
        if terminated && !truncated && bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        if bytes.len() > self.max_line_bytes {
            bytes.truncate(self.max_line_bytes);
            truncated = true;
        }
        (bytes, truncated)
    }
}

/// Merges lines into multiline events: a line matching `start` begins an event, any other
/// line is appended (after a `\n`) to the pending one. An event is emitted when the next
/// one begins, or when no line was added to it for `timeout`.
#[derive(Debug)]
pub struct MultilineMerger {
    start: Regex,
    timeout: Duration,
    max_bytes: usize,
    pending: Option<(Line, Instant)>,
}

impl MultilineMerger {
    pub fn new(start: Regex, timeout: Duration, max_bytes: usize) -> MultilineMerger {
        MultilineMerger {
            start,
            timeout,
            max_bytes,
            pending: None,
        }
    }

    pub fn push(&mut self, line: Line, now: Instant, out: &mut Vec<Line>) {
        match &mut self.pending {
            Some((event, last)) if !self.start.is_match(&line.bytes) => {
                let room = self.max_bytes.saturating_sub(event.bytes.len());
                let add = 1 + line.bytes.len();
                if add > room {
                    event.truncated = true;
                }
                let mut joined = Vec::with_capacity(add);
                joined.push(b'\n');
                joined.extend_from_slice(&line.bytes);
                event.bytes.extend_from_slice(&joined[..add.min(room)]);
                event.truncated |= line.truncated;
                event.end_offset = line.end_offset;
                *last = now;
            }
            _ => {
                if let Some((event, _)) = self.pending.replace((line, now)) {
                    out.push(event);
                }
            }
        }
    }

    /// Emits the pending event if it has waited `timeout` for a continuation.
    pub fn flush_expired(&mut self, now: Instant, out: &mut Vec<Line>) {
        if let Some((_, last)) = &self.pending {
            if now.duration_since(*last) >= self.timeout {
                self.flush(out);
            }
        }
    }

    /// Emits the pending event now.
    pub fn flush(&mut self, out: &mut Vec<Line>) {
        if let Some((event, _)) = self.pending.take() {
            out.push(event);
        }
    }

    /// When the pending event, if any, must be emitted.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(|(_, last)| *last + self.timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(max: usize, chunks: &[&[u8]]) -> Vec<Line> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        let mut end = 0u64;
        for c in chunks {
            end += c.len() as u64;
            s.push(c, end, &mut out);
        }
        out
    }

    fn texts(lines: &[Line]) -> Vec<String> {
        lines
            .iter()
            .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
            .collect()
    }

    #[test]
    fn splits_across_chunk_boundaries_with_offsets() {
        let lines = split_all(100, &[b"ab", b"c\nde", b"\r\n\nf"]);
        assert_eq!(texts(&lines), ["abc", "de", ""]);
        assert_eq!(
            lines.iter().map(|l| l.end_offset).collect::<Vec<_>>(),
            [4, 8, 9]
        );
    }

    #[test]
    fn long_lines_are_cut_flagged_and_end_at_their_newline() {
        let lines = split_all(4, &[b"0123456", b"789\nok\n"]);
        assert_eq!(texts(&lines), ["0123", "ok"]);
        assert!(lines[0].truncated);
        assert_eq!(lines[0].end_offset, 11);
        assert!(!lines[1].truncated);
    }

    #[test]
    fn a_line_of_exactly_the_limit_ending_in_crlf_is_not_cut() {
        // Found by the agent_lines fuzz target: the `\r` of the terminator counted as content.
        let lines = split_all(4, &[b"0123\r", b"\n01234\r\n", b"0123\n"]);
        assert_eq!(texts(&lines), ["0123", "0123", "0123"]);
        assert_eq!(
            lines.iter().map(|l| l.truncated).collect::<Vec<_>>(),
            [false, true, false]
        );
    }

    #[test]
    fn finish_emits_the_unterminated_tail() {
        let mut s = LineSplitter::new(10);
        let mut out = Vec::new();
        s.push(b"a\nbc", 4, &mut out);
        assert_eq!(out.len(), 1);
        assert!(s.has_partial());
        let tail = s.finish(4).expect("tail");
        assert_eq!(tail.bytes, b"bc");
        assert_eq!(tail.end_offset, 4);
        assert!(s.finish(4).is_none());
    }

    #[test]
    fn multiline_merges_continuations_until_next_start_or_timeout() {
        let start = Regex::new(r"^\d{4}-").expect("regex");
        let mut m = MultilineMerger::new(start, Duration::from_millis(100), 1000);
        let t0 = Instant::now();
        let mut out = Vec::new();
        for l in split_all(100, &[b"2024-01 boom\n  at a\n  at b\n2024-01 next\n"]) {
            m.push(l, t0, &mut out);
        }
        assert_eq!(texts(&out), ["2024-01 boom\n  at a\n  at b"]);
        assert_eq!(out[0].end_offset, 27);
        m.flush_expired(t0 + Duration::from_millis(50), &mut out);
        assert_eq!(out.len(), 1);
        m.flush_expired(t0 + Duration::from_millis(100), &mut out);
        assert_eq!(texts(&out)[1], "2024-01 next");
        assert_eq!(m.deadline(), None);
    }

    #[test]
    fn multiline_events_are_capped() {
        let start = Regex::new("^S").expect("regex");
        let mut m = MultilineMerger::new(start, Duration::from_secs(1), 6);
        let now = Instant::now();
        let mut out = Vec::new();
        for l in split_all(100, &[b"S1\ncont\nS2\n"]) {
            m.push(l, now, &mut out);
        }
        assert_eq!(texts(&out), ["S1\ncon"]);
        assert!(out[0].truncated);
    }
}
