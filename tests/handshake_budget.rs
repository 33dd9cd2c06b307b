//! `server.handshakes_per_turn`: a loop serves that many connections still in their handshake
//! per turn and puts the rest off to its next turn (their readiness edge is gone: the loop must
//! remember them). One loop, a budget of 1, and 100 upgrade requests already waiting in their
//! sockets when the loop accepts them: every one is put off at least once, and every one is
//! still upgraded; the charge points then boot as usual.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::num::NonZeroUsize;

use common::*;

const CONNECTIONS: usize = 100;

#[test]
fn upgrades_put_off_by_the_budget_all_complete() {
    let mut config = test_config();
    config.server.workers = NonZeroUsize::new(1).unwrap();
    config.server.handshakes_per_turn = 1;
    let server = TestServer::start(config);

    // Each request is in its socket before the loop accepts the connection, so the loop
    // finds them all readable at once.
    let mut sockets: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|i| {
            let mut tcp = TcpStream::connect(server.addr).expect("connect");
            tcp.set_read_timeout(Some(WATCHDOG)).unwrap();
            let request = format!(
                "GET /ocpp/CP{i} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
            );
            tcp.write_all(request.as_bytes()).expect("request");
            tcp
        })
        .collect();
    for (i, tcp) in sockets.iter_mut().enumerate() {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = tcp.read(&mut byte).unwrap_or_else(|e| panic!("CP{i}: {e}"));
            assert_eq!(n, 1, "CP{i}: closed before its answer");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "CP{i}: {head}");
    }
    server.wait_for("upgrades put off, none lost", |s| {
        s.handshakes_deferred >= (CONNECTIONS - 1) as u64
    });
    drop(sockets);

    // The loop goes on serving as usual.
    let mut client = connect(&server, "CP-after");
    boot(&mut client);
}
