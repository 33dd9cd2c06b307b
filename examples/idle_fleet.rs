//! Question answered: how much userspace memory does the gateway spend per idle, booted charge
//! point, and does its thread count stay flat as connections grow?
//!
//! Connects N charge points (blocking tungstenite clients spread over a few threads), boots
//! each, sends one Heartbeat each, then holds them all open. With `--pid` it reads the
//! gateway's `VmRSS` and `Threads` from `/proc/PID/status` before connecting and once all are
//! booted, and prints bytes per connection. A stand-in until `bench/` (the real load generator)
//! lands; it is bounded: it exits after `--hold` seconds.
//!
//! ```sh
//! cargo run --release &                      # the gateway, shipped config
//! cargo run --release --example idle_fleet -- --url ws://127.0.0.1:8080/ocpp/ \
//!     --connections 19000 --pid $(pgrep -n ocpp-gateway) --hold 5
//! ```

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

struct Args {
    url: String,
    connections: usize,
    threads: usize,
    pid: Option<u32>,
    hold: Duration,
}

fn parse_args() -> Args {
    let mut args = Args {
        url: "ws://127.0.0.1:8080/ocpp/".into(),
        connections: 1000,
        threads: 8,
        pid: None,
        hold: Duration::from_secs(2),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value,
            "--connections" => args.connections = value.parse().expect("--connections N"),
            "--threads" => args.threads = value.parse().expect("--threads N"),
            "--pid" => args.pid = Some(value.parse().expect("--pid PID")),
            "--hold" => args.hold = Duration::from_secs(value.parse().expect("--hold SECONDS")),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// (VmRSS in bytes, thread count) of `pid`.
fn proc_status(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:") * 1024, field("Threads:"))
}

fn call(ws: &mut WebSocket<TcpStream>, id: &str, action: &str, payload: Value) -> Value {
    ws.send(Message::text(json!([2, id, action, payload]).to_string()))
        .expect("send");
    loop {
        match ws.read().expect("reply") {
            Message::Text(t) => return serde_json::from_str(&t).expect("json"),
            _ => continue,
        }
    }
}

fn main() {
    let args = parse_args();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let before = args.pid.map(proc_status);
    let started = Instant::now();
    let per_thread = args.connections.div_ceil(args.threads);
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
    for t in 0..args.threads {
        let (url, held_tx, release_rx) = (args.url.clone(), held_tx.clone(), release_rx.clone());
        let count = per_thread.min(args.connections.saturating_sub(t * per_thread));
        std::thread::spawn(move || {
            let mut clients = Vec::with_capacity(count);
            for i in 0..count {
                let mut request = format!("{url}fleet-{t}-{i}").into_client_request().unwrap();
                request
                    .headers_mut()
                    .insert("Sec-WebSocket-Protocol", "ocpp1.6".parse().unwrap());
                let host = request.uri().authority().expect("host").as_str().to_owned();
                let stream = TcpStream::connect(host).expect("connect");
                let (mut ws, _) = tungstenite::client(request, stream).expect("upgrade");
                let boot = json!({"chargePointVendor": "Fleet", "chargePointModel": "Idle"});
                let reply = call(&mut ws, "b", "BootNotification", boot);
                assert_eq!(reply[2]["status"], "Accepted");
                let reply = call(&mut ws, "h", "Heartbeat", json!({}));
                assert_eq!(reply[0], 3);
                clients.push(ws);
            }
            held_tx.send(clients.len()).unwrap();
            let _ = release_rx.recv();
            drop(clients);
        });
    }
    drop(held_tx);
    // One report per thread (the threads keep their sender until released).
    let held: usize = held_rx.iter().take(args.threads).sum();
    let elapsed = started.elapsed();
    println!(
        "{held} charge points connected, booted and heartbeated in {:.2} s ({:.0}/s)",
        elapsed.as_secs_f64(),
        held as f64 / elapsed.as_secs_f64()
    );
    // Give the gateway a moment to settle its last replies before reading its memory.
    std::thread::sleep(Duration::from_millis(500));
    if let (Some(pid), Some((rss_before, threads_before))) = (args.pid, before) {
        let (rss_after, threads_after) = proc_status(pid);
        let growth = rss_after.saturating_sub(rss_before);
        println!(
            "gateway RSS {:.1} MiB -> {:.1} MiB: {:.0} bytes per connection; threads {threads_before} -> {threads_after}",
            rss_before as f64 / 1048576.0,
            rss_after as f64 / 1048576.0,
            growth as f64 / held.max(1) as f64
        );
    }
    std::thread::sleep(args.hold);
    drop(release_tx);
}
