//! Kafka record batches (message format v2, Kafka 0.11 and later) as a Fetch returns them:
//! split into batches, check the CRC-32C, decompress (none, gzip, snappy, lz4, zstd) and
//! index the records without copying them. The scanner then works on whole decompressed
//! batches; nothing is allocated per record.

use std::io::Read;
use std::ops::Range;

use rill_agent::kafka::huge_pages::HugeBuffer;

use crate::search::lz4_frame;

/// The fixed part of a v2 batch, up to and including the record count.
pub const HEADER_LEN: usize = 61;
/// Bytes before `attributes`, where the CRC-32C's span starts.
const CRC_START: usize = 21;
/// Batches a broker sends are at most its max message size (1 MB by default); a decompressed
/// batch larger than this is refused rather than allocated.
const MAX_DECOMPRESSED: u64 = 1 << 30;

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
    #[error("cannot map memory to decompress record batches into: {0}")]
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

/// Decompresses the batch's records into `scratch` when compressed and indexes them into
/// `out` (cleared first). Returns the bytes the records' ranges point into.
///
/// The CRC is not checked here (as librdkafka does not by default, `check.crcs=false`): the
/// broker checks it when the batch is produced and when it recovers its log, and checking it
/// again cost a tenth of a search's time. [`check_crc`] is there for callers that want it.
pub fn decode<'a>(
    header: &BatchHeader,
    batch: &'a [u8],
    scratch: &'a mut Scratch,
    out: &mut Vec<Record>,
) -> Result<&'a [u8], BatchError> {
    out.clear();
    let offset = header.base_offset;
    let body = &batch[HEADER_LEN..];
    let data: &[u8] = match header.codec() {
        0 => body,
        codec => {
            let dst = scratch.prepare().map_err(BatchError::Buffer)?;
            let len = decompress(codec, body, dst).map_err(|(codec, source)| match source {
                Some(cause) => BatchError::Decompress {
                    offset,
                    codec,
                    cause,
                },
                None => BatchError::Codec {
                    offset,
                    codec: header.codec(),
                },
            })?;
            &dst[..len]
        }
    };
    let malformed = |what| BatchError::Malformed { offset, what };
    let count = usize::try_from(header.record_count).map_err(|_| malformed("negative count"))?;
    // Each record takes at least 7 bytes: no allocation on a count the data cannot hold.
    out.reserve(count.min(data.len() / 7));
    let log_append_time = header.log_append_time();
    let mut pos = 0;
    for _ in 0..count {
        let start = pos;
        let len = varint(data, &mut pos).ok_or_else(|| malformed("truncated record"))?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| pos.checked_add(l))
            .filter(|&e| e <= data.len())
            .ok_or_else(|| malformed("record longer than its batch"))?;
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
    Ok(data)
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

/// Decompresses `src` into the start of `dst` and returns the decompressed length. `dst` is
/// kept between batches at the largest size needed so far: reading into it costs no
/// clearing, no page faults and no copies through the codec's own buffer. The error names
/// the codec and carries the cause, or `None` for a codec that does not exist.
fn decompress(
    codec: u8,
    src: &[u8],
    dst: &mut HugeBuffer,
) -> Result<usize, (&'static str, Option<std::io::Error>)> {
    match codec {
        1 => read_all(&mut flate2::read::MultiGzDecoder::new(src), dst)
            .map_err(|e| ("gzip", Some(e))),
        2 => snappy(src, dst).map_err(|e| ("snappy", Some(e))),
        3 => lz4(src, dst).map_err(|e| ("lz4", Some(e))),
        4 => zstd::stream::read::Decoder::with_buffer(src)
            .and_then(|mut d| read_all(&mut d, dst))
            .map_err(|e| ("zstd", Some(e))),
        _ => Err(("unknown", None)),
    }
}

/// The decompression buffer's first size: a batch producers close at about 1 MB.
const SCRATCH_BYTES: usize = 1 << 20;

/// The buffer batches are decompressed into, kept between batches (huge pages: a search
/// decompresses gigabytes through it). Made at its first size when first needed, or before
/// by [`Scratch::prepare`]; grown when a batch needs more.
#[derive(Default)]
pub struct Scratch(Option<HugeBuffer>);

impl Scratch {
    /// The buffer, made and faulted in now if it is not yet: a reader calls this while its
    /// first fetch is on the way rather than when the first batch arrives.
    pub fn prepare(&mut self) -> std::io::Result<&mut HugeBuffer> {
        let buffer = match &mut self.0 {
            Some(buffer) => buffer,
            empty => {
                let mut buffer = HugeBuffer::new(SCRATCH_BYTES)?;
                for page in buffer.chunks_mut(4096) {
                    page[0] = 0;
                }
                empty.insert(buffer)
            }
        };
        Ok(buffer)
    }
}

