//! Configuration: `config.toml` is read into raw serde structs (`deny_unknown_fields`, every key
//! optional) and then validated into [`Config`], whose fields are ready to use (`Duration`,
//! `NonZero*`, resolved core counts). Every default is a named constant here, and the shipped
//! `config.toml` documents the same values; a test keeps the two in step.
//!
//! Errors name the file and the key, because an operator reading a start-up failure on a host
//! with a million charge points waiting should not have to guess.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::ocpp::v16::{DataTransferStatus, RegistrationStatus};

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_PIN_CORES: bool = true;
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
pub const DEFAULT_DRAIN_RATE: u32 = 10_000;
pub const DEFAULT_LISTEN_BACKLOG: u32 = 4096;
pub const DEFAULT_SOCKET_SEND_BUFFER: usize = 0;

pub const DEFAULT_PATH_PREFIX: &str = "/ocpp";
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024;
pub const DEFAULT_READ_BUFFER_SIZE: usize = 512;
pub const DEFAULT_MAX_WRITE_BUFFER: usize = 256 * 1024;
pub const DEFAULT_PING_SKIP_THRESHOLD: usize = 16 * 1024;

pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;

pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(300);
pub const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_QUEUED_CALLS: usize = 16;
pub const DEFAULT_BOOT_STATUS: RegistrationStatus = RegistrationStatus::Accepted;
pub const DEFAULT_DATA_TRANSFER_STATUS: DataTransferStatus = DataTransferStatus::UnknownVendorId;
pub const DEFAULT_TRANSACTION_ID_FILE: &str = "ocpp-gateway.transaction-id";

pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
pub const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(10);
/// Where `admin.token` may come from instead of the file.
pub const ADMIN_TOKEN_ENV: &str = "OCPP_GATEWAY_ADMIN_TOKEN";

pub const DEFAULT_EVENTS_SINK: Sink = Sink::Journal;
pub const DEFAULT_EVENTS_PATH: &str = "ocpp-gateway.events.jsonl";
pub const DEFAULT_MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
pub const DEFAULT_MAX_FILES: usize = 8;
pub const DEFAULT_FSYNC: &str = "interval";
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_ACK_AFTER_WRITE: bool = true;
pub const DEFAULT_EVENTS_QUEUE_CAPACITY: usize = 8192;

/// The longest charge point identity accepted in the URL, in characters.
pub const MAX_CHARGE_POINT_ID_LEN: usize = 48;

/// A configuration that cannot be used, with the file and key it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read: fix the path or its permissions.
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not TOML, an unknown key, or a value of the wrong type: the message names the key.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// Well-formed but unusable: `key` says which setting to change.
    #[error("{path}: `{key}`: {reason}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        reason: String,
    },
}

/// The validated configuration every thread reads (shared behind an `Arc`).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub websocket: WebSocketConfig,
    pub processor: ProcessorConfig,
    pub ocpp: OcppConfig,
    pub admin: AdminConfig,
    pub events: EventsConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// None: no admin listener (`listen = ""`).
    pub listen: Option<SocketAddr>,
    /// Bearer token every endpoint but `/health` requires (None: open; keep it on loopback).
    pub token: Option<String>,
    /// A loop or processor that has not answered a liveness probe for this long is stuck.
    pub stuck_after: Duration,
}

/// Where events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sink {
    /// The JSON-lines journal at `events.path`.
    Journal,
    /// Nowhere.
    None,
}

