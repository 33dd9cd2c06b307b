//! Security profile 1 (Basic auth over TCP): the right key boots; a wrong key, no credentials,
//! or a username other than the identity get 401 with `WWW-Authenticate: Basic`, are counted
//! and journaled without the password; a connection that did not authenticate never takes
//! over one that did (neither on the profile 1 port nor, refused with 403, on a profile 0 port
//! of the same gateway); keys rotate through the API and through ChangeConfiguration
//! AuthorizationKey.

mod common;

use std::path::PathBuf;

use common::pki::{basic, connect_as, credentials_file};
use common::*;
use ocpp_gateway::config::{Config, ListenerConfig};
use ocpp_gateway::security::Profile;
use serde_json::{Value, json};
use tungstenite::Message;

/// A key with bytes that are neither UTF-8 nor free of colons.
const KEY: &[u8] = &[
    0xFF, b':', 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
];

fn dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ocpp-basic-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Profile 1 on `server.listen`, credentials for CP1 (and CP:2, an identity with a colon).
fn config(dir: &std::path::Path) -> Config {
    let credentials = dir.join("credentials");
    credentials_file(&credentials, &[("CP1", KEY), ("CP:2", b"0123456789abcdef")]);
    let mut config = test_config();
    config.security.profile = Profile::BasicAuth;
    config.security.credentials = Some(credentials);
    config
}

fn heartbeat_works(client: &mut Client) {
    let reply = call(client, "hb", "Heartbeat", json!({}));
    assert_eq!(reply[0], 3, "{reply}");
}

