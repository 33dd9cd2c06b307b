//! Transaction ids never repeat: from a counter file near the top of the 32-bit range, the last
//! ids are given out once each, then StartTransaction is refused with CALLERROR InternalError,
//! `/health` turns degraded naming the cause, and the remaining-ids gauge reads 0.

mod common;

use common::*;
use serde_json::json;

#[test]
fn the_last_ids_are_given_once_then_start_transaction_is_refused() {
    let dir = std::env::temp_dir().join(format!("ocpp-txid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let counter = dir.join("transaction-id");
    std::fs::write(&counter, "2147483645\n").unwrap();
    let mut config = test_config();
    config.ocpp.transaction_id_file = Some(counter);
    let server = TestServer::start(config);
    let mut client = connect(&server, "CP-TX");
    boot(&mut client);
    let start = json!({"connectorId": 1, "idTag": "TAG", "meterStart": 0,
                       "timestamp": "2026-11-28T10:00:00Z"});
    let mut ids = Vec::new();
    for i in 0..5 {
        let reply = call(
            &mut client,
            &format!("s{i}"),
            "StartTransaction",
            start.clone(),
        );
        ids.push(reply);
    }
    let given: Vec<i64> = ids[..3]
        .iter()
        .map(|r| r[2]["transactionId"].as_i64().expect("an id"))
        .collect();
    assert_eq!(given, [2147483645, 2147483646, 2147483647]);
    for refused in &ids[3..] {
        assert_eq!(refused[0], 4, "{refused}");
        assert_eq!(refused[2], "InternalError", "{refused}");
    }
    let health = http(server.admin(), "GET", "/health", None, None).json();
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["problems"]
            .to_string()
            .contains("transaction ids exhausted")
    );
    let metrics = http(server.admin(), "GET", "/metrics", None, None).body;
    assert!(metrics.contains("ocpp_gateway_transaction_ids_remaining 0"));
    let _ = std::fs::remove_dir_all(&dir);
}
