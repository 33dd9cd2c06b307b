//! `/metrics` parses as the Prometheus text format (checked by the official Python client's
//! parser) and its counters match the traffic this test sends.

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::*;
use serde_json::json;

/// Parses `text` with `prometheus_client.parser` and returns every sample as
/// `name{k="v",...}` (labels sorted) -> value.
fn parse_with_python(text: &str) -> HashMap<String, f64> {
    let path = std::env::temp_dir().join(format!("ocpp-metrics-{}.txt", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in family.samples:
        labels = ",".join('%s="%s"' % (k, v) for k, v in sorted(s.labels.items()))
        out[s.name + ("{" + labels + "}" if labels else "")] = s.value
print(json.dumps(out))
"#;
    let output = Command::new(python())
        .args(["-c", script])
        .arg(&path)
        .output()
        .expect("python runs");
    let _ = std::fs::remove_file(&path);
    assert!(
        output.status.success(),
        "prometheus_client could not parse /metrics: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON from the parser")
}

#[test]
fn metrics_parse_and_match_the_traffic() {
    let server = TestServer::start(test_config());
    let mut clients: Vec<Client> = (0..3)
        .map(|i| {
            let mut c = connect(&server, &format!("CP-M{i}"));
            boot(&mut c);
            c
        })
        .collect();
    for (i, client) in clients.iter_mut().enumerate() {
        for n in 0..4 {
            let reply = call(client, &format!("hb-{i}-{n}"), "Heartbeat", json!({}));
            assert_eq!(reply[0], 3);
        }
    }
    let unknown = call(&mut clients[0], "u-1", "Teleport", json!({}));
    assert_eq!(unknown[2], "NotImplemented");
    let invalid = call(&mut clients[1], "v-1", "Authorize", json!({}));
    assert_eq!(invalid[0], 4);
    let closing = clients.pop().unwrap();
    drop(closing); // a TCP close without a close frame
    // The total gauge drops just before the loop's own.
    server.wait_for("one connection gone", |s| {
        s.connections == 2 && s.loop_connections.iter().sum::<usize>() == 2
    });
    // The loops answer Heartbeats themselves; their processors count them a moment later
    // (the total just before the action's).
    let heartbeat = ocpp::v16::Action::Heartbeat.index();
    server.wait_for("every CALL counted by the processors", |s| {
        s.calls_handled >= 3 + 12 + 2 && s.calls_in_by_action.get(heartbeat) == Some(&12)
    });

    let reply = http(server.admin(), "GET", "/metrics", None, None);
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("Content-Type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{}",
        reply.head
    );
    let samples = parse_with_python(&reply.body);
    let value = |key: &str| {
        *samples
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing; have {:?}", samples.keys()))
    };
    assert_eq!(
        value(r#"ocpp_gateway_messages_total{action="BootNotification",direction="in"}"#),
        3.0
    );
    assert_eq!(
        value(r#"ocpp_gateway_messages_total{action="Heartbeat",direction="in"}"#),
        12.0
    );
    assert_eq!(
        value(r#"ocpp_gateway_messages_total{action="Authorize",direction="in"}"#),
        1.0
    );
    assert_eq!(
        value(r#"ocpp_gateway_messages_total{action="unknown",direction="in"}"#),
        1.0
    );
    assert_eq!(
        value(r#"ocpp_gateway_messages_total{action="Reset",direction="out"}"#),
        0.0
    );
    assert_eq!(
        value(r#"ocpp_gateway_call_errors_sent_total{code="NotImplemented"}"#),
        1.0
    );
    assert_eq!(
        value(r#"ocpp_gateway_call_errors_sent_total{code="OccurenceConstraintViolation"}"#),
        1.0
    );
    assert_eq!(
        value(r#"ocpp_gateway_handshakes_total{outcome="accepted"}"#),
        3.0
    );
    assert_eq!(value("ocpp_gateway_connections_accepted_total"), 3.0);
    let per_loop: f64 = (0..2)
        .map(|i| value(&format!(r#"ocpp_gateway_connections{{loop="{i}"}}"#)))
        .sum();
    assert_eq!(per_loop, 2.0);
    let closes: f64 = ["peer_closed", "connection_lost"]
        .iter()
        .map(|r| value(&format!(r#"ocpp_gateway_closes_total{{reason="{r}"}}"#)))
        .sum();
    assert_eq!(closes, 1.0);
    // 3 boots + 12 heartbeats + 1 unknown + 1 invalid, each timed once.
    assert_eq!(value("ocpp_gateway_processing_seconds_count"), 17.0);
    assert_eq!(
        value(r#"ocpp_gateway_processing_seconds_bucket{le="+Inf"}"#),
        17.0
    );
    assert_eq!(value("ocpp_gateway_calls_handled_total"), 17.0);
    assert_eq!(value(r#"ocpp_gateway_frames_total{direction="in"}"#), 17.0);
    assert_eq!(value(r#"ocpp_gateway_frames_total{direction="out"}"#), 17.0);
    assert_eq!(value("ocpp_gateway_pong_timeouts_total"), 0.0);
    assert_eq!(
        value(r#"ocpp_gateway_outbound_calls_total{outcome="result"}"#),
        0.0
    );
    assert_eq!(value("ocpp_gateway_journal_errors_total"), 0.0);
    assert_eq!(value("ocpp_gateway_healthy"), 1.0);
    assert!(value("ocpp_gateway_open_files_limit") > 0.0);
    assert_eq!(
        value(r#"ocpp_gateway_processor_queue_depth{processor="0"}"#),
        0.0
    );
}
