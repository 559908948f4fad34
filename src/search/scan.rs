//! Matching decoded records, a window of a batch at a time. The search's hot loop: for the
//! common query, a scan of each window's bytes with the regex (its literal prefilter does
//! most of the work) and a look at the few records it lands in, instead of parsing every
//! record's JSON.
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

use crate::search::batch::{self, BatchError, BatchHeader, Decoder, Record};
use crate::search::query::Fields;
use crate::search::{Hit, Options};

/// What a batch's scan found.
#[derive(Debug, Default, PartialEq)]
pub struct Scanned {
    pub records: u64,
    pub bytes: u64,
    pub matched: u64,
}

/// Decodes one batch with `decoder` and scans its records whose offsets are in `offsets`,
/// a window at a time; hits (when not only counting) are pushed to `hits`. `candidates` is
/// scratch space kept between batches. A batch that does not decode, or a record the scan
/// looks at whose parts do not fit in it, is an error.
#[allow(clippy::too_many_arguments)]
pub fn scan_batch(
    options: &Options,
    partition: i32,
    decoder: &mut Decoder,
    header: &BatchHeader,
    batch: &[u8],
    offsets: Range<i64>,
    candidates: &mut Vec<(usize, Option<Range<usize>>)>,
    hits: &mut Vec<Hit>,
) -> Result<Scanned, BatchError> {
    let mut total = Scanned::default();
    decoder.decode(header, batch, |data, records| {
        let window = scan_window(
            options,
            partition,
            data,
            records,
            offsets.clone(),
            candidates,
            hits,
        )?;
        total.records += window.records;
        total.bytes += window.bytes;
        total.matched += window.matched;
        Ok(())
    })?;
    Ok(total)
}

/// [`scan_batch`] for the records of one window.
fn scan_window(
    options: &Options,
    partition: i32,
    data: &[u8],
    records: &[Record],
    offsets: Range<i64>,
    candidates: &mut Vec<(usize, Option<Range<usize>>)>,
    hits: &mut Vec<Hit>,
) -> Result<Scanned, BatchError> {
    let first = records.partition_point(|r| r.offset < offsets.start);
    let last = records.partition_point(|r| r.offset < offsets.end);
    let records = &records[first..last.max(first)];
    let (Some(head), Some(tail)) = (records.first(), records.last()) else {
        return Ok(Scanned::default());
    };
    let region = head.span.start..tail.span.end;
    let mut out = Scanned {
        records: records.len() as u64,
        bytes: region.len() as u64,
        matched: 0,
    };
    let parts = |rec: &Record| {
        rec.parts(data).ok_or(BatchError::Malformed {
            offset: rec.offset,
            what: "a record's key, value or headers run past its end",
        })
    };
    let matcher = &options.matcher;
    // Positions only grow within each pass, so the record holding one is found by walking
    // on from the last one.
    let containing = |from: usize, pos: usize| {
        let mut i = from;
        while i + 1 < records.len() && records[i].span.end <= pos {
            i += 1;
        }
        i
    };

    candidates.clear();
    let mut escaped = Vec::new();
    let (mut pos, mut i) = (region.start, 0);
    while pos < region.end {
        let Some(found) = matcher.scan_find(data, pos..region.end) else {
            break;
        };
        i = containing(i, found.start);
        candidates.push((i, Some(found)));
        pos = records[i].span.end;
    }
    let (mut pos, mut i) = (region.start, 0);
    while let Some(at) = memchr::memchr(b'\\', &data[pos..region.end]) {
        i = containing(i, pos + at);
        if parts(&records[i])?.value_range().contains(&(pos + at)) {
            escaped.push(i);
            pos = records[i].span.end;
        } else {
            pos += at + 1;
        }
        if pos >= region.end {
            break;
        }
    }
    // Both lists are in record order: merge them, each record once. A record in both keeps
    // no match, so that it is decided the full way: only a value without a backslash holds
    // its line verbatim, which the quick proof below relies on.
    let mut e = escaped.into_iter().peekable();
    let mut merged = Vec::with_capacity(candidates.len());
    for (i, found) in candidates.drain(..) {
        let mut is_escaped = false;
        while let Some(&j) = e.peek().filter(|&&j| j <= i) {
            if j < i {
                merged.push((j, None));
            }
            is_escaped |= j == i;
            e.next();
        }
        merged.push((i, found.filter(|_| !is_escaped)));
    }
    merged.extend(e.map(|j| (j, None)));

    let counting_only = options.count_only && options.filter.is_empty();
    for (i, found) in merged {
        let rec = &records[i];
        if !in_time(options, rec.timestamp) {
            continue;
        }
        let parts = parts(rec)?;
        let value = &data[parts.value_range()];
        if counting_only && matcher.scan_is_exact() {
            if let Some(found) = &found {
                if proven_in_line(parts.value_range(), value, found) {
                    out.matched += 1;
                    continue;
                }
            }
        }
        let key = parts.key.clone().map(|k| &data[k]);
        let header = |name: &str| {
            batch::header(data, &parts, name).map(|v| String::from_utf8_lossy(v).into_owned())
        };
        if let Some(hit) = examine(
            options,
            partition,
            rec.offset,
            rec.timestamp,
            key,
            value,
            header,
        ) {
            out.matched += 1;
            if !options.count_only {
                hits.push(hit);
            }
        }
    }
    Ok(out)
}

