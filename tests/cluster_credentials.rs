//! `[cluster]` on a real `redis-server` started by the test: a charge point's password set
//! through one node's API opens every node, a node that starts later included (it keeps the key
//! in its own credentials file); a wrong key still opens none.
//!
//! Needs `redis-server` (Debian's package). Without it the test says so loudly and passes,
//! except when `OCPP_REQUIRE_SERVERS` is set (as `.ci/run` does), where it fails.

mod common;

use common::pki::{basic, connect_as, credentials_file};
use common::redis_server::{Redis, node};
use common::*;

#[test]
fn a_key_set_on_one_node_opens_every_node() {
    if !server_available("redis-server", "redis-server") {
        return;
    }
    let redis = Redis::start(free_port());
    let dir = std::env::temp_dir().join(format!("ocpp-cluster-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("credentials directory");
    // Each node with a credentials file of its own, empty at start.
    let with_basic_auth = |name: &str| {
        let file = dir.join(format!("credentials-{name}"));
        credentials_file(&file, &[]);
        let mut config = node(&redis, name, "t6:");
        config.security.profile = ocpp_gateway::security::Profile::BasicAuth;
        config.security.credentials = Some(file);
        config
    };
    let a = TestServer::start(with_basic_auth("node-a"));
    let b = TestServer::start(with_basic_auth("node-b"));
    redis.wait_for_nodes("t6:", &["node-a", "node-b"]);
    let key = b"0123456789abcdef";
    let authorization = basic("CP-K", key);
    assert!(connect_as(b.addr, "CP-K", Some(&authorization)).is_err());

    let set = http(
        a.admin(),
        "PUT",
        "/api/v1/chargepoints/CP-K/password",
        None,
        Some(r#"{"password": "0123456789abcdef"}"#),
    );
    assert_eq!(set.status, 200, "{}", set.body);
    wait_until("node B accepts the key set on node A", || {
        connect_as(b.addr, "CP-K", Some(&authorization)).is_ok()
    });
    // A node that starts later reads the keys already set, and keeps them in its own file.
    let c = TestServer::start(with_basic_auth("node-c"));
    wait_until("node C accepts it too", || {
        connect_as(c.addr, "CP-K", Some(&authorization)).is_ok()
    });
    let file = std::fs::read_to_string(dir.join("credentials-node-c")).unwrap_or_default();
    assert!(file.contains("CP-K\t"), "{file}");
    assert!(connect_as(c.addr, "CP-K", Some(&basic("CP-K", b"a wrong key here"))).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
