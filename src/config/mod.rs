//! Configuration: `config.toml` is read into raw serde structs ([`raw`], `deny_unknown_fields`,
//! every key optional) and then validated ([`validate`], one validator per section) into
//! [`Config`], whose fields are ready to use (`Duration`, `NonZero*`, resolved core counts).
//! Every default is a named constant here, and the shipped `config.toml` documents the same
//! values; a test keeps the two in step.
//!
//! Errors name the file and the key, because an operator reading a start-up failure on a host
//! with a million charge points waiting should not have to guess.

mod raw;
mod validate;

use std::net::{IpAddr, SocketAddr};
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::types::IdentityRule;
use crate::types::{Profile, Protocols};
use ocpp::v16::{DataTransferStatus, RegistrationStatus};
use raw::RawConfig;
use validate::{check_token, validate};

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_PIN_CORES: bool = true;
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
/// Connections still upgrading (TLS handshake, upgrade, authentication) a loop serves per turn.
pub const DEFAULT_HANDSHAKES_PER_TURN: u32 = 16;
pub const DEFAULT_DRAIN_RATE: u32 = 10_000;
pub const DEFAULT_LISTEN_BACKLOG: u32 = 4096;
pub const DEFAULT_SOCKET_SEND_BUFFER: usize = 0;
pub const DEFAULT_PROXY_PROTOCOL: bool = false;
pub const DEFAULT_TLS_OFFLOAD: bool = false;
/// Both versions, the newest first: a station offering both speaks 2.0.1.
pub const DEFAULT_PROTOCOLS: Protocols = Protocols::ALL;

pub const DEFAULT_SECURITY_PROFILE: Profile = Profile::Unsecured;
pub const DEFAULT_CHECK_SERIAL_NUMBER: bool = false;
/// TLS session resumption with stateless tickets.
pub const DEFAULT_TLS_RESUMPTION: bool = true;
/// How long a session ticket is good (and how often in-memory ticket keys are replaced).
pub const DEFAULT_TLS_TICKET_LIFETIME: Duration = Duration::from_secs(12 * 3600);
pub const DEFAULT_CERTIFICATE_VALIDITY: Duration = Duration::from_secs(365 * 86_400);
pub const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);
pub const DEFAULT_CERTIFICATE_SCAN: Duration = Duration::from_secs(60);
/// Certificates the gateway's CA signs per second, the whole gateway (a second's worth at once).
pub const DEFAULT_SIGNINGS_PER_SECOND: u32 = 20;
pub const DEFAULT_MIN_PROFILE: Profile = Profile::Unsecured;
pub const DEFAULT_LOCKOUT_FAILURES: u32 = 10;
pub const DEFAULT_LOCKOUT_WINDOW: Duration = Duration::from_secs(60);
pub const DEFAULT_LOCKOUT_TIME: Duration = Duration::from_secs(10);
pub const DEFAULT_LOCKOUT_MAX_TIME: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_LOCKOUT_TABLE: usize = 65_536;
pub const DEFAULT_JOURNALED_REFUSALS: u32 = 20;

pub const DEFAULT_PATH_PREFIX: &str = "/ocpp";
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024;
pub const DEFAULT_MAX_WRITE_BUFFER: usize = 256 * 1024;
pub const DEFAULT_PING_SKIP_THRESHOLD: usize = 16 * 1024;
pub const DEFAULT_PARTIAL_MESSAGE_BUDGET: usize = 32 * 1024 * 1024;
pub const DEFAULT_PARTIAL_MESSAGE_TIMEOUT: Duration = Duration::from_secs(60);

pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;
pub const DEFAULT_QUEUE_BYTES: usize = 16 * 1024 * 1024;

pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(300);
pub const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_QUEUED_CALLS: usize = 16;
pub const DEFAULT_MAX_PIPELINED_CALLS: u16 = 4;
pub const DEFAULT_MAX_CALLS_PER_SECOND: u32 = 20;
pub const DEFAULT_CALL_BURST: u32 = 40;
pub const DEFAULT_BOOT_STATUS: RegistrationStatus = RegistrationStatus::Accepted;
pub const DEFAULT_IDENTITY_CHARSET: IdentityRule = IdentityRule::IdentifierString;
pub const DEFAULT_DATA_TRANSFER_STATUS: DataTransferStatus = DataTransferStatus::UnknownVendorId;
pub const DEFAULT_TRANSACTION_ID_FILE: &str = "ocpp-gateway.transaction-id";
pub const DEFAULT_STATE_FILE: &str = "ocpp-gateway.state";
pub const DEFAULT_CLUSTER_PREFIX: &str = "ocpp:";
pub const DEFAULT_NODE_TTL: Duration = Duration::from_secs(10);
pub const DEFAULT_CLUSTER_BUFFER: usize = 100_000;
/// Shares of the transaction id range (each node owns one): 134 million ids per node.
pub const DEFAULT_ID_SLOTS: u32 = 16;
/// The most shares `cluster.id_slots` may ask for (2 million ids per node).
pub const MAX_ID_SLOTS: u32 = 1024;
/// Entries `{prefix}events` keeps (approximately).
pub const DEFAULT_EVENTS_MAXLEN: u64 = 1_000_000;
/// `cluster.events_ack_timeout`: how long a billing answer waits for Redis to take its line.
pub const DEFAULT_EVENTS_ACK_TIMEOUT: Duration = Duration::from_secs(10);

pub const DEFAULT_KAFKA_EVENTS_TOPIC: &str = "ocpp-events-up";
pub const DEFAULT_KAFKA_COMMANDS_TOPIC: &str = "commands-down";
pub const DEFAULT_KAFKA_ACK_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_KAFKA_DEGRADED_AFTER: Duration = Duration::from_secs(2);
pub const DEFAULT_KAFKA_COMMAND_MAX_AGE: Duration = Duration::from_secs(300);
pub const DEFAULT_KAFKA_BUFFER_MESSAGES: u32 = 100_000;
pub const DEFAULT_KAFKA_BUFFER_BYTES: u64 = 64 * 1024 * 1024;
pub const DEFAULT_KAFKA_LINGER: Duration = Duration::from_millis(5);

pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
pub const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(10);
/// Where `admin.token` may come from instead of the file.
pub const ADMIN_TOKEN_ENV: &str = "OCPP_GATEWAY_ADMIN_TOKEN";

pub const DEFAULT_EVENTS_SINKS: Sinks = Sinks::JOURNAL;
pub const DEFAULT_EVENTS_PATH: &str = "ocpp-gateway.events.jsonl";
pub const DEFAULT_MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
pub const DEFAULT_MAX_FILES: usize = 8;
pub const DEFAULT_FSYNC: &str = "interval";
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_ACK_AFTER_WRITE: bool = true;
pub const DEFAULT_EVENTS_QUEUE_CAPACITY: usize = 8192;
pub const DEFAULT_MIN_RETENTION: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_CHARGE_POINT_RATE: u64 = 4096;
pub const DEFAULT_CHARGE_POINT_BURST: u64 = 256 * 1024;

/// The longest charge point identity accepted in the URL, in characters (its rule lives with
/// the identity, in `types`).
pub use crate::types::MAX_CHARGE_POINT_ID_LEN;

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
    pub security: SecurityConfig,
    /// Listeners besides `server.listen` (`[[listeners]]`).
    pub extra_listeners: Vec<ListenerConfig>,
    /// `[cluster]` with a `redis_url`: many nodes sharing Redis (None: one island).
    pub cluster: Option<ClusterConfig>,
    /// `[kafka]` with `brokers` (None: no Kafka).
    pub kafka: Option<KafkaConfig>,
}

/// `[cluster]`: the Redis the nodes share.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// `redis://host:port/db` (or `rediss://`, `redis+unix://`).
    pub redis_url: String,
    /// Put before every key and channel name.
    pub prefix: String,
    /// A node's liveness key lives this long; it is refreshed every third of it.
    pub node_ttl: Duration,
    /// Registry operations kept while Redis is unreachable; with `events`, also the event
    /// lines the stream keeps (each buffer its own, of this many).
    pub buffer: usize,
    /// Every journal line also on the stream `{prefix}events` (a sink of its own).
    pub events: bool,
    /// `MAXLEN ~` of that stream.
    pub events_maxlen: u64,
    /// A billing answer held for that stream longer than this is refused (InternalError).
    pub events_ack_timeout: Duration,
    /// This node's share of the transaction ids (`cluster.id_slot`); None: claimed through
    /// Redis on the first start, then kept in `ocpp.transaction_id_file`.
    pub id_slot: Option<u32>,
    /// Shares the id range is cut into (`cluster.id_slots`): at most this many nodes.
    pub id_slots: u32,
}

