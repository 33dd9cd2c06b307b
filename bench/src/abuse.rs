//! `ocpp-bench abuse`: the hostile clients of `scripts/abuse.sh`, one attack per run, each
//! ending by itself and printing one JSON line of what it saw.
//!
//! - `meter-flood`: booted charge points pipelining large MeterValues without waiting for
//!   their answers, for `--duration` (a reader per connection drains the answers);
//! - `data-transfer-flood`: charge points that never boot, pipelining large DataTransfers
//!   (every answer is a SecurityError CALLERROR);
//! - `admin-slowloris`: clients that send an admin request one byte at a time, slowly, while
//!   a prober asks `/health` every `--probe-every`: how long each slow client waited for its
//!   408 (from its first byte), and how long each `/health` took.
//!
//! Plain blocking sockets and a thread per connection: a few dozen at most, on loopback.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde::Serialize;
use serde_json::json;
use wire::websocket::{self, OpCode, Role};

/// Time any single read or write may block before the attack gives up on that socket.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Attack {
    MeterFlood,
    DataTransferFlood,
    AdminSlowloris,
}

#[derive(Debug, Clone, Args)]
pub struct AbuseArgs {
    /// The attack.
    #[arg(value_enum)]
    pub attack: Attack,
    /// Floods: the gateway's OCPP address (host:port, loopback).
    #[arg(long, default_value = "127.0.0.1:18080")]
    pub target: SocketAddr,
    /// Floods: the path before the identity.
    #[arg(long, default_value = "/ocpp/")]
    pub path: String,
    /// admin-slowloris: the gateway's admin address.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin: SocketAddr,
    /// Attacking connections (flooders or slow clients).
    #[arg(long, default_value_t = 3)]
    pub connections: usize,
    /// Floods: how long to keep sending. admin-slowloris: longest wait for every 408.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "20s")]
    pub duration: Duration,
    /// Floods: bytes of each message (MeterValues: about; DataTransfer: at most, the whole
    /// CALL).
    #[arg(long, default_value_t = 49_000)]
    pub size: usize,
    /// admin-slowloris: one byte of the request this often.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub byte_every: Duration,
    /// admin-slowloris: a `/health` request this often.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "100ms")]
    pub probe_every: Duration,
    #[arg(long, default_value = "abuse-")]
    pub id_prefix: String,
}

/// What a flood saw, per run.
#[derive(Debug, Default, Serialize)]
pub struct FloodFigures {
    pub attack: &'static str,
    pub connections: usize,
    pub message_bytes: usize,
    pub seconds: f64,
    pub sent: u64,
    pub answered: u64,
    pub call_errors: u64,
    /// Connections the gateway closed (or that failed) before the flood ended.
    pub closed_early: u64,
}

/// What the slowloris run saw.
#[derive(Debug, Default, Serialize)]
pub struct SlowlorisFigures {
    pub attack: &'static str,
    pub clients: usize,
    /// Slow clients answered 408, and the longest time from their first byte to it.
    pub got_408: usize,
    pub other_answers: Vec<String>,
    pub max_seconds_to_408: f64,
    pub health_probes: u64,
    pub health_not_200: u64,
    pub health_max_ms: f64,
    pub health_p99_ms: f64,
}

/// Why an attack could not run.
#[derive(Debug, thiserror::Error)]
pub enum AbuseError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(String),
    #[error("{0} is not on loopback: attacks stay on 127.0.0.0/8")]
    Remote(SocketAddr),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AbuseError {
    let what = what.into();
    move |source| AbuseError::Io { what, source }
}

/// Runs the attack and returns its figures as one JSON line.
pub fn run(args: &AbuseArgs) -> Result<String, AbuseError> {
    for addr in [args.target, args.admin] {
        if !addr.ip().is_loopback() {
            return Err(AbuseError::Remote(addr));
        }
    }
    let line = match args.attack {
        Attack::MeterFlood => serde_json::to_string(&flood(args, true)?),
        Attack::DataTransferFlood => serde_json::to_string(&flood(args, false)?),
        Attack::AdminSlowloris => serde_json::to_string(&slowloris(args)?),
    };
    Ok(line.unwrap_or_default())
}

/// A client WebSocket on a blocking socket: upgrade, masked text frames out, frames in.
struct Client {
    stream: TcpStream,
    identity: String,
}

