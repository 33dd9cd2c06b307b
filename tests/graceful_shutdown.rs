//! SIGTERM stops accepting, closes every charge point with 1001 (paced by
//! `server.drain_rate`), joins every thread and exits 0.

mod common;

use common::*;

#[test]
fn sigterm_closes_everyone_with_1001_and_exits_0() {
    let dir = std::env::temp_dir().join(format!("ocpp-gateway-shutdown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\npin_cores = false\ndrain_rate = 200\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[events]\nsink = \"none\"\n",
    )
    .unwrap();
    let gateway = GatewayProcess::start(&config);
    let addr = gateway.addr;

    let mut clients: Vec<Client> = (0..20)
        .map(|i| {
            try_connect(addr, &format!("ws://{addr}/ocpp/CP{i}"), "ocpp1.6")
                .unwrap()
                .0
        })
        .collect();
    for client in &mut clients {
        boot(client);
    }
    gateway.signal("-TERM");

    for client in &mut clients {
        let frame = expect_close(client).expect("a close frame");
        assert_eq!(u16::from(frame.code), 1001);
    }

    let (status, log) = gateway.wait_exit();
    assert_eq!(status.code(), Some(0));
    assert!(log.iter().any(|l| l.contains("stopped")), "{log:#?}");
    let _ = std::fs::remove_dir_all(dir);
}
