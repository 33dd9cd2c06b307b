//! Smoke test so the load generator cannot rot: the real `ocpp-bench` binary against a gateway
//! started in this process (loopback, any free port), a few hundred charge points for a few
//! seconds, judged from its `--json` report: everyone connected and booted, replies counted,
//! no mismatch, exit code 0. The second test also sends every central-system action to one of
//! the simulated charge points through the gateway and checks each answer.
//!
//! Bounded: the tool's own `--duration` and `--timeout`, and a watchdog here that kills it.
//! Synchronised on the tool's output (its progress line), never on sleeps.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ocpp::v16::Action;
use ocpp_gateway::call::CallOutcome;
use ocpp_gateway::config::{Config, Sinks};
use ocpp_gateway::server::Server;
use serde_json::Value;
use serde_json::value::RawValue;

/// Longest any single wait here may take before the test fails.
const WATCHDOG: Duration = Duration::from_secs(60);

/// A gateway in this process, stopped (under the watchdog) when dropped.
struct Gateway {
    server: Option<Server>,
    addr: SocketAddr,
}

impl Gateway {
    fn start() -> Gateway {
        Gateway::start_with(|_| {})
    }

    /// Starts with the test settings, changed by `adjust`.
    fn start_with(adjust: impl FnOnce(&mut Config)) -> Gateway {
        let _ = rlimit::increase_nofile_limit(u64::MAX);
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse().expect("address");
        config.server.workers = NonZeroUsize::new(2).expect("non-zero");
        config.server.pin_cores = false;
        config.processor.threads = NonZeroUsize::new(2).expect("non-zero");
        config.ocpp.transaction_id_file = None;
        config.ocpp.state_file = None;
        config.admin.listen = None;
        config.events.sinks = Sinks::NONE;
        config.ocpp.max_calls_per_second = 0; // the engine is measured, not the limiter
        adjust(&mut config);
        let server = Server::start(config).expect("gateway starts");
        let addr = server.local_addr();
        Gateway {
            server: Some(server),
            addr,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/ocpp/", self.addr)
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let Some(server) = self.server.take() else {
            return;
        };
        server.shutdown();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(server.join());
        });
        if !std::thread::panicking() {
            let joined = rx.recv_timeout(WATCHDOG);
            assert!(
                matches!(joined, Ok(Ok(()))),
                "gateway did not stop cleanly: {joined:?}"
            );
        }
    }
}

/// A running `ocpp-bench`: its stderr lines arrive on `lines` as they are printed.
struct Bench {
    child: Option<Child>,
    pid: u32,
    json: PathBuf,
    lines: mpsc::Receiver<String>,
    stdout: mpsc::Receiver<String>,
}

impl Bench {
    fn spawn(name: &str, args: &[&str]) -> Bench {
        let json = std::env::temp_dir().join(format!(
            "ocpp-bench-smoke-{}-{name}.json",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&json);
        let mut child = Command::new(env!("CARGO_BIN_EXE_ocpp-bench"))
            .args(args)
            .arg("--json")
            .arg(&json)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ocpp-bench starts");
        let (line_tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("ocpp-bench: {line}");
                let _ = line_tx.send(line);
            }
        });
        let (out_tx, stdout) = mpsc::channel();
        let mut out = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            let _ = out_tx.send(text);
        });
        Bench {
            pid: child.id(),
            child: Some(child),
            json,
            lines,
            stdout,
        }
    }

    /// Waits for a progress line containing `needle`.
    fn wait_for_line(&self, needle: &str) {
        loop {
            match self.lines.recv_timeout(WATCHDOG) {
                Ok(line) if line.contains(needle) => return,
                Ok(_) => {}
                Err(e) => panic!("no progress line with {needle:?}: {e}"),
            }
        }
    }

    /// Waits for the exit (killing the tool after the watchdog) and returns the report.
    fn finish(mut self) -> Value {
        let mut child = self.child.take().expect("running");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = match rx.recv_timeout(WATCHDOG) {
            Ok(status) => status.expect("wait for ocpp-bench"),
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-KILL", &self.pid.to_string()])
                    .status();
                panic!("ocpp-bench did not end within {WATCHDOG:?}");
            }
        };
        let summary = self.stdout.recv_timeout(WATCHDOG).unwrap_or_default();
        println!("{summary}");
        assert!(status.success(), "ocpp-bench failed ({status}):\n{summary}");
        let text = std::fs::read_to_string(&self.json).expect("--json file written");
        let _ = std::fs::remove_file(&self.json);
        serde_json::from_str(&text).expect("the report is JSON")
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What every passing run must show.
fn assert_clean(report: &Value, connections: u64) {
    assert_eq!(report["outcome"]["passed"], true, "{report:#}");
    assert_eq!(report["connect"]["booted_at_end"], connections);
    assert_eq!(report["connect"]["open_at_end"], connections);
    assert!(report["connect"]["time_to_all_booted_s"].is_number());
    // Every charge point booted at least once (a Reset adds a boot).
    assert!(report["latency_us"]["handshake_boot"]["count"].as_u64() >= Some(connections));
    assert!(report["throughput"]["round_trips"].as_u64() > Some(0));
    assert!(report["latency_us"]["round_trip"]["count"].as_u64() > Some(0));
    assert_eq!(report["errors"]["mismatches"], 0, "{:#}", report["errors"]);
    assert_eq!(report["errors"]["total"], 0, "{:#}", report["errors"]);
    assert!(report["series"].as_array().is_some_and(|s| !s.is_empty()));
}

