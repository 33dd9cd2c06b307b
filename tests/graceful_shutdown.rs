//! SIGTERM stops accepting, closes every charge point with 1001 (paced by
//! `server.drain_rate`), joins every thread and exits 0.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;

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
    let mut child = Command::new(env!("CARGO_BIN_EXE_ocpp-gateway"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("gateway starts");

    // The gateway logs the port it got; keep draining its log so it never blocks on stderr.
    let (lines_tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let addr = loop {
        let line = lines
            .recv_timeout(WATCHDOG)
            .expect("the gateway logs its address");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };

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
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    for client in &mut clients {
        let frame = expect_close(client).expect("a close frame");
        assert_eq!(u16::from(frame.code), 1001);
    }

    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let status = done
        .recv_timeout(WATCHDOG)
        .expect("the gateway exits")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let log: Vec<String> = lines.try_iter().collect();
    assert!(log.iter().any(|l| l.contains("stopped")), "{log:#?}");
    let _ = std::fs::remove_dir_all(dir);
}
