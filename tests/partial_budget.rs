//! Many connections each holding an unfinished fragmented message: the loop's
//! `websocket.partial_message_budget` stops reading those that would hold more, each is closed
//! with 1009 once `websocket.partial_message_timeout` has passed, what they held is freed, and a
//! well-behaved charge point is served throughout.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[test]
fn unfinished_messages_are_paused_then_closed_with_1009_and_others_are_served() {
    let mut config = test_config();
    config.websocket.max_message_size = 4096;
    config.websocket.partial_message_budget = 16 * 1024;
    config.websocket.partial_message_timeout = Duration::from_millis(1500);
    let server = TestServer::start(config);

    let mut good = connect(&server, "CP-good");
    boot(&mut good);

    let fragment = vec![b'x'; 3000];
    let mut holders: Vec<RawClient> = (0..24)
        .map(|i| RawClient::connect(&server, &format!("CP-hold-{i}")))
        .collect();
    for client in &mut holders {
        client.send_frame(TEXT, &fragment, false);
    }
    // 24 x 3000 bytes is over two loops' 16 KiB budgets: once a loop is over, its connections
    // that hold a fragment and send more are not read.
    server.wait_for("fragments held", |s| s.buffered_read_bytes >= 2 * 16 * 1024);
    for client in &mut holders {
        client.send_frame(CONTINUATION, b"more", false);
    }
    let paused = server.wait_for("holders paused", |s| s.budget_pauses > 0);
    assert!(paused.budget_pauses <= 24, "{paused:?}");

    // The well-behaved charge point is answered while the budget is spent.
    let reply = call(&mut good, "hb-1", "Heartbeat", json!({}));
    assert_eq!(reply[0], 3);

    for client in &mut holders {
        assert_eq!(client.read_close_code(), 1009);
    }
    drop(holders);
    let stats = server.wait_for("holders gone, their bytes freed", |s| {
        s.connections == 1 && s.buffered_read_bytes == 0
    });
    assert_eq!(stats.oversize_messages, 24);
    let reply = call(&mut good, "hb-2", "Heartbeat", json!({}));
    assert_eq!(reply[0], 3);
}
