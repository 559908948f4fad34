//! One connection's SASL state, as Kafka's SaslServerAuthenticator runs it: ApiVersions and
//! SaslHandshake first, then the mechanism's tokens (in SaslAuthenticate requests, or as bare
//! length-prefixed frames after a v0 handshake), then normal requests as the authenticated user.

use std::sync::Arc;

use super::scram::{self, ScramServer};
use super::{Authenticator, Mechanism, User};

/// Where a connection is in its authentication.
#[derive(Debug)]
pub enum SaslState {
    /// Before SaslHandshake: only ApiVersions and SaslHandshake are served.
    Handshake,
    /// A mechanism is chosen; tokens are expected. `legacy` (SaslHandshake v0) means they come
    /// as bare frames instead of SaslAuthenticate requests.
    Authenticate {
        mechanism: Mechanism,
        legacy: bool,
        /// Boxed: a round between its two messages is large, and most states have none.
        scram: Option<Box<ScramRound>>,
    },
    Authenticated(Arc<User>),
}

/// SCRAM between its two client messages.
#[derive(Debug)]
pub struct ScramRound {
    server: ScramServer,
    user: Option<Arc<User>>,
}

/// Why authentication failed: logged in full, never told to the client.
#[derive(Debug)]
pub struct Failure {
    pub user: Option<String>,
    pub reason: String,
}

impl Failure {
    fn new(user: Option<&str>, reason: impl Into<String>) -> Failure {
        Failure {
            user: user.map(str::to_string),
            reason: reason.into(),
        }
    }
}

impl SaslState {
    pub fn is_authenticated(&self) -> bool {
        matches!(self, SaslState::Authenticated(_))
    }

    /// Tokens of a v0 handshake arrive as bare frames.
    pub fn expects_bare_token(&self) -> bool {
        matches!(self, SaslState::Authenticate { legacy: true, .. })
    }

    pub fn mechanism(&self) -> Option<Mechanism> {
        match self {
            SaslState::Authenticate { mechanism, .. } => Some(*mechanism),
            _ => None,
        }
    }

    /// SaslHandshake: true if the mechanism is enabled (the state moves on to its tokens).
    pub fn handshake(&mut self, auth: &Authenticator, name: &str, version: i16) -> bool {
        match Mechanism::parse(name).filter(|m| auth.mechanisms().contains(m)) {
            Some(mechanism) => {
                *self = SaslState::Authenticate {
                    mechanism,
                    legacy: version == 0,
                    scram: None,
                };
                true
            }
            None => false,
        }
    }

    /// Evaluates one client token. Returns the server's token; when the exchange completes
    /// the state becomes `Authenticated`.
    pub async fn evaluate(
        &mut self,
        auth: &Authenticator,
        token: &[u8],
    ) -> Result<Vec<u8>, Failure> {
        let SaslState::Authenticate {
            mechanism, scram, ..
        } = self
        else {
            return Err(Failure::new(None, "token outside a SASL exchange"));
        };
        match (*mechanism, scram.take()) {
            (Mechanism::Plain, _) => {
                let user = plain(auth, token).await?;
                *self = SaslState::Authenticated(user);
                Ok(Vec::new())
            }
            (Mechanism::ScramSha256, None) => {
                let nonce = scram::new_nonce()
                    .map_err(|_| Failure::new(None, "no randomness available"))?;
                let users = auth.users();
                let mut found = None;
                let (server, server_first) = ScramServer::start(
                    token,
                    &nonce,
                    |name| {
                        found = users.get(name);
                        found.as_ref().map(|u| u.credential.clone())
                    },
                    |name| auth.fake_salt(name),
                )
                .map_err(|e| Failure::new(None, e.to_string()))?;
                *scram = Some(Box::new(ScramRound {
                    server,
                    user: found,
                }));
                Ok(server_first.into_bytes())
            }
            (Mechanism::ScramSha256, Some(round)) => {
                let name = round.server.username().to_string();
                let server_final = round
                    .server
                    .finish(token)
                    .map_err(|e| Failure::new(Some(&name), e.to_string()))?;
                let user = round
                    .user
                    .ok_or_else(|| Failure::new(Some(&name), "unknown user"))?;
                *self = SaslState::Authenticated(user);
                Ok(server_final.into_bytes())
            }
        }
    }
}

/// PLAIN (RFC 4616): `authzid NUL authcid NUL password`, checked against the stored SCRAM
/// credential by deriving with its salt and iterations (off the async threads: PBKDF2 is slow
/// on purpose).
async fn plain(auth: &Authenticator, token: &[u8]) -> Result<Arc<User>, Failure> {
    let text =
        std::str::from_utf8(token).map_err(|_| Failure::new(None, "PLAIN message is not UTF-8"))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(name), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Failure::new(None, "malformed PLAIN message"));
    };
    if !authzid.is_empty() && authzid != name {
        return Err(Failure::new(
            Some(name),
            "authorization id differs from the username",
        ));
    }
    let Some(user) = auth.users().get(name) else {
        return Err(Failure::new(Some(name), "unknown user"));
    };
    let credential = user.credential.clone();
    let password = password.to_string();
    let ok = tokio::task::spawn_blocking(move || credential.verify_password(&password))
        .await
        .unwrap_or(false);
    if ok {
        Ok(user)
    } else {
        Err(Failure::new(Some(name), "wrong password"))
    }
}