/// Whether `found` (a range of the batch) lies inside the top-level `"line"` string of the
/// value at `value_range`, which must hold no backslash (the scan's escape pass found none).
fn proven_in_line(value_range: Range<usize>, value: &[u8], found: &Range<usize>) -> bool {
    if found.start < value_range.start || found.end > value_range.end {
        return false;
    }
    let (s, e) = (
        found.start - value_range.start,
        found.end - value_range.start,
    );
    // The common case, cheaply: the match holds no quote, so it lies inside the string that
    // opened at the last quote before it; that string is the value of a key "line"; and the
    // value opens with `{` and no other `{` or `[` comes before it, so that key is at the top
    // level unless the value is not JSON at all (then it is searched as raw text, which holds
    // the match too).
    if value.first() == Some(&b'{') && memchr::memchr(b'"', &value[s..e]).is_none() {
        if let Some(q) = memchr::memrchr(b'"', &value[..s]) {
            let before = &value[..q];
            if before.ends_with(b"\"line\":") && memchr::memchr2(b'{', b'[', &before[1..]).is_none()
            {
                return true;
            }
        }
    }
    line_span(value).is_some_and(|line| line.start <= s && e <= line.end)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::batch::batches;
    use crate::search::batch::tests::{encode, Spec};
    use crate::search::{Filter, Matcher};
    use kafka_protocol::records::Compression;
    use proptest::prelude::*;

    fn options(matcher: Matcher, count_only: bool, filter: Filter) -> Options {
        Options {
            topic: "logs".into(),
            matcher,
            filter,
            since_ms: Some(10),
            until_ms: Some(90),
            limit: None,
            count_only,
            follow: false,
        }
    }

    /// The plain matcher: every record's JSON parsed, no prefilter of any kind.
    fn plain(options: &Options, specs: &[Spec], offsets: Range<i64>) -> Vec<i64> {
        let mut out = Vec::new();
        for (i, (ts, _, value, headers)) in specs.iter().enumerate() {
            let offset = i as i64;
            if !offsets.contains(&offset) || !in_time(options, *ts) {
                continue;
            }
            let value = value.as_deref().unwrap_or_default();
            let fields = Fields::decode(value, |name| {
                headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            });
            let matched = match &fields.record {
                Some(_) => options.matcher.is_match(fields.line.as_bytes()),
                None => options.matcher.is_match(value),
            };
            if matched && options.filter.accepts(&fields) {
                out.push(offset);
            }
        }
        out
    }

    fn scanned(options: &Options, bytes: &[u8], offsets: Range<i64>) -> (u64, Vec<i64>) {
        let (mut decoder, mut candidates, mut hits) = (Decoder::default(), Vec::new(), Vec::new());
        let (header, raw) = batches(bytes).next().unwrap().unwrap();
        let s = scan_batch(
            options,
            0,
            &mut decoder,
            &header,
            raw,
            offsets,
            &mut candidates,
            &mut hits,
        )
        .unwrap();
        (s.matched, hits.iter().map(|h| h.offset).collect())
    }

    /// Lines made of the characters that matter: word and non-word characters, JSON's
    /// escaped ones (quote, backslash, newline, tab), a non-ASCII letter.
    fn line() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("a"),
                Just("b"),
                Just("ab"),
                Just(" "),
                Just("\""),
                Just("\\"),
                Just("\n"),
                Just("\t"),
                Just("é"),
                Just("A"),
                Just("line"),
                Just(":"),
            ],
            0..8,
        )
        .prop_map(|parts| parts.concat())
    }

    /// Contract records (some with a level, some with a nested `fields.line`), values that
    /// look like JSON but are not contract records, raw text, and null values.
    fn value() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop_oneof![
            (
                line(),
                "[ab]{0,2}",
                proptest::option::of(prop_oneof![Just("error"), Just("info")]),
                any::<bool>()
            )
                .prop_map(|(line, host, level, nested)| {
                    let mut v =
                        serde_json::json!({"ts": "t", "host": host, "source": "/s", "line": line});
                    if let Some(l) = level {
                        v["level"] = l.into();
                    }
                    if nested {
                        v["fields"] = serde_json::json!({"line": "ab a b"});
                    }
                    Some(v.to_string().into_bytes())
                }),
            line().prop_map(|l| Some(serde_json::json!({"line": l}).to_string().into_bytes())),
            line().prop_map(|l| Some(l.into_bytes())),
            Just(None),
        ]
    }

    fn query() -> impl Strategy<Value = (String, bool, bool)> {
        (
            prop_oneof![
                Just("a"),
                Just("ab"),
                Just("b a"),
                Just("^a"),
                Just("b$"),
                Just(r"\ba\b"),
                Just(r"\Bb"),
                Just("a|\"b"),
                Just(r"\\"),
                Just(r"\n"),
                Just("é"),
                Just("a*"),
                Just(r"(?m)^b"),
                Just("line"),
                Just(r"\w+ \w"),
                Just(r#"":""#),
                Just("[^a]b"),
            ],
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(q, literal, ic)| (q.to_string(), literal, ic))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        /// The whole-batch scan (and its shortcut for counting) never changes a result: it
        /// finds exactly the records the plain matcher finds, counting or not, filtered or not.
        #[test]
        fn scan_equals_the_plain_matcher(
            values in proptest::collection::vec((value(), 0i64..100, any::<bool>()), 1..30),
            (q, literal, ic) in query(),
            from in 0i64..5,
            level_filter in any::<bool>(),
            codec in prop_oneof![Just(Compression::None), Just(Compression::Lz4)],
        ) {
            let specs: Vec<Spec> = values
                .into_iter()
                .map(|(v, ts, with_header)| {
                    let headers = if with_header { vec![("level".to_string(), b"error".to_vec())] } else { vec![] };
                    (ts, None, v, headers)
                })
                .collect();
            let bytes = encode(0, &specs, codec);
            let matcher = Matcher::new(&q, literal, ic).unwrap();
            let filter = Filter { level: level_filter.then(|| "error".to_string()), ..Filter::default() };
            let offsets = from..(specs.len() as i64 - 1).max(from);
            for count_only in [true, false] {
                let options = options(matcher.clone(), count_only, filter.clone());
                let want = plain(&options, &specs, offsets.clone());
                let (matched, hits) = scanned(&options, &bytes, offsets.clone());
                prop_assert_eq!(matched, want.len() as u64, "query {:?} literal {} -i {}", q, literal, ic);
                if !count_only {
                    prop_assert_eq!(hits, want);
                }
            }
        }
    }

    #[test]
    fn line_span_finds_the_top_level_line() {
        let v = br#"{"ts":"t","fields":{"line":"no"},"n":[1,{"a":"}"}],"line":"yes","x":1}"#;
        let span = line_span(v).unwrap();
        assert_eq!(&v[span], b"yes");
        assert_eq!(line_span(br#"{"ts":"t"}"#), None);
        assert_eq!(line_span(b"line: plain"), None);
        assert_eq!(
            line_span(br#"  { "line" : "x" }"#).map(|s| s.len()),
            Some(1)
        );
    }
}
