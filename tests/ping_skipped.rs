//! A charge point that stops reading builds a write backlog. An idle ping is then skipped and
//! counted instead of queued; when the backlog reaches `websocket.max_write_buffer` the
//! connection is closed as a slow consumer and counted.

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

#[test]
fn ping_is_skipped_while_the_write_buffer_is_over_threshold() {
    let mut config = test_config();
    config.server.socket_send_buffer = std::num::NonZeroUsize::new(4096);
    config.websocket.ping_interval = Duration::from_millis(100);
    config.websocket.ping_skip_threshold = 8 * 1024;
    config.websocket.max_write_buffer = 4 * 1024 * 1024;
    let server = TestServer::start(config);
    let mut client = non_reading_client(&server, "CP-skip");

    // ~3,000 replies of ~60 bytes: far more than the two small socket buffers hold, far less
    // than the write buffer limit.
    send_raw(&mut client, &heartbeats(3000));
    let stats = server.wait_for("a skipped ping", |s| s.pings_skipped >= 1);
    assert_eq!(stats.pings_sent, 0, "no ping was queued behind the backlog");
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
    let stats = server.wait_for("the slow consumer to be closed", |s| s.slow_consumers == 1);
    assert_eq!(stats.connections, 1);
    // Others are unharmed.
    let reply = call(&mut healthy, "hb", "Heartbeat", serde_json::json!({}));
    assert_eq!(reply[0], 3);
}
