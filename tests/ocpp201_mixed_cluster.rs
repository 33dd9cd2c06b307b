//! A mixed fleet on three nodes with Redis and Kafka: a 1.6 charge point and a 2.0.1 station on
//! different nodes; the station starts a transaction on one node, fails over to a third and ends
//! it there without booting; a 2.0.1 GetVariables made through the first node's API reaches it
//! at its new node (the cluster's command stream, made a 2.0.1 call there) and is answered;
//! every event on the topic is valid against `schemas/kafka/`, each transaction event once.

mod common;

use std::collections::HashMap;

use common::redis_server::{Redis, cluster_node};
use common::tansu::{self, EVENT_PARTITIONS, EVENTS, assert_schema, broker, gateway};
use common::*;
use serde_json::{Value, json};
use tungstenite::Message;

fn event(kind: &str, seq_no: u64) -> Value {
    json!({"eventType": kind, "timestamp": "2026-12-06T10:00:00Z", "seqNo": seq_no,
           "triggerReason": "Authorized", "transactionInfo": {"transactionId": "TX-MIX-3"},
           "evse": {"id": 1, "connectorId": 1},
           "meterValue": [{"timestamp": "2026-12-06T10:00:00Z",
                           "sampledValue": [{"value": 10 * (seq_no + 1)}]}]})
}

#[test]
fn a_mixed_fleet_on_three_nodes_with_kafka() {
    if !tansu::available() || !server_available("redis-server", "redis-server") {
        return;
    }
    let tansu = broker();
    let redis = Redis::start(free_port());
    let dir = std::env::temp_dir().join(format!("ocpp-201-mixed3-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch");
    let node = |name: &str| {
        let node_dir = dir.join(name);
        std::fs::create_dir_all(&node_dir).expect("node directory");
        let config = gateway(&tansu, name, &node_dir);
        TestServer::start(cluster_node(&redis, (name, "mix:"), &node_dir, config))
    };
    let (a, b, c) = (node("node-a"), node("node-b"), node("node-c"));
    redis.wait_for_nodes("mix:", &["node-a", "node-b", "node-c"]);

    let mut old = connect(&a, "CP-MIX3-16");
    boot(&mut old);
    let mut station = connect_v201(&b, "CS-MIX3-201");
    boot_v201(&mut station);
    for (n, kind) in ["Started", "Updated"].into_iter().enumerate() {
        let reply = call_v201(
            &mut station,
            &format!("b{n}"),
            "TransactionEvent",
            event(kind, n as u64),
        );
        assert_eq!(reply[0], 3, "{reply}");
    }
    wait_until("the open transaction shared", || {
        redis
            .get("mix:state:CS-MIX3-201")
            .is_some_and(|record| record.contains("\"nextSeq\":2"))
    });
    drop(station);

    // Node B is gone for the station: it comes back on node C, ends its transaction there.
    let mut station = connect_v201(&c, "CS-MIX3-201");
    let ended = call_v201(&mut station, "c2", "TransactionEvent", event("Ended", 2));
    assert_eq!(ended[0], 3, "without a boot: {ended}");
    wait_until("the station held by node-c", || {
        redis.owner("mix:cp:CS-MIX3-201").as_deref() == Some("node-c")
    });

    // A 2.0.1 command made on node A reaches it at node C.
    let body = json!({"action": "GetVariables", "payload": {"getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]}});
    let reply = post_async(a.admin(), "CS-MIX3-201", body);
    let call = next_json(&mut station);
    assert_eq!(call[2], "GetVariables", "{call}");
    let result = json!({"getVariableResult": [{"attributeStatus": "Accepted",
        "attributeValue": "300", "component": {"name": "OCPPCommCtrlr"},
        "variable": {"name": "HeartbeatInterval"}}]});
    station
        .send(Message::text(json!([3, call[1], result]).to_string()))
        .expect("send");
    let reply = reply.recv_timeout(WATCHDOG).expect("node A's reply");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json()["payload"]["getVariableResult"][0]["attributeValue"],
        "300"
    );

    let mut reader = tansu.reader(EVENTS, EVENT_PARTITIONS);
    let records = reader.until("the 2.0.1 transaction's end and the 1.6 boot", |seen| {
        let has = |cp: &str, kind: &str| {
            seen.iter()
                .any(|r| r.key.as_deref() == Some(cp) && r.value["eventType"] == kind)
        };
        has("CS-MIX3-201", "transaction.stopped") && has("CP-MIX3-16", "charge_point.connected")
    });
    let mut transaction_events: HashMap<(String, u64), usize> = HashMap::new();
    for record in records {
        assert_schema(&record.value);
        let p = &record.value["payload"];
        if let (Some(tx), Some(seq)) = (p["transactionId"].as_str(), p["seqNo"].as_u64()) {
            *transaction_events.entry((tx.to_owned(), seq)).or_default() += 1;
        }
    }
    assert_eq!(transaction_events.len(), 3, "{transaction_events:?}");
    assert!(
        transaction_events.values().all(|n| *n == 1),
        "{transaction_events:?}"
    );
    let gateways: Vec<&str> = records
        .iter()
        .filter(|r| r.value["eventType"] == "transaction.stopped")
        .filter_map(|r| r.value["gatewayId"].as_str())
        .collect();
    assert_eq!(gateways, ["node-c"], "ended where the station came back");
    drop((a, b, c));
    let _ = std::fs::remove_dir_all(&dir);
}
