//! Calls of the central system to a charge point through the internal API (`Server::call`):
//! each yields exactly one outcome - the validated CALLRESULT, the CALLERROR, a timeout, not
//! connected, or rejected when too many wait - with one call in flight per charge point, the
//! rest sent in order, and the charge point's own CALLs crossing ours.

mod common;

use std::time::Duration;

use common::*;
use ocpp::rpc::CallErrorCode;
use ocpp::v16::Action;
use ocpp_gateway::call::CallOutcome;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tungstenite::Message;

fn payload(value: Value) -> Box<RawValue> {
    RawValue::from_string(value.to_string()).unwrap()
}

fn remote_start() -> Box<RawValue> {
    payload(json!({"idTag": "TAG1"}))
}

/// Reads the gateway's next CALL: (unique id, action, payload).
fn next_call(client: &mut Client) -> (String, String, Value) {
    let frame = next_json(client);
    assert_eq!(frame[0], 2, "expected a CALL, got {frame}");
    let id = frame[1].as_str().expect("UniqueId").to_owned();
    assert!(!id.is_empty() && id.chars().count() <= 36, "{id}");
    let action = frame[2].as_str().unwrap().to_owned();
    assert_valid(&action, &frame[3]); // what the gateway emits is valid OCPP
    (id, action, frame[3].clone())
}

fn answer(client: &mut Client, reply: Value) {
    client.send(Message::text(reply.to_string())).unwrap();
}

fn booted(server: &TestServer, id: &str) -> Client {
    let mut client = connect(server, id);
    boot(&mut client);
    client
}

