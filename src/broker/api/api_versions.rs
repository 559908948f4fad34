//! ApiVersions: the first request of every modern client, telling it what rill speaks.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::ResponseError;

use super::SUPPORTED_APIS;

/// The lowest Produce version listed: 0, though rill serves v3 and up (record batches; an
/// older Produce closes the connection). librdkafka before 2.8 (Debian 12's kcat has 2.0)
/// sends gzip, snappy and lz4 uncompressed to a broker that does not list Produce v0-v2
/// (librdkafka#4956). Kafka 4 lists them for the same reason and refuses them too
/// (KAFKA-18659). Clients use the highest version both sides speak, so none picks these.
pub const LISTED_PRODUCE_MIN: i16 = 0;

/// SaslHandshake and SaslAuthenticate are advertised only where SASL is on, so a client
/// configured for SASL against a PLAINTEXT listener learns it before trying.
fn ranges(sasl: bool) -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .filter(|(key, _, _)| {
            sasl || !matches!(key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
        })
        .map(|&(key, min, max)| {
            let min = if key == ApiKey::Produce {
                LISTED_PRODUCE_MIN
            } else {
                min
            };
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect()
}

pub fn handle(sasl: bool) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(ranges(sasl))
}

/// The answer to an ApiVersions version we do not speak: UNSUPPORTED_VERSION plus our ranges.
pub fn unsupported() -> ApiVersionsResponse {
    handle(true).with_error_code(ResponseError::UnsupportedVersion.code())
}
