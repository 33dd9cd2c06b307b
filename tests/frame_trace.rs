//! Per-charge-point frame trace, end to end through the binary: with `RUST_LOG=warn` (no info
//! logging at all), turning the trace on through the operator API logs that charge point's raw
//! frames both ways, and turning it off stops them.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use common::*;
use serde_json::json;

struct Gateway {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// The next log line containing `needle`, failing after [`WATCHDOG`].
    fn line_with(&self, needle: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(WATCHDOG)
                .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    }
}

/// Turns the trace of CP-TRACED on or off through the operator API.
fn set_trace(admin: SocketAddr, on: bool) {
    let method = if on { "POST" } else { "DELETE" };
    let reply = http(
        admin,
        method,
        "/api/v1/chargepoints/CP-TRACED/trace",
        None,
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
}

fn address_after(line: &str, marker: &str) -> SocketAddr {
    let rest = line.split(marker).nth(1).expect("marker");
    rest.split_whitespace()
        .next()
        .unwrap()
        .parse()
        .expect("an address")
}

#[test]
fn trace_logs_one_charge_points_frames_whatever_rust_log_says() {
    let dir = std::env::temp_dir().join(format!("ocpp-gateway-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\npin_cores = false\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[events]\nsink = \"none\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ocpp-gateway"))
        .arg("--config")
        .arg(&config)
        .current_dir(&dir) // its default state and counter files go there
        // Warnings only, but the two start-up lines that name the ports.
        .env(
            "RUST_LOG",
            "warn,ocpp_gateway::server=info,ocpp_gateway::admin=info",
        )
        .stderr(Stdio::piped())
        .spawn()
        .expect("gateway starts");
    let (tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let gateway = Gateway { child, lines };
    let admin = address_after(&gateway.line_with("admin endpoints on http://"), "http://");
    let addr = address_after(&gateway.line_with("listening on "), "listening on ");

    let (mut traced, _) =
        try_connect(addr, &format!("ws://{addr}/ocpp/CP-TRACED"), "ocpp1.6").unwrap();
    let (mut other, _) =
        try_connect(addr, &format!("ws://{addr}/ocpp/CP-OTHER"), "ocpp1.6").unwrap();
    boot(&mut traced);
    boot(&mut other);
    set_trace(admin, true);
    assert_eq!(call(&mut other, "other-1", "Heartbeat", json!({}))[0], 3);
    assert_eq!(call(&mut traced, "traced-1", "Heartbeat", json!({}))[0], 3);
    let incoming = gateway.line_with("ocpp_gateway::trace");
    assert!(
        incoming.contains(r#"in: [2,"traced-1","Heartbeat",{}]"#),
        "{incoming}"
    );
    let outgoing = gateway.line_with("ocpp_gateway::trace");
    assert!(
        outgoing.contains(r#"out: [3,"traced-1",{"currentTime":"#),
        "{outgoing}"
    );

    set_trace(admin, false);
    assert_eq!(call(&mut traced, "traced-2", "Heartbeat", json!({}))[0], 3);
    set_trace(admin, true);
    assert_eq!(call(&mut traced, "traced-3", "Heartbeat", json!({}))[0], 3);
    // Lines come out in order: the next traced frame is traced-3; neither traced-2 (trace
    // off) nor CP-OTHER (never traced) was logged.
    let next = gateway.line_with("ocpp_gateway::trace");
    assert!(
        next.contains("cp=CP-TRACED") && next.contains("traced-3"),
        "{next}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
