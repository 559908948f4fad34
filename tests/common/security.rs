//! TLS and SASL fixtures shared by the security tests: a CA and a server certificate for
//! 127.0.0.1 made with rcgen, a users file written by `rill users`, a broker with SASL_SSL and
//! SASL_PLAINTEXT listeners, and kcat with SASL settings.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::{kcat_cmd, rill_cmd, run, Broker, Run};

const T: Duration = Duration::from_secs(60);

pub const ADMIN_PW: &str = "admin-pw-1";
pub const WRITER_PW: &str = "writer pw with spaces";
pub const READER_PW: &str = "reader-pw-3";

/// Certificates and a users file in a temp dir.
pub struct Secrets {
    pub dir: TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub users: PathBuf,
}

pub fn secrets() -> Secrets {
    let dir = tempfile::Builder::new()
        .prefix("rill-sec-")
        .tempdir()
        .expect("tempdir");
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "rill test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = ca_params.self_signed(&ca_key).expect("CA cert");
    let key = rcgen::KeyPair::generate().expect("server key");
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("server params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("server cert");
    let s = Secrets {
        ca: dir.path().join("ca.pem"),
        cert: dir.path().join("broker.pem"),
        key: dir.path().join("broker.key"),
        users: dir.path().join("users.toml"),
        dir,
    };
    std::fs::write(&s.ca, ca.pem()).expect("write CA");
    std::fs::write(&s.cert, cert.pem()).expect("write cert");
    std::fs::write(&s.key, key.serialize_pem()).expect("write key");
    s
}

pub fn users_cmd(file: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    let mut cmd = rill_cmd(["users"]);
    cmd.args(args).arg("--file").arg(file);
    run(&mut cmd, stdin.map(str::as_bytes), T)
}

impl Secrets {
    /// admin (admin on everything), writer (write logs*), reader (read logs).
    pub fn with_users(self) -> Secrets {
        users_cmd(
            &self.users,
            &["add", "admin", "--admin", "*"],
            Some(&format!("{ADMIN_PW}\n")),
        )
        .assert_ok();
        users_cmd(
            &self.users,
            &["add", "writer", "--write", "logs*"],
            Some(&format!("{WRITER_PW}\n")),
        )
        .assert_ok();
        users_cmd(
            &self.users,
            &["add", "reader", "--read", "logs"],
            Some(&format!("{READER_PW}\n")),
        )
        .assert_ok();
        self
    }

    pub fn tls_config(&self) -> String {
        format!(
            "[broker.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            self.cert, self.key
        )
    }

    pub fn sasl_config(&self) -> String {
        format!("[broker.sasl]\nusers_file = {:?}\n", self.users)
    }
}

pub fn kcat_sasl(
    addr: &str,
    protocol: &str,
    ca: Option<&Path>,
    mechanism: &str,
    user: &str,
    pw: &str,
) -> Command {
    let mut cmd = kcat_cmd(addr);
    cmd.args(["-X", &format!("security.protocol={protocol}")])
        .args(["-X", &format!("sasl.mechanism={mechanism}")])
        .args(["-X", &format!("sasl.username={user}")])
        .args(["-X", &format!("sasl.password={pw}")]);
    if let Some(ca) = ca {
        cmd.arg("-X")
            .arg(format!("ssl.ca.location={}", ca.display()));
    }
    cmd
}

/// kcat over SASL_SSL with SCRAM-SHA-256, trusting the test CA: how agents and dashboards
/// connect.
pub fn kcat_scram_ssl(s: &Secrets, addr: &str, user: &str, pw: &str) -> Command {
    kcat_sasl(addr, "SASL_SSL", Some(&s.ca), "SCRAM-SHA-256", user, pw)
}

/// SASL_SSL on the main listener and SASL_PLAINTEXT on a second one.
pub fn sasl_broker(s: &Secrets) -> (Broker, String) {
    let plain = format!("127.0.0.1:{}", super::free_port());
    let config = format!(
        "[broker]\nlisten_plaintext = \"{plain}\"\n[broker.groups]\ninitial_rebalance_delay_ms = 0\n{}{}",
        s.tls_config(),
        s.sasl_config()
    );
    let broker = Broker::start_with_config(&config);
    let log = broker.log();
    assert!(
        log.contains("SASL_SSL, SASL SCRAM-SHA-256/PLAIN"),
        "{}",
        broker.log_excerpt()
    );
    assert!(
        log.contains(&format!("also listening on {plain} (SASL_PLAINTEXT)")),
        "{}",
        broker.log_excerpt()
    );
    (broker, plain)
}
