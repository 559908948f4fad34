//! A minimal blocking Kafka client over `std::net::TcpStream` for protocol-level tests.
//! Requests and responses are encoded with the `kafka-protocol` crate (header versions from its
//! own helpers); raw bytes can be sent too, for malformed-input tests.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
use kafka_protocol::messages::api_versions_response::ApiVersionsResponse;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::create_topics_response::CreateTopicsResponse;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::fetch_response::{FetchResponse, PartitionData};
use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use kafka_protocol::messages::metadata_response::MetadataResponse;
use kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, ProduceResponse};
use kafka_protocol::messages::{RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// How long a read may block before the test calls the broker hung.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// One TCP connection to the broker.
pub struct Conn {
    pub stream: TcpStream,
    next_correlation_id: i32,
}

/// How a connection ended when the test expected it to end.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// Orderly EOF.
    Eof,
    /// Reset by peer.
    Reset,
}

impl Conn {
    pub fn connect(addr: &str) -> Conn {
        let addr: std::net::SocketAddr = addr.parse().expect("addr");
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            next_correlation_id: 1,
        }
    }

    /// Writes bytes exactly as given (no length prefix added).
    pub fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Writes a 4-byte big-endian length and the payload.
    pub fn send_frame(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + 4);
        frame.extend_from_slice(&(payload.len() as i32).to_be_bytes());
        frame.extend_from_slice(payload);
        self.write_raw(&frame)
    }

    /// Half-closes the write side (the broker sees EOF).
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads one response frame; `Ok(None)` on a clean EOF before any byte of it.
    pub fn read_frame(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            let n = self.stream.read(&mut len[got..])?;
            if n == 0 {
                if got == 0 {
                    return Ok(None);
                }
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "EOF inside a frame length",
                ));
            }
            got += n;
        }
        let len = i32::from_be_bytes(len);
        if !(0..=256 * 1024 * 1024).contains(&len) {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                format!("broker sent a frame length of {len}"),
            ));
        }
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body)?;
        Ok(Some(body))
    }

    /// Asserts the broker closes this connection (EOF or reset) without sending any response,
    /// within [`READ_TIMEOUT`].
    pub fn assert_closed(&mut self, what: &str) -> Closed {
        let started = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Closed::Eof,
                Ok(n) => panic!(
                    "{what}: expected the broker to close the connection, it sent {n} bytes: {:?}",
                    &buf[..n.min(64)]
                ),
                Err(e)
                    if e.kind() == ErrorKind::ConnectionReset
                        || e.kind() == ErrorKind::ConnectionAborted
                        || e.kind() == ErrorKind::BrokenPipe =>
                {
                    return Closed::Reset
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    panic!(
                        "{what}: the broker kept the connection open for {:?} (expected it closed)",
                        started.elapsed()
                    )
                }
                Err(e) => panic!("{what}: unexpected read error {e}"),
            }
        }
    }

    fn correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id += 1;
        id
    }

    /// Encodes header + body of `req` at `version` (no length prefix).
    pub fn encode_request<R: Request>(&mut self, version: i16, req: &R) -> (i32, Vec<u8>) {
        let correlation_id = self.correlation_id();
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(str_bytes("rill-tests")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, R::header_version(version))
            .expect("encode request header");
        req.encode(&mut buf, version).expect("encode request body");
        (correlation_id, buf.to_vec())
    }

    /// Sends `req` and decodes the response; panics on any protocol or I/O problem.
    pub fn request<R: Request>(&mut self, version: i16, req: &R) -> R::Response {
        let (correlation_id, payload) = self.encode_request(version, req);
        self.send_frame(&payload)
            .unwrap_or_else(|e| panic!("send api {} v{version}: {e}", R::KEY));
        self.read_response::<R>(version, correlation_id)
    }

    /// Reads and decodes the response to a request already sent.
    pub fn read_response<R: Request>(&mut self, version: i16, correlation_id: i32) -> R::Response {
        let frame = self
            .read_frame()
            .unwrap_or_else(|e| panic!("read response to api {} v{version}: {e}", R::KEY))
            .unwrap_or_else(|| {
                panic!(
                    "broker closed the connection instead of answering api {} v{version}",
                    R::KEY
                )
            });
        let mut buf = Bytes::from(frame);
        let header = ResponseHeader::decode(&mut buf, R::Response::header_version(version))
            .unwrap_or_else(|e| panic!("decode response header of api {} v{version}: {e}", R::KEY));
        assert_eq!(
            header.correlation_id,
            correlation_id,
            "correlation id of the response to api {} v{version}",
            R::KEY
        );
        let resp = R::Response::decode(&mut buf, version)
            .unwrap_or_else(|e| panic!("decode response body of api {} v{version}: {e}", R::KEY));
        assert_eq!(
            buf.remaining(),
            0,
            "{} unread bytes after the response to api {} v{version}",
            buf.remaining(),
            R::KEY
        );
        resp
    }

    pub fn api_versions(&mut self, version: i16) -> ApiVersionsResponse {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(str_bytes("rill-tests"))
            .with_client_software_version(str_bytes("1.0"));
        self.request(version, &req)
    }

    /// Metadata for `topics` (None = all topics).
    pub fn metadata(
        &mut self,
        version: i16,
        topics: Option<&[&str]>,
        auto_create: bool,
    ) -> MetadataResponse {
        let req = MetadataRequest::default()
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(auto_create);
        self.request(version, &req)
    }

    pub fn create_topics(
        &mut self,
        version: i16,
        names: &[&str],
        partitions: i32,
    ) -> CreateTopicsResponse {
        let req = CreateTopicsRequest::default()
            .with_topics(
                names
                    .iter()
                    .map(|n| {
                        CreatableTopic::default()
                            .with_name(topic_name(n))
                            .with_num_partitions(partitions)
                            .with_replication_factor(1)
                    })
                    .collect(),
            )
            .with_timeout_ms(10_000);
        self.request(version, &req)
    }

    /// Creates one topic and asserts success.
    pub fn create_topic(&mut self, name: &str, partitions: i32) {
        let resp = self.create_topics(4, &[name], partitions);
        assert_eq!(resp.topics.len(), 1, "CreateTopics result count");
        assert_eq!(
            resp.topics[0].error_code, 0,
            "CreateTopics({name}) error {} {:?}",
            resp.topics[0].error_code, resp.topics[0].error_message
        );
    }

    pub fn produce_request(topic: &str, partition: i32, acks: i16, batch: Bytes) -> ProduceRequest {
        ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch))])])
    }

    /// Produce v`version` of one batch to one partition (acks != 0); returns the partition result.
    pub fn produce(
        &mut self,
        version: i16,
        topic: &str,
        partition: i32,
        acks: i16,
        batch: Bytes,
    ) -> PartitionProduceResponse {
        let req = Self::produce_request(topic, partition, acks, batch);
        let resp: ProduceResponse = self.request(version, &req);
        assert_eq!(resp.responses.len(), 1, "Produce topic results");
        assert_eq!(
            resp.responses[0].partition_responses.len(),
            1,
            "Produce partition results"
        );
        resp.responses[0].partition_responses[0].clone()
    }
}

