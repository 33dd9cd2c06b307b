//! Commands go out in the version the station speaks: the operator API takes an action of
//! either version, and the station's processor makes the call one of its version - 2.0.1's
//! Reset with 2.0.1's payload reaches a 2.0.1 station and its answer is checked against 2.0.1's
//! schema; a 1.6 action 2.0.1 does not have (RemoteStartTransaction), or a 1.6 payload where
//! 2.0.1's differs, is 400 (`invalid`, the reason named) and never sent; and the same holds the
//! other way for a 1.6 charge point. A SetVariables of BasicAuthPassword is not sent where the
//! new password could not be stored.

mod common;

use common::*;
use serde_json::{Value, json};
use tungstenite::Message;

fn post(server: &TestServer, cp: &str, body: Value) -> HttpReply {
    let body = body.to_string();
    let path = format!("/api/v1/chargepoints/{cp}/calls");
    http(server.admin(), "POST", &path, None, Some(&body))
}

/// The station answers the next CALL it receives with `answer`; returns (action, payload).
fn answer_next(client: &mut Client, answer: Value) -> (String, Value) {
    let frame = next_json(client);
    assert_eq!(frame[0], 2, "expected a CALL, got {frame}");
    let reply = json!([3, frame[1], answer]).to_string();
    client.send(Message::text(reply)).expect("send");
    (
        frame[2].as_str().unwrap_or_default().to_owned(),
        frame[3].clone(),
    )
}

#[test]
fn a_command_goes_out_in_the_stations_version_or_not_at_all() {
    let server = TestServer::start(test_config());
    let mut station = connect_v201(&server, "CS-CMD");
    boot_v201(&mut station);
    let mut old = connect(&server, "CP-CMD");
    boot(&mut old);

    // 2.0.1's Reset reaches the 2.0.1 station, its answer checked against 2.0.1's schema.
    let reply = post_async(
        server.admin(),
        "CS-CMD",
        json!({"action": "Reset", "payload": {"type": "OnIdle", "evseId": 1}}),
    );
    let (action, payload) = answer_next(&mut station, json!({"status": "Scheduled"}));
    assert_eq!(
        (action.as_str(), &payload["type"]),
        ("Reset", &json!("OnIdle"))
    );
    let reply = reply.recv_timeout(WATCHDOG).expect("the API's reply");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["payload"], json!({"status": "Scheduled"}));

    // A 2.0.1-only action, answered outside its schema: 502, the station's answer refused.
    let reply = post_async(
        server.admin(),
        "CS-CMD",
        json!({"action": "GetVariables",
        "payload": {"getVariableData": [{"component": {"name": "OCPPCommCtrlr"},
                                         "variable": {"name": "HeartbeatInterval"}}]}}),
    );
    answer_next(&mut station, json!({"getVariableResult": "none"}));
    let reply = reply.recv_timeout(WATCHDOG).expect("the API's reply");
    assert_eq!(
        (reply.status, reply.json()["outcome"].clone()),
        (502, json!("invalid_result"))
    );

    // Not sent at all: a 1.6 action 2.0.1 lacks, and 1.6's Reset payload (2.0.1's differs).
    for (body, code) in [
        (
            json!({"action": "RemoteStartTransaction", "payload": {"idTag": "T"}}),
            "NotSupported",
        ),
        (
            json!({"action": "Reset", "payload": {"type": "Soft"}}),
            "PropertyConstraintViolation",
        ),
    ] {
        let reply = post(&server, "CS-CMD", body.clone());
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        let answer = reply.json();
        assert_eq!(
            (&answer["outcome"], &answer["code"]),
            (&json!("invalid"), &json!(code)),
            "{answer}"
        );
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|e| e.contains("2.0.1")),
            "{answer}"
        );
    }
    // A new BasicAuthPassword is not sent where it could not be stored (no credentials file
    // here): the station would take it and be locked out (tests/ocpp201_password_rotation.rs).
    let reply = post(
        &server,
        "CS-CMD",
        json!({"action": "SetVariables", "payload": {
        "setVariableData": [{"component": {"name": "SecurityCtrlr"},
                             "variable": {"name": "BasicAuthPassword"},
                             "attributeValue": "a-new-password-0123456789"}]}}),
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        reply.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("credentials")),
        "{}",
        reply.body
    );
    // The other way: a 2.0.1-only action to the 1.6 charge point.
    let reply = post(
        &server,
        "CP-CMD",
        json!({"action": "RequestStartTransaction",
        "payload": {"idToken": {"idToken": "T", "type": "Central"}, "remoteStartId": 1}}),
    );
    assert_eq!(
        (reply.status, reply.json()["code"].clone()),
        (400, json!("NotSupported")),
        "{}",
        reply.body
    );

    // Nothing else reached either: each one's next message is the answer to its own Heartbeat.
    let beat = call_v201(&mut station, "hb", "Heartbeat", json!({}));
    assert_eq!(beat[1], "hb", "{beat}");
    let beat = call(&mut old, "hb", "Heartbeat", json!({}));
    assert_eq!(beat[1], "hb", "{beat}");
    let stats = server.stats();
    assert_eq!(stats.calls_sent, 2);
    let metrics = http(server.admin(), "GET", "/metrics", None, None).body;
    assert!(
        metrics.contains("ocpp_gateway_v201_calls_sent_total{action=\"Reset\"} 1"),
        "{metrics}"
    );
}
