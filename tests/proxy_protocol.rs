//! PROXY protocol (v1 and v2) per listener: behind a balancer the charge point's address is
//! the one in the header (API, journal); on a listener that expects it, a connection without a
//! valid header is closed; on one that does not, a header is never trusted (it is just a bad
//! request). Works in front of TLS too.

mod common;

use std::io::Write;
use std::net::TcpStream;

use common::pki::*;
use common::*;
use ocpp_gateway::config::ListenerConfig;
use ocpp_gateway::security::Profile;
use ocpp_gateway::security::certificates::CertFiles;
use serde_json::Value;

/// A PROXY v2 header for TCP over IPv4 from `src:sport`.
fn v2_header(src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend_from_slice(&[0x21, 0x11, 0, 12]);
    out.extend_from_slice(&src);
    out.extend_from_slice(&[127, 0, 0, 1]);
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&8080u16.to_be_bytes());
    out
}

fn remote_address(server: &TestServer, id: &str) -> Value {
    let reply = http(
        server.admin(),
        "GET",
        &format!("/api/v1/chargepoints/{id}"),
        None,
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["remote_address"].clone()
}

#[test]
fn the_header_names_the_peer_and_is_required_where_configured() {
    let dir = std::env::temp_dir().join(format!("ocpp-proxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = test_config();
    config.server.proxy_protocol = true;
    config.events.sinks = ocpp_gateway::config::Sinks::JOURNAL;
    config.events.path = dir.join("journal.jsonl");
    config.extra_listeners.push(ListenerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        profile: Profile::Unsecured,
        proxy_protocol: false,
        tls_offload: false,
        protocols: config.ocpp.protocols,
    });
    let mut server = TestServer::start(config);
    let direct = server.server().local_addrs()[1];

    // Version 1, the header and the request in one write.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(WATCHDOG)).unwrap();
    stream
        .write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 40123 8080\r\n")
        .unwrap();
    let mut v1 = RawClient::upgrade(stream, "CP-V1");
    v1.send_text(r#"[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]"#);
    assert_eq!(v1.read_json()[0], 3);
    assert_eq!(remote_address(&server, "CP-V1"), "203.0.113.7:40123");

    // Version 2, the header in two writes (a header split across reads is unit-tested in
    // the `transport` crate).
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(WATCHDOG)).unwrap();
    let header = v2_header([198, 51, 100, 9], 50000);
    stream.write_all(&header[..7]).unwrap();
    stream.write_all(&header[7..]).unwrap();
    let mut v2 = RawClient::upgrade(stream, "CP-V2");
    v2.send_text(r#"[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]"#);
    assert_eq!(v2.read_json()[0], 3);
    assert_eq!(remote_address(&server, "CP-V2"), "198.51.100.9:50000");

    // No header where one is required: closed, unanswered.
    let reply = raw_exchange(server.addr, upgrade_request("/ocpp/CP-X", "").as_bytes());
    assert!(reply.is_empty(), "{reply:?}");
    let reply = raw_exchange(server.addr, b"PROXY TCP4 nonsense\r\n");
    assert!(reply.is_empty(), "{reply:?}");
    server.wait_for("header errors counted", |s| s.proxy_header_errors == 2);

    // A header where none is expected is not trusted: the request is malformed.
    let mut request = b"PROXY TCP4 203.0.113.7 127.0.0.1 40123 8080\r\n".to_vec();
    request.extend_from_slice(upgrade_request("/ocpp/CP-Y", "").as_bytes());
    let reply = parse_http(&raw_exchange(direct, &request));
    assert_eq!(reply.status, 400);

    drop((v1, v2)); // gone before the stop, which would otherwise wait out their close
    server.stop();
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    assert!(
        journal.contains(r#""cp":"CP-V1","event":"connected","peer":"203.0.113.7:40123""#),
        "{journal}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_header_goes_in_front_of_tls() {
    let pki = Pki::new("proxy-tls");
    let (cert, key, _) = pki.server("server", false);
    let credentials = pki.path("credentials");
    credentials_file(&credentials, &[("CP-T", b"sixteen-byte-key")]);
    let mut config = test_config();
    config.security.profile = Profile::TlsBasicAuth;
    config.security.credentials = Some(credentials);
    config.security.tls_certs = vec![CertFiles { cert, key }];
    config.server.proxy_protocol = true;
    let server = TestServer::start(config);

    let tls = pki.client_config(None);
    let stream = tls_stream_after(server.addr, tls, &v2_header([192, 0, 2, 44], 7)).unwrap();
    let (mut client, _) = wss_upgrade(
        stream,
        server.addr,
        "CP-T",
        Some(&basic("CP-T", b"sixteen-byte-key")),
    )
    .unwrap();
    boot(&mut client);
    assert_eq!(remote_address(&server, "CP-T"), "192.0.2.44:7");
    pki.cleanup();
}
