//! The deployment kit's HAProxy configuration (`deploy/haproxy.cfg`), run by a real `haproxy`
//! in front of a gateway with `proxy_protocol = true`: a charge point connects and boots through
//! it, the gateway sees the charge point's own address (PROXY v2), and HAProxy's health checks
//! on `/health` keep the live node up and mark the absent ones down.
//!
//! Needs `haproxy` (Debian's package). Without it the test says so loudly and passes, except
//! when `OCPP_REQUIRE_SERVERS` is set (as `.ci/run` does), where it fails.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};

use common::*;

/// Kills HAProxy when the test ends, however it ends.
struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// HAProxy's view of one server, from its stats CSV: "UP", "DOWN", ...
fn server_status(stats: SocketAddr, server: &str) -> Option<String> {
    let reply = http(stats, "GET", "/;csv", None, None);
    reply.body.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(',').collect();
        (fields.first() == Some(&"gateways") && fields.get(1) == Some(&server))
            .then(|| fields.get(17).unwrap_or(&"").to_string())
    })
}

#[test]
fn a_charge_point_behind_haproxy_is_seen_with_its_own_address_and_health_checks_work() {
    if !server_available("haproxy", "haproxy") {
        return;
    }
    let mut config = test_config();
    config.server.proxy_protocol = true;
    let server = TestServer::start(config);
    let (listen, stats) = (free_port(), free_port());
    let stats_addr: SocketAddr = format!("127.0.0.1:{stats}").parse().unwrap();
    // node2 and node3 point at ports where nothing listens: the checks must mark them down.
    let child = Command::new("haproxy")
        .arg("-db")
        // maxconn from the command line: the file's 200,000 wants 400,000 descriptors, more
        // than this machine's process limit.
        .args(["-n", "2000"])
        .arg("-f")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/haproxy.cfg"))
        .env("OCPP_LISTEN", format!("127.0.0.1:{listen}"))
        .env("OCPP_NODE1", server.addr.to_string())
        .env("OCPP_ADMIN_PORT1", server.admin().port().to_string())
        .env("OCPP_NODE2", format!("127.0.0.1:{}", free_port()))
        .env("OCPP_ADMIN_PORT2", free_port().to_string())
        .env("OCPP_NODE3", format!("127.0.0.1:{}", free_port()))
        .env("OCPP_ADMIN_PORT3", free_port().to_string())
        .env("OCPP_STATS", stats_addr.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy starts");
    let _haproxy = Haproxy(child);
    wait_until("HAProxy's stats page", || {
        TcpStream::connect(stats_addr).is_ok()
    });
    wait_until("node1 up and node2, node3 down", || {
        server_status(stats_addr, "node1").as_deref() == Some("UP")
            && server_status(stats_addr, "node2").as_deref() == Some("DOWN")
            && server_status(stats_addr, "node3").as_deref() == Some("DOWN")
    });

    // From a source address of its own, through HAProxy.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.7:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let front: SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
    socket.connect(&front.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WATCHDOG)).unwrap();
    let (mut client, _) = upgrade_over(stream, &format!("ws://{front}/ocpp/CP-BEHIND"), "ocpp1.6")
        .expect("upgrade through HAProxy");
    boot(&mut client);
    let view = http(
        server.admin(),
        "GET",
        "/api/v1/chargepoints/CP-BEHIND",
        None,
        None,
    )
    .json();
    let remote = view["remote_address"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(remote.starts_with("127.0.0.7:"), "{view}");
}
