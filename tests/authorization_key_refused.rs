//! A ChangeConfiguration of AuthorizationKey the gateway could not store is never sent: the
//! charge point would accept it and be locked out at its next connect. Keys of 4 and 65 bytes
//! (as hex and as text) and any key without a credentials file are answered 400 by
//! `POST .../calls`; the charge point receives nothing; a key of a storable length is sent.

mod common;

use std::path::PathBuf;

use common::pki::{basic, connect_as, credentials_file};
use common::*;
use ocpp_gateway::security::Profile;
use serde_json::{Value, json};
use tungstenite::Message;

const KEY: &[u8] = b"the-first-key-0001";

fn dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ocpp-authkey-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn rotate(admin: std::net::SocketAddr, value: &str) -> HttpReply {
    let body = json!({"action": "ChangeConfiguration",
                      "payload": {"key": "AuthorizationKey", "value": value}})
    .to_string();
    http(
        admin,
        "POST",
        "/api/v1/chargepoints/CP1/calls",
        None,
        Some(&body),
    )
}

/// The next message the charge point gets is the answer to its own Heartbeat: nothing was
/// sent to it in between.
fn nothing_was_sent(client: &mut Client) {
    let reply = call(client, "hb", "Heartbeat", json!({}));
    assert_eq!(reply[0], 3, "{reply}");
}

#[test]
fn keys_the_gateway_cannot_store_are_refused_before_sending() {
    let dir = dir("length");
    let credentials = dir.join("credentials");
    credentials_file(&credentials, &[("CP1", KEY)]);
    let mut config = test_config();
    config.security.profile = Profile::BasicAuth;
    config.security.credentials = Some(credentials);
    let server = TestServer::start(config);
    let admin = server.admin();
    let mut client = connect_as(server.addr, "CP1", Some(&basic("CP1", KEY))).unwrap();
    boot(&mut client);

    for value in [
        hex(b"abcd"),
        hex(&[7u8; 65]),
        "abcd".to_owned(),
        "x".repeat(65),
    ] {
        let reply = rotate(admin, &value);
        assert_eq!(reply.status, 400, "{value}: {}", reply.body);
        let body: Value = reply.json();
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("bytes")),
            "{body}"
        );
        nothing_was_sent(&mut client);
    }

    // A storable key is sent, and stored once Accepted.
    let good = b"a-storable-key-0002";
    let pending = {
        let value = hex(good);
        std::thread::spawn(move || rotate(admin, &value))
    };
    let sent = next_json(&mut client);
    assert_eq!(sent[2], "ChangeConfiguration", "{sent}");
    client
        .send(Message::text(
            json!([3, sent[1], {"status": "Accepted"}]).to_string(),
        ))
        .unwrap();
    let reply = pending.join().unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["credentials"], "stored", "{}", reply.body);
    assert!(connect_as(server.addr, "CP1", Some(&basic("CP1", good))).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_a_credentials_file_no_key_is_sent() {
    let server = TestServer::start(test_config());
    let admin = server.admin();
    let mut client = connect(&server, "CP1");
    boot(&mut client);
    let reply = rotate(admin, &hex(b"a-storable-key-0002"));
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        reply.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("security.credentials")),
        "{}",
        reply.body
    );
    nothing_was_sent(&mut client);
}
