//! A 2.0.1 station that fails over to another node ends its transaction there without booting
//! again: its registration, its version and its open transaction (id, EVSE, token, next seqNo)
//! reach the other node through Redis, so the Ended is answered and an event the first node
//! already answered, sent again, is recognised.

mod common;

use common::redis_server::{Redis, cluster_node};
use common::*;
use serde_json::{Value, json};

fn event(kind: &str, seq_no: u64) -> Value {
    json!({"eventType": kind, "timestamp": "2026-12-06T10:00:00Z", "seqNo": seq_no,
           "triggerReason": "Authorized", "transactionInfo": {"transactionId": "TX-FAILOVER"},
           "evse": {"id": 1, "connectorId": 1},
           "idToken": {"idToken": "TAG-F", "type": "ISO14443"}})
}

#[test]
fn a_201_station_ends_its_transaction_on_another_node_without_booting() {
    if !server_available("redis-server", "redis-server") {
        return;
    }
    let redis = Redis::start(free_port());
    let dir = std::env::temp_dir().join(format!("ocpp-201-failover-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("counter directory");
    let a = TestServer::start(cluster_node(
        &redis,
        ("node-a", "t201:"),
        &dir,
        test_config(),
    ));
    let b = TestServer::start(cluster_node(
        &redis,
        ("node-b", "t201:"),
        &dir,
        test_config(),
    ));
    redis.wait_for_nodes("t201:", &["node-a", "node-b"]);

    let mut on_a = connect_v201(&a, "CS-F");
    boot_v201(&mut on_a);
    for (n, kind) in ["Started", "Updated"].into_iter().enumerate() {
        let reply = call_v201(
            &mut on_a,
            &format!("a{n}"),
            "TransactionEvent",
            event(kind, n as u64),
        );
        assert_eq!(reply[0], 3, "{reply}");
    }
    wait_until("CS-F's open transaction shared", || {
        redis
            .get("t201:state:CS-F")
            .is_some_and(|record| record.contains("\"nextSeq\":2"))
    });
    drop(on_a);

    let mut on_b = connect_v201(&b, "CS-F");
    // The answer to the Updated was lost on the way: sent again, to node B.
    let again = call_v201(&mut on_b, "b1", "TransactionEvent", event("Updated", 1));
    assert_eq!(again[0], 3, "accepted without a boot: {again}");
    let ended = call_v201(&mut on_b, "b2", "TransactionEvent", event("Ended", 2));
    assert_eq!(ended[0], 3, "{ended}");
    let stats = b.wait_for("the resend recognised on node B", |s| {
        s.transaction_events_resent == 1
    });
    assert_eq!((stats.transaction_seq_gaps, stats.call_errors_sent), (0, 0));
    let view = http(b.admin(), "GET", "/api/v1/chargepoints/CS-F", None, None).json();
    assert_eq!(
        (&view["registration"], &view["ocppVersion"]),
        (&json!("accepted"), &json!("2.0.1"))
    );
    assert!(view.get("openTransactions201").is_none(), "ended: {view}");
    let _ = std::fs::remove_dir_all(&dir);
}
