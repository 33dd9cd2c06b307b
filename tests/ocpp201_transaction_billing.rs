//! OCPP 2.0.1's TransactionEvent is billing: with `events.ack_after_write` a Started, Updated or
//! Ended is answered only once its line is in the journal (as 1.6's Start/StopTransaction), and
//! refused with a CALLERROR (the station keeps and resends it) when the journal cannot write.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use ocpp_gateway::config::{Fsync, Sinks};
use ocpp_gateway::types::Protocols;
use serde_json::{Value, json};

fn config(path: &Path) -> ocpp_gateway::Config {
    let mut config = test_config();
    config.ocpp.protocols = Protocols::BOTH;
    config.events.sinks = Sinks::JOURNAL;
    config.events.path = path.to_owned();
    config.events.ack_after_write = true;
    config.events.fsync = Fsync::Always;
    config
}

fn event(kind: &str, seq_no: u64) -> Value {
    json!({"eventType": kind, "timestamp": "2026-12-06T10:00:00Z", "seqNo": seq_no,
           "triggerReason": if kind == "Started" { "Authorized" } else { "MeterValuePeriodic" },
           "transactionInfo": {"transactionId": "TX-BILL-1"},
           "evse": {"id": 1, "connectorId": 1}})
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn a_transaction_event_is_answered_only_once_its_line_is_written() {
    let dir: PathBuf = std::env::temp_dir().join(format!("ocpp-201-bill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("events.jsonl");
    let server = TestServer::start(config(&path));
    let mut station = connect_v201(&server, "CS-BILL");
    boot_v201(&mut station);
    for (n, kind) in ["Started", "Updated", "Updated", "Ended"]
        .into_iter()
        .enumerate()
    {
        let id = format!("tx-{n}");
        let reply = call_v201(&mut station, &id, "TransactionEvent", event(kind, n as u64));
        assert_eq!(reply[0], 3, "{reply}");
        let written = lines(&path)
            .iter()
            .any(|l| l["event"] == "result" && l["id"] == id.as_str());
        assert!(written, "{id} answered before its journal line was written");
    }
    drop(station);
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_transaction_event_the_journal_cannot_keep_is_refused() {
    let server = TestServer::start(config(Path::new("/dev/full")));
    let mut station = connect_v201(&server, "CS-FULL");
    boot_v201(&mut station); // answered: only billing answers wait for the journal
    let reply = call_v201(
        &mut station,
        "tx-0",
        "TransactionEvent",
        event("Started", 0),
    );
    assert_eq!(
        (&reply[0], &reply[2]),
        (&json!(4), &json!("InternalError")),
        "{reply}"
    );
    let beat = call_v201(&mut station, "hb-1", "Heartbeat", json!({}));
    assert_eq!(beat[0], 3, "{beat}");
}
