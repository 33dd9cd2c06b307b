//! The event journal: every message of a scripted session in order, size-based rotation, and
//! `ack_after_write` (a Start/StopTransaction is answered only once its line is in the file; with
//! a failing disk it is answered with CALLERROR InternalError, so the charge point keeps it, while
//! the gateway keeps serving and `/health` says so).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use ocpp::v16::Action;
use ocpp_gateway::call::CallOutcome;
use ocpp_gateway::config::{Fsync, Sinks};
use ocpp_gateway::journal::rotated_name;
use serde_json::{Value, json};
use tungstenite::Message;

fn journal_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ocpp-journal-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn journal_config(path: &Path) -> ocpp_gateway::Config {
    let mut config = test_config();
    config.events.sinks = Sinks::JOURNAL;
    config.events.path = path.to_owned();
    config.server.node_id = "node-test".into();
    config
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn start_tx(client: &mut Client) -> i64 {
    let reply = call(
        client,
        "start-1",
        "StartTransaction",
        json!({"connectorId": 1, "idTag": "TAG1", "meterStart": 0,
               "timestamp": "2026-11-24T10:00:00Z"}),
    );
    reply[2]["transactionId"]
        .as_i64()
        .expect("a transaction id")
}

fn stop_tx(transaction: i64) -> Value {
    json!({"transactionId": transaction, "meterStop": 1500, "timestamp": "2026-11-24T11:00:00Z",
           "transactionData": [{"timestamp": "2026-11-24T11:00:00Z",
                                "sampledValue": [{"value": "1500"}]}]})
}

#[test]
fn a_scripted_session_is_journaled_in_order() {
    let dir = journal_dir("session");
    let path = dir.join("events.jsonl");
    let mut server = TestServer::start(journal_config(&path));
    let mut cp = connect(&server, "CP-J");
    boot(&mut cp);
    let status = json!({"connectorId": 1, "errorCode": "NoError", "status": "Preparing"});
    assert_eq!(call(&mut cp, "s-1", "StatusNotification", status)[0], 3);
    assert_eq!(
        call(&mut cp, "a-1", "Authorize", json!({"idTag": "TAG1"}))[0],
        3
    );
    let transaction = start_tx(&mut cp);
    let meter = json!({"connectorId": 1, "transactionId": transaction,
                       "meterValue": [{"timestamp": "2026-11-24T10:30:00Z",
                                       "sampledValue": [{"value": "750"}]}]});
    assert_eq!(call(&mut cp, "m-1", "MeterValues", meter)[0], 3);
    assert_eq!(
        call(&mut cp, "stop-1", "StopTransaction", stop_tx(transaction))[0],
        3
    );
    assert_eq!(call(&mut cp, "hb-1", "Heartbeat", json!({}))[0], 3);
    // A call of ours, answered.
    let payload = serde_json::value::RawValue::from_string(r#"{"type":"Soft"}"#.into()).unwrap();
    let pending = server.call("CP-J", Action::Reset, payload).unwrap();
    let frame = next_json(&mut cp);
    assert_eq!(frame[2], "Reset");
    let our_id = frame[1].as_str().unwrap().to_owned();
    cp.send(Message::text(
        json!([3, our_id, {"status": "Accepted"}]).to_string(),
    ))
    .unwrap();
    assert!(matches!(pending.wait(), CallOutcome::Result(_)));
    cp.close(None).unwrap();
    let _ = expect_close(&mut cp);
    drop(cp);
    server.wait_for("disconnected", |s| s.connections == 0);
    server.stop(); // joins the journal thread: everything queued is written

    let lines = lines(&path);
    let seen: Vec<(String, String, String)> = lines
        .iter()
        .map(|l| {
            assert_eq!(l["cp"], "CP-J", "{l}");
            assert_eq!(l["node"], "node-test", "{l}");
            assert!(l["ts"].as_str().unwrap().ends_with('Z'), "{l}");
            let text = |k: &str| l[k].as_str().unwrap_or("").to_owned();
            (text("event"), text("dir"), text("action"))
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("connected", "", ""),
        ("call", "in", "BootNotification"),
        ("result", "out", "BootNotification"),
        ("call", "in", "StatusNotification"),
        ("result", "out", "StatusNotification"),
        ("call", "in", "Authorize"),
        ("result", "out", "Authorize"),
        ("call", "in", "StartTransaction"),
        ("result", "out", "StartTransaction"),
        ("call", "in", "MeterValues"),
        ("result", "out", "MeterValues"),
        ("call", "in", "StopTransaction"),
        ("result", "out", "StopTransaction"),
        ("call", "in", "Heartbeat"),
        ("result", "out", "Heartbeat"),
        ("call", "out", "Reset"),
        ("result", "in", "Reset"),
        ("outcome", "", "Reset"),
        ("disconnected", "", ""),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(seen, expected, "{lines:#?}");
    assert_eq!(
        lines[0]["peer"].as_str().unwrap().split(':').next(),
        Some("127.0.0.1")
    );
    assert_eq!(lines[1]["id"], "boot-1");
    assert_eq!(lines[1]["payload"]["chargePointVendor"], "Acme");
    assert_eq!(lines[8]["payload"]["transactionId"], transaction);
    assert_eq!(lines[11]["payload"]["meterStop"], 1500);
    assert_eq!(lines[15]["id"], our_id);
    assert_eq!(lines[16]["payload"]["status"], "Accepted");
    assert_eq!(lines[17]["outcome"], "result");
    assert_eq!(lines[18]["reason"], "peer_closed");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_journal_rotates_at_the_configured_size() {
    let dir = journal_dir("rotate");
    let path = dir.join("events.jsonl");
    let mut config = journal_config(&path);
    config.events.max_file_bytes = 4096;
    config.events.max_files = 3;
    // max_files alone decides here (the retention of recent files is tested in journal_flood).
    config.events.min_retention = std::time::Duration::ZERO;
    config.events.fsync = Fsync::Never;
    let mut server = TestServer::start(config);
    let mut cp = connect(&server, "CP-R");
    boot(&mut cp);
    for n in 0..100 {
        assert_eq!(
            call(&mut cp, &format!("hb-{n:03}"), "Heartbeat", json!({}))[0],
            3
        );
    }
    let rotations = server
        .wait_for("rotations", |s| s.journal_rotations >= 3)
        .journal_rotations;
    drop(cp);
    server.stop();

    let files = [rotated_name(&path, 2), rotated_name(&path, 1), path.clone()];
    assert!(
        !rotated_name(&path, 3).exists(),
        "more than max_files files"
    );
    let mut ids = Vec::new();
    for file in &files {
        let size = std::fs::metadata(file).unwrap().len();
        assert!(size <= 4096, "{} is {size} bytes", file.display());
        ids.extend(
            lines(file)
                .into_iter()
                .filter(|l| l["event"] == "call")
                .map(|l| l["id"].as_str().unwrap().to_owned()),
        );
    }
    assert!(rotations >= 3);
    // The three files hold the newest lines, oldest first, without gaps.
    assert_eq!(ids.last().map(String::as_str), Some("hb-099"));
    let numbers: Vec<u32> = ids.iter().map(|id| id[3..].parse().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stop_transaction_is_answered_only_once_its_line_is_written() {
    let dir = journal_dir("ack");
    let path = dir.join("events.jsonl");
    let mut config = journal_config(&path);
    config.events.ack_after_write = true;
    config.events.fsync = Fsync::Always;
    let server = TestServer::start(config);
    let mut cp = connect(&server, "CP-ACK");
    boot(&mut cp);
    let transaction = start_tx(&mut cp);
    for n in 0..20 {
        let id = format!("stop-{n}");
        let reply = call(&mut cp, &id, "StopTransaction", stop_tx(transaction));
        assert_eq!(reply[0], 3, "{reply}");
        // The answer is here, so its line must already be in the file.
        let written = lines(&path)
            .iter()
            .any(|l| l["event"] == "result" && l["id"] == id.as_str());
        assert!(written, "{id} answered before its journal line was written");
    }
    assert!(server.stats().journal_syncs > 0);
    drop(cp);
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failing_disk_is_counted_reported_and_billing_answers_are_refused() {
    // Every write to /dev/full fails with ENOSPC.
    let mut config = journal_config(Path::new("/dev/full"));
    config.events.ack_after_write = true;
    let server = TestServer::start(config);
    let mut cp = connect(&server, "CP-FULL");
    boot(&mut cp); // answered: only billing answers wait for the journal
    let start = json!({"connectorId": 1, "idTag": "TAG1", "meterStart": 0,
                       "timestamp": "2026-11-24T10:00:00Z"});
    let reply = call(&mut cp, "start-1", "StartTransaction", start);
    assert_eq!(
        (&reply[0], &reply[2]),
        (&json!(4), &json!("InternalError")),
        "{reply}"
    );
    let reply = call(&mut cp, "stop-1", "StopTransaction", stop_tx(7));
    assert_eq!(reply[0], 4, "{reply}");
    assert_eq!(reply[2], "InternalError");
    assert_eq!(call(&mut cp, "hb-1", "Heartbeat", json!({}))[0], 3);
    let stats = server.wait_for("errors counted", |s| s.journal_errors > 0);
    assert!(stats.journal_lines_lost > 0);
    let health = http(server.admin(), "GET", "/health", None, None);
    assert_eq!(health.status, 200, "still serving: {}", health.body);
    let health = health.json();
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["journal"]["status"], "failing");
    assert!(
        health["journal"]["last_error"]
            .as_str()
            .unwrap()
            .contains("space"),
        "{health}"
    );
    let metrics = http(server.admin(), "GET", "/metrics", None, None).body;
    assert!(
        metrics.contains("ocpp_gateway_journal_failing 1\n"),
        "{metrics}"
    );
}

#[test]
fn a_takeover_ends_the_old_connection_before_the_new_one_starts() {
    let dir = journal_dir("takeover");
    let path = dir.join("events.jsonl");
    let mut server = TestServer::start(journal_config(&path));
    let mut old = connect(&server, "CP-T");
    boot(&mut old);
    let mut new = connect(&server, "CP-T");
    let frame = expect_close(&mut old).expect("the old connection is closed");
    assert_eq!(u16::from(frame.code), 1000);
    drop(old);
    assert_eq!(call(&mut new, "hb-1", "Heartbeat", json!({}))[0], 3);
    drop(new);
    server.wait_for("both gone", |s| s.connections == 0);
    server.stop();
    let events: Vec<String> = lines(&path)
        .iter()
        .map(|l| {
            let reason = l["reason"]
                .as_str()
                .map(|r| format!(":{r}"))
                .unwrap_or_default();
            format!("{}{reason}", l["event"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        events,
        [
            "connected",
            "call",
            "result",
            "disconnected:takeover",
            "connected",
            "call",
            "result",
            "disconnected:connection_lost" // EOF without a close frame
        ],
        "{events:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
