//! SignCertificate with the gateway's sub-CA (`security.ca_cert`, `security.ca_key`), end to
//! end over real sockets, 1.6 (security extension) and 2.0.1, with real CSRs (rcgen, and
//! `openssl req` for a P-384 key signed with SHA-256 and a 1024-bit RSA key): a good request is
//! Accepted and followed by CertificateSigned whose chain holds a certificate for the identity,
//! with the request's own key, signed by the sub-CA; both the call and its outcome are
//! journaled. The 1.6 charge point then connects to a profile 3 listener that trusts the
//! sub-CA with the certificate it was given, and boots. Each refusal (another identity's CN, a
//! weak key, a broken signature, not a CSR, 2.0.1's V2G certificate) is Rejected (2.0.1: with
//! its reasonCode) and followed by nothing.

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
    let server = TestServer::start(config);
    let mtls = server.server().local_addrs()[1];

    // 1.6: a request made with rcgen.
    let mut cp = connect(&server, "CP-S16");
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
    let mut station = connect_v201(&server, "CP-S201");
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
