//! The upgrade selects `ocpp1.6` when offered, alone or among others the gateway does not speak;
//! with no version it speaks the upgrade completes without the header and the connection is
//! closed at once (OCPP-J 1.6). Choosing among versions it speaks: `handshake_versions`.

mod common;

use common::*;

#[test]
fn ocpp16_offered_alone_is_selected_and_boot_works() {
    let server = TestServer::start(test_config());
    let mut client = connect(&server, "CP-alone");
    boot(&mut client);
    assert_eq!(server.stats().handshakes_ok, 1);
}

#[test]
fn ocpp16_is_selected_among_other_offers() {
    let server = TestServer::start(test_config());
    let (mut client, response) =
        try_connect(server.addr, &server.url("CP-many"), "ocpp1.5, ocpp1.6").expect("upgrade");
    assert_eq!(response.headers()["Sec-WebSocket-Protocol"], "ocpp1.6");
    boot(&mut client);
}

#[test]
fn no_subprotocol_upgrades_without_header_then_closes() {
    let server = TestServer::start(test_config());
    let (mut client, response) =
        try_connect(server.addr, &server.url("CP-none"), "").expect("upgrade completes");
    assert_eq!(response.status(), 101);
    assert!(response.headers().get("Sec-WebSocket-Protocol").is_none());
    let frame = expect_close(&mut client).expect("a close frame");
    assert_eq!(u16::from(frame.code), 1002);
    server.wait_for("the rejection to be counted", |s| {
        s.handshakes_rejected == 1
    });
}

#[test]
fn only_other_ocpp_versions_offered_gets_no_header() {
    let server = TestServer::start(test_config());
    let request = upgrade_request(
        "/ocpp/CP-v2",
        "Sec-WebSocket-Protocol: ocpp2.2, ocpp1.5\r\n",
    );
    let answer = raw_exchange(server.addr, request.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(
        !answer
            .to_ascii_lowercase()
            .contains("sec-websocket-protocol"),
        "{answer}"
    );
}
