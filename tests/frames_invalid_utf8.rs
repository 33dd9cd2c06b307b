//! A text message that is not UTF-8 closes the connection with 1007.

mod common;

use std::io::Write;

use common::*;

#[test]
fn invalid_utf8_closes_with_1007() {
    let server = TestServer::start(test_config());
    let mut client = connect(&server, "CP-utf8");
    boot(&mut client);
    // A masked text frame carrying 0xFF 0xFE, written below tungstenite (which would refuse).
    let mask = [1u8, 2, 3, 4];
    let payload = [0xFFu8, 0xFE];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    client.get_mut().write_all(&frame).unwrap();
    let close = expect_close(&mut client).expect("close frame");
    assert_eq!(u16::from(close.code), 1007);
    drop(client);
    let stats = server.wait_for("the close", |s| s.connections == 0);
    assert_eq!(stats.protocol_errors, 1);
}
