//! `/health`: the Go gateway's fields plus per-loop and per-processor detail, and `unhealthy`
//! (HTTP 503) while a processor thread is stuck, healthy again once it moves.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Polls `/health` until `pred` holds, failing after [`WATCHDOG`].
fn wait_health(server: &TestServer, what: &str, pred: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = Instant::now() + WATCHDOG;
    let mut pause = Duration::from_millis(1);
    loop {
        let reply = http(server.admin(), "GET", "/health", None, None);
        let body = reply.json();
        if pred(reply.status, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {body}"
        );
        // /health has no event to wait on: back off between looks, bounded by the deadline.
        std::thread::park_timeout(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

#[test]
fn health_has_the_go_gateway_fields_and_per_thread_detail() {
    let server = TestServer::start(test_config());
    let mut a = connect(&server, "CP-H1");
    boot(&mut a);
    let mut b = connect(&server, "CP-H2");
    boot(&mut b);
    let health = wait_health(&server, "two connections", |status, h| {
        status == 200 && h["connections"] == 2
    });
    assert_eq!(health["status"], "healthy");
    assert!(health["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(health["uptime"].as_str().unwrap().ends_with('s'));
    let ping = &health["ping_service"];
    assert_eq!(ping["active_connections"], 2);
    assert_eq!(ping["ping_interval"], "1m0s");
    assert!(ping["total_pings"].is_u64() && ping["skipped_pings"].is_u64());
    let loops = health["loops"].as_array().unwrap();
    assert_eq!(loops.len(), 2);
    let per_loop: u64 = loops
        .iter()
        .map(|l| l["connections"].as_u64().unwrap())
        .sum();
    assert_eq!(per_loop, 2);
    assert!(loops.iter().all(|l| l["alive"] == true));
    let processors = health["processors"].as_array().unwrap();
    assert_eq!(processors.len(), 2);
    assert!(processors.iter().all(|p| p["queue_depth"].is_u64()));
    assert!(health["open_files_limit"]["soft"].as_u64().unwrap() > 0);
    assert_eq!(health["journal"]["status"], "off");
    assert_eq!(health["problems"], serde_json::json!([]));
}

#[test]
fn a_stuck_processor_makes_health_503_until_it_moves() {
    let mut config = test_config();
    config.admin.stuck_after = Duration::from_millis(300);
    let server = TestServer::start(config);
    wait_health(&server, "healthy at start", |status, h| {
        status == 200 && h["status"] == "healthy"
    });
    let release = server.server().stall_processor(1);
    let health = wait_health(&server, "unhealthy", |status, _| status == 503);
    assert_eq!(health["status"], "unhealthy");
    assert_eq!(health["processors"][1]["alive"], false);
    assert_eq!(health["processors"][0]["alive"], true);
    assert!(
        health["problems"][0]
            .as_str()
            .unwrap()
            .contains("processor 1"),
        "{health}"
    );
    let metrics = http(server.admin(), "GET", "/metrics", None, None).body;
    assert!(metrics.contains("ocpp_gateway_healthy 0\n"), "{metrics}");
    drop(release);
    wait_health(&server, "healthy again", |status, h| {
        status == 200 && h["status"] == "healthy"
    });
}
