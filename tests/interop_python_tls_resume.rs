//! Resumption with an independent TLS stack: Python's `ssl` module (OpenSSL) connects to a
//! profile 2 gateway, upgrades, closes, and reconnects offering the session it was given; for
//! TLS 1.3 and for TLS 1.2 the second connection reports `session_reused` and is upgraded
//! (`tests/interop/tls_resume.py`; Python's standard library only).

mod common;

use std::process::Command;
use std::time::Duration;

use common::pki::*;
use common::*;
use ocpp_gateway::config::{DEFAULT_TLS_TICKET_LIFETIME, TicketConfig};
use ocpp_gateway::security::Profile;
use ocpp_gateway::security::certificates::CertFiles;

const KEY: &[u8] = b"sixteen-byte-key";

#[test]
fn python_ssl_resumes_in_tls_13_and_12() {
    let pki = Pki::new("resume-python");
    let credentials = pki.path("credentials");
    credentials_file(&credentials, &[("CP1", KEY)]);
    let (cert, key, _) = pki.server("server", false);
    let mut config = test_config();
    config.security.profile = Profile::TlsBasicAuth;
    config.security.credentials = Some(credentials);
    config.security.tls_certs = vec![CertFiles { cert, key }];
    config.security.tickets = Some(TicketConfig {
        keys: None,
        lifetime: DEFAULT_TLS_TICKET_LIFETIME,
    });
    let server = TestServer::start(config);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/tls_resume.py");
    let mut command = Command::new("python3");
    command
        .arg(script)
        .arg("127.0.0.1")
        .arg(server.addr.port().to_string())
        .arg(pki.path("ca.pem"))
        .arg("CP1")
        .arg(std::str::from_utf8(KEY).unwrap());
    let lines = Driven::spawn(command).finish(Duration::from_secs(60));
    let seen: Vec<(String, u64, bool, u64)> = lines
        .iter()
        .map(|l| {
            (
                l["version"].as_str().unwrap_or("?").to_owned(),
                l["attempt"].as_u64().unwrap_or(0),
                l["reused"].as_bool().unwrap_or(false),
                l["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("TLSv1.3".to_owned(), 1, false, 101),
            ("TLSv1.3".to_owned(), 2, true, 101),
            ("TLSv1.2".to_owned(), 1, false, 101),
            ("TLSv1.2".to_owned(), 2, true, 101),
        ],
        "{lines:?}"
    );
    server.wait_for("two resumptions", |s| s.tls_resumptions == 2);
    pki.cleanup();
}
