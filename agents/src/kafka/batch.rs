//! Kafka record batches (magic v2), written record by record straight into one buffer.
//!
//! librdkafka copies every message into a message object, allocates its header list,
//! queues it, and writes it into a batch on another thread; at 1.5 million lines a second
//! that per-message work was most of the agent's CPU. Here a record costs a few varints and
//! two `memcpy`s into the open batch; compression and the CRC run once per batch.
//!
//! Layout (Kafka's `RecordBatch`): a 61-byte header (base offset, length, leader epoch,
//! magic 2, CRC-32C of everything after the CRC field, attributes with the codec, last
//! offset delta, first and max timestamps, producer id, epoch, base sequence, record
//! count), then the records, compressed as a whole.

use std::io::Write;

use bytes::Bytes;

/// Bytes of the batch header, before the records.
pub const HEADER_BYTES: usize = 61;
const LENGTH_AT: usize = 8;
const CRC_AT: usize = 17;
/// The CRC covers the batch from the attributes on.
const ATTRIBUTES_AT: usize = 21;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
/// Bytes a record adds beyond its key, value and header bytes, at most (varints).
pub const RECORD_OVERHEAD: usize = 5 + 1 + 10 + 5 + 5 + 5 + 5;

/// The compression codec of a batch, and its code in the batch attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Lz4,
    Zstd,
}

impl Compression {
    /// Parses a `compression.type` value as librdkafka and Kafka name codecs.
    pub fn parse(name: &str) -> Option<Compression> {
        match name.to_ascii_lowercase().as_str() {
            "none" => Some(Compression::None),
            "lz4" => Some(Compression::Lz4),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    fn attribute(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

/// The idempotent producer's stamp on a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStamp {
    pub id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("cannot compress a record batch ({codec:?}): {cause}")]
    Compress {
        codec: Compression,
        cause: std::io::Error,
    },
    #[error("cannot decode a record batch: {0}")]
    Decode(String),
}

/// One record to append: borrowed key, value and headers.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub headers: &'a [(&'a str, &'a [u8])],
    /// Milliseconds since the epoch.
    pub timestamp: i64,
}

impl RecordRef<'_> {
    /// The bytes this record adds to a batch, at most.
    pub fn size_hint(&self) -> usize {
        RECORD_OVERHEAD
            + self.key.len()
            + self.value.len()
            + self
                .headers
                .iter()
                .map(|(k, v)| 10 + k.len() + v.len())
                .sum::<usize>()
    }
}

/// The records of a batch being filled, uncompressed.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    records: Vec<u8>,
    count: i32,
    first_timestamp: i64,
    max_timestamp: i64,
}

impl BatchBuilder {
    /// An empty batch writing into `buffer` (cleared), e.g. one of a finished batch.
    pub fn from_buffer(mut buffer: Vec<u8>) -> BatchBuilder {
        buffer.clear();
        BatchBuilder {
            records: buffer,
            ..BatchBuilder::default()
        }
    }

