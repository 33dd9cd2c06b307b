//! 64 clients trickle a request into the admin listener one byte at a time: `/health` is still
//! answered (the slowest trickler makes room with 408), and every trickler gets 408 once its
//! request has been arriving for the request deadline, however often it sends a byte.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;

#[test]
fn tricklers_get_408_and_health_stays_reachable() {
    let server = TestServer::start(test_config());
    let admin = server.admin();
    let slow: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut stream = TcpStream::connect(admin).unwrap();
            stream.set_read_timeout(Some(WATCHDOG)).unwrap();
            stream
                .write_all(b"GET /health HTTP/1.1\r\nX-Slow: ")
                .unwrap();
            stream
        })
        .collect();
    // The attack: one more byte on each, twice a second, for as long as the test runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<TcpStream> = slow.iter().map(|s| s.try_clone().unwrap()).collect();
    let trickle = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut writers = writers;
            while !stop.load(Ordering::Relaxed) {
                for w in &mut writers {
                    let _ = w.write_all(b"a");
                }
                std::thread::sleep(Duration::from_millis(500)); // the attacker's pace
            }
        })
    };
    for _ in 0..5 {
        let reply = http(admin, "GET", "/health", None, None);
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let mut statuses = Vec::new();
    for mut stream in slow {
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        statuses.push(text.split(' ').nth(1).unwrap_or("none").to_owned());
    }
    stop.store(true, Ordering::Relaxed);
    trickle.join().unwrap();
    assert!(statuses.iter().all(|s| s == "408"), "{statuses:?}");
}
