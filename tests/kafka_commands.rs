//! Commands from the Kafka commands topic against a real Kafka-protocol broker (`tansu`,
//! started here): records reach the charge point, each with a `command.response` (unknown
//! charge points and malformed records included), offsets committed after the responses; and
//! `/health` while there is no commands topic to read yet.
//!
//! Needs `tansu` on the PATH (`.ci/run` installs it). Without it the tests say so loudly and
//! pass, except when `OCPP_REQUIRE_SERVERS` is set (as `.ci/run` does), where they fail.

mod common;

use common::tansu::{
    self, COMMAND_PARTITIONS, COMMANDS, EVENT_PARTITIONS, EVENTS, Record, Tansu, assert_schema,
    broker, gateway, scratch,
};
use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{Value, json};
use tungstenite::Message;

/// FNV-1a (32 bits), written here from the README's description, not taken from the gateway:
/// a backend's partition for a gateway is `fnv1a32(gatewayId) % partitions`.
fn fnv1a32(text: &str) -> u32 {
    let mut hash: u32 = 2_166_136_261;
    for byte in text.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(16_777_619);
    }
    hash
}

/// The `command.response` for `id`, if read.
fn response<'a>(records: &'a [Record], id: &str) -> Option<&'a Value> {
    records
        .iter()
        .map(|r| &r.value)
        .find(|v| v["eventType"] == "command.response" && v["payload"]["commandId"] == id)
}

/// The offset committed for `partition` of the commands topic by `group`.
fn committed(tansu: &Tansu, group: &str, partition: i32) -> Option<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", tansu.brokers())
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition(COMMANDS, partition);
    let offsets = consumer.committed_offsets(list, WATCHDOG).ok()?;
    match offsets.find_partition(COMMANDS, partition)?.offset() {
        Offset::Offset(n) => Some(n),
        _ => None,
    }
}

