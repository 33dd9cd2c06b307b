//! The command line (clap derive) and its validation into a [`RunConfig`]: every flag a run reads,
//! typed (`Duration`, `SocketAddr`, a [`Scenario`] carrying its own parameters), with bad
//! combinations refused before anything connects, naming the flag.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::security::TlsClient;

/// Longest identity the gateway accepts (`MAX_CHARGE_POINT_ID_LEN`).
const MAX_IDENTITY_LEN: usize = ocpp::MAX_CHARGE_POINT_ID_LEN;
/// Most source addresses a `--source-ips` list may expand to.
const MAX_SOURCE_IPS: usize = 65_536;

#[derive(Debug, Parser)]
#[command(
    name = "ocpp-bench",
    version,
    about = "Simulated OCPP 1.6J or 2.0.1 charge points against ocpp-gateway: connect, boot, follow a \
             scenario, check every reply, report.",
    long_about = None,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Without a subcommand, the flags of `run`.
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a load test (the default when no subcommand is given).
    Run(Box<RunArgs>),
    /// Draw SVG plots and a markdown scaling table from one or more --json reports.
    Plot(PlotArgs),
    /// Write the gateway's credentials file (security.credentials) for the charge points of a
    /// run with --basic-auth SEED.
    Credentials(CredentialsArgs),
    /// Write a test CA, a server certificate for localhost/127.0.0.1 and a client certificate
    /// per charge point (CN = identity) for --tls and --client-cert-dir.
    Certs(CertsArgs),
    /// One hostile client of scripts/abuse.sh (a flood or an admin slowloris), printing one
    /// JSON line of what it saw.
    Abuse(crate::abuse::AbuseArgs),
}

/// The charge points a file is written for: `{id-prefix}0` .. `{id-prefix}{connections - 1}`.
#[derive(Debug, Clone, Args)]
pub struct Fleet {
    #[arg(long, default_value_t = 100)]
    pub connections: u32,
    #[arg(long, default_value = "bench-")]
    pub id_prefix: String,
}

impl Fleet {
    pub fn identities(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.connections).map(|i| format!("{}{i}", self.id_prefix))
    }
}

#[derive(Debug, Clone, Args)]
pub struct CredentialsArgs {
    /// The seed the run's --basic-auth will be given.
    #[arg(long)]
    pub seed: String,
    #[command(flatten)]
    pub fleet: Fleet,
    /// The file to write.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct CertsArgs {
    #[command(flatten)]
    pub fleet: Fleet,
    /// Directory for ca.pem, server.pem/.key and {identity}.pem/.key (created if missing).
    #[arg(long)]
    pub out: PathBuf,
}

/// The OCPP version the simulated charge points speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtocolName {
    #[value(name = "ocpp1.6")]
    Ocpp16,
    #[value(name = "ocpp2.0.1")]
    Ocpp201,
    /// 2.0.1's messages (valid in 2.1, which extends them), answers checked against 2.1's
    /// schemas, and 2.1's central-system calls answered.
    #[value(name = "ocpp2.1")]
    Ocpp21,
}

