//! Kafka record batches (message format v2, Kafka 0.11 and later) as a Fetch returns them:
//! split into batches, check the CRC-32C, decompress (none, gzip, snappy, lz4, zstd) and
//! index the records without copying them, a window of them at a time (see
//! [`crate::search::inflate`]); nothing is allocated per record.

use std::ops::Range;

use crate::search::inflate::{Inflate, Window};

/// The fixed part of a v2 batch, up to and including the record count.
pub const HEADER_LEN: usize = 61;
/// Bytes before `attributes`, where the CRC-32C's span starts.
const CRC_START: usize = 21;
/// The most records handed to the scan at once: the index of them stays small (32 bytes a
/// record) whatever a batch or a window holds.
const RECORDS_AT_ONCE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("record batch at offset {offset}: {what}")]
    Malformed { offset: i64, what: &'static str },
    #[error("record batch at offset {offset}: CRC-32C mismatch (the data is corrupt)")]
    Crc { offset: i64 },
    #[error(
        "record batch at offset {offset}: message format v{magic} is not supported \
         (only v2, written by Kafka 0.11 and later clients)"
    )]
    Magic { offset: i64, magic: i8 },
    #[error("record batch at offset {offset}: unknown compression codec {codec}")]
    Codec { offset: i64, codec: u8 },
    #[error("cannot allocate memory to decompress record batches into: {0}")]
    Buffer(std::io::Error),
    #[error("record batch at offset {offset}: cannot decompress {codec}: {cause}")]
    Decompress {
        offset: i64,
        codec: &'static str,
        cause: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// The whole batch, its offset and length prefix included.
    pub len: usize,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub record_count: i32,
}

impl BatchHeader {
    /// The offset after this batch's last record.
    pub fn next_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta) + 1
    }

    pub fn codec(&self) -> u8 {
        (self.attributes & 0x7) as u8
    }

    /// Transaction markers, not data.
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// The broker's append time replaces every record's own timestamp.
    fn log_append_time(&self) -> bool {
        self.attributes & 0x08 != 0
    }
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

/// Splits a Fetch's record set into whole batches. A trailing partial batch (a broker may
/// cut the last one at its size limit) ends the iteration without an error.
pub fn batches(records: &[u8]) -> Batches<'_> {
    Batches { rest: records }
}

pub struct Batches<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<(BatchHeader, &'a [u8]), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.rest;
        // Offset, length, leader epoch and magic: the same place in every message format.
        if b.len() < 17 {
            return None;
        }
        let base_offset = be_i64(b, 0);
        let length = be_i32(b, 8);
        let magic = b[16] as i8;
        let Some(len) = usize::try_from(length).ok().map(|l| l + 12) else {
            self.rest = &[];
            return Some(Err(BatchError::Malformed {
                offset: base_offset,
                what: "negative length",
            }));
        };
        if b.len() < len {
            return None;
        }
        self.rest = &b[len..];
        if magic != 2 {
            return Some(Err(BatchError::Magic {
                offset: base_offset,
                magic,
            }));
        }
        if len < HEADER_LEN {
            return Some(Err(BatchError::Malformed {
                offset: base_offset,
                what: "shorter than its header",
            }));
        }
        let batch = &b[..len];
        let header = BatchHeader {
            base_offset,
            len,
            magic,
            crc: be_i32(batch, 17) as u32,
            attributes: be_i16(batch, 21),
            last_offset_delta: be_i32(batch, 23),
            base_timestamp: be_i64(batch, 27),
            max_timestamp: be_i64(batch, 35),
            producer_id: be_i64(batch, 43),
            record_count: be_i32(batch, 57),
        };
        Some(Ok((header, batch)))
    }
}

/// One record of a decoded batch: where it lies in the batch's (decompressed) record bytes,
/// its offset and its time. Its key, value and headers are parsed only for the few records a
/// scan looks at ([`Record::parts`]): indexing every part of every record cost more than
/// matching them.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    /// The whole record, its length prefix included.
    pub span: Range<usize>,
}

/// A record's key, value and headers: ranges into the batch's record bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Parts {
    pub key: Option<Range<usize>>,
    pub value: Option<Range<usize>>,
    /// The encoded headers (after their count) and how many there are.
    pub headers: Range<usize>,
    pub header_count: usize,
}

impl Parts {
    /// The value's range, an empty one (at the headers) for a null value.
    pub fn value_range(&self) -> Range<usize> {
        self.value
            .clone()
            .unwrap_or(self.headers.start..self.headers.start)
    }
}

