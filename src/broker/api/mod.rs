//! Request dispatch: check a frame's API key and version against what rill serves, decode it
//! with `kafka-protocol` (generated from Kafka's own schemas: no hand-rolled framing), run the
//! handler of its API family, and encode the response with the header version Kafka specifies.

mod admin;
mod api_versions;
mod fetch;
mod groups;
mod list_offsets;
mod metadata;
mod produce;
mod producer_id;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use crate::broker::Broker;

/// The APIs rill serves and their version ranges. The low ends are low enough for librdkafka
/// 2.0 (Debian's kcat 1.7); the high ends stop before versions that need features rill does not
/// have (topic ids in Fetch 13+, KIP-848 groups, ...). Only what is listed here is advertised.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 7),
    (ApiKey::Fetch, 4, 11),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 9),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 5),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::FindCoordinator, 0, 3),
    (ApiKey::JoinGroup, 0, 6),
    (ApiKey::SyncGroup, 0, 4),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 6),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
];

fn supported_range(api_key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(key, _, _)| *key == api_key)
        .map(|&(_, min, max)| (min, max))
}

/// What the connection does with a request.
#[derive(Debug)]
pub enum Reply {
    /// Send this encoded response (header + body, without the length prefix).
    Send(BytesMut),
    /// Send nothing: a Produce with acks=0.
    Nothing,
    /// Close the connection: the request cannot be answered (Kafka does the same), logged with why.
    Close(String),
}

/// Handles one request frame (the bytes after the length prefix).
pub async fn handle(broker: &Arc<Broker>, mut frame: Bytes, peer: SocketAddr) -> Reply {
    if frame.len() < 8 {
        return Reply::Close(format!(
            "request of {} bytes is shorter than a request header",
            frame.len()
        ));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(api_key) = ApiKey::try_from(raw_key) else {
        return Reply::Close(format!("unknown API key {raw_key}"));
    };
    let Some((min, max)) = supported_range(api_key) else {
        return Reply::Close(format!("{api_key:?} (key {raw_key}) is not served by rill"));
    };
    if version < min || version > max {
        if api_key == ApiKey::ApiVersions {
            // KIP-511: answer an unknown ApiVersions version with our ranges in a v0 body, so
            // a newer client can retry with a version we speak.
            return encode(correlation_id, api_key, 0, &api_versions::unsupported());
        }
        return Reply::Close(format!(
            "{api_key:?} v{version} is not supported (rill serves v{min}-v{max})"
        ));
    }
    let header = match RequestHeader::decode(&mut frame, api_key.request_header_version(version)) {
        Ok(header) => header,
        Err(e) => return Reply::Close(format!("undecodable {api_key:?} v{version} header: {e}")),
    };
    let request = match RequestKind::decode(api_key, &mut frame, version) {
        Ok(request) => request,
        Err(e) => return Reply::Close(format!("undecodable {api_key:?} v{version} request: {e}")),
    };
    if frame.has_remaining() {
        tracing::debug!(
            "{api_key:?} v{version} request has {} trailing bytes",
            frame.remaining()
        );
    }
    let id = header.correlation_id;
    let client_id = header
        .client_id
        .as_ref()
        .map(|c| c.as_str())
        .unwrap_or_default();
    match request {
        RequestKind::ApiVersions(_) => encode(id, api_key, version, &api_versions::handle()),
        RequestKind::Metadata(req) => encode(
            id,
            api_key,
            version,
            &metadata::handle(broker, req, version),
        ),
        RequestKind::Produce(req) => match produce::handle(broker, req, version).await {
            Some(resp) => encode(id, api_key, version, &resp),
            None => Reply::Nothing,
        },
        RequestKind::Fetch(req) => encode(
            id,
            api_key,
            version,
            &fetch::handle(broker, req, version).await,
        ),
        RequestKind::ListOffsets(req) => encode(
            id,
            api_key,
            version,
            &list_offsets::handle(broker, req, version),
        ),
        RequestKind::CreateTopics(req) => encode(
            id,
            api_key,
            version,
            &admin::create_topics(broker, req, version),
        ),
        RequestKind::DeleteTopics(req) => encode(
            id,
            api_key,
            version,
            &admin::delete_topics(broker, req, version),
        ),
        RequestKind::DescribeConfigs(req) => encode(
            id,
            api_key,
            version,
            &admin::describe_configs(broker, req, version),
        ),
        RequestKind::InitProducerId(req) => {
            encode(id, api_key, version, &producer_id::handle(broker, req))
        }
        RequestKind::FindCoordinator(req) => encode(
            id,
            api_key,
            version,
            &groups::find_coordinator(broker, req, version),
        ),
        RequestKind::JoinGroup(req) => {
            let resp = groups::join_group(broker, req, version, client_id, peer).await;
            encode(id, api_key, version, &resp)
        }
        RequestKind::SyncGroup(req) => {
            encode(id, api_key, version, &groups::sync_group(broker, req).await)
        }
        RequestKind::Heartbeat(req) => {
            encode(id, api_key, version, &groups::heartbeat(broker, req))
        }
        RequestKind::LeaveGroup(req) => encode(
            id,
            api_key,
            version,
            &groups::leave_group(broker, req, version),
        ),
        RequestKind::OffsetCommit(req) => encode(
            id,
            api_key,
            version,
            &groups::offset_commit(broker, req, version),
        ),
        RequestKind::OffsetFetch(req) => encode(
            id,
            api_key,
            version,
            &groups::offset_fetch(broker, req, version),
        ),
        RequestKind::ListGroups(req) => encode(
            id,
            api_key,
            version,
            &groups::list_groups(broker, req, version),
        ),
        RequestKind::DescribeGroups(req) => encode(
            id,
            api_key,
            version,
            &groups::describe_groups(broker, req, version),
        ),
        RequestKind::DeleteGroups(req) => {
            encode(id, api_key, version, &groups::delete_groups(broker, req))
        }
        _ => Reply::Close(format!("no handler for {api_key:?}")),
    }
}

fn encode<R: Encodable + HeaderVersion>(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    response: &R,
) -> Reply {
    let mut buf = BytesMut::new();
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let result = header
        .encode(&mut buf, R::header_version(version))
        .and_then(|()| response.encode(&mut buf, version));
    match result {
        Ok(()) => Reply::Send(buf),
        // Only a bug (a field this version cannot carry) gets here; say so rather than hang.
        Err(e) => Reply::Close(format!(
            "cannot encode {api_key:?} v{version} response: {e}"
        )),
    }
}

/// Milliseconds since the Unix epoch, the unit of every Kafka timestamp.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
