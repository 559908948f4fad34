//! Matching whole decoded batches. The search's hot loop: for the common query, a scan of
//! each decompressed batch with the regex (its literal prefilter does most of the work) and a
//! look at the few records it lands in, instead of parsing every record's JSON.
//!
//! Why it is exact (tested against the plain per-record matcher by property tests):
//! - A record whose value holds no backslash holds its JSON strings verbatim, so its line is
//!   a substring of the raw value; a record that is not a contract record is searched as its
//!   raw value anyway. Either way the text searched is a substring of the value.
//! - The scan regex is the query without look-arounds, so it matches wherever the query
//!   matches, whatever surrounds the text. Scanning from the start of a record finds the
//!   leftmost match at or after it; the next scan starts after the record that match is in,
//!   so no record holding a match is ever skipped (a match may span records: that record is
//!   then merely looked at for nothing).
//! - Records the scan never lands in therefore cannot match, unless their value holds a
//!   backslash (a JSON escape: the line is not verbatim); those are always looked at.
//! - A record the scan landed in is decided by the full per-record matcher, except when
//!   only counting without field filters, the query has no look-arounds and the match lies
//!   inside the value's top-level `"line"` string: then the line matches (and so would the
//!   raw value, were the record not a contract record).

use std::ops::Range;

use crate::search::batch::{self, Record};
use crate::search::query::Fields;
use crate::search::{Hit, Options};

/// What a batch's scan found.
#[derive(Debug, Default, PartialEq)]
pub struct Scanned {
    pub records: u64,
    pub bytes: u64,
    pub matched: u64,
}

/// Scans the records of one batch whose offsets are in `offsets`; hits (when not only
/// counting) are pushed to `hits`. `candidates` is scratch space kept between batches.
#[allow(clippy::too_many_arguments)]
pub fn scan_batch(
    options: &Options,
    partition: i32,
    data: &[u8],
    records: &[Record],
    offsets: Range<i64>,
    candidates: &mut Vec<(usize, Option<Range<usize>>)>,
    hits: &mut Vec<Hit>,
) -> Scanned {
    let first = records.partition_point(|r| r.offset < offsets.start);
    let last = records.partition_point(|r| r.offset < offsets.end);
    let records = &records[first..last.max(first)];
    let mut out = Scanned {
        records: records.len() as u64,
        bytes: records
            .iter()
            .map(|r| r.value_range().len() as u64)
            .sum(),
        matched: 0,
    };
    let (Some(head), Some(tail)) = (records.first(), records.last()) else {
        return out;
    };
    let region = head.span.start..tail.span.end;
    let matcher = &options.matcher;
    let containing = |pos: usize| records.partition_point(|r| r.span.end <= pos);

    candidates.clear();
    let mut escaped = Vec::new();
    let mut pos = region.start;
    while pos < region.end {
        let Some(found) = matcher.scan_find(data, pos..region.end) else {
            break;
        };
        let i = containing(found.start).min(records.len() - 1);
        candidates.push((i, Some(found)));
        pos = records[i].span.end;
    }
    let mut pos = region.start;
    while let Some(at) = memchr::memchr(b'\\', &data[pos..region.end]) {
        let i = containing(pos + at).min(records.len() - 1);
        if records[i].value_range().contains(&(pos + at)) {
            escaped.push(i);
            pos = records[i].span.end;
        } else {
            pos += at + 1;
        }
        if pos >= region.end {
            break;
        }
    }
    // Both lists are in record order: merge them, each record once.
    let mut e = escaped.into_iter().peekable();
    let mut merged = Vec::with_capacity(candidates.len());
    for (i, found) in candidates.drain(..) {
        while let Some(&j) = e.peek().filter(|&&j| j <= i) {
            if j < i {
                merged.push((j, None));
            }
            e.next();
        }
        merged.push((i, found));
    }
    merged.extend(e.map(|j| (j, None)));

    let counting_only = options.count_only && options.filter.is_empty();
    for (i, found) in merged {
        let rec = &records[i];
        if !in_time(options, rec.timestamp) {
            continue;
        }
        let value = &data[rec.value_range()];
        if counting_only && matcher.scan_is_exact() {
            if let Some(found) = &found {
                if proven_in_line(rec.value_range(), value, found) {
                    out.matched += 1;
                    continue;
                }
            }
        }
        let key = rec.key.clone().map(|k| &data[k]);
        let header = |name: &str| {
            batch::header(data, rec, name).map(|v| String::from_utf8_lossy(v).into_owned())
        };
        if let Some(hit) = examine(options, partition, rec.offset, rec.timestamp, key, value, header) {
            out.matched += 1;
            if !options.count_only {
                hits.push(hit);
            }
        }
    }
    out
}

