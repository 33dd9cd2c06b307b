//! `[cluster]` on a real `redis-server` started by the test: the registry says which node holds
//! a charge point, the newest connection wins across nodes (the older node closes its
//! connection with 1000 "taken over"), an entry is removed on disconnect only by its owner,
//! live nodes keep a key with a TTL, and with Redis stopped the gateway keeps serving, says
//! "degraded", and replays the registry once Redis is back; transaction ids in blocks no two
//! nodes share; nothing acknowledged lost while Redis is frozen under traffic. The events
//! stream, the command stream and shared credentials have files of their own (cluster_*.rs).
//!
//! Needs `redis-server` (Debian's package). Without it the tests say so loudly and pass, except
//! when `OCPP_REQUIRE_SERVERS` is set (as `.ci/run` does), where they fail.

mod common;

use std::time::Duration;

use common::redis_server::{Redis, file_lines, node, same_lines, with_events_stream};
use common::*;

#[test]
fn the_newest_connection_wins_across_nodes_and_the_registry_follows() {
    if !server_available("redis-server", "redis-server") {
        return;
    }
    let redis = Redis::start(free_port());
    let a = TestServer::start(node(&redis, "node-a", "t1:"));
    let b = TestServer::start(node(&redis, "node-b", "t1:"));
    redis.wait_for_nodes("t1:", &["node-a", "node-b"]);
    let key = "t1:cp:CP-X";

    let mut on_a = connect(&a, "CP-X");
    boot(&mut on_a);
    wait_until("CP-X registered on node-a", || {
        redis.owner(key).as_deref() == Some("node-a")
    });
    let mut con = redis.connection().expect("redis");
    let ttl: i64 = redis::cmd("PTTL")
        .arg("t1:node:node-a")
        .query(&mut con)
        .unwrap();
    assert!(ttl > 0 && ttl <= 3000, "node key TTL {ttl} ms");

    // The same identity connects to node B later: B holds it, A closes its connection.
    let mut on_b = connect(&b, "CP-X");
    boot(&mut on_b);
    let close = expect_close(&mut on_a).expect("a close frame from node A");
    assert_eq!(u16::from(close.code), 1000);
    assert_eq!(close.reason, "taken over");
    wait_until("CP-X registered on node-b", || {
        redis.owner(key).as_deref() == Some("node-b")
    });
    // A's disconnect reached Redis and did not remove B's entry. A wrote three operations:
    // the connect, the state its boot changed, the disconnect.
    a.wait_for("A's connect, state and disconnect written", |s| {
        s.cluster_ops >= 3
    });
    assert_eq!(redis.owner(key).as_deref(), Some("node-b"));
    assert_eq!(a.stats().cluster_takeovers, 1);

    // B's own disconnect removes it.
    drop(on_b);
    wait_until("CP-X removed", || redis.owner(key).is_none());
}

#[test]
fn with_redis_stopped_charge_points_are_served_and_the_registry_is_replayed_after() {
    if !server_available("redis-server", "redis-server") {
        return;
    }
    let port = free_port();
    let redis = Redis::start(port);
    let a = TestServer::start(node(&redis, "node-a", "t2:"));
    wait_until("node-a's key", || {
        redis.connection().and_then(|mut c| {
            redis::cmd("EXISTS")
                .arg("t2:node:node-a")
                .query::<i64>(&mut c)
                .ok()
        }) == Some(1)
    });
    drop(redis);

    let mut client = connect(&a, "CP-R");
    boot(&mut client);
    let reply = call(&mut client, "hb", "Heartbeat", serde_json::json!({}));
    assert_eq!(reply[0], 3, "served while Redis is away: {reply}");
    wait_until("/health degraded", || {
        let health = http(a.admin(), "GET", "/health", None, None).json();
        health["status"] == "degraded" && health["problems"].to_string().contains("Redis")
    });

    let redis = Redis::start(port);
    wait_until("CP-R replayed into the registry", || {
        redis.owner("t2:cp:CP-R").as_deref() == Some("node-a")
    });
    wait_until("/health healthy again", || {
        http(a.admin(), "GET", "/health", None, None).json()["status"] == "healthy"
    });
}

