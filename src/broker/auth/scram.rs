//! SCRAM-SHA-256 (RFC 5802 with RFC 7677's hash): the stored credential and the server side of
//! the two-round exchange.
//!
//! The broker stores only `salt`, `iterations`, `StoredKey = H(HMAC(SaltedPassword, "Client
//! Key"))` and `ServerKey = HMAC(SaltedPassword, "Server Key")`, as Kafka does: a stolen users
//! file gives no password, and cannot be replayed as a client proof. The client proves it knows
//! `ClientKey`, which the server checks by hashing it back to `StoredKey` (in constant time).
//! Channel binding is not offered (the `n` GS2 flag), like Kafka.

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ring::rand::SecureRandom;
use ring::{digest, hmac, pbkdf2};
use subtle::ConstantTimeEq;

/// RFC 7677 recommends at least 4096; Kafka's minimum is 4096 too. Every SCRAM client pays
/// this once per connection, and a PLAIN login pays it on the broker.
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// The least a users file may ask for: fewer makes a stolen file cheap to brute-force.
pub const MIN_ITERATIONS: u32 = 4096;
/// The most: a PLAIN login derives the key on the broker, and this bounds what one costs.
pub const MAX_ITERATIONS: u32 = 1_000_000;
const KEY_LEN: usize = 32;
const SALT_LEN: usize = 16;

/// A user's SCRAM-SHA-256 secret as kept in the users file.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: [u8; KEY_LEN],
    pub server_key: [u8; KEY_LEN],
}

impl std::fmt::Debug for ScramCredential {
    // Never print key material, even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// Derives the credential for `password` with a fresh random salt.
    pub fn new(
        password: &str,
        iterations: u32,
    ) -> Result<ScramCredential, ring::error::Unspecified> {
        let mut salt = vec![0u8; SALT_LEN];
        ring::rand::SystemRandom::new().fill(&mut salt)?;
        Ok(Self::derive(password, salt, iterations))
    }

    /// Derives the credential for `password` with this salt (RFC 5802 section 3).
    pub fn derive(password: &str, salt: Vec<u8>, iterations: u32) -> ScramCredential {
        let salted = salted_password(password, &salt, iterations);
        let client_key = hmac_sha256(&salted, b"Client Key");
        ScramCredential {
            stored_key: sha256(&client_key),
            server_key: hmac_sha256(&salted, b"Server Key"),
            salt,
            iterations,
        }
    }

    /// Whether `password` is this credential's password (used by SASL PLAIN): derive with the
    /// stored salt and iterations and compare StoredKey in constant time.
    pub fn verify_password(&self, password: &str) -> bool {
        let candidate = Self::derive(password, self.salt.clone(), self.iterations);
        bool::from(candidate.stored_key.ct_eq(&self.stored_key))
    }

    pub fn salt_base64(&self) -> String {
        BASE64.encode(&self.salt)
    }
}

fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    let iterations = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        password.as_bytes(),
        &mut out,
    );
    out
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; KEY_LEN] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut out = [0u8; KEY_LEN];
    out.copy_from_slice(hmac::sign(&key, data).as_ref());
    out
}

fn sha256(data: &[u8]) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

/// A fresh server nonce: 18 bytes from the system CSPRNG, base64 (printable, no commas).
pub fn new_nonce() -> Result<String, ring::error::Unspecified> {
    let mut bytes = [0u8; 18];
    ring::rand::SystemRandom::new().fill(&mut bytes)?;
    Ok(BASE64.encode(bytes))
}

/// Why an exchange failed. The client only ever hears "authentication failed"; the broker log
/// gets this detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("the client asked for channel binding, which rill does not offer")]
    ChannelBinding,
    #[error("unknown user")]
    UnknownUser,
    #[error("wrong password (client proof does not match)")]
    BadProof,
    #[error("the client's final nonce does not continue the exchange")]
    NonceMismatch,
    #[error("no randomness available from the operating system")]
    Random,
}

/// The server's state between the client's first and final messages.
#[derive(Debug)]
pub struct ScramServer {
    username: String,
    /// None for an unknown user: the exchange runs on with a fake salt so the client cannot
    /// tell unknown users from wrong passwords, and fails at the proof.
    credential: Option<ScramCredential>,
    client_first_bare: String,
    server_first: String,
    /// The client's nonce, then the server's.
    nonce: String,
    /// How much of `nonce` is the client's (see [`ScramServer::finish`]).
    client_nonce_len: usize,
}

