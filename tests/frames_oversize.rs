//! A message over `websocket.max_message_size` closes with 1009; a message just under it is
//! handled as usual.

mod common;

use common::*;
use serde_json::json;
use tungstenite::Message;

#[test]
fn oversize_message_closes_with_1009() {
    let mut config = test_config();
    config.websocket.max_message_size = 4096;
    let server = TestServer::start(config);
    let mut client = connect(&server, "CP-big");
    boot(&mut client);

    // Just under the limit: handled as usual.
    let filler = "x".repeat(4000);
    let reply = call(
        &mut client,
        "big-ok",
        "DataTransfer",
        json!({"vendorId": "v", "data": filler}),
    );
    assert_eq!(reply[0], 3, "{reply}");
    assert_eq!(reply[2]["status"], "UnknownVendorId");

    client.send(Message::text("[".repeat(5000))).unwrap();
    let frame = expect_close(&mut client).expect("close frame");
    assert_eq!(u16::from(frame.code), 1009);
    drop(client); // the gateway waits for our EOF after failing the connection
    let stats = server.wait_for("the close", |s| s.connections == 0);
    assert_eq!(stats.oversize_messages, 1);
}