/// Makes room in `dst` for `len` bytes, keeping its first `keep`; a batch that claims to be
/// larger than any batch is refused rather than allocated.
fn grow(dst: &mut HugeBuffer, len: usize, keep: usize) -> std::io::Result<()> {
    if len as u64 > MAX_DECOMPRESSED {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "larger than any batch",
        ));
    }
    dst.grow(len, keep)
}

/// An LZ4 frame into `dst` from its start, growing it as needed; the decompressed length.
fn lz4(src: &[u8], dst: &mut HugeBuffer) -> std::io::Result<usize> {
    loop {
        match lz4_frame::decompress(src, dst)? {
            Some(len) => return Ok(len),
            None => grow(dst, dst.len() * 2, 0)?,
        }
    }
}

/// Reads `reader` to its end into `dst` from its start, growing it as needed; the length read.
fn read_all(reader: &mut dyn Read, dst: &mut HugeBuffer) -> std::io::Result<usize> {
    let mut filled = 0;
    loop {
        if filled == dst.len() {
            grow(dst, dst.len() * 2, filled)?;
        }
        match reader.read(&mut dst[filled..]) {
            Ok(0) => return Ok(filled),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Snappy as Kafka clients write it: the Java client frames blocks the xerial way (a magic
/// header, then length-prefixed blocks), librdkafka writes one raw block. Both are read.
fn snappy(src: &[u8], dst: &mut HugeBuffer) -> std::io::Result<usize> {
    const XERIAL: &[u8] = b"\x82SNAPPY\x00";
    let invalid = |e: snap::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let mut decoder = snap::raw::Decoder::new();
    let mut filled = 0;
    let mut block = |block: &[u8], dst: &mut HugeBuffer| -> std::io::Result<()> {
        let n = snap::raw::decompress_len(block).map_err(invalid)?;
        grow(dst, filled + n, filled)?;
        filled += decoder
            .decompress(block, &mut dst[filled..filled + n])
            .map_err(invalid)?;
        Ok(())
    };
    if !src.starts_with(XERIAL) {
        block(src, dst)?;
        return Ok(filled);
    }
    // Magic (8), version (4), compatible version (4), then blocks.
    let mut rest = src.get(16..).unwrap_or_default();
    while !rest.is_empty() {
        let truncated =
            || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "truncated block");
        let len = rest
            .get(..4)
            .map(|l| u32::from_be_bytes(l.try_into().expect("4 bytes")) as usize)
            .ok_or_else(truncated)?;
        let data = rest.get(4..4 + len).ok_or_else(truncated)?;
        block(data, dst)?;
        rest = &rest[4 + len..];
    }
    Ok(filled)
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
        let (mut scratch, mut records) = (Scratch::default(), Vec::new());
        for item in batches(bytes) {
            let (header, raw) = item?;
            let data = decode(&header, raw, &mut scratch, &mut records)?;
            for r in &records {
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
                out.push((
                    r.offset,
                    (
                        r.timestamp,
                        parts.key.clone().map(|k| data[k].to_vec()),
                        parts.value.clone().map(|v| data[v].to_vec()),
                        headers,
                    ),
                ));
            }
        }
        Ok(out)
    }

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// A batch that decompresses to more than the first buffer (2 MiB) makes it grow, in
    /// every codec; a size no batch has is refused without allocating it.
    #[test]
    fn the_buffer_grows_for_large_batches_and_refuses_absurd_ones() {
        let specs: Vec<Spec> = (0..3000)
            .map(|i| {
                let value = format!("{i:08} {}", "x".repeat(1000)).into_bytes();
                (i, None, Some(value), vec![])
            })
            .collect();
        for codec in CODECS {
            let bytes = encode(0, &specs, codec);
            let decoded = decode_all(&bytes).unwrap();
            assert_eq!(decoded.len(), specs.len(), "{codec:?}");
            assert_eq!(decoded[2999].1, specs[2999], "{codec:?}");
        }
        let mut dst = HugeBuffer::new(1).unwrap();
        let refused = grow(&mut dst, MAX_DECOMPRESSED as usize + 1, 0).unwrap_err();
        assert!(refused.to_string().contains("larger than any batch"));
        assert_eq!(dst.len(), 1 << 20, "half a huge page");
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
        let (mut scratch, mut records) = (Scratch::default(), Vec::new());
        let data = decode(&h, raw, &mut scratch, &mut records).unwrap();
        let parts = records[0].parts(data).unwrap();
        assert_eq!(header(data, &parts, "level"), Some(&b"error"[..]));
        assert_eq!(header(data, &parts, "source"), None);
    }
}