/// One address charge points connect to, and how they must prove who they are there.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub listen: SocketAddr,
    pub profile: Profile,
    /// A PROXY protocol header (v1 or v2) must precede everything else.
    pub proxy_protocol: bool,
    /// The balancer in front ends TLS (`tls_offload`): the listener speaks plain TCP and takes
    /// the profile's TLS proof from the PROXY v2 header's SSL TLV.
    pub tls_offload: bool,
    /// The OCPP versions it speaks (`ocpp.protocols`, or a narrower list of its own).
    pub protocols: Protocols,
}

impl ListenerConfig {
    /// The gateway itself does TLS on it.
    pub fn terminates_tls(&self) -> bool {
        self.profile.tls() && !self.tls_offload
    }
}

/// An address block (`10.0.0.0/8`, `::1/128`), as `server.trusted_proxies` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Network {
    /// Parses `a.b.c.d/n`, `x::y/n` or a bare address (a block of one).
    pub fn parse(text: &str) -> Option<Network> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 3 => {
                p.parse().ok().filter(|n| *n <= max)?
            }
            Some(_) => return None,
        };
        // `::ffff:a.b.c.d/n` is the IPv4 block it maps (peers are compared as IPv4).
        if let IpAddr::V6(v6) = addr
            && let Some(v4) = v6.to_ipv4_mapped()
            && prefix >= 96
        {
            return Some(Network {
                addr: IpAddr::V4(v4),
                prefix: prefix - 96,
            });
        }
        Some(Network { addr, prefix })
    }

    /// Whether `ip` is inside the block (an IPv4 address mapped into IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SecurityConfig {
    /// The profile of `server.listen`.
    pub profile: Profile,
    /// Basic-auth credentials file (profiles 1 and 2).
    pub credentials: Option<PathBuf>,
    /// Certificate chains and keys, pairwise (profiles 2 and 3).
    pub tls_certs: Vec<CertFiles>,
    /// CA certificates for client certificates (profile 3).
    pub client_ca: Option<PathBuf>,
    /// CRLs client certificates are checked against (profile 3).
    pub client_crl: Vec<PathBuf>,
    /// Profile 3: a BootNotification whose serial number is not the certificate CN is Rejected.
    pub check_serial_number: bool,
    /// TLS session resumption (None: every reconnect is a full handshake).
    pub tickets: Option<TicketConfig>,
    /// No identity is served on a listener below this profile (unless its credentials line
    /// says otherwise).
    pub min_profile: Profile,
    /// The brake on guessing, and how many refusals per address are journaled.
    pub lockout: LockoutRule,
    /// Who signs charge points' certificates (SignCertificate).
    pub signing: Signing,
    /// Client certificates that expire within this are counted as due for renewal.
    pub renew_before: Duration,
    /// Renewals the gateway asks for itself per scan, across its processors (0: none).
    pub renewals_per_scan: u32,
    /// SignCertificate requests the gateway's CA takes per second (a second's worth at once);
    /// beyond that they are Rejected, to be sent again: CSR checks and signatures (an RSA
    /// sub-CA's cost far more than ECDSA's) never crowd out the processors' other work.
    pub signings_per_second: u32,
    /// How often the certificates coming due are recounted (and renewals asked).
    pub certificate_scan: Duration,
}

/// Who answers a charge point's SignCertificate (`security.certificate_signing`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Signing {
    /// Nobody: Rejected.
    #[default]
    Off,
    /// The gateway, with the operator's sub-CA; certificates good for `validity`.
    Ca {
        cert: PathBuf,
        key: PathBuf,
        validity: Duration,
    },
    /// The backend: the checked request is published (`certificate.sign_requested`), the chain
    /// comes back as a CertificateSigned call through the API or `commands-down`.
    Backend,
}

/// Stateless session tickets (`security.tls_resumption`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketConfig {
    /// The key file every node shares (None: keys made in memory, replaced every lifetime).
    pub keys: Option<PathBuf>,
    /// How long a ticket is good.
    pub lifetime: Duration,
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

/// A name `events.sink` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sink {
    /// The JSON-lines journal at `events.path`.
    Journal,
    /// Integration events on `kafka.events_topic`.
    Kafka,
    /// Nowhere.
    None,
}