/// Whether `found` (a range of the batch) lies inside the top-level `"line"` string of the
/// value at `value_range`, which must hold no backslash.
fn proven_in_line(value_range: Range<usize>, value: &[u8], found: &Range<usize>) -> bool {
    if found.start < value_range.start
        || found.end > value_range.end
        || memchr::memchr(b'\\', value).is_some()
    {
        return false;
    }
    line_span(value).is_some_and(|line| {
        let (s, e) = (found.start - value_range.start, found.end - value_range.start);
        line.start <= s && e <= line.end
    })
}

pub fn in_time(options: &Options, ts: i64) -> bool {
    !(options.since_ms.is_some_and(|s| ts < s) || options.until_ms.is_some_and(|u| ts > u))
}

/// The record matched and filtered the plain way (its JSON parsed): the hit, if it is one.
/// Both readers decide every record they are unsure of here.
pub fn examine(
    options: &Options,
    partition: i32,
    offset: i64,
    timestamp_ms: i64,
    key: Option<&[u8]>,
    value: &[u8],
    header: impl Fn(&str) -> Option<String>,
) -> Option<Hit> {
    if !in_time(options, timestamp_ms) || !options.matcher.prefilter(value) {
        return None;
    }
    let fields = Fields::decode(value, header);
    let matched = match &fields.record {
        Some(_) => options.matcher.is_match(fields.line.as_bytes()),
        // Raw text is searched as the bytes it is, like grep.
        None => options.matcher.is_match(value),
    };
    if !matched || !options.filter.accepts(&fields) {
        return None;
    }
    Some(Hit {
        partition,
        offset,
        timestamp_ms,
        key: key.map(<[u8]>::to_vec),
        value: value.to_vec(),
        fields,
    })
}

/// The contents of the top-level `"line"` string of a JSON object that holds no backslash
/// (so a string ends at the next `"`), or `None` when there is none or this is not an object.
fn line_span(v: &[u8]) -> Option<Range<usize>> {
    let ws = |mut i: usize| {
        while v.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let string_end = |start: usize| memchr::memchr(b'"', v.get(start..)?).map(|n| start + n);
    let mut i = ws(0);
    if v.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = ws(i);
        if v.get(i) != Some(&b'"') {
            return None;
        }
        let key = i + 1..string_end(i + 1)?;
        i = ws(key.end + 1);
        if v.get(i) != Some(&b':') {
            return None;
        }
        i = ws(i + 1);
        match *v.get(i)? {
            b'"' => {
                let s = i + 1;
                let e = string_end(s)?;
                if &v[key] == b"line" {
                    return Some(s..e);
                }
                i = e + 1;
            }
            b'{' | b'[' => i = skip_nested(v, i)?,
            _ => {
                while v.get(i).is_some_and(|b| !matches!(b, b',' | b'}')) {
                    i += 1;
                }
            }
        }
        i = ws(i);
        match v.get(i) {
            Some(b',') => i += 1,
            _ => return None,
        }
    }
}

/// The index after the object or array starting at `i` (strings hold no backslash).
fn skip_nested(v: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match *v.get(i)? {
            b'"' => i += 1 + memchr::memchr(b'"', v.get(i + 1..)?)?,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
}
