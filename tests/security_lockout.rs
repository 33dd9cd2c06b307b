//! The brake on guessing and who pays for refusals (`security.lockout_*`,
//! `security.journaled_refusals`): after `lockout_failures` refusals from one address that
//! address gets 429 with `Retry-After` (not even hashed: no further auth failure is counted),
//! while a correct key from another address is accepted; the lockout shows in `/metrics` and
//! `GET /api/v1/security/lockouts`. Behind a PROXY header the address is the one the header
//! names. A burst of refusals naming a connected identity is accounted to the address: the
//! identity's own StatusNotification and StartTransaction lines are all journaled, and
//! refusals over the address's allowance are counted, not journaled.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use common::pki::{basic, connect_as, credentials_file};
use common::*;
use ocpp_gateway::config::{Config, ListenerConfig, Sinks};
use ocpp_gateway::security::Profile;
use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;

const KEY: &[u8] = b"the-key-of-CP1-0123";

fn dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ocpp-lockout-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Profile 1 with a credential for CP1; an address is locked out after 3 refusals, for longer
/// than any test takes.
fn config(dir: &std::path::Path) -> Config {
    let credentials = dir.join("credentials");
    credentials_file(&credentials, &[("CP1", KEY)]);
    let mut config = test_config();
    config.security.profile = Profile::BasicAuth;
    config.security.credentials = Some(credentials);
    config.security.lockout.failures = 3;
    config.security.lockout.window = Duration::from_secs(600);
    config.security.lockout.first = Duration::from_secs(600);
    config.security.lockout.max = Duration::from_secs(3600);
    config
}

/// A TCP connection to `to` from the loopback address `from` (127.0.0.x).
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WATCHDOG)).unwrap();
    stream
}

/// The gateway's answer to an upgrade of `id` with `authorization`, sent after `prefix` (a PROXY
/// header) from `from`.
fn upgrade_from(
    from: &str,
    to: SocketAddr,
    prefix: &[u8],
    id: &str,
    authorization: &str,
) -> HttpReply {
    let mut stream = connect_from(from, to);
    let request = upgrade_request(
        &format!("/ocpp/{id}"),
        &format!("Sec-WebSocket-Protocol: ocpp1.6\r\nAuthorization: {authorization}\r\n"),
    );
    stream.write_all(prefix).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Up to the end of the head: a 101 leaves the connection open.
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    let mut rest = String::new();
    if !head.starts_with(b"HTTP/1.1 101") {
        let _ = stream.read_to_string(&mut rest);
    }
    parse_http(&(String::from_utf8_lossy(&head).into_owned() + &rest))
}

