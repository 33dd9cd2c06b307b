//! A 2.0.1 transaction's events are followed by their `seqNo`, and that survives a restart
//! (`ocpp.state_file`): a station that did not get our answer to its Ended, and sends it again
//! to the restarted gateway (without booting again), gets the answer and the Ended is kept
//! again (the restarted gateway cannot know whether the journal and the broker had it when the
//! state file did: at most one more copy, never none); an event whose `seqNo` skipped some is
//! journaled as a `seq_gap`; the API shows the open transaction (id, EVSE, token, meter start)
//! meanwhile.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use ocpp_gateway::config::Sinks;
use ocpp_gateway::types::Protocols;
use serde_json::{Value, json};

const CS: &str = "CS-RESEND";

fn config(dir: &Path) -> ocpp_gateway::Config {
    let mut config = test_config();
    config.ocpp.protocols = Protocols::BOTH;
    config.ocpp.state_file = Some(dir.join("state"));
    config.events.sinks = Sinks::JOURNAL;
    config.events.path = dir.join("events.jsonl");
    config.events.ack_after_write = true;
    config
}

fn event(kind: &str, seq_no: u64) -> Value {
    json!({"eventType": kind, "timestamp": "2026-12-06T10:00:00Z", "seqNo": seq_no,
           "triggerReason": "Authorized", "transactionInfo": {"transactionId": "TX-RS-1"},
           "evse": {"id": 2, "connectorId": 1},
           "idToken": {"idToken": "TAG-RS", "type": "ISO14443"},
           "meterValue": [{"timestamp": "2026-12-06T10:00:00Z",
                           "sampledValue": [{"value": 700}]}]})
}

fn journal(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .expect("the journal")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn a_resent_ended_after_a_restart_is_answered_and_kept_again() {
    let dir: PathBuf = std::env::temp_dir().join(format!("ocpp-201-resend-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch");

    let mut first = TestServer::start(config(&dir));
    let mut station = connect_v201(&first, CS);
    boot_v201(&mut station);
    assert_eq!(
        call_v201(&mut station, "e0", "TransactionEvent", event("Started", 0))[0],
        3
    );
    // seqNo 1 never arrives.
    assert_eq!(
        call_v201(&mut station, "e2", "TransactionEvent", event("Updated", 2))[0],
        3
    );
    let path = format!("/api/v1/chargepoints/{CS}");
    let view = http(first.admin(), "GET", &path, None, None).json();
    assert_eq!(
        view["openTransactions201"],
        json!([{"id": "TX-RS-1", "evseId": 2, "idToken": "TAG-RS", "meterStartWh": 700.0,
                "nextSeq": 3, "missingSeqNos": [1]}]),
        "{view}"
    );
    assert_eq!(
        call_v201(&mut station, "e3", "TransactionEvent", event("Ended", 3))[0],
        3
    );
    drop(station);
    first.stop();

    // The answer to the Ended was lost: the station sends it again to the restarted gateway.
    let second = TestServer::start(config(&dir));
    let mut station = connect_v201(&second, CS);
    let again = call_v201(
        &mut station,
        "e3-again",
        "TransactionEvent",
        event("Ended", 3),
    );
    assert_eq!(again[0], 3, "answered, without a new boot: {again}");
    let stats = second.wait_for("the resend counted", |s| s.transaction_events_resent == 1);
    assert_eq!(stats.call_errors_sent, 0);
    drop(station);
    drop(second);

    let lines = journal(&dir);
    let ended = lines
        .iter()
        .filter(|l| l["event"] == "call" && l["action"] == "TransactionEvent")
        .filter(|l| l["payload"]["eventType"] == "Ended")
        .count();
    assert_eq!(
        ended, 2,
        "the Ended, and its resend after the restart, kept again"
    );
    let gap = lines
        .iter()
        .find(|l| l["event"] == "seq_gap")
        .expect("the gap is journaled");
    assert_eq!(
        (&gap["transactionId"], &gap["expected"], &gap["seqNo"]),
        (&json!("TX-RS-1"), &json!(1), &json!(2))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