/// What each simulated charge point does once booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenarioName {
    /// Nothing but answering the gateway's pings and calls.
    Idle,
    /// One Heartbeat every --interval (or --rate across the fleet).
    Heartbeat,
    /// Heartbeats, status changes and charging sessions at a real fleet's rates.
    Realistic,
    /// Closed loop: the next Heartbeat as soon as the last one is answered.
    Saturate,
    /// All connect and boot, then all drop and reconnect at once; then idle.
    Storm,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Endpoint URL (ws:// or wss://); charge point i connects to URL + PREFIX + i.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ocpp/")]
    pub url: String,
    /// wss: TLS to the gateway (a ws:// URL is taken as wss://); needs --ca.
    #[arg(long)]
    pub tls: bool,
    /// CA certificate (PEM) the gateway's certificate must chain to (wss).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// HTTP Basic auth (security profiles 1, 2): each charge point's key is derived from this
    /// seed (`ocpp-bench credentials --seed` writes the gateway's file for it).
    #[arg(long)]
    pub basic_auth: Option<String>,
    /// Client certificates (security profile 3): `{identity}.pem` and `{identity}.key` in this
    /// directory (`ocpp-bench certs` writes them).
    #[arg(long)]
    pub client_cert_dir: Option<PathBuf>,
    /// wss: each charge point keeps the session ticket the gateway gives it and resumes with
    /// it when it reconnects (without: every handshake is a full one).
    #[arg(long)]
    pub tls_resume: bool,
    /// wss: offer TLS 1.2 only (many charge points in the field speak nothing newer).
    #[arg(long)]
    pub tls12: bool,
    /// Charge points to simulate, one connection each.
    #[arg(long, default_value_t = 100)]
    pub connections: u32,
    /// Event-loop threads; each owns an equal share of the charge points.
    #[arg(long, default_value_t = 1)]
    pub threads: u16,
    /// Identity prefix (letters, digits, `-`, `_`, `.`, `~`).
    #[arg(long, default_value = "bench-")]
    pub id_prefix: String,
    /// What each charge point does once booted.
    #[arg(long, value_enum, default_value_t = ScenarioName::Heartbeat)]
    pub scenario: ScenarioName,
    /// New connections per second across all threads; 0 = as fast as allowed.
    #[arg(long, default_value_t = 0.0)]
    pub connect_rate: f64,
    /// Connections between TCP connect and WebSocket upgrade at once, across all threads.
    #[arg(long, default_value_t = 1000)]
    pub max_inflight_handshakes: u32,
    /// Local addresses to connect from, round-robin, port chosen at connect:
    /// `127.0.0.2-127.0.0.60`, `a,b,c` or both.
    #[arg(long)]
    pub source_ips: Option<String>,
    /// heartbeat, realistic: time between two Heartbeats of one charge point.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub interval: Duration,
    /// heartbeat: Heartbeats per second offered by the whole fleet, evenly spread (sets the
    /// interval to connections / rate); latency counts from the planned send time.
    #[arg(long)]
    pub rate: Option<f64>,
    /// realistic: MeterValues period during a charging session.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub meter_interval: Duration,
    /// realistic: charging sessions per charge point per hour (Poisson arrivals).
    #[arg(long, default_value_t = 0.5)]
    pub sessions_per_hour: f64,
    /// realistic: mean length of a charging session.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30m")]
    pub session_length: Duration,
    /// Length of the measured phase, which starts once every charge point is booted.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Time allowed for all to connect and boot (again after a storm); past it the run fails.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub ramp_timeout: Duration,
    /// Hard bound on the whole run [default: ramp timeout (twice for storm) + duration + 30s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Time from TCP connect to WebSocket upgrade before the attempt counts as failed.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub handshake_timeout: Duration,
    /// Time the gateway has to answer a CALL before it counts as a timeout.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub call_timeout: Duration,
    /// Reconnect back-off: first ceiling (full jitter below it), doubled per failure.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub backoff_min: Duration,
    /// After a reconnect, a charge point that was accepted before does not boot again (as the
    /// spec says): its first message is a StatusNotification, and it counts as back once that
    /// is answered with a CALLRESULT. A CALLERROR (the gateway did not know it) is counted as
    /// a refused resume and it boots.
    #[arg(long)]
    pub resume: bool,
    /// Reconnect back-off: largest ceiling.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub backoff_max: Duration,
    /// Once booted, each charge point sends one DataTransfer carrying this many bytes of
    /// data, then follows its scenario (what a gateway keeps after a large message).
    #[arg(long)]
    pub large_message: Option<u32>,
    /// The OCPP version the charge points speak (offered, and required of the gateway). A
    /// list is a mixed fleet: charge point i speaks the (i mod n)-th, so `ocpp1.6,ocpp2.0.1`
    /// is half and half. Every scenario runs in each version: 2.0.1's realistic sessions are
    /// Authorize and TransactionEvent Started, Updated (meter values) and Ended, with seqNo.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "ocpp1.6")]
    pub protocol: Vec<ProtocolName>,
    /// Write every figure of the run to this JSON file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The gateway's process id: report its RSS (bytes per connection) and CPU per phase.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The gateway's admin listener (host:port): its `/health` queue depths and status go into
    /// every `--sample-every` sample.
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// With --server-pid: sample the gateway's RSS, CPU, open files, threads (and /health with
    /// --admin) this often into the report's `samples` (long runs, soak).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub sample_every: Duration,
    /// The first part of the measured phase left out of the report's RSS drift (`drift`).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    pub warmup: Duration,
    /// Fail the run when the gateway's RSS after the warm-up moves by more than this many
    /// percent (max - min over min; needs --server-pid and a measured phase past --warmup).
    #[arg(long)]
    pub max_rss_spread: Option<f64>,
    /// Allow a target outside 127.0.0.0/8 and ::1 (never point a load test at a host you do
    /// not run).
    #[arg(long)]
    pub allow_remote: bool,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Seed of the jitter (back-off, session arrivals).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// Directory for the SVG files and `scaling.md` (created if missing).
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Reports written by `--json`.
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
}