    /// The records' buffer, for reuse.
    pub fn into_buffer(self) -> Vec<u8> {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Records in the batch.
    pub fn count(&self) -> i32 {
        self.count
    }

    /// Uncompressed bytes of the records.
    pub fn bytes(&self) -> usize {
        self.records.len()
    }

    /// Appends a record (Kafka's `Record`: length, attributes, timestamp delta, offset
    /// delta, key, value, headers; lengths and deltas as zigzag varints).
    pub fn append(&mut self, rec: &RecordRef<'_>) {
        if self.count == 0 {
            self.first_timestamp = rec.timestamp;
            self.max_timestamp = rec.timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(rec.timestamp);
        let ts_delta = rec.timestamp.wrapping_sub(self.first_timestamp);
        let offset_delta = i64::from(self.count);
        let mut body = 1
            + varint_len(ts_delta)
            + varint_len(offset_delta)
            + varint_len(rec.key.len() as i64)
            + rec.key.len()
            + varint_len(rec.value.len() as i64)
            + rec.value.len()
            + varint_len(rec.headers.len() as i64);
        for (k, v) in rec.headers {
            body += varint_len(k.len() as i64) + k.len() + varint_len(v.len() as i64) + v.len();
        }
        let buf = &mut self.records;
        buf.reserve(body + 5);
        put_varint(buf, body as i64);
        buf.push(0);
        put_varint(buf, ts_delta);
        put_varint(buf, offset_delta);
        put_varint(buf, rec.key.len() as i64);
        buf.extend_from_slice(rec.key);
        put_varint(buf, rec.value.len() as i64);
        buf.extend_from_slice(rec.value);
        put_varint(buf, rec.headers.len() as i64);
        for (k, v) in rec.headers {
            put_varint(buf, k.len() as i64);
            buf.extend_from_slice(k.as_bytes());
            put_varint(buf, v.len() as i64);
            buf.extend_from_slice(v);
        }
        self.count += 1;
    }

    /// The whole batch as it goes on the wire: header, compressed records, CRC.
    pub fn seal(&self, codec: Compression, stamp: ProducerStamp) -> Result<Vec<u8>, BatchError> {
        self.seal_into(Vec::new(), codec, stamp)
    }

    /// [`BatchBuilder::seal`] into `out` (cleared first): a buffer to reuse.
    pub fn seal_into(
        &self,
        mut out: Vec<u8>,
        codec: Compression,
        stamp: ProducerStamp,
    ) -> Result<Vec<u8>, BatchError> {
        out.clear();
        out.reserve(HEADER_BYTES + self.records.len() / 2 + 64);
        out.resize(HEADER_BYTES, 0);
        let compress_err = |cause| BatchError::Compress { codec, cause };
        match codec {
            Compression::None => out.extend_from_slice(&self.records),
            Compression::Lz4 => {
                // Independent 64 KiB blocks, no content checksum: what the Java client writes
                // and every Kafka reader accepts; the batch CRC covers the bytes anyway.
                // Level 0 is LZ4's fast mode (levels >= 3 are the slow HC mode).
                let mut enc = lz4::EncoderBuilder::new()
                    .level(0)
                    .block_size(lz4::BlockSize::Max64KB)
                    .block_mode(lz4::BlockMode::Independent)
                    .checksum(lz4::ContentChecksum::NoChecksum)
                    .build(out)
                    .map_err(compress_err)?;
                enc.write_all(&self.records).map_err(compress_err)?;
                let (o, done) = enc.finish();
                done.map_err(compress_err)?;
                out = o;
            }
            Compression::Zstd => {
                // Level 0: zstd's default (3), as librdkafka uses it.
                zstd::stream::copy_encode(&self.records[..], &mut out, 0).map_err(compress_err)?;
            }
        }
        let total = out.len();
        let last_offset_delta = self.count.saturating_sub(1);
        out[0..8].copy_from_slice(&0i64.to_be_bytes());
        out[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&((total - 12) as i32).to_be_bytes());
        out[12..16].copy_from_slice(&(-1i32).to_be_bytes());
        out[16] = 2;
        out[ATTRIBUTES_AT..23].copy_from_slice(&codec.attribute().to_be_bytes());
        out[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
        out[27..35].copy_from_slice(&self.first_timestamp.to_be_bytes());
        out[35..43].copy_from_slice(&self.max_timestamp.to_be_bytes());
        out[57..61].copy_from_slice(&self.count.to_be_bytes());
        restamp(&mut out, stamp);
        Ok(out)
    }
}

/// Sets a sealed batch's producer id, epoch and base sequence, and its CRC (which covers
/// them): a batch is renumbered when the producer id is reset.
pub fn restamp(batch: &mut [u8], stamp: ProducerStamp) {
    if batch.len() < HEADER_BYTES {
        return;
    }
    batch[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&stamp.id.to_be_bytes());
    batch[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2].copy_from_slice(&stamp.epoch.to_be_bytes());
    batch[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4]
        .copy_from_slice(&stamp.base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A record decoded back from a sealed batch (for records that must go to the spool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp: i64,
}

/// Decodes a sealed batch's records.
pub fn decode(batch: &[u8]) -> Result<Vec<OwnedRecord>, BatchError> {
    let mut buf = Bytes::copy_from_slice(batch);
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf)
        .map_err(|e| BatchError::Decode(e.to_string()))?;
    Ok(set
        .records
        .into_iter()
        .map(|r| OwnedRecord {
            key: r.key.map(|k| k.to_vec()).unwrap_or_default(),
            value: r.value.map(|v| v.to_vec()).unwrap_or_default(),
            headers: r
                .headers
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.map(|v| v.to_vec()).unwrap_or_default()))
                .collect(),
            timestamp: r.timestamp,
        })
        .collect())
}

fn varint_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    // 7 bits per byte; 0 still takes one byte.
    (64 - (z | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(buf: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.push((z as u8) | 0x80);
        z >>= 7;
    }
    buf.push(z as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STAMP: ProducerStamp = ProducerStamp {
        id: 4242,
        epoch: 3,
        base_sequence: 17,
    };

    fn build(records: &[OwnedRecord]) -> BatchBuilder {
        let mut b = BatchBuilder::default();
        for r in records {
            let headers: Vec<(&str, &[u8])> = r
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect();
            b.append(&RecordRef {
                key: &r.key,
                value: &r.value,
                headers: &headers,
                timestamp: r.timestamp,
            });
        }
        b
    }

    fn record(key: &str, value: &str, ts: i64) -> OwnedRecord {
        OwnedRecord {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            headers: vec![
                ("host".into(), b"web1".to_vec()),
                ("source".into(), b"/var/log/a.log".to_vec()),
                ("level".into(), b"error".to_vec()),
            ],
            timestamp: ts,
        }
    }

    #[test]
    fn varints_match_kafkas_zigzag_encoding() {
        for (v, want) in [
            (0i64, vec![0u8]),
            (-1, vec![1]),
            (1, vec![2]),
            (63, vec![126]),
            (-64, vec![127]),
            (64, vec![128, 1]),
            (300, vec![216, 4]),
            (
                i64::MAX,
                vec![0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1],
            ),
        ] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf, want, "{v}");
            assert_eq!(varint_len(v), want.len(), "{v}");
        }
    }

    #[test]
    fn a_sealed_batch_decodes_with_kafka_protocol_for_every_codec() {
        let records = vec![
            record(
                "web1:/var/log/a.log",
                "{\"line\":\"one\"}",
                1_714_564_800_123,
            ),
            record(
                "web1:/var/log/a.log",
                "{\"line\":\"two\"}",
                1_714_564_800_100,
            ),
            record("", "", 1_714_564_800_200),
        ];
        for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let sealed = build(&records).seal(codec, STAMP).expect("seal");
            let mut buf = Bytes::from(sealed.clone());
            let set =
                kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).expect("decode");
            assert_eq!(set.records.len(), 3);
            let want = match codec {
                Compression::None => kafka_protocol::records::Compression::None,
                Compression::Lz4 => kafka_protocol::records::Compression::Lz4,
                Compression::Zstd => kafka_protocol::records::Compression::Zstd,
            };
            assert_eq!(set.compression, want);
            for (i, r) in set.records.iter().enumerate() {
                assert_eq!(r.producer_id, 4242);
                assert_eq!(r.producer_epoch, 3);
                assert_eq!(r.sequence, 17 + i as i32);
                assert_eq!(r.offset, i as i64);
            }
            assert_eq!(decode(&sealed).expect("decode"), records);
            // The header fields a broker checks.
            let max_ts = i64::from_be_bytes(sealed[35..43].try_into().expect("8 bytes"));
            assert_eq!(max_ts, 1_714_564_800_200);
            let crc = u32::from_be_bytes(sealed[17..21].try_into().expect("4 bytes"));
            assert_eq!(crc, crc32c::crc32c(&sealed[21..]));
        }
    }

