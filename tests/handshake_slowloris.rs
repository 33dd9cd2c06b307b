//! Slowloris before the upgrade: connections that send most of an upgrade request and then
//! nothing hold at most what connections may hold before their upgrade (a quarter of
//! `websocket.partial_message_budget`, at least 1 MiB), however many they are: a read that
//! takes the loop past it makes room at once by closing the oldest holders. A charge point
//! whose upgrade request arrives in two reads, while they fill the budget, is still upgraded:
//! the oldest holders are closed for it, not the station.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::num::NonZeroUsize;

use common::*;

const SLOW: usize = 200;
const PAD: usize = 7000;
/// What connections may hold before their upgrade, on the test's one loop.
const BUDGET: usize = 1 << 20;
/// A station's second part.
const LAST_PART: usize = 40;

#[test]
fn the_oldest_slowloris_are_closed_to_make_room_for_a_station() {
    let mut config = test_config();
    config.server.workers = NonZeroUsize::new(1).unwrap();
    config.websocket.partial_message_budget = BUDGET; // a quarter of it, at least 1 MiB
    let server = TestServer::start(config);

    // Past the budget each newcomer closes the oldest: as many are kept as fit under it. A
    // station's first part takes a full loop past it, by less than a slowloris holds.
    let slow_len = slow_head(0).len();
    let kept = (BUDGET - 1) / slow_len;
    let room = BUDGET - kept * slow_len;
    let first_part = station_request("CP-honest-1").len() - LAST_PART;
    assert!(room < first_part && first_part < room + slow_len);

    // One that sends nothing (it holds nothing: never closed to make room, its handshake
    // timeout ends it) ...
    let _idle = TcpStream::connect(server.addr).expect("connect");
    // ... and slowloris, 1.4 MB of them: the oldest are closed as newer ones come.
    let mut slow: Vec<TcpStream> = (0..SLOW).map(|i| slowloris(&server, i)).collect();
    let mut closed = (SLOW - kept) as u64;
    let stats = server.wait_for("the oldest slowloris closed", |s| {
        s.upgrades_over_budget >= closed
    });
    assert_eq!(stats.upgrades_over_budget, closed);
    assert!(stats.buffered_read_bytes < BUDGET, "{stats:?}");

    // Stations whose request comes in two reads, one after the other, with more slowloris
    // between them (the second station likely on a slab key a closed slowloris had): each
    // makes room for its first part (one slowloris closed) and is upgraded. They stay
    // connected.
    let mut stations = Vec::new();
    for (n, name) in ["CP-honest-1", "CP-honest-2"].into_iter().enumerate() {
        if n > 0 {
            // The first newcomer takes the room the last station's upgrade left; each
            // after it closes an older one.
            slow.extend((0..SLOW / 4).map(|i| slowloris(&server, SLOW + i)));
            closed += (SLOW / 4 - 1) as u64;
            let stats = server.wait_for("older slowloris closed for the new", |s| {
                s.upgrades_over_budget >= closed
            });
            assert_eq!(stats.upgrades_over_budget, closed);
            assert!(stats.buffered_read_bytes < BUDGET, "{stats:?}");
        }
        stations.push(upgrade_in_two_reads(&server, name, closed));
        closed += 1;
    }

    let stats = server.stats();
    assert_eq!(stats.upgrades_over_budget, closed);
    assert!(stats.buffered_read_bytes < BUDGET, "{stats:?}");
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

/// What slowloris `i` sends: most of a request (under the 8 KiB a request head may have),
/// all of one length.
fn slow_head(i: usize) -> String {
    format!(
        "GET /ocpp/SL{i:04} HTTP/1.1\r\nHost: x\r\nX-Pad: {}",
        "a".repeat(PAD)
    )
}

/// Connection `i` sends its head and stops.
fn slowloris(server: &TestServer, i: usize) -> TcpStream {
    let mut tcp = TcpStream::connect(server.addr).expect("connect");
    tcp.write_all(slow_head(i).as_bytes())
        .expect("part of a request");
    tcp
}

/// A station's upgrade request, padded so that what it holds after its first part takes a
/// full loop past its budget.
fn station_request(name: &str) -> String {
    let extra = format!(
        "X-Pad: {}\r\nSec-WebSocket-Protocol: ocpp1.6\r\n",
        "s".repeat(PAD)
    );
    upgrade_request(&format!("/ocpp/{name}"), &extra)
}

/// A station sends its upgrade request in two parts, the second once the first was read and
/// made room (`upgrades_over_budget` past `closed`): it must be upgraded. Returns its socket.
fn upgrade_in_two_reads(server: &TestServer, name: &str, closed: u64) -> TcpStream {
    let mut station = TcpStream::connect(server.addr).expect("connect");
    station.set_read_timeout(Some(WATCHDOG)).unwrap();
    let request = station_request(name);
    let (first, rest) = request.as_bytes().split_at(request.len() - LAST_PART);
    station.write_all(first).expect("first part");
    server.wait_for("room made for the station's first part", |s| {
        s.upgrades_over_budget > closed
    });
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
