//! Listeners and their security protocol, named as Kafka names them: PLAINTEXT, SSL (TLS),
//! SASL_PLAINTEXT and SASL_SSL (SASL authentication without or with TLS).
//!
//! `broker.listen` is the main listener: TLS when `[broker.tls]` is set, SASL when
//! `[broker.sasl]` is. With TLS on, plaintext is off unless `broker.listen_plaintext` asks for
//! a second, unencrypted listener; it still requires SASL when SASL is configured (there is no
//! way to serve unauthenticated clients next to authenticated ones).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tokio_rustls::TlsAcceptor;

/// Also what clients choose with `--security-protocol` (librdkafka's `security.protocol`,
/// which takes these names in any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn new(tls: bool, sasl: bool) -> SecurityProtocol {
        match (tls, sasl) {
            (false, false) => SecurityProtocol::Plaintext,
            (true, false) => SecurityProtocol::Ssl,
            (false, true) => SecurityProtocol::SaslPlaintext,
            (true, true) => SecurityProtocol::SaslSsl,
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        })
    }
}

/// One bound listener, as its connections see it.
pub struct Listener {
    pub protocol: SecurityProtocol,
    /// The address it is bound to.
    pub bound: SocketAddr,
    /// What Metadata tells clients of this listener to connect to (Kafka answers with the
    /// endpoint of the listener a request came in on).
    pub advertised: (String, i32),
    /// Present for SSL and SASL_SSL.
    pub tls: Option<TlsAcceptor>,
}

impl Listener {
    /// What to tell the operator about this listener's exposure at start-up: None when it is
    /// safe (loopback, or authenticated and encrypted), else a warning that says what is off.
    pub fn exposure_warning(&self) -> Option<String> {
        if self.bound.ip().is_loopback() {
            return None;
        }
        let reach = format!(
            "listening on {} ({}), reachable from other hosts",
            self.bound, self.protocol
        );
        match self.protocol {
            SecurityProtocol::SaslSsl => None,
            SecurityProtocol::Plaintext => Some(format!(
                "{reach}, with NO authentication and NO TLS: anyone who can connect can read, \
                 write and delete every topic, and traffic is readable on the network. Set \
                 [broker.sasl] users_file and [broker.tls] (see the README's Security section)"
            )),
            SecurityProtocol::Ssl => Some(format!(
                "{reach}, with TLS but NO authentication: anyone who can connect can read, write \
                 and delete every topic. Set [broker.sasl] users_file"
            )),
            SecurityProtocol::SaslPlaintext => Some(format!(
                "{reach}, with SASL authentication but NO TLS: data (and PLAIN passwords) cross \
                 the network in clear. Set [broker.tls] to encrypt"
            )),
        }
    }
}

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read TLS certificate file {path}: {message}")]
    Cert { path: PathBuf, message: String },
    #[error("cannot read TLS private key file {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error(
        "TLS certificate {cert} and key {key} do not make a usable server identity: {message}"
    )]
    Config {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

/// Builds the TLS acceptor from PEM files: the certificate chain (leaf first) and its private
/// key (PKCS#8, PKCS#1 or SEC1). TLS 1.2 and 1.3 with rustls' safe defaults, ring provider.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.to_path_buf(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: cert.to_path_buf(),
            message: "no PEM CERTIFICATE block found".into(),
        });
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        message: e.to_string(),
    })?;
    let config_err = |message: String| TlsError::Config {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        message,
    };
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| config_err(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, private_key)
    .map_err(|e| config_err(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(addr: &str, protocol: SecurityProtocol) -> Listener {
        Listener {
            protocol,
            bound: addr.parse().expect("addr"),
            advertised: ("h".into(), 1),
            tls: None,
        }
    }

    #[test]
    fn exposure_warnings_say_what_is_off() {
        assert!(listener("127.0.0.1:9092", SecurityProtocol::Plaintext)
            .exposure_warning()
            .is_none());
        assert!(listener("0.0.0.0:9092", SecurityProtocol::SaslSsl)
            .exposure_warning()
            .is_none());
        let plain = listener("0.0.0.0:9092", SecurityProtocol::Plaintext)
            .exposure_warning()
            .expect("warns");
        assert!(plain.contains("NO authentication and NO TLS"), "{plain}");
        assert!(plain.contains("(PLAINTEXT)"), "{plain}");
        let ssl = listener("10.0.0.1:9093", SecurityProtocol::Ssl)
            .exposure_warning()
            .expect("warns");
        assert!(ssl.contains("TLS but NO authentication"), "{ssl}");
        let sasl = listener("[::]:9092", SecurityProtocol::SaslPlaintext)
            .exposure_warning()
            .expect("warns");
        assert!(sasl.contains("NO TLS"), "{sasl}");
    }

    #[test]
    fn missing_or_empty_pem_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let err = tls_acceptor(&cert, &key)
            .err()
            .expect("missing file")
            .to_string();
        assert!(err.contains("cert.pem"), "{err}");
        std::fs::write(&cert, "not a pem\n").expect("write");
        let err = tls_acceptor(&cert, &key)
            .err()
            .expect("no cert")
            .to_string();
        assert!(err.contains("no PEM CERTIFICATE"), "{err}");
    }
}
