//! TLS offload at the balancer: a real HAProxy with `deploy/haproxy-tls-offload.cfg` ends TLS
//! (profile 2 and profile 3 frontends) in front of a gateway whose listeners have
//! `tls_offload = true`. Through it: the right client certificate boots, one whose CN names
//! another identity gets 403 from the gateway (the CN TLV bound to the identity, as on a direct
//! mutual-TLS connection), no certificate, one from another CA and a revoked one fail in
//! HAProxy's handshake; profile 2 still needs its Basic key; the whitepaper's static-RSA suites
//! (which rustls lacks) work from Python's OpenSSL. Straight to the gateway, PROXY v2 headers
//! whose SSL TLV says the client did not use TLS (what HAProxy sends from a plain frontend),
//! that its certificate did not verify, or none at all, are refused 403; and a perfect header
//! from an address outside `server.trusted_proxies` is closed unread.
//!
//! Needs `haproxy` (Debian's package); without it the test says so and passes, except when
//! `OCPP_REQUIRE_SERVERS` is set (as `.ci/run` does).

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::haproxy::{Haproxy, OffloadFiles};
use common::pki::*;
use common::*;
use ocpp_gateway::config::{ListenerConfig, Network};
use ocpp_gateway::security::Profile;
use serde_json::json;

const KEY: &[u8] = b"sixteen-byte-key";

/// A PROXY v2 header from 192.0.2.`host` with an SSL TLV of `client` bits, `verify` result
/// and, if given, a CN (None for the TLV itself: no SSL TLV at all). Each case names a client
/// of its own, so refusals do not add up to a lockout of one address.
fn v2_header(host: u8, ssl: Option<(u8, u32, Option<&str>)>) -> Vec<u8> {
    let mut block = vec![192, 0, 2, host, 127, 0, 0, 1];
    block.extend_from_slice(&40000u16.to_be_bytes());
    block.extend_from_slice(&443u16.to_be_bytes());
    if let Some((client, verify, cn)) = ssl {
        let mut value = vec![client];
        value.extend_from_slice(&verify.to_be_bytes());
        value.extend_from_slice(&[0x21, 0, 7]);
        value.extend_from_slice(b"TLSv1.3");
        if let Some(cn) = cn {
            value.push(0x22);
            value.extend_from_slice(&(cn.len() as u16).to_be_bytes());
            value.extend_from_slice(cn.as_bytes());
        }
        block.push(0x20);
        block.extend_from_slice(&(value.len() as u16).to_be_bytes());
        block.extend_from_slice(&value);
    }
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend_from_slice(&[0x21, 0x11]);
    out.extend_from_slice(&(block.len() as u16).to_be_bytes());
    out.extend_from_slice(&block);
    out
}

/// Sends `header` and an upgrade request as `id` (with `extra` header lines); the status line.
fn upgrade_after(addr: SocketAddr, header: &[u8], id: &str, extra: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WATCHDOG)).unwrap();
    let request = upgrade_request(
        &format!("/ocpp/{id}"),
        &format!("Sec-WebSocket-Protocol: ocpp1.6\r\n{extra}"),
    );
    stream
        .write_all(&[header, request.as_bytes()].concat())
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        match std::io::Read::read(&mut stream, &mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).trim_end().to_owned()
}