#[test]
fn commands_from_the_topic_reach_charge_points_and_every_record_is_answered() {
    if !tansu::available() {
        return;
    }
    let tansu = broker();
    let dir = scratch("commands");
    let node = "gw-commands";
    let mut server = TestServer::start(gateway(&tansu, node, &dir));
    let mut cp = connect(&server, "CP-CMD");
    boot(&mut cp);

    let ours = (fnv1a32(node) % COMMAND_PARTITIONS as u32) as i32;
    let elsewhere = (ours + 1) % COMMAND_PARTITIONS;
    let producer = tansu.producer();
    let write = |partition: i32, record: Value| {
        tansu.produce(
            &producer,
            COMMANDS,
            partition,
            record.to_string().as_bytes(),
        );
    };
    // Another gateway's partition: never read here.
    write(
        elsewhere,
        json!({"commandId": "c-other", "chargePointId": "CP-CMD",
                            "action": "Reset", "payload": {"type": "Soft"}}),
    );
    write(
        ours,
        json!({"commandId": "c1", "chargePointId": "CP-CMD",
                       "action": "Reset", "payload": {"type": "Soft"}}),
    );
    // The charge point gets the CALL and answers it.
    let reset = next_json(&mut cp);
    assert_eq!(
        (&reset[0], &reset[2], &reset[3]),
        (&json!(2), &json!("Reset"), &json!({"type": "Soft"}))
    );
    let answer = json!([3, reset[1], {"status": "Accepted"}]).to_string();
    cp.send(Message::text(answer)).expect("send");

    write(
        ours,
        json!({"commandId": "c2", "chargePointId": "CP-NOBODY",
                       "action": "Reset", "payload": {"type": "Hard"}}),
    );
    write(
        ours,
        json!({"commandId": "c3", "chargePointId": "CP-CMD",
                       "action": "Dance", "payload": {}}),
    );
    tansu.produce(&producer, COMMANDS, ours, b"\x00 not a command");
    write(
        ours,
        json!({"commandId": "c5", "chargePointId": "CP-CMD",
                       "action": "ChangeAvailability", "payload": {"connectorId": 0, "type": "Sometimes"}}),
    );
    write(
        ours,
        json!({"commandId": "c6", "chargePointId": "CP-CMD", "action": "GetConfiguration",
                       "payload": {}, "timeoutMs": 300}),
    );
    // c6 reaches the charge point, which does not answer: Timeout after timeoutMs.
    let unanswered = next_json(&mut cp);
    assert_eq!(unanswered[2], "GetConfiguration", "{unanswered}");
    // Written an hour ago (a gateway that was down): answered Expired, never sent.
    let hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        - 3_600_000;
    let stale = json!({"commandId": "c7", "chargePointId": "CP-CMD",
                       "action": "Reset", "payload": {"type": "Hard"}});
    tansu.produce_at(
        &producer,
        COMMANDS,
        ours,
        stale.to_string().as_bytes(),
        Some(hour_ago),
    );

    let mut reader = tansu.reader(EVENTS, EVENT_PARTITIONS);
    reader.until("a response to every command with an id", |seen| {
        ["c1", "c2", "c3", "c5", "c6", "c7"]
            .iter()
            .all(|id| response(seen, id).is_some())
    });
    let seen = &reader.seen;
    let status = |id: &str| response(seen, id).expect("a response")["payload"]["status"].clone();
    assert_eq!(status("c1"), "Completed");
    let c1 = response(seen, "c1").expect("c1");
    assert_eq!(c1["payload"]["details"]["response"]["status"], "Accepted");
    assert_eq!(c1["payload"]["commandName"], "Reset");
    assert_eq!(c1["chargePointId"], "CP-CMD");
    assert_eq!(status("c2"), "NotConnected");
    assert_eq!(status("c3"), "Invalid");
    let c3 = response(seen, "c3").expect("c3");
    assert!(
        c3["payload"]["details"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Dance")),
        "{c3}"
    );
    assert_eq!(status("c5"), "Invalid", "payload refused by the schema");
    assert_eq!(status("c6"), "Timeout");
    assert_eq!(status("c7"), "Expired");
    for id in ["c1", "c2", "c3", "c5", "c6", "c7"] {
        assert_schema(response(seen, id).expect("a response"));
    }
    let keyed = seen
        .iter()
        .find(|r| r.value["payload"]["commandId"] == "c2")
        .and_then(|r| r.key.clone());
    assert_eq!(
        keyed.as_deref(),
        Some("CP-NOBODY"),
        "responses are keyed by charge point"
    );

    // Seven records on our partition, each finished: the committed offset passes all of them.
    wait_until("offsets committed after the responses", || {
        committed(&tansu, &format!("ocpp-gateway-{node}"), ours) == Some(7)
    });
    assert!(
        response(&reader.seen, "c-other").is_none(),
        "another gateway's partition"
    );
    let health = http(server.admin(), "GET", "/health", None, None).json();
    assert_eq!(health["kafka_commands"]["status"], "reading", "{health}");
    assert_eq!(
        health["kafka_commands"]["partitions"],
        json!([ours]),
        "{health}"
    );
    let stats = server.stats();
    assert_eq!(stats.kafka_commands_received, 7, "{stats:#?}");
    assert_eq!(stats.kafka_commands_expired, 1);
    assert_eq!(stats.kafka_commands_invalid, 3, "c3, the garbage and c5");
    assert_eq!(stats.kafka_commands_not_connected, 1);
    assert!(stats.kafka_command_responses >= 6);
    // The stale Reset never reached the charge point: nothing more arrives for it.
    cp.send(Message::text(json!([2, "hb", "Heartbeat", {}]).to_string()))
        .expect("send");
    let next = next_json(&mut cp);
    assert_eq!((&next[0], &next[1]), (&json!(3), &json!("hb")), "{next}");
    drop(cp);
    server.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn health_says_when_there_is_no_commands_topic_to_read() {
    if !tansu::available() {
        return;
    }
    let tansu = Tansu::start();
    tansu.create_topic(EVENTS, EVENT_PARTITIONS as u32); // no commands topic yet
    let dir = scratch("no-commands");
    let server = TestServer::start(gateway(&tansu, "gw-nocmd", &dir));
    let health = http(server.admin(), "GET", "/health", None, None).json();
    assert_eq!(health["kafka_commands"]["status"], "waiting", "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    // The topic appears: the gateway finds it and reads its partition.
    tansu.create_topic(COMMANDS, COMMAND_PARTITIONS as u32);
    wait_until("the commands consumer reading", || {
        let health = http(server.admin(), "GET", "/health", None, None).json();
        health["kafka_commands"]["status"] == "reading" && health["status"] == "healthy"
    });
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}