#[test]
fn transaction_ids_come_in_blocks_no_two_nodes_share() {
    if !server_available("redis-server", "redis-server") {
        return;
    }
    let redis = Redis::start(free_port());
    // An earlier version's shared counter had given out ids up to 123,456: continued above.
    let mut con = redis.connection().expect("redis");
    redis::cmd("SET")
        .arg("t3:transaction-id")
        .arg(123_456)
        .exec(&mut con)
        .expect("SET");
    let a = TestServer::start(node(&redis, "node-a", "t3:"));
    let b = TestServer::start(node(&redis, "node-b", "t3:"));
    // Each node has its share: slot 0 and slot 1, blocks of 1,000 dealt out in turn.
    redis.wait_for_nodes("t3:", &["node-a", "node-b"]);
    let start = serde_json::json!({"connectorId": 1, "idTag": "TAG", "meterStart": 0,
                                   "timestamp": "2026-11-28T10:00:00Z"});
    let mut ids = Vec::new();
    for (server, cp) in [(&a, "CP-TA"), (&b, "CP-TB"), (&a, "CP-TC"), (&b, "CP-TD")] {
        let mut client = connect(server, cp);
        boot(&mut client);
        let reply = call(&mut client, "t", "StartTransaction", start.clone());
        ids.push(reply[2]["transactionId"].as_i64().expect("an id"));
    }
    let blocks: Vec<i64> = ids.iter().map(|id| (id - 1) / 1000).collect();
    assert_ne!(blocks[0], blocks[1], "nodes share a block: {ids:?}");
    assert_eq!((blocks[0], blocks[1]), (blocks[2], blocks[3]), "{ids:?}");
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 4, "{ids:?}");
    assert!(ids.iter().all(|id| *id > 123_456), "{ids:?}");
    // The shared counter is only raised: to the highest id a node reserved.
    wait_until("the counter raised", || {
        redis
            .get("t3:transaction-id")
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|v| v >= ids.iter().copied().max().unwrap_or(0))
    });
}

#[test]
fn a_charge_point_accepted_on_one_node_is_accepted_on_another_without_booting() {
    if !server_available("redis-server", "redis-server") {
        return;
    }
    let redis = Redis::start(free_port());
    let a = TestServer::start(node(&redis, "node-a", "t4:"));
    let b = TestServer::start(node(&redis, "node-b", "t4:"));
    redis.wait_for_nodes("t4:", &["node-a", "node-b"]);

    let mut on_a = connect(&a, "CP-F");
    let transaction = boot_and_start_transaction(&mut on_a);
    wait_until("CP-F's state shared with its open transaction", || {
        redis
            .get("t4:state:CP-F")
            .is_some_and(|record| record.contains(&format!("\"open_transaction\":{transaction}")))
    });
    drop(on_a);

    // Node B never saw it boot: its first message (sent at once, before Redis answered B) is
    // held until B knows, then answered like every later one.
    let mut on_b = connect(&b, "CP-F");
    resume_without_boot(&mut on_b, transaction);
    let view = http(b.admin(), "GET", "/api/v1/chargepoints/CP-F", None, None).json();
    assert_eq!(view["registration"], "accepted", "{view}");
    assert_eq!(view["boot"]["chargePointVendor"], "Acme", "{view}");
    assert_eq!(view["open_transaction"], serde_json::Value::Null, "{view}");

    // A charge point nobody accepted is still refused on B (held, then SecurityError).
    let mut stranger = connect(&b, "CP-NEVER-BOOTED");
    let status =
        serde_json::json!({"connectorId": 1, "errorCode": "NoError", "status": "Available"});
    let reply = call(&mut stranger, "s", "StatusNotification", status);
    assert_eq!(reply[2], "SecurityError", "{reply}");
}