/// When the journal calls fdatasync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Never: the OS writes back when it likes (a host crash can lose recent lines).
    Never,
    /// At most once per this interval (a host crash loses at most about that much).
    Interval(Duration),
    /// After every batch, before the answers held for it go out.
    Always,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventsConfig {
    pub sink: Sink,
    pub path: PathBuf,
    pub max_file_bytes: u64,
    /// Files kept in all, the current one included.
    pub max_files: usize,
    pub fsync: Fsync,
    /// StopTransaction and MeterValues are answered only once their line is written.
    pub ack_after_write: bool,
    pub queue_capacity: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Event loops, one per core by default.
    pub workers: NonZeroUsize,
    pub pin_cores: bool,
    /// Across all loops; over it a handshake gets HTTP 503.
    pub max_connections: usize,
    /// Connections closed per second during a graceful shutdown, across all loops.
    pub drain_rate: NonZeroU32,
    pub listen_backlog: u32,
    /// SO_SNDBUF for accepted sockets; `None` leaves the kernel's autotuning alone.
    pub socket_send_buffer: Option<NonZeroUsize>,
    /// This gateway's name in journal lines (the host name unless set).
    pub node_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebSocketConfig {
    /// `""` (root) or `/segment...` without a trailing slash.
    pub path_prefix: String,
    pub handshake_timeout: Duration,
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    pub max_message_size: usize,
    pub read_buffer_size: usize,
    pub max_write_buffer: usize,
    pub ping_skip_threshold: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProcessorConfig {
    pub threads: NonZeroUsize,
    pub queue_capacity: NonZeroUsize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OcppConfig {
    /// Sent as `interval` in BootNotification answers (whole seconds).
    pub heartbeat_interval: Duration,
    /// How long a charge point has to answer a CALL of ours.
    pub message_timeout: Duration,
    /// Calls waiting per charge point behind the one in flight; more are rejected.
    pub max_queued_calls: usize,
    /// BootNotification answer for identities the allow-list (if any) admits.
    pub boot_status: RegistrationStatus,
    /// File of identities allowed to boot; others are Rejected (None: everyone).
    pub allowed_charge_points: Option<PathBuf>,
    /// With an allow-list: refuse unknown identities at the handshake with HTTP 404.
    pub refuse_unknown_at_handshake: bool,
    /// TOML file of authorized idTags (None: every idTag is Accepted).
    pub id_tags: Option<PathBuf>,
    /// The status answered to a DataTransfer from a charge point.
    pub data_transfer_status: DataTransferStatus,
    /// Where the transaction id counter survives restarts (None: memory only).
    pub transaction_id_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    websocket: RawWebSocket,
    #[serde(default)]
    processor: RawProcessor,
    #[serde(default)]
    ocpp: RawOcpp,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    events: RawEvents,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    token: Option<String>,
    stuck_after: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    sink: Option<Sink>,
    path: Option<String>,
    max_file_bytes: Option<u64>,
    max_files: Option<usize>,
    fsync: Option<String>,
    fsync_interval: Option<String>,
    ack_after_write: Option<bool>,
    queue_capacity: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    workers: Option<usize>,
    pin_cores: Option<bool>,
    max_connections: Option<usize>,
    drain_rate: Option<u32>,
    listen_backlog: Option<u32>,
    socket_send_buffer: Option<usize>,
    node_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebSocket {
    path_prefix: Option<String>,
    handshake_timeout: Option<String>,
    ping_interval: Option<String>,
    pong_timeout: Option<String>,
    max_message_size: Option<usize>,
    read_buffer_size: Option<usize>,
    max_write_buffer: Option<usize>,
    ping_skip_threshold: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcessor {
    threads: Option<usize>,
    queue_capacity: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOcpp {
    heartbeat_interval: Option<String>,
    message_timeout: Option<String>,
    max_queued_calls: Option<usize>,
    boot_status: Option<RegistrationStatus>,
    allowed_charge_points: Option<String>,
    refuse_unknown_at_handshake: Option<bool>,
    id_tags: Option<String>,
    data_transfer_status: Option<DataTransferStatus>,
    transaction_id_file: Option<String>,
}

impl Default for Config {
    /// The embedded defaults: what the gateway runs with when no file is given.
    fn default() -> Self {
        validate(RawConfig::default(), Path::new("<defaults>"))
            .expect("the embedded defaults are valid")
    }
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Validates TOML text; `origin` only names the source in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        validate(raw, origin)
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

fn validate(raw: RawConfig, path: &Path) -> Result<Config, ConfigError> {
    let invalid = |key: &'static str, reason: String| ConfigError::Invalid {
        path: path.to_owned(),
        key,
        reason,
    };
    let duration = |key: &'static str, value: Option<String>, default: Duration| match value {
        None => Ok(default),
        Some(text) => humantime::parse_duration(&text)
            .map_err(|e| invalid(key, format!("{text:?} is not a duration like \"30s\": {e}"))),
    };
    let count = |key: &'static str, value: Option<usize>, default: usize| match value {
        None | Some(0) => {
            NonZeroUsize::new(default).ok_or_else(|| invalid(key, "must be > 0".into()))
        }
        Some(n) if n > 4096 => Err(invalid(key, format!("{n} is more than 4096"))),
        Some(n) => NonZeroUsize::new(n).ok_or_else(|| invalid(key, "must be > 0".into())),
    };

    let s = raw.server;
    let listen_text = s.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        invalid(
            "server.listen",
            format!("{listen_text:?} is not an address like \"0.0.0.0:8080\""),
        )
    })?;
    let server = ServerConfig {
        listen,
        workers: count("server.workers", s.workers, cores())?,
        pin_cores: s.pin_cores.unwrap_or(DEFAULT_PIN_CORES),
        max_connections: s.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
        drain_rate: NonZeroU32::new(s.drain_rate.unwrap_or(DEFAULT_DRAIN_RATE))
            .ok_or_else(|| invalid("server.drain_rate", "must be > 0".into()))?,
        listen_backlog: s.listen_backlog.unwrap_or(DEFAULT_LISTEN_BACKLOG).max(1),
        socket_send_buffer: NonZeroUsize::new(
            s.socket_send_buffer.unwrap_or(DEFAULT_SOCKET_SEND_BUFFER),
        ),
        node_id: match s.node_id.filter(|n| !n.is_empty()) {
            Some(id) if id.len() > 128 || id.chars().any(char::is_control) => {
                return Err(invalid(
                    "server.node_id",
                    "must be at most 128 characters, none of them control characters".into(),
                ));
            }
            Some(id) => id,
            None => host_name(),
        },
    };

    let w = raw.websocket;
    let path_prefix = w
        .path_prefix
        .unwrap_or_else(|| DEFAULT_PATH_PREFIX.to_owned());
    let path_prefix = path_prefix.trim_end_matches('/').to_owned();
    if !(path_prefix.is_empty() || path_prefix.starts_with('/'))
        || path_prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '?')
    {
        return Err(invalid(
            "websocket.path_prefix",
            format!("{path_prefix:?} must start with '/' and contain no spaces or '?'"),
        ));
    }
    let websocket = WebSocketConfig {
        path_prefix,
        handshake_timeout: duration(
            "websocket.handshake_timeout",
            w.handshake_timeout,
            DEFAULT_HANDSHAKE_TIMEOUT,
        )?,
        ping_interval: duration(
            "websocket.ping_interval",
            w.ping_interval,
            DEFAULT_PING_INTERVAL,
        )?,
        pong_timeout: duration(
            "websocket.pong_timeout",
            w.pong_timeout,
            DEFAULT_PONG_TIMEOUT,
        )?,
        max_message_size: w.max_message_size.unwrap_or(DEFAULT_MAX_MESSAGE_SIZE),
        read_buffer_size: w.read_buffer_size.unwrap_or(DEFAULT_READ_BUFFER_SIZE),
        max_write_buffer: w.max_write_buffer.unwrap_or(DEFAULT_MAX_WRITE_BUFFER),
        ping_skip_threshold: w.ping_skip_threshold.unwrap_or(DEFAULT_PING_SKIP_THRESHOLD),
    };
    for (key, value) in [
        ("websocket.handshake_timeout", websocket.handshake_timeout),
        ("websocket.ping_interval", websocket.ping_interval),
        ("websocket.pong_timeout", websocket.pong_timeout),
    ] {
        if value < Duration::from_millis(50) {
            return Err(invalid(key, format!("{value:?} is shorter than 50ms")));
        }
    }
    if !(1024..=16 * 1024 * 1024).contains(&websocket.max_message_size) {
        return Err(invalid(
            "websocket.max_message_size",
            format!(
                "{} is outside 1024..=16777216 bytes",
                websocket.max_message_size
            ),
        ));
    }
    if !(256..=64 * 1024).contains(&websocket.read_buffer_size) {
        return Err(invalid(
            "websocket.read_buffer_size",
            format!(
                "{} is outside 256..=65536 bytes",
                websocket.read_buffer_size
            ),
        ));
    }
    // A write buffer smaller than one maximal message could never send a large command.
    if websocket.max_write_buffer < websocket.max_message_size + 16 {
        return Err(invalid(
            "websocket.max_write_buffer",
            format!(
                "{} must be larger than websocket.max_message_size ({}) plus a frame header",
                websocket.max_write_buffer, websocket.max_message_size
            ),
        ));
    }
    if websocket.ping_skip_threshold >= websocket.max_write_buffer {
        return Err(invalid(
            "websocket.ping_skip_threshold",
            format!(
                "{} must be below websocket.max_write_buffer ({})",
                websocket.ping_skip_threshold, websocket.max_write_buffer
            ),
        ));
    }

    let p = raw.processor;
    let processor = ProcessorConfig {
        threads: count("processor.threads", p.threads, cores())?,
        queue_capacity: NonZeroUsize::new(p.queue_capacity.unwrap_or(DEFAULT_QUEUE_CAPACITY))
            .ok_or_else(|| invalid("processor.queue_capacity", "must be > 0".into()))?,
    };

    let heartbeat_interval = duration(
        "ocpp.heartbeat_interval",
        raw.ocpp.heartbeat_interval,
        DEFAULT_HEARTBEAT_INTERVAL,
    )?;
    if heartbeat_interval.subsec_nanos() != 0 || heartbeat_interval.is_zero() {
        return Err(invalid(
            "ocpp.heartbeat_interval",
            format!("{heartbeat_interval:?} must be a whole, non-zero number of seconds"),
        ));
    }

    let message_timeout = duration(
        "ocpp.message_timeout",
        raw.ocpp.message_timeout,
        DEFAULT_MESSAGE_TIMEOUT,
    )?;
    if message_timeout < Duration::from_millis(50) {
        return Err(invalid(
            "ocpp.message_timeout",
            format!("{message_timeout:?} is shorter than 50ms"),
        ));
    }
    let max_queued_calls = raw
        .ocpp
        .max_queued_calls
        .unwrap_or(DEFAULT_MAX_QUEUED_CALLS);
    if max_queued_calls > 1024 {
        return Err(invalid(
            "ocpp.max_queued_calls",
            format!("{max_queued_calls} is more than 1024"),
        ));
    }
    // "" means "none" for the optional files.
    let file = |value: Option<String>| value.filter(|v| !v.is_empty()).map(PathBuf::from);
    let allowed_charge_points = file(raw.ocpp.allowed_charge_points);
    let refuse_unknown_at_handshake = raw.ocpp.refuse_unknown_at_handshake.unwrap_or(false);
    if refuse_unknown_at_handshake && allowed_charge_points.is_none() {
        return Err(invalid(
            "ocpp.refuse_unknown_at_handshake",
            "needs ocpp.allowed_charge_points (a file of identities)".into(),
        ));
    }
    let ocpp = OcppConfig {
        heartbeat_interval,
        message_timeout,
        max_queued_calls,
        boot_status: raw.ocpp.boot_status.unwrap_or(DEFAULT_BOOT_STATUS),
        allowed_charge_points,
        refuse_unknown_at_handshake,
        id_tags: file(raw.ocpp.id_tags),
        data_transfer_status: raw
            .ocpp
            .data_transfer_status
            .unwrap_or(DEFAULT_DATA_TRANSFER_STATUS),
        transaction_id_file: file(
            raw.ocpp
                .transaction_id_file
                .or_else(|| Some(DEFAULT_TRANSACTION_ID_FILE.into())),
        ),
    };

    let a = raw.admin;
    let admin_listen = a.listen.unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.to_owned());
    let admin = AdminConfig {
        listen: match admin_listen.as_str() {
            "" => None,
            text => Some(text.parse().map_err(|_| {
                invalid(
                    "admin.listen",
                    format!(
                        "{text:?} is not an address like \"127.0.0.1:9090\" (or \"\" for none)"
                    ),
                )
            })?),
        },
        token: a.token.filter(|t| !t.is_empty()),
        stuck_after: duration("admin.stuck_after", a.stuck_after, DEFAULT_STUCK_AFTER)?,
    };
    if admin.stuck_after < Duration::from_millis(200) {
        return Err(invalid(
            "admin.stuck_after",
            format!("{:?} is shorter than 200ms", admin.stuck_after),
        ));
    }
    if let Some(token) = &admin.token {
        check_token(token).map_err(|reason| invalid("admin.token", reason))?;
    }

    let e = raw.events;
    let fsync_interval = duration(
        "events.fsync_interval",
        e.fsync_interval,
        DEFAULT_FSYNC_INTERVAL,
    )?;
    let fsync = match e.fsync.as_deref().unwrap_or(DEFAULT_FSYNC) {
        "never" => Fsync::Never,
        "interval" => Fsync::Interval(fsync_interval),
        "always" => Fsync::Always,
        other => {
            return Err(invalid(
                "events.fsync",
                format!("{other:?} is not one of \"never\", \"interval\", \"always\""),
            ));
        }
    };
    let events = EventsConfig {
        sink: e.sink.unwrap_or(DEFAULT_EVENTS_SINK),
        path: PathBuf::from(e.path.unwrap_or_else(|| DEFAULT_EVENTS_PATH.to_owned())),
        max_file_bytes: e.max_file_bytes.unwrap_or(DEFAULT_MAX_FILE_BYTES),
        max_files: e.max_files.unwrap_or(DEFAULT_MAX_FILES),
        fsync,
        ack_after_write: e.ack_after_write.unwrap_or(DEFAULT_ACK_AFTER_WRITE),
        queue_capacity: e.queue_capacity.unwrap_or(DEFAULT_EVENTS_QUEUE_CAPACITY),
    };
    if events.sink == Sink::Journal && events.path.as_os_str().is_empty() {
        return Err(invalid("events.path", "must name a file".into()));
    }
    if events.max_file_bytes < 4096 {
        return Err(invalid(
            "events.max_file_bytes",
            format!("{} is less than 4096 bytes", events.max_file_bytes),
        ));
    }
    if !(1..=1000).contains(&events.max_files) {
        return Err(invalid(
            "events.max_files",
            format!("{} is outside 1..=1000", events.max_files),
        ));
    }
    // The channel allocates every slot up front.
    if !(1..=1 << 20).contains(&events.queue_capacity) {
        return Err(invalid(
            "events.queue_capacity",
            format!("{} is outside 1..=1048576", events.queue_capacity),
        ));
    }
    Ok(Config {
        server,
        websocket,
        processor,
        ocpp,
        admin,
        events,
    })
}

