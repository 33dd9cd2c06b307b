//! Shared by the socket tests: an in-process gateway on a free loopback port, a blocking
//! WebSocket charge point (tungstenite's client on a std socket), raw HTTP helpers, and bounded
//! waits. Every socket has a read timeout, so a test fails instead of hanging.

#![allow(dead_code)] // each test file uses a different part

pub mod haproxy;
pub mod pki;
pub mod redis_server;
pub mod tansu;
pub mod tls_pipe;
pub mod tls_suites;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::num::NonZeroUsize;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ocpp_gateway::config::Config;
use ocpp_gateway::server::Server;
use ocpp_gateway::stats::StatsSnapshot;
use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

/// How long any single wait in a test may take before the test fails.
pub const WATCHDOG: Duration = Duration::from_secs(20);

pub type Client = WebSocket<TcpStream>;

/// A config for tests: loopback, any free port, two loops and two processors, no pinning.
/// Tests change what they exercise on the returned value.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().expect("address");
    config.server.workers = NonZeroUsize::new(2).expect("non-zero");
    config.server.pin_cores = false;
    config.processor.threads = NonZeroUsize::new(2).expect("non-zero");
    config.ocpp.transaction_id_file = None; // tests run in parallel: no shared counter file
    config.ocpp.state_file = None; // nor a shared state file
    config.admin.listen = Some("127.0.0.1:0".parse().expect("address"));
    config.events.sinks = ocpp_gateway::config::Sinks::NONE; // journal tests turn it on
    // Tests send as fast as they can; the rate limit is tested on its own.
    config.ocpp.max_calls_per_second = 0;
    config
}

/// A gateway running in this process; shut down and joined (under a watchdog) on drop.
pub struct TestServer {
    server: Option<Server>,
    pub addr: SocketAddr,
}

impl TestServer {
    pub fn start(config: Config) -> TestServer {
        let _ = env_logger::builder().is_test(true).try_init();
        let _ = rlimit::increase_nofile_limit(u64::MAX);
        let server = Server::start(config).expect("server starts");
        let addr = server.local_addr();
        TestServer {
            server: Some(server),
            addr,
        }
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.server.as_ref().expect("running").stats()
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }

    /// The admin listener's address.
    pub fn admin(&self) -> SocketAddr {
        self.server().admin_addr().expect("admin listener on")
    }

    /// Waits until `pred` holds for the counters, failing the test after [`WATCHDOG`].
    pub fn wait_for(
        &self,
        what: &str,
        mut pred: impl FnMut(&StatsSnapshot) -> bool,
    ) -> StatsSnapshot {
        let deadline = Instant::now() + WATCHDOG;
        let mut pause = Duration::from_micros(100);
        loop {
            let stats = self.stats();
            if pred(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {stats:#?}"
            );
            // Counters have no event to wait on: back off between looks, bounded by the deadline.
            std::thread::park_timeout(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// A call of the central system through the internal API.
    pub fn call(
        &self,
        cp: &str,
        action: ocpp::v16::Action,
        payload: Box<serde_json::value::RawValue>,
    ) -> Result<ocpp_gateway::call::PendingCall, ocpp::v16::Invalid> {
        self.server
            .as_ref()
            .expect("running")
            .call(cp, action, payload)
    }

    pub fn url(&self, id: &str) -> String {
        format!("ws://{}/ocpp/{id}", self.addr)
    }

    /// Stops the server and waits for every thread, failing after [`WATCHDOG`].
    pub fn stop(&mut self) {
        let Some(server) = self.server.take() else {
            return;
        };
        server.shutdown();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(server.join());
        });
        match rx.recv_timeout(WATCHDOG) {
            Ok(result) => result.expect("clean shutdown"),
            Err(_) => panic!("server did not stop within {WATCHDOG:?}"),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.stop();
        } else if let Some(server) = self.server.take() {
            server.shutdown(); // don't wait: the test already failed
        }
    }
}

pub fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WATCHDOG)).expect("timeout");
    stream.set_write_timeout(Some(WATCHDOG)).expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Opens a WebSocket to `url` offering `protocols` (none when empty).
