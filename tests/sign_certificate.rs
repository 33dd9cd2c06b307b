//! SignCertificate with the gateway's sub-CA (`security.ca_cert`, `security.ca_key`), end to
//! end over real sockets, 1.6 (security extension) and 2.0.1, with real CSRs (rcgen, and
//! `openssl req` for a P-384 key signed with SHA-256 and a 1024-bit RSA key): a good request is
//! Accepted and followed by CertificateSigned whose chain holds a certificate for the identity,
//! with the request's own key, signed by the sub-CA; both the call and its outcome are
//! journaled. The 1.6 charge point then connects to a profile 3 listener that trusts the
//! sub-CA with the certificate it was given, and boots. Each refusal (another identity's CN, a
//! weak key, a broken signature, not a CSR, 2.0.1's V2G certificate, and a connection that did
//! not authenticate) is Rejected (2.0.1: with its reasonCode) and followed by nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::pki::*;
use common::*;
use ocpp_gateway::config::{ListenerConfig, Signing};
use ocpp_gateway::security::Profile;
use ocpp_gateway::security::certificates::CertFiles;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tungstenite::Message;
use x509_parser::prelude::*;

const KEY: &[u8] = b"sixteen-byte-key";

/// The sub-CA's files in `dir`: (certificate, key).
fn sub_ca(dir: &Path) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "charge point sub-CA");
    let ca = params.self_signed(&key).unwrap();
    let (cert, key_path) = (dir.join("sub-ca.pem"), dir.join("sub-ca.key"));
    std::fs::write(&cert, ca.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert, key_path)
}

/// A CSR for `cn` made by `openssl req` with a new key of `newkey` (its PEM text).
fn openssl_csr(dir: &Path, name: &str, newkey: &[&str], cn: &str) -> String {
    let (key, csr) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.csr")),
    );
    let status = Command::new("openssl")
        .args(["req", "-new", "-nodes", "-newkey"])
        .args(newkey)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .args(["-subj", &format!("/O=Example CPO/CN={cn}")])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl req {newkey:?}");
    std::fs::read_to_string(csr).unwrap()
}

/// A CSR for `cn` with `key` (rcgen).
fn rcgen_csr(key: &KeyPair, cn: &str) -> String {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.serialize_request(key).unwrap().pem().unwrap()
}

fn chain_of(payload: &Value) -> Vec<CertificateDer<'static>> {
    let pem = payload["certificateChain"].as_str().expect("a chain");
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.expect("PEM certificate"))
        .collect()
}

