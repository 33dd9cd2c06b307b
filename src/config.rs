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
    Ok(Config {
        server,
        websocket,
        processor,
        ocpp,
    })
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