pub fn try_connect(
    addr: SocketAddr,
    url: &str,
    protocols: &str,
) -> Result<(Client, tungstenite::handshake::client::Response), tungstenite::Error> {
    upgrade_over(tcp(addr), url, protocols)
}

/// [`try_connect`] over a socket the caller connected (from a chosen source address, ...).
pub fn upgrade_over(
    stream: TcpStream,
    url: &str,
    protocols: &str,
) -> Result<(Client, tungstenite::handshake::client::Response), tungstenite::Error> {
    let mut request = url.into_client_request()?;
    if !protocols.is_empty() {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(protocols).expect("header"),
        );
    }
    tungstenite::client(request, stream).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => e,
        tungstenite::HandshakeError::Interrupted(_) => unreachable!("blocking socket"),
    })
}

/// A charge point connected with `ocpp1.6`.
pub fn connect(server: &TestServer, id: &str) -> Client {
    let (client, response) =
        try_connect(server.addr, &server.url(id), "ocpp1.6").expect("handshake succeeds");
    assert_eq!(response.headers()["Sec-WebSocket-Protocol"], "ocpp1.6");
    client
}

/// Sends a CALL and returns the next text message, parsed. A CALLRESULT answering a known
/// action is checked against the action's official response schema: every answer the tests
/// see is valid OCPP.
pub fn call<S: Read + Write>(
    client: &mut WebSocket<S>,
    unique_id: &str,
    action: &str,
    payload: Value,
) -> Value {
    call_in(SCHEMAS, client, unique_id, action, payload)
}

/// [`call`] for a 2.0.1 station: a CALLRESULT is checked against the official 2.0.1 schema.
pub fn call_v201<S: Read + Write>(
    client: &mut WebSocket<S>,
    unique_id: &str,
    action: &str,
    payload: Value,
) -> Value {
    call_in(SCHEMAS_V201, client, unique_id, action, payload)
}

/// [`call`] for a 2.1 station: the answer checked against 2.1's response schema.
pub fn call_v21<S: Read + Write>(
    client: &mut WebSocket<S>,
    unique_id: &str,
    action: &str,
    payload: Value,
) -> Value {
    call_in(SCHEMAS_V21, client, unique_id, action, payload)
}

/// [`call`] with the schemas of `dir`.
fn call_in<S: Read + Write>(
    dir: &str,
    client: &mut WebSocket<S>,
    unique_id: &str,
    action: &str,
    payload: Value,
) -> Value {
    let text = json!([2, unique_id, action, payload]).to_string();
    client.send(Message::text(text)).expect("send");
    let reply = next_json(client);
    if reply[0] == 3 && reply[1] == unique_id && schema_exists(dir, action) {
        assert_valid_in(dir, &format!("{action}Response"), &reply[2]);
    }
    reply
}

/// The official OCPP 1.6 schemas (CI puts `shared/` beside the checkout).
pub const SCHEMAS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/ocpp16/schemas");

/// True when `name` is an action with an official schema in `dir` (false for made-up names).
fn schema_exists(dir: &str, name: &str) -> bool {
    assert!(
        std::path::Path::new(dir).is_dir(),
        "{dir} is missing: the tests need shared/ beside the checkout"
    );
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric())
        && std::path::Path::new(&format!("{dir}/{name}.json")).exists()
}

/// Fails the test unless `payload` is valid against schema `name` (e.g. "HeartbeatResponse").
pub fn assert_valid(name: &str, payload: &Value) {
    assert_valid_in(SCHEMAS, name, payload)
}

/// [`assert_valid`] with the schemas of `dir`.
pub fn assert_valid_in(dir: &str, name: &str, payload: &Value) {
    let path = format!("{dir}/{name}.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(payload)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{name} payload {payload} is invalid: {errors:?}"
    );
}

