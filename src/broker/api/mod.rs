//! Request dispatch: check a frame's API key and version against what rill serves, decode it
//! with `kafka-protocol` (generated from Kafka's own schemas: no hand-rolled framing), run the
//! handler of its API family, and encode the response with the header version Kafka specifies.

mod admin;
mod api_versions;
pub mod authorize;
mod fetch;
mod groups;
mod list_offsets;
mod metadata;
mod produce;
mod producer_id;
mod sasl;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::{
    ApiKey, BrokerId, DeleteGroupsResponse, DescribeGroupsResponse, HeartbeatResponse,
    InitProducerIdResponse, JoinGroupResponse, LeaveGroupResponse, ListGroupsResponse, ProducerId,
    RequestHeader, RequestKind, ResponseHeader, SyncGroupResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
use kafka_protocol::ResponseError;

use crate::broker::auth::Operation;
use crate::broker::response::Response;
use crate::broker::session::Session;
use crate::broker::Broker;
use authorize::Access;

/// The APIs rill serves and their version ranges. The low ends are low enough for librdkafka
/// 2.0 (Debian's kcat 1.7; Produce is listed from v0 for it, see
/// [`api_versions::LISTED_PRODUCE_MIN`]); the high ends stop before versions that need
/// features rill does not have (topic ids in Fetch 13+, KIP-848 groups, ...). Only what is
/// listed here is advertised.
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
    // Advertised on SASL listeners only (see api_versions).
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
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
    Send(Response),
    /// Send nothing: a Produce with acks=0.
    Nothing,
    /// Close the connection: the request cannot be answered (Kafka does the same), logged with why.
    Close(String),
    /// Send this response, then close (a refused SASL handshake or authentication).
    SendAndClose(Response, String),
}

