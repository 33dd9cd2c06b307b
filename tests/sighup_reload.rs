//! SIGHUP reloads the TLS certificates and the credentials file of a running gateway: open
//! connections stay, new ones see the new certificate and the new credentials.

mod common;

use std::io::Write;

use common::pki::*;
use common::*;
use serde_json::json;

#[test]
fn sighup_swaps_certificates_and_credentials_without_dropping_anyone() {
    let pki = Pki::new("sighup");
    let (cert, key, first) = pki.server("server", false);
    let credentials = pki.path("credentials");
    credentials_file(&credentials, &[("CP1", b"the-key-of-cp-1!")]);
    let config = pki.path("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\npin_cores = false\n\
             [admin]\nlisten = \"\"\n[events]\nsink = \"none\"\n\
             [security]\nprofile = 2\ncredentials = {credentials:?}\ntls_cert = {cert:?}\n\
             tls_key = {key:?}\n"
        ),
    )
    .unwrap();
    let gateway = GatewayProcess::start(&config);
    let addr = gateway.addr;
    assert!(
        gateway.listening.contains("security profile 2"),
        "{}",
        gateway.listening
    );

    let tls = pki.client_config(None);
    let (mut old, _) = wss_connect(
        addr,
        tls.clone(),
        "CP1",
        Some(&basic("CP1", b"the-key-of-cp-1!")),
    )
    .unwrap();
    boot(&mut old);
    assert_eq!(
        old.get_ref().conn.peer_certificates().unwrap()[0].to_vec(),
        first.to_vec()
    );
    assert_eq!(
        refused_status(wss_connect(
            addr,
            tls.clone(),
            "CP2",
            Some(&basic("CP2", b"the-key-of-cp-2!"))
        )),
        401
    );

    // New certificate files, one more charge point in the credentials file.
    let (next_cert, next_key, second) = pki.server("next", false);
    std::fs::rename(next_cert, &cert).unwrap();
    std::fs::rename(next_key, &key).unwrap();
    let line = ocpp_gateway::security::credentials::Credential::new(b"the-key-of-cp-2!")
        .unwrap()
        .line("CP2");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&credentials)
        .unwrap();
    writeln!(file, "{line}").unwrap();
    drop(file);
    gateway.signal("-HUP");
    gateway.wait_for_line("TLS certificates reloaded");
    gateway.wait_for_line("credentials reloaded: 2 charge points");

    let (mut new, _) =
        wss_connect(addr, tls, "CP2", Some(&basic("CP2", b"the-key-of-cp-2!"))).unwrap();
    assert_eq!(
        new.get_ref().conn.peer_certificates().unwrap()[0].to_vec(),
        second.to_vec()
    );
    boot(&mut new);
    let reply = call(&mut old, "hb", "Heartbeat", json!({}));
    assert_eq!(reply[0], 3, "the old connection stays: {reply}");

    gateway.signal("-TERM");
    expect_close(&mut old);
    expect_close(&mut new);
    let (status, _) = gateway.wait_exit();
    assert_eq!(status.code(), Some(0));
    pki.cleanup();
}