/// The next text message, parsed (pings are answered by tungstenite on the way).
pub fn next_json<S: Read + Write>(client: &mut WebSocket<S>) -> Value {
    loop {
        match client.read().expect("a reply") {
            Message::Text(text) => return serde_json::from_str(&text).expect("reply is JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

pub fn boot<S: Read + Write>(client: &mut WebSocket<S>) -> Value {
    let reply = call(
        client,
        "boot-1",
        "BootNotification",
        json!({"chargePointVendor": "Acme", "chargePointModel": "Fast-1"}),
    );
    assert_eq!(reply[0], 3, "{reply}");
    assert_eq!(reply[1], "boot-1");
    assert_eq!(reply[2]["status"], "Accepted");
    reply
}

/// Reads until the server's close frame and returns it (None when the socket just ended).
pub fn expect_close<S: Read + Write>(client: &mut WebSocket<S>) -> Option<CloseFrame> {
    loop {
        match client.read() {
            Ok(Message::Close(frame)) => {
                let _ = client.flush(); // our close reply, so the server need not wait for it
                return frame;
            }
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return None;
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("no close within {WATCHDOG:?}")
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                panic!("no close within {WATCHDOG:?}")
            }
            Err(_) => return None,
        }
    }
}

/// The next CALL a charge point receives: (unique id, action, payload).
pub fn next_call<S: Read + Write>(client: &mut WebSocket<S>) -> (String, String, Value) {
    let frame = next_json(client);
    assert_eq!(frame[0], 2, "expected a CALL, got {frame}");
    (
        frame[1].as_str().unwrap().to_owned(),
        frame[2].as_str().unwrap().to_owned(),
        frame[3].clone(),
    )
}

/// Sends raw bytes and returns everything the server sends until it closes the socket.
pub fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = tcp(addr);
    stream.write_all(request).expect("write");
    read_to_close(&mut stream)
}

/// Reads until EOF or reset; a timeout fails the test.
pub fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("socket not closed by the server: {e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A complete upgrade request for `path` with optional extra header lines.
pub fn upgrade_request(path: &str, extra_headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         {extra_headers}\r\n"
    )
}

/// An HTTP response from the admin listener.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl HttpReply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// One request to the admin listener (`Connection: close`), with an optional bearer token
/// and JSON body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> HttpReply {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    parse_http(&raw_exchange(addr, request.as_bytes()))
}

pub fn parse_http(raw: &str) -> HttpReply {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {raw:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {head:?}"));
    HttpReply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// A Python with the `ocpp` package (2.1.0), `websockets` and `prometheus_client`:
/// `$OCPP_INTEROP_PYTHON` (CI's `.ci/run` makes a virtualenv and sets it), else a virtualenv
/// made once under `target/interop-venv`.
pub fn python() -> std::path::PathBuf {
    use std::process::Command;
    if let Some(python) = std::env::var_os("OCPP_INTEROP_PYTHON") {
        return python.into();
    }
    let venv = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv");
    let python = venv.join("bin/python");
    let ready = |python: &std::path::Path| {
        Command::new(python)
            .args(["-c", "import ocpp, websockets, prometheus_client"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if ready(&python) {
        return python;
    }
    if !python.exists() {
        let made = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status();
        assert!(made.is_ok_and(|s| s.success()), "python3 -m venv failed");
    }
    let pip = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "ocpp==2.1.0",
            "websockets>=12",
            "prometheus-client>=0.20",
        ])
        .status();
    assert!(pip.is_ok_and(|s| s.success()), "pip install failed");
    python
}

/// A WebSocket client written by hand over a blocking socket, for tests that need control over
/// frames (fragments, partial writes) that tungstenite's client does not give.
pub struct RawClient {
    pub stream: TcpStream,
}

/// WebSocket opcodes a raw client sends or reads.
pub const TEXT: u8 = 0x1;
pub const CONTINUATION: u8 = 0x0;
pub const CLOSE: u8 = 0x8;

impl RawClient {
    /// Connects and upgrades as charge point `id` (offering `ocpp1.6`).
    pub fn connect(server: &TestServer, id: &str) -> RawClient {
        RawClient::upgrade(tcp(server.addr), id)
    }

    /// Upgrades an already connected socket.
    pub fn upgrade(mut stream: TcpStream, id: &str) -> RawClient {
        let request = upgrade_request(
            &format!("/ocpp/{id}"),
            "Sec-WebSocket-Protocol: ocpp1.6\r\n",
        );
        stream.write_all(request.as_bytes()).expect("write");
        RawClient::after_upgrade(stream)
    }

    /// Reads the `101` of an upgrade request already sent on `stream`.
    pub fn after_upgrade(mut stream: TcpStream) -> RawClient {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).expect("an upgrade response");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        RawClient { stream }
    }

    /// The bytes of one masked client frame.
    pub fn frame(opcode: u8, payload: &[u8], fin: bool) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    pub fn send_frame(&mut self, opcode: u8, payload: &[u8], fin: bool) {
        self.send_raw(&RawClient::frame(opcode, payload, fin));
    }

    pub fn send_text(&mut self, text: &str) {
        self.send_frame(TEXT, text.as_bytes(), true);
    }

    /// The next frame from the server: (opcode, payload). Fails the test after [`WATCHDOG`].
    pub fn read_frame(&mut self) -> (u8, Vec<u8>) {
        let mut head = [0u8; 2];
        self.stream.read_exact(&mut head).expect("a frame");
        let len = match head[1] & 0x7F {
            126 => {
                let mut n = [0u8; 2];
                self.stream.read_exact(&mut n).expect("a length");
                u16::from_be_bytes(n) as usize
            }
            127 => {
                let mut n = [0u8; 8];
                self.stream.read_exact(&mut n).expect("a length");
                u64::from_be_bytes(n) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload).expect("a payload");
        (head[0] & 0x0F, payload)
    }

    /// The next text message, parsed as JSON (pings are skipped).
    pub fn read_json(&mut self) -> Value {
        loop {
            match self.read_frame() {
                (TEXT, payload) => return serde_json::from_slice(&payload).expect("JSON"),
                (0x9 | 0xA, _) => continue,
                (opcode, payload) => panic!("expected text, got opcode {opcode}: {payload:?}"),
            }
        }
    }

    /// Reads until a close frame and returns its code.
    pub fn read_close_code(&mut self) -> u16 {
        loop {
            if let (CLOSE, payload) = self.read_frame() {
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    }
}

/// The gateway binary running on a config file, its log read line by line.
pub struct GatewayProcess {
    pub child: std::process::Child,
    pub lines: mpsc::Receiver<String>,
    /// The first listener's address, from the log.
    pub addr: SocketAddr,
    /// The log line that announced it.
    pub listening: String,
}

impl GatewayProcess {
    /// Starts the binary with `RUST_LOG=info` and waits for its "listening on" line.
    pub fn start(config: &std::path::Path) -> GatewayProcess {
        GatewayProcess::start_logging(config, "info")
    }

    /// [`GatewayProcess::start`] with `RUST_LOG=filter`.
    pub fn start_logging(config: &std::path::Path, filter: &str) -> GatewayProcess {
        use std::io::BufRead;
        // In the config's directory: the default relative files (state, transaction counter,
        // journal) land there, one directory per test, never in the source tree.
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ocpp-gateway"))
            .arg("--config")
            .arg(config)
            .current_dir(config.parent().expect("a config file in a directory"))
            .env("RUST_LOG", filter)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("gateway starts");
        // Keep draining its log so it never blocks on stderr.
        let (lines_tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = lines_tx.send(line);
            }
        });
        let mut process = GatewayProcess {
            child,
            lines,
            addr: "0.0.0.0:0".parse().expect("address"),
            listening: String::new(),
        };
        let line = process.wait_for_line("listening on ");
        process.addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        process.listening = line;
        process
    }

    /// The next log line containing `what` (failing after [`WATCHDOG`]).
    pub fn wait_for_line(&self, what: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(WATCHDOG)
                .unwrap_or_else(|_| panic!("no log line with {what:?}"));
            if line.contains(what) {
                return line;
            }
        }
    }

    /// Sends `signal` (`-TERM`, `-HUP`, ...) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits (under the watchdog) for the process to exit; returns its status and the log
    /// lines not read yet.
    pub fn wait_exit(self) -> (std::process::ExitStatus, Vec<String>) {
        let GatewayProcess {
            mut child, lines, ..
        } = self;
        let (done_tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(child.wait());
        });
        let status = done
            .recv_timeout(WATCHDOG)
            .expect("the gateway exits")
            .expect("wait");
        (status, lines.try_iter().collect())
    }
}

/// Whether the server binary `name` (Debian package `package`) can run here. Without it a test
/// says so loudly and passes, unless `OCPP_REQUIRE_SERVERS` is set (as `.ci/run` does), where
/// it fails.
pub fn server_available(name: &str, package: &str) -> bool {
    let found = std::process::Command::new(name)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("OCPP_REQUIRE_SERVERS").is_none(),
            "{name} is not installed and OCPP_REQUIRE_SERVERS is set"
        );
        eprintln!("\n*** SKIPPED: {name} is not installed (apt-get install {package}) ***\n");
    }
    found
}

