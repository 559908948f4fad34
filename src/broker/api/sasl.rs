//! SaslHandshake (v0-1) and SaslAuthenticate (v0-2), and the bare tokens that follow a v0
//! handshake, as Kafka's SaslServerAuthenticator answers them. A failed authentication is
//! logged with the peer address and user, answered with SASL_AUTHENTICATION_FAILED after a
//! short delay (Kafka's connection.failed.authentication.delay.ms), and the connection closed.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{encode, Reply};
use crate::broker::auth::sasl::{Failure, SaslState};
use crate::broker::auth::Authenticator;
use crate::broker::session::Session;
use crate::broker::Broker;

/// Slows password guessing down; Kafka waits 100 ms by default too.
const FAILURE_DELAY: Duration = Duration::from_millis(100);
/// What the client hears: never whether the user exists.
const FAILED: &str = "Authentication failed: Invalid username or password";

fn enabled(auth: &Authenticator) -> Vec<StrBytes> {
    auth.mechanisms()
        .iter()
        .map(|m| StrBytes::from_static_str(m.name()))
        .collect()
}

pub fn handshake(
    broker: &Broker,
    session: &mut Session,
    req: SaslHandshakeRequest,
    id: i32,
    version: i16,
) -> Reply {
    let (Some(auth), Some(state)) = (broker.auth.as_ref(), session.sasl.as_mut()) else {
        return Reply::Close(format!(
            "SaslHandshake on the {} listener, which has no SASL: configure the client with \
             security.protocol={}",
            session.listener.protocol, session.listener.protocol
        ));
    };
    if !matches!(state, SaslState::Handshake) {
        let response = SaslHandshakeResponse::default()
            .with_error_code(ResponseError::IllegalSaslState.code())
            .with_mechanisms(enabled(auth));
        return close_after(
            encode(id, ApiKey::SaslHandshake, version, &response),
            "SaslHandshake after the handshake (ILLEGAL_SASL_STATE)".into(),
        );
    }
    let mechanism = req.mechanism.as_str();
    let response = SaslHandshakeResponse::default().with_mechanisms(enabled(auth));
    match state.handshake(auth, mechanism, version) {
        true => encode(id, ApiKey::SaslHandshake, version, &response),
        false => {
            let names: Vec<&str> = auth.mechanisms().iter().map(|m| m.name()).collect();
            close_after(
                encode(
                    id,
                    ApiKey::SaslHandshake,
                    version,
                    &response.with_error_code(ResponseError::UnsupportedSaslMechanism.code()),
                ),
                format!(
                    "client asked for SASL mechanism `{mechanism}`; this broker offers {}",
                    names.join(", ")
                ),
            )
        }
    }
}

pub async fn authenticate(
    broker: &Broker,
    session: &mut Session,
    req: SaslAuthenticateRequest,
    id: i32,
    version: i16,
) -> Reply {
    let peer = session.peer;
    let (Some(auth), Some(state)) = (broker.auth.as_ref(), session.sasl.as_mut()) else {
        return Reply::Close("SaslAuthenticate on a listener without SASL".into());
    };
    let in_exchange = matches!(state, SaslState::Authenticate { legacy: false, .. });
    if !in_exchange {
        let response = SaslAuthenticateResponse::default()
            .with_error_code(ResponseError::IllegalSaslState.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "SaslAuthenticate outside a SASL exchange",
            )));
        return close_after(
            encode(id, ApiKey::SaslAuthenticate, version, &response),
            "SaslAuthenticate outside a SASL exchange (ILLEGAL_SASL_STATE)".into(),
        );
    }
    let mechanism = state.mechanism().map_or("", |m| m.name());
    match state.evaluate(auth, &req.auth_bytes).await {
        Ok(token) => {
            if let SaslState::Authenticated(user) = state {
                tracing::info!(%peer, user = %user.name, "authenticated with {mechanism}");
            }
            let response = SaslAuthenticateResponse::default()
                .with_auth_bytes(Bytes::from(token))
                .with_session_lifetime_ms(0);
            encode(id, ApiKey::SaslAuthenticate, version, &response)
        }
        Err(failure) => {
            let reason = refuse(session, mechanism, failure).await;
            let response = SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                .with_error_message(Some(StrBytes::from_static_str(FAILED)));
            close_after(
                encode(id, ApiKey::SaslAuthenticate, version, &response),
                reason,
            )
        }
    }
}

/// A token after a v0 SaslHandshake: a bare frame, answered with a bare frame. A failure just
/// closes the connection (there is no error field in this legacy format).
pub async fn bare_token(broker: &Broker, session: &mut Session, token: Bytes) -> Reply {
    let (Some(auth), Some(state)) = (broker.auth.as_ref(), session.sasl.as_mut()) else {
        return Reply::Close("SASL token on a listener without SASL".into());
    };
    let mechanism = state.mechanism().map_or("", |m| m.name());
    match state.evaluate(auth, &token).await {
        Ok(reply) => {
            if let SaslState::Authenticated(user) = state {
                tracing::info!(peer = %session.peer, user = %user.name, "authenticated with {mechanism}");
            }
            Reply::Send(bytes::BytesMut::from(reply.as_slice()).into())
        }
        Err(failure) => Reply::Close(refuse(session, mechanism, failure).await),
    }
}

/// Logs a failed authentication (with the peer address) and waits the failure delay.
async fn refuse(session: &Session, mechanism: &str, failure: Failure) -> String {
    let user = failure.user.as_deref().unwrap_or("?");
    tracing::warn!(
        peer = %session.peer,
        user,
        "SASL authentication failed ({mechanism}): {}",
        failure.reason
    );
    tokio::time::sleep(FAILURE_DELAY).await;
    format!("authentication failed for user `{user}`")
}

fn close_after(reply: Reply, reason: String) -> Reply {
    match reply {
        Reply::Send(bytes) => Reply::SendAndClose(bytes, reason),
        other => other,
    }
}
