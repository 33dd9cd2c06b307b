//! The admin listener's endpoints on a real socket: bearer-token auth, malformed and oversize
//! requests, the charge point listing (paging, filter) and detail, closing a connection, and
//! turning a frame trace on.

mod common;

use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "test-token-0123456789";

fn server_with_token() -> TestServer {
    let mut config = test_config();
    config.admin.token = Some(TOKEN.into());
    TestServer::start(config)
}

#[test]
fn token_guards_everything_but_health() {
    let server = server_with_token();
    let admin = server.admin();
    assert_eq!(http(admin, "GET", "/health", None, None).status, 200);
    for path in [
        "/metrics",
        "/api/v1/chargepoints",
        "/api/v1/chargepoints/CP1",
    ] {
        let none = http(admin, "GET", path, None, None);
        assert_eq!(none.status, 401, "{path}: {}", none.body);
        assert!(
            none.header("WWW-Authenticate")
                .is_some_and(|v| v.starts_with("Bearer"))
        );
        assert!(none.json()["error"].is_string());
        let wrong = http(admin, "GET", path, Some("test-token-0123456780"), None);
        assert_eq!(wrong.status, 401, "{path}");
    }
    let post = http(
        admin,
        "POST",
        "/api/v1/chargepoints/CP1/calls",
        None,
        Some(r#"{"action":"Reset","payload":{"type":"Soft"}}"#),
    );
    assert_eq!(post.status, 401);
    assert_eq!(
        http(
            admin,
            "DELETE",
            "/api/v1/chargepoints/CP1/connection",
            None,
            None
        )
        .status,
        401
    );
    assert_eq!(
        http(admin, "GET", "/metrics", Some(TOKEN), None).status,
        200
    );
    assert_eq!(
        http(admin, "GET", "/api/v1/chargepoints", Some(TOKEN), None).status,
        200
    );
}

#[test]
fn malformed_requests_get_json_errors() {
    let server = TestServer::start(test_config());
    let admin = server.admin();
    let garbage = parse_http(&raw_exchange(admin, b"\x16\x03\x01 hello\r\n\r\n"));
    assert_eq!(garbage.status, 400);
    assert!(garbage.json()["error"].is_string());

    let huge = format!(
        "POST /api/v1/chargepoints/CP1/calls HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        10 * 1024 * 1024
    );
    assert_eq!(
        parse_http(&raw_exchange(admin, huge.as_bytes())).status,
        413
    );

    let mut long_head = b"GET /health HTTP/1.1\r\nX-Filler: ".to_vec();
    long_head.extend(std::iter::repeat_n(b'a', 20_000));
    long_head.extend(b"\r\n\r\n");
    assert_eq!(parse_http(&raw_exchange(admin, &long_head)).status, 431);

    assert_eq!(http(admin, "GET", "/nowhere", None, None).status, 404);
    let wrong_method = http(admin, "POST", "/health", None, Some("{}"));
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.header("Allow"), Some("GET"));
    assert_eq!(
        http(
            admin,
            "PUT",
            "/api/v1/chargepoints/CP1/connection",
            None,
            None
        )
        .status,
        405
    );

    let long_id = "X".repeat(49);
    let reply = http(
        admin,
        "GET",
        &format!("/api/v1/chargepoints/{long_id}"),
        None,
        None,
    );
    assert_eq!(reply.status, 400);
    for query in ["status=sleeping", "limit=0", "limit=5000", "limit=many"] {
        let reply = http(
            admin,
            "GET",
            &format!("/api/v1/chargepoints?{query}"),
            None,
            None,
        );
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
    }
    for body in [
        "",
        "not json",
        r#"{"action":"Reset"}"#,
        r#"{"action":"Reset","payload":{"type":"Soft"},"extra":1}"#,
    ] {
        let reply = http(
            admin,
            "POST",
            "/api/v1/chargepoints/CP1/calls",
            None,
            Some(body),
        );
        assert_eq!(reply.status, 400, "{body:?}: {}", reply.body);
    }
    // The listener is still serving after all of that.
    assert_eq!(http(admin, "GET", "/health", None, None).status, 200);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    use std::io::Write;
    let server = TestServer::start(test_config());
    let mut stream = std::net::TcpStream::connect(server.admin()).unwrap();
    stream.set_read_timeout(Some(WATCHDOG)).unwrap();
    // Two pipelined requests, the second closing.
    stream
        .write_all(
            b"GET /health HTTP/1.1\r\nHost: a\r\n\r\nGET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let text = read_to_close(&mut stream);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert!(text.contains("ocpp_gateway_connections"), "{text}");
}

fn ids(reply: &Value) -> Vec<String> {
    reply["chargepoints"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|cp| cp["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn charge_points_are_listed_paged_filtered_and_detailed() {
    let server = TestServer::start(test_config());
    let admin = server.admin();
    let mut a = connect(&server, "CP-A");
    boot(&mut a);
    let status = call(
        &mut a,
        "s1",
        "StatusNotification",
        json!({"connectorId": 1, "errorCode": "NoError", "status": "Charging"}),
    );
    assert_eq!(status[0], 3);
    let start = call(
        &mut a,
        "t1",
        "StartTransaction",
        json!({"connectorId": 1, "idTag": "TAG1", "meterStart": 10,
               "timestamp": "2026-11-24T10:00:00Z"}),
    );
    let transaction = start[2]["transactionId"].as_i64().unwrap();
    let mut b = connect(&server, "CP-B");
    boot(&mut b);
    let mut c = connect(&server, "CP-C");
    boot(&mut c);
    drop(c); // CP-C disconnects but stays remembered (it was accepted)
    server.wait_for("CP-C gone", |s| s.connections == 2);

    let all = http(admin, "GET", "/api/v1/chargepoints", None, None);
    assert_eq!(all.status, 200, "{}", all.body);
    // CP-C's disconnect may still be on its way to the processor: wait on the listing.
    let deadline = std::time::Instant::now() + WATCHDOG;
    let connected = loop {
        let reply = http(
            admin,
            "GET",
            "/api/v1/chargepoints?status=connected",
            None,
            None,
        )
        .json();
        if ids(&reply) == ["CP-A", "CP-B"] {
            break reply;
        }
        assert!(std::time::Instant::now() < deadline, "{reply}");
        std::thread::yield_now();
    };
    assert_eq!(connected["count"], 2);
    let disconnected = http(
        admin,
        "GET",
        "/api/v1/chargepoints?status=disconnected",
        None,
        None,
    )
    .json();
    assert_eq!(ids(&disconnected), ["CP-C"]);

    let page1 = http(admin, "GET", "/api/v1/chargepoints?limit=2", None, None).json();
    assert_eq!(ids(&page1), ["CP-A", "CP-B"]);
    assert_eq!(page1["next"], "CP-B");
    let page2 = http(
        admin,
        "GET",
        "/api/v1/chargepoints?limit=2&after=CP-B",
        None,
        None,
    )
    .json();
    assert_eq!(ids(&page2), ["CP-C"]);
    assert!(page2["next"].is_null());

    let detail = http(admin, "GET", "/api/v1/chargepoints/CP-A", None, None);
    assert_eq!(detail.status, 200);
    let detail = detail.json();
    assert_eq!(detail["connected"], true);
    assert_eq!(detail["registration"], "accepted");
    assert_eq!(detail["boot"]["chargePointVendor"], "Acme");
    assert_eq!(
        detail["connectors"],
        json!([{"connector_id": 1, "status": "Charging"}])
    );
    assert_eq!(detail["open_transaction"], transaction);
    assert!(
        detail["remote_address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{detail}"
    );
    assert!(detail["loop"].is_u64());
    assert!(detail["since"].as_str().unwrap().ends_with('Z'));
    assert!(detail["last_message_at"].is_string());
    assert_eq!(detail["trace"], false);

    let gone = http(admin, "GET", "/api/v1/chargepoints/CP-C", None, None).json();
    assert_eq!(gone["connected"], false);
    assert!(gone.get("loop").is_none());
    assert_eq!(
        http(admin, "GET", "/api/v1/chargepoints/NOPE", None, None).status,
        404
    );
}

#[test]
fn delete_connection_closes_with_1000_and_404s_when_not_connected() {
    let server = TestServer::start(test_config());
    let admin = server.admin();
    let mut cp = connect(&server, "CP-DEL");
    boot(&mut cp);
    let reply = http(
        admin,
        "DELETE",
        "/api/v1/chargepoints/CP-DEL/connection",
        None,
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let frame = expect_close(&mut cp).expect("a close frame");
    assert_eq!(u16::from(frame.code), 1000);
    server.wait_for("closed", |s| s.connections == 0);
    // The processor learns of the close from its loop a moment after the gauge drops.
    wait_until("the processor to see it closed", || {
        let detail = http(admin, "GET", "/api/v1/chargepoints/CP-DEL", None, None);
        detail.json()["connected"] == false
    });
    let again = http(
        admin,
        "DELETE",
        "/api/v1/chargepoints/CP-DEL/connection",
        None,
        None,
    );
    assert_eq!(again.status, 404);
    assert_eq!(
        http(
            admin,
            "DELETE",
            "/api/v1/chargepoints/NEVER/connection",
            None,
            None
        )
        .status,
        404
    );
    let closes = http(admin, "GET", "/metrics", None, None).body;
    assert!(
        closes.contains("ocpp_gateway_closes_total{reason=\"operator\"} 1\n"),
        "{closes}"
    );
}

#[test]
fn trace_is_turned_on_and_off_per_charge_point() {
    let server = TestServer::start(test_config());
    let admin = server.admin();
    let mut cp = connect(&server, "CP-TRACE");
    boot(&mut cp);
    let on = http(
        admin,
        "POST",
        "/api/v1/chargepoints/CP-TRACE/trace",
        None,
        None,
    );
    assert_eq!(on.status, 200, "{}", on.body);
    assert_eq!(on.json()["trace"], true);
    let detail = http(admin, "GET", "/api/v1/chargepoints/CP-TRACE", None, None).json();
    assert_eq!(detail["trace"], true);
    // Frames still flow while traced.
    let reply = call(&mut cp, "hb", "Heartbeat", json!({}));
    assert_eq!(reply[0], 3);
    let off = http(
        admin,
        "DELETE",
        "/api/v1/chargepoints/CP-TRACE/trace",
        None,
        None,
    );
    assert_eq!(off.json()["trace"], false);
    let detail = http(admin, "GET", "/api/v1/chargepoints/CP-TRACE", None, None).json();
    assert_eq!(detail["trace"], false);
}

#[test]
fn many_pipelined_requests_and_a_half_close_are_all_answered() {
    use std::io::Write;
    let server = TestServer::start(test_config());
    let mut stream = std::net::TcpStream::connect(server.admin()).unwrap();
    stream.set_read_timeout(Some(WATCHDOG)).unwrap();
    let requests = "GET /health HTTP/1.1\r\nHost: a\r\n\r\n".repeat(2000);
    // Written from another thread: the server reads only as fast as its answers are read.
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        writer.write_all(requests.as_bytes()).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap(); // EOF right behind them
    });
    let text = read_to_close(&mut stream);
    sender.join().unwrap();
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2000);
    assert_eq!(
        http(server.admin(), "GET", "/health", None, None).status,
        200
    );
}

#[test]
fn expect_100_continue_is_honoured() {
    use std::io::{Read, Write};
    let server = TestServer::start(test_config());
    let mut stream = std::net::TcpStream::connect(server.admin()).unwrap();
    stream.set_read_timeout(Some(WATCHDOG)).unwrap();
    let body = r#"{"action":"Reset","payload":{"type":"Soft"}}"#;
    write!(
        stream,
        "POST /api/v1/chargepoints/CP-X/calls HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\
         Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(body.as_bytes()).unwrap();
    let reply = parse_http(&read_to_close(&mut stream));
    assert_eq!(reply.status, 404, "{}", reply.body); // CP-X is not connected
}

#[test]
fn a_padded_boot_notification_is_kept_compact() {
    let server = TestServer::start(test_config());
    let mut cp = connect(&server, "CP-PAD");
    let padding = " ".repeat(30_000);
    let text = format!(
        r#"[2,"b1","BootNotification",{{"chargePointVendor":"Acme",{padding}"chargePointModel":"M"}}]"#
    );
    cp.send(tungstenite::Message::text(text)).unwrap();
    let reply = next_json(&mut cp);
    assert_eq!(reply[2]["status"], "Accepted", "{reply}");
    let detail = http(
        server.admin(),
        "GET",
        "/api/v1/chargepoints/CP-PAD",
        None,
        None,
    );
    assert!(
        detail.body.len() < 1000,
        "padding kept: {} bytes",
        detail.body.len()
    );
    assert_eq!(
        detail.json()["boot"],
        json!({"chargePointVendor": "Acme", "chargePointModel": "M"})
    );
}

#[test]
fn idle_keep_alive_connections_do_not_lock_out_health() {
    let server = TestServer::start(test_config());
    // More idle connections than the listener holds, then a health check.
    let idle: Vec<std::net::TcpStream> = (0..80)
        .map(|_| std::net::TcpStream::connect(server.admin()).unwrap())
        .collect();
    assert_eq!(
        http(server.admin(), "GET", "/health", None, None).status,
        200
    );
    drop(idle);
}
