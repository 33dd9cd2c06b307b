//! The result of a run: every figure, as written to `--json` (and read back by `plot`), and the
//! human summary printed at the end. Times are seconds, latencies microseconds, memory bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::sampler::{Drift, ServerSample};
use crate::stats::Summary;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub version: String,
    /// Unix time the run started.
    pub started_unix_s: u64,
    pub config: ConfigEcho,
    pub outcome: Outcome,
    pub connect: ConnectFigures,
    pub latency_us: LatencyFigures,
    pub throughput: Throughput,
    pub errors: ErrorFigures,
    pub storm: Option<StormFigures>,
    /// With `--server-pid` only.
    pub server: Option<ServerFigures>,
    pub bench: BenchFigures,
    /// One point per second from the start.
    pub series: Vec<SeriesPoint>,
    /// The gateway every `--sample-every` (with `--server-pid`; `/health` with `--admin`).
    #[serde(default)]
    pub samples: Vec<ServerSample>,
    /// Its RSS from `--warmup` into the measured phase on.
    #[serde(default)]
    pub drift: Option<Drift>,
}

/// The flags that shaped the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigEcho {
    pub url: String,
    pub connections: u32,
    pub threads: u16,
    pub scenario: String,
    /// The OCPP versions spoken (more than one: a mixed fleet, charge point i speaking the
    /// (i mod n)-th); empty in reports written before versions were recorded.
    #[serde(default)]
    pub protocols: Vec<String>,
    /// Heartbeat interval (heartbeat, realistic), seconds.
    pub interval_s: Option<f64>,
    /// Offered messages per second (`--rate`).
    pub rate: Option<f64>,
    pub connect_rate: Option<f64>,
    pub max_inflight_handshakes: u32,
    pub source_ips: usize,
    pub duration_s: f64,
    pub ramp_timeout_s: f64,
    pub timeout_s: f64,
    /// Bytes of each fleet thread's read buffer (connections keep only unfinished frames).
    #[serde(default)]
    pub read_buffer: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub passed: bool,
    /// Why it failed, one line each (empty when passed).
    pub failures: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectFigures {
    pub target: u32,
    /// Open / booted when the measured phase ended.
    pub open_at_end: u64,
    pub booted_at_end: u64,
    /// From the first connect to the last charge point booted (None: not all booted).
    pub time_to_all_booted_s: Option<f64>,
    /// `target / time_to_all_booted_s`: connect + upgrade + boot per second.
    pub connect_boot_rate_per_s: Option<f64>,
    pub connect_attempts: u64,
    /// Connect attempts beyond one per charge point (after failures, drops, storms, resets).
    pub reconnect_attempts: u64,
    pub handshakes: u64,
    pub boots: u64,
    /// Boots of charge points that had booted before.
    pub reboots: u64,
    /// `--resume`: back without booting again / refused (booted instead).
    #[serde(default)]
    pub resumes: u64,
    #[serde(default)]
    pub resumes_refused: u64,
    /// `--tls-resume`: TLS handshakes resumed from a ticket (the rest were full).
    #[serde(default)]
    pub tls_resumed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyFigures {
    /// TCP connect started -> connected.
    pub connect: Summary,
    /// TCP connect started -> WebSocket upgraded.
    pub handshake: Summary,
    /// TCP connect started -> BootNotification accepted.
    pub handshake_boot: Summary,
    /// CALL planned -> answered, during the measured phase (BootNotification excluded).
    pub round_trip: Summary,
    /// StopTransaction alone, during the measured phase (absent in older reports).
    #[serde(default)]
    pub stop_transaction: Summary,
    /// StartTransaction alone, during the measured phase (absent in older reports).
    #[serde(default)]
    pub start_transaction: Summary,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Throughput {
    /// Length of the measured phase.
    pub measured_s: f64,
    /// Answers to our CALLs during the measured phase, and per second.
    pub round_trips: u64,
    pub round_trips_per_s: f64,
    /// Text messages both ways during the measured phase, per second.
    pub messages_per_s: f64,
    /// Whole run.
    pub calls_sent: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub central_system_calls_answered: u64,
    pub pings_received: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorFigures {
    pub total: u64,
    /// Replies that do not match their CALL (wrong id, invalid payload, CALLERROR, garbage).
    pub mismatches: u64,
    pub by_kind: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StormFigures {
    /// Connections dropped at once.
    pub dropped: u64,
    /// From the drop to every charge point booted again (None: not all came back).
    pub time_to_all_booted_s: Option<f64>,
}

/// CPU seconds spent in each phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PhaseCpu {
    /// Connecting and booting everyone.
    pub ramp: Option<f64>,
    /// From the storm's drop to everyone booted again.
    pub storm: Option<f64>,
    /// The measured phase.
    pub steady: Option<f64>,
    pub total: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerFigures {
    pub pid: u32,
    pub rss_before_bytes: u64,
    pub rss_all_booted_bytes: Option<u64>,
    pub rss_end_bytes: u64,
    /// (RSS when all are booted - RSS before) / charge points.
    pub bytes_per_connection: Option<f64>,
    /// (RSS at the end of the measured phase - RSS before) / charge points booted then: what
    /// a connection costs once transient buffers of the ramp (and of the scenario) are gone.
    #[serde(default)]
    pub bytes_per_connection_end: Option<f64>,
    pub cpu_s: PhaseCpu,
    /// CPU seconds per second during the measured phase (1.0 = one core busy).
    pub cores_steady: Option<f64>,
    /// CPU microseconds per round trip answered during the measured phase.
    #[serde(default)]
    pub cpu_us_per_round_trip: Option<f64>,
    /// Context switches of all the gateway's threads during the measured phase.
    #[serde(default)]
    pub context_switches_steady: Option<u64>,
    #[serde(default)]
    pub context_switches_per_round_trip: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchFigures {
    pub threads: u16,
    pub cpu_s: PhaseCpu,
    /// CPU seconds per second during the measured phase.
    pub cores_steady: Option<f64>,
    pub rss_before_bytes: u64,
    pub rss_end_bytes: u64,
    pub peak_rss_bytes: u64,
    /// (RSS at the end - RSS before) / charge points open at the end.
    pub bytes_per_connection: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// Seconds since the start.
    pub t_s: f64,
    pub phase: String,
    pub open: u64,
    pub booted: u64,
    pub inflight: u64,
    pub round_trips_per_s: f64,
    pub messages_per_s: f64,
    /// p99 of the round trips of the last second (0 when none).
    pub round_trip_p99_us: u64,
    pub errors: u64,
    pub server_rss_bytes: Option<u64>,
    pub server_cpu_s: Option<f64>,
    pub bench_rss_bytes: Option<u64>,
    pub bench_cpu_s: Option<f64>,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn opt_s(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2} s"))
}

impl Report {
    /// The summary printed at the end of a run.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let c = &self.config;
        let _ = writeln!(
            s,
            "ocpp-bench {}: {} charge points{}, scenario {}, {} thread(s), against {}",
            self.version,
            c.connections,
            if c.protocols.is_empty() {
                String::new()
            } else {
                format!(" ({})", c.protocols.join(" + "))
            },
            c.scenario,
            c.threads,
            c.url
        );
        let k = &self.connect;
        let _ = writeln!(
            s,
            "  connect   all booted in {}{}; {} open, {} booted at the end; {} attempts, {} reboots{}",
            opt_s(k.time_to_all_booted_s),
            k.connect_boot_rate_per_s
                .map_or_else(String::new, |r| format!(" ({r:.0}/s)")),
            k.open_at_end,
            k.booted_at_end,
            k.connect_attempts,
            k.reboots,
            if k.tls_resumed > 0 {
                format!(", {} TLS handshakes resumed", k.tls_resumed)
            } else {
                String::new()
            } + &if k.resumes + k.resumes_refused > 0 {
                format!(
                    ", {} back without booting, {} refused",
                    k.resumes, k.resumes_refused
                )
            } else {
                String::new()
            }
        );
        let line = |name: &str, l: &Summary| {
            format!(
                "  {name:<9} p50 {:.2} ms, p90 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2} (n={})\n",
                ms(l.p50),
                ms(l.p90),
                ms(l.p99),
                ms(l.p999),
                ms(l.max),
                l.count
            )
        };
        s.push_str(&line("boot", &self.latency_us.handshake_boot));
        s.push_str(&line("round trip", &self.latency_us.round_trip));
        if self.latency_us.start_transaction.count > 0 {
            // 2.0.1: TransactionEvent Started and Ended.
            s.push_str(&line("StartTx", &self.latency_us.start_transaction));
        }
        if self.latency_us.stop_transaction.count > 0 {
            s.push_str(&line("StopTx", &self.latency_us.stop_transaction));
        }
        let t = &self.throughput;
        let _ = writeln!(
            s,
            "  measured  {:.1} s: {} round trips ({:.0}/s), {:.0} messages/s; {} gateway CALLs answered",
            t.measured_s,
            t.round_trips,
            t.round_trips_per_s,
            t.messages_per_s,
            t.central_system_calls_answered
        );
        if let Some(storm) = &self.storm {
            let _ = writeln!(
                s,
                "  storm     {} dropped, all booted again in {}",
                storm.dropped,
                opt_s(storm.time_to_all_booted_s)
            );
        }
        let nonzero: Vec<String> = self
            .errors
            .by_kind
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(
            s,
            "  errors    {} ({} mismatches){}",
            self.errors.total,
            self.errors.mismatches,
            if nonzero.is_empty() {
                String::new()
            } else {
                format!(": {}", nonzero.join(", "))
            }
        );
        self.gateway_and_bench(&mut s);
        if self.outcome.passed {
            s.push_str("PASSED\n");
        } else {
            let _ = writeln!(s, "FAILED: {}", self.outcome.failures.join("; "));
        }
        s
    }

    /// The summary's lines about what the gateway and the bench itself used: memory, CPU and
    /// drift over the run.
    fn gateway_and_bench(&self, s: &mut String) {
        if let Some(server) = &self.server {
            let _ = writeln!(
                s,
                "  gateway   RSS {:.1} -> {:.1} MiB ({} booted, {} at the end), CPU s ramp {} / steady {} ({} cores)",
                mib(server.rss_before_bytes),
                mib(server.rss_end_bytes),
                server
                    .bytes_per_connection
                    .map_or_else(|| "-".to_owned(), |b| format!("{b:.0} bytes/connection")),
                server
                    .bytes_per_connection_end
                    .map_or_else(|| "-".to_owned(), |b| format!("{b:.0}")),
                server.cpu_s.ramp.map_or("-".into(), |v| format!("{v:.2}")),
                server
                    .cpu_s
                    .steady
                    .map_or("-".into(), |v| format!("{v:.2}")),
                server
                    .cores_steady
                    .map_or("-".into(), |v| format!("{v:.3}")),
            );
            if let Some(cpu) = server.cpu_us_per_round_trip {
                let _ = writeln!(
                    s,
                    "  gateway   {cpu:.2} us CPU and {} context switches per round trip (steady)",
                    server
                        .context_switches_per_round_trip
                        .map_or("-".into(), |v| format!("{v:.3}")),
                );
            }
        }
        if let Some(d) = &self.drift {
            let _ = writeln!(
                s,
                "  drift     after {:.0} s: RSS {:.1} .. {:.1} MiB ({:.1}%, first {:.1}, last {:.1}) over {} samples; \
                 open files {}..{}; {} samples not healthy",
                d.warmup_s,
                mib(d.rss_min_bytes),
                mib(d.rss_max_bytes),
                d.rss_spread_percent,
                mib(d.rss_first_bytes),
                mib(d.rss_last_bytes),
                d.samples,
                d.open_files_min.map_or("-".into(), |v| v.to_string()),
                d.open_files_max.map_or("-".into(), |v| v.to_string()),
                d.unhealthy_samples,
            );
        }
        let b = &self.bench;
        let _ = writeln!(
            s,
            "  bench     CPU s ramp {} / steady {} ({} cores), RSS {:.1} MiB (peak {:.1}, {})",
            b.cpu_s.ramp.map_or("-".into(), |v| format!("{v:.2}")),
            b.cpu_s.steady.map_or("-".into(), |v| format!("{v:.2}")),
            b.cores_steady.map_or("-".into(), |v| format!("{v:.3}")),
            mib(b.rss_end_bytes),
            mib(b.peak_rss_bytes),
            b.bytes_per_connection
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.0} bytes/connection")),
        );
    }
}
