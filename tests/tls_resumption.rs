//! TLS session resumption with stateless tickets, with a stock rustls client over real sockets:
//! a reconnect resumes (TLS 1.3 and 1.2) and still boots; on a profile-3 listener the resumed
//! session carries the client certificate, whose CN must still be the identity (403 otherwise);
//! a ticket of the profile-2 listener never resumes on the profile-3 one (a full handshake asks
//! for the certificate there); two nodes sharing `security.tls_ticket_keys` resume each other's
//! tickets and a node with other keys does not; a reload with a rotated key file keeps old
//! tickets until their key is dropped.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::pki::*;
use common::*;
use ocpp_gateway::config::{Config, ListenerConfig, TicketConfig};
use ocpp_gateway::security::Profile;
use ocpp_gateway::security::certificates::CertFiles;
use rustls::crypto::ring::cipher_suite as suites;
use rustls::{ClientConfig, HandshakeKind};

const KEY: &[u8] = b"sixteen-byte-key";
const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const K2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const K3: &str = "3333333333333333333333333333333333333333333333333333333333333333";

/// Profile 2 on `server.listen` (CP1, CP2 with KEY), profile 3 on a second listener, both with
/// one certificate; tickets sealed with the keys of `keys` (None: made in memory).
fn config(pki: &Pki, keys: Option<PathBuf>) -> Config {
    let credentials = pki.path("credentials");
    credentials_file(&credentials, &[("CP1", KEY), ("CP2", KEY)]);
    let (cert, key, _) = pki.server("server", false);
    let mut config = test_config();
    config.security.profile = Profile::TlsBasicAuth;
    config.security.credentials = Some(credentials);
    config.security.tls_certs = vec![CertFiles { cert, key }];
    config.security.client_ca = Some(pki.path("ca.pem"));
    config.security.tickets = Some(TicketConfig {
        keys,
        lifetime: ocpp_gateway::config::DEFAULT_TLS_TICKET_LIFETIME,
    });
    config.extra_listeners.push(ListenerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        profile: Profile::MutualTls,
        proxy_protocol: false,
        tls_offload: false,
        protocols: config.ocpp.protocols,
    });
    config
}

/// [`boot_once`] with CP1/CP2's Basic key when `basic_auth`.
fn boot_as(
    addr: std::net::SocketAddr,
    tls: &Arc<ClientConfig>,
    id: &str,
    basic_auth: bool,
) -> HandshakeKind {
    let header = basic(id, KEY);
    boot_once(addr, tls, id, basic_auth.then_some(header.as_str()))
}

fn write_keys(path: &Path, keys: &[&str]) {
    std::fs::write(path, keys.join("\n") + "\n").unwrap();
}

#[test]
fn a_reconnect_resumes_and_boots_in_tls_13_and_12() {
    let pki = Pki::new("resume-basic");
    let server = TestServer::start(config(&pki, None));
    let tls13 = resuming(pki.client_config(None));
    assert_eq!(
        boot_as(server.addr, &tls13, "CP1", true),
        HandshakeKind::Full
    );
    assert_eq!(
        boot_as(server.addr, &tls13, "CP1", true),
        HandshakeKind::Resumed
    );
    // Each resumption brings a new ticket: the next reconnect resumes too.
    assert_eq!(
        boot_as(server.addr, &tls13, "CP1", true),
        HandshakeKind::Resumed
    );
    let tls12 = resuming(client_config_with(
        &pki,
        None,
        Some(vec![suites::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]),
    ));
    assert_eq!(
        boot_as(server.addr, &tls12, "CP2", true),
        HandshakeKind::Full
    );
    assert_eq!(
        boot_as(server.addr, &tls12, "CP2", true),
        HandshakeKind::Resumed
    );
    server.wait_for("resumptions counted", |s| {
        s.tls_resumptions == 3 && s.tls_handshakes == 5
    });
    // A resumed session still needs the key: without it, 401.
    let (_, _) = wss_connect(
        server.addr,
        Arc::clone(&tls13),
        "CP1",
        Some(&basic("CP1", KEY)),
    )
    .expect("resumed once more");
    assert_eq!(
        refused_status(wss_connect(server.addr, tls13, "CP1", None)),
        401
    );
    pki.cleanup();
}