impl Record {
    /// Parses the record's key, value and header count; `None` when they do not fit in it.
    pub fn parts(&self, data: &[u8]) -> Option<Parts> {
        let rec = data.get(..self.span.end)?;
        let mut pos = self.span.start;
        varint(rec, &mut pos)?; // length
        pos += 1; // attributes
        varint(rec, &mut pos)?; // timestamp delta
        varint(rec, &mut pos)?; // offset delta
        let key = bytes_field(rec, &mut pos)?;
        let value = bytes_field(rec, &mut pos)?;
        let header_count = varint(rec, &mut pos).and_then(|n| usize::try_from(n).ok())?;
        (pos <= self.span.end).then_some(Parts {
            key,
            value,
            headers: pos..self.span.end,
            header_count,
        })
    }
}

/// What a thread decodes batches with, kept between batches: the window compressed batches
/// are decompressed into, and the index of the records in it.
#[derive(Default)]
pub struct Decoder {
    window: Window,
    records: Vec<Record>,
}

impl Decoder {
    /// Takes the window's memory and faults it in now (see [`Window::prepare`]).
    pub fn prepare(&mut self) -> std::io::Result<()> {
        self.window.prepare()
    }

    /// Decodes the batch's records and hands them to `each` a window at a time, in offset
    /// order: the bytes the records' ranges point into, and the records. A compressed batch
    /// is decompressed into the window; an uncompressed one is indexed where it lies.
    ///
    /// The CRC is not checked here (as librdkafka does not by default, `check.crcs=false`):
    /// the broker checks it when the batch is produced and when it recovers its log, and
    /// checking it again cost a tenth of a search's time. [`check_crc`] is there for callers
    /// that want it.
    pub fn decode(
        &mut self,
        header: &BatchHeader,
        batch: &[u8],
        mut each: impl FnMut(&[u8], &[Record]) -> Result<(), BatchError>,
    ) -> Result<(), BatchError> {
        let Decoder { window, records } = self;
        let offset = header.base_offset;
        let body = &batch[HEADER_LEN..];
        let mut remaining =
            usize::try_from(header.record_count).map_err(|_| BatchError::Malformed {
                offset,
                what: "negative count",
            })?;
        if header.codec() == 0 {
            let mut pos = 0;
            while remaining > 0 {
                records.clear();
                pos = index(
                    header,
                    body,
                    pos,
                    remaining.min(RECORDS_AT_ONCE),
                    true,
                    records,
                )?;
                remaining -= records.len();
                each(body, records)?;
            }
            return Ok(());
        }
        let Some((codec, inflate)) = Inflate::new(header.codec(), body) else {
            return Err(BatchError::Codec {
                offset,
                codec: header.codec(),
            });
        };
        let failed = |cause: std::io::Error| match cause.kind() {
            std::io::ErrorKind::OutOfMemory => BatchError::Buffer(cause),
            _ => BatchError::Decompress {
                offset,
                codec,
                cause,
            },
        };
        let mut inflate = inflate.map_err(failed)?;
        window.clear();
        let mut ended = false;
        while remaining > 0 {
            if !ended {
                ended = inflate.fill(window).map_err(failed)?;
            }
            records.clear();
            let held = window.held();
            let end = index(
                header,
                held,
                0,
                remaining.min(RECORDS_AT_ONCE),
                ended,
                records,
            )?;
            remaining -= records.len();
            if !records.is_empty() {
                each(&held[..end], records)?;
            }
            window.consume(end);
        }
        Ok(())
    }
}

/// Indexes the records that lie whole in `data` from `pos`, at most `wanted` of them, into
/// `out`, and returns where the last one ends. A record cut off at the end of `data` is left
/// for the next window, unless the data has `ended`: then it is an error, as it is when
/// fewer than `wanted` records are left.
fn index(
    header: &BatchHeader,
    data: &[u8],
    mut pos: usize,
    wanted: usize,
    ended: bool,
    out: &mut Vec<Record>,
) -> Result<usize, BatchError> {
    let malformed = |what| BatchError::Malformed {
        offset: header.base_offset,
        what,
    };
    // Each record takes at least 7 bytes: no allocation on a count the data cannot hold.
    out.reserve(wanted.min((data.len() - pos.min(data.len())) / 7));
    let log_append_time = header.log_append_time();
    while out.len() < wanted {
        let start = pos;
        let Some(len) = varint(data, &mut pos) else {
            // A varint takes at most 10 bytes: with that many left, this is no varint.
            if ended || data.len() - start >= 10 {
                return Err(malformed("truncated record"));
            }
            return Ok(start);
        };
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| pos.checked_add(l))
            .ok_or_else(|| malformed("record longer than its batch"))?;
        if end > data.len() {
            if ended {
                return Err(malformed("record longer than its batch"));
            }
            return Ok(start);
        }
        let rec = &data[..end];
        pos += 1; // attributes
        let ts_delta = varint(rec, &mut pos).ok_or_else(|| malformed("bad timestamp"))?;
        let offset_delta = varint(rec, &mut pos).ok_or_else(|| malformed("bad offset"))?;
        out.push(Record {
            offset: header.base_offset + offset_delta,
            timestamp: if log_append_time {
                header.max_timestamp
            } else {
                header.base_timestamp.wrapping_add(ts_delta)
            },
            span: start..end,
        });
        pos = end;
    }
    Ok(pos)
}

