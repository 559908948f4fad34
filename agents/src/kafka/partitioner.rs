//! The key-hash partitioner: Kafka's Java client's (`murmur2`), so a key lands on the
//! partition where the Java client, librdkafka's `murmur2_random` and most other clients put
//! it: records of one file (key `host:source`) share a partition whichever producer wrote
//! them.

/// Kafka's murmur2 (the Java client's `Utils.murmur2`): 32-bit MurmurHash2, seed
/// 0x9747b28c, little-endian words.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if let Some(&b) = rest.first() {
        h ^= u32::from(b);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition of `key` among `partitions` (> 0), as the Java client picks it:
/// `toPositive(murmur2(key)) % partitions`.
pub fn partition_of(key: &[u8], partitions: usize) -> usize {
    (murmur2(key) & 0x7fff_ffff) as usize % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of librdkafka's murmur2 unit test, which checks them against the Java
    /// client's `Utils.murmur2`.
    #[test]
    fn matches_the_java_clients_murmur2() {
        let unaligned = b"PreAmbleWillBeRemoved,ThePrePartThatIs";
        let vectors: [(&[u8], u32); 11] = [
            (b"kafka", 0xd067_cf64),
            (b"giberish123456789", 0x8f55_2b0c),
            (b"1234", 0x9fc9_7b14),
            (b"234", 0xe7c0_09ca),
            (b"34", 0x8739_30da),
            (b"4", 0x5a4b_5ca1),
            (unaligned, 0x7842_4f1c),
            (&unaligned[1..], 0x4a62_b377),
            (&unaligned[2..], 0xe0e4_e09e),
            (&unaligned[3..], 0x62b8_b43f),
            (b"", 0x106e_08d9),
        ];
        for (key, want) in vectors {
            assert_eq!(murmur2(key), want, "key {:?}", String::from_utf8_lossy(key));
        }
    }

    proptest::proptest! {
        /// librdkafka's own murmur2 partitioner (the one the librdkafka path configures)
        /// puts every key on the same partition as ours.
        #[test]
        fn agrees_with_librdkafkas_murmur2_partitioner(
            key in proptest::collection::vec(proptest::num::u8::ANY, 1..200),
            partitions in 1i32..1000,
        ) {
            // SAFETY: the partitioner reads `key` only; it does not touch the topic handle
            // (null) or the opaques.
            let theirs = unsafe {
                rdkafka::bindings::rd_kafka_msg_partitioner_murmur2(
                    std::ptr::null(),
                    key.as_ptr().cast(),
                    key.len(),
                    partitions,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
            proptest::prop_assert_eq!(partition_of(&key, partitions as usize), theirs as usize);
        }
    }
}
