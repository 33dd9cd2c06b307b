//! Binary frames are not OCPP-J: the connection is closed with 1003.

mod common;

use common::*;
use tungstenite::Message;

#[test]
fn binary_frame_closes_with_1003() {
    let server = TestServer::start(test_config());
    let mut client = connect(&server, "CP-bin");
    boot(&mut client);
    client.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    let frame = expect_close(&mut client).expect("close frame");
    assert_eq!(u16::from(frame.code), 1003);
    let stats = server.wait_for("the close", |s| s.connections == 0);
    assert_eq!(stats.binary_frames, 1);
}