/// A flag value that cannot be used: the message names the flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--{flag}: {reason}")]
    Invalid { flag: &'static str, reason: String },
}

/// `d`, unless it is zero.
fn positive(flag: &'static str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        Err(invalid(flag, "must be more than 0"))
    } else {
        Ok(d)
    }
}

fn invalid(flag: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        reason: reason.into(),
    }
}

/// What a booted charge point does, with the scenario's own parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Scenario {
    Idle,
    Heartbeat {
        interval: Duration,
    },
    Realistic(RealisticParams),
    Saturate,
    /// Idle once back; the drop and reconnect is the coordinator's phase.
    Storm,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RealisticParams {
    pub heartbeat: Duration,
    pub meter_interval: Duration,
    pub sessions_per_hour: f64,
    pub session_length: Duration,
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Idle => "idle",
            Scenario::Heartbeat { .. } => "heartbeat",
            Scenario::Realistic(_) => "realistic",
            Scenario::Saturate => "saturate",
            Scenario::Storm => "storm",
        }
    }
}

/// Where the charge points connect: resolved once, before the run.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `ws://host:port/path/` (or wss), to which an identity is appended.
    pub url_prefix: String,
    pub tls: bool,
    /// The `Host` header: `host:port` as written in the URL.
    pub host: String,
    /// `/path/`, to which an identity is appended.
    pub path_prefix: String,
}

/// A validated run: everything the threads and the coordinator read.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: Target,
    pub connections: u32,
    pub threads: u16,
    pub id_prefix: String,
    pub scenario: Scenario,
    /// Offered Heartbeats per second across the fleet, when fixed (`--rate`).
    pub rate: Option<f64>,
    /// Per second, across threads; None: unlimited.
    pub connect_rate: Option<f64>,
    pub max_inflight_handshakes: u32,
    pub source_ips: Vec<IpAddr>,
    pub duration: Duration,
    pub ramp_timeout: Duration,
    pub timeout: Duration,
    pub handshake_timeout: Duration,
    pub call_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub resume: bool,
    pub large_message: Option<u32>,
    /// The OCPP versions spoken: charge point i speaks `protocols[i % len]` (never empty).
    pub protocols: Vec<ocpp::Version>,
    /// Distinguishes this run's 2.0.1 transaction ids from an earlier run's (a gateway that
    /// kept its state would take a repeated id for a resend): the start time in seconds.
    pub run_tag: u32,
    pub json: Option<PathBuf>,
    pub server_pid: Option<u32>,
    pub admin: Option<SocketAddr>,
    pub sample_every: Duration,
    pub warmup: Duration,
    pub max_rss_spread: Option<f64>,
    pub quiet: bool,
    pub seed: u64,
    /// wss settings.
    pub tls: Option<TlsClient>,
    /// Seed of the charge points' Basic-auth keys.
    pub basic_auth: Option<String>,
}