/// Whether the batch's CRC-32C (over everything from its attributes on) is right.
pub fn check_crc(header: &BatchHeader, batch: &[u8]) -> Result<(), BatchError> {
    if crc32c::crc32c(&batch[CRC_START..]) != header.crc {
        return Err(BatchError::Crc {
            offset: header.base_offset,
        });
    }
    Ok(())
}

/// The value of the first header named `name`, if the record has it.
pub fn header<'a>(data: &'a [u8], parts: &Parts, name: &str) -> Option<&'a [u8]> {
    let rec = &data[..parts.headers.end];
    let mut pos = parts.headers.start;
    for _ in 0..parts.header_count {
        let key = bytes_field(rec, &mut pos)??;
        let value = bytes_field(rec, &mut pos)?;
        if &rec[key] == name.as_bytes() {
            return value.map(|v| &rec[v]);
        }
    }
    None
}

/// A zigzag varint (at most 10 bytes).
#[inline]
fn varint(buf: &[u8], pos: &mut usize) -> Option<i64> {
    // Most varints in a record are one byte (deltas, short lengths) or two (a record's
    // length, a timestamp delta of a busy batch): those take no loop.
    let zigzag = |raw: u64| (raw >> 1) as i64 ^ -((raw & 1) as i64);
    let first = *buf.get(*pos)?;
    if first < 0x80 {
        *pos += 1;
        return Some(zigzag(u64::from(first)));
    }
    let second = *buf.get(*pos + 1)?;
    if second < 0x80 {
        *pos += 2;
        return Some(zigzag(u64::from(first & 0x7f) | u64::from(second) << 7));
    }
    let mut raw = 0u64;
    for i in 0..10 {
        let b = *buf.get(*pos)?;
        *pos += 1;
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(zigzag(raw));
        }
    }
    None
}