/// Checks the chain's first certificate: for `cn`, with the request's key, signed by the CA.
fn assert_issued(chain: &[CertificateDer<'_>], cn: &str, csr: &str, ca: &Path) {
    assert_eq!(chain.len(), 2, "the certificate, then the sub-CA");
    let (_, leaf) = parse_x509_certificate(&chain[0]).unwrap();
    assert_eq!(
        leaf.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        cn
    );
    assert!(!leaf.is_ca());
    let csr_der = rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
        .expect("a PEM CSR");
    let (_, request) = X509CertificationRequest::from_der(csr_der.as_ref()).unwrap();
    assert_eq!(
        leaf.public_key().raw,
        request.certification_request_info.subject_pki.raw,
        "the request's key, byte for byte"
    );
    let ca_der = CertificateDer::from_pem_file(ca).unwrap();
    let (_, ca_cert) = parse_x509_certificate(&ca_der).unwrap();
    leaf.verify_signature(Some(ca_cert.public_key()))
        .expect("signed by the sub-CA");
    assert_eq!(chain[1].as_ref(), ca_der.as_ref());
    let days =
        (leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp()) / 86_400;
    assert_eq!(days, 30, "security.certificate_validity");
}

fn send(client: &mut Client, frame: Value) {
    client.send(Message::text(frame.to_string())).unwrap();
}

#[test]
fn requests_are_checked_signed_delivered_and_the_certificate_works() {
    let pki = Pki::new("sign-ca");
    let (ca_cert, ca_key) = sub_ca(&pki.dir);
    let (server_cert, server_key, _) = pki.server("server", false);
    let mut config = test_config();
    config.security.signing = Signing::Ca {
        cert: ca_cert.clone(),
        key: ca_key,
        // Shorter than the backdating is long: the check below counts whole days.
        validity: Duration::from_secs(30 * 86_400 - 300),
    };
    config.events.sinks = ocpp_gateway::config::Sinks::JOURNAL;
    config.events.path = pki.path("journal.jsonl");
    // Profile 3 on a second port, trusting the sub-CA: where the new certificate is used.
    config.security.tls_certs = vec![CertFiles {
        cert: server_cert,
        key: server_key,
    }];
    config.security.client_ca = Some(ca_cert.clone());
    config.extra_listeners.push(ListenerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        profile: Profile::MutualTls,
        proxy_protocol: false,
        tls_offload: false,
        protocols: config.ocpp.protocols,
    });
    // The stations prove who they are with Basic auth (profile 1); a profile 0 port beside.
    credentials_file(
        &pki.path("credentials"),
        &[("CP-S16", KEY), ("CP-S201", KEY)],
    );
    config.security.profile = Profile::BasicAuth;
    config.security.credentials = Some(pki.path("credentials"));
    config.extra_listeners.push(ListenerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        profile: Profile::Unsecured,
        proxy_protocol: false,
        tls_offload: false,
        protocols: config.ocpp.protocols,
    });
    let server = TestServer::start(config);
    let (mtls, anonymous) = (
        server.server().local_addrs()[1],
        server.server().local_addrs()[2],
    );

    // A connection that did not authenticate gets no certificate for the identity it names.
    let mut anon = connect_as(anonymous, "CP-ANON", None).expect("profile 0");
    boot(&mut anon);
    let request = json!({"csr": rcgen_csr(&KeyPair::generate().unwrap(), "CP-ANON")});
    let reply = call(&mut anon, "a1", "SignCertificate", request);
    assert_eq!(reply[2], json!({"status": "Rejected"}), "unauthenticated");
    let mut anon201 =
        connect_as_offering(anonymous, "CP-ANON2", None, "ocpp2.0.1").expect("profile 0");
    boot_v201(&mut anon201);
    let request = json!({"csr": rcgen_csr(&KeyPair::generate().unwrap(), "CP-ANON2")});
    let reply = call_v201(&mut anon201, "a2", "SignCertificate", request);
    assert_eq!(
        reply[2]["statusInfo"]["reasonCode"], "NotAuthenticated",
        "{reply}"
    );

    // 1.6: a request made with rcgen.
    let mut cp =
        connect_as(server.addr, "CP-S16", Some(&basic("CP-S16", KEY))).expect("Basic auth");
    boot(&mut cp);
    let key = KeyPair::generate().unwrap();
    let csr = rcgen_csr(&key, "CP-S16");
    let reply = call(&mut cp, "s1", "SignCertificate", json!({"csr": csr}));
    assert_eq!(reply[2], json!({"status": "Accepted"}));
    let (id, action, payload) = next_call(&mut cp);
    assert_eq!(action, "CertificateSigned");
    assert_valid("CertificateSigned", &payload);
    let chain = chain_of(&payload);
    assert_issued(&chain, "CP-S16", &csr, &ca_cert);
    send(&mut cp, json!([3, id, {"status": "Accepted"}]));

    // Each refusal is Rejected, and nothing follows it (the next frame is the Heartbeat's).
    let dir = pki.dir.clone();
    for (what, csr) in [
        (
            "another identity",
            rcgen_csr(&KeyPair::generate().unwrap(), "CP-OTHER"),
        ),
        (
            "RSA 1024",
            openssl_csr(&dir, "weak", &["rsa:1024"], "CP-S16"),
        ),
        (
            "not a CSR",
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n".into(),
        ),
        ("a broken signature", {
            let good = rcgen_csr(&KeyPair::generate().unwrap(), "CP-S16");
            let der =
                rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(good.as_bytes())
                    .unwrap();
            let mut bytes = der.as_ref().to_vec();
            *bytes.last_mut().unwrap() ^= 1;
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(bytes)
        }),
    ] {
        let reply = call(&mut cp, "s2", "SignCertificate", json!({"csr": csr}));
        assert_eq!(reply[2], json!({"status": "Rejected"}), "{what}");
        assert_eq!(
            call(&mut cp, "h", "Heartbeat", json!({}))[0],
            3,
            "{what}: nothing followed"
        );
    }

    // 2.0.1: a P-384 key whose request openssl signed with SHA-256.
    let mut station = connect_as_offering(
        server.addr,
        "CP-S201",
        Some(&basic("CP-S201", KEY)),
        "ocpp2.0.1",
    )
    .expect("Basic auth");
    boot_v201(&mut station);
    let csr = openssl_csr(
        &dir,
        "p384",
        &["ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
        "CP-S201",
    );
    let request = json!({"csr": csr, "certificateType": "ChargingStationCertificate"});
    let reply = call_v201(&mut station, "s3", "SignCertificate", request);
    assert_eq!(reply[2]["status"], "Accepted", "{reply}");
    let (id, action, payload) = next_call(&mut station);
    assert_eq!(action, "CertificateSigned");
    assert_eq!(payload["certificateType"], "ChargingStationCertificate");
    assert_issued(&chain_of(&payload), "CP-S201", &csr, &ca_cert);
    send(&mut station, json!([3, id, {"status": "Accepted"}]));
    for (request, code) in [
        (
            json!({"csr": rcgen_csr(&KeyPair::generate().unwrap(), "CP-S16")}),
            "InvalidCommonName",
        ),
        (
            json!({"csr": openssl_csr(&dir, "weak2", &["rsa:1024"], "CP-S201")}),
            "InvalidKey",
        ),
        (
            json!({"csr": rcgen_csr(&KeyPair::generate().unwrap(), "CP-S201"),
                   "certificateType": "V2GCertificate"}),
            "UnsupportedCertType",
        ),
    ] {
        let reply = call_v201(&mut station, "s4", "SignCertificate", request);
        assert_eq!(reply[2]["status"], "Rejected");
        assert_eq!(reply[2]["statusInfo"]["reasonCode"], code, "{reply}");
        assert_eq!(call_v201(&mut station, "h", "Heartbeat", json!({}))[0], 3);
    }

    // Journaled: both CertificateSigned calls, and how each ended.
    let journal = pki.path("journal.jsonl");
    wait_until(
        "both CertificateSigned calls and outcomes journaled",
        || {
            let text = std::fs::read_to_string(&journal).unwrap_or_default();
            let lines: Vec<Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            let of = |event: &str| {
                lines
                    .iter()
                    .filter(|l| l["action"] == "CertificateSigned" && l["event"] == event)
                    .count()
            };
            of("call") == 2 && of("outcome") == 2
        },
    );

    // The certificate works: the 1.6 charge point connects with it to the profile 3 port.
    let key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let tls = pki.client_config(Some(ClientCert { chain, key }));
    let (mut renewed, _) =
        wss_connect(mtls, tls, "CP-S16", None).expect("the new certificate is taken");
    boot(&mut renewed);
    pki.cleanup();
}

#[test]
fn a_ca_whose_name_would_not_survive_signing_stops_the_start() {
    // Two attributes of one type (DC=com, DC=example): rcgen would write the issuer as another
    // name, and no certificate would chain. The start refuses it, naming the key.
    let dir = std::env::temp_dir().join(format!("ocpp-sign-dc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-days", "2"])
        .args(["-subj", "/DC=com/DC=example/CN=Sub CA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .arg("-keyout")
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(dir.join("ca.pem"))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success());
    let mut config = test_config();
    config.security.signing = Signing::Ca {
        cert: dir.join("ca.pem"),
        key: dir.join("ca.key"),
        validity: Duration::from_secs(86_400),
    };
    let error = ocpp_gateway::server::Server::start(config)
        .err()
        .expect("the start fails");
    let text = error.to_string();
    assert!(
        text.contains("security.ca_cert") && text.contains("chain"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