/// Where events go (`events.sink`: one name or a list of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sinks {
    pub journal: bool,
    pub kafka: bool,
}

impl Sinks {
    pub const NONE: Sinks = Sinks {
        journal: false,
        kafka: false,
    };
    pub const JOURNAL: Sinks = Sinks {
        journal: true,
        kafka: false,
    };

    pub fn any(self) -> bool {
        self.journal || self.kafka
    }
}

/// `[kafka]` with `brokers`: integration events to a topic, commands from another.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaConfig {
    /// librdkafka's `bootstrap.servers`.
    pub brokers: String,
    pub events_topic: String,
    pub commands_topic: String,
    /// Run the consumer of `commands_topic`.
    pub consume_commands: bool,
    /// The partitions of `commands_topic` this gateway consumes (empty: derived from
    /// `server.node_id`, see `kafka::routing`).
    pub command_partitions: Vec<i32>,
    /// The consumer group offsets are committed under.
    pub group_id: String,
    /// A billing answer held for its event becomes CALLERROR InternalError after this long.
    pub ack_timeout: Duration,
    /// `/health` is degraded while a billing answer has waited this long for the broker.
    pub degraded_after: Duration,
    /// A command record written longer ago than this is answered `Expired`, not run (0: any
    /// age runs).
    pub command_max_age: Duration,
    /// Every OCPP frame both ways as an `ocpp.frame` event too.
    pub raw_frames: bool,
    /// librdkafka's buffer: messages and bytes waiting for the broker, before the sink waits.
    pub buffer_messages: u32,
    pub buffer_bytes: u64,
    /// librdkafka's `linger.ms`.
    pub linger: Duration,
    /// Further librdkafka properties, passed as they are (`[kafka.properties]`).
    pub properties: Vec<(String, String)>,
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
    pub sinks: Sinks,
    pub path: PathBuf,
    pub max_file_bytes: u64,
    /// Files kept in all, the current one included.
    pub max_files: usize,
    pub fsync: Fsync,
    /// StopTransaction and MeterValues are answered only once their line is written.
    pub ack_after_write: bool,
    pub queue_capacity: usize,
    /// Rotation never deletes a journal file written to within this long (0: `max_files`
    /// alone decides).
    pub min_retention: Duration,
    /// Journal bytes per second each charge point may produce (0: no limit) ...
    pub charge_point_rate: u64,
    /// ... and at once after a quiet period.
    pub charge_point_burst: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Event loops, one per core by default.
    pub workers: NonZeroUsize,
    pub pin_cores: bool,
    /// Across all loops; over it a handshake gets HTTP 503.
    pub max_connections: usize,
    /// Upgrading connections a loop serves per turn; the rest wait for its next turn, so a
    /// reconnect storm's handshakes never delay the connected charge points' answers for long.
    pub handshakes_per_turn: u32,
    /// Connections closed per second during a graceful shutdown, across all loops.
    pub drain_rate: NonZeroU32,
    pub listen_backlog: u32,
    /// SO_SNDBUF for accepted sockets; `None` leaves the kernel's autotuning alone.
    pub socket_send_buffer: Option<NonZeroUsize>,
    /// This gateway's name in journal lines (the host name unless set).
    pub node_id: String,
    /// `server.listen` expects a PROXY protocol header.
    pub proxy_protocol: bool,
    /// `server.listen` takes TLS done by the balancer in front (`server.tls_offload`).
    pub tls_offload: bool,
    /// Who may send a PROXY header: a connection to a `proxy_protocol` listener from any other
    /// address is closed unread. Empty: anyone (refused for `tls_offload` listeners).
    pub trusted_proxies: Vec<Network>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebSocketConfig {
    /// `""` (root) or `/segment...` without a trailing slash.
    pub path_prefix: String,
    pub handshake_timeout: Duration,
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    pub max_message_size: usize,
    pub max_write_buffer: usize,
    pub ping_skip_threshold: usize,
    /// Bytes all of a loop's connections may hold for unfinished messages together.
    pub partial_message_budget: usize,
    /// The longest a connection may hold an unfinished message (or wait for the budget).
    pub partial_message_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProcessorConfig {
    pub threads: NonZeroUsize,
    /// Messages waiting per processor before loops pause the connections that send them.
    pub queue_capacity: NonZeroUsize,
    /// Bytes of message text waiting per processor, likewise.
    pub queue_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OcppConfig {
    /// The OCPP versions spoken, in order of preference (subprotocol names).
    pub protocols: Protocols,
    /// Sent as `interval` in BootNotification answers (whole seconds).
    pub heartbeat_interval: Duration,
    /// How long a charge point has to answer a CALL of ours.
    pub message_timeout: Duration,
    /// Calls waiting per charge point behind the one in flight; more are rejected.
    pub max_queued_calls: usize,
    /// CALLs of one charge point waiting for their answers before its connection is not read
    /// any further (OCPP-J allows one; a few more for charge points that pipeline).
    pub max_pipelined_calls: u16,
    /// CALLs per second a charge point may send (0: no limit); over it, its connection is
    /// read more slowly.
    pub max_calls_per_second: u32,
    /// CALLs a charge point may send at once after a quiet period.
    pub call_burst: u32,
    /// BootNotification answer for identities the allow-list (if any) admits.
    pub boot_status: RegistrationStatus,
    /// File of identities allowed to boot; others are Rejected (None: everyone).
    pub allowed_charge_points: Option<PathBuf>,
    /// With an allow-list: refuse unknown identities at the handshake with HTTP 404.
    pub refuse_unknown_at_handshake: bool,
    /// Which characters an identity may have: checked at the upgrade (404 otherwise), by the
    /// operator API (400) and in the credentials file.
    pub identity_charset: IdentityRule,
    /// TOML file of authorized idTags (None: every idTag is Accepted).
    pub id_tags: Option<PathBuf>,
    /// The status answered to a DataTransfer from a charge point.
    pub data_transfer_status: DataTransferStatus,
    /// Where the transaction id counter survives restarts (None: memory only).
    pub transaction_id_file: Option<PathBuf>,
    /// Where registrations, connector statuses and open transactions survive restarts
    /// (None: memory only).
    pub state_file: Option<PathBuf>,
    /// Disconnected, accepted charge points remembered (in memory and the state file) before
    /// those seen longest ago are forgotten; 0: `server.max_connections` (with a slack per
    /// processor, as identities do not hash evenly).
    pub max_disconnected: usize,
}

impl OcppConfig {
    /// The longest a call of the central system can take: its own timeout behind a full queue
    /// of calls ahead of it, each timing out.
    pub fn longest_call(&self) -> Duration {
        let queued = u32::try_from(self.max_queued_calls + 1).unwrap_or(u32::MAX);
        self.message_timeout.saturating_mul(queued)
    }
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

impl Config {
    /// Every listener: `server.listen` (with `security.profile` and `server.proxy_protocol`)
    /// first, then `[[listeners]]` in file order.
    pub fn listeners(&self) -> Vec<ListenerConfig> {
        let main = ListenerConfig {
            listen: self.server.listen,
            profile: self.security.profile,
            proxy_protocol: self.server.proxy_protocol,
            tls_offload: self.server.tls_offload,
            protocols: self.ocpp.protocols,
        };
        std::iter::once(main)
            .chain(self.extra_listeners.iter().cloned())
            .collect()
    }

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

/// A certificate chain and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How the brake is set (`security.lockout_*`, `security.journaled_refusals`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutRule {
    /// Refusals within `window` that lock the address out (0: never locked).
    pub failures: u32,
    pub window: Duration,
    /// The first lockout; each further one is twice as long ...
    pub first: Duration,
    /// ... up to this.
    pub max: Duration,
    /// Addresses remembered at most.
    pub table: usize,
    /// Refusals journaled per address and window (the rest are counted only).
    pub journaled: u32,
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
    fn cluster_id_shares_are_checked() {
        let cluster = "[cluster]\nredis_url = \"redis://127.0.0.1/\"\n";
        let config = parse(cluster).expect("a cluster config");
        let shares = config.cluster.expect("cluster mode");
        assert_eq!((shares.id_slot, shares.id_slots), (None, DEFAULT_ID_SLOTS));
        let config = parse(&format!("{cluster}id_slot = 3\nid_slots = 4\n")).unwrap();
        assert_eq!(config.cluster.map(|c| c.id_slot), Some(Some(3)));
        for (extra, key) in [
            ("id_slot = 4\nid_slots = 4\n", "cluster.id_slot"),
            ("id_slot = -2\n", "cluster.id_slot"),
            ("id_slots = 0\n", "cluster.id_slots"),
            ("id_slots = 1025\n", "cluster.id_slots"),
        ] {
            let text = parse(&format!("{cluster}{extra}")).unwrap_err().to_string();
            assert!(text.contains(key), "{extra}: {text}");
        }
        let memory_only = format!("[ocpp]\ntransaction_id_file = \"\"\n{cluster}");
        let text = parse(&memory_only).unwrap_err().to_string();
        assert!(text.contains("ocpp.transaction_id_file"), "{text}");
    }

    #[test]
    fn protocols_are_listed_narrowed_per_listener_and_checked() {
        assert_eq!(parse("").unwrap().ocpp.protocols, Protocols::ALL);
        let both = "[ocpp]\nprotocols = [\"ocpp2.0.1\", \"ocpp1.6\"]\n";
        let config = parse(both).expect("both versions");
        assert_eq!(config.ocpp.protocols, Protocols::BOTH);
        assert_eq!(config.listeners()[0].protocols, Protocols::BOTH);
        let narrowed = format!(
            "{both}[[listeners]]\nlisten = \"127.0.0.1:9001\"\nprotocols = [\"ocpp2.0.1\"]\n"
        );
        let config = parse(&narrowed).expect("a narrowed listener");
        assert_eq!(
            config.listeners()[1].protocols.versions(),
            [crate::types::Version::V201]
        );
        for (text, key) in [
            ("[ocpp]\nprotocols = [\"ocpp1.5\"]\n", "ocpp.protocols"),
            ("[ocpp]\nprotocols = []\n", "ocpp.protocols"),
            (
                "[ocpp]\nprotocols = [\"ocpp1.6\", \"ocpp1.6\"]\n",
                "ocpp.protocols",
            ),
            (
                "[ocpp]\nprotocols = [\"ocpp1.6\"]\n[[listeners]]\nlisten = \"127.0.0.1:9001\"\nprotocols = [\"ocpp2.0.1\"]\n",
                "listeners.protocols",
            ),
        ] {
            let error = parse(text).expect_err(text).to_string();
            assert!(error.contains(key), "{text}: {error}");
        }
    }

    #[test]
    fn backend_signing_needs_kafka_to_ask_the_backend() {
        let backend = "[security]\ncertificate_signing = \"backend\"\n";
        let err = parse(backend).unwrap_err().to_string();
        assert!(err.contains("security.certificate_signing"), "{err}");
        let with_kafka = format!(
            "{backend}[events]\nsink = [\"journal\", \"kafka\"]\n\
             [kafka]\nbrokers = \"127.0.0.1:9092\"\n"
        );
        let config = parse(&with_kafka).expect("backend signing with Kafka");
        assert_eq!(config.security.signing, Signing::Backend);
    }

    #[test]
    fn renewals_must_start_within_the_validity_of_what_the_ca_signs() {
        // Parsing names the files; nothing is read.
        let ca = "[security]\ncertificate_signing = \"ca\"\nca_cert = \"ca.pem\"\n\
                  ca_key = \"ca.key\"\nrenewals_per_scan = 10\n";
        let config = parse(ca).expect("the defaults: 30 days before a year");
        assert_eq!(config.security.renew_before, DEFAULT_RENEW_BEFORE);
        for too_long in [
            "renew_before = \"365d\"",
            "renew_before = \"400d\"",
            "certificate_validity = \"14d\"", // the default renew_before is 30 days
        ] {
            let err = parse(&format!("{ca}{too_long}\n")).unwrap_err().to_string();
            assert!(err.contains("security.renew_before"), "{err}");
        }
        let short = format!("{ca}certificate_validity = \"20d\"\nrenew_before = \"7d\"\n");
        assert!(parse(&short).is_ok());
        // Nothing asked (renewals only counted), or certificates from elsewhere: no such rule.
        let counted_only = ca.replace("renewals_per_scan = 10", "renewals_per_scan = 0");
        assert!(parse(&format!("{counted_only}certificate_validity = \"14d\"\n")).is_ok());
        assert!(parse("[security]\nrenew_before = \"400d\"\nrenewals_per_scan = 10\n").is_ok());
    }

    #[test]
    fn tls_offload_needs_a_proxy_header_from_a_trusted_balancer() {
        let offload = "[server]\nproxy_protocol = true\ntls_offload = true\n\
                       trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n\
                       [security]\nprofile = 3\n";
        // Profile 3 without a certificate or client CA of its own: the balancer has them.
        let config = parse(offload).expect("an offloaded profile 3 listener");
        let main = &config.listeners()[0];
        assert!(main.tls_offload && !main.terminates_tls());
        let trusted = &config.server.trusted_proxies;
        assert!(trusted[0].contains("10.200.3.4".parse().unwrap()));
        assert!(trusted[0].contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!trusted[0].contains("11.0.0.1".parse().unwrap()));
        assert!(trusted[1].contains("::1".parse().unwrap()));
        assert!(!trusted[1].contains("127.0.0.1".parse().unwrap()));
        let mapped = Network::parse("::ffff:10.0.0.5").unwrap();
        assert!(mapped.contains("10.0.0.5".parse().unwrap()), "{mapped:?}");
        assert!(!mapped.contains("10.0.0.6".parse().unwrap()));
        for (text, reason) in [
            (
                offload.replace("trusted_proxies = [\"10.0.0.0/8\", \"::1\"]", ""),
                "trusted_proxies",
            ),
            (
                offload.replace("proxy_protocol = true", ""),
                "proxy_protocol",
            ),
            (
                offload.replace("profile = 3", "profile = 1"),
                "profile 2 or 3",
            ),
            (
                offload.replace("10.0.0.0/8", "10.0.0.0/33"),
                "server.trusted_proxies",
            ),
            (
                offload.replace("10.0.0.0/8", "10.0.0.0/"),
                "server.trusted_proxies",
            ),
            (
                offload.replace("10.0.0.0/8", "example.org"),
                "server.trusted_proxies",
            ),
        ] {
            let error = parse(&text).unwrap_err().to_string();
            assert!(error.contains(reason), "{text}: {error}");
        }
        assert_eq!(
            Network::parse("0.0.0.0/0").map(|n| n.contains("8.8.8.8".parse().unwrap())),
            Some(true)
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
                "[websocket]\npartial_message_budget = 1000",
                "websocket.partial_message_budget",
            ),
            ("[processor]\nqueue_bytes = 10", "processor.queue_bytes"),
            (
                "[ocpp]\nmax_pipelined_calls = 0",
                "ocpp.max_pipelined_calls",
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
            ("[events]\nmin_retention = \"soon\"", "events.min_retention"),
            (
                "[events]\ncharge_point_burst = 10",
                "events.charge_point_burst",
            ),
            (
                "[ocpp]\nmax_calls_per_second = 5000",
                "ocpp.max_calls_per_second",
            ),
            ("[ocpp]\ncall_burst = 0", "ocpp.call_burst"),
            ("[security]\nprofile = 7", "security.profile"),
            (
                "[security]\ntls_ticket_lifetime = \"30s\"",
                "security.tls_ticket_lifetime",
            ),
            (
                "[security]\ntls_ticket_lifetime = \"8days\"",
                "security.tls_ticket_lifetime",
            ),
            ("[security]\nprofile = 1", "security.credentials"),
            (
                "[security]\nprofile = 2\ncredentials = \"c\"",
                "security.tls_cert",
            ),
            (
                "[security]\nprofile = 3\ntls_cert = \"a\"\ntls_key = \"b\"",
                "security.client_ca",
            ),
            (
                "[security]\ntls_cert = [\"a\", \"b\"]\ntls_key = \"k\"",
                "security.tls_key",
            ),
            (
                "[server]\nlisten = \"127.0.0.1:9000\"\n[[listeners]]\nlisten = \"127.0.0.1:9000\"",
                "listeners.listen",
            ),
            ("[[listeners]]\nprofile = 1", "listeners.listen"),
            ("[security]\nmin_profile = 4", "security.min_profile"),
            (
                "[security]\nlockout_window = \"0s\"",
                "security.lockout_window",
            ),
            (
                "[security]\nlockout_time = \"1h\"",
                "security.lockout_max_time",
            ),
            ("[security]\nlockout_table = 1", "security.lockout_table"),
            (
                "[ocpp]\nidentity_charset = \"ascii\"",
                "ocpp.identity_charset",
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
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        assert_eq!(config.server.workers.get(), cores);
        assert_eq!(config.processor.threads.get(), cores);
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