#[test]
fn call_result_is_validated_and_returned() {
    let server = TestServer::start(test_config());
    let mut cp = booted(&server, "CP-answers");
    let pending = server
        .call("CP-answers", Action::RemoteStartTransaction, remote_start())
        .unwrap();
    let (id, action, sent) = next_call(&mut cp);
    assert_eq!(action, "RemoteStartTransaction");
    assert_eq!(sent, json!({"idTag": "TAG1"}));
    answer(&mut cp, json!([3, id, {"status": "Accepted"}]));
    match pending.wait() {
        CallOutcome::Result(result) => assert_eq!(result.get(), r#"{"status":"Accepted"}"#),
        other => panic!("{other:?}"),
    }

    // A result that is not what the action returns is reported, not passed on as valid.
    let pending = server
        .call("CP-answers", Action::RemoteStartTransaction, remote_start())
        .unwrap();
    let (id, _, _) = next_call(&mut cp);
    answer(&mut cp, json!([3, id, {"status": "Maybe"}]));
    match pending.wait() {
        CallOutcome::InvalidResult(invalid) => {
            assert_eq!(invalid.code, CallErrorCode::PropertyConstraintViolation)
        }
        other => panic!("{other:?}"),
    }
    let stats = server.stats();
    assert_eq!(
        (stats.calls_sent, stats.call_results, stats.invalid_results),
        (2, 1, 1)
    );
}

#[test]
fn call_error_is_returned() {
    let server = TestServer::start(test_config());
    let mut cp = booted(&server, "CP-refuses");
    let pending = server
        .call(
            "CP-refuses",
            Action::Reset,
            payload(json!({"type": "Hard"})),
        )
        .unwrap();
    let (id, action, _) = next_call(&mut cp);
    assert_eq!(action, "Reset");
    answer(
        &mut cp,
        json!([4, id, "NotSupported", "no resets here", {}]),
    );
    match pending.wait() {
        CallOutcome::Error {
            code, description, ..
        } => {
            assert_eq!(
                (code.as_str(), description.as_str()),
                ("NotSupported", "no resets here")
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn silence_times_out_and_a_late_answer_is_dropped() {
    let mut config = test_config();
    config.ocpp.message_timeout = Duration::from_millis(200);
    let server = TestServer::start(config);
    let mut cp = booted(&server, "CP-silent");
    let pending = server
        .call("CP-silent", Action::ClearCache, payload(json!({})))
        .unwrap();
    let (id, _, _) = next_call(&mut cp);
    assert_eq!(pending.wait(), CallOutcome::Timeout);
    answer(&mut cp, json!([3, id, {"status": "Accepted"}]));
    server.wait_for("the late answer to be counted", |s| {
        s.unexpected_responses == 1
    });
    // The connection is fine and the next call goes out.
    let pending = server
        .call("CP-silent", Action::ClearCache, payload(json!({})))
        .unwrap();
    let (id, _, _) = next_call(&mut cp);
    answer(&mut cp, json!([3, id, {"status": "Rejected"}]));
    assert!(matches!(pending.wait(), CallOutcome::Result(_)));
    assert_eq!(server.stats().call_timeouts, 1);
}

#[test]
fn unknown_charge_point_is_not_connected() {
    let server = TestServer::start(test_config());
    let pending = server
        .call("CP-nowhere", Action::ClearCache, payload(json!({})))
        .unwrap();
    assert_eq!(pending.wait(), CallOutcome::NotConnected);
}

#[test]
fn invalid_payload_or_direction_is_refused_before_sending() {
    let server = TestServer::start(test_config());
    let _cp = booted(&server, "CP-x");
    let err = server
        .call("CP-x", Action::Reset, payload(json!({"type": "Sideways"})))
        .unwrap_err();
    assert_eq!(err.code, CallErrorCode::PropertyConstraintViolation);
    let err = server
        .call("CP-x", Action::Heartbeat, payload(json!({})))
        .unwrap_err();
    assert_eq!(err.code, CallErrorCode::NotSupported);
    assert_eq!(server.stats().calls_sent, 0);
}

#[test]
fn calls_wait_their_turn_and_the_queue_is_bounded() {
    let mut config = test_config();
    config.ocpp.max_queued_calls = 2;
    let server = TestServer::start(config);
    let mut cp = booted(&server, "CP-busy");
    let first = server
        .call("CP-busy", Action::ClearCache, payload(json!({})))
        .unwrap();
    let (first_id, first_action, _) = next_call(&mut cp);
    assert_eq!(first_action, "ClearCache");
    let second = server
        .call("CP-busy", Action::Reset, payload(json!({"type": "Soft"})))
        .unwrap();
    let third = server.call(
        "CP-busy",
        Action::UnlockConnector,
        payload(json!({"connectorId": 1})),
    );
    let third = third.unwrap();
    let fourth = server
        .call("CP-busy", Action::ClearCache, payload(json!({})))
        .unwrap();
    assert_eq!(fourth.wait(), CallOutcome::Rejected);

    // The charge point's own CALL crosses ours and is answered while ours waits.
    let reply = call(&mut cp, "cp-1", "Heartbeat", json!({}));
    assert_eq!(reply[1], "cp-1");

    // Nothing else went out while the first was unanswered; then they follow in order.
    assert!(second.wait_timeout(Duration::from_millis(50)).is_none());
    answer(&mut cp, json!([3, first_id, {"status": "Accepted"}]));
    assert!(matches!(first.wait(), CallOutcome::Result(_)));
    let (second_id, second_action, _) = next_call(&mut cp);
    assert_eq!(second_action, "Reset");
    answer(&mut cp, json!([3, second_id, {"status": "Accepted"}]));
    assert!(matches!(second.wait(), CallOutcome::Result(_)));
    let (third_id, third_action, _) = next_call(&mut cp);
    assert_eq!(third_action, "UnlockConnector");
    answer(&mut cp, json!([3, third_id, {"status": "Unlocked"}]));
    assert!(matches!(third.wait(), CallOutcome::Result(_)));
    assert_eq!(server.stats().calls_rejected, 1);
}

#[test]
fn disconnect_resolves_everything_pending() {
    let server = TestServer::start(test_config());
    let mut cp = booted(&server, "CP-leaves");
    let first = server
        .call("CP-leaves", Action::ClearCache, payload(json!({})))
        .unwrap();
    let _ = next_call(&mut cp);
    let second = server
        .call("CP-leaves", Action::ClearCache, payload(json!({})))
        .unwrap();
    // Make sure the second is queued at the loop before the charge point goes.
    let third = server
        .call("CP-leaves", Action::ClearCache, payload(json!({})))
        .unwrap();
    drop(cp);
    assert_eq!(first.wait(), CallOutcome::NotConnected);
    assert_eq!(second.wait(), CallOutcome::NotConnected);
    assert_eq!(third.wait(), CallOutcome::NotConnected);
}