impl RunConfig {
    pub fn identity(&self, index: u32) -> String {
        format!("{}{index}", self.id_prefix)
    }

    /// The version charge point `index` speaks.
    pub fn version_of(&self, index: u32) -> ocpp::Version {
        let n = self.protocols.len().max(1);
        self.protocols
            .get(index as usize % n)
            .copied()
            .unwrap_or(ocpp::Version::V16)
    }
}

impl RunArgs {
    pub fn validate(self) -> Result<RunConfig, ConfigError> {
        let (target, tls) = self.target_and_tls()?;
        self.check_fleet()?;
        self.check_limits()?;
        let scenario = self.checked_scenario()?;
        let source_ips = self.checked_source_ips(&target)?;
        let ramps = if self.scenario == ScenarioName::Storm {
            2
        } else {
            1
        };
        let timeout = self
            .timeout
            .unwrap_or(self.ramp_timeout * ramps + self.duration + Duration::from_secs(30));
        positive("timeout", timeout)?;
        Ok(RunConfig {
            target,
            connections: self.connections,
            threads: self
                .threads
                .min(u16::try_from(self.connections).unwrap_or(u16::MAX)),
            id_prefix: self.id_prefix,
            scenario,
            rate: self.rate,
            connect_rate: (self.connect_rate > 0.0).then_some(self.connect_rate),
            max_inflight_handshakes: self.max_inflight_handshakes,
            source_ips,
            duration: self.duration,
            ramp_timeout: self.ramp_timeout,
            timeout,
            handshake_timeout: self.handshake_timeout,
            call_timeout: self.call_timeout,
            backoff_min: self.backoff_min,
            backoff_max: self.backoff_max,
            resume: self.resume,
            large_message: self.large_message,
            protocols: self
                .protocol
                .iter()
                .map(|name| match name {
                    ProtocolName::Ocpp16 => ocpp::Version::V16,
                    ProtocolName::Ocpp201 => ocpp::Version::V201,
                    ProtocolName::Ocpp21 => ocpp::Version::V21,
                })
                .collect(),
            run_tag: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as u32),
            json: self.json,
            server_pid: self.server_pid,
            admin: self.admin,
            sample_every: positive("sample-every", self.sample_every)?,
            warmup: self.warmup,
            max_rss_spread: self.max_rss_spread,
            quiet: self.quiet,
            seed: self.seed,
            tls,
            basic_auth: self.basic_auth,
        })
    }

    /// Where to connect, and the TLS client for wss (`--ca`, `--client-cert-dir`).
    fn target_and_tls(&self) -> Result<(Target, Option<TlsClient>), ConfigError> {
        let mut target = parse_url(&self.url, self.allow_remote)?;
        if self.tls && !target.tls {
            target.tls = true;
            target.url_prefix = target.url_prefix.replacen("ws://", "wss://", 1);
        }
        let tls = match (target.tls, &self.ca) {
            (true, Some(ca)) => Some(
                TlsClient::new(
                    ca,
                    &target.host,
                    self.client_cert_dir.clone(),
                    (self.tls_resume, self.tls12),
                )
                .map_err(|e| invalid("ca", e.to_string()))?,
            ),
            (true, None) => {
                return Err(invalid(
                    "ca",
                    "wss needs the CA the gateway's certificate chains to",
                ));
            }
            (false, _) if self.client_cert_dir.is_some() => {
                return Err(invalid(
                    "client-cert-dir",
                    "client certificates need wss (--tls)",
                ));
            }
            (false, _) if self.tls_resume => {
                return Err(invalid("tls-resume", "session tickets need wss (--tls)"));
            }
            (false, _) if self.tls12 => {
                return Err(invalid("tls12", "a TLS version needs wss (--tls)"));
            }
            (false, _) => None,
        };
        if let Some(dir) = &self.client_cert_dir
            && !dir.is_dir()
        {
            return Err(invalid(
                "client-cert-dir",
                format!("{} is not a directory", dir.display()),
            ));
        }
        Ok((target, tls))
    }

    /// The fleet: its size, threads, identities and their credentials.
    fn check_fleet(&self) -> Result<(), ConfigError> {
        if self.basic_auth.as_deref().is_some_and(str::is_empty) {
            return Err(invalid("basic-auth", "the seed must not be empty"));
        }
        if self.connections == 0 {
            return Err(invalid("connections", "must be at least 1"));
        }
        if self.threads == 0 || self.threads > 256 {
            return Err(invalid("threads", "must be 1 to 256"));
        }
        let ok_char = |c: char| c.is_ascii_alphanumeric() || "-_.~".contains(c);
        if !self.id_prefix.chars().all(ok_char) {
            return Err(invalid(
                "id-prefix",
                "only letters, digits, `-`, `_`, `.` and `~` (it goes into the URL as is)",
            ));
        }
        let longest = self.id_prefix.len() + (self.connections - 1).to_string().len();
        if longest > MAX_IDENTITY_LEN {
            return Err(invalid(
                "id-prefix",
                format!(
                    "identities would have {longest} characters, the gateway takes {MAX_IDENTITY_LEN}"
                ),
            ));
        }
        Ok(())
    }

    /// Durations, rates and sizes that must be positive or bounded, and flags that need
    /// another.
    fn check_limits(&self) -> Result<(), ConfigError> {
        positive("interval", self.interval)?;
        positive("meter-interval", self.meter_interval)?;
        positive("session-length", self.session_length)?;
        positive("ramp-timeout", self.ramp_timeout)?;
        if self.max_rss_spread.is_some() && self.server_pid.is_none() {
            return Err(invalid("max-rss-spread", "needs --server-pid"));
        }
        if let Some(admin) = self.admin
            && !self.allow_remote
            && !admin.ip().is_loopback()
        {
            return Err(invalid("admin", "not on loopback (add --allow-remote)"));
        }
        positive("handshake-timeout", self.handshake_timeout)?;
        positive("call-timeout", self.call_timeout)?;
        positive("backoff-min", self.backoff_min)?;
        if self.backoff_max < self.backoff_min {
            return Err(invalid("backoff-max", "must be at least --backoff-min"));
        }
        if !(self.sessions_per_hour.is_finite() && self.sessions_per_hour >= 0.0) {
            return Err(invalid("sessions-per-hour", "must be a number >= 0"));
        }
        if !(self.connect_rate.is_finite() && self.connect_rate >= 0.0) {
            return Err(invalid(
                "connect-rate",
                "must be a number >= 0 (0: unlimited)",
            ));
        }
        if self.large_message.is_some_and(|n| n > 16 << 20) {
            return Err(invalid("large-message", "must be at most 16 MiB"));
        }
        if self.protocol.is_empty() {
            return Err(invalid("protocol", "name at least one version"));
        }
        if (1..self.protocol.len()).any(|i| self.protocol[..i].contains(&self.protocol[i])) {
            return Err(invalid("protocol", "a version is named twice"));
        }
        if self.max_inflight_handshakes == 0 {
            return Err(invalid("max-inflight-handshakes", "must be at least 1"));
        }
        Ok(())
    }

    /// The scenario with its parameters (`--rate` sets the heartbeat interval).
    fn checked_scenario(&self) -> Result<Scenario, ConfigError> {
        let scenario = match self.scenario {
            ScenarioName::Idle => Scenario::Idle,
            ScenarioName::Saturate => Scenario::Saturate,
            ScenarioName::Storm => Scenario::Storm,
            ScenarioName::Heartbeat => {
                let interval = match self.rate {
                    Some(rate) if rate.is_finite() && rate > 0.0 => {
                        Duration::from_secs_f64(f64::from(self.connections) / rate)
                    }
                    Some(_) => return Err(invalid("rate", "must be a number > 0")),
                    None => self.interval,
                };
                Scenario::Heartbeat { interval }
            }
            ScenarioName::Realistic => Scenario::Realistic(RealisticParams {
                heartbeat: self.interval,
                meter_interval: self.meter_interval,
                sessions_per_hour: self.sessions_per_hour,
                session_length: self.session_length,
            }),
        };
        if self.rate.is_some() && self.scenario != ScenarioName::Heartbeat {
            return Err(invalid("rate", "applies to --scenario heartbeat only"));
        }
        Ok(scenario)
    }

    /// `--source-ips`, of the target's address family.
    fn checked_source_ips(&self, target: &Target) -> Result<Vec<IpAddr>, ConfigError> {
        let source_ips = match &self.source_ips {
            Some(spec) => parse_source_ips(spec)?,
            None => Vec::new(),
        };
        if let Some(ip) = source_ips
            .iter()
            .find(|ip| ip.is_ipv4() != target.addr.is_ipv4())
        {
            return Err(invalid(
                "source-ips",
                format!("{ip} is not of the target's address family"),
            ));
        }
        Ok(source_ips)
    }
}

