//! A charge point that stops reading builds a write backlog. An idle ping is then skipped and
//! counted instead of queued; a peer that makes no progress on its backlog within
//! `websocket.pong_timeout`, or whose backlog reaches `websocket.max_write_buffer`, is closed
//! as a slow consumer and counted. One that catches up is pinged again.

mod common;

use std::io::{Cursor, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use socket2::SockRef;
use tungstenite::Message;
use tungstenite::protocol::{Role, WebSocket};

/// Opens a charge point whose receive buffer is tiny and which will stop reading after boot.
fn non_reading_client(server: &TestServer, id: &str) -> Client {
    let stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(WATCHDOG)).unwrap();
    SockRef::from(&stream).set_recv_buffer_size(4096).unwrap();
    let mut request =
        tungstenite::client::IntoClientRequest::into_client_request(server.url(id)).unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "ocpp1.6".parse().unwrap());
    let (mut client, _) = tungstenite::client(request, stream).expect("upgrade");
    boot(&mut client);
    client
}

/// `n` Heartbeat CALL frames, written in one go below tungstenite.
fn heartbeats(n: usize) -> Vec<u8> {
    let mut writer = WebSocket::from_raw_socket(Cursor::new(Vec::new()), Role::Client, None);
    for i in 0..n {
        writer
            .write(Message::text(format!(r#"[2,"h{i}","Heartbeat",{{}}]"#)))
            .unwrap();
    }
    writer.flush().unwrap();
    writer.get_ref().get_ref().clone()
}

fn send_raw(client: &mut Client, bytes: &[u8]) {
    let stream: &mut TcpStream = client.get_mut();
    stream.write_all(bytes).unwrap();
}

/// Small kernel send buffers, quick pings, a low skip threshold and a write buffer far larger
/// than 3,000 replies: the backlog builds in the gateway, not in the kernel.
fn backlog_config(pong_timeout: Duration) -> ocpp_gateway::Config {
    let mut config = test_config();
    config.server.socket_send_buffer = std::num::NonZeroUsize::new(4096);
    config.websocket.ping_interval = Duration::from_millis(100);
    config.websocket.pong_timeout = pong_timeout;
    config.websocket.ping_skip_threshold = 8 * 1024;
    config.websocket.max_write_buffer = 4 * 1024 * 1024;
    config
}

#[test]
fn ping_is_skipped_while_the_write_buffer_is_over_threshold() {
    let server = TestServer::start(backlog_config(Duration::from_secs(1)));
    let mut client = non_reading_client(&server, "CP-skip");

    // ~3,000 replies of ~60 bytes: far more than the two small socket buffers hold, far less
    // than the write buffer limit.
    send_raw(&mut client, &heartbeats(3000));
    let stats = server.wait_for("a skipped ping", |s| s.pings_skipped >= 1);
    assert_eq!(stats.pings_sent, 0, "no ping was queued behind the backlog");
    assert_eq!(stats.pong_timeouts, 0);

    // It still does not read: after `pong_timeout` without progress on its backlog it is
    // closed as a slow consumer, instead of holding its buffers forever.
    // The counter is bumped just before the connection leaves the gauge: wait for both.
    let stats = server.wait_for("the stalled peer to be closed", |s| {
        s.slow_consumers == 1 && s.connections == 0
    });
    assert_eq!(stats.pings_sent, 0);
}

#[test]
fn a_peer_that_reads_its_backlog_is_pinged_again() {
    let server = TestServer::start(backlog_config(Duration::from_secs(2)));
    let mut client = non_reading_client(&server, "CP-catch-up");
    send_raw(&mut client, &heartbeats(3000));
    server.wait_for("a skipped ping", |s| s.pings_skipped >= 1);

    // Now read everything: all 3,000 replies, then the pings that follow (answered by
    // tungstenite while reading).
    // A receive buffer far below loopback's 64 KiB MSS makes TCP wait for zero-window probes;
    // a normal one lets the backlog flow at once.
    SockRef::from(client.get_ref())
        .set_recv_buffer_size(1 << 20)
        .unwrap();
    for _ in 0..3000 {
        assert_eq!(next_json(&mut client)[0], 3);
    }
    client
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let stats = server.wait_for("a ping after the backlog cleared", |s| {
        let _ = client.read(); // keeps answering pings
        s.pings_sent >= 1
    });
    assert_eq!(stats.slow_consumers, 0);
    assert_eq!(stats.connections, 1);
}

#[test]
fn full_write_buffer_closes_a_slow_consumer() {
    let mut config = test_config();
    config.server.socket_send_buffer = std::num::NonZeroUsize::new(4096);
    config.websocket.max_message_size = 1024;
    config.websocket.max_write_buffer = 64 * 1024;
    config.websocket.ping_skip_threshold = 8 * 1024;
    let server = TestServer::start(config);
    let mut client = non_reading_client(&server, "CP-slow");
    let mut healthy = connect(&server, "CP-healthy");
    boot(&mut healthy);

    // ~5,000 replies: over 64 KiB of backlog.
    send_raw(&mut client, &heartbeats(5000));
    // The counter is bumped just before the connection leaves the gauge: wait for both, then
    // check that nothing else was closed.
    let stats = server.wait_for("the slow consumer to be closed", |s| {
        s.slow_consumers == 1 && s.connections <= 1
    });
    assert_eq!(stats.connections, 1);
    // Others are unharmed.
    let reply = call(&mut healthy, "hb", "Heartbeat", serde_json::json!({}));
    assert_eq!(reply[0], 3);
}