/// SIGSTOP (`true`) or SIGCONT to process `pid`: a server that stops answering without
/// closing anything.
pub fn freeze_process(pid: u32, frozen: bool) {
    let signal = if frozen { "-STOP" } else { "-CONT" };
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// A loopback port nothing listens on right now (for servers the tests start).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits (under [`WATCHDOG`]) until `check` holds, for state outside this process (a server
/// the test started, Redis, HAProxy) that has no event to wait on: backs off between looks.
pub fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WATCHDOG;
    let mut pause = Duration::from_millis(1);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::park_timeout(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Boots, reports connector 1 and starts a transaction on it: returns the transaction id.
pub fn boot_and_start_transaction<S: std::io::Read + std::io::Write>(
    client: &mut tungstenite::WebSocket<S>,
) -> i64 {
    boot(client);
    let status = json!({"connectorId": 1, "errorCode": "NoError", "status": "Preparing"});
    assert_eq!(call(client, "s1", "StatusNotification", status)[0], 3);
    let start = json!({"connectorId": 1, "idTag": "TAG1", "meterStart": 1000,
                       "timestamp": "2026-11-28T10:00:00Z"});
    let reply = call(client, "t1", "StartTransaction", start);
    assert_eq!(reply[2]["idTagInfo"]["status"], "Accepted", "{reply}");
    let charging = json!({"connectorId": 1, "errorCode": "NoError", "status": "Charging"});
    assert_eq!(call(client, "s2", "StatusNotification", charging)[0], 3);
    reply[2]["transactionId"]
        .as_i64()
        .expect("a transaction id")
}

/// Without booting: every message is answered with a CALLRESULT, none with SecurityError.
pub fn resume_without_boot<S: std::io::Read + std::io::Write>(
    client: &mut tungstenite::WebSocket<S>,
    transaction: i64,
) {
    let status = json!({"connectorId": 1, "errorCode": "NoError", "status": "Charging"});
    let reply = call(client, "s3", "StatusNotification", status);
    assert_eq!(reply[0], 3, "accepted without a new boot: {reply}");
    let meter = json!({"connectorId": 1, "transactionId": transaction, "meterValue": [
        {"timestamp": "2026-11-28T10:30:00Z", "sampledValue": [{"value": "4700"}]}]});
    let reply = call(client, "m1", "MeterValues", meter);
    assert_eq!(reply[0], 3, "{reply}");
    let stop = json!({"transactionId": transaction, "meterStop": 9000,
                      "timestamp": "2026-11-28T11:00:00Z", "reason": "Local"});
    let reply = call(client, "t2", "StopTransaction", stop);
    assert_eq!(reply[0], 3, "{reply}");
}

/// The official OCPP 2.0.1 schemas (beside the checkout, like the 1.6 ones).
pub const SCHEMAS_V201: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/ocpp201/schemas");

/// A charging station connected with `ocpp2.0.1` (the gateway must speak it).
pub fn connect_v201(server: &TestServer, id: &str) -> Client {
    connect_offering(server, id, "ocpp2.0.1")
}

/// A charge point connected offering only `protocol`, which must be selected.
pub fn connect_offering(server: &TestServer, id: &str, protocol: &str) -> Client {
    let (client, response) =
        try_connect(server.addr, &server.url(id), protocol).expect("handshake succeeds");
    assert_eq!(response.headers()["Sec-WebSocket-Protocol"], protocol);
    client
}

/// The official 2.1 schemas beside the checkout.
pub const SCHEMAS_V21: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/ocpp21/schemas");

/// A 2.1 station connected (offering `ocpp2.1`).
pub fn connect_v21(server: &TestServer, id: &str) -> Client {
    connect_offering(server, id, "ocpp2.1")
}

/// A 2.0.1 BootNotification, answered Accepted.
pub fn boot_v201<S: Read + Write>(client: &mut WebSocket<S>) {
    let payload = json!({"reason": "PowerUp",
                         "chargingStation": {"model": "Test", "vendorName": "Tests"}});
    let reply = call_v201(client, "boot-201", "BootNotification", payload);
    assert_eq!(reply[2]["status"], "Accepted", "{reply}");
}

/// Sends a call request (fully written when this returns) and reads its response on another
/// thread; the reply arrives on the returned channel.
pub fn post_async(admin: SocketAddr, cp: &str, body: Value) -> mpsc::Receiver<HttpReply> {
    use std::io::Write;
    let body = body.to_string();
    let mut stream = std::net::TcpStream::connect(admin).expect("admin listener");
    stream.set_read_timeout(Some(WATCHDOG)).unwrap();
    let request = format!(
        "POST /api/v1/chargepoints/{cp}/calls HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(parse_http(&read_to_close(&mut stream)));
    });
    rx
}

/// A `node_modules` directory with npm `ocpp-rpc` 2.x: `$OCPP_INTEROP_NODE_MODULES` (CI's
/// `.ci/run` installs it into its cache and sets it), else one installed once under
/// `target/interop-node`. None (the test says so and passes) when Node.js is missing, unless
/// `OCPP_REQUIRE_SERVERS` is set.
pub fn ocpp_rpc_modules() -> Option<std::path::PathBuf> {
    use std::process::Command;
    if !server_available("node", "nodejs") {
        return None;
    }
    if let Some(dir) = std::env::var_os("OCPP_INTEROP_NODE_MODULES") {
        return Some(dir.into());
    }
    let prefix = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/interop-node");
    let modules = prefix.join("node_modules");
    if !modules.join("ocpp-rpc").is_dir() {
        let installed = Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg("ocpp-rpc@2")
            .status();
        assert!(
            installed.is_ok_and(|s| s.success()),
            "npm install ocpp-rpc@2 failed"
        );
    }
    Some(modules)
}

/// A gateway process killed (SIGKILL) when dropped - at the moment a test chooses, or if the
/// test fails while it runs (it would hold the test's output open).
pub struct Running(pub Option<GatewayProcess>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(gateway) = self.0.as_mut() {
            let _ = gateway.child.kill();
            let _ = gateway.child.wait();
        }
    }
}

