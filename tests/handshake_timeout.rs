//! A client that connects and sends nothing, or half a request, is closed when
//! `websocket.handshake_timeout` expires.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::*;

#[test]
fn silent_and_half_requests_are_closed() {
    let mut config = test_config();
    config.websocket.handshake_timeout = Duration::from_millis(200);
    let server = TestServer::start(config);

    let mut silent = TcpStream::connect(server.addr).unwrap();
    silent.set_read_timeout(Some(WATCHDOG)).unwrap();
    let mut half = TcpStream::connect(server.addr).unwrap();
    half.set_read_timeout(Some(WATCHDOG)).unwrap();
    half.write_all(b"GET /ocpp/CP1 HTTP/1.1\r\nHost: loc")
        .unwrap();

    for stream in [&mut silent, &mut half] {
        let answer = read_to_close(stream);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    }
    // Each counter is bumped just before its connection leaves the gauge: wait for both.
    server.wait_for("both timeouts and both closed", |s| {
        s.handshake_timeouts == 2 && s.connections == 0
    });
}
