//! Client certificates coming due: each profile 3 connection's certificate (serial, notAfter)
//! is in the API; the connected charge points whose certificate expires within
//! `security.renew_before` are counted (`ocpp_gateway_client_certificates_expiring`), and with
//! `security.renewals_per_scan` the gateway asks them to renew it: ExtendedTriggerMessage
//! SignChargePointCertificate to a 1.6 charge point, TriggerMessage
//! SignChargingStationCertificate to a 2.0.1 station. One whose certificate is good for long is
//! left alone.

mod common;

use std::time::Duration;

use common::pki::*;
use common::*;
use ocpp_gateway::security::Profile;
use ocpp_gateway::security::certificates::CertFiles;
use serde_json::json;
use tungstenite::Message;

#[test]
fn certificates_coming_due_are_counted_shown_and_renewed() {
    let pki = Pki::new("expiry");
    let (cert, key, _) = pki.server("server", false);
    let mut config = test_config();
    config.security.profile = Profile::MutualTls;
    config.security.tls_certs = vec![CertFiles { cert, key }];
    config.security.client_ca = Some(pki.path("ca.pem"));
    config.security.renewals_per_scan = 10;
    config.security.certificate_scan = Duration::from_millis(100);
    let server = TestServer::start(config);

    let soon = pki.client_config(Some(pki.client_for_days("CP-SOON", 10)));
    let (mut cp, _) = wss_connect(server.addr, soon, "CP-SOON", None).expect("connects");
    boot(&mut cp);
    let later = pki.client_config(Some(pki.client_for_days("CP-LATER", 300)));
    let (mut long_lived, _) = wss_connect(server.addr, later, "CP-LATER", None).expect("connects");
    boot(&mut long_lived);
    let soon201 = pki.client_config(Some(pki.client_for_days("CP-SOON2", 20)));
    let stream = tls_stream(server.addr, soon201).expect("TLS");
    let (mut station, _) =
        wss_upgrade_as(stream, server.addr, "CP-SOON2", None, "ocpp2.0.1").expect("upgrades");
    boot_v201(&mut station);

    // Asked to renew, each in its version.
    let (id, action, payload) = next_call(&mut cp);
    assert_eq!(action, "ExtendedTriggerMessage");
    assert_eq!(
        payload,
        json!({"requestedMessage": "SignChargePointCertificate"})
    );
    assert_valid("ExtendedTriggerMessage", &payload);
    cp.send(Message::text(
        json!([3, id, {"status": "Accepted"}]).to_string(),
    ))
    .unwrap();
    let (id, action, payload) = next_call(&mut station);
    assert_eq!(action, "TriggerMessage");
    assert_eq!(
        payload,
        json!({"requestedMessage": "SignChargingStationCertificate"})
    );
    station
        .send(Message::text(
            json!([3, id, {"status": "Accepted"}]).to_string(),
        ))
        .unwrap();
    server.wait_for("two due, two asked", |s| {
        s.certificates_expiring == 2 && s.renewals_triggered == 2
    });
    // The long-lived certificate was not asked about: its next frame is its Heartbeat's answer.
    assert_eq!(call(&mut long_lived, "h", "Heartbeat", json!({}))[0], 3);

    // The API shows each connection's certificate.
    let view = http(
        server.admin(),
        "GET",
        "/api/v1/chargepoints/CP-SOON",
        None,
        None,
    )
    .json();
    let certificate = &view["client_certificate"];
    assert!(
        certificate["serial"].as_str().is_some_and(|s| s.len() >= 2),
        "{view}"
    );
    let not_after = humantime::parse_rfc3339(certificate["not_after"].as_str().unwrap()).unwrap();
    let left = not_after
        .duration_since(std::time::SystemTime::now())
        .unwrap()
        .as_secs();
    assert!((9 * 86_400..=10 * 86_400).contains(&left), "{view}");
    assert_eq!(certificate["renewal_asked"], true);
    let view = http(
        server.admin(),
        "GET",
        "/api/v1/chargepoints/CP-LATER",
        None,
        None,
    )
    .json();
    assert_eq!(view["client_certificate"]["renewal_asked"], false, "{view}");
    let metrics = http(server.admin(), "GET", "/metrics", None, None).body;
    assert!(
        metrics.contains("\nocpp_gateway_client_certificates_expiring 2\n"),
        "{metrics}"
    );
    pki.cleanup();
}
