//! `ocpp.max_calls_per_second`: a charge point that sends CALLs faster than its budget gets
//! every answer, but its connection is read more slowly; each pause is counted, in the metric
//! and for that charge point in the API, and a neighbour is not slowed.

mod common;

use common::*;
use serde_json::json;

#[test]
fn a_charge_point_over_its_rate_is_read_more_slowly_and_counted() {
    let mut config = test_config();
    config.ocpp.max_calls_per_second = 20;
    config.ocpp.call_burst = 5;
    let server = TestServer::start(config);
    let mut busy = connect(&server, "CP-BUSY");
    let mut calm = connect(&server, "CP-CALM");
    boot(&mut busy);
    boot(&mut calm);
    for i in 0..30 {
        let reply = call(&mut busy, &format!("hb{i}"), "Heartbeat", json!({}));
        assert_eq!(reply[0], 3, "every CALL is answered: {reply}");
    }
    let reply = call(&mut calm, "hb", "Heartbeat", json!({}));
    assert_eq!(reply[0], 3);
    // 31 CALLs with a burst of 5: at least 20 had to wait for the rate.
    let stats = server.wait_for("pauses counted", |s| s.rate_limited >= 20);
    let detail = |id: &str| {
        http(
            server.admin(),
            "GET",
            &format!("/api/v1/chargepoints/{id}"),
            None,
            None,
        )
        .json()
    };
    let counted = server.wait_for("pauses reported", |_| {
        detail("CP-BUSY")["rate_limited"].as_u64() == Some(stats.rate_limited)
    });
    assert_eq!(detail("CP-CALM")["rate_limited"], 0);
    let metrics = http(server.admin(), "GET", "/metrics", None, None).body;
    assert!(
        metrics.contains(&format!(
            "ocpp_gateway_rate_limited_total {}",
            counted.rate_limited
        )),
        "{metrics}"
    );
}

#[test]
fn a_large_call_counts_once_per_started_4_kib() {
    let mut config = test_config();
    config.ocpp.max_calls_per_second = 20;
    config.ocpp.call_burst = 5;
    let server = TestServer::start(config);
    let mut small = connect(&server, "CP-SMALL");
    boot(&mut small);
    // Five small CALLs (the boot and four Heartbeats) fit the burst of five: never paused.
    for i in 0..4 {
        let reply = call(&mut small, &format!("hb{i}"), "Heartbeat", json!({}));
        assert_eq!(reply[0], 3, "{reply}");
    }
    assert_eq!(server.stats().rate_limited, 0);
    // Five DataTransfers of 20 KiB count five times each: all but the first wait.
    let mut large = connect(&server, "CP-LARGE");
    boot(&mut large);
    let data = "x".repeat(20 * 1024 - 100);
    for i in 0..5 {
        let payload = json!({"vendorId": "v", "data": data});
        let reply = call(&mut large, &format!("dt{i}"), "DataTransfer", payload);
        assert_eq!(reply[0], 3, "every CALL is answered: {reply}");
    }
    server.wait_for("large CALLs paused", |s| s.rate_limited >= 4);
}