impl Conn {
    /// Fetch v`version` of one partition from `offset`; returns the partition data.
    #[allow(clippy::too_many_arguments)]
    pub fn fetch(
        &mut self,
        version: i16,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
        min_bytes: i32,
        max_bytes: i32,
        partition_max_bytes: i32,
    ) -> PartitionData {
        let req = FetchRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(min_bytes)
            .with_max_bytes(max_bytes)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(partition_max_bytes)])]);
        let resp: FetchResponse = self.request(version, &req);
        assert_eq!(resp.error_code, 0, "Fetch top-level error");
        assert_eq!(resp.responses.len(), 1, "Fetch topic results");
        assert_eq!(
            resp.responses[0].partitions.len(),
            1,
            "Fetch partition results"
        );
        resp.responses[0].partitions[0].clone()
    }
}

/// Batch headers (offsets, counts, codec) of the record batches in `records`.
pub fn batch_infos(records: &Bytes) -> Vec<kafka_protocol::records::BatchDecodeInfo> {
    let mut buf = records.clone();
    kafka_protocol::records::RecordBatchDecoder::decode_batch_info(&mut buf)
        .expect("decode record batch headers")
}

/// A record for [`batch`].
pub fn record(offset: i64, key: Option<&[u8]>, value: &[u8], timestamp: i64) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: -1,
        timestamp,
        key: key.map(Bytes::copy_from_slice),
        value: Some(Bytes::copy_from_slice(value)),
        headers: Default::default(),
    }
}

/// A record batch v2 holding `values` (keys `k0`, `k1`, ...), timestamps from `ts0` step 1 ms.
pub fn batch(values: &[&[u8]], compression: Compression, ts0: i64) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let key = format!("k{i}");
            record(i as i64, Some(key.as_bytes()), v, ts0 + i as i64)
        })
        .collect();
    encode_batch(&records, compression)
}

pub fn encode_batch(records: &[Record], compression: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode record batch");
    buf.freeze()
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A deterministic pseudo-random byte generator (xorshift64*), for junk input.
pub struct Junk(u64);

impl Junk {
    pub fn new(seed: u64) -> Junk {
        Junk(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}