impl ScramServer {
    /// Handles client-first-message (`n,,n=user,r=nonce`) and returns the server's state and
    /// server-first-message. `lookup` finds a user's credential; `fake_salt` makes a
    /// deterministic salt for users that do not exist.
    pub fn start(
        client_first: &[u8],
        server_nonce: &str,
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
        fake_salt: impl FnOnce(&str) -> Vec<u8>,
    ) -> Result<(ScramServer, String), ScramError> {
        let text = std::str::from_utf8(client_first)
            .map_err(|_| ScramError::Malformed("client-first-message is not UTF-8"))?;
        // gs2-header: flag "," [authzid] ","
        let (flag, rest) = text
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("bad GS2 channel-binding flag")),
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        let mut attributes = bare.split(',');
        let username = match attributes.next() {
            Some(a) if a.starts_with("m=") => {
                return Err(ScramError::Malformed("mandatory extension not supported"))
            }
            Some(a) => decode_name(
                a.strip_prefix("n=")
                    .ok_or(ScramError::Malformed("no username"))?,
            )?,
            None => return Err(ScramError::Malformed("no username")),
        };
        let client_nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .filter(|n| !n.is_empty())
            .ok_or(ScramError::Malformed("no client nonce"))?;
        // Extensions (Kafka's tokenauth=...) may follow; rill has no delegation tokens.
        if let Some(authzid) = authzid.strip_prefix("a=") {
            if decode_name(authzid)? != username {
                return Err(ScramError::Malformed(
                    "authorization id differs from the username",
                ));
            }
        }
        let credential = lookup(&username);
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => (fake_salt(&username), DEFAULT_ITERATIONS),
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!("r={nonce},s={},i={iterations}", BASE64.encode(salt));
        Ok((
            ScramServer {
                username,
                credential,
                client_first_bare: bare.to_string(),
                server_first: server_first.clone(),
                nonce,
                client_nonce_len: client_nonce.len(),
            },
            server_first,
        ))
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    /// Handles client-final-message (`c=biws,r=nonce,p=proof`); on success returns
    /// server-final-message (`v=signature`).
    pub fn finish(self, client_final: &[u8]) -> Result<String, ScramError> {
        let text = std::str::from_utf8(client_final)
            .map_err(|_| ScramError::Malformed("client-final-message is not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no client proof"))?;
        let mut attributes = without_proof.split(',');
        let binding = attributes
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::Malformed("no channel binding attribute"))?;
        // Without channel binding the client echoes its GS2 header: "n,," or "y,," (or with
        // an authzid), base64-encoded.
        let binding = BASE64
            .decode(binding)
            .map_err(|_| ScramError::Malformed("channel binding is not base64"))?;
        if !(binding.starts_with(b"n,") || binding.starts_with(b"y,")) {
            return Err(ScramError::ChannelBinding);
        }
        let nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce in client-final-message"))?;
        // RFC 5802: the nonce the server sent, the client's and the server's parts. librdkafka
        // before 2.6.1 (Debian 12's kcat and confluent-kafka among its users) puts its own nonce
        // in front once more (confluentinc/librdkafka#4895). rill accepts that exact form too
        // (Kafka 3.8.1, which began checking this nonce, accepts any that ends with the
        // server's). Either way the whole server nonce is there: the message belongs to this
        // exchange.
        let client_nonce = &self.nonce[..self.client_nonce_len];
        let legacy = nonce
            .strip_prefix(client_nonce)
            .is_some_and(|rest| rest == self.nonce);
        if nonce != self.nonce && !legacy {
            return Err(ScramError::NonceMismatch);
        }
        let proof = BASE64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("client proof is not base64"))?;
        let Some(credential) = self.credential else {
            return Err(ScramError::UnknownUser);
        };
        if proof.len() != KEY_LEN {
            return Err(ScramError::BadProof);
        }
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let client_signature = hmac_sha256(&credential.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; KEY_LEN];
        for (i, byte) in client_key.iter_mut().enumerate() {
            *byte = proof[i] ^ client_signature[i];
        }
        if !bool::from(sha256(&client_key).ct_eq(&credential.stored_key)) {
            return Err(ScramError::BadProof);
        }
        let server_signature = hmac_sha256(&credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", BASE64.encode(server_signature)))
    }
}

