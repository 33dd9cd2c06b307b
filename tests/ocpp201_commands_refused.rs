//! A command is sent in the version the charge point speaks: the API's commands are OCPP 1.6
//! actions, so one addressed to a 2.0.1 station is refused with 400 (`invalid`, NotSupported,
//! the reason named) and never reaches the station, while the same command to a 1.6 charge
//! point on the same gateway is sent.

mod common;

use common::*;
use ocpp_gateway::types::Protocols;
use serde_json::json;

#[test]
fn a_16_command_to_a_201_station_is_400_and_not_sent() {
    let mut config = test_config();
    config.ocpp.protocols = Protocols::BOTH;
    let server = TestServer::start(config);
    let mut station = connect_v201(&server, "CS-CMD");
    boot_v201(&mut station);
    let body = json!({"action": "Reset", "payload": {"type": "Soft"}}).to_string();
    let reply = http(
        server.admin(),
        "POST",
        "/api/v1/chargepoints/CS-CMD/calls",
        None,
        Some(&body),
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    let answer = reply.json();
    assert_eq!(
        (&answer["outcome"], &answer["code"]),
        (&json!("invalid"), &json!("NotSupported"))
    );
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("2.0.1")),
        "{answer}"
    );
    // Nothing reached the station: its next message is the answer to its own Heartbeat.
    let beat = call_v201(&mut station, "hb-1", "Heartbeat", json!({}));
    assert_eq!((&beat[0], &beat[1]), (&json!(3), &json!("hb-1")), "{beat}");
    assert_eq!(server.stats().calls_sent, 0);
}