#[test]
fn redis_frozen_for_ten_seconds_under_traffic_loses_nothing_acknowledged() {
    if !server_available("redis-server", "redis-server") {
        return;
    }
    let redis = Redis::start(free_port());
    let (dir, journal, mut config) = with_events_stream(&redis, "events", "t5:");
    config.events.ack_after_write = true;
    if let Some(cluster) = config.cluster.as_mut() {
        // Every line of the outage waits for Redis (Heartbeats included); billing answers
        // wait for the stream at most this long, then are refused (sent again after).
        cluster.buffer = 1_000_000;
        cluster.events_ack_timeout = Duration::from_secs(2);
    }
    let a = TestServer::start(config);
    redis.wait_for_nodes("t5:", &["node-a"]);
    let journal_lines = || file_lines(&journal);

    let mut first = connect(&a, "CP-E1");
    let transaction = boot_and_start_transaction(&mut first);
    wait_until("the boot on the stream", || {
        redis
            .stream_lines("t5:events")
            .iter()
            .any(|l| l.contains("BootNotification"))
    });

    // Redis stops answering (SIGSTOP) for 10 s while charge points keep talking.
    redis.freeze(true);
    let frozen = std::time::Instant::now();
    let mut second = connect(&a, "CP-E2");
    boot(&mut second);
    // A billing message is journaled, but its answer waits for the stream: refused.
    let meter = serde_json::json!({"connectorId": 1, "transactionId": transaction, "meterValue": [
        {"timestamp": "2026-11-28T10:20:00Z", "sampledValue": [{"value": "2500"}]}]});
    let refused = call(&mut first, "m0", "MeterValues", meter);
    assert_eq!(refused[2], "InternalError", "{refused}");
    let mut heartbeats = 0;
    let mut degraded = false;
    while frozen.elapsed() < Duration::from_secs(10) {
        let reply = call(&mut second, "hb", "Heartbeat", serde_json::json!({}));
        assert_eq!(reply[0], 3, "served while Redis is frozen: {reply}");
        heartbeats += 1;
        if !degraded && heartbeats % 50 == 0 {
            degraded = http(a.admin(), "GET", "/health", None, None).json()["status"] == "degraded";
        }
    }
    assert!(degraded, "/health said degraded while Redis was frozen");
    redis.freeze(false);
    // The charge point sends its billing messages again: acknowledged now.
    resume_without_boot(&mut first, transaction); // MeterValues, StopTransaction

    // Everything the journal holds reaches the stream, once (the buffer kept the outage's
    // lines); the registry and the shared state catch up.
    wait_until("the stream has every journal line", || {
        let lines = redis.stream_lines("t5:events");
        !lines.is_empty() && same_lines(&lines, &journal_lines())
    });
    let lines = redis.stream_lines("t5:events");
    assert!(
        lines.iter().any(|l| l.contains("StopTransaction")),
        "the acknowledged StopTransaction is on the stream"
    );
    eprintln!(
        "{} journal lines on the stream after the outage ({heartbeats} Heartbeats)",
        lines.len()
    );
    wait_until("CP-E2 replayed into the registry", || {
        redis.owner("t5:cp:CP-E2").as_deref() == Some("node-a")
    });
    wait_until("CP-E1's shared state without an open transaction", || {
        redis
            .get("t5:state:CP-E1")
            .is_some_and(|record| !record.contains("open_transaction"))
    });
    wait_until("/health healthy again", || {
        http(a.admin(), "GET", "/health", None, None).json()["status"] == "healthy"
    });
    drop((first, second));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_empty_registry_page_is_an_empty_list_and_calls_go_on() {
    if !server_available("redis-server", "redis-server") {
        return;
    }
    let redis = Redis::start(free_port());
    let a = TestServer::start(node(&redis, "node-a", "t9:"));
    let b = TestServer::start(node(&redis, "node-b", "t9:"));
    redis.wait_for_nodes("t9:", &["node-a", "node-b"]);
    let page = |after: &str| {
        let reply = http(
            b.admin(),
            "GET",
            &format!("/api/v1/cluster/chargepoints{after}"),
            None,
            None,
        );
        assert_eq!(reply.status, 200, "{after}: {}", reply.body);
        reply.json()
    };
    // No charge point yet: an empty page, not 503.
    let empty = page("");
    assert_eq!(empty["chargepoints"], serde_json::json!([]), "{empty}");
    assert_eq!(empty["count"], 0, "{empty}");

    let mut client = connect(&a, "CP-P");
    boot(&mut client);
    wait_until("CP-P registered", || {
        redis.owner("t9:cp:CP-P").as_deref() == Some("node-a")
    });
    assert_eq!(page("")["count"], 1);
    // Past the last one: empty too, and a call through node B right after still goes through.
    for _ in 0..2 {
        let past = page("?after=CP-P");
        assert_eq!(past["chargepoints"], serde_json::json!([]), "{past}");
        let api = std::thread::spawn({
            let admin = b.admin();
            move || {
                http(
                    admin,
                    "POST",
                    "/api/v1/chargepoints/CP-P/calls",
                    None,
                    Some(r#"{"action": "Reset", "payload": {"type": "Soft"}}"#),
                )
            }
        });
        let reset = next_json(&mut client);
        assert_eq!(reset[2], "Reset", "{reset}");
        let answer = serde_json::json!([3, reset[1], {"status": "Accepted"}]).to_string();
        client
            .send(tungstenite::Message::text(answer))
            .expect("answer");
        let reply = api.join().expect("API thread");
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
}
