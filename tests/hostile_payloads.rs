//! Payloads an attacker writes to break the gateway or its readers: numbers out of any range
//! get PropertyConstraintViolation (as the README's table says); a payload nested 30,000 deep
//! gets FormationViolation and never reaches the journal, which stays readable by a JSON parser
//! line by line; an upgrade request with the first frame in the same write works; a repeated
//! `Upgrade` header is a bad request.

mod common;

use common::*;
use serde_json::{Value, json};
use tungstenite::Message;

#[test]
fn out_of_range_numbers_are_property_violations() {
    let server = TestServer::start(test_config());
    let mut client = connect(&server, "CP-NUM");
    boot(&mut client);
    let digits = "9".repeat(5_001);
    for connector in ["1e400", "-1e400", digits.as_str()] {
        let text = format!(
            r#"[2,"n","StatusNotification",{{"connectorId":{connector},"errorCode":"NoError","status":"Available"}}]"#
        );
        client.send(Message::text(text)).unwrap();
        let reply = next_json(&mut client);
        assert_eq!(reply[0], 4, "{reply}");
        assert_eq!(
            reply[2], "PropertyConstraintViolation",
            "{connector:.20}: {reply}"
        );
    }
}

#[test]
fn deep_payloads_are_refused_and_never_journaled() {
    let dir = std::env::temp_dir().join(format!("ocpp-deep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = test_config();
    config.events.sinks = ocpp_gateway::config::Sinks::JOURNAL;
    config.events.path = dir.join("journal.jsonl");
    config.websocket.max_message_size = 256 * 1024;
    let mut server = TestServer::start(config);
    // Not booted: the attack of the finding.
    let mut client = connect(&server, "CP-DEEP");
    let deep = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    let text = format!(r#"[2,"d1","DataTransfer",{{"vendorId":"V","data":{deep}}}]"#);
    client.send(Message::text(text)).unwrap();
    let reply = next_json(&mut client);
    assert_eq!(
        reply,
        json!([
            4,
            "d1",
            "FormationViolation",
            "nested deeper than 32 levels",
            {}
        ])
    );
    // A normal message afterwards is journaled and the journal parses line by line.
    boot(&mut client);
    drop(client);
    server.stop();
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    assert!(
        !journal.contains("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["),
        "deep payload journaled"
    );
    for line in journal.lines() {
        let _: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:.200}"));
    }
    assert!(journal.contains("BootNotification"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_first_frame_may_ride_with_the_upgrade_and_upgrade_may_not_repeat() {
    let server = TestServer::start(test_config());
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(WATCHDOG)).unwrap();
    let mut bytes =
        upgrade_request("/ocpp/CP-FAST", "Sec-WebSocket-Protocol: ocpp1.6\r\n").into_bytes();
    bytes.extend_from_slice(&RawClient::frame(
        TEXT,
        br#"[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]"#,
        true,
    ));
    std::io::Write::write_all(&mut stream, &bytes).unwrap();
    let mut client = RawClient::after_upgrade(stream);
    let reply = client.read_json();
    assert_eq!(reply[2]["status"], "Accepted", "{reply}");

    let twice = upgrade_request("/ocpp/CP-TWICE", "Upgrade: websocket\r\n");
    let answer = raw_exchange(server.addr, twice.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}
