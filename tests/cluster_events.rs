//! `cluster.events` on a real `redis-server` started by the test: every journal line on the
//! Redis stream, in order, none twice, across the journal's rotations.
//!
//! Needs `redis-server` (Debian's package). Without it the test says so loudly and passes,
//! except when `OCPP_REQUIRE_SERVERS` is set (as `.ci/run` does), where it fails.

mod common;

use std::time::Duration;

use common::redis_server::{Redis, with_events_stream};
use common::*;

#[test]
fn the_events_stream_follows_the_journal_across_rotations() {
    if !server_available("redis-server", "redis-server") {
        return;
    }
    let redis = Redis::start(free_port());
    let (dir, journal, mut config) = with_events_stream(&redis, "rotate", "t7:");
    config.events.max_file_bytes = 4096;
    config.events.max_files = 50;
    config.events.min_retention = Duration::ZERO;
    let a = TestServer::start(config);
    let mut client = connect(&a, "CP-ROT");
    boot(&mut client);
    for n in 0..60 {
        let status = serde_json::json!({"connectorId": 1, "errorCode": "NoError",
                                        "status": if n % 2 == 0 { "Available" } else { "Preparing" }});
        assert_eq!(
            call(&mut client, &format!("s{n}"), "StatusNotification", status)[0],
            3
        );
    }
    // Every file, oldest first: the stream must hold exactly their lines, in that order.
    let journal_lines = || -> Vec<String> {
        let mut files = vec![journal.clone()];
        let mut n = 1;
        while ocpp_gateway::journal::rotated_name(&journal, n).exists() {
            files.push(ocpp_gateway::journal::rotated_name(&journal, n));
            n += 1;
        }
        files
            .iter()
            .rev()
            .flat_map(|f| {
                std::fs::read_to_string(f)
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    wait_until("the stream equals the rotated journal", || {
        let lines = journal_lines();
        lines.len() > 120 && redis.stream_lines("t7:events") == lines
    });
    assert!(
        ocpp_gateway::journal::rotated_name(&journal, 2).exists(),
        "the journal rotated at least twice"
    );
    drop(client);
    let _ = std::fs::remove_dir_all(&dir);
}
