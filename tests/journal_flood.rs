//! A charge point that was never accepted floods 60 KB DataTransfers: each is answered
//! SecurityError and journaled with only the start of its payload, its lines beyond its
//! journal allowance are left out (counted, per charge point in the API, and summarised in one
//! line), and no journal file holding an earlier billing line is deleted.

mod common;

use common::*;
use serde_json::{Value, json};
use tungstenite::Message;

#[test]
fn a_flood_of_refused_messages_cannot_push_billing_lines_out() {
    // A small allowance, so that the flood spends it within the test.
    let (mut config, dir, path) = flood_journal("flood", (1024, 64 * 1024));
    config.events.max_file_bytes = 64 * 1024;
    config.events.max_files = 2;
    let mut server = TestServer::start(config);

    let mut honest = connect(&server, "CP-HONEST");
    boot(&mut honest);
    let stop = call(
        &mut honest,
        "stop-1",
        "StopTransaction",
        json!({"transactionId": 7, "meterStop": 1234, "timestamp": "2026-11-28T10:00:00Z"}),
    );
    assert_eq!(stop[0], 3, "{stop}");

    let mut flooder = connect(&server, "CP-FLOOD");
    let data = "x".repeat(60_000);
    let flood = 300;
    for i in 0..flood {
        let text = json!([2, format!("f{i}"), "DataTransfer", {"vendorId": "V", "data": data}]);
        flooder.send(Message::text(text.to_string())).unwrap();
        let reply = next_json(&mut flooder);
        assert_eq!(reply[2], "SecurityError", "{reply}");
    }
    let detail = http(
        server.admin(),
        "GET",
        "/api/v1/chargepoints/CP-FLOOD",
        None,
        None,
    )
    .json();
    let suppressed = detail["journal_lines_suppressed"].as_u64().unwrap();
    assert!(suppressed > 0, "{detail}");
    drop(flooder);
    server.wait_for("the flooder's disconnect", |s| s.connections == 1);
    drop(honest);
    server.stop();

    let mut files = vec![path.clone()];
    files.extend(
        (1..100)
            .map(|n| dir.join(format!("journal.jsonl.{n}")))
            .filter(|p| p.exists()),
    );
    let text: String = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let total = text.len();
    // 300 x 60 KB sent; the journal holds about the allowance.
    assert!(total < 1_000_000, "journal grew by {total} bytes");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["action"] == "StopTransaction" && l["dir"] == "in"),
        "the billing line survived"
    );
    let refused: Vec<&Value> = lines
        .iter()
        .filter(|l| l["cp"] == "CP-FLOOD" && l["event"] == "call")
        .collect();
    assert!(!refused.is_empty());
    for line in &refused {
        assert!(line.get("payload").is_none(), "{line}");
        assert_eq!(line["payload_prefix"].as_str().unwrap().len(), 256);
        assert!(line["payload_bytes"].as_u64().unwrap() > 60_000);
    }
    let summary: u64 = lines
        .iter()
        .filter(|l| l["cp"] == "CP-FLOOD" && l["event"] == "suppressed")
        .map(|l| l["lines"].as_u64().unwrap())
        .sum();
    assert_eq!(summary, suppressed, "every left-out line is summarised");
    let written = lines
        .iter()
        .filter(|l| l["cp"] == "CP-FLOOD" && (l["event"] == "call" || l["event"] == "error"))
        .count() as u64;
    assert_eq!(
        written + summary,
        flood * 2,
        "every call and answer line written or counted"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