#[test]
fn haproxy_ends_tls_and_the_gateway_binds_its_word_to_the_identity() {
    if !server_available("haproxy", "haproxy") {
        return;
    }
    let pki = Pki::new("offload");
    // An RSA server certificate: the static-RSA suites need one.
    let (cert, key, _) = pki.server("edge", true);
    let edge = pki.path("edge-and-key.pem");
    let pem = [std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap()].concat();
    std::fs::write(&edge, pem).unwrap();
    let revoked = pki.client("CP-REVOKED");
    let crl = pki.crl("crl.pem", &[&revoked.chain[0].clone()]);
    credentials_file(
        &pki.path("credentials"),
        &[("CP-P2", KEY), ("CP-RAW2", KEY), ("CP-RSA", KEY)],
    );

    let mut config = test_config();
    config.server.proxy_protocol = true;
    config.server.tls_offload = true;
    config.server.trusted_proxies = vec![Network::parse("127.0.0.1").unwrap()];
    config.security.profile = Profile::MutualTls;
    config.security.credentials = Some(pki.path("credentials"));
    config.extra_listeners.push(ListenerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        profile: Profile::TlsBasicAuth,
        proxy_protocol: true,
        tls_offload: true,
        protocols: config.ocpp.protocols,
    });
    let server = TestServer::start(config);
    let (mtls_node, tls_node) = (server.addr, server.server().local_addrs()[1]);
    let absent = || {
        let nowhere = || format!("127.0.0.1:{}", free_port()).parse().unwrap();
        (nowhere(), nowhere(), free_port())
    };
    let haproxy = Haproxy::start_offload(
        OffloadFiles {
            cert: &edge,
            client_ca: &pki.path("ca.pem"),
            client_crl: &crl,
        },
        [
            (tls_node, mtls_node, server.admin().port()),
            absent(),
            absent(),
        ],
    );
    // Until its checks fail, HAProxy counts the absent nodes up and would send charge points
    // there.
    wait_until(
        "node1 up and node2, node3 down behind both frontends",
        || {
            ["gateways_profile2", "gateways_profile3"]
                .iter()
                .all(|backend| {
                    let status = |node| haproxy.status_in(backend, node);
                    status("node1").as_deref() == Some("UP")
                        && status("node2").as_deref() == Some("DOWN")
                        && status("node3").as_deref() == Some("DOWN")
                })
        },
    );

    // Profile 3 through HAProxy, TLS 1.3 and 1.2: the certificate whose CN is the identity.
    let cp1 = pki.client_config(Some(pki.client("CP-1")));
    let (mut client, _) = wss_connect(haproxy.listen_mtls, cp1.clone(), "CP-1", None)
        .expect("CP-1 upgrades through HAProxy");
    boot(&mut client);
    let tls12 = client_config_with(
        &pki,
        Some(pki.client("CP-12")),
        Some(vec![
            rustls::crypto::ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ]),
    );
    let (mut client12, _) =
        wss_connect(haproxy.listen_mtls, tls12, "CP-12", None).expect("TLS 1.2 upgrades");
    boot(&mut client12);
    // The same certificate for another identity: HAProxy's handshake passes, the gateway
    // compares the CN TLV with the URL and answers 403.
    assert_eq!(
        refused_status(wss_connect(haproxy.listen_mtls, cp1, "CP-2", None)),
        403
    );
    server.wait_for("the mismatch counted", |s| s.certificate_mismatches == 1);
    // No certificate, another CA's, a revoked one: refused in HAProxy's handshake.
    let stranger = Pki::new("offload-other-ca");
    for (what, tls) in [
        ("no certificate", pki.client_config(None)),
        (
            "another CA",
            client_config_with(&pki, Some(stranger.client("CP-1")), None),
        ),
        ("revoked", pki.client_config(Some(revoked))),
    ] {
        let id = if what == "revoked" {
            "CP-REVOKED"
        } else {
            "CP-1"
        };
        match wss_connect(haproxy.listen_mtls, tls, id, None) {
            Ok(_) => panic!("{what}: upgraded"),
            Err(tungstenite::Error::Http(response)) => {
                panic!("{what}: reached the gateway ({})", response.status())
            }
            Err(_) => {}
        }
    }

    // Profile 2 through HAProxy: TLS there, the Basic key here.
    let p2 = pki.client_config(None);
    let (mut p2_client, _) = wss_connect(
        haproxy.listen,
        p2.clone(),
        "CP-P2",
        Some(&basic("CP-P2", KEY)),
    )
    .expect("profile 2 upgrades");
    boot(&mut p2_client);
    let wrong = basic("CP-P2", b"not-the-right-key");
    assert_eq!(
        refused_status(wss_connect(haproxy.listen, p2, "CP-P2", Some(&wrong))),
        401
    );
    // The whitepaper's static-RSA suites, from OpenSSL (Python's ssl module).
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/tls_offload_rsa.py"
    );
    let mut command = Command::new("python3");
    command
        .arg(script)
        .arg("127.0.0.1")
        .arg(haproxy.listen.port().to_string())
        .arg(pki.path("ca.pem"))
        .arg("CP-RSA")
        .arg(std::str::from_utf8(KEY).unwrap());
    let lines = Driven::spawn(command).finish(Duration::from_secs(60));
    let seen: Vec<(String, String, u64)> = lines
        .iter()
        .map(|l| {
            (
                l["cipher"].as_str().unwrap_or("?").to_owned(),
                l["version"].as_str().unwrap_or("?").to_owned(),
                l["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("AES128-GCM-SHA256".to_owned(), "TLSv1.2".to_owned(), 101),
            ("AES256-GCM-SHA384".to_owned(), "TLSv1.2".to_owned(), 101),
        ]
    );
    assert_eq!(server.stats().tls_offload_refusals, 0);

    // Straight to the gateway from the trusted address: the TLV's bits decide, not its presence.
    const TLS: u8 = 0x01;
    const CERT: u8 = 0x02;
    for (host, ssl, id, expected) in [
        // HAProxy's TLV from a plain frontend: "client used TLS" off.
        (1, Some((0, 0, Some("CP-RAW"))), "CP-RAW", "403"),
        (2, Some((CERT, 0, Some("CP-RAW"))), "CP-RAW", "403"),
        // A certificate that did not verify (20: unable to get the issuer locally).
        (3, Some((TLS | CERT, 20, Some("CP-RAW"))), "CP-RAW", "403"),
        // No SSL TLV at all.
        (4, None, "CP-RAW", "403"),
        // TLS, but no certificate on a profile 3 listener.
        (5, Some((TLS, 0, None)), "CP-RAW", "403"),
        (6, Some((TLS | CERT, 0, Some("CP-OTHER"))), "CP-RAW", "403"),
        (7, Some((TLS | CERT, 0, Some("CP-RAW"))), "CP-RAW", "101"),
    ] {
        let status = upgrade_after(mtls_node, &v2_header(host, ssl), id, "");
        assert!(status.contains(expected), "{ssl:?}: {status}");
    }
    // Version 1 carries no TLV: never TLS.
    let v1 = b"PROXY TCP4 192.0.2.8 127.0.0.1 40000 443\r\n";
    assert!(upgrade_after(mtls_node, v1, "CP-RAW", "").contains("403"));
    // Profile 2: the TLS bit, then the key.
    let auth = format!("Authorization: {}\r\n", basic("CP-RAW2", KEY));
    let plain = v2_header(9, Some((0, 0, None)));
    assert!(upgrade_after(tls_node, &plain, "CP-RAW2", &auth).contains("403"));
    let tls = v2_header(10, Some((TLS, 0, None)));
    assert!(upgrade_after(tls_node, &tls, "CP-RAW2", &auth).contains("101"));
    server.wait_for("offload refusals counted", |s| {
        s.tls_offload_refusals == 6 && s.certificate_mismatches == 3
    });

    // A perfect header from an address the gateway does not trust: closed unread.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.9:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.connect(&mtls_node.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WATCHDOG)).unwrap();
    let header = v2_header(11, Some((TLS | CERT, 0, Some("CP-RAW"))));
    let request = upgrade_request("/ocpp/CP-RAW", "Sec-WebSocket-Protocol: ocpp1.6\r\n");
    let _ = stream.write_all(&[header.as_slice(), request.as_bytes()].concat());
    assert_eq!(read_to_close(&mut stream), "", "nothing answered");
    server.wait_for("the untrusted connection counted", |s| {
        s.proxy_untrusted == 1
    });

    // None of it touched the charge points that are connected.
    for c in [&mut client, &mut client12] {
        assert_eq!(call(c, "hb", "Heartbeat", json!({}))[0], 3);
    }
    assert_eq!(call(&mut p2_client, "hb", "Heartbeat", json!({}))[0], 3);
    stranger.cleanup();
    pki.cleanup();
}
