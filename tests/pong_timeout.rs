//! An idle connection is pinged after `websocket.ping_interval`; a client that never answers is
//! closed after `websocket.pong_timeout`. One that answers stays.

mod common;

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use tungstenite::Message;

#[test]
fn client_that_never_answers_pings_is_closed() {
    let mut config = test_config();
    config.websocket.ping_interval = Duration::from_millis(100);
    config.websocket.pong_timeout = Duration::from_millis(200);
    let server = TestServer::start(config);

    let mut silent = connect(&server, "CP-silent");
    boot(&mut silent);
    let mut answering = connect(&server, "CP-answering");
    boot(&mut answering);

    // The answering client reads (tungstenite answers pings while reading) until told to stop,
    // then proves it is still connected with a Heartbeat.
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let answerer = std::thread::spawn(move || {
        answering
            .get_mut()
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut pings = 0;
        while stop_rx.try_recv().is_err() {
            match answering.read() {
                Ok(Message::Ping(_)) => pings += 1,
                Ok(other) => panic!("unexpected {other:?}"),
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("answering client lost its connection: {e}"),
            }
        }
        answering
            .get_mut()
            .set_read_timeout(Some(WATCHDOG))
            .unwrap();
        let reply = call(&mut answering, "hb", "Heartbeat", serde_json::json!({}));
        (pings, reply, answering) // keep the connection open until the checks are done
    });

    // Read the silent client's socket below tungstenite, so no pong is ever sent.
    let mut raw = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match silent.get_mut().read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("not closed: {e}"),
        }
    }
    assert_eq!(
        raw.first(),
        Some(&0x89),
        "the first frame is a ping: {raw:?}"
    );

    server.wait_for("the pong timeout and more pings", |s| {
        s.pong_timeouts == 1 && s.pings_sent >= 4
    });
    stop_tx.send(()).unwrap();
    let (pings, reply, _answering) = answerer.join().expect("answering client");
    assert!(pings >= 1, "the answering client was pinged");
    assert_eq!(reply[0], 3, "{reply}");
    let stats = server.stats();
    assert_eq!(stats.pong_timeouts, 1);
    assert_eq!(stats.connections, 1);
}