fn check_token(token: &str) -> Result<(), String> {
    if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be at least 16 printable ASCII characters without spaces".into());
    }
    Ok(())
}

impl Config {
    /// Takes the admin token from the environment ([`ADMIN_TOKEN_ENV`]) when the file sets
    /// none, so it need not sit in a file.
    pub fn with_admin_token(mut self, from_env: Option<String>) -> Result<Config, ConfigError> {
        if self.admin.token.is_none()
            && let Some(token) = from_env.filter(|t| !t.is_empty())
        {
            check_token(&token).map_err(|reason| ConfigError::Invalid {
                path: PathBuf::from(ADMIN_TOKEN_ENV),
                key: "admin.token",
                reason,
            })?;
            self.admin.token = Some(token);
        }
        Ok(self)
    }
}

/// The kernel's host name, for `server.node_id`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "ocpp-gateway".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let config = parse("").expect("empty config is valid");
        assert_eq!(config, Config::default());
        assert_eq!(config.websocket.ping_interval, DEFAULT_PING_INTERVAL);
        assert_eq!(config.server.listen, DEFAULT_LISTEN.parse().unwrap());
    }

    #[test]
    fn unknown_key_names_the_key_and_file() {
        let err = parse("[server]\nlisten = \"127.0.0.1:1\"\nbogus_key = 1\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("test.toml") && text.contains("bogus_key"),
            "{text}"
        );
    }

    #[test]
    fn unknown_section_is_rejected() {
        let text = parse("[sever]\nlisten = \"x\"\n").unwrap_err().to_string();
        assert!(text.contains("sever"), "{text}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            ("[server]\nlisten = \"nowhere\"", "server.listen"),
            (
                "[websocket]\nping_interval = \"often\"",
                "websocket.ping_interval",
            ),
            (
                "[websocket]\npong_timeout = \"1ms\"",
                "websocket.pong_timeout",
            ),
            (
                "[websocket]\npath_prefix = \"ocpp\"",
                "websocket.path_prefix",
            ),
            (
                "[websocket]\nmax_message_size = 10",
                "websocket.max_message_size",
            ),
            (
                "[websocket]\nread_buffer_size = 1048576",
                "websocket.read_buffer_size",
            ),
            (
                "[websocket]\nmax_write_buffer = 2000",
                "websocket.max_write_buffer",
            ),
            (
                "[websocket]\nping_skip_threshold = 99999999",
                "websocket.ping_skip_threshold",
            ),
            ("[server]\ndrain_rate = 0", "server.drain_rate"),
            (
                "[processor]\nqueue_capacity = 0",
                "processor.queue_capacity",
            ),
            ("[processor]\nthreads = 100000", "processor.threads"),
            (
                "[ocpp]\nheartbeat_interval = \"1500ms\"",
                "ocpp.heartbeat_interval",
            ),
            ("[admin]\nlisten = \"everywhere\"", "admin.listen"),
            ("[admin]\ntoken = \"short\"", "admin.token"),
            ("[admin]\nstuck_after = \"1ms\"", "admin.stuck_after"),
            ("[events]\nfsync = \"sometimes\"", "events.fsync"),
            ("[events]\nmax_file_bytes = 10", "events.max_file_bytes"),
            ("[events]\nmax_files = 0", "events.max_files"),
            ("[events]\nqueue_capacity = 0", "events.queue_capacity"),
        ] {
            let text = parse(toml).unwrap_err().to_string();
            assert!(text.contains(key), "{toml:?} gave {text}");
        }
    }

    #[test]
    fn wrong_type_is_a_parse_error_naming_the_key() {
        let text = parse("[server]\nmax_connections = \"many\"")
            .unwrap_err()
            .to_string();
        assert!(text.contains("max_connections"), "{text}");
    }

    #[test]
    fn zero_workers_means_one_per_core() {
        let config = parse("[server]\nworkers = 0\n[processor]\nthreads = 0").unwrap();
        assert_eq!(config.server.workers.get(), cores());
        assert_eq!(config.processor.threads.get(), cores());
    }

    #[test]
    fn prefix_trailing_slash_is_trimmed_and_root_is_allowed() {
        assert_eq!(
            parse("[websocket]\npath_prefix = \"/ocpp/\"")
                .unwrap()
                .websocket
                .path_prefix,
            "/ocpp"
        );
        assert_eq!(
            parse("[websocket]\npath_prefix = \"/\"")
                .unwrap()
                .websocket
                .path_prefix,
            ""
        );
    }

    #[test]
    fn shipped_config_parses_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
        let shipped = Config::load(&path).expect("the shipped config.toml is valid");
        assert_eq!(
            shipped,
            Config::default(),
            "config.toml and the DEFAULT_ constants disagree"
        );
    }
}