#[test]
fn a_resumed_profile_3_session_carries_its_certificate_and_never_comes_from_profile_2() {
    let pki = Pki::new("resume-mutual");
    let server = TestServer::start(config(&pki, None));
    let mutual_port = server.server().local_addrs()[1];
    let with_cert = resuming(pki.client_config(Some(pki.client("CP-7"))));
    assert_eq!(
        boot_as(mutual_port, &with_cert, "CP-7", false),
        HandshakeKind::Full
    );
    assert_eq!(
        boot_as(mutual_port, &with_cert, "CP-7", false),
        HandshakeKind::Resumed
    );
    // The resumed session's certificate names CP-7: CP-8 is refused as after a full handshake.
    let stream = tls_stream(mutual_port, Arc::clone(&with_cert)).expect("handshake");
    assert_eq!(stream.conn.handshake_kind(), Some(HandshakeKind::Resumed));
    assert_eq!(
        refused_status(wss_upgrade(stream, mutual_port, "CP-8", None)),
        403
    );
    server.wait_for("mismatch counted", |s| s.certificate_mismatches == 1);

    // A ticket from the profile-2 port, offered on the profile-3 port, does not open there: a
    // full handshake asks for a certificate, and one without fails.
    let bare = resuming(pki.client_config(None));
    assert_eq!(
        boot_as(server.addr, &bare, "CP1", true),
        HandshakeKind::Full
    );
    assert!(
        wss_connect(mutual_port, Arc::clone(&bare), "CP1", None).is_err(),
        "a profile-2 session without a certificate must not get onto the profile-3 port"
    );
    let both = resuming(pki.client_config(Some(pki.client("CP1"))));
    assert_eq!(
        boot_as(server.addr, &both, "CP1", true),
        HandshakeKind::Full
    );
    let stream = tls_stream(mutual_port, both).expect("a full handshake with the certificate");
    assert_eq!(stream.conn.handshake_kind(), Some(HandshakeKind::Full));
    pki.cleanup();
}

#[test]
fn nodes_sharing_the_key_file_resume_each_others_tickets_and_a_reload_rotates_them() {
    let pki = Pki::new("resume-nodes");
    let shared = pki.path("ticket-keys");
    write_keys(&shared, &[K1]);
    let other = pki.path("other-keys");
    write_keys(&other, &[K3]);
    let node_a = TestServer::start(config(&pki, Some(shared.clone())));
    let node_b = TestServer::start(config(&pki, Some(shared.clone())));
    let stranger = TestServer::start(config(&pki, Some(other)));

    let tls = resuming(pki.client_config(None));
    assert_eq!(boot_as(node_a.addr, &tls, "CP1", true), HandshakeKind::Full);
    // The charge point fails over to B: resumed there.
    assert_eq!(
        boot_as(node_b.addr, &tls, "CP1", true),
        HandshakeKind::Resumed
    );
    // A node with other keys cannot open it: a full handshake, which works.
    assert_eq!(
        boot_as(stranger.addr, &tls, "CP1", true),
        HandshakeKind::Full
    );

    // Rotation on A: a new key first, the old one kept. The client's ticket (from the stranger)
    // is unknown to A: full. The ticket A gives now is sealed with K2.
    write_keys(&shared, &[K2, K1]);
    node_a.server().reload();
    let fresh = resuming(pki.client_config(None));
    assert_eq!(
        boot_as(node_b.addr, &fresh, "CP2", true),
        HandshakeKind::Full
    ); // K1 ticket
    assert_eq!(
        boot_as(node_a.addr, &fresh, "CP2", true),
        HandshakeKind::Resumed
    ); // K1 opens on A
    assert_eq!(
        boot_as(node_b.addr, &fresh, "CP2", true),
        HandshakeKind::Full
    ); // K2 unknown to B
    // A broken file on reload: the keys stay.
    std::fs::write(&shared, "not a key\n").unwrap();
    node_a.server().reload();
    let (_, _) = wss_connect(
        node_a.addr,
        Arc::clone(&fresh),
        "CP2",
        Some(&basic("CP2", KEY)),
    )
    .expect("a ticket from B (K1) opens on A, whose keys stayed");
    // K1 dropped: B's K1 tickets no longer open on A.
    write_keys(&shared, &[K2]);
    node_a.server().reload();
    let last = resuming(pki.client_config(None));
    assert_eq!(
        boot_as(node_b.addr, &last, "CP1", true),
        HandshakeKind::Full
    );
    assert_eq!(
        boot_as(node_a.addr, &last, "CP1", true),
        HandshakeKind::Full
    );
    pki.cleanup();
}
