//! TLS session resumption across the nodes of a cluster without a key file: the ticket keys
//! live in Redis (`{prefix}tls-ticket-keys`), every node installs them, so a charge point that
//! got its ticket from node A resumes on node B; a node of another fleet (another prefix) has
//! other keys and gives a full handshake. The rotation script, run against the same Redis with
//! chosen clocks: a key a lifetime old is replaced by the first proposal, the one before kept.
//!
//! Needs `redis-server`; without it the test says so and passes, except when
//! `OCPP_REQUIRE_SERVERS` is set.

mod common;

use common::pki::*;
use common::redis_server::{Redis, cluster_node};
use common::*;
use ocpp_gateway::cluster::scripts::TICKET_KEYS;
use ocpp_gateway::config::{Config, DEFAULT_TLS_TICKET_LIFETIME, TicketConfig};
use ocpp_gateway::security::Profile;
use ocpp_gateway::security::certificates::CertFiles;
use rustls::HandshakeKind;

const KEY: &[u8] = b"sixteen-byte-key";

fn node(redis: &Redis, pki: &Pki, name: &str, prefix: &str) -> Config {
    let (cert, key, _) = pki.server(name, false);
    let mut config = cluster_node(redis, (name, prefix), &pki.dir, test_config());
    config.security.profile = Profile::TlsBasicAuth;
    config.security.credentials = Some(pki.path("credentials"));
    config.security.tls_certs = vec![CertFiles { cert, key }];
    config.security.tickets = Some(TicketConfig {
        keys: None,
        lifetime: DEFAULT_TLS_TICKET_LIFETIME,
    });
    config
}

#[test]
fn a_ticket_of_one_node_resumes_on_another() {
    if !server_available("redis-server", "redis-server") {
        return;
    }
    let redis = Redis::start(free_port());
    let pki = Pki::new("cluster-tickets");
    credentials_file(&pki.path("credentials"), &[("CP1", KEY)]);
    let a = TestServer::start(node(&redis, &pki, "node-a", "fleet:"));
    let b = TestServer::start(node(&redis, &pki, "node-b", "fleet:"));
    let other = TestServer::start(node(&redis, &pki, "node-c", "elsewhere:"));
    for server in [&a, &b, &other] {
        server.wait_for("the fleet's ticket keys installed", |s| {
            s.cluster_ticket_keys_installed >= 1
        });
    }
    let mut con = redis.connection().expect("redis");
    let keys: Vec<String> = redis::cmd("LRANGE")
        .arg("fleet:tls-ticket-keys")
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    assert_eq!(
        keys.len(),
        1,
        "both nodes took the first proposal: {keys:?}"
    );

    let tls = resuming(pki.client_config(None));
    let auth = basic("CP1", KEY);
    assert_eq!(
        boot_once(a.addr, &tls, "CP1", Some(&auth)),
        HandshakeKind::Full
    );
    assert_eq!(
        boot_once(b.addr, &tls, "CP1", Some(&auth)),
        HandshakeKind::Resumed
    );
    assert_eq!(
        boot_once(a.addr, &tls, "CP1", Some(&auth)),
        HandshakeKind::Resumed
    );
    // Another fleet's keys do not open these tickets.
    assert_eq!(
        boot_once(other.addr, &tls, "CP1", Some(&auth)),
        HandshakeKind::Full
    );
    b.wait_for("resumption counted", |s| s.tls_resumptions >= 1);

    // The rotation, with chosen clocks: a lifetime of 1000 ms.
    let hex = |n: u8| format!("{n:02x}").repeat(32);
    let rotate = |con: &mut redis::Connection, now: u64, proposal: u8| -> Vec<String> {
        redis::cmd("EVAL")
            .arg(TICKET_KEYS)
            .arg(1)
            .arg("rotation:tls-ticket-keys")
            .arg(now)
            .arg(1000)
            .arg(hex(proposal))
            .query(con)
            .unwrap()
    };
    assert_eq!(rotate(&mut con, 10_000, 1), [format!("10000:{}", hex(1))]);
    assert_eq!(
        rotate(&mut con, 10_999, 2),
        [format!("10000:{}", hex(1))],
        "not due"
    );
    assert_eq!(
        rotate(&mut con, 11_000, 3),
        [format!("11000:{}", hex(3)), format!("10000:{}", hex(1))]
    );
    assert_eq!(
        rotate(&mut con, 12_500, 4),
        [format!("12500:{}", hex(4)), format!("11000:{}", hex(3))],
        "two kept"
    );
    pki.cleanup();
}
