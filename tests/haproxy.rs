//! The deployment kit's HAProxy configuration (`deploy/haproxy.cfg`), run by a real `haproxy`
//! in front of a gateway with `proxy_protocol = true`: a charge point connects and boots through
//! it, the gateway sees the charge point's own address (PROXY v2), and HAProxy's health checks
//! on `/health` keep the live node up and mark the absent ones down.
//!
//! Needs `haproxy` (Debian's package). Without it the test says so loudly and passes, except
//! when `OCPP_REQUIRE_SERVERS` is set (as `.ci/run` does), where it fails.

mod common;

use std::net::{SocketAddr, TcpStream};

use common::haproxy::Haproxy;
use common::*;

#[test]
fn a_charge_point_behind_haproxy_is_seen_with_its_own_address_and_health_checks_work() {
    if !server_available("haproxy", "haproxy") {
        return;
    }
    let mut config = test_config();
    config.server.proxy_protocol = true;
    let server = TestServer::start(config);
    // node2 and node3 point at ports where nothing listens: the checks must mark them down.
    let absent = || {
        (
            format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            free_port(),
        )
    };
    let haproxy = Haproxy::start([(server.addr, server.admin().port()), absent(), absent()]);
    wait_until("node1 up and node2, node3 down", || {
        haproxy.status("node1").as_deref() == Some("UP")
            && haproxy.status("node2").as_deref() == Some("DOWN")
            && haproxy.status("node3").as_deref() == Some("DOWN")
    });

    // From a source address of its own, through HAProxy.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.7:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let front = haproxy.listen;
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
