//! A producer's `records` field into the broker's batch validation (lengths, magic, CRC-32C,
//! codec, record count, size limit): every input is accepted or refused with an error, never a
//! panic. Inputs whose CRC happens to check out are decoded record by record too, as the
//! broker does when it looks for a timestamp inside a batch.
#![no_main]

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use libfuzzer_sys::fuzz_target;
use rill::broker::log::batch::{parse_header, validate_batches};

fuzz_target!(|data: &[u8]| {
    let _ = parse_header(data);
    if let Ok(headers) = validate_batches(data, 1024 * 1024) {
        let total: usize = headers.iter().map(|h| h.total_size()).sum();
        assert_eq!(
            total,
            data.len(),
            "validated batches cover the input exactly"
        );
        let mut buf = Bytes::copy_from_slice(data);
        let _ = RecordBatchDecoder::decode(&mut buf);
    }
});