/// `ws[s]://host[:port]/path` -> the address to connect to and the URL prefix for identities.
fn parse_url(url: &str, allow_remote: bool) -> Result<Target, ConfigError> {
    let (tls, rest) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => return Err(invalid("url", "must start with ws:// or wss://")),
    };
    let default_port = if tls { 443 } else { 80 };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(invalid("url", "has no host"));
    }
    let with_port = if authority.ends_with(']') || !authority.contains(':') {
        format!("{authority}:{default_port}")
    } else {
        authority.to_owned()
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| invalid("url", format!("cannot resolve {authority}: {e}")))?
        .next()
        .ok_or_else(|| invalid("url", format!("{authority} resolves to no address")))?;
    if !allow_remote && !addr.ip().is_loopback() {
        return Err(invalid(
            "url",
            format!("{addr} is not a loopback address; pass --allow-remote for a host you run"),
        ));
    }
    let mut path_prefix = path.to_owned();
    if !path_prefix.ends_with('/') {
        path_prefix.push('/');
    }
    if !path_prefix.chars().all(|c| c.is_ascii_graphic()) {
        return Err(invalid(
            "url",
            "the path must be printable ASCII without spaces",
        ));
    }
    Ok(Target {
        addr,
        url_prefix: format!(
            "{}://{authority}{path_prefix}",
            if tls { "wss" } else { "ws" }
        ),
        tls,
        host: authority.to_owned(),
        path_prefix,
    })
}

