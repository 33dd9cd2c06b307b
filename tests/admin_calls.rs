//! `POST /api/v1/chargepoints/{id}/calls` end to end: the operator's HTTP request becomes a CALL
//! on the charge point's WebSocket, and its answer (or silence, or absence) becomes the HTTP
//! response: 200 with the result, 200 with the CallError, 504, 404, 429, 400.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tungstenite::Message;

fn booted(server: &TestServer, id: &str) -> Client {
    let mut client = connect(server, id);
    boot(&mut client);
    client
}

fn send(client: &mut Client, frame: Value) {
    client.send(Message::text(frame.to_string())).unwrap();
}

fn reset() -> Value {
    json!({"action": "Reset", "payload": {"type": "Soft"}})
}

#[test]
fn an_answered_call_returns_200_with_the_result() {
    let server = TestServer::start(test_config());
    let mut cp = booted(&server, "CP-OK");
    let reply = post_async(
        server.admin(),
        "CP-OK",
        json!({"action": "RemoteStartTransaction", "payload": {"idTag": "TAG1", "connectorId": 1}}),
    );
    let (id, action, payload) = next_call(&mut cp);
    assert_eq!(action, "RemoteStartTransaction");
    assert_eq!(payload, json!({"idTag": "TAG1", "connectorId": 1}));
    assert_valid("RemoteStartTransaction", &payload);
    send(&mut cp, json!([3, id, {"status": "Accepted"}]));
    let reply = reply.recv_timeout(WATCHDOG).expect("HTTP reply");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json(),
        json!({"outcome": "result", "payload": {"status": "Accepted"}})
    );
}

#[test]
fn a_call_error_returns_200_with_the_error() {
    let server = TestServer::start(test_config());
    let mut cp = booted(&server, "CP-ERR");
    let reply = post_async(server.admin(), "CP-ERR", reset());
    let (id, action, _) = next_call(&mut cp);
    assert_eq!(action, "Reset");
    send(
        &mut cp,
        json!([4, id, "NotSupported", "no resets here", {"why": "firmware"}]),
    );
    let reply = reply.recv_timeout(WATCHDOG).expect("HTTP reply");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json(),
        json!({"outcome": "error", "code": "NotSupported", "description": "no resets here",
               "details": {"why": "firmware"}})
    );
}

#[test]
fn silence_is_504_and_absence_is_404() {
    let mut config = test_config();
    config.ocpp.message_timeout = Duration::from_millis(300);
    let server = TestServer::start(config);
    let mut cp = booted(&server, "CP-QUIET");
    let reply = post_async(server.admin(), "CP-QUIET", reset());
    let (_, action, _) = next_call(&mut cp); // and never answered
    assert_eq!(action, "Reset");
    let reply = reply.recv_timeout(WATCHDOG).expect("HTTP reply");
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(reply.json()["outcome"], "timeout");

    let absent = http(
        server.admin(),
        "POST",
        "/api/v1/chargepoints/CP-NOWHERE/calls",
        None,
        Some(&reset().to_string()),
    );
    assert_eq!(absent.status, 404, "{}", absent.body);
    assert_eq!(absent.json()["outcome"], "not_connected");
}

#[test]
fn invalid_payloads_and_wrong_directions_are_400_with_the_call_error_code() {
    let server = TestServer::start(test_config());
    let _cp = booted(&server, "CP-BAD");
    for (body, code) in [
        (
            json!({"action": "Reset", "payload": {"type": "Sideways"}}),
            "PropertyConstraintViolation",
        ),
        (
            json!({"action": "Reset", "payload": {}}),
            "OccurenceConstraintViolation",
        ),
        (
            json!({"action": "Heartbeat", "payload": {}}),
            "NotSupported",
        ),
        (
            json!({"action": "Teleport", "payload": {}}),
            "NotImplemented",
        ),
    ] {
        let reply = http(
            server.admin(),
            "POST",
            "/api/v1/chargepoints/CP-BAD/calls",
            None,
            Some(&body.to_string()),
        );
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        assert_eq!(reply.json()["code"], code, "{body}: {}", reply.body);
    }
}

#[test]
fn two_calls_at_once_go_one_after_the_other() {
    let server = TestServer::start(test_config());
    let mut cp = booted(&server, "CP-TWO");
    let first = post_async(server.admin(), "CP-TWO", reset());
    let (first_id, first_action, _) = next_call(&mut cp);
    assert_eq!(first_action, "Reset");
    let second = post_async(
        server.admin(),
        "CP-TWO",
        json!({"action": "ClearCache", "payload": {}}),
    );
    // A request answered after the second was written proves the admin thread took it (its
    // socket was ready first); a StatusNotification through the same processor and loop then
    // proves the loop holds it: were it sent, the CALL would arrive before the answer. (Not a
    // Heartbeat: the loop may answer that itself, without a trip to the processor.)
    assert_eq!(
        http(server.admin(), "GET", "/health", None, None).status,
        200
    );
    let status = json!({"connectorId": 1, "errorCode": "NoError", "status": "Available"});
    let answer = call(&mut cp, "sn-1", "StatusNotification", status);
    assert_eq!(
        answer[0], 3,
        "a second CALL went out while the first was in flight: {answer}"
    );
    assert_eq!(answer[1], "sn-1");
    send(&mut cp, json!([3, first_id, {"status": "Accepted"}]));
    let (second_id, second_action, _) = next_call(&mut cp);
    assert_eq!(second_action, "ClearCache");
    send(&mut cp, json!([3, second_id, {"status": "Accepted"}]));
    for reply in [first, second] {
        let reply = reply.recv_timeout(WATCHDOG).expect("HTTP reply");
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["payload"]["status"], "Accepted");
    }
}

#[test]
fn a_full_queue_is_429() {
    let mut config = test_config();
    config.ocpp.max_queued_calls = 0;
    let server = TestServer::start(config);
    let mut cp = booted(&server, "CP-FULL");
    let first = post_async(server.admin(), "CP-FULL", reset());
    let (first_id, _, _) = next_call(&mut cp);
    let second = http(
        server.admin(),
        "POST",
        "/api/v1/chargepoints/CP-FULL/calls",
        None,
        Some(&reset().to_string()),
    );
    assert_eq!(second.status, 429, "{}", second.body);
    assert_eq!(second.json()["outcome"], "rejected");
    assert!(second.header("Retry-After").is_some());
    send(&mut cp, json!([3, first_id, {"status": "Accepted"}]));
    assert_eq!(first.recv_timeout(WATCHDOG).unwrap().status, 200);
    let metrics = http(server.admin(), "GET", "/metrics", None, None).body;
    for line in [
        "ocpp_gateway_outbound_calls_total{outcome=\"result\"} 1\n",
        "ocpp_gateway_outbound_calls_total{outcome=\"rejected\"} 1\n",
        "ocpp_gateway_messages_total{direction=\"out\",action=\"Reset\"} 1\n",
        "ocpp_gateway_outbound_call_seconds_count 1\n",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
}