/// saslname: "=2C" is ",", "=3D" is "="; any other "=" is an error (RFC 5802 section 5.1).
fn decode_name(raw: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in username")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil".
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_credential() -> ScramCredential {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        ScramCredential::derive("pencil", salt, 4096)
    }

    fn start(client_first: &str) -> Result<(ScramServer, String), ScramError> {
        ScramServer::start(
            client_first.as_bytes(),
            SERVER_NONCE,
            |name| (name == "user").then(rfc_credential),
            |_| b"fake-salt-for-the-unknown".to_vec(),
        )
    }

    #[test]
    fn rfc7677_test_vector() {
        let (server, server_first) = start(CLIENT_FIRST).expect("client-first accepted");
        assert_eq!(server_first, SERVER_FIRST);
        assert_eq!(server.username(), "user");
        let server_final = server
            .finish(CLIENT_FINAL.as_bytes())
            .expect("proof accepted");
        assert_eq!(server_final, SERVER_FINAL);
    }

    #[test]
    fn a_wrong_proof_is_refused() {
        let (server, _) = start(CLIENT_FIRST).expect("client-first accepted");
        let forged = CLIENT_FINAL.replace("p=dHzb", "p=dHzc");
        assert_eq!(server.finish(forged.as_bytes()), Err(ScramError::BadProof));
    }

    #[test]
    fn a_wrong_password_derives_another_proof() {
        // The same exchange against a credential for another password must fail.
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let other = ScramCredential::derive("pencil2", salt, 4096);
        let (server, _) = ScramServer::start(
            CLIENT_FIRST.as_bytes(),
            SERVER_NONCE,
            |_| Some(other),
            |_| Vec::new(),
        )
        .expect("client-first accepted");
        assert_eq!(
            server.finish(CLIENT_FINAL.as_bytes()),
            Err(ScramError::BadProof)
        );
    }

    #[test]
    fn an_unknown_user_looks_like_a_wrong_password_until_the_end() {
        let (server, server_first) =
            start("n,,n=nobody,r=rOprNGfwEbeRWgbNEkqO").expect("unknown user gets a challenge");
        assert!(server_first.contains(",i=4096"), "{server_first}");
        assert_eq!(
            server.finish(CLIENT_FINAL.as_bytes()),
            Err(ScramError::UnknownUser)
        );
    }

    #[test]
    fn a_replayed_final_with_another_nonce_is_refused() {
        let (server, _) = start(CLIENT_FIRST).expect("client-first accepted");
        let other = CLIENT_FINAL.replace("hNlF$k0", "hNlF$k1");
        assert_eq!(
            server.finish(other.as_bytes()),
            Err(ScramError::NonceMismatch)
        );
    }

    /// The client-final-message a client sends for `nonce`, proved with `password` as RFC 5802
    /// says (over the exchange's own messages).
    fn client_final(nonce: &str, password: &str) -> String {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let client_key = hmac_sha256(&salted_password(password, &salt, 4096), b"Client Key");
        let without_proof = format!("c=biws,r={nonce}");
        let client_first_bare = CLIENT_FIRST.trim_start_matches("n,,");
        let auth_message = format!("{client_first_bare},{SERVER_FIRST},{without_proof}");
        let signature = hmac_sha256(&sha256(&client_key), auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        format!("{without_proof},p={}", BASE64.encode(proof))
    }

    #[test]
    fn the_client_nonce_sent_twice_by_older_librdkafka_is_accepted_in_that_form_only() {
        let client_nonce = "rOprNGfwEbeRWgbNEkqO";
        let nonce = format!("{client_nonce}{SERVER_NONCE}");
        assert_eq!(
            client_final(&nonce, "pencil"),
            CLIENT_FINAL,
            "the proof as RFC 7677"
        );
        // librdkafka < 2.6.1: its nonce, then the whole nonce the server sent.
        let legacy = format!("{client_nonce}{nonce}");
        let (server, _) = start(CLIENT_FIRST).expect("client-first accepted");
        assert!(server
            .finish(client_final(&legacy, "pencil").as_bytes())
            .is_ok());
        let (server, _) = start(CLIENT_FIRST).expect("client-first accepted");
        assert_eq!(
            server.finish(client_final(&legacy, "pencil2").as_bytes()),
            Err(ScramError::BadProof)
        );
        for other in [
            format!("x{nonce}"),
            format!("{client_nonce}{client_nonce}{nonce}"),
            format!("{client_nonce}{nonce}x"),
            SERVER_NONCE.to_string(),
            client_nonce.to_string(),
        ] {
            let (server, _) = start(CLIENT_FIRST).expect("client-first accepted");
            assert_eq!(
                server.finish(client_final(&other, "pencil").as_bytes()),
                Err(ScramError::NonceMismatch),
                "{other}"
            );
        }
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        for bad in [
            "",
            "n",
            "n,,",
            "x,,n=user,r=abc",
            "n,,r=abc",
            "n,,n=user",
            "n,,n=us=er,r=abc",
            "n,,m=ext,n=user,r=abc",
        ] {
            assert!(start(bad).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(
            start("p=tls-unique,,n=user,r=abc").map(|_| ()),
            Err(ScramError::ChannelBinding)
        );
        let (server, _) = start(CLIENT_FIRST).expect("client-first accepted");
        assert!(server.finish(b"c=biws,r=x").is_err());
    }

    #[test]
    fn escaped_usernames_decode() {
        assert_eq!(decode_name("a=2Cb=3Dc").expect("valid"), "a,b=c");
    }

    #[test]
    fn plain_passwords_verify_against_the_stored_credential() {
        let credential = ScramCredential::new("s3cret", 4096).expect("random salt");
        assert!(credential.verify_password("s3cret"));
        assert!(!credential.verify_password("s3cret "));
        assert!(!credential.verify_password(""));
        assert_eq!(rfc_credential(), rfc_credential());
        assert!(rfc_credential().verify_password("pencil"));
    }
}