/// `127.0.0.2-127.0.0.60,127.0.1.1,::1` -> the addresses, in order.
pub fn parse_source_ips(spec: &str) -> Result<Vec<IpAddr>, ConfigError> {
    let mut ips = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = |what: &str| invalid("source-ips", format!("{part:?}: {what}"));
        match part.split_once('-') {
            None => ips.push(part.parse::<IpAddr>().map_err(|_| bad("not an address"))?),
            Some((first, last)) => {
                let first: Ipv4Addr = first.trim().parse().map_err(|_| bad("not an IPv4 range"))?;
                let last: Ipv4Addr = last.trim().parse().map_err(|_| bad("not an IPv4 range"))?;
                let (first, last) = (u32::from(first), u32::from(last));
                if last < first {
                    return Err(bad("range ends before it starts"));
                }
                if (last - first) as usize >= MAX_SOURCE_IPS {
                    return Err(bad("range too large"));
                }
                ips.extend((first..=last).map(|ip| IpAddr::V4(Ipv4Addr::from(ip))));
            }
        }
        if ips.len() > MAX_SOURCE_IPS {
            return Err(invalid("source-ips", "too many addresses"));
        }
    }
    if ips.is_empty() {
        return Err(invalid("source-ips", "no address given"));
    }
    Ok(ips)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<RunConfig, ConfigError> {
        let mut argv = vec!["ocpp-bench"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).expect("parses").run.validate()
    }

    #[test]
    fn defaults_are_valid() {
        let config = args(&[]).unwrap();
        assert_eq!(config.target.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.target.url_prefix, "ws://127.0.0.1:8080/ocpp/");
        assert_eq!(
            config.scenario,
            Scenario::Heartbeat {
                interval: Duration::from_secs(60)
            }
        );
        assert_eq!(config.identity(7), "bench-7");
    }

    #[test]
    fn rate_sets_the_heartbeat_interval() {
        let config = args(&["--connections", "1000", "--rate", "2000"]).unwrap();
        assert_eq!(
            config.scenario,
            Scenario::Heartbeat {
                interval: Duration::from_millis(500)
            }
        );
        let err = args(&["--scenario", "idle", "--rate", "5"]).unwrap_err();
        assert!(err.to_string().starts_with("--rate:"), "{err}");
    }

    #[test]
    fn bad_values_name_their_flag() {
        for (argv, flag) in [
            (vec!["--url", "http://127.0.0.1/"], "--url"),
            (vec!["--url", "wss://127.0.0.1/"], "--ca"),
            (vec!["--tls"], "--ca"),
            (vec!["--client-cert-dir", "/"], "--client-cert-dir"),
            (vec!["--basic-auth", ""], "--basic-auth"),
            (vec!["--url", "ws://192.0.2.1:8080/ocpp"], "--url"),
            (vec!["--connections", "0"], "--connections"),
            (vec!["--id-prefix", "a b"], "--id-prefix"),
            (vec!["--source-ips", "127.0.0.9-127.0.0.2"], "--source-ips"),
            (vec!["--backoff-max", "1ms"], "--backoff-max"),
            (vec!["--tls-resume"], "--tls-resume"),
            (vec!["--tls12"], "--tls12"),
            (vec!["--protocol", "ocpp1.6,ocpp1.6"], "--protocol"),
        ] {
            let err = args(&argv).unwrap_err().to_string();
            assert!(err.starts_with(flag), "{argv:?}: {err}");
        }
    }

    #[test]
    fn a_protocol_list_is_a_mixed_fleet() {
        let config = args(&["--protocol", "ocpp1.6,ocpp2.0.1", "--connections", "4"]).unwrap();
        let versions: Vec<_> = (0..4).map(|i| config.version_of(i)).collect();
        use ocpp::Version::{V16, V201};
        assert_eq!(versions, [V16, V201, V16, V201]);
        let config = args(&["--protocol", "ocpp2.0.1"]).unwrap();
        assert_eq!(config.version_of(7), V201);
    }

    #[test]
    fn url_without_trailing_slash_or_port() {
        let target = parse_url("ws://127.0.0.1/ocpp", false).unwrap();
        assert_eq!(target.addr.port(), 80);
        assert_eq!(target.url_prefix, "ws://127.0.0.1/ocpp/");
        assert_eq!(
            (target.host.as_str(), target.path_prefix.as_str()),
            ("127.0.0.1", "/ocpp/")
        );
    }

    #[test]
    fn source_ip_ranges_and_lists() {
        let ips = parse_source_ips("127.0.0.2-127.0.0.4, 127.0.1.1").unwrap();
        let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
        assert_eq!(ips, ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.1.1"]);
        assert!(parse_source_ips("").is_err());
        assert!(parse_source_ips("127.0.0.1-10.0.0.1").is_err());
    }
}