    #[test]
    fn restamping_renumbers_and_keeps_the_crc_valid() {
        let mut sealed = build(&[record("k", "v", 1)])
            .seal(Compression::Lz4, STAMP)
            .expect("seal");
        let new = ProducerStamp {
            id: 7,
            epoch: 0,
            base_sequence: 0,
        };
        restamp(&mut sealed, new);
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut Bytes::from(sealed))
            .expect("decode");
        assert_eq!(set.records[0].producer_id, 7);
        assert_eq!(set.records[0].sequence, 0);
    }

    proptest! {
        #[test]
        fn what_is_encoded_decodes_back(
            recs in proptest::collection::vec(
                (
                    proptest::collection::vec(any::<u8>(), 0..64),
                    proptest::collection::vec(any::<u8>(), 0..600),
                    proptest::collection::vec(("[a-z]{1,8}", proptest::collection::vec(any::<u8>(), 0..20)), 0..4),
                    -1_000_000i64..1_000_000,
                ),
                1..40,
            ),
            codec in prop_oneof![Just(Compression::None), Just(Compression::Lz4), Just(Compression::Zstd)],
        ) {
            let records: Vec<OwnedRecord> = recs
                .into_iter()
                .map(|(key, value, mut headers, dt)| {
                    // kafka-protocol keeps headers in a map: one value per key.
                    headers.sort();
                    headers.dedup_by(|a, b| a.0 == b.0);
                    OwnedRecord { key, value, headers, timestamp: 1_700_000_000_000 + dt }
                })
                .collect();
            let b = build(&records);
            let hint: usize = records.iter().map(|r| {
                let h: Vec<(&str, &[u8])> = r.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
                RecordRef { key: &r.key, value: &r.value, headers: &h, timestamp: r.timestamp }.size_hint()
            }).sum();
            prop_assert!(b.bytes() <= hint);
            let sealed = b.seal(codec, STAMP).expect("seal");
            prop_assert_eq!(decode(&sealed).expect("decode"), records);
        }
    }
}
