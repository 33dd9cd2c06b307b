//! Each connection speaks the OCPP version negotiated at its upgrade: of the station's offers,
//! the first in `ocpp.protocols` (the gateway's preference) wins; a listener may narrow the
//! list; an offer of nothing the listener speaks completes the upgrade without the header and
//! closes with 1002 naming what is spoken. 1.6 and 2.0.1 stations share one gateway, each
//! answered in its own version (2.0.1's CallError spellings), counted by version; and a station
//! that comes back with the other version is a new registration.

mod common;

use common::*;
use ocpp_gateway::config::ListenerConfig;
use ocpp_gateway::security::Profile;
use ocpp_gateway::types::Protocols;
use serde_json::json;

/// The raw answer to an upgrade offering `protocols`, up to the server's close.
fn offer(addr: std::net::SocketAddr, id: &str, protocols: &str) -> String {
    let header = format!("Sec-WebSocket-Protocol: {protocols}\r\n");
    raw_exchange(
        addr,
        upgrade_request(&format!("/ocpp/{id}"), &header).as_bytes(),
    )
}

fn both() -> ocpp_gateway::Config {
    let mut config = test_config();
    config.ocpp.protocols = Protocols::BOTH;
    config
}

#[test]
fn the_gateways_preference_decides_among_the_offers() {
    let server = TestServer::start(both());
    for (offer, chosen) in [
        ("ocpp1.6, ocpp2.0.1", "ocpp2.0.1"),
        ("ocpp2.0.1, ocpp1.6", "ocpp2.0.1"),
        ("ocpp1.6", "ocpp1.6"),
        ("ocpp2.1, ocpp2.0.1", "ocpp2.0.1"),
    ] {
        let id = format!("CS-{}", chosen.replace('.', "-"));
        let (_client, response) =
            try_connect(server.addr, &server.url(&id), offer).expect("upgrade");
        assert_eq!(
            response.headers()["Sec-WebSocket-Protocol"],
            chosen,
            "{offer}"
        );
    }
    let stats = server.wait_for("four handshakes", |s| s.handshakes_ok == 4);
    assert_eq!((stats.handshakes_v201, stats.handshakes_v16), (3, 1));
}

#[test]
fn a_version_the_listener_does_not_speak_is_closed_with_what_it_speaks() {
    let mut config = test_config();
    config.ocpp.protocols = Protocols::V16;
    let server = TestServer::start(config);
    let answer = offer(server.addr, "CS-NEW", "ocpp2.0.1");
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(
        !answer
            .to_ascii_lowercase()
            .contains("sec-websocket-protocol"),
        "{answer}"
    );
    // The close frame: code 1002 (0x03 0xEA, 0xEA read lossily) and the reason.
    assert!(
        answer.contains("\u{3}\u{fffd}subprotocol ocpp1.6 required"),
        "{answer:?}"
    );
}

#[test]
fn a_listener_narrows_the_versions() {
    let mut config = both();
    config.extra_listeners.push(ListenerConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        profile: Profile::Unsecured,
        proxy_protocol: false,
        tls_offload: false,
        protocols: Protocols::parse(&["ocpp2.0.1"]).expect("one version"),
    });
    let server = TestServer::start(config);
    let narrow = server.server().local_addrs()[1];
    let answer = offer(narrow, "CS-OLD", "ocpp1.6");
    assert!(
        !answer
            .to_ascii_lowercase()
            .contains("sec-websocket-protocol"),
        "{answer}"
    );
    assert!(
        answer.contains("subprotocol ocpp2.0.1 required"),
        "{answer:?}"
    );
    let url = format!("ws://{narrow}/ocpp/CS-NEW");
    let (_client, response) = try_connect(narrow, &url, "ocpp1.6, ocpp2.0.1").expect("upgrade");
    assert_eq!(response.headers()["Sec-WebSocket-Protocol"], "ocpp2.0.1");
}

#[test]
fn both_versions_share_a_gateway_each_answered_in_its_own() {
    let server = TestServer::start(both());
    let mut old = connect(&server, "CP-16");
    let mut new = connect_v201(&server, "CS-201");
    boot(&mut old);
    boot_v201(&mut new);
    // The same mistake, an unknown field, in each version's spelling.
    let reply = call(&mut old, "x-1", "Heartbeat", json!({"extra": 1}));
    assert_eq!(reply[2], "FormationViolation", "{reply}");
    let reply = call_v201(&mut new, "x-1", "Heartbeat", json!({"extra": 1}));
    assert_eq!(reply[2], "FormatViolation", "{reply}");
    // A 1.6 action is not a 2.0.1 one, and the other way round.
    let reply = call_v201(&mut new, "x-2", "StartTransaction", json!({}));
    assert_eq!(reply[2], "NotImplemented", "{reply}");
    let reply = call(&mut old, "x-2", "TransactionEvent", json!({}));
    assert_eq!(reply[2], "NotImplemented", "{reply}");
    // Heartbeats of both are answered (by their loop, once accepted and idle).
    for n in 0..3 {
        let id = format!("hb-{n}");
        assert_eq!(call(&mut old, &id, "Heartbeat", json!({}))[0], 3);
        assert_eq!(call_v201(&mut new, &id, "Heartbeat", json!({}))[0], 3);
    }
    // Heartbeats the loop answered reach the processor's counters a moment later.
    let slot = ocpp::v201::Action::Heartbeat.index();
    server.wait_for("four 2.0.1 Heartbeats counted", |s| {
        s.calls_in_by_action_v201.get(slot) == Some(&4)
    });
    for (id, version) in [("CP-16", "1.6"), ("CS-201", "2.0.1")] {
        let path = format!("/api/v1/chargepoints/{id}");
        let view = http(server.admin(), "GET", &path, None, None).json();
        assert_eq!(view["ocppVersion"], version, "{view}");
    }
    let metrics = http(server.admin(), "GET", "/metrics", None, None).body;
    assert!(
        metrics.contains("ocpp_gateway_handshakes_by_version_total{version=\"2.0.1\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ocpp_gateway_v201_messages_total{action=\"Heartbeat\"} 4"),
        "{metrics}"
    );
}

#[test]
fn a_station_back_with_the_other_version_registers_anew() {
    let server = TestServer::start(both());
    let mut first = connect_v201(&server, "CS-SWITCH");
    boot_v201(&mut first);
    drop(first);
    let mut second = connect(&server, "CS-SWITCH");
    let status = json!({"connectorId": 1, "errorCode": "NoError", "status": "Available"});
    let reply = call(&mut second, "s-1", "StatusNotification", status);
    assert_eq!(
        reply[2], "SecurityError",
        "its 2.0.1 boot does not carry over: {reply}"
    );
    boot(&mut second);
}
