//! Three gateway processes sharing one `redis-server` behind HAProxy with the deployment kit's
//! configuration, as an operator runs them: 300 charge points connect through HAProxy and
//! boot; any node's API lists all of them with their owning node; a call made on one node
//! reaches a charge point held by another; a charge point that reconnects to another node is
//! taken over there (no duplicate); after `kill -9` of a node its charge points reconnect
//! through HAProxy to the others and are accepted without booting again, and calls reach them
//! at their new node; transaction ids are unique across the nodes.
//!
//! Needs `redis-server` and `haproxy` (Debian's packages). Without them the test says so
//! loudly and passes, except when `OCPP_REQUIRE_SERVERS` is set (as `.ci/run` does).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::haproxy::Haproxy;
use common::redis_server::Redis;
use common::*;
use serde_json::{Value, json};

const CHARGE_POINTS: usize = 300;
/// The issue's bound for a killed node's charge points to be accepted elsewhere.
const FAILOVER_BOUND: Duration = Duration::from_secs(30);

struct Node {
    process: GatewayProcess,
    admin: SocketAddr,
}

impl Drop for Node {
    /// A failing test must not leave gateways running.
    fn drop(&mut self) {
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
    }
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ocpp-three-nodes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Node `index` (1..=3): its own directory (state file), PROXY protocol, one loop.
fn start_node(dir: &std::path::Path, index: usize, redis: &Redis) -> Node {
    let dir = dir.join(format!("node{index}"));
    std::fs::create_dir_all(&dir).expect("node directory");
    let (listen, admin) = (free_port(), free_port());
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{listen}\"\nworkers = 1\npin_cores = false\n\
             proxy_protocol = true\nnode_id = \"node{index}\"\n\
             [processor]\nthreads = 1\n\
             [ocpp]\nmax_calls_per_second = 0\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\n[events]\nsink = \"none\"\n\
             [cluster]\nredis_url = \"{url}\"\nprefix = \"t3:\"\nnode_ttl = \"3s\"\n",
            url = redis.url(),
        ),
    )
    .expect("config written");
    let process = GatewayProcess::start(&config);
    Node {
        process,
        admin: format!("127.0.0.1:{admin}").parse().unwrap(),
    }
}

