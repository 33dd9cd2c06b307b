//! Security profile 2 (TLS + Basic auth) in the loops: a wss charge point boots with its key
//! and is refused (401) without it; a plaintext client, a client sending TLS garbage and one
//! that stalls mid-handshake are closed while an open wss connection keeps working; an ECDSA and
//! an RSA certificate are served to the clients that can use each; TLS 1.2 and 1.3 both work
//! with the whitepaper's suites, and other suites are refused; a reload (what SIGHUP does)
//! changes the certificate new connections see and leaves open ones alone.

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;

use common::pki::*;
use common::*;
use ocpp_gateway::config::Config;
use ocpp_gateway::security::Profile;
use ocpp_gateway::security::certificates::CertFiles;
use rustls::crypto::ring::cipher_suite as suites;
use serde_json::json;

const KEY: &[u8] = b"sixteen-byte-key";

/// Profile 2 on `server.listen` with the given certificate pairs; CP1..CP3 have KEY.
fn config(pki: &Pki, certs: Vec<(PathBuf, PathBuf)>) -> Config {
    let credentials = pki.path("credentials");
    credentials_file(&credentials, &[("CP1", KEY), ("CP2", KEY), ("CP3", KEY)]);
    let mut config = test_config();
    config.security.profile = Profile::TlsBasicAuth;
    config.security.credentials = Some(credentials);
    config.security.tls_certs = certs
        .into_iter()
        .map(|(cert, key)| CertFiles { cert, key })
        .collect();
    config
}

fn heartbeat<S: Read + Write>(client: &mut tungstenite::WebSocket<S>) {
    let reply = call(client, "hb", "Heartbeat", json!({}));
    assert_eq!(reply[0], 3, "{reply}");
}

/// The certificate the server presented on `stream`.
fn presented(stream: &TlsStream) -> Vec<u8> {
    stream.conn.peer_certificates().expect("server certificate")[0].to_vec()
}

