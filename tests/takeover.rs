//! The same identity connecting again: the new connection wins, the old one is closed with
//! 1000 and a reason naming the takeover, and nothing of the old one stays behind.

mod common;

use common::*;
use serde_json::json;

#[test]
fn newer_connection_replaces_the_older() {
    let server = TestServer::start(test_config());
    let mut old = connect(&server, "CP-dup");
    boot(&mut old);

    let mut new = connect(&server, "CP-dup");
    let frame = expect_close(&mut old).expect("the old connection gets a close frame");
    assert_eq!(u16::from(frame.code), 1000);
    assert!(frame.reason.contains("replaced"), "{}", frame.reason);

    boot(&mut new);
    let reply = call(&mut new, "hb-1", "Heartbeat", json!({}));
    assert_eq!(reply[1], "hb-1");
    let stats = server.wait_for("the old connection to be gone", |s| s.connections == 1);
    assert_eq!(stats.takeovers, 1);

    // Repeated takeovers leave exactly one connection.
    let mut last = new;
    for _ in 0..5 {
        let next = connect(&server, "CP-dup");
        let _ = expect_close(&mut last);
        last = next;
    }
    boot(&mut last);
    let stats = server.wait_for("one connection left", |s| s.connections == 1);
    assert_eq!(stats.takeovers, 6);
}