/// A client program a test drives (a Python or Node.js charge point): each line it prints is
/// a JSON value on `lines`; its stderr is kept for the message when it fails.
pub struct Driven {
    child: std::process::Child,
    pub lines: mpsc::Receiver<Value>,
    errors: std::thread::JoinHandle<String>,
}

impl Driven {
    pub fn spawn(mut command: std::process::Command) -> Driven {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the client program starts");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(serde_json::from_str(&line).unwrap_or(Value::String(line)));
            }
        });
        let errors = std::thread::spawn(move || {
            let lines = std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok);
            lines.collect::<Vec<_>>().join("\n")
        });
        Driven {
            child,
            lines,
            errors,
        }
    }

    /// Waits (at most `within`) for it to exit 0, failing the test with its stderr otherwise;
    /// returns the lines it printed that were not read yet.
    pub fn finish(self, within: Duration) -> Vec<Value> {
        let Driven {
            mut child,
            lines,
            errors,
        } = self;
        let (done_tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(child.wait());
        });
        let status = done
            .recv_timeout(within)
            .expect("the client program exits")
            .expect("wait");
        let errors = errors.join().expect("stderr reader");
        assert!(status.success(), "the client program failed: {errors}");
        lines.try_iter().collect()
    }
}

/// Runs the Python charging station (`tests/interop/charging_station.py`) with `args`; once it
/// is ready, sends it each of `commands` through the operator API (each must be answered 200,
/// recorded as `{"event": "api", "reply": ...}`); returns its JSON lines once it exited 0.
pub fn run_station(server: &TestServer, id: &str, args: &[&str], commands: &[Value]) -> Vec<Value> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/charging_station.py"
    );
    let mut command = std::process::Command::new(python());
    command.arg(script).args(args);
    let station = Driven::spawn(command);
    let mut seen = Vec::new();
    loop {
        let line = station
            .lines
            .recv_timeout(WATCHDOG * 3)
            .expect("the station's next line");
        let ready = line["event"] == "ready";
        seen.push(line);
        if ready {
            break;
        }
    }
    let path = format!("/api/v1/chargepoints/{id}/calls");
    for body in commands {
        let reply = http(server.admin(), "POST", &path, None, Some(&body.to_string()));
        assert_eq!(reply.status, 200, "{body}: {}", reply.body);
        seen.push(json!({"event": "api", "reply": reply.json()}));
    }
    seen.extend(station.finish(WATCHDOG * 4));
    seen
}

