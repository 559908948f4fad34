//! The Kafka-compatible broker: shared state ([`Broker`]) and the pieces it is made of.
//!
//! - [`server`]: accepts connections (TLS or not), frames requests, shuts down cleanly.
//! - [`listener`]: listeners and their security protocol; TLS set-up.
//! - [`auth`]: SASL authentication and per-user topic permissions; [`session`]: per connection.
//! - [`api`]: one module per Kafka API family, decoding with `kafka-protocol`.
//! - [`topics`], [`partition`], [`topic_config`]: what topics exist and how each is configured.
//! - [`log`]: the partition log (segments, indexes, recovery, retention).
//! - [`groups`]: the consumer-group coordinator and committed offsets.
//! - [`meta`]: topic metadata and producer ids in sled.
//! - [`producer_state`]: idempotent-producer sequence checks.

pub mod api;
pub mod auth;
pub mod groups;
pub mod listener;
pub mod log;
pub mod meta;
pub mod partition;
pub mod producer_state;
pub mod response;
pub mod server;
pub mod session;
pub mod topic_config;
pub mod topics;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::config::BrokerConfig;
use groups::Coordinator;
use meta::{Meta, MetaError};
use topic_config::TopicOverrides;
use topics::{Topic, TopicError, TopicRegistry};

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("cannot open topics: {0}")]
    Topics(#[from] TopicError),
    #[error("cannot open committed offsets: {0}")]
    Offsets(#[from] groups::offsets::OffsetStoreError),
    #[error(transparent)]
    Tls(#[from] listener::TlsError),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
}

/// Everything the request handlers share.
pub struct Broker {
    pub config: BrokerConfig,
    pub data_dir: PathBuf,
    pub meta: Meta,
    pub topics: TopicRegistry,
    pub groups: Coordinator,
    pub cluster_id: String,
    /// SASL users and mechanisms, when `[broker.sasl]` is configured.
    pub auth: Option<auth::Authenticator>,
    /// The TLS acceptor of the main listener, when `[broker.tls]` is configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The host clients are told to connect to (Metadata, FindCoordinator).
    advertised_host: String,
    /// The main listener's endpoint as advertised.
    advertised: (String, i32),
    /// Woken on every append, so long-polling fetches answer as soon as data arrives.
    appended: Notify,
}

impl Broker {
    /// Opens the data directory: metadata, then every partition (recovering torn tails).
    /// `bound` is the address the listener actually bound (its port may have been 0).
    pub fn open(config: BrokerConfig, bound: SocketAddr) -> Result<Arc<Broker>, BrokerError> {
        // Security first: a bad certificate or users file stops the start before any data is
        // touched.
        let tls = match &config.tls {
            Some(tls) => Some(listener::tls_acceptor(&tls.cert_file, &tls.key_file)?),
            None => None,
        };
        let auth = match &config.sasl {
            Some(sasl) => Some(auth::Authenticator::open(sasl)?),
            None => None,
        };
        let data_dir = config.resolved_data_dir();
        std::fs::create_dir_all(&data_dir).map_err(|source| BrokerError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        let meta = Meta::open(&data_dir.join("meta"))?;
        let cluster_id = meta.cluster_id()?;
        let topics = TopicRegistry::open(&data_dir, config.log.clone(), &meta)?;
        let groups = Coordinator::open(&data_dir.join("groups"), &config.groups)?;
        let host = config.advertised_host.clone().unwrap_or_else(|| {
            if bound.ip().is_unspecified() {
                // 0.0.0.0 is not an address a client can dial; loopback at least works locally.
                tracing::warn!("listening on {bound} without broker.advertised_host: clients on other hosts will be told to connect to 127.0.0.1");
                "127.0.0.1".to_string()
            } else {
                bound.ip().to_string()
            }
        });
        Ok(Arc::new(Broker {
            advertised: (host.clone(), i32::from(bound.port())),
            advertised_host: host,
            auth,
            tls,
            config,
            data_dir,
            meta,
            topics,
            groups,
            cluster_id,
            appended: Notify::new(),
        }))
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The main listener's advertised endpoint.
    pub fn advertised(&self) -> (String, i32) {
        self.advertised.clone()
    }

    /// The listener bound at `bound`: its security protocol and advertised endpoint. `tls`
    /// says whether it is the TLS listener (only the main listener is, when configured).
    pub fn listener(&self, bound: SocketAddr, tls: bool) -> listener::Listener {
        let tls = if tls { self.tls.clone() } else { None };
        listener::Listener {
            protocol: listener::SecurityProtocol::new(tls.is_some(), self.auth.is_some()),
            bound,
            advertised: (self.advertised_host.clone(), i32::from(bound.port())),
            tls,
        }
    }

    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        overrides: TopicOverrides,
    ) -> Result<Arc<Topic>, TopicError> {
        self.topics.create(&self.meta, name, partitions, overrides)
    }

    pub fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        self.topics.delete(&self.meta, name)?;
        self.groups.topic_deleted(name);
        // Fetches waiting on the deleted topic should answer now, not at their deadline.
        self.notify_appended();
        Ok(())
    }

    pub fn notify_appended(&self) {
        self.appended.notify_waiters();
    }

    /// A future that completes at the next append (see `api::fetch` for how it is armed).
    pub fn appended(&self) -> Notified<'_> {
        self.appended.notified()
    }

    /// fsyncs every partition with unflushed appends, and committed offsets. Returns how many
    /// failed.
    pub fn flush_dirty(&self) -> usize {
        let mut failures = 0;
        if let Err(e) = self.groups.flush() {
            failures += 1;
            tracing::error!("flushing committed offsets failed: {e}");
        }
        for topic in self.topics.list() {
            for partition in &topic.partitions {
                // The slow part, the active segment's fsync, runs without the partition lock
                // so producers and fetchers are not held up by it.
                let pending = partition.lock().log.active_sync();
                match pending.and_then(|p| p.map(|sync| sync.sync().map(|()| sync)).transpose()) {
                    Ok(Some(sync)) => partition.lock().log.mark_synced(&sync),
                    Ok(None) => {}
                    Err(e) => {
                        failures += 1;
                        tracing::error!(topic = %topic.name, partition = partition.index, "flush failed: {e}");
                        continue;
                    }
                }
                let mut state = partition.lock();
                if state.log.is_dirty() {
                    if let Err(e) = state.log.flush() {
                        failures += 1;
                        tracing::error!(topic = %topic.name, partition = partition.index, "flush failed: {e}");
                    }
                }
            }
        }
        failures
    }

    /// Deletes segments past each topic's retention.
    pub fn apply_retention(&self, now_ms: i64) {
        for topic in self.topics.list() {
            for partition in &topic.partitions {
                let result = partition.lock().log.apply_retention(now_ms);
                if let Err(e) = result {
                    tracing::error!(topic = %topic.name, partition = partition.index, "retention failed: {e}");
                }
            }
        }
    }
}
