//! One client connection's state as the request handlers see it: who is at the other end, on
//! which listener, and how far its SASL authentication got.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::broker::api::authorize::Access;
use crate::broker::auth::sasl::SaslState;
use crate::broker::listener::{Listener, SecurityProtocol};

pub struct Session {
    pub peer: SocketAddr,
    pub listener: Arc<Listener>,
    /// None on listeners without SASL: every request is served, with every permission.
    pub sasl: Option<SaslState>,
}

impl Session {
    pub fn new(peer: SocketAddr, listener: Arc<Listener>) -> Session {
        let sasl = listener.protocol.sasl().then_some(SaslState::Handshake);
        Session {
            peer,
            listener,
            sasl,
        }
    }

    /// A session on a plaintext listener without authentication (for tests and tools).
    pub fn plaintext(peer: SocketAddr, advertised: (String, i32)) -> Session {
        Session::new(
            peer,
            Arc::new(Listener {
                protocol: SecurityProtocol::Plaintext,
                bound: peer,
                advertised,
                tls: None,
            }),
        )
    }

    /// May this connection send requests other than ApiVersions and SASL ones?
    pub fn is_authenticated(&self) -> bool {
        self.sasl.as_ref().is_none_or(SaslState::is_authenticated)
    }

    /// What the connection's user may do (everything without SASL).
    pub fn access(&self) -> Access {
        match &self.sasl {
            None => Access::everything(),
            Some(SaslState::Authenticated(user)) => Access::user(user.clone()),
            Some(_) => Access::Nothing,
        }
    }
}