/// Sends each CALL of `cases` (what it is, action, payload, the CallError code expected) with
/// `call` and checks it is answered CALLERROR with that code.
pub fn expect_call_errors(
    client: &mut Client,
    call: fn(&mut Client, &str, &str, Value) -> Value,
    cases: &[(&str, &str, Value, &str)],
) {
    for (n, (what, action, payload, code)) in cases.iter().enumerate() {
        let id = format!("bad-{n}");
        let reply = call(client, &id, action, payload.clone());
        assert_eq!(
            (&reply[0], &reply[1]),
            (&json!(4), &json!(id)),
            "{what}: {reply}"
        );
        assert_eq!(reply[2], *code, "{what}: {reply}");
    }
}

/// A config whose only sink is a journal in a fresh directory of the test's own (`name` and
/// the process id), with a small per-charge-point journal allowance (`rate` bytes a second,
/// `burst`) for a flood to spend within a test; the directory and the journal's path.
pub fn flood_journal(
    name: &str,
    (rate, burst): (u64, u64),
) -> (
    ocpp_gateway::config::Config,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let dir = std::env::temp_dir().join(format!("ocpp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("journal.jsonl");
    let mut config = test_config();
    config.events.sinks = ocpp_gateway::config::Sinks::JOURNAL;
    config.events.path = path.clone();
    config.events.charge_point_rate = rate;
    config.events.charge_point_burst = burst;
    (config, dir, path)
}

/// What the clients of a kill test were told, shared with the test: they add to it and ring.
pub struct Tally<T> {
    pub told: std::sync::Mutex<T>,
    pub grew: std::sync::Condvar,
}

impl<T> Tally<T> {
    /// Locks what was told (the clients add to it under this lock, then [`Tally::ring`]).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        self.told.lock().unwrap()
    }

    /// Something was added.
    pub fn ring(&self) {
        self.grew.notify_all();
    }
}

/// Starts the gateway binary on `config`, runs `client(addr, thread, tally)` on `threads`
/// threads, kills the gateway with SIGKILL once `count` of what they were told reaches a random
/// number from `at_least` to `at_least + spread`, waits for the clients to notice and returns
/// what they were told.
pub fn kill_at_random<T: Default + Send + 'static>(
    config: &std::path::Path,
    threads: usize,
    (at_least, spread): (usize, usize),
    count: fn(&T) -> usize,
    client: fn(SocketAddr, usize, std::sync::Arc<Tally<T>>),
) -> T {
    use std::sync::Arc;
    let gateway = Running(Some(GatewayProcess::start(config)));
    let addr = gateway.0.as_ref().map(|g| g.addr).expect("running");
    let tally = Arc::new(Tally {
        told: std::sync::Mutex::new(T::default()),
        grew: std::sync::Condvar::new(),
    });
    let clients: Vec<_> = (0..threads)
        .map(|t| {
            let tally = Arc::clone(&tally);
            std::thread::spawn(move || client(addr, t, tally))
        })
        .collect();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as usize);
    let target = at_least + seed % spread.max(1);
    eprintln!("killing the gateway after {target} answers (seed {seed})");
    {
        let told = tally.lock();
        let (told, timeout) = tally
            .grew
            .wait_timeout_while(told, WATCHDOG * 3, |t| count(t) < target)
            .unwrap();
        assert!(!timeout.timed_out(), "only {} answers", count(&told));
    }
    drop(gateway); // SIGKILL
    for client in clients {
        client.join().expect("client thread");
    }
    Arc::into_inner(tally)
        .expect("clients gone")
        .told
        .into_inner()
        .unwrap()
}
