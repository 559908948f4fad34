//! rill's own Kafka client code, plaintext: the connection and framing ([`wire`]), shared
//! with `rill search`.
pub mod wire;
