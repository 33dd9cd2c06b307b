//! Never down a profile: an identity with a credential is refused (403) on a profile 0
//! listener beside secured ones; one that authenticated at profile 1 is, after a restart on a
//! gateway that has no credentials at all, closed with 1008 on a profile 0 listener (the
//! profile is remembered in the state file); `security.min_profile` refuses everyone below it;
//! a credentials line with `min_profile=0` lets its identity use the open port again (and an
//! authenticated holder is still never taken over from there). In cluster mode the profile
//! travels in the Redis state record: a node that never saw the charge point closes it too
//! (needs `redis-server`; skipped loudly without it unless `OCPP_REQUIRE_SERVERS` is set).

mod common;

use std::path::{Path, PathBuf};

use common::pki::{basic, connect_as, credentials_file};
use common::redis_server::{Redis, cluster_node};
use common::*;
use ocpp_gateway::config::{Config, ListenerConfig, Sinks};
use ocpp_gateway::security::Profile;
use serde_json::{Value, json};

const KEY: &[u8] = b"the-key-of-CP1-0123";

fn dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ocpp-floor-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Profile 1 on `server.listen` with credentials for `identities`, and an open (profile 0)
/// port beside it.
fn two_ports(dir: &Path, identities: &[&str]) -> Config {
    let credentials = dir.join("credentials");
    let entries: Vec<(&str, &[u8])> = identities.iter().map(|id| (*id, KEY)).collect();
    credentials_file(&credentials, &entries);
    let mut config = test_config();
    config.security.profile = Profile::BasicAuth;
    config.security.credentials = Some(credentials);
    config.extra_listeners.push(ListenerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        profile: Profile::Unsecured,
        proxy_protocol: false,
        tls_offload: false,
        protocols: config.ocpp.protocols,
    });
    config
}

fn status(result: Result<Client, tungstenite::Error>) -> u16 {
    match result {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("expected an HTTP answer, got {e}"),
        Ok(_) => 101,
    }
}

fn heartbeat_works(client: &mut Client) {
    assert_eq!(call(client, "hb", "Heartbeat", json!({}))[0], 3);
}

