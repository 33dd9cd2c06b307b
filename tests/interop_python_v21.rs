//! Interop with the Python `ocpp` package's OCPP 2.1 ChargePoint (2.1.0, over `websockets`):
//! offered 1.6, 2.0.1 and 2.1, the gateway's default (newest first) selects 2.1; a whole
//! session - BootNotification, Heartbeat, StatusNotification, Authorize, a transaction
//! (TransactionEvent Started, Updated, Ended, each answered only once journaled), then 2.1's
//! own NotifySettlement (billing too), NotifyDERAlarm, OpenPeriodicEventStream (Accepted),
//! VatNumberValidation (Rejected: not supported) - and GetVariables and 2.1's GetTariffs sent
//! through the operator API and answered. The library validates every message against the
//! official 2.1 schemas both ways; the journal shows the session as 2.1's.

mod common;

use common::*;
use ocpp_gateway::config::Sinks;
use serde_json::{Value, json};

#[test]
fn python_ocpp_v21_station_runs_a_session_with_a_transaction() {
    let dir = std::env::temp_dir().join(format!("ocpp-interop-v21-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("events.jsonl");
    let mut config = test_config();
    config.events.sinks = Sinks::JOURNAL;
    config.events.path = path.clone();
    config.events.ack_after_write = true;
    let server = TestServer::start(config);
    let url = server.url("PY-CS-21");
    let commands = [
        json!({"action": "GetVariables", "payload": {"getVariableData": [
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]}}),
        json!({"action": "GetTariffs", "payload": {"evseId": 1}}),
    ];
    let offers = [
        "--offer",
        "ocpp1.6",
        "--offer",
        "ocpp2.0.1",
        "--offer",
        "ocpp2.1",
    ];
    let args: Vec<&str> = [url.as_str(), "--edition", "2.1"]
        .into_iter()
        .chain(offers)
        .collect();
    let events = run_station(&server, "PY-CS-21", &args, &commands);

    let event = |name: &str| -> &Value {
        events
            .iter()
            .find(|e| e["event"] == name)
            .unwrap_or_else(|| panic!("no {name} in {events:?}"))
    };
    assert_eq!(event("BootNotification")["status"], "Accepted");
    assert_eq!(event("Authorize")["status"], "Accepted");
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "TransactionEvent")
            .count(),
        3
    );
    event("NotifySettlement");
    event("NotifyDERAlarm");
    assert_eq!(event("OpenPeriodicEventStream")["status"], "Accepted");
    assert_eq!(event("VatNumberValidation")["status"], "Rejected");
    assert_eq!(event("VatNumberValidation")["vatNumber"], "NL123456789B01");
    let replies: Vec<&Value> = events.iter().filter(|e| e["event"] == "api").collect();
    assert_eq!(
        replies[0]["reply"]["payload"]["getVariableResult"][0]["attributeValue"],
        "300"
    );
    assert_eq!(replies[1]["reply"]["payload"]["status"], "NoTariff");
    event("done");

    let stats = server.stats();
    assert_eq!(
        stats.call_errors_sent, 0,
        "the gateway refused one of the library's CALLs"
    );
    assert_eq!(
        (
            stats.handshakes_v21,
            stats.handshakes_v201,
            stats.handshakes_v16
        ),
        (1, 0, 0)
    );
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
    assert_eq!(connected["ocppVersion"], "2.1");
    for action in ["TransactionEvent", "NotifySettlement"] {
        let kept = lines
            .iter()
            .filter(|l| l["action"] == action && l["event"] == "result")
            .count();
        assert!(kept >= 1, "{action} and its answer are in the journal");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
