//! Nobody can grow the state file (or a processor's memory) without bound by booting made-up
//! identities: past `ocpp.max_disconnected`, the disconnected charge points seen longest ago are
//! forgotten, in memory and in the state file, counted; a restart with a lower bound loads only
//! the newest.

mod common;

use std::collections::BTreeSet;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use common::*;
use ocpp_gateway::Config;

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ocpp-bounded-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// Every charge point the gateway knows (connected or not), by the API.
fn known(server: &TestServer) -> BTreeSet<String> {
    let reply = http(
        server.admin(),
        "GET",
        "/api/v1/chargepoints?limit=1000",
        None,
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["chargepoints"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|cp| cp["id"].as_str().map(str::to_owned))
        .collect()
}

fn ids(range: std::ops::Range<usize>) -> BTreeSet<String> {
    range.map(|n| format!("CP-B{n:02}")).collect()
}

fn config(dir: &std::path::Path, max_disconnected: usize) -> Config {
    let mut config = test_config();
    config.processor.threads = NonZeroUsize::new(1).expect("non-zero");
    config.ocpp.state_file = Some(dir.join("state"));
    config.ocpp.max_disconnected = max_disconnected;
    config
}

#[test]
fn the_oldest_disconnected_registrations_are_forgotten_past_the_bound() {
    let dir = scratch();
    let mut server = TestServer::start(config(&dir, 40));
    // 60 identities boot and leave, one after the other.
    for n in 0..60 {
        let id = format!("CP-B{n:02}");
        let mut client = connect(&server, &id);
        boot(&mut client);
        drop(client);
        let path = format!("/api/v1/chargepoints/{id}");
        wait_until("the disconnect is known", || {
            let view = http(server.admin(), "GET", &path, None, None);
            view.status == 404 || view.json()["connected"] == false
        });
    }
    // Past 40, an eighth (5) of the oldest at a time: 20 forgotten, the newest 40 kept.
    assert_eq!(server.stats().registrations_forgotten, 20);
    assert_eq!(known(&server), ids(20..60));
    server.stop();

    // A restart with a lower bound loads only the newest, and forgets the rest in the file too.
    let mut server = TestServer::start(config(&dir, 10));
    assert_eq!(known(&server), ids(50..60));
    assert_eq!(server.stats().registrations_forgotten, 30);
    server.stop();
    let server = TestServer::start(config(&dir, 100));
    assert_eq!(
        known(&server),
        ids(50..60),
        "the forgotten are gone from the file"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
