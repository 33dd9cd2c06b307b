//! Every way a 2.0.1 station's CALL can be wrong gets 2.0.1's CallError code over the wire
//! (FormatViolation, OccurrenceConstraintViolation, TypeConstraintViolation,
//! PropertyConstraintViolation, NotImplemented, NotSupported, SecurityError before the boot,
//! ProtocolError for a broken frame, MessageTypeNotSupported for a message type it does not
//! have), the connection stays open, and the journal shows the code as the station saw it.

mod common;

use common::*;
use ocpp_gateway::config::Sinks;
use ocpp_gateway::types::Protocols;
use serde_json::{Value, json};
use tungstenite::Message;

#[test]
fn each_mistake_gets_its_201_code_and_the_station_stays() {
    let dir = std::env::temp_dir().join(format!("ocpp-201-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("events.jsonl");
    let mut config = test_config();
    config.ocpp.protocols = Protocols::BOTH;
    config.events.sinks = Sinks::JOURNAL;
    config.events.path = path.clone();
    let server = TestServer::start(config);
    let mut station = connect_v201(&server, "CS-BAD");

    let status = json!({"timestamp": "2026-12-06T10:00:00Z", "connectorStatus": "Available",
                        "evseId": 1, "connectorId": 1});
    let reply = call_v201(&mut station, "early", "StatusNotification", status.clone());
    assert_eq!(reply[2], "SecurityError", "before the boot: {reply}");
    boot_v201(&mut station);

    let with = |change: &dyn Fn(&mut Value)| {
        let mut payload = status.clone();
        change(&mut payload);
        payload
    };
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "unknown field",
            "StatusNotification",
            with(&|p| p["color"] = json!("red")),
            "FormatViolation",
        ),
        (
            "missing field",
            "StatusNotification",
            with(&|p| {
                p.as_object_mut().unwrap().remove("evseId");
            }),
            "OccurrenceConstraintViolation",
        ),
        (
            "wrong type",
            "StatusNotification",
            with(&|p| p["connectorId"] = json!("1")),
            "TypeConstraintViolation",
        ),
        (
            "not in the enumeration",
            "StatusNotification",
            with(&|p| p["connectorStatus"] = json!("Charging")),
            "PropertyConstraintViolation",
        ),
        (
            "not a date-time",
            "StatusNotification",
            with(&|p| p["timestamp"] = json!("yesterday")),
            "PropertyConstraintViolation",
        ),
        (
            "above its maximum",
            "NotifyEVChargingNeeds",
            json!({"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "DC",
                   "dcChargingParameters": {"evMaxCurrent": 100, "evMaxVoltage": 400,
                                            "fullSoC": 101}}}),
            "PropertyConstraintViolation",
        ),
        (
            "too long",
            "Authorize",
            json!({"idToken": {"idToken": "x".repeat(37), "type": "Central"}}),
            "PropertyConstraintViolation",
        ),
        (
            "too few elements",
            "MeterValues",
            json!({"evseId": 1, "meterValue": []}),
            "OccurrenceConstraintViolation",
        ),
        (
            "unknown action",
            "FlyToTheMoon",
            json!({}),
            "NotImplemented",
        ),
        (
            "a central system's action",
            "RequestStartTransaction",
            json!({}),
            "NotSupported",
        ),
        (
            "a 1.6 action",
            "StartTransaction",
            json!({}),
            "NotImplemented",
        ),
    ];
    expect_call_errors(&mut station, call_v201, &cases);
    // A key given twice (JSON would keep the last one; the journal keeps the text).
    let twice =
        r#"[2,"twice","Heartbeat",{"customData":{"vendorId":"a"},"customData":{"vendorId":"b"}}]"#;
    station.send(Message::text(twice)).expect("send");
    assert_eq!(next_json(&mut station)[2], "FormatViolation");
    // A frame too short to be a CALL.
    station.send(Message::text(r#"[2,"short"]"#)).expect("send");
    let reply = next_json(&mut station);
    assert_eq!(
        (&reply[1], &reply[2]),
        (&json!("short"), &json!("ProtocolError")),
        "{reply}"
    );
    // A message type 2.0.1 does not have (2.1's SEND), with a readable id.
    station
        .send(Message::text(
            r#"[6,"send-1","NotifyPeriodicEventStream",{}]"#,
        ))
        .expect("send");
    let reply = next_json(&mut station);
    assert_eq!(
        (&reply[0], &reply[1], &reply[2]),
        (
            &json!(4),
            &json!("send-1"),
            &json!("MessageTypeNotSupported")
        ),
        "{reply}"
    );
    // Still served.
    assert_eq!(
        call_v201(&mut station, "after", "Heartbeat", json!({}))[0],
        3
    );

    drop(station);
    drop(server);
    let journal = std::fs::read_to_string(&path).expect("the journal");
    let spelled: Vec<Value> = journal
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .filter(|l| l["event"] == "error" && l["id"] == "bad-0")
        .collect();
    assert_eq!(spelled.len(), 1, "{journal}");
    assert_eq!(spelled[0]["code"], "FormatViolation");
    std::fs::remove_dir_all(&dir).unwrap();
}
