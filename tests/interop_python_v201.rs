//! Interop with the Python `ocpp` package's OCPP 2.0.1 ChargePoint (2.1.0, over `websockets`):
//! a whole session against a gateway that speaks 2.0.1 beside 1.6 - BootNotification,
//! Heartbeat, StatusNotification, Authorize, a transaction (TransactionEvent Started, Updated,
//! Ended, each answered only once journaled), SecurityEventNotification, NotifyEvent, then
//! GetVariables and RequestStartTransaction sent through the operator API and answered. The
//! library validates every message against the official 2.0.1 schemas in both directions, so an
//! answer of ours that is off by one field fails here; the journal then shows the session as
//! 2.0.1's.

mod common;

use common::*;
use ocpp_gateway::config::Sinks;
use ocpp_gateway::types::Protocols;
use serde_json::{Value, json};

#[test]
fn python_ocpp_v201_station_runs_a_session_with_a_transaction() {
    let dir = std::env::temp_dir().join(format!("ocpp-interop-v201-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("events.jsonl");
    let mut config = test_config();
    config.ocpp.protocols = Protocols::BOTH;
    config.events.sinks = Sinks::JOURNAL;
    config.events.path = path.clone();
    config.events.ack_after_write = true;
    let server = TestServer::start(config);
    let url = server.url("PY-CS-201");
    let commands = [
        json!({"action": "GetVariables", "payload": {"getVariableData": [
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]}}),
        json!({"action": "RequestStartTransaction", "payload": {
            "idToken": {"idToken": "TAG-REMOTE", "type": "Central"}, "remoteStartId": 7}}),
    ];
    // The station offers 1.6 too; the gateway prefers 2.0.1 (2.1 is not offered).
    let events = run_station(
        &server,
        "PY-CS-201",
        &[&url, "--offer", "ocpp1.6", "--offer", "ocpp2.0.1"],
        &commands,
    );
    let event = |name: &str| -> &Value {
        events
            .iter()
            .find(|e| e["event"] == name)
            .unwrap_or_else(|| panic!("no {name} in {events:?}"))
    };
    assert_eq!(event("BootNotification")["status"], "Accepted");
    assert!(
        event("Heartbeat")["currentTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(event("Authorize")["status"], "Accepted");
    assert_eq!(
        event("TransactionEvent")["idTokenInfo"]["status"],
        "Accepted"
    );
    let transaction_events = events
        .iter()
        .filter(|e| e["event"] == "TransactionEvent")
        .count();
    assert_eq!(transaction_events, 3);
    event("NotifyEvent");
    let replies: Vec<&Value> = events.iter().filter(|e| e["event"] == "api").collect();
    assert_eq!(
        replies[0]["reply"]["payload"]["getVariableResult"][0]["attributeValue"],
        "300"
    );
    assert_eq!(replies[1]["reply"]["payload"]["status"], "Accepted");
    let commands: Vec<&Value> = events.iter().filter(|e| e["event"] == "command").collect();
    assert_eq!(
        (&commands[0]["variable"], &commands[1]["idToken"]),
        (&json!("HeartbeatInterval"), &json!("TAG-REMOTE"))
    );
    event("done");

    let stats = server.stats();
    assert_eq!(
        stats.call_errors_sent, 0,
        "the gateway refused one of the library's CALLs"
    );
    assert_eq!((stats.handshakes_v201, stats.handshakes_v16), (1, 0));
    drop(server);
    let lines: Vec<Value> = std::fs::read_to_string(&path)
        .expect("the journal")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let connected = lines
        .iter()
        .find(|l| l["event"] == "connected")
        .expect("connected");
    assert_eq!(connected["ocppVersion"], "2.0.1");
    let kept = lines
        .iter()
        .filter(|l| l["action"] == "TransactionEvent" && l["event"] == "result")
        .count();
    assert_eq!(
        kept, 3,
        "every TransactionEvent and its answer are in the journal"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
