//! `cluster.events` on a real `redis-server` started by the test: the Redis stream is a sink
//! like the journal. Every event line reaches it (each charge point's lines in their order),
//! and a billing answer goes out only once Redis has its line: while Redis is frozen it is
//! refused after `cluster.events_ack_timeout`, and once a CALLRESULT came, the line is there.
//!
//! Needs `redis-server` (Debian's package). Without it the test says so loudly and passes,
//! except when `OCPP_REQUIRE_SERVERS` is set (as `.ci/run` does), where it fails.

mod common;

use std::time::Duration;

use common::redis_server::{Redis, file_lines, same_lines, with_events_stream};
use common::*;

/// The lines of one charge point, in their order.
fn of(lines: &[String], cp: &str) -> Vec<String> {
    let tag = format!("\"cp\":\"{cp}\"");
    lines.iter().filter(|l| l.contains(&tag)).cloned().collect()
}

#[test]
fn every_event_line_reaches_the_stream_and_billing_answers_wait_for_it() {
    if !server_available("redis-server", "redis-server") {
        return;
    }
    let redis = Redis::start(free_port());
    let (dir, journal, mut config) = with_events_stream(&redis, "stream", "t7:");
    config.events.ack_after_write = true;
    if let Some(cluster) = config.cluster.as_mut() {
        cluster.events_ack_timeout = Duration::from_secs(1);
    }
    let a = TestServer::start(config);
    redis.wait_for_nodes("t7:", &["node-a"]);
    let journal_lines = || file_lines(&journal);

    let mut one = connect(&a, "CP-S1");
    let mut two = connect(&a, "CP-S2");
    boot(&mut two);
    let transaction = boot_and_start_transaction(&mut one);
    for n in 0..40 {
        let status = serde_json::json!({"connectorId": 2, "errorCode": "NoError",
                                        "status": if n % 2 == 0 { "Available" } else { "Preparing" }});
        let client = if n % 2 == 0 { &mut one } else { &mut two };
        assert_eq!(
            call(client, &format!("s{n}"), "StatusNotification", status)[0],
            3
        );
    }
    // The same lines as the journal, none twice (once both have the last answers' lines:
    // lines of answers not held may reach a sink after the answer); each charge point's in
    // its order.
    let last = |lines: &[String]| {
        ["s38", "s39"].iter().all(|id| {
            let id = format!("\"id\":\"{id}\"");
            lines
                .iter()
                .any(|l| l.contains(&id) && l.contains("\"result\""))
        })
    };
    let (mut stream, mut journaled) = (Vec::new(), Vec::new());
    wait_until("the stream has the journal's lines", || {
        (stream, journaled) = (redis.stream_lines("t7:events"), journal_lines());
        last(&journaled) && same_lines(&stream, &journaled)
    });
    for cp in ["CP-S1", "CP-S2"] {
        assert_eq!(of(&stream, cp), of(&journaled, cp), "{cp}'s lines in order");
    }

    // Redis stops answering: the StopTransaction is journaled at once, but its answer waits
    // for the stream and is refused after cluster.events_ack_timeout.
    redis.freeze(true);
    let stop = serde_json::json!({"transactionId": transaction, "meterStop": 9000,
                                  "timestamp": "2026-11-28T11:00:00Z", "reason": "Local"});
    let refused = call(&mut one, "stop-1", "StopTransaction", stop.clone());
    assert_eq!(
        (refused[0].as_i64(), refused[2].as_str()),
        (Some(4), Some("InternalError")),
        "{refused}"
    );
    // Non-billing messages are served meanwhile.
    let status =
        serde_json::json!({"connectorId": 2, "errorCode": "NoError", "status": "Available"});
    assert_eq!(call(&mut two, "during", "StatusNotification", status)[0], 3);
    redis.freeze(false);

    // The charge point sends it again: acknowledged, and its line is on the stream already.
    let answer = call(&mut one, "stop-2", "StopTransaction", stop);
    assert_eq!(answer[0], 3, "{answer}");
    let stream = redis.stream_lines("t7:events");
    assert!(
        stream
            .iter()
            .any(|l| l.contains("\"id\":\"stop-2\"") && l.contains("StopTransaction")),
        "the acknowledged StopTransaction is on the stream when its answer comes"
    );
    // What waited in the buffer reached it too: nothing was lost.
    wait_until("the stream caught up", || {
        same_lines(&redis.stream_lines("t7:events"), &journal_lines())
    });
    let stats = a.stats();
    assert_eq!(stats.cluster_events_lost, 0);
    assert!(stats.cluster_events_refused >= 1);
    drop((one, two));
    let _ = std::fs::remove_dir_all(&dir);
}
