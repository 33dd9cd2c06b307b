//! Every way a 2.1 station's CALL can be wrong gets the 2.x CallError code over the wire, judged
//! by 2.1's schemas (its own messages: NotifySettlement, NotifyDERAlarm, OpenPeriodicEventStream,
//! VatNumberValidation; NotImplemented for an unknown action, a 1.6 action or its SEND sent as a
//! CALL; NotSupported for a central system's action; SecurityError before the boot; ProtocolError
//! for a broken frame; MessageTypeNotSupported for a type 2.1 does not have), the connection
//! stays open; and what 2.1 added to a 2.0.1 message (a TransactionEvent's cost details) is
//! accepted from a 2.1 station.

mod common;

use common::*;
use serde_json::{Value, json};
use tungstenite::Message;

#[test]
fn each_mistake_gets_its_21_code_and_the_station_stays() {
    let server = TestServer::start(test_config());
    let mut station = connect_v21(&server, "CS-BAD-21");

    let settlement = json!({"pspRef": "PSP-1", "status": "Settled", "settlementAmount": 12.5,
                            "settlementTime": "2026-12-06T10:00:00Z"});
    let reply = call_v21(
        &mut station,
        "early",
        "NotifySettlement",
        settlement.clone(),
    );
    assert_eq!(reply[2], "SecurityError", "before the boot: {reply}");
    let boot = json!({"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}});
    assert_eq!(
        call_v21(&mut station, "b", "BootNotification", boot)[2]["status"],
        "Accepted"
    );

    let with = |change: &dyn Fn(&mut Value)| {
        let mut payload = settlement.clone();
        change(&mut payload);
        payload
    };
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "unknown field",
            "NotifySettlement",
            with(&|p| p["tip"] = json!(1)),
            "FormatViolation",
        ),
        (
            "missing field",
            "NotifySettlement",
            with(&|p| {
                p.as_object_mut().unwrap().remove("pspRef");
            }),
            "OccurrenceConstraintViolation",
        ),
        (
            "wrong type",
            "NotifySettlement",
            with(&|p| p["settlementAmount"] = json!("12.5")),
            "TypeConstraintViolation",
        ),
        (
            "not in the enumeration",
            "NotifySettlement",
            with(&|p| p["status"] = json!("Paid")),
            "PropertyConstraintViolation",
        ),
        (
            "not a date-time",
            "NotifyDERAlarm",
            json!({"controlType": "FreqDroop", "timestamp": "yesterday"}),
            "PropertyConstraintViolation",
        ),
        (
            "below its minimum",
            "OpenPeriodicEventStream",
            json!({"constantStreamData": {"id": -1, "variableMonitoringId": 7,
                                          "params": {"interval": 10}}}),
            "PropertyConstraintViolation",
        ),
        (
            "too long",
            "VatNumberValidation",
            json!({"vatNumber": "N".repeat(21)}),
            "PropertyConstraintViolation",
        ),
        (
            "unknown action",
            "FlyToTheMoon",
            json!({}),
            "NotImplemented",
        ),
        (
            "a central system's action",
            "SetDERControl",
            json!({"isDefault": false, "controlId": "c1", "controlType": "FreqDroop"}),
            "NotSupported",
        ),
        (
            "the SEND sent as a CALL",
            "NotifyPeriodicEventStream",
            json!({"id": 1, "pending": 0, "basetime": "2026-12-06T10:00:00Z", "data": []}),
            "NotImplemented",
        ),
        (
            "a 1.6 action",
            "StartTransaction",
            json!({}),
            "NotImplemented",
        ),
    ];
    expect_call_errors(&mut station, call_v21, &cases);
    // 2.1's cost details on a TransactionEvent: accepted here (2.0.1 refuses them).
    let with_cost = json!({"eventType": "Started", "timestamp": "2026-12-06T10:00:00Z",
        "triggerReason": "Authorized", "seqNo": 0, "transactionInfo": {"transactionId": "T-21"},
        "costDetails": {"totalCost": {"currency": "EUR", "typeOfCost": "NormalCost",
                                      "total": {"exclTax": 1.0}},
                        "totalUsage": {"energy": 1000, "chargingTime": 60, "idleTime": 0}}});
    let reply = call_v21(&mut station, "tx", "TransactionEvent", with_cost);
    assert_eq!(reply[0], 3, "{reply}");
    // A frame too short to be a CALL; a message type 2.1 does not have.
    station.send(Message::text(r#"[2,"short"]"#)).expect("send");
    let reply = next_json(&mut station);
    assert_eq!(
        (&reply[1], &reply[2]),
        (&json!("short"), &json!("ProtocolError")),
        "{reply}"
    );
    station
        .send(Message::text(r#"[7,"seven","X",{}]"#))
        .expect("send");
    let reply = next_json(&mut station);
    assert_eq!(
        (&reply[0], &reply[1], &reply[2]),
        (
            &json!(4),
            &json!("seven"),
            &json!("MessageTypeNotSupported")
        ),
        "{reply}"
    );
    assert_eq!(
        call_v21(&mut station, "after", "Heartbeat", json!({}))[0],
        3
    );
}