/// A varint length then that many bytes; a length of -1 is null (`Some(None)`).
fn bytes_field(buf: &[u8], pos: &mut usize) -> Option<Option<Range<usize>>> {
    let len = varint(buf, pos)?;
    if len < 0 {
        return (len == -1).then_some(None);
    }
    let start = *pos;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    if end > buf.len() {
        return None;
    }
    *pos = end;
    Some(Some(start..end))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record as KRecord, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    use proptest::prelude::*;

    /// A record as a test writes it: timestamp, key, value, headers.
    pub(crate) type Spec = (
        i64,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<(String, Vec<u8>)>,
    );

    /// One batch with offsets from `base`, encoded by kafka-protocol (the way producers do).
    pub(crate) fn encode(base: i64, records: &[Spec], compression: Compression) -> Vec<u8> {
        let records: Vec<KRecord> = records
            .iter()
            .enumerate()
            .map(|(i, (timestamp, key, value, headers))| KRecord {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: base + i as i64,
                // kafka-protocol's encoder starts a new batch wherever offset - sequence
                // changes: counting up from -1 keeps all records in one batch.
                sequence: i as i32 - 1,
                timestamp: *timestamp,
                key: key.clone().map(Bytes::from),
                value: value.clone().map(Bytes::from),
                headers: headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            StrBytes::from_string(k.clone()),
                            Some(Bytes::from(v.clone())),
                        )
                    })
                    .collect::<IndexMap<_, _>>(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("encode batch");
        buf.to_vec()
    }

    /// Decodes every batch of `bytes` back into specs.
    fn decode_all(bytes: &[u8]) -> Result<Vec<(i64, Spec)>, BatchError> {
        let mut out = Vec::new();
        let mut decoder = Decoder::default();
        for item in batches(bytes) {
            let (header, raw) = item?;
            decoder.decode(&header, raw, |data, records| {
                for r in records {
                    out.push((r.offset, spec_of(data, r)?));
                }
                Ok(())
            })?;
        }
        Ok(out)
    }

    fn spec_of(data: &[u8], r: &Record) -> Result<Spec, BatchError> {
        let parts = r.parts(data).ok_or(BatchError::Malformed {
            offset: r.offset,
            what: "bad record",
        })?;
        let mut headers = Vec::new();
        let mut pos = parts.headers.start;
        for _ in 0..parts.header_count {
            let k = bytes_field(&data[..r.span.end], &mut pos).unwrap().unwrap();
            let v = bytes_field(&data[..r.span.end], &mut pos).unwrap().unwrap();
            headers.push((
                String::from_utf8(data[k].to_vec()).unwrap(),
                data[v].to_vec(),
            ));
        }
        Ok((
            r.timestamp,
            parts.key.clone().map(|k| data[k].to_vec()),
            parts.value.clone().map(|v| data[v].to_vec()),
            headers,
        ))
    }

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// A batch many windows long, with records larger than a window among them, decodes
    /// whole in every codec; the windows come in offset order and hold each record whole.
    #[test]
    fn batches_larger_than_a_window_and_records_larger_than_one_decode() {
        let specs: Vec<Spec> = (0..3000)
            .map(|i| {
                let pad = if i % 1000 == 999 { 700_000 } else { 1000 };
                let value = format!("{i:08} {}", "x".repeat(pad)).into_bytes();
                (i, None, Some(value), vec![])
            })
            .collect();
        for codec in CODECS {
            let bytes = encode(0, &specs, codec);
            let decoded = decode_all(&bytes).unwrap();
            assert_eq!(decoded.len(), specs.len(), "{codec:?}");
            for (i, (offset, got)) in decoded.iter().enumerate() {
                assert_eq!(*offset, i as i64, "{codec:?}");
                assert_eq!(got, &specs[i], "{codec:?} record {i}");
            }
            let (header, raw) = batches(&bytes).next().unwrap().unwrap();
            let (mut decoder, mut windows) = (Decoder::default(), 0);
            decoder
                .decode(&header, raw, |_, records| {
                    windows += 1;
                    assert!(records.len() <= RECORDS_AT_ONCE);
                    Ok(())
                })
                .unwrap();
            // Uncompressed records are indexed where they lie, RECORDS_AT_ONCE at a time.
            let least = if matches!(codec, Compression::None) {
                1
            } else {
                3
            };
            assert!(windows >= least, "{codec:?}: {windows} windows");
        }
    }

    /// A compressed batch whose records run past the decompressed data, or that has fewer
    /// records than its count, is malformed, however the windows fall.
    #[test]
    fn records_cut_off_by_the_end_of_the_data_are_malformed() {
        let specs: Vec<Spec> = (0..2000)
            .map(|i| {
                (
                    i,
                    None,
                    Some(format!("{i:08} {}", "y".repeat(300)).into_bytes()),
                    vec![],
                )
            })
            .collect();
        for codec in [Compression::Lz4, Compression::Gzip, Compression::Zstd] {
            let mut bytes = encode(0, &specs, codec);
            // One record more than the batch holds.
            bytes[57..61].copy_from_slice(&2001i32.to_be_bytes());
            let err = decode_all(&bytes).unwrap_err();
            assert!(
                matches!(
                    err,
                    BatchError::Malformed {
                        what: "truncated record",
                        ..
                    }
                ),
                "{codec:?}: {err}"
            );
        }
    }

    fn spec() -> impl Strategy<Value = Spec> {
        (
            0i64..1_000_000,
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
            // Distinct names: the encoder keeps headers in a map.
            proptest::collection::btree_map(
                "[a-z]{1,6}",
                proptest::collection::vec(any::<u8>(), 0..10),
                0..3,
            )
            .prop_map(|h| h.into_iter().collect()),
        )
    }

    proptest! {
        // Each case encodes up to a megabyte and a half: fewer cases.
        #![proptest_config(ProptestConfig::with_cases(16))]
        /// Records of any size, cut at any place by the windows' ends, decode whole.
        #[test]
        fn records_cut_by_window_ends_decode_whole(
            sizes in proptest::collection::vec(0usize..120_000, 2..12),
            codec in 1usize..5,
        ) {
            let specs: Vec<Spec> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    let text = b"abcdefgh\"xyz";
                    let value = (0..n).map(|j| text[(i * 7 + j / 3) % text.len()]).collect();
                    (i as i64, Some(format!("k{i}").into_bytes()), Some(value), vec![])
                })
                .collect();
            let bytes = encode(0, &specs, CODECS[codec]);
            let decoded = decode_all(&bytes).unwrap();
            prop_assert_eq!(decoded.len(), specs.len());
            for ((_, got), want) in decoded.iter().zip(&specs) {
                prop_assert_eq!(got, want);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever kafka-protocol encodes, in any codec, decodes back to the same records.
        #[test]
        fn decodes_what_kafka_protocol_encodes(
            specs in proptest::collection::vec(spec(), 1..40),
            base in 0i64..1_000_000,
            codec in 0usize..5,
        ) {
            let bytes = encode(base, &specs, CODECS[codec]);
            let decoded = decode_all(&bytes).unwrap();
            prop_assert_eq!(decoded.len(), specs.len());
            for (i, ((offset, got), want)) in decoded.iter().zip(&specs).enumerate() {
                prop_assert_eq!(*offset, base + i as i64);
                prop_assert_eq!(got, want);
            }
            let (header, _) = batches(&bytes).next().unwrap().unwrap();
            prop_assert_eq!(header.next_offset(), base + specs.len() as i64);
        }

        /// Truncated or corrupted input is an error or a shorter result, never a panic.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400), flip in 0usize..400) {
            let _ = decode_all(&bytes);
            let mut good = encode(5, &[(1, None, Some(b"hello".to_vec()), vec![])], Compression::None);
            let at = flip % good.len();
            good[at] ^= 0x55;
            let _ = decode_all(&good);
        }
    }

    #[test]
    fn partial_trailing_batch_is_left_out_and_corruption_is_caught() {
        let one = encode(
            0,
            &[(1, None, Some(b"a".to_vec()), vec![])],
            Compression::None,
        );
        let two = encode(
            1,
            &[(2, None, Some(b"b".to_vec()), vec![])],
            Compression::Lz4,
        );
        let mut both = [one.clone(), two.clone()].concat();
        both.truncate(one.len() + two.len() - 3);
        let decoded = decode_all(&both).unwrap();
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].0, 0);

        let mut bad = one.clone();
        let last = bad.len() - 1;
        let (header, raw) = batches(&one).next().unwrap().unwrap();
        assert!(check_crc(&header, raw).is_ok());
        bad[last] ^= 1;
        let (header, raw) = batches(&bad).next().unwrap().unwrap();
        assert!(matches!(
            check_crc(&header, raw),
            Err(BatchError::Crc { offset: 0 })
        ));

        let mut old = one;
        old[16] = 1;
        assert!(matches!(
            decode_all(&old),
            Err(BatchError::Magic {
                offset: 0,
                magic: 1
            })
        ));
    }

    /// librdkafka writes snappy as one raw block, the Java client xerial-framed (which is what
    /// kafka-protocol's encoder writes): both decode.
    #[test]
    fn raw_snappy_as_librdkafka_writes_it() {
        let specs: Vec<Spec> = (0..50)
            .map(|i| (i, None, Some(format!("line {i}").into_bytes()), vec![]))
            .collect();
        let plain = encode(0, &specs, Compression::None);
        let mut raw = plain[..HEADER_LEN].to_vec();
        raw.extend(
            snap::raw::Encoder::new()
                .compress_vec(&plain[HEADER_LEN..])
                .unwrap(),
        );
        let len = (raw.len() - 12) as i32;
        raw[8..12].copy_from_slice(&len.to_be_bytes());
        raw[22] = (raw[22] & !0x7) | 2;
        let crc = crc32c::crc32c(&raw[CRC_START..]);
        raw[17..21].copy_from_slice(&crc.to_be_bytes());
        let decoded = decode_all(&raw).unwrap();
        assert_eq!(decoded.len(), 50);
        assert_eq!(decoded[49].1 .2.as_deref(), Some(&b"line 49"[..]));
    }

    #[test]
    fn headers_are_found_by_name() {
        let bytes = encode(
            0,
            &[(
                1,
                None,
                Some(b"v".to_vec()),
                vec![
                    ("host".into(), b"web1".to_vec()),
                    ("level".into(), b"error".to_vec()),
                ],
            )],
            Compression::None,
        );
        let (h, raw) = batches(&bytes).next().unwrap().unwrap();
        Decoder::default()
            .decode(&h, raw, |data, records| {
                let parts = records[0].parts(data).unwrap();
                assert_eq!(header(data, &parts, "level"), Some(&b"error"[..]));
                assert_eq!(header(data, &parts, "source"), None);
                Ok(())
            })
            .unwrap();
    }
}
