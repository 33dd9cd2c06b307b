//! Question answered: how many Heartbeat round trips per second does the gateway answer with
//! `--connections` charge points each keeping one Heartbeat in flight (closed loop)?
//!
//! Blocking tungstenite clients over `--threads` threads; each thread sends one Heartbeat on
//! every one of its connections, then reads every reply, and repeats for `--seconds`. The client
//! shares the machine's cores with the gateway, so the figure is a floor, not the gateway's
//! ceiling; it is meant for before/after comparisons of the same build settings. A stand-in
//! until `bench/` lands.
//!
//! ```sh
//! cargo run --release &
//! cargo run --release --example heartbeat_rate -- --connections 1000 --seconds 10
//! ```

use std::net::TcpStream;
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("bad value for {name}")))
        .unwrap_or(default)
}

fn open(url: &str) -> WebSocket<TcpStream> {
    let mut request = url.into_client_request().expect("url");
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "ocpp1.6".parse().unwrap());
    let host = request.uri().authority().expect("host").as_str().to_owned();
    let stream = TcpStream::connect(host).expect("connect");
    stream.set_nodelay(true).unwrap();
    tungstenite::client(request, stream).expect("upgrade").0
}

fn read_text(ws: &mut WebSocket<TcpStream>) -> String {
    loop {
        if let Message::Text(t) = ws.read().expect("reply") {
            return t.to_string();
        }
    }
}

fn main() {
    let url: String = arg("--url", "ws://127.0.0.1:8080/ocpp/".to_owned());
    let connections: usize = arg("--connections", 1000);
    let threads: usize = arg("--threads", 4);
    let seconds: u64 = arg("--seconds", 10);
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let per_thread = connections.div_ceil(threads);
    let start = std::sync::Arc::new(std::sync::Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (url, start) = (url.clone(), start.clone());
            std::thread::spawn(move || {
                let mut conns: Vec<_> =
                    (0..per_thread).map(|i| open(&format!("{url}rate-{t}-{i}"))).collect();
                for ws in &mut conns {
                    let boot = r#"[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]"#;
                    ws.send(Message::text(boot)).unwrap();
                    read_text(ws);
                }
                start.wait();
                let deadline = Instant::now() + Duration::from_secs(seconds);
                let mut done = 0u64;
                while Instant::now() < deadline {
                    for ws in &mut conns {
                        ws.send(Message::text(r#"[2,"h","Heartbeat",{}]"#)).unwrap();
                    }
                    for ws in &mut conns {
                        let reply = read_text(ws);
                        assert!(reply.starts_with(r#"[3,"h""#), "{reply}");
                        done += 1;
                    }
                }
                done
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    let total: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let elapsed = began.elapsed().as_secs_f64();
    println!(
        "{total} Heartbeat round trips over {connections} connections in {elapsed:.1} s: {:.0}/s",
        total as f64 / elapsed
    );
}