/// The cluster listing of `admin`: identity -> (owning node, connected).
fn cluster_listing(admin: SocketAddr) -> BTreeMap<String, (String, bool)> {
    let mut all = BTreeMap::new();
    let mut after = String::new();
    loop {
        let reply = http(
            admin,
            "GET",
            &format!("/api/v1/cluster/chargepoints?limit=1000&after={after}"),
            None,
            None,
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        let page = reply.json();
        for entry in page["chargepoints"].as_array().expect("a list") {
            let id = entry["id"].as_str().unwrap().to_owned();
            let node = entry["node"].as_str().unwrap_or_default().to_owned();
            all.insert(id, (node, entry["connected"] == true));
        }
        match page["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => return all,
        }
    }
}

/// Connects `id` through HAProxy, retrying while HAProxy still sends it to a dead node, until
/// `deadline`.
fn connect_through(front: SocketAddr, id: &str, deadline: Instant) -> Client {
    loop {
        match try_connect(front, &format!("ws://{front}/ocpp/{id}"), "ocpp1.6") {
            Ok((client, _)) => return client,
            Err(e) => assert!(Instant::now() < deadline, "{id} cannot reconnect: {e}"),
        }
        std::thread::yield_now();
    }
}

/// A call of the operator API on `admin` to `id`, answered by `client` (the charge point):
/// returns the HTTP status and body.
fn operator_reset(admin: SocketAddr, id: &str, client: &mut Client) -> (u16, Value) {
    let path = format!("/api/v1/chargepoints/{id}/calls");
    let api = std::thread::spawn(move || {
        let body = json!({"action": "Reset", "payload": {"type": "Soft"}}).to_string();
        http(admin, "POST", &path, None, Some(&body))
    });
    let call = match client.read() {
        Ok(tungstenite::Message::Text(text)) => serde_json::from_str::<Value>(&text).unwrap(),
        other => {
            let reply = api.join().expect("API thread");
            panic!(
                "no CALL reached {id} ({other:?}); the API answered {} {}",
                reply.status, reply.body
            );
        }
    };
    assert_eq!(call[0], 2, "a CALL: {call}");
    assert_eq!(call[2], "Reset", "{call}");
    let answer = json!([3, call[1], {"status": "Accepted"}]).to_string();
    client
        .send(tungstenite::Message::text(answer))
        .expect("answer sent");
    let reply = api.join().expect("API thread");
    (reply.status, reply.json())
}

#[test]
fn three_nodes_behind_haproxy_act_as_one() {
    if !server_available("redis-server", "redis-server") || !server_available("haproxy", "haproxy")
    {
        return;
    }
    let dir = scratch();
    let redis = Redis::start(free_port());
    let mut nodes: Vec<Node> = (1..=3).map(|i| start_node(&dir, i, &redis)).collect();
    let haproxy = Haproxy::start(std::array::from_fn(|i| {
        (nodes[i].process.addr, nodes[i].admin.port())
    }));
    redis.wait_for_nodes("t3:", &["node1", "node2", "node3"]);
    wait_until("all three nodes up in HAProxy", || {
        (1..=3).all(|i| haproxy.status(&format!("node{i}")).as_deref() == Some("UP"))
    });
    let front = haproxy.listen;
    let far = Instant::now() + FAILOVER_BOUND;

    // 300 charge points through HAProxy: each boots and starts a transaction.
    let ids: Vec<String> = (0..CHARGE_POINTS).map(|i| format!("CP3-{i:04}")).collect();
    let mut clients: Vec<Client> = Vec::with_capacity(CHARGE_POINTS);
    let mut transactions = Vec::new();
    for id in &ids {
        let mut client = connect_through(front, id, far);
        transactions.push(boot_and_start_transaction(&mut client));
        clients.push(client);
    }

    // Any node's API lists all of them, each with its owning node (spread by leastconn).
    wait_until("all 300 registered", || {
        let all = cluster_listing(nodes[0].admin);
        all.len() == CHARGE_POINTS && all.values().all(|(node, up)| *up && !node.is_empty())
    });
    let listing = cluster_listing(nodes[0].admin);
    assert_eq!(
        listing,
        cluster_listing(nodes[2].admin),
        "same view on every node"
    );
    let held_by = |node: &str| -> Vec<usize> {
        (0..CHARGE_POINTS)
            .filter(|i| listing[&ids[*i]].0 == node)
            .collect()
    };
    for node in ["node1", "node2", "node3"] {
        assert!(!held_by(node).is_empty(), "{node} holds none: {listing:?}");
    }

    // A call made on node1 for a charge point that node3 holds.
    let on_three = held_by("node3")[0];
    let (status, body) = operator_reset(nodes[0].admin, &ids[on_three], &mut clients[on_three]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["payload"]["status"], "Accepted", "{body}");
    // A charge point no node holds: 404, as on one node.
    let unknown = http(
        nodes[0].admin,
        "POST",
        "/api/v1/chargepoints/CP3-NOBODY/calls",
        None,
        Some(r#"{"action": "Reset", "payload": {"type": "Soft"}}"#),
    );
    assert_eq!(unknown.status, 404, "{}", unknown.body);

    // A charge point of node1 reconnects straight to node2 (as after a network change): node2
    // takes it over, node1 closes its connection, the registry names node2, no duplicate.
    let moving = held_by("node1")[0];
    let id = &ids[moving];
    let mut stream = TcpStream::connect(nodes[1].process.addr).expect("node2");
    stream
        .write_all(b"PROXY TCP4 127.0.0.9 127.0.0.1 40000 8080\r\n")
        .expect("PROXY header");
    stream.set_read_timeout(Some(WATCHDOG)).unwrap();
    let url = format!("ws://{}/ocpp/{id}", nodes[1].process.addr);
    let (mut moved, _) = upgrade_over(stream, &url, "ocpp1.6").expect("upgrade on node2");
    let close = expect_close(&mut clients[moving]).expect("node1 closes the old connection");
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (1000, "taken over")
    );
    wait_until("the registry names node2", || {
        cluster_listing(nodes[0].admin)[id] == ("node2".to_owned(), true)
    });
    // node1's processor learns of the close from its loop after node2 registered.
    wait_until("node1 to see its connection closed", || {
        let path = format!("/api/v1/chargepoints/{id}");
        http(nodes[0].admin, "GET", &path, None, None).json()["connected"] == false
    });
    let status = json!({"connectorId": 1, "errorCode": "NoError", "status": "Charging"});
    assert_eq!(call(&mut moved, "s", "StatusNotification", status)[0], 3);
    clients[moving] = moved;

    // kill -9 of node3: its charge points reconnect through HAProxy to the others, are accepted
    // without booting, and calls reach them there.
    let victims = held_by("node3");
    drop(nodes.pop()); // node3: SIGKILL
    let killed = Instant::now();
    for &i in &victims {
        let mut client = connect_through(front, &ids[i], killed + FAILOVER_BOUND);
        resume_without_boot(&mut client, transactions[i]);
        clients[i] = client;
    }
    let after = cluster_listing(nodes[1].admin);
    for &i in &victims {
        let (node, up) = &after[&ids[i]];
        assert!(
            *up && (node == "node1" || node == "node2"),
            "{}: {node} {up}",
            ids[i]
        );
    }
    eprintln!(
        "{} charge points of the killed node accepted elsewhere {:?} after kill -9",
        victims.len(),
        killed.elapsed()
    );
    let survivor = victims[0];
    let (status, body) = operator_reset(nodes[0].admin, &ids[survivor], &mut clients[survivor]);
    assert_eq!(status, 200, "{body}");

    // Transaction ids: one per charge point, none repeated across the nodes (the victims'
    // transactions were stopped by resume_without_boot; new ones come from the survivors).
    for &i in &victims {
        let start = json!({"connectorId": 1, "idTag": "TAG1", "meterStart": 9000,
                           "timestamp": "2026-11-28T12:00:00Z"});
        let reply = call(&mut clients[i], "t9", "StartTransaction", start);
        transactions.push(reply[2]["transactionId"].as_i64().expect("an id"));
    }
    let unique: HashSet<i64> = transactions.iter().copied().collect();
    assert_eq!(unique.len(), transactions.len(), "repeated transaction ids");

    drop(clients);
    drop(haproxy);
    for mut node in nodes {
        node.process.signal("-TERM");
        let mut exited = None;
        wait_until("the node stops", || {
            exited = node.process.child.try_wait().ok().flatten();
            exited.is_some()
        });
        assert!(exited.is_some_and(|s| s.success()), "{exited:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
