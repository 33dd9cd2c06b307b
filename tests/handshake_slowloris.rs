//! Slowloris before the upgrade: connections that send most of an upgrade request and then
//! nothing hold all that connections may hold before their upgrade (a quarter of
//! `websocket.partial_message_budget`, at least 1 MiB). A charge point whose upgrade request
//! then arrives in two reads must still be upgraded: the loop closes the oldest holders to make
//! room for it, not the station.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::num::NonZeroUsize;

use common::*;

const SLOW: usize = 200;
const PAD: usize = 7000;

#[test]
fn the_oldest_slowloris_are_closed_to_make_room_for_a_station() {
    let mut config = test_config();
    config.server.workers = NonZeroUsize::new(1).unwrap();
    config.websocket.partial_message_budget = 1 << 20; // 1 MiB before the upgrade
    let server = TestServer::start(config);

    // One that sends nothing (it holds nothing: never closed to make room, its handshake
    // timeout ends it) ...
    let _idle = TcpStream::connect(server.addr).expect("connect");
    // ... and slowloris.
    let mut slow: Vec<TcpStream> = (0..SLOW).map(|i| slowloris(&server, i)).collect();
    let mut held = server
        .wait_for("every slowloris held", |s| {
            s.buffered_read_bytes >= SLOW * PAD
        })
        .buffered_read_bytes;
    assert!(held > 1 << 20, "over what they may hold: {held}");

    // Stations whose request comes in two reads, one after the other, with more slowloris
    // between them (the second station likely on a slab key a closed slowloris had): each is
    // upgraded. They stay connected, so that what the loop holds only grows between looks.
    let mut stations = Vec::new();
    for (n, name) in ["CP-honest-1", "CP-honest-2"].into_iter().enumerate() {
        if n > 0 {
            // The loop publishes its gauge at the end of a turn, and the room was made in the
            // turn that answered the last station: wait for it to show.
            let before = server
                .wait_for("the room made", |s| s.buffered_read_bytes < 1 << 20)
                .buffered_read_bytes;
            slow.extend((0..SLOW / 4).map(|i| slowloris(&server, SLOW + i)));
            held = server
                .wait_for("the new slowloris held", |s| {
                    s.buffered_read_bytes >= before + (SLOW / 4 - 5) * PAD
                })
                .buffered_read_bytes;
            assert!(held > 1 << 20, "over what they may hold again: {held}");
        }
        stations.push(upgrade_in_two_reads(&server, name, held));
    }

    let stats = server.wait_for("slowloris closed", |s| s.upgrades_over_budget > 0);
    assert!(
        stats.upgrades_over_budget < SLOW as u64,
        "{}",
        stats.upgrades_over_budget
    );
    // The oldest was closed; the newest still waits (its handshake timeout will end it).
    slow[0].set_read_timeout(Some(WATCHDOG)).unwrap();
    let mut buf = [0u8; 64];
    match slow[0].read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the oldest slowloris is still served: {other:?}"),
    }
    let newest = slow.last_mut().expect("slowloris");
    newest.set_nonblocking(true).unwrap();
    let still_open = newest.read(&mut buf);
    assert!(
        matches!(&still_open, Err(e) if e.kind() == ErrorKind::WouldBlock),
        "the newest slowloris was closed too: {still_open:?}"
    );
}

/// Connection `i` sends most of a request (under the 8 KiB a request head may have) and stops.
fn slowloris(server: &TestServer, i: usize) -> TcpStream {
    let mut tcp = TcpStream::connect(server.addr).expect("connect");
    let head = format!(
        "GET /ocpp/SL{i} HTTP/1.1\r\nHost: x\r\nX-Pad: {}",
        "a".repeat(PAD)
    );
    tcp.write_all(head.as_bytes()).expect("part of a request");
    tcp
}

/// A station sends its upgrade request in two parts, the second once the first is held (the
/// loop's gauge past `held`): it must be upgraded. Returns its socket.
fn upgrade_in_two_reads(server: &TestServer, name: &str, held: usize) -> TcpStream {
    let mut station = TcpStream::connect(server.addr).expect("connect");
    station.set_read_timeout(Some(WATCHDOG)).unwrap();
    let request = upgrade_request(
        &format!("/ocpp/{name}"),
        "Sec-WebSocket-Protocol: ocpp1.6\r\n",
    );
    let (first, rest) = request.as_bytes().split_at(40);
    station.write_all(first).expect("first part");
    server.wait_for("the station's first part held", |s| {
        s.buffered_read_bytes > held
    });
    // Reading the rest makes room: the oldest slowloris are closed, not the station.
    station.write_all(rest).expect("the rest");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = station.read(&mut byte).expect("the answer");
        assert_eq!(
            n,
            1,
            "{name} was closed: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{name}: {head}");
    station
}
