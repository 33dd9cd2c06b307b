//! SignCertificate signed by the backend (`security.certificate_signing = "backend"`), with a
//! real Kafka-protocol broker (`tansu`): a good request of a 1.6 charge point and of a 2.0.1
//! station is Accepted, followed by nothing from the gateway, and published as
//! `certificate.sign_requested` (a refused one is not); the backend's chain, delivered through
//! the API as a CertificateSigned call, reaches the charge point, its answer comes back to the
//! caller, and the delivery is published as `certificate.signed`. Every event is valid against
//! `schemas/kafka/`.
//!
//! Needs `tansu` on the PATH (`.ci/run` installs it); without it the test says so and passes,
//! except when `OCPP_REQUIRE_SERVERS` is set.

mod common;

use common::pki::{basic, connect_as, connect_as_offering, credentials_file};
use common::tansu::{self, EVENT_PARTITIONS, EVENTS, assert_schema, broker, gateway};
use common::*;
use ocpp_gateway::config::Signing;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, IsCa, Issuer,
    KeyPair,
};
use serde_json::{Value, json};
use tungstenite::Message;

const KEY: &[u8] = b"sixteen-byte-key";

fn csr(cn: &str) -> String {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().unwrap();
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn requested<'a>(events: &[&'a Value], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .copied()
        .filter(|e| e["eventType"] == kind)
        .collect()
}

#[test]
fn the_backend_gets_the_request_and_delivers_the_chain() {
    if !tansu::available() {
        return;
    }
    let tansu = broker();
    let dir = std::env::temp_dir().join(format!("ocpp-sign-backend-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = gateway(&tansu, "gw-sign", &dir);
    config.security.signing = Signing::Backend;
    // Only an authenticated connection's request goes to the backend: Basic auth (profile 1).
    credentials_file(
        &dir.join("credentials"),
        &[("CP-B16", KEY), ("CP-B201", KEY)],
    );
    config.security.profile = ocpp_gateway::security::Profile::BasicAuth;
    config.security.credentials = Some(dir.join("credentials"));
    let server = TestServer::start(config);

    let mut cp =
        connect_as(server.addr, "CP-B16", Some(&basic("CP-B16", KEY))).expect("Basic auth");
    boot(&mut cp);
    let request16 = csr("CP-B16");
    let reply = call(&mut cp, "s1", "SignCertificate", json!({"csr": request16}));
    assert_eq!(reply[2], json!({"status": "Accepted"}));
    // The gateway does not sign: the next frame is the Heartbeat's answer, not a CALL.
    assert_eq!(call(&mut cp, "h1", "Heartbeat", json!({}))[0], 3);
    let refused = call(
        &mut cp,
        "s2",
        "SignCertificate",
        json!({"csr": csr("CP-ELSE")}),
    );
    assert_eq!(refused[2], json!({"status": "Rejected"}));

    let mut station = connect_as_offering(
        server.addr,
        "CP-B201",
        Some(&basic("CP-B201", KEY)),
        "ocpp2.0.1",
    )
    .expect("Basic auth");
    boot_v201(&mut station);
    let request201 = csr("CP-B201");
    let reply = call_v201(
        &mut station,
        "s3",
        "SignCertificate",
        json!({"csr": request201, "certificateType": "ChargingStationCertificate"}),
    );
    assert_eq!(reply[2]["status"], "Accepted", "{reply}");

    let mut reader = tansu.reader(EVENTS, EVENT_PARTITIONS);
    reader.until("both requests", |seen| {
        seen.iter()
            .filter(|r| r.value["eventType"] == "certificate.sign_requested")
            .count()
            >= 2
    });
    let events16 = reader.of("CP-B16");
    let asked = requested(&events16, "certificate.sign_requested");
    assert_eq!(
        asked.len(),
        1,
        "the refused request is not published: {asked:?}"
    );
    assert_eq!(
        asked[0]["payload"],
        json!({"uniqueId": "s1", "csr": request16})
    );
    assert_eq!(asked[0]["ocppVersion"], "1.6");
    assert_schema(asked[0]);
    let events201 = reader.of("CP-B201");
    let asked = requested(&events201, "certificate.sign_requested");
    assert_eq!(
        asked[0]["payload"]["certificateType"],
        "ChargingStationCertificate"
    );
    assert_eq!(asked[0]["ocppVersion"], "2.0.1");
    assert_schema(asked[0]);

    // The backend signs with its own CA and delivers through the API.
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "backend CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let signed = CertificateSigningRequestParams::from_pem(&request16)
        .unwrap()
        .signed_by(&issuer)
        .unwrap();
    let chain = format!("{}{}", signed.pem(), ca_cert.pem());
    let reply = post_async(
        server.admin(),
        "CP-B16",
        json!({"action": "CertificateSigned", "payload": {"certificateChain": chain}}),
    );
    let (id, action, payload) = next_call(&mut cp);
    assert_eq!(action, "CertificateSigned");
    assert_eq!(payload["certificateChain"], chain);
    cp.send(Message::text(
        json!([3, id, {"status": "Accepted"}]).to_string(),
    ))
    .unwrap();
    let reply = reply.recv_timeout(WATCHDOG).expect("HTTP reply");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["payload"], json!({"status": "Accepted"}));
    reader.until("the delivery", |seen| {
        seen.iter()
            .any(|r| r.value["eventType"] == "certificate.signed")
    });
    let events16 = reader.of("CP-B16");
    let delivered = requested(&events16, "certificate.signed");
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0]["payload"]["certificateChain"], chain);
    assert_eq!(delivered[0]["payload"]["uniqueId"], id);
    assert_schema(delivered[0]);
    let _ = std::fs::remove_dir_all(dir);
}
