//! ApiVersions: the first request of every modern client, telling it what rill speaks.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::ResponseError;

use super::SUPPORTED_APIS;

/// SaslHandshake and SaslAuthenticate are advertised only where SASL is on, so a client
/// configured for SASL against a PLAINTEXT listener learns it before trying.
fn ranges(sasl: bool) -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .filter(|(key, _, _)| {
            sasl || !matches!(key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
        })
        .map(|&(key, min, max)| {
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