impl Client {
    fn connect(args: &AbuseArgs, identity: &str) -> Result<Client, AbuseError> {
        let mut stream = TcpStream::connect(args.target).map_err(io(args.target.to_string()))?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .map_err(io("socket"))?;
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .map_err(io("socket"))?;
        let request = format!(
            "GET {}{identity} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n",
            args.path, args.target
        );
        stream.write_all(request.as_bytes()).map_err(io(identity))?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 8192 || stream.read(&mut byte).map_err(io(identity))? == 0 {
                return Err(AbuseError::Refused(format!(
                    "{identity}: no upgrade answer"
                )));
            }
            head.push(byte[0]);
        }
        if !head.starts_with(b"HTTP/1.1 101") {
            let status = String::from_utf8_lossy(&head[..head.len().min(40)]).into_owned();
            return Err(AbuseError::Refused(format!("{identity}: {status}")));
        }
        Ok(Client {
            stream,
            identity: identity.to_owned(),
        })
    }

    fn send(&mut self, text: &str) -> std::io::Result<()> {
        let mut frame = Vec::with_capacity(text.len() + 14);
        websocket::encode(
            &mut frame,
            OpCode::Text,
            text.as_bytes(),
            Some([7, 1, 9, 3]),
        );
        self.stream.write_all(&frame)
    }
}

/// Reads server frames from `stream` until it closes or fails; calls `on_text` for each text.
fn read_frames(mut stream: TcpStream, mut on_text: impl FnMut(&[u8])) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut have = 0;
    loop {
        match websocket::parse_header(&buf[..have], Role::Client, buf.len() - 14) {
            Ok(Some(h)) if h.frame_len() <= have => {
                if h.opcode == OpCode::Close {
                    return;
                }
                if h.opcode == OpCode::Text {
                    on_text(&buf[h.payload()]);
                }
                buf.copy_within(h.frame_len()..have, 0);
                have -= h.frame_len();
                continue;
            }
            Ok(_) => {}
            Err(_) => return,
        }
        match stream.read(&mut buf[have..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => have += n,
        }
    }
}