#[test]
fn heartbeat_fleet_boots_and_every_reply_matches() {
    let gateway = Gateway::start();
    let url = gateway.url();
    let bench = Bench::spawn(
        "heartbeat",
        &[
            "--url",
            &url,
            "--connections",
            "300",
            "--threads",
            "2",
            "--scenario",
            "heartbeat",
            "--rate",
            "600",
            "--duration",
            "2s",
            "--timeout",
            "40s",
        ],
    );
    let report = bench.finish();
    assert_clean(&report, 300);
    assert_eq!(report["config"]["scenario"], "heartbeat");
    assert_eq!(report["config"]["interval_s"], 0.5);
}

/// A valid request for each of the 26 actions a central system sends (shared with the unit
/// tests of `answers.rs`); Reset last, since a realistic charge point reboots on it.
fn central_system_calls() -> Vec<(String, Value)> {
    let table: serde_json::Map<String, Value> =
        serde_json::from_str(include_str!("central_system_calls.json")).expect("JSON");
    let mut calls: Vec<(String, Value)> = table.into_iter().collect();
    calls.sort_by_key(|(name, _)| name == "Reset"); // stable: the others keep their order
    calls
}

/// 200 charge points at `url` named `{prefix}{i}`, busy realistic sessions (one a second each,
/// a second long, meter values every 300 ms) for 8 s, and `extra` flags.
fn realistic_args<'a>(url: &'a str, prefix: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--url",
        url,
        "--connections",
        "200",
        "--id-prefix",
        prefix,
        "--scenario",
        "realistic",
        "--interval",
        "1s",
        "--meter-interval",
        "300ms",
        "--sessions-per-hour",
        "3600",
        "--session-length",
        "1s",
        "--duration",
        "8s",
        "--timeout",
        "40s",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn realistic_fleet_answers_every_central_system_call() {
    let gateway = Gateway::start();
    let url = gateway.url();
    let bench = Bench::spawn("realistic", &realistic_args(&url, "smoke-", &[]));
    // The progress line once every charge point is booted.
    bench.wait_for_line("booted 200 ");
    let sent: Vec<Action> = Action::ALL
        .into_iter()
        .filter(|a| a.sent_by_central_system())
        .collect();
    let calls = central_system_calls();
    assert_eq!(sent.len(), calls.len());
    for (name, payload) in &calls {
        let action = Action::from_name(name).expect("an OCPP 1.6 action");
        let payload = RawValue::from_string(payload.to_string()).expect("JSON");
        let pending = gateway
            .server()
            .call("smoke-7", action, payload)
            .unwrap_or_else(|e| panic!("{name} payload refused by the gateway: {e:?}"));
        match pending.wait_timeout(WATCHDOG) {
            Some(CallOutcome::Result(result)) => println!("{name} -> {}", result.get()),
            other => panic!("{name}: {other:?}"),
        }
    }
    let report = bench.finish();
    assert_clean(&report, 200);
    let answered = report["throughput"]["central_system_calls_answered"].as_u64();
    assert!(answered >= Some(26), "{answered:?}");
    // Reset reboots a realistic charge point: it came back and booted again.
    assert!(report["connect"]["reboots"].as_u64() >= Some(1));
    // Sessions ran: Authorize, StartTransaction, MeterValues, StopTransaction all answered.
    assert!(report["throughput"]["calls_sent"].as_u64() > Some(600));
}