#[test]
fn the_right_key_boots_and_anything_else_gets_401() {
    let dir = dir("refusals");
    let mut config = config(&dir);
    config.events.sinks = ocpp_gateway::config::Sinks::JOURNAL;
    config.events.path = dir.join("journal.jsonl");
    let mut server = TestServer::start(config);

    let mut client = connect_as(server.addr, "CP1", Some(&basic("CP1", KEY))).expect("boots");
    boot(&mut client);
    // The key's hex text is the same secret (some charge points send it).
    let hex: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
    let mut again = connect_as(
        server.addr,
        "CP:2",
        Some(&basic("CP:2", b"0123456789abcdef")),
    )
    .expect("an identity with a colon is split after the identity");
    boot(&mut again);

    let wrong = basic("CP1", b"not-the-key-at-all");
    let other_user = basic("CP2", KEY);
    for (header, why) in [
        (Some(wrong.as_str()), "wrong key"),
        (None, "no credentials"),
        (Some(other_user.as_str()), "user is not the identity"),
        (Some("Bearer abc"), "not Basic"),
        (Some("Basic %%%"), "not base64"),
    ] {
        let extra = header.map_or(String::new(), |h| format!("Authorization: {h}\r\n"));
        let reply = parse_http(&raw_exchange(
            server.addr,
            upgrade_request(
                "/ocpp/CP1",
                &format!("Sec-WebSocket-Protocol: ocpp1.6\r\n{extra}"),
            )
            .as_bytes(),
        ));
        assert_eq!(reply.status, 401, "{why}: {}", reply.head);
        assert!(
            reply
                .header("WWW-Authenticate")
                .is_some_and(|h| h.starts_with("Basic")),
            "{why}: {}",
            reply.head
        );
    }
    let stats = server.wait_for("refusals counted", |s| s.auth_failures == 5);
    assert_eq!(stats.handshakes_ok, 2);

    // The hex text of the key opens it too.
    let mut hex_client = connect_as(server.addr, "CP1", Some(&basic("CP1", hex.as_bytes())))
        .expect("hex text of the key");
    heartbeat_works(&mut hex_client);

    server.stop();
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    let refused: Vec<Value> = journal
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["event"] == "refused")
        .collect();
    assert_eq!(refused.len(), 5, "{journal}");
    assert!(
        refused
            .iter()
            .all(|l| l["cp"] == "CP1" && l["code"] == "401")
    );
    assert!(refused.iter().any(|l| l["reason"] == "wrong_password"));
    assert!(refused.iter().any(|l| l["reason"] == "no_credentials"));
    assert!(refused.iter().any(|l| l["reason"] == "wrong_user"));
    assert!(
        !journal.contains(&wrong[6..]) && !journal.contains("not-the-key"),
        "no password in the journal"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unauthenticated_connection_never_takes_over() {
    let dir = dir("takeover");
    let mut config = config(&dir);
    // A second port without authentication on the same gateway.
    config.extra_listeners.push(ListenerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        profile: Profile::Unsecured,
        proxy_protocol: false,
        tls_offload: false,
        protocols: config.ocpp.protocols,
    });
    let server = TestServer::start(config);
    let open_port = server.server().local_addrs()[1];

    let mut held = connect_as(server.addr, "CP1", Some(&basic("CP1", KEY))).unwrap();
    boot(&mut held);

    let refused = connect_as(
        server.addr,
        "CP1",
        Some(&basic("CP1", b"guessing-the-key!!")),
    );
    assert!(matches!(refused, Err(tungstenite::Error::Http(r)) if r.status() == 401));
    heartbeat_works(&mut held);

    // Through the port without authentication: CP1 has a credential, so it is never served
    // below profile 1 (tests/security_profile_floor.rs has the rest of that rule, and the 1008
    // of an identity whose credentials allow profile 0).
    let intruder = connect_as(open_port, "CP1", None);
    assert!(matches!(intruder, Err(tungstenite::Error::Http(r)) if r.status() == 403));
    server.wait_for("refusal counted", |s| s.profile_refusals == 1);
    heartbeat_works(&mut held);

    // A connection that authenticates does take over (the newest wins, as always).
    let mut newer = connect_as(server.addr, "CP1", Some(&basic("CP1", KEY))).unwrap();
    let close = expect_close(&mut held).expect("the old connection is closed");
    assert_eq!(u16::from(close.code), 1000);
    heartbeat_works(&mut newer);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keys_rotate_through_the_api_and_through_change_configuration() {
    let dir = dir("rotate");
    let server = TestServer::start(config(&dir));
    let admin = server.admin();

    // Set directly (the charge point already uses the new key).
    let new_key = b"a-brand-new-key-123";
    let hex = |key: &[u8]| key.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let body = json!({ "password_hex": hex(new_key) }).to_string();
    let reply = http(
        admin,
        "PUT",
        "/api/v1/chargepoints/CP1/password",
        None,
        Some(&body),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(connect_as(server.addr, "CP1", Some(&basic("CP1", KEY))).is_err());
    let mut client = connect_as(server.addr, "CP1", Some(&basic("CP1", new_key))).unwrap();
    boot(&mut client);
    for bad in [r#"{"password":"short"}"#, r#"{"password_hex":"zz"}"#, "{}"] {
        let reply = http(
            admin,
            "PUT",
            "/api/v1/chargepoints/CP1/password",
            None,
            Some(bad),
        );
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
    }

    // Through the charge point: stored only once it answers Accepted.
    let rotate = |value: &str| {
        let body = json!({"action": "ChangeConfiguration",
                          "payload": {"key": "AuthorizationKey", "value": value}})
        .to_string();
        std::thread::spawn(move || {
            http(
                admin,
                "POST",
                "/api/v1/chargepoints/CP1/calls",
                None,
                Some(&body),
            )
        })
    };
    let answer = |client: &mut Client, status: &str| {
        let call = next_json(client);
        assert_eq!(call[2], "ChangeConfiguration", "{call}");
        let reply = json!([3, call[1], {"status": status}]).to_string();
        client.send(Message::text(reply)).unwrap();
    };
    let third_key = b"the-third-key-00001";
    let pending = rotate(&hex(third_key));
    answer(&mut client, "Rejected");
    let reply = pending.join().unwrap();
    assert_eq!(
        reply.json()["payload"]["status"],
        "Rejected",
        "{}",
        reply.body
    );
    assert!(connect_as(server.addr, "CP1", Some(&basic("CP1", third_key))).is_err());

    let pending = rotate(&hex(third_key));
    answer(&mut client, "Accepted");
    let reply = pending.join().unwrap();
    assert_eq!(reply.json()["credentials"], "stored", "{}", reply.body);
    assert!(connect_as(server.addr, "CP1", Some(&basic("CP1", new_key))).is_err());
    let mut rotated = connect_as(server.addr, "CP1", Some(&basic("CP1", third_key))).unwrap();
    heartbeat_works(&mut rotated);

    // Stored in the file: a gateway started on it knows the new key.
    let reloaded =
        ocpp_gateway::security::credentials::Credentials::load(&dir.join("credentials")).unwrap();
    assert!(reloaded.verify("CP1", third_key));
    let _ = std::fs::remove_dir_all(&dir);
}
