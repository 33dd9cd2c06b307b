//! A connection holds no buffer while idle: an unfinished 60 KiB message is held while it
//! arrives and freed once complete, and a write backlog is freed once the charge point has
//! read it. Read through the gateway's own accounting (`buffered_read_bytes`,
//! `buffered_write_bytes`), not RSS.

mod common;

use std::net::TcpStream;

use common::*;
use serde_json::json;

#[test]
fn a_large_message_is_held_while_it_arrives_then_freed() {
    let server = TestServer::start(test_config());
    let mut client = RawClient::connect(&server, "CP-big-in");
    client.send_text(
        &json!([2, "b", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}])
            .to_string(),
    );
    assert_eq!(client.read_json()[0], 3);

    let data = "x".repeat(60 * 1024);
    let text = json!([2, "big", "DataTransfer", {"vendorId": "v", "data": data}]).to_string();
    let frame = RawClient::frame(TEXT, text.as_bytes(), true);
    let (first, rest) = frame.split_at(frame.len() / 2);
    client.send_raw(first);
    let held = server.wait_for("the first half to be held", |s| s.buffered_read_bytes > 0);
    assert!(
        held.buffered_read_bytes >= frame.len() && held.buffered_read_bytes < frame.len() + 4096,
        "held {} for a frame of {}",
        held.buffered_read_bytes,
        frame.len()
    );
    client.send_raw(rest);
    let reply = client.read_json();
    assert_eq!(
        (reply[0].as_u64(), reply[1].as_str()),
        (Some(3), Some("big"))
    );
    server.wait_for("nothing held", |s| {
        s.buffered_read_bytes == 0 && s.buffered_write_bytes == 0
    });
}

#[test]
fn a_write_backlog_is_freed_once_read() {
    let mut config = test_config();
    config.server.socket_send_buffer = std::num::NonZeroUsize::new(4096);
    let server = TestServer::start(config);
    // A small receive buffer on our side, so the gateway's write cannot all go through.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WATCHDOG)).unwrap();
    let mut client = RawClient::upgrade(stream, "CP-big-out");
    client.send_text(
        &json!([2, "b", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}])
            .to_string(),
    );
    assert_eq!(client.read_json()[0], 3);

    // A 60 KiB call of the central system that we do not read yet.
    let data = "y".repeat(60 * 1024);
    let payload = serde_json::value::RawValue::from_string(
        json!({"vendorId": "v", "data": data}).to_string(),
    )
    .unwrap();
    let pending = server
        .call("CP-big-out", ocpp::v16::Action::DataTransfer, payload)
        .expect("valid");
    server.wait_for("a backlog", |s| s.buffered_write_bytes > 0);
    let call = client.read_json();
    assert_eq!(call[2], "DataTransfer");
    client.send_text(&json!([3, call[1], {"status": "Accepted"}]).to_string());
    assert!(matches!(
        pending.wait(),
        ocpp_gateway::call::CallOutcome::Result(_)
    ));
    server.wait_for("the backlog freed", |s| {
        s.buffered_write_bytes == 0 && s.buffered_read_bytes == 0
    });
}