/// Valid 2.0.1 requests for what a simulated station acts on, and two it declines; Reset last.
const CALLS_201: [(&str, &str); 9] = [
    (
        "GetVariables",
        r#"{"getVariableData":[{"component":{"name":"OCPPCommCtrlr"},"variable":{"name":"HeartbeatInterval"}}]}"#,
    ),
    (
        "SetVariables",
        r#"{"setVariableData":[{"attributeValue":"60","component":{"name":"OCPPCommCtrlr"},"variable":{"name":"HeartbeatInterval"}}]}"#,
    ),
    (
        "TriggerMessage",
        r#"{"requestedMessage":"StatusNotification","evse":{"id":1,"connectorId":1}}"#,
    ),
    ("ChangeAvailability", r#"{"operationalStatus":"Operative"}"#),
    ("UnlockConnector", r#"{"evseId":1,"connectorId":1}"#),
    (
        "RequestStopTransaction",
        r#"{"transactionId":"not-one-of-ours"}"#,
    ),
    (
        "GetLog",
        r#"{"logType":"DiagnosticsLog","requestId":1,"log":{"remoteLocation":"https://logs.example/up"}}"#,
    ),
    ("ClearVariableMonitoring", r#"{"id":[1,2]}"#),
    ("Reset", r#"{"type":"Immediate"}"#),
];

#[test]
fn mixed_fleet_runs_transactions_in_three_versions() {
    let gateway = Gateway::start();
    let url = gateway.url();
    let bench = Bench::spawn(
        "mixed",
        &realistic_args(&url, "mixed-", &["--protocol", "ocpp1.6,ocpp2.0.1,ocpp2.1"]),
    );
    bench.wait_for_line("booted 200 ");
    // Charge point i speaks the (i mod 3)-th: mixed-9 1.6, mixed-7 2.0.1, mixed-8 2.1. Each
    // answers in its own version, and the gateway refuses another version's action for it.
    let call = |cp: &str, action: ocpp::AnyAction, payload: &str| {
        let payload = RawValue::from_string(payload.to_owned()).expect("JSON");
        gateway
            .server()
            .call(cp, action, payload)
            .unwrap_or_else(|e| panic!("{cp} {action:?} refused by the gateway: {e:?}"))
            .wait_timeout(WATCHDOG)
    };
    // GetConfiguration is 1.6 only (a name both versions have is sent in the station's).
    let get_configuration = ocpp::AnyAction::V16(Action::GetConfiguration);
    for cp in ["mixed-7", "mixed-8"] {
        let outcome = call(cp, get_configuration, "{}");
        assert!(
            matches!(outcome, Some(CallOutcome::Invalid(_))),
            "a 1.6 action to {cp}: {outcome:?}"
        );
    }
    // GetTariffs is 2.1's: a 2.0.1 station does not have it.
    let get_tariffs = ocpp::AnyAction::V21(ocpp::v201::Action::GetTariffs);
    let outcome = call("mixed-7", get_tariffs, r#"{"evseId":1}"#);
    assert!(
        matches!(outcome, Some(CallOutcome::Invalid(_))),
        "a 2.1 action to a 2.0.1 station: {outcome:?}"
    );
    match call("mixed-8", get_tariffs, r#"{"evseId":1}"#) {
        Some(CallOutcome::Result(result)) => println!("GetTariffs -> {}", result.get()),
        other => panic!("GetTariffs to a 2.1 station: {other:?}"),
    }
    for cp in ["mixed-7", "mixed-8"] {
        for (name, payload) in CALLS_201 {
            let action = ocpp::v201::Action::parse(name).expect("a 2.0.1 action");
            match call(cp, ocpp::AnyAction::V201(action), payload) {
                Some(CallOutcome::Result(result)) => println!("{cp} {name} -> {}", result.get()),
                other => panic!("{cp} {name}: {other:?}"),
            }
        }
    }
    assert!(matches!(
        call("mixed-9", get_configuration, "{}"),
        Some(CallOutcome::Result(_))
    ));
    let report = bench.finish();
    assert_clean(&report, 200);
    assert_eq!(
        report["config"]["protocols"],
        serde_json::json!(["ocpp1.6", "ocpp2.0.1", "ocpp2.1"]),
        "{:#}",
        report["config"]
    );
    // All three ran whole sessions (Start/StopTransaction, TransactionEvent Started/Ended):
    // every answer was valid against its version's schema, or errors would not be 0.
    let stops = report["latency_us"]["stop_transaction"]["count"].as_u64();
    assert!(stops > Some(100), "{stops:?}");
    assert!(
        report["connect"]["reboots"].as_u64() >= Some(2),
        "Reset rebooted mixed-7 and mixed-8"
    );
}

/// Runs `ocpp-bench` with `args` to completion (a subcommand writing files).
fn bench_tool(args: &[&str]) {
    let status = Command::new(env!("CARGO_BIN_EXE_ocpp-bench"))
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("ocpp-bench runs");
    assert!(status.success(), "ocpp-bench {args:?}: {status}");
}

#[test]
fn wss_fleets_with_basic_auth_and_with_client_certificates() {
    let dir = std::env::temp_dir().join(format!("ocpp-bench-smoke-wss-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let certs = dir.join("certs");
    let credentials = dir.join("credentials");
    let (certs_arg, credentials_arg) = (certs.to_str().unwrap(), credentials.to_str().unwrap());
    bench_tool(&[
        "certs",
        "--out",
        certs_arg,
        "--connections",
        "100",
        "--id-prefix",
        "mtls-",
    ]);
    bench_tool(&[
        "credentials",
        "--seed",
        "smoke-seed",
        "--connections",
        "200",
        "--out",
        credentials_arg,
    ]);
    let gateway = Gateway::start_with(|config| {
        use ocpp_gateway::security::Profile;
        use ocpp_gateway::security::certificates::CertFiles;
        config.security.profile = Profile::TlsBasicAuth;
        config.security.credentials = Some(credentials.clone());
        config.security.tls_certs = vec![CertFiles {
            cert: certs.join("server.pem"),
            key: certs.join("server.key"),
        }];
        config.security.client_ca = Some(certs.join("ca.pem"));
        config
            .extra_listeners
            .push(ocpp_gateway::config::ListenerConfig {
                listen: "127.0.0.1:0".parse().expect("address"),
                profile: Profile::MutualTls,
                proxy_protocol: false,
                tls_offload: false,
                protocols: config.ocpp.protocols,
            });
    });
    let ca = certs.join("ca.pem");
    let url = format!("wss://{}/ocpp/", gateway.addr);
    let report = Bench::spawn(
        "wss-basic",
        &[
            "--url",
            &url,
            "--ca",
            ca.to_str().unwrap(),
            "--basic-auth",
            "smoke-seed",
            "--connections",
            "200",
            "--threads",
            "2",
            "--scenario",
            "heartbeat",
            "--rate",
            "400",
            "--duration",
            "2s",
            "--timeout",
            "40s",
        ],
    )
    .finish();
    assert_clean(&report, 200);

    let mtls = gateway.server().local_addrs()[1];
    let url = format!("ws://{mtls}/ocpp/");
    let report = Bench::spawn(
        "wss-mtls",
        &[
            "--url",
            &url,
            "--tls",
            "--ca",
            ca.to_str().unwrap(),
            "--client-cert-dir",
            certs_arg,
            "--id-prefix",
            "mtls-",
            "--connections",
            "100",
            "--scenario",
            "saturate",
            "--duration",
            "1s",
            "--timeout",
            "40s",
        ],
    )
    .finish();
    assert_clean(&report, 100);
    let stats = gateway.server().stats();
    assert_eq!(stats.tls_handshakes, 300);
    assert_eq!((stats.auth_failures, stats.certificate_mismatches), (0, 0));
    let _ = std::fs::remove_dir_all(&dir);
}
