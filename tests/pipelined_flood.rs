//! Three booted charge points pipeline 49 KB MeterValues without waiting for answers while
//! their processor is stalled: each connection stops being read after
//! `ocpp.max_pipelined_calls` CALLs, the processor's queue stays within `processor.queue_bytes`,
//! `/health` reports the processor saturated (degraded), and once it moves every CALL gets its
//! answer and a neighbour's Heartbeat goes through.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::num::NonZeroUsize;

use common::*;
use serde_json::json;

const FLOOD: usize = 40;

#[test]
fn pipelined_large_calls_are_bounded_per_connection_and_per_processor() {
    let mut config = test_config();
    config.processor.threads = NonZeroUsize::new(1).unwrap();
    config.processor.queue_bytes = 128 * 1024;
    let server = TestServer::start(config);
    let mut neighbour = connect(&server, "CP-NEXT");
    boot(&mut neighbour);
    let sampled: Vec<_> = (0..400)
        .map(|i| json!({"value": format!("{i:0>100}"), "measurand": "Energy.Active.Import.Register"}))
        .collect();
    let meter = json!({"connectorId": 1, "meterValue": [{"timestamp": "2026-11-28T10:00:00Z",
                                                         "sampledValue": sampled}]});
    let mut flooders: Vec<RawClient> = (0..3)
        .map(|i| {
            let mut client = RawClient::connect(&server, &format!("CP-FLOOD-{i}"));
            client.send_text(
                r#"[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]"#,
            );
            assert_eq!(client.read_json()[2]["status"], "Accepted");
            client
        })
        .collect();
    let stall = server.server().stall_processor(0);
    let writers: Vec<_> = flooders
        .iter()
        .map(|c| {
            let mut stream: TcpStream = c.stream.try_clone().unwrap();
            stream.set_write_timeout(Some(WATCHDOG)).unwrap();
            let meter = meter.clone();
            std::thread::spawn(move || {
                for n in 0..FLOOD {
                    let text = json!([2, format!("m{n}"), "MeterValues", meter]).to_string();
                    assert!(text.len() > 48_000);
                    let frame = RawClient::frame(TEXT, text.as_bytes(), true);
                    stream.write_all(&frame).unwrap();
                }
            })
        })
        .collect();
    // Each flooder stops being read: its processor's queue is full (or it has
    // max_pipelined_calls CALLs unanswered) - no busy loop either way.
    let stats = server.wait_for("every flooder paused", |s| {
        s.backpressure_pauses + s.pipelining_pauses >= 3
    });
    assert!(
        stats.backpressure_pauses < 100,
        "paused, not spinning: {stats:?}"
    );
    let health = server.wait_for("a saturated processor", |_| {
        http(server.admin(), "GET", "/health", None, None).json()["processors"][0]["saturated"]
            == true
    });
    let _ = health;
    let body = http(server.admin(), "GET", "/health", None, None).json();
    assert_eq!(body["status"], "degraded", "{body}");
    let queued = body["processors"][0]["queue_bytes"].as_u64().unwrap();
    // Each loop checks the bound before it hands over a batch; the two loops may each fill
    // what they saw free, so at most one bound per loop.
    assert!(queued <= 2 * 128 * 1024, "{queued} bytes queued");
    assert!(server.stats().buffered_read_bytes < 4 * 1024 * 1024);

    drop(stall);
    for client in &mut flooders {
        for _ in 0..FLOOD {
            let reply = client.read_json();
            assert_eq!(reply[0], 3, "{reply}");
        }
    }
    for writer in writers {
        writer.join().unwrap();
    }
    let reply = call(&mut neighbour, "hb", "Heartbeat", json!({}));
    assert_eq!(reply[0], 3);
    let body = http(server.admin(), "GET", "/health", None, None).json();
    assert_eq!(body["status"], "healthy", "{body}");
}