#[test]
fn authenticated_at_profile_1_never_served_on_profile_0_even_after_a_restart() {
    let dir = dir("remembered");
    let state = dir.join("state");
    let mut config = two_ports(&dir, &["CP1", "CP2"]);
    config.ocpp.state_file = Some(state.clone());
    config.events.sinks = Sinks::JOURNAL;
    config.events.path = dir.join("journal.jsonl");
    let mut server = TestServer::start(config);
    let open_port = server.server().local_addrs()[1];

    let mut client = connect_as(server.addr, "CP1", Some(&basic("CP1", KEY))).unwrap();
    boot(&mut client);
    drop(client);
    server.wait_for("CP1 gone", |s| s.connections == 0);
    // It has a credential: the loop refuses it on the open port, as it does CP2, which never
    // connected at all.
    assert_eq!(status(connect_as(open_port, "CP1", None)), 403);
    assert_eq!(status(connect_as(open_port, "CP2", None)), 403);
    server.wait_for("refusals counted", |s| s.profile_refusals == 2);
    server.stop();
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    let refused = journal
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["event"] == "refused" && l["reason"] == "profile_too_low")
        .count();
    assert_eq!(refused, 2, "{journal}");

    // The same state file under a gateway with only an open port and no credentials: the
    // processor remembers that CP1 authenticated at profile 1, and closes it right after the
    // upgrade. An identity it knows nothing of is served.
    let mut config = test_config();
    config.ocpp.state_file = Some(state);
    let server = TestServer::start(config);
    let mut intruder = connect_as(server.addr, "CP1", None).expect("the upgrade completes");
    let close = expect_close(&mut intruder).expect("a close frame");
    assert_eq!(u16::from(close.code), 1008, "{close:?}");
    let profile_too_low = ocpp_gateway::types::CloseCause::ProfileTooLow.index();
    server.wait_for("the close counted", |s| {
        s.profile_refusals == 1 && s.closes[profile_too_low] == 1
    });
    let detail = http(
        server.admin(),
        "GET",
        "/api/v1/chargepoints/CP1",
        None,
        None,
    )
    .json();
    assert_eq!(detail["connected"], false, "{detail}");
    assert_eq!(detail["authenticated_profile"], 1, "{detail}");
    let mut other = connect_as(server.addr, "CP9", None).unwrap();
    boot(&mut other);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_global_minimum_and_a_pinned_identity() {
    let dir = dir("settings");
    let mut config = two_ports(&dir, &["CP1", "CP4"]);
    config.security.min_profile = Profile::BasicAuth;
    // CP4's line pins profile 0: it may use the open port although it has a credential.
    let path = dir.join("credentials");
    let text = std::fs::read_to_string(&path).unwrap();
    let pinned: String = text
        .lines()
        .map(|l| {
            if l.starts_with("CP4\t") {
                format!("{l}\tmin_profile=0\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&path, pinned).unwrap();
    let server = TestServer::start(config);
    let open_port = server.server().local_addrs()[1];

    // Below the global minimum: refused, with or without a credential.
    assert_eq!(status(connect_as(open_port, "CP3", None)), 403);
    assert_eq!(status(connect_as(open_port, "CP1", None)), 403);
    server.wait_for("refusals counted", |s| s.profile_refusals == 2);

    // CP4 is pinned to 0: served on the open port, even after it authenticated at profile 1.
    let mut secured = connect_as(server.addr, "CP4", Some(&basic("CP4", KEY))).unwrap();
    boot(&mut secured);
    // ... but never taking over its authenticated connection.
    let mut intruder = connect_as(open_port, "CP4", None).expect("the upgrade completes");
    let close = expect_close(&mut intruder).expect("a close frame");
    assert_eq!(u16::from(close.code), 1008, "{close:?}");
    server.wait_for("takeover refused", |s| s.takeovers_refused == 1);
    heartbeat_works(&mut secured);
    drop(secured);
    server.wait_for("CP4 gone", |s| s.connections == 0);
    // The processor learns of the close from its loop a moment after the gauge drops; until
    // then a newcomer would be a refused takeover.
    let admin = server.admin();
    wait_until("the processor to see CP4 gone", || {
        let detail = http(admin, "GET", "/api/v1/chargepoints/CP4", None, None);
        detail.json()["connected"] == false
    });
    let mut open = connect_as(open_port, "CP4", None).expect("pinned to profile 0");
    heartbeat_works(&mut open);
    assert_eq!(server.stats().profile_refusals, 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn in_cluster_mode_the_profile_travels_through_redis() {
    if !server_available("redis-server", "redis-server") {
        return;
    }
    let redis = Redis::start(free_port());
    let dir = dir("cluster");
    let node = |name: &str, config: Config| cluster_node(&redis, (name, "pf:"), &dir, config);
    // Node A: profile 1 with CP-P's credential. Node B: an open port, no credentials at all.
    let mut secured = two_ports(&dir, &["CP-P"]);
    secured.extra_listeners.clear();
    let a = TestServer::start(node("node-a", secured));
    let b = TestServer::start(node("node-b", test_config()));
    redis.wait_for_nodes("pf:", &["node-a", "node-b"]);

    let mut on_a = connect_as(a.addr, "CP-P", Some(&basic("CP-P", KEY))).unwrap();
    boot(&mut on_a);
    wait_until("CP-P's state with its profile in Redis", || {
        redis
            .get("pf:state:CP-P")
            .is_some_and(|record| record.contains("\"profile\":1"))
    });
    drop(on_a);

    // B lets the upgrade through (it cannot know), then Redis tells it: closed with 1008.
    let mut on_b = connect_as(b.addr, "CP-P", None).expect("the upgrade completes");
    let close = expect_close(&mut on_b).expect("a close frame");
    assert_eq!(u16::from(close.code), 1008, "{close:?}");
    b.wait_for("the close counted", |s| s.profile_refusals == 1);
    let _ = std::fs::remove_dir_all(&dir);
}
