//! rill's own Kafka client code, plaintext: the connection and framing ([`wire`]), shared
//! with `rill search`; and the agent's producer ([`producer`]), which writes record batches
//! itself ([`batch`]) and partitions as the Java client does ([`partitioner`]).
pub mod batch;
pub mod huge_pages;
pub mod partitioner;
pub mod producer;
pub mod wire;
