//! `[cluster]` when Redis loses its data (a real `redis-server` without persistence, killed and
//! started again empty, or FLUSHALL): transaction ids never repeat across the nodes, since
//! each node gives out only its own share from its own durable file; and each node writes its
//! charge points back into the registry, so operator calls through another node reach them.
//!
//! Needs `redis-server` (Debian's package). Without it the tests say so loudly and pass, except
//! when `OCPP_REQUIRE_SERVERS` is set (as `.ci/run` does), where they fail.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use common::redis_server::{Redis, cluster_node};
use common::*;
use ocpp_gateway::config::Config;
use serde_json::json;

/// StartTransactions each client sends at most (the test stops them sooner).
const MAX_STARTS: usize = 5_000;
/// Ids the clients must have received in each phase before the next one.
const PER_PHASE: usize = 40;

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ocpp-redis-loss-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// A node of the cluster `prefix` with its transaction id file in `dir`.
fn node(redis: &Redis, name: &str, prefix: &str, dir: &Path) -> Config {
    cluster_node(redis, (name, prefix), dir, test_config())
}

/// A charge point that boots, then starts (and stops) transactions until `stop` is set,
/// sending each transactionId it received (with its node) into `ids`.
fn start_transactions(
    server: &TestServer,
    node: &'static str,
    cp: String,
    stop: &AtomicBool,
    ids: &mpsc::Sender<(&'static str, i64)>,
) {
    let mut client = connect(server, &cp);
    boot(&mut client);
    for n in 0..MAX_STARTS {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let start = json!({"connectorId": 1, "idTag": "TAG", "meterStart": n,
                           "timestamp": "2026-12-06T10:00:00Z"});
        let reply = call(&mut client, &format!("t{n}"), "StartTransaction", start);
        assert_eq!(
            reply[0], 3,
            "{cp}: every StartTransaction answered: {reply}"
        );
        let id = reply[2]["transactionId"].as_i64().expect("an id");
        let stop_it = json!({"transactionId": id, "meterStop": n + 1,
                             "timestamp": "2026-12-06T10:01:00Z"});
        assert_eq!(
            call(&mut client, &format!("s{n}"), "StopTransaction", stop_it)[0],
            3
        );
        if ids.send((node, id)).is_err() {
            return;
        }
    }
}

/// Receives `n` more ids (each within the watchdog) into `all`.
fn receive(ids: &mpsc::Receiver<(&'static str, i64)>, n: usize, all: &mut Vec<(&str, i64)>) {
    for _ in 0..n {
        all.push(ids.recv_timeout(WATCHDOG).expect("StartTransactions go on"));
    }
}

#[test]
fn transaction_ids_never_repeat_whatever_redis_loses() {
    if !server_available("redis-server", "redis-server") {
        return;
    }
    let dir = scratch("ids");
    let port = free_port();
    let redis = Redis::start(port);
    let a = TestServer::start(node(&redis, "node-a", "l1:", &dir));
    let b = TestServer::start(node(&redis, "node-b", "l1:", &dir));
    redis.wait_for_nodes("l1:", &["node-a", "node-b"]);

    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    let mut all = Vec::new();
    let redis = std::thread::scope(|scope| {
        for (server, node) in [(&a, "node-a"), (&b, "node-b")] {
            for c in 0..2 {
                let (stop, tx) = (&stop, tx.clone());
                scope.spawn(move || {
                    start_transactions(server, node, format!("CP-{node}-{c}"), stop, &tx);
                });
            }
        }
        receive(&rx, PER_PHASE, &mut all);
        // Killed (SIGKILL) under load: ids go on without Redis.
        drop(redis);
        receive(&rx, PER_PHASE, &mut all);
        // Back empty (no persistence), while the StartTransactions go on.
        let redis = Redis::start(port);
        receive(&rx, PER_PHASE, &mut all);
        redis.wait_for_nodes("l1:", &["node-a", "node-b"]);
        receive(&rx, PER_PHASE, &mut all);
        // FLUSHALL on the same server.
        redis.flush_all();
        receive(&rx, PER_PHASE, &mut all);
        redis.wait_for_nodes("l1:", &["node-a", "node-b"]);
        receive(&rx, PER_PHASE, &mut all);
        stop.store(true, Ordering::Relaxed);
        redis
    });
    all.extend(rx.try_iter());

    // Redis empty again, and node A restarted: it continues in its own share, from its file.
    drop(redis);
    let redis = Redis::start(port);
    drop(a);
    let a = TestServer::start(node(&redis, "node-a", "l1:", &dir));
    for (server, name) in [(&a, "node-a"), (&b, "node-b")] {
        let mut client = connect(server, &format!("CP-{name}-after"));
        boot(&mut client);
        let start = json!({"connectorId": 1, "idTag": "TAG", "meterStart": 0,
                           "timestamp": "2026-12-06T11:00:00Z"});
        let reply = call(&mut client, "t", "StartTransaction", start);
        all.push((name, reply[2]["transactionId"].as_i64().expect("an id")));
    }

    let unique: HashSet<i64> = all.iter().map(|(_, id)| *id).collect();
    assert_eq!(
        unique.len(),
        all.len(),
        "a transactionId given twice: {all:?}"
    );
    // Each node stays in its own slot: blocks of 1,000 never shared.
    let blocks = |name: &str| -> HashSet<i64> {
        all.iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, id)| (id - 1) / 1000 % 16)
            .collect()
    };
    let (slots_a, slots_b) = (blocks("node-a"), blocks("node-b"));
    assert_eq!((slots_a.len(), slots_b.len()), (1, 1), "{all:?}");
    assert_ne!(slots_a, slots_b, "{all:?}");
    eprintln!(
        "{} transactionIds from two nodes across a Redis kill, an empty restart, a FLUSHALL \
         and a node restart: all distinct",
        all.len()
    );
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Charge points connected to node A in the registry test.
const CHARGE_POINTS: usize = 30;

/// A Reset through `admin`'s API to `id`, answered by `client`: the HTTP status.
fn operator_reset(admin: std::net::SocketAddr, id: &str, client: &mut Client) -> u16 {
    let path = format!("/api/v1/chargepoints/{id}/calls");
    let api = std::thread::spawn(move || {
        let body = json!({"action": "Reset", "payload": {"type": "Soft"}}).to_string();
        http(admin, "POST", &path, None, Some(&body))
    });
    let call = next_json(client);
    assert_eq!(
        (call[0].as_i64(), call[2].as_str()),
        (Some(2), Some("Reset")),
        "{call}"
    );
    let answer = json!([3, call[1], {"status": "Accepted"}]).to_string();
    client
        .send(tungstenite::Message::text(answer))
        .expect("answer sent");
    let reply = api.join().expect("API thread");
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.status
}

/// Whether every one of `ids` is back in the registry, held by `owner(id)`, in the set of
/// identities, with its state record (accepted).
fn all_back(redis: &Redis, ids: &[String], owner: impl Fn(&str) -> &'static str) -> bool {
    let Some(mut con) = redis.connection() else {
        return false;
    };
    let listed: usize = redis::cmd("ZCARD")
        .arg("l2:chargepoints")
        .query(&mut con)
        .unwrap_or(0);
    listed == ids.len()
        && ids.iter().all(|id| {
            redis.owner(&format!("l2:cp:{id}")).as_deref() == Some(owner(id))
                && redis.get(&format!("l2:state:{id}")).is_some()
        })
}

#[test]
fn the_registry_is_written_again_after_redis_lost_it() {
    if !server_available("redis-server", "redis-server") {
        return;
    }
    let dir = scratch("registry");
    let port = free_port();
    let mut redis = Redis::start(port);
    let a = TestServer::start(node(&redis, "node-a", "l2:", &dir));
    let b = TestServer::start(node(&redis, "node-b", "l2:", &dir));
    redis.wait_for_nodes("l2:", &["node-a", "node-b"]);
    let ids: Vec<String> = (0..CHARGE_POINTS).map(|i| format!("CP-R{i:03}")).collect();
    let mut clients: Vec<Client> = ids
        .iter()
        .map(|id| {
            let mut client = connect(&a, id);
            boot(&mut client);
            client
        })
        .collect();
    wait_until("all registered on node A", || {
        all_back(&redis, &ids, |_| "node-a")
    });
    assert_eq!(operator_reset(b.admin(), &ids[0], &mut clients[0]), 200);

    // Killed and started again empty (no persistence): a new run id.
    drop(redis);
    redis = Redis::start(port);
    wait_until("all back after an empty restart", || {
        all_back(&redis, &ids, |_| "node-a")
    });
    redis.wait_for_nodes("l2:", &["node-a", "node-b"]);
    assert_eq!(operator_reset(b.admin(), &ids[1], &mut clients[1]), 200);

    // FLUSHALL: the same server (same run id), the node's key gone.
    redis.flush_all();
    wait_until("all back after FLUSHALL", || {
        all_back(&redis, &ids, |_| "node-a")
    });
    redis.wait_for_nodes("l2:", &["node-a", "node-b"]);
    assert_eq!(operator_reset(b.admin(), &ids[2], &mut clients[2]), 200);

    // A newer connection of one identity on node B is not overwritten by A's rewrite.
    let moved = &ids[3];
    let mut on_b = connect(&b, moved);
    boot(&mut on_b);
    let close = expect_close(&mut clients[3]).expect("node A closes the older connection");
    assert_eq!(close.reason, "taken over");
    wait_until("the moved one is node B's", || {
        redis.owner(&format!("l2:cp:{moved}")).as_deref() == Some("node-b")
    });
    redis.flush_all();
    let owner = |id: &str| if id == moved { "node-b" } else { "node-a" };
    wait_until(
        "all back after a second FLUSHALL, the moved one as node B's",
        || all_back(&redis, &ids, owner),
    );
    assert_eq!(operator_reset(b.admin(), &ids[4], &mut clients[4]), 200);

    // SCRIPT FLUSH: the registry scripts are gone (NOSCRIPT); loaded again, nothing lost.
    let mut con = redis.connection().expect("redis");
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .exec(&mut con)
        .expect("SCRIPT FLUSH");
    let mut late = connect(&a, "CP-LATE");
    boot(&mut late);
    wait_until("a connect after SCRIPT FLUSH registered", || {
        redis.owner("l2:cp:CP-LATE").as_deref() == Some("node-a")
    });
    drop((clients, on_b, late, a, b));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_nodes_configured_with_one_slot_give_out_no_id_twice() {
    if !server_available("redis-server", "redis-server") {
        return;
    }
    let dir = scratch("conflict");
    let redis = Redis::start(free_port());
    let with_slot = |name: &str| {
        let mut config = node(&redis, name, "l3:", &dir);
        if let Some(cluster) = config.cluster.as_mut() {
            cluster.id_slot = Some(5);
        }
        config
    };
    let a = TestServer::start(with_slot("node-a"));
    redis.wait_for_nodes("l3:", &["node-a"]);
    let b = TestServer::start(with_slot("node-b"));
    redis.wait_for_nodes("l3:", &["node-b"]);
    assert_eq!(
        redis.owner_of_field("l3:id-slots", "5").as_deref(),
        Some("node-a")
    );
    let start = json!({"connectorId": 1, "idTag": "TAG", "meterStart": 0,
                       "timestamp": "2026-12-06T12:00:00Z"});
    let mut on_a = connect(&a, "CP-SA");
    boot(&mut on_a);
    let reply = call(&mut on_a, "t", "StartTransaction", start.clone());
    let id = reply[2]["transactionId"]
        .as_i64()
        .expect("node A gives an id");
    assert_eq!((id - 1) / 1000 % 16, 5, "{id}");
    // Node B's claim is refused: no id, /health says why.
    let mut on_b = connect(&b, "CP-SB");
    boot(&mut on_b);
    let reply = call(&mut on_b, "t", "StartTransaction", start);
    assert_eq!(
        (reply[0].as_i64(), reply[2].as_str()),
        (Some(4), Some("InternalError")),
        "{reply}"
    );
    let health = http(b.admin(), "GET", "/health", None, None).json();
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health["problems"].to_string().contains("slot"), "{health}");
    drop((on_a, on_b, a, b));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_node_that_lost_its_counter_file_skips_far_ahead_in_its_slot() {
    if !server_available("redis-server", "redis-server") {
        return;
    }
    let dir = scratch("lost-file");
    let redis = Redis::start(free_port());
    let start = json!({"connectorId": 1, "idTag": "TAG", "meterStart": 0,
                       "timestamp": "2026-12-06T12:00:00Z"});
    let first_id = |server: &TestServer, cp: &str| {
        let mut client = connect(server, cp);
        boot(&mut client);
        let reply = call(&mut client, "t", "StartTransaction", start.clone());
        reply[2]["transactionId"].as_i64().expect("an id")
    };
    let a = TestServer::start(node(&redis, "node-a", "l4:", &dir));
    redis.wait_for_nodes("l4:", &["node-a"]);
    let before = first_id(&a, "CP-L1");
    drop(a);
    std::fs::remove_file(dir.join("l4:node-a.transaction-id")).expect("the file existed");
    let a = TestServer::start(node(&redis, "node-a", "l4:", &dir));
    redis.wait_for_nodes("l4:", &["node-a"]);
    let after = first_id(&a, "CP-L2");
    assert!(after >= before + 100 * 16 * 1000, "{before} then {after}");
    assert_eq!(
        (after - 1) / 1000 % 16,
        (before - 1) / 1000 % 16,
        "the same slot"
    );
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}
