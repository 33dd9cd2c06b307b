//! Nobody can grow the state file (or a processor's memory) without bound by booting made-up
//! identities: past `ocpp.max_disconnected`, the disconnected charge points seen longest ago are
//! forgotten, in memory and in the state file, counted; a restart with a lower bound loads only
//! the newest; a charge point that authenticated at a profile above 0 is never forgotten (its
//! floor must survive a flood of made-up identities).

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

#[test]
fn a_flood_of_made_up_identities_never_erases_a_profile_floor() {
    use common::pki::{basic, connect_as, credentials_file};
    use ocpp_gateway::config::ListenerConfig;
    use ocpp_gateway::security::Profile;

    let dir = std::env::temp_dir().join(format!("ocpp-bounded-floor-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let key: &[u8] = b"the-key-of-CP-FLOOR";
    credentials_file(&dir.join("credentials"), &[("CP-FLOOR", key)]);
    let mut first = config(&dir, 8);
    first.security.profile = Profile::BasicAuth;
    first.security.credentials = Some(dir.join("credentials"));
    first.extra_listeners.push(ListenerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        profile: Profile::Unsecured,
        proxy_protocol: false,
        tls_offload: false,
        protocols: first.ocpp.protocols,
    });
    let mut server = TestServer::start(first);
    let open_port = server.server().local_addrs()[1];
    // CP-FLOOR authenticates at profile 1 and leaves first: the oldest of all.
    let mut floor = connect_as(server.addr, "CP-FLOOR", Some(&basic("CP-FLOOR", key))).unwrap();
    boot(&mut floor);
    drop(floor);
    server.wait_for("CP-FLOOR gone", |s| s.connections == 0);
    // Made-up identities boot on the open port and leave, four times the bound.
    for n in 0..32 {
        let id = format!("CP-F{n:02}");
        let url = format!("ws://{open_port}/ocpp/{id}");
        let (mut client, _) = try_connect(open_port, &url, "ocpp1.6").expect("connects");
        boot(&mut client);
        drop(client);
        server.wait_for("the disconnect", |s| s.connections == 0);
    }
    let stats = server.wait_for("made-up identities forgotten", |s| {
        s.registrations_forgotten >= 24
    });
    assert!(stats.registrations_forgotten >= 24, "{stats:?}");
    assert!(known(&server).contains("CP-FLOOR"), "the floor is kept");
    server.stop();

    // Restarted on the state file alone (no credentials, only an open port): CP-FLOOR is
    // still known to have authenticated at profile 1, and closed on the open port.
    let server = TestServer::start(config(&dir, 8));
    let mut intruder = connect_as(server.addr, "CP-FLOOR", None).expect("the upgrade");
    let close = expect_close(&mut intruder).expect("a close frame");
    assert_eq!(u16::from(close.code), 1008, "{close:?}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
