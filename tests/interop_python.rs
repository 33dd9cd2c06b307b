//! Interop with the most used OCPP library: the Python `ocpp` package (2.1.0, over
//! `websockets`) runs a whole charging session against the gateway as a charge point, then
//! answers a RemoteStartTransaction and a ChangeConfiguration sent through the outbound API.
//! The library validates every message against the official schemas in both directions, so a
//! payload of ours that is off by one field fails this test.
//!
//! Python: `$OCPP_INTEROP_PYTHON` (CI's `.ci/run` creates a virtualenv and sets it), else a
//! virtualenv the tests create once under `target/interop-venv` (see `common::python`).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use common::*;
use ocpp::v16::Action;
use ocpp_gateway::call::CallOutcome;
use serde_json::Value;
use serde_json::value::RawValue;

#[test]
fn python_ocpp_charge_point_runs_a_session_and_answers_commands() {
    let server = TestServer::start(test_config());
    let url = server.url("PY-CP-1");
    run_session(&server, "PY-CP-1", &[&url]);
}

/// The same over wss with Basic auth (security profile 2): the library's client side of TLS
/// (Python's ssl module, OpenSSL) against the gateway's rustls in the loop.
#[test]
fn python_ocpp_charge_point_over_wss_with_basic_auth() {
    let pki = common::pki::Pki::new("interop-wss");
    let (cert, key, _) = pki.server("server", false);
    let credentials = pki.path("credentials");
    let secret = [
        0x5Au8, 0x00, 0xFF, 0x3A, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
    ];
    common::pki::credentials_file(&credentials, &[("PY-CP-2", &secret)]);
    let mut config = test_config();
    config.security.profile = ocpp_gateway::security::Profile::TlsBasicAuth;
    config.security.credentials = Some(credentials);
    config.security.tls_certs = vec![ocpp_gateway::security::certificates::CertFiles { cert, key }];
    let server = TestServer::start(config);
    let url = format!("wss://localhost:{}/ocpp/PY-CP-2", server.addr.port());
    let ca = pki.path("ca.pem");
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    run_session(
        &server,
        "PY-CP-2",
        &[&url, "--ca", ca.to_str().unwrap(), "--key-hex", &hex],
    );
    assert_eq!(server.stats().tls_handshakes, 1);
    pki.cleanup();
}

/// Runs the Python charge point with `args` and drives its session as `id`.
fn run_session(server: &TestServer, id: &str, args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/charge_point.py");
    let mut child = Command::new(python())
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    let (tx, events) = mpsc::channel::<Value>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(serde_json::from_str(&line).unwrap_or(Value::String(line)));
        }
    });
    let stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
            .join("\n")
    });
    let next = |expected: &str| -> Value {
        let event = events
            .recv_timeout(WATCHDOG)
            .unwrap_or_else(|_| panic!("no {expected} from the Python charge point"));
        assert_eq!(event["event"], expected, "{event}");
        event
    };

    assert_eq!(next("BootNotification")["status"], "Accepted");
    assert_eq!(next("Authorize")["status"], "Accepted");
    next("StatusNotification");
    let start = next("StartTransaction");
    assert!(start["transactionId"].as_i64().unwrap() > 0, "{start}");
    assert_eq!(start["status"], "Accepted");
    next("MeterValues");
    next("StopTransaction");
    assert!(
        next("Heartbeat")["currentTime"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    next("ready");

    let raw = |v: &str| RawValue::from_string(v.to_owned()).unwrap();
    let started = server
        .call(
            id,
            Action::RemoteStartTransaction,
            raw(r#"{"idTag":"TAG-9","connectorId":1}"#),
        )
        .unwrap()
        .wait();
    assert_eq!(
        started,
        CallOutcome::Result(raw(r#"{"status":"Accepted"}"#))
    );
    assert_eq!(next("command")["idTag"], "TAG-9");
    let changed = server
        .call(
            id,
            Action::ChangeConfiguration,
            raw(r#"{"key":"HeartbeatInterval","value":"120"}"#),
        )
        .unwrap()
        .wait();
    assert_eq!(
        changed,
        CallOutcome::Result(raw(r#"{"status":"Accepted"}"#))
    );
    assert_eq!(next("command")["key"], "HeartbeatInterval");
    next("done");

    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let status = done.recv_timeout(WATCHDOG).expect("python exits").unwrap();
    let stderr = errors.join().unwrap();
    assert!(status.success(), "python charge point failed: {stderr}");
    let stats = server.stats();
    assert_eq!(
        stats.call_errors_sent, 0,
        "the gateway refused one of the library's CALLs"
    );
    assert_eq!((stats.calls_sent, stats.call_results), (2, 2));
}