#[test]
fn wss_with_basic_auth_boots_and_bad_clients_harm_no_one() {
    let pki = Pki::new("tls-basic");
    let (cert, key, _) = pki.server("server", false);
    let server = TestServer::start(config(&pki, vec![(cert, key)]));
    let tls = pki.client_config(None);

    let (mut client, response) =
        wss_connect(server.addr, tls.clone(), "CP1", Some(&basic("CP1", KEY))).expect("wss");
    assert_eq!(response.headers()["Sec-WebSocket-Protocol"], "ocpp1.6");
    boot(&mut client);
    heartbeat(&mut client);
    assert_eq!(
        refused_status(wss_connect(server.addr, tls.clone(), "CP2", None)),
        401
    );
    assert_eq!(
        refused_status(wss_connect(
            server.addr,
            tls.clone(),
            "CP2",
            Some(&basic("CP2", b"wrong-key-123456"))
        )),
        401
    );

    // Plaintext HTTP on the TLS port: closed (with a TLS alert), nothing else happens.
    let reply = raw_exchange(server.addr, upgrade_request("/ocpp/CP3", "").as_bytes());
    assert!(
        !reply.contains("HTTP/1.1"),
        "no HTTP answer on a TLS port: {reply:?}"
    );
    // A record header announcing garbage.
    let _ = raw_exchange(server.addr, &[0x16, 3, 1, 0, 8, 1, 0, 0, 4, 9, 9, 9, 9]);
    // Random bytes.
    let noise: Vec<u8> = (0..2000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = raw_exchange(server.addr, &noise);
    // A handshake that stops halfway: a ClientHello's first bytes, then silence; it is still
    // held (counted) until the handshake deadline, and does not block anyone.
    let mut stalled = std::net::TcpStream::connect(server.addr).unwrap();
    stalled.write_all(&[0x16, 3, 1, 2, 0, 1]).unwrap();
    server.wait_for("TLS failures counted", |s| s.tls_failures >= 3);
    heartbeat(&mut client);
    let (mut second, _) =
        wss_connect(server.addr, tls, "CP3", Some(&basic("CP3", KEY))).expect("others connect");
    boot(&mut second);
    heartbeat(&mut client);
    drop(stalled);
    pki.cleanup();
}

#[test]
fn ecdsa_and_rsa_certificates_go_to_the_clients_that_use_them() {
    let pki = Pki::new("tls-dual");
    let (ec_cert, ec_key, ec_der) = pki.server("ecdsa", false);
    let (rsa_cert, rsa_key, rsa_der) = pki.server("rsa", true);
    let server = TestServer::start(config(&pki, vec![(ec_cert, ec_key), (rsa_cert, rsa_key)]));
    for (suite, expected, what) in [
        (
            suites::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            &ec_der,
            "ECDHE-ECDSA-AES128-GCM",
        ),
        (
            suites::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            &ec_der,
            "ECDHE-ECDSA-AES256-GCM",
        ),
        (
            suites::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            &rsa_der,
            "ECDHE-RSA-AES128-GCM",
        ),
        (
            suites::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            &rsa_der,
            "ECDHE-RSA-AES256-GCM",
        ),
        (suites::TLS13_AES_128_GCM_SHA256, &ec_der, "TLS 1.3"),
    ] {
        let tls = client_config_with(&pki, None, Some(vec![suite]));
        let stream = tls_stream(server.addr, tls.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(presented(&stream), expected.to_vec(), "{what}");
        assert_eq!(stream.conn.negotiated_cipher_suite(), Some(suite), "{what}");
        let (mut client, _) = wss_connect(server.addr, tls, "CP1", Some(&basic("CP1", KEY)))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        boot(&mut client);
    }
    // A suite outside the whitepaper's list (CBC-free, but not ours: ChaCha20 on TLS 1.2).
    let tls = client_config_with(
        &pki,
        None,
        Some(vec![suites::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256]),
    );
    assert!(
        tls_stream(server.addr, tls).is_err(),
        "not a whitepaper suite"
    );
    pki.cleanup();
}

#[test]
fn a_reload_changes_the_certificate_of_new_connections_only() {
    let pki = Pki::new("tls-reload");
    let (cert, key, first) = pki.server("server", false);
    let server = TestServer::start(config(&pki, vec![(cert.clone(), key.clone())]));
    let tls = pki.client_config(None);
    let (mut old, _) =
        wss_connect(server.addr, tls.clone(), "CP1", Some(&basic("CP1", KEY))).unwrap();
    boot(&mut old);
    assert_eq!(presented(old.get_ref()), first.to_vec());

    // New files in place, then the reload SIGHUP triggers.
    let (new_cert, new_key, second) = pki.server("next", false);
    std::fs::rename(&new_cert, &cert).unwrap();
    std::fs::rename(&new_key, &key).unwrap();
    server.server().reload();
    let stream = tls_stream(server.addr, tls.clone()).unwrap();
    assert_eq!(presented(&stream), second.to_vec());
    heartbeat(&mut old);

    // A broken file is logged and the current certificate stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    server.server().reload();
    let stream = tls_stream(server.addr, tls.clone()).unwrap();
    assert_eq!(presented(&stream), second.to_vec());
    let (mut fresh, _) = wss_connect(server.addr, tls, "CP2", Some(&basic("CP2", KEY))).unwrap();
    boot(&mut fresh);
    heartbeat(&mut old);
    pki.cleanup();
}

#[test]
fn a_tls_listener_without_its_files_stops_the_start_naming_key_and_file() {
    let pki = Pki::new("tls-missing");
    let missing = pki.path("nowhere.pem");
    let config = config(&pki, vec![(missing.clone(), pki.path("nowhere.key"))]);
    let err = ocpp_gateway::server::Server::start(config)
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("security.tls_cert") && text.contains("nowhere.pem"),
        "{text}"
    );
    let (cert, _, _) = pki.server("server", false);
    let (_, other_key, _) = pki.server("other", false);
    let err = ocpp_gateway::server::Server::start(config_pair(&pki, cert, other_key)).err();
    let text = err.expect("a key of another certificate").to_string();
    assert!(text.contains("security.tls_key"), "{text}");
    pki.cleanup();
}

fn config_pair(pki: &Pki, cert: PathBuf, key: PathBuf) -> Config {
    config(pki, vec![(cert, key)])
}
