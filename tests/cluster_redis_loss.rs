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
use std::time::Duration;

use common::redis_server::Redis;
use common::*;
use ocpp_gateway::config::{ClusterConfig, Config};
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
    let mut config = test_config();
    config.server.node_id = name.into();
    config.ocpp.transaction_id_file = Some(dir.join(format!("{name}.transaction-id")));
    config.cluster = Some(ClusterConfig {
        redis_url: redis.url(),
        prefix: prefix.into(),
        node_ttl: Duration::from_secs(3),
        buffer: 1000,
        events: false,
        events_maxlen: 10_000,
        id_slot: None,
        id_slots: 16,
    });
    config
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