/// Pipelines large CALLs on `--connections` charge points (booted first when `boot`).
fn flood(args: &AbuseArgs, boot: bool) -> Result<FloodFigures, AbuseError> {
    let (attack, action) = if boot {
        ("meter-flood", "MeterValues")
    } else {
        ("data-transfer-flood", "DataTransfer")
    };
    let payload = if boot {
        // Sampled values of 100 characters each up to `--size` bytes.
        let values = (args.size / 157).max(1);
        let sampled: Vec<_> = (0..values)
            .map(|i| json!({"value": format!("{i:0>100}"), "measurand": "Energy.Active.Import.Register"}))
            .collect();
        json!({"connectorId": 1, "meterValue": [{"timestamp": "2026-11-28T10:00:00Z", "sampledValue": sampled}]})
    } else {
        // `--size` bytes in all, envelope included, so that it fits max_message_size.
        let envelope = format!(
            r#"[2,"{action}-{}","{action}",{{"vendorId":"abuse","data":""}}]"#,
            u64::MAX
        );
        json!({"vendorId": "abuse", "data": "x".repeat(args.size.saturating_sub(envelope.len()))})
    };
    let payload = payload.to_string();
    let sent = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let call_errors = Arc::new(AtomicU64::new(0));
    let closed_early = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let stop_at = started + args.duration;
    let mut threads = Vec::new();
    for i in 0..args.connections {
        let identity = format!("{}{attack}-{i}", args.id_prefix);
        let mut client = Client::connect(args, &identity)?;
        if boot {
            client
                .send(r#"[2,"boot","BootNotification",{"chargePointVendor":"abuse","chargePointModel":"flood"}]"#)
                .map_err(io(&identity))?;
        }
        let reader = client.stream.try_clone().map_err(io(&identity))?;
        let (answered, call_errors) = (Arc::clone(&answered), Arc::clone(&call_errors));
        threads.push(std::thread::spawn(move || {
            read_frames(reader, |text| {
                answered.fetch_add(1, Ordering::Relaxed);
                if text.starts_with(b"[4") {
                    call_errors.fetch_add(1, Ordering::Relaxed);
                }
            });
        }));
        let (sent, closed_early, payload) = (
            Arc::clone(&sent),
            Arc::clone(&closed_early),
            payload.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while Instant::now() < stop_at {
                let text = format!(r#"[2,"{action}-{n}","{action}",{payload}]"#);
                if client.send(&text).is_err() {
                    closed_early.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                n += 1;
                sent.fetch_add(1, Ordering::Relaxed);
            }
            log::info!("{}: {n} sent", client.identity);
            let _ = client.stream.shutdown(Shutdown::Both);
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(FloodFigures {
        attack,
        connections: args.connections,
        message_bytes: format!(r#"[2,"{action}-0","{action}",{payload}]"#).len(),
        seconds: started.elapsed().as_secs_f64(),
        sent: sent.load(Ordering::Relaxed),
        answered: answered.load(Ordering::Relaxed),
        call_errors: call_errors.load(Ordering::Relaxed),
        closed_early: closed_early.load(Ordering::Relaxed),
    })
}

/// One slow client: the request a byte at a time until the gateway answers; returns the
/// status line and the seconds from the first byte to it.
fn slow_client(admin: SocketAddr, every: Duration, give_up: Instant) -> (String, f64) {
    let request = b"GET /api/v1/chargepoints HTTP/1.1\r\nHost: slow\r\nX-Slow: ";
    let Ok(mut stream) = TcpStream::connect(admin) else {
        return ("connect failed".into(), 0.0);
    };
    let _ = stream.set_read_timeout(Some(every));
    let first = Instant::now();
    let mut answer = Vec::new();
    for &byte in request.iter().chain(std::iter::repeat(&b'a')) {
        if Instant::now() >= give_up {
            return ("no answer".into(), first.elapsed().as_secs_f64());
        }
        // A failed write means the gateway closed: its answer (if any) is still readable.
        let _ = stream.write_all(&[byte]);
        // Waiting for the answer is how the next byte is paced: `every` per read.
        let mut chunk = [0u8; 512];
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&chunk[..n]);
                if answer.windows(2).any(|w| w == b"\r\n") {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let took = first.elapsed().as_secs_f64();
    let line = String::from_utf8_lossy(&answer);
    let status = line
        .lines()
        .next()
        .unwrap_or("closed without an answer")
        .to_owned();
    (status, took)
}

/// `GET /health` once: the status code (0 when none came) and how long it took.
fn probe(admin: SocketAddr) -> (u16, Duration) {
    let started = Instant::now();
    let status = (|| -> std::io::Result<u16> {
        let mut stream = TcpStream::connect_timeout(&admin, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")?;
        let mut answer = Vec::new();
        stream.take(1 << 20).read_to_end(&mut answer)?;
        Ok(std::str::from_utf8(answer.get(9..12).unwrap_or_default())
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0))
    })()
    .unwrap_or(0);
    (status, started.elapsed())
}

fn slowloris(args: &AbuseArgs) -> Result<SlowlorisFigures, AbuseError> {
    let give_up = Instant::now() + args.duration;
    let (admin, every) = (args.admin, args.byte_every);
    let clients: Vec<_> = (0..args.connections)
        .map(|_| std::thread::spawn(move || slow_client(admin, every, give_up)))
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let prober = {
        let done = Arc::clone(&done);
        let every = args.probe_every;
        std::thread::spawn(move || {
            let mut times = Vec::new();
            let mut not_200 = 0;
            while !done.load(Ordering::Relaxed) {
                let (status, took) = probe(admin);
                not_200 += u64::from(status != 200);
                times.push(took);
                std::thread::sleep(every.saturating_sub(took));
            }
            (times, not_200)
        })
    };
    let mut figures = SlowlorisFigures {
        attack: "admin-slowloris",
        clients: args.connections,
        ..SlowlorisFigures::default()
    };
    for client in clients {
        let (status, took) = client.join().unwrap_or(("panicked".into(), 0.0));
        if status.starts_with("HTTP/1.1 408") {
            figures.got_408 += 1;
            figures.max_seconds_to_408 = figures.max_seconds_to_408.max(took);
        } else if !figures.other_answers.contains(&status) {
            figures.other_answers.push(status);
        }
    }
    done.store(true, Ordering::Relaxed);
    let (mut times, not_200) = prober.join().unwrap_or_default();
    times.sort();
    figures.health_probes = times.len() as u64;
    figures.health_not_200 = not_200;
    let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
    figures.health_max_ms = times.last().map_or(0.0, |d| ms(*d));
    figures.health_p99_ms = times
        .get((times.len() * 99 / 100).min(times.len().saturating_sub(1)))
        .map_or(0.0, |d| ms(*d));
    Ok(figures)
}
