//! Boot policies: before a charge point is Accepted its other CALLs get SecurityError (errata
//! 3.8); a charge point that reconnects without booting again keeps its registration; an
//! allow-list of identities rejects the others at boot, or at the handshake with 404.

mod common;

use common::*;
use ocpp::v16::RegistrationStatus;
use serde_json::json;

fn code(reply: &serde_json::Value) -> &str {
    assert_eq!(reply[0], 4, "{reply}");
    reply[2].as_str().unwrap()
}

#[test]
fn calls_before_acceptance_get_security_error() {
    let mut config = test_config();
    config.ocpp.boot_status = RegistrationStatus::Pending;
    let server = TestServer::start(config);
    let mut client = connect(&server, "CP-pending");
    assert_eq!(
        code(&call(&mut client, "h1", "Heartbeat", json!({}))),
        "SecurityError"
    );
    let boot = call(
        &mut client,
        "b1",
        "BootNotification",
        json!({"chargePointVendor": "V", "chargePointModel": "M"}),
    );
    assert_eq!(boot[2]["status"], "Pending");
    let reply = call(&mut client, "a1", "Authorize", json!({"idTag": "T"}));
    assert_eq!(code(&reply), "SecurityError");
}

#[test]
fn a_reconnect_without_boot_keeps_its_registration() {
    let server = TestServer::start(test_config());
    let mut first = connect(&server, "CP-back");
    boot(&mut first);
    first.close(None).unwrap();
    let _ = expect_close(&mut first);
    drop(first);
    server.wait_for("the disconnect", |s| s.connections == 0);

    let mut again = connect(&server, "CP-back");
    let reply = call(&mut again, "h1", "Heartbeat", json!({}));
    assert_eq!(reply[0], 3, "remembered as accepted: {reply}");

    // One that never booted is not.
    let mut stranger = connect(&server, "CP-never-booted");
    assert_eq!(
        code(&call(&mut stranger, "h1", "Heartbeat", json!({}))),
        "SecurityError"
    );
}

#[test]
fn identities_outside_the_allow_list() {
    let dir = std::env::temp_dir().join(format!("ocpp-allow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("allowed.txt");
    std::fs::write(&list, "# the fleet\nCP-known\n").unwrap();

    let mut config = test_config();
    config.ocpp.allowed_charge_points = Some(list.clone());
    let server = TestServer::start(config);
    let mut known = connect(&server, "CP-known");
    boot(&mut known);
    let mut unknown = connect(&server, "CP-unknown");
    let reply = call(
        &mut unknown,
        "b1",
        "BootNotification",
        json!({"chargePointVendor": "V", "chargePointModel": "M"}),
    );
    assert_eq!(reply[2]["status"], "Rejected");
    drop((known, unknown)); // before the server, which would otherwise wait for their close
    drop(server);

    let mut config = test_config();
    config.ocpp.allowed_charge_points = Some(list);
    config.ocpp.refuse_unknown_at_handshake = true;
    let server = TestServer::start(config);
    let mut known = connect(&server, "CP-known");
    boot(&mut known);
    match try_connect(server.addr, &server.url("CP-unknown"), "ocpp1.6") {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 404),
        other => panic!("expected HTTP 404, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(dir);
}
