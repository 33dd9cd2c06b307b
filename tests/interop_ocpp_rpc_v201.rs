//! Interop with npm `ocpp-rpc` (2.x) as an OCPP 2.0.1 station in strict mode: the library checks
//! every request and response against the official 2.0.1 schemas both ways (and would answer
//! a CALL of ours that breaks one with a CALLERROR). A session - boot, heartbeat, status,
//! authorize, a transaction Started/Updated/Ended - then a Reset sent through the operator API,
//! answered by the station.

mod common;

use std::process::Command;

use common::*;
use serde_json::{Value, json};

#[test]
fn ocpp_rpc_in_strict_mode_runs_a_201_session_and_answers_a_reset() {
    let Some(modules) = ocpp_rpc_modules() else {
        return;
    };
    let server = TestServer::start(test_config());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/ocpp_rpc_v201.js"
    );
    let url = format!("ws://{}/ocpp", server.addr);
    let mut command = Command::new("node");
    command
        .arg(script)
        .args([&url, "RPC-CS-201"])
        .env("NODE_PATH", &modules);
    let station = Driven::spawn(command);
    let lines = &station.lines;
    let next = |expected: &str| -> Value {
        let line = lines
            .recv_timeout(WATCHDOG)
            .unwrap_or_else(|_| panic!("no {expected} from the ocpp-rpc station"));
        assert_eq!(line["event"], expected, "{line}");
        line
    };
    assert_eq!(next("BootNotification")["status"], "Accepted");
    assert!(next("Heartbeat")["currentTime"].as_str().is_some());
    next("StatusNotification");
    assert_eq!(next("Authorize")["status"], "Accepted");
    assert_eq!(
        next("TransactionEvent")["idTokenInfo"]["status"],
        "Accepted"
    );
    next("TransactionEvent");
    next("TransactionEvent");
    next("ready");
    let body = json!({"action": "Reset", "payload": {"type": "Immediate"}}).to_string();
    let reply = http(
        server.admin(),
        "POST",
        "/api/v1/chargepoints/RPC-CS-201/calls",
        None,
        Some(&body),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["payload"], json!({"status": "Accepted"}));
    assert_eq!(next("Reset")["type"], "Immediate");
    next("done");
    station.finish(WATCHDOG);
    let stats = server.stats();
    assert_eq!(
        stats.call_errors_sent, 0,
        "the gateway refused one of the library's CALLs"
    );
    assert_eq!(
        (stats.handshakes_v201, stats.calls_sent, stats.call_results),
        (1, 1, 1)
    );
}
