//! Security profile 3 (mutual TLS): a client certificate from `security.client_ca` whose CN is
//! the identity boots; no certificate, one from another CA, and one whose CN is another
//! identity are refused (the first two in the TLS handshake, the last with 403). With
//! `security.check_serial_number`, a BootNotification whose serial number is not the
//! certificate's CN is answered Rejected and the connection closed (1008).

mod common;

use common::pki::*;
use common::*;
use ocpp_gateway::config::Config;
use ocpp_gateway::security::Profile;
use ocpp_gateway::security::certificates::CertFiles;
use serde_json::json;

fn config(pki: &Pki) -> Config {
    let (cert, key, _) = pki.server("server", false);
    let mut config = test_config();
    config.security.profile = Profile::MutualTls;
    config.security.tls_certs = vec![CertFiles { cert, key }];
    config.security.client_ca = Some(pki.path("ca.pem"));
    config
}

#[test]
fn the_certificate_must_chain_to_the_ca_and_name_the_identity() {
    let pki = Pki::new("mtls");
    let server = TestServer::start(config(&pki));

    let tls = pki.client_config(Some(pki.client("CP-7")));
    let (mut client, _) = wss_connect(server.addr, tls.clone(), "CP-7", None).expect("boots");
    boot(&mut client);

    // The same certificate for another identity: the handshake succeeds, the upgrade is 403.
    assert_eq!(
        refused_status(wss_connect(server.addr, tls, "CP-8", None)),
        403
    );
    server.wait_for("mismatch counted", |s| s.certificate_mismatches == 1);

    // No certificate at all: refused in the handshake.
    let bare = pki.client_config(None);
    assert!(wss_connect(server.addr, bare, "CP-7", None).is_err());
    // A certificate from another CA, even with the right CN.
    let stranger = Pki::new("mtls-other-ca");
    let foreign = client_config_with(&pki, Some(stranger.client("CP-7")), None);
    assert!(wss_connect(server.addr, foreign, "CP-7", None).is_err());
    server.wait_for("handshake failures counted", |s| s.tls_failures >= 2);

    // None of that touched the charge point that is connected.
    let reply = call(&mut client, "hb", "Heartbeat", json!({}));
    assert_eq!(reply[0], 3);
    stranger.cleanup();
    pki.cleanup();
}

#[test]
fn with_check_serial_number_the_boot_must_carry_the_certificate_cn() {
    let pki = Pki::new("mtls-serial");
    let mut config = config(&pki);
    config.security.check_serial_number = true;
    let server = TestServer::start(config);
    let tls = pki.client_config(Some(pki.client("SN-1001")));

    let (mut good, _) = wss_connect(server.addr, tls.clone(), "SN-1001", None).unwrap();
    let reply = call(
        &mut good,
        "b1",
        "BootNotification",
        json!({"chargePointVendor": "V", "chargePointModel": "M", "chargePointSerialNumber": "SN-1001"}),
    );
    assert_eq!(reply[2]["status"], "Accepted", "{reply}");

    let (mut bad, _) = wss_connect(server.addr, tls, "SN-1001", None).unwrap();
    // The newer connection took over; its boot names another serial number.
    expect_close(&mut good);
    let reply = call(
        &mut bad,
        "b2",
        "BootNotification",
        json!({"chargePointVendor": "V", "chargePointModel": "M", "chargePointSerialNumber": "SN-9999"}),
    );
    assert_eq!(reply[2]["status"], "Rejected", "{reply}");
    let close = expect_close(&mut bad).expect("closed after the answer");
    assert_eq!(u16::from(close.code), 1008, "{close:?}");
    server.wait_for("mismatch counted", |s| s.serial_mismatches == 1);
    pki.cleanup();
}