#[test]
fn guesses_lock_their_address_out_never_the_right_key_from_elsewhere() {
    let dir = dir("lock");
    let server = TestServer::start(config(&dir));
    let wrong = basic("CP1", b"a-guess-at-the-key!");
    for _ in 0..3 {
        let reply = upgrade_from("127.0.0.1", server.addr, b"", "CP1", &wrong);
        assert_eq!(reply.status, 401, "{}", reply.head);
    }
    // Locked: even the right key from this address is refused, before any check.
    for authorization in [wrong.clone(), basic("CP1", KEY)] {
        let reply = upgrade_from("127.0.0.1", server.addr, b"", "CP1", &authorization);
        assert_eq!(reply.status, 429, "{}", reply.head);
        let retry: u64 = reply
            .header("Retry-After")
            .and_then(|v| v.trim().parse().ok())
            .expect("Retry-After");
        assert!((1..=600).contains(&retry), "{retry}");
    }
    let stats = server.wait_for("the lockout counted", |s| s.locked_out_refusals == 2);
    assert_eq!(stats.auth_lockouts, 1);
    assert_eq!(
        stats.auth_failures, 3,
        "locked-out attempts are never checked"
    );

    // The right key from another address is served during the lockout.
    let stream = connect_from("127.0.0.2", server.addr);
    let mut request = server.url("CP1").into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("ocpp1.6"),
    );
    headers.insert(
        "Authorization",
        HeaderValue::from_str(&basic("CP1", KEY)).unwrap(),
    );
    let (mut client, _) = tungstenite::client(request, stream).expect("accepted from 127.0.0.2");
    boot(&mut client);
    // And so is a wrong key from there: a 401, not a 429 (the lock is the other address's).
    let reply = upgrade_from("127.0.0.2", server.addr, b"", "CP1", &wrong);
    assert_eq!(reply.status, 401, "{}", reply.head);

    let admin = server.admin();
    let metrics = http(admin, "GET", "/metrics", None, None).body;
    assert!(
        metrics.contains("ocpp_gateway_auth_lockouts_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ocpp_gateway_locked_out_refusals_total 2\n"),
        "{metrics}"
    );
    let listed = http(admin, "GET", "/api/v1/security/lockouts", None, None);
    assert_eq!(listed.status, 200, "{}", listed.body);
    let listed = listed.json();
    let locked = listed["locked"].as_array().expect("a list");
    assert_eq!(locked.len(), 1, "{listed}");
    assert_eq!(locked[0]["address"], "127.0.0.1", "{listed}");
    assert!(locked[0]["retry_after_secs"].as_u64().unwrap() > 0);
    assert_eq!(listed["lockouts_total"], 1, "{listed}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn behind_a_proxy_the_address_is_the_one_the_header_names() {
    let dir = dir("proxy");
    let mut config = config(&dir);
    config.extra_listeners.push(ListenerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        profile: Profile::BasicAuth,
        proxy_protocol: true,
        tls_offload: false,
        protocols: config.ocpp.protocols,
    });
    let server = TestServer::start(config);
    let proxied = server.server().local_addrs()[1];
    let header = |from: &str| format!("PROXY TCP4 {from} 127.0.0.1 40000 8080\r\n").into_bytes();
    let wrong = basic("CP1", b"a-guess-at-the-key!");
    for _ in 0..3 {
        let reply = upgrade_from("127.0.0.1", proxied, &header("192.0.2.7"), "CP1", &wrong);
        assert_eq!(reply.status, 401, "{}", reply.head);
    }
    let reply = upgrade_from("127.0.0.1", proxied, &header("192.0.2.7"), "CP1", &wrong);
    assert_eq!(reply.status, 429, "{}", reply.head);
    // Same balancer, another charge point's address: served.
    let reply = upgrade_from(
        "127.0.0.1",
        proxied,
        &header("192.0.2.8"),
        "CP1",
        &basic("CP1", KEY),
    );
    assert_eq!(reply.status, 101, "{}", reply.head);
    let listed = http(
        server.admin(),
        "GET",
        "/api/v1/security/lockouts",
        None,
        None,
    )
    .json();
    assert_eq!(listed["locked"][0]["address"], "192.0.2.7", "{listed}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn refusals_naming_an_identity_never_silence_its_journal() {
    let dir = dir("journal");
    let mut config = config(&dir);
    // No lockout here: the journal allowance is what is tested.
    config.security.lockout.failures = 0;
    // 40 refusal lines per address: several times CP1's own allowance below, had they been
    // charged to it.
    config.security.lockout.journaled = 40;
    config.events.sinks = Sinks::JOURNAL;
    config.events.path = dir.join("journal.jsonl");
    // A small allowance per charge point that 50 refusal lines would spend several times.
    config.events.charge_point_rate = 1;
    config.events.charge_point_burst = 4096;
    let mut server = TestServer::start(config);

    let mut victim = connect_as(server.addr, "CP1", Some(&basic("CP1", KEY))).expect("CP1");
    boot(&mut victim);
    let wrong = basic("CP1", b"a-guess-at-the-key!");
    for _ in 0..50 {
        let reply = upgrade_from("127.0.0.1", server.addr, b"", "CP1", &wrong);
        assert_eq!(reply.status, 401, "{}", reply.head);
    }
    let stats = server.wait_for("refusals counted", |s| s.auth_failures == 50);
    assert_eq!(stats.refusals_unjournaled, 10);
    let status = json!({"connectorId": 1, "errorCode": "NoError", "status": "Preparing"});
    assert_eq!(call(&mut victim, "s1", "StatusNotification", status)[0], 3);
    let start = json!({"connectorId": 1, "idTag": "TAG1", "meterStart": 1000,
                       "timestamp": "2026-11-28T10:00:00Z"});
    assert_eq!(call(&mut victim, "t1", "StartTransaction", start)[0], 3);
    let charging = json!({"connectorId": 1, "errorCode": "NoError", "status": "Charging"});
    assert_eq!(
        call(&mut victim, "s2", "StatusNotification", charging)[0],
        3
    );
    server.stop();

    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    let lines: Vec<Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |event: &str| {
        lines
            .iter()
            .filter(|l| l["cp"] == "CP1" && l["event"] == event)
            .count()
    };
    // Refusal lines share one allowance of their own (at most 40 reached it).
    assert!((1..=40).contains(&of("refused")), "{journal}");
    for action in ["StatusNotification", "StartTransaction"] {
        let calls = lines
            .iter()
            .filter(|l| l["cp"] == "CP1" && l["event"] == "call" && l["action"] == action)
            .count();
        let expected = if action == "StartTransaction" { 1 } else { 2 };
        assert_eq!(calls, expected, "{action}: {journal}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