/// Handles one request frame (the bytes after the length prefix) of this connection.
pub async fn handle(broker: &Arc<Broker>, mut frame: Bytes, session: &mut Session) -> Reply {
    if session
        .sasl
        .as_ref()
        .is_some_and(|s| s.expects_bare_token())
    {
        return sasl::bare_token(broker, session, frame).await;
    }
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
    if !session.is_authenticated()
        && !matches!(
            api_key,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        )
    {
        // Kafka's SaslServerAuthenticator closes the connection here too.
        return Reply::Close(format!(
            "{api_key:?} request before SASL authentication: only ApiVersions and SaslHandshake \
             are served until the client authenticates (client not configured with \
             security.protocol={}?)",
            session.listener.protocol
        ));
    }
    let Some((min, max)) = supported_range(api_key) else {
        return Reply::Close(format!("{api_key:?} (key {raw_key}) is not served by rill"));
    };
    if version < min || version > max {
        if api_key == ApiKey::ApiVersions {
            // KIP-511: answer an unknown ApiVersions version with our ranges in a v0 body, so
            // a newer client can retry with a version we speak.
            return encode(correlation_id, api_key, 0, &api_versions::unsupported());
        }
        if api_key == ApiKey::Produce && (api_versions::LISTED_PRODUCE_MIN..min).contains(&version)
        {
            return Reply::Close(format!(
                "Produce v{version} (message format v0/v1) is not supported: rill stores \
                 record batches, Produce v{min}-v{max} (v0-v2 are listed in ApiVersions only \
                 so that older librdkafka compresses, as Kafka 4 does)"
            ));
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
    let access = session.access();
    let advertised = session.listener.advertised.clone();
    match request {
        RequestKind::ApiVersions(_) => encode(
            id,
            api_key,
            version,
            &api_versions::handle(session.sasl.is_some()),
        ),
        RequestKind::SaslHandshake(req) => sasl::handshake(broker, session, req, id, version),
        RequestKind::SaslAuthenticate(req) => {
            sasl::authenticate(broker, session, req, id, version).await
        }
        RequestKind::Metadata(req) => encode(
            id,
            api_key,
            version,
            &metadata::handle(broker, req, version, advertised, &access),
        ),
        RequestKind::Produce(mut req) => {
            let denied = authorize::produce(&access, &mut req);
            match produce::handle(broker, req, version).await {
                Some(mut resp) => {
                    resp.responses.extend(denied);
                    encode(id, api_key, version, &resp)
                }
                None => Reply::Nothing,
            }
        }
        RequestKind::Fetch(mut req) => {
            let denied = authorize::fetch(&access, &mut req);
            let mut reply = fetch::handle(broker, req, version).await;
            reply.response.responses.extend(denied);
            match fetch::encode(id, version, reply) {
                Ok(response) => Reply::Send(response),
                Err(e) => Reply::Close(format!("cannot encode Fetch v{version} response: {e}")),
            }
        }
        RequestKind::ListOffsets(mut req) => {
            let denied = authorize::list_offsets(&access, &mut req);
            let mut resp = list_offsets::handle(broker, req, version);
            resp.topics.extend(denied);
            encode(id, api_key, version, &resp)
        }
        RequestKind::CreateTopics(mut req) => {
            let denied = authorize::create_topics(&access, &mut req, version);
            let mut resp = admin::create_topics(broker, req, version);
            resp.topics.extend(denied);
            encode(id, api_key, version, &resp)
        }
        RequestKind::DeleteTopics(mut req) => {
            let denied = authorize::delete_topics(&access, &mut req, version);
            let mut resp = admin::delete_topics(broker, req, version);
            resp.responses.extend(denied);
            encode(id, api_key, version, &resp)
        }
        RequestKind::DescribeConfigs(mut req) => {
            let denied = authorize::describe_configs(&access, &mut req);
            let mut resp = admin::describe_configs(broker, req, version);
            resp.results.extend(denied);
            encode(id, api_key, version, &resp)
        }
        RequestKind::InitProducerId(req) => {
            let resp = if access.has_any(Operation::Write) {
                producer_id::handle(broker, req)
            } else {
                tracing::info!(
                    user = access.name(),
                    "InitProducerId refused: no write permission on any topic"
                );
                InitProducerIdResponse::default()
                    .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
            };
            encode(id, api_key, version, &resp)
        }
        other => {
            let peer = session.peer;
            group_request(
                broker, other, &access, advertised, id, api_key, version, client_id, peer,
            )
            .await
        }
    }
}

/// The consumer-group APIs. Membership needs read permission on some topic (the group's
/// offsets are checked per topic in OffsetCommit/OffsetFetch); DeleteGroups needs admin on `*`.
#[allow(clippy::too_many_arguments)]
async fn group_request(
    broker: &Arc<Broker>,
    request: RequestKind,
    access: &Access,
    advertised: (String, i32),
    id: i32,
    api_key: ApiKey,
    version: i16,
    client_id: &str,
    peer: std::net::SocketAddr,
) -> Reply {
    let member = access.has_any(Operation::Read);
    let denied = ResponseError::GroupAuthorizationFailed.code();
    if !member {
        tracing::info!(
            user = access.name(),
            "{api_key:?} refused: consumer groups need read permission on some topic"
        );
    }
    match request {
        RequestKind::FindCoordinator(req) => {
            let resp = if member {
                groups::find_coordinator(broker, req, version, advertised)
            } else {
                Default::default()
            };
            let resp = if member {
                resp
            } else {
                resp.with_error_code(denied)
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
            };
            encode(id, api_key, version, &resp)
        }
        RequestKind::JoinGroup(req) => {
            let resp = if member {
                groups::join_group(broker, req, version, client_id, peer).await
            } else {
                JoinGroupResponse::default()
                    .with_error_code(denied)
                    .with_generation_id(-1)
            };
            encode(id, api_key, version, &resp)
        }
        RequestKind::SyncGroup(req) => {
            let resp = if member {
                groups::sync_group(broker, req).await
            } else {
                SyncGroupResponse::default().with_error_code(denied)
            };
            encode(id, api_key, version, &resp)
        }
        RequestKind::Heartbeat(req) => {
            let resp = if member {
                groups::heartbeat(broker, req)
            } else {
                HeartbeatResponse::default().with_error_code(denied)
            };
            encode(id, api_key, version, &resp)
        }
        RequestKind::LeaveGroup(req) => {
            let resp = if member {
                groups::leave_group(broker, req, version)
            } else {
                LeaveGroupResponse::default().with_error_code(denied)
            };
            encode(id, api_key, version, &resp)
        }
        RequestKind::OffsetCommit(mut req) => {
            let topics = authorize::offset_commit(access, &mut req);
            let mut resp = groups::offset_commit(broker, req, version);
            resp.topics.extend(topics);
            encode(id, api_key, version, &resp)
        }
        RequestKind::OffsetFetch(mut req) => {
            let all = req.topics.is_none();
            let topics = authorize::offset_fetch(access, &mut req);
            let mut resp = groups::offset_fetch(broker, req, version);
            if all {
                authorize::readable_offsets(access, &mut resp.topics);
            }
            resp.topics.extend(topics);
            encode(id, api_key, version, &resp)
        }
        RequestKind::ListGroups(req) => {
            let resp = if member {
                groups::list_groups(broker, req, version)
            } else {
                ListGroupsResponse::default()
            };
            encode(id, api_key, version, &resp)
        }
        RequestKind::DescribeGroups(req) => {
            let resp = if member {
                groups::describe_groups(broker, req, version)
            } else {
                let groups = req
                    .groups
                    .into_iter()
                    .map(|g| {
                        DescribedGroup::default()
                            .with_group_id(g)
                            .with_error_code(denied)
                    })
                    .collect();
                DescribeGroupsResponse::default().with_groups(groups)
            };
            encode(id, api_key, version, &resp)
        }
        RequestKind::DeleteGroups(req) => {
            let resp = if access.is_cluster_admin() {
                groups::delete_groups(broker, req)
            } else {
                tracing::info!(
                    user = access.name(),
                    "DeleteGroups refused: needs admin = [\"*\"]"
                );
                let results = req
                    .groups_names
                    .into_iter()
                    .map(|g| {
                        DeletableGroupResult::default()
                            .with_group_id(g)
                            .with_error_code(denied)
                    })
                    .collect();
                DeleteGroupsResponse::default().with_results(results)
            };
            encode(id, api_key, version, &resp)
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
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = R::header_version(version);
    // Sized up front, so that no response is copied while its buffer grows (when Fetch
    // responses were encoded here, doubling cost a sixth of the broker's CPU in a scan; they
    // have their own encoder now, `fetch::encode`).
    let size = header
        .compute_size(header_version)
        .and_then(|h| Ok(h + response.compute_size(version)?));
    let mut buf = BytesMut::with_capacity(size.unwrap_or(0));
    let result = header
        .encode(&mut buf, header_version)
        .and_then(|()| response.encode(&mut buf, version));
    match result {
        Ok(()) => Reply::Send(buf.into()),
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
