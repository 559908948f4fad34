//! Authentication (SASL PLAIN and SCRAM-SHA-256 against the users file) and authorization
//! (per-user topic permissions).
//!
//! - [`users`]: the users file (hashed credentials and permissions), read and edited.
//! - [`scram`]: SCRAM-SHA-256, RFC 5802/7677.
//! - [`acl`]: what each permission allows.
//! - [`sasl`]: one connection's SASL exchange, as Kafka's SaslServerAuthenticator runs it.

pub mod acl;
pub mod sasl;
pub mod scram;
pub mod users;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use ring::hmac;
use ring::rand::SecureRandom;

use crate::config::SaslConfig;
pub use acl::{Operation, Permissions};
pub use users::{User, Users, UsersFileError};

/// A SASL mechanism rill serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    ScramSha256,
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::ScramSha256, Mechanism::Plain];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
        }
    }

    pub fn parse(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// The broker's users and enabled mechanisms. The users file is re-read when it changes
/// (checked at each new authentication), so `rill users add` takes effect without a restart.
pub struct Authenticator {
    users_file: PathBuf,
    mechanisms: Vec<Mechanism>,
    loaded: Mutex<Loaded>,
    /// Keys the fake salts of unknown users: stable per user within a run, so probing the same
    /// name twice does not reveal it is fake, and unpredictable from outside.
    fake_salt_key: hmac::Key,
}

struct Loaded {
    users: Arc<Users>,
    stamp: Option<(SystemTime, u64)>,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Users(#[from] UsersFileError),
    #[error(
        "broker.sasl.mechanisms: unknown mechanism `{0}` (rill serves PLAIN and SCRAM-SHA-256)"
    )]
    Mechanism(String),
    #[error("no randomness available from the operating system")]
    Random,
    #[error("the users file {0} does not exist: create it with `rill users add NAME --file {0}`")]
    NoUsersFile(String),
}

impl Authenticator {
    pub fn open(config: &SaslConfig) -> Result<Authenticator, AuthError> {
        let mechanisms = config
            .mechanisms
            .iter()
            .map(|name| Mechanism::parse(name).ok_or_else(|| AuthError::Mechanism(name.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        if !config.users_file.exists() {
            return Err(AuthError::NoUsersFile(
                config.users_file.display().to_string(),
            ));
        }
        let stamp = stamp(&config.users_file);
        let users = Users::load(&config.users_file)?;
        if users.is_empty() {
            tracing::warn!(
                "the users file {} has no users: nobody can connect. Add one with `rill users add NAME --file {}`",
                config.users_file.display(),
                config.users_file.display()
            );
        }
        let mut secret = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| AuthError::Random)?;
        Ok(Authenticator {
            users_file: config.users_file.clone(),
            mechanisms,
            loaded: Mutex::new(Loaded {
                users: Arc::new(users),
                stamp,
            }),
            fake_salt_key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        })
    }

    pub fn mechanisms(&self) -> &[Mechanism] {
        &self.mechanisms
    }

    pub fn users_file(&self) -> &Path {
        &self.users_file
    }

    /// The current users, re-reading the file if it changed. A file that no longer parses is
    /// logged and the previous users stay in force: a typo must not lock everyone out.
    pub fn users(&self) -> Arc<Users> {
        let now = stamp(&self.users_file);
        let mut loaded = self.loaded.lock();
        if now.is_some() && now != loaded.stamp {
            match Users::load(&self.users_file) {
                Ok(users) => {
                    tracing::info!(
                        "reloaded the users file {} ({} users)",
                        self.users_file.display(),
                        users.len()
                    );
                    loaded.users = Arc::new(users);
                }
                Err(e) => tracing::error!("{e}; keeping the users loaded before"),
            }
            loaded.stamp = now;
        }
        loaded.users.clone()
    }

    fn fake_salt(&self, username: &str) -> Vec<u8> {
        hmac::sign(&self.fake_salt_key, username.as_bytes()).as_ref()[..16].to_vec()
    }
}
