//! Raw sections -> validated ones, one validator per section. Each error names the file and
//! the key; combinations that cannot work (a write buffer smaller than a message) fail here,
//! at start, not under load.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{
    OneOrManySinks, RawAdmin, RawCluster, RawConfig, RawEvents, RawKafka, RawListener, RawOcpp,
    RawProcessor, RawSecurity, RawServer, RawWebSocket,
};
use super::*;

mod security;

use security::security;

/// Reads keys of one file, naming it in every error.
struct Check<'a> {
    path: &'a Path,
}

impl Check<'_> {
    fn invalid(&self, key: &'static str, reason: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            key,
            reason,
        }
    }

    fn duration(
        &self,
        key: &'static str,
        value: Option<String>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(default),
            Some(text) => humantime::parse_duration(&text).map_err(|e| {
                self.invalid(key, format!("{text:?} is not a duration like \"30s\": {e}"))
            }),
        }
    }

    /// A duration of at least `min`.
    fn duration_min(
        &self,
        key: &'static str,
        value: Option<String>,
        default: Duration,
        min: Duration,
    ) -> Result<Duration, ConfigError> {
        let value = self.duration(key, value, default)?;
        if value < min {
            return Err(self.invalid(key, format!("{value:?} is shorter than {min:?}")));
        }
        Ok(value)
    }

    /// A thread count: 0 (or absent) means one per core; at most 4096.
    fn threads(
        &self,
        key: &'static str,
        value: Option<usize>,
    ) -> Result<NonZeroUsize, ConfigError> {
        match value {
            None | Some(0) => {
                NonZeroUsize::new(cores()).ok_or_else(|| self.invalid(key, "must be > 0".into()))
            }
            Some(n) if n > 4096 => Err(self.invalid(key, format!("{n} is more than 4096"))),
            Some(n) => NonZeroUsize::new(n).ok_or_else(|| self.invalid(key, "must be > 0".into())),
        }
    }

    /// A number within `range`.
    fn within<T: PartialOrd + std::fmt::Display + Copy>(
        &self,
        key: &'static str,
        value: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError> {
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(self.invalid(
                key,
                format!("{value} is outside {}..={}", range.start(), range.end()),
            ))
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// Validates every section of `raw`, read from `path`.
pub(super) fn validate(raw: RawConfig, path: &Path) -> Result<Config, ConfigError> {
    let check = Check { path };
    let websocket = websocket(&check, raw.websocket)?;
    let server = server(&check, raw.server)?;
    let ocpp = ocpp(&check, raw.ocpp)?;
    let extra_listeners = raw
        .listeners
        .into_iter()
        .enumerate()
        .map(|(i, l)| listener(&check, i, l, &ocpp.protocols))
        .collect::<Result<Vec<_>, _>>()?;
    let security = security(&check, raw.security, &server, &extra_listeners)?;
    let events = events(&check, raw.events)?;
    let cluster = cluster(&check, raw.cluster)?;
    let kafka = kafka(&check, raw.kafka, &server.node_id)?;
    if events.sinks.kafka && kafka.is_none() {
        return Err(check.invalid(
            "events.sink",
            "\"kafka\" needs kafka.brokers (\"host:port,...\")".into(),
        ));
    }
    if matches!(security.signing, Signing::Backend) && !events.sinks.kafka {
        return Err(check.invalid(
            "security.certificate_signing",
            "\"backend\" asks the backend through Kafka (certificate.sign_requested): \
             events.sink must name \"kafka\""
                .into(),
        ));
    }
    if cluster.is_some() && ocpp.transaction_id_file.is_none() {
        return Err(check.invalid(
            "ocpp.transaction_id_file",
            "cluster mode needs it (\"\" is memory only): each node counts its own share of \
             the transaction ids there, so none repeats after a restart"
                .into(),
        ));
    }
    Ok(Config {
        server,
        processor: processor(&check, raw.processor)?,
        ocpp,
        admin: admin(&check, raw.admin)?,
        events,
        websocket,
        security,
        extra_listeners,
        cluster,
        kafka,
    })
}

/// A Kafka topic name as the broker accepts it.
fn topic(check: &Check<'_>, key: &'static str, name: String) -> Result<String, ConfigError> {
    let fine = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !fine {
        return Err(check.invalid(
            key,
            format!("{name:?} is not a topic name (1-249 of a-z A-Z 0-9 . _ -)"),
        ));
    }
    Ok(name)
}

fn kafka(
    check: &Check<'_>,
    k: RawKafka,
    node_id: &str,
) -> Result<Option<KafkaConfig>, ConfigError> {
    let Some(brokers) = k.brokers.filter(|b| !b.trim().is_empty()) else {
        return Ok(None);
    };
    let command_partitions = k.command_partitions.unwrap_or_default();
    if let Some(bad) = command_partitions.iter().find(|p| **p < 0) {
        return Err(check.invalid(
            "kafka.command_partitions",
            format!("{bad} is not a partition"),
        ));
    }
    let properties: Vec<(String, String)> = k.properties.unwrap_or_default().into_iter().collect();
    // What the gateway's guarantees rest on cannot be changed through the pass-through table.
    // (librdkafka's aliases included: request.required.acks is acks, delivery.timeout.ms is
    // message.timeout.ms, queue.buffering.max.ms is linger.ms.)
    const OURS: [&str; 15] = [
        "bootstrap.servers",
        "metadata.broker.list",
        "acks",
        "request.required.acks",
        "enable.idempotence",
        "group.id",
        "enable.auto.commit",
        "auto.commit.enable",
        "enable.auto.offset.store",
        "queue.buffering.max.messages",
        "queue.buffering.max.kbytes",
        "message.timeout.ms",
        "delivery.timeout.ms",
        "linger.ms",
        "queue.buffering.max.ms",
    ];
    if let Some((key, _)) = properties
        .iter()
        .find(|(key, _)| OURS.contains(&key.as_str()))
    {
        return Err(check.invalid(
            "kafka.properties",
            format!("{key:?} is set by the gateway (see the kafka keys of config.toml)"),
        ));
    }
    Ok(Some(KafkaConfig {
        brokers,
        events_topic: topic(
            check,
            "kafka.events_topic",
            k.events_topic
                .unwrap_or_else(|| DEFAULT_KAFKA_EVENTS_TOPIC.into()),
        )?,
        commands_topic: topic(
            check,
            "kafka.commands_topic",
            k.commands_topic
                .unwrap_or_else(|| DEFAULT_KAFKA_COMMANDS_TOPIC.into()),
        )?,
        consume_commands: k.consume_commands.unwrap_or(true),
        command_partitions,
        group_id: k
            .group_id
            .filter(|g| !g.is_empty())
            .unwrap_or_else(|| format!("ocpp-gateway-{node_id}")),
        ack_timeout: check.duration_min(
            "kafka.ack_timeout",
            k.ack_timeout,
            DEFAULT_KAFKA_ACK_TIMEOUT,
            Duration::from_millis(100),
        )?,
        degraded_after: check.duration_min(
            "kafka.degraded_after",
            k.degraded_after,
            DEFAULT_KAFKA_DEGRADED_AFTER,
            Duration::from_millis(100),
        )?,
        command_max_age: check.duration(
            "kafka.command_max_age",
            k.command_max_age,
            DEFAULT_KAFKA_COMMAND_MAX_AGE,
        )?,
        raw_frames: k.raw_frames.unwrap_or(false),
        buffer_messages: check.within(
            "kafka.buffer_messages",
            k.buffer_messages.unwrap_or(DEFAULT_KAFKA_BUFFER_MESSAGES),
            1000..=10_000_000,
        )?,
        buffer_bytes: check.within(
            "kafka.buffer_bytes",
            k.buffer_bytes.unwrap_or(DEFAULT_KAFKA_BUFFER_BYTES),
            1 << 20..=1 << 40,
        )?,
        linger: check.duration("kafka.linger", k.linger, DEFAULT_KAFKA_LINGER)?,
        properties,
    }))
}

fn cluster(check: &Check<'_>, c: RawCluster) -> Result<Option<ClusterConfig>, ConfigError> {
    let Some(redis_url) = c.redis_url.filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    if !["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .any(|scheme| redis_url.starts_with(scheme))
    {
        return Err(check.invalid(
            "cluster.redis_url",
            "must start with redis://, rediss://, redis+unix:// or unix://".into(),
        ));
    }
    let id_slots = c.id_slots.unwrap_or(DEFAULT_ID_SLOTS);
    if !(1..=MAX_ID_SLOTS).contains(&id_slots) {
        return Err(check.invalid(
            "cluster.id_slots",
            format!("{id_slots}: must be 1 to {MAX_ID_SLOTS}"),
        ));
    }
    let id_slot = match c.id_slot.unwrap_or(-1) {
        -1 => None,
        slot => Some(
            u32::try_from(slot)
                .ok()
                .filter(|s| *s < id_slots)
                .ok_or_else(|| {
                    check.invalid(
                        "cluster.id_slot",
                        format!(
                            "{slot}: must be 0 to {} (cluster.id_slots - 1), or -1: claimed \
                             through Redis",
                            id_slots - 1
                        ),
                    )
                })?,
        ),
    };
    Ok(Some(ClusterConfig {
        redis_url,
        prefix: c.prefix.unwrap_or_else(|| DEFAULT_CLUSTER_PREFIX.into()),
        node_ttl: check.duration_min(
            "cluster.node_ttl",
            c.node_ttl,
            DEFAULT_NODE_TTL,
            Duration::from_secs(1),
        )?,
        buffer: c.buffer.unwrap_or(DEFAULT_CLUSTER_BUFFER).max(1),
        events: c.events.unwrap_or(false),
        events_maxlen: c.events_maxlen.unwrap_or(DEFAULT_EVENTS_MAXLEN).max(1),
        events_ack_timeout: check.duration_min(
            "cluster.events_ack_timeout",
            c.events_ack_timeout,
            DEFAULT_EVENTS_ACK_TIMEOUT,
            Duration::from_millis(100),
        )?,
        id_slot,
        id_slots,
    }))
}

fn profile(
    check: &Check<'_>,
    key: &'static str,
    value: Option<u8>,
) -> Result<Profile, ConfigError> {
    match value {
        None => Ok(DEFAULT_SECURITY_PROFILE),
        Some(n) => Profile::from_number(n).ok_or_else(|| {
            check.invalid(
                key,
                format!("{n} is not a security profile (0 none, 1 Basic auth, 2 TLS + Basic auth, 3 mutual TLS)"),
            )
        }),
    }
}

fn address(check: &Check<'_>, key: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        check.invalid(
            key,
            format!("{text:?} is not an address like \"0.0.0.0:8080\""),
        )
    })
}

fn listener(
    check: &Check<'_>,
    index: usize,
    l: RawListener,
    all: &Protocols,
) -> Result<ListenerConfig, ConfigError> {
    let text = l.listen.ok_or_else(|| {
        check.invalid(
            "listeners.listen",
            format!("listener {} has no address", index + 1),
        )
    })?;
    Ok(ListenerConfig {
        listen: address(check, "listeners.listen", &text)?,
        profile: profile(check, "listeners.profile", l.profile)?,
        proxy_protocol: l.proxy_protocol.unwrap_or(DEFAULT_PROXY_PROTOCOL),
        tls_offload: l.tls_offload.unwrap_or(DEFAULT_TLS_OFFLOAD),
        protocols: match l.protocols {
            None => *all,
            Some(names) => {
                let protocols = protocols(check, "listeners.protocols", &names)?;
                if !protocols.within(all) {
                    return Err(check.invalid(
                        "listeners.protocols",
                        format!(
                            "listener {} may only narrow ocpp.protocols, not add to it",
                            index + 1
                        ),
                    ));
                }
                protocols
            }
        },
    })
}

fn protocols(
    check: &Check<'_>,
    key: &'static str,
    names: &[String],
) -> Result<Protocols, ConfigError> {
    Protocols::parse(names).map_err(|reason| check.invalid(key, reason))
}

fn server(check: &Check<'_>, s: RawServer) -> Result<ServerConfig, ConfigError> {
    let listen_text = s.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listen = address(check, "server.listen", &listen_text)?;
    Ok(ServerConfig {
        listen,
        workers: check.threads("server.workers", s.workers)?,
        pin_cores: s.pin_cores.unwrap_or(DEFAULT_PIN_CORES),
        max_connections: s.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
        handshakes_per_turn: check.within(
            "server.handshakes_per_turn",
            s.handshakes_per_turn.unwrap_or(DEFAULT_HANDSHAKES_PER_TURN),
            1..=4096,
        )?,
        drain_rate: NonZeroU32::new(s.drain_rate.unwrap_or(DEFAULT_DRAIN_RATE))
            .ok_or_else(|| check.invalid("server.drain_rate", "must be > 0".into()))?,
        listen_backlog: s.listen_backlog.unwrap_or(DEFAULT_LISTEN_BACKLOG).max(1),
        socket_send_buffer: NonZeroUsize::new(
            s.socket_send_buffer.unwrap_or(DEFAULT_SOCKET_SEND_BUFFER),
        ),
        node_id: match s.node_id.filter(|n| !n.is_empty()) {
            Some(id) if id.len() > 128 || id.chars().any(char::is_control) => {
                return Err(check.invalid(
                    "server.node_id",
                    "must be at most 128 characters, none of them control characters".into(),
                ));
            }
            Some(id) => id,
            None => host_name(),
        },
        proxy_protocol: s.proxy_protocol.unwrap_or(DEFAULT_PROXY_PROTOCOL),
        tls_offload: s.tls_offload.unwrap_or(DEFAULT_TLS_OFFLOAD),
        trusted_proxies: s
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .map(|text| {
                Network::parse(text).ok_or_else(|| {
                    check.invalid(
                        "server.trusted_proxies",
                        format!("{text:?} is not an address or a block like \"10.0.0.0/8\""),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    })
}

fn websocket(check: &Check<'_>, w: RawWebSocket) -> Result<WebSocketConfig, ConfigError> {
    let path_prefix = w
        .path_prefix
        .unwrap_or_else(|| DEFAULT_PATH_PREFIX.to_owned());
    let path_prefix = path_prefix.trim_end_matches('/').to_owned();
    if !(path_prefix.is_empty() || path_prefix.starts_with('/'))
        || path_prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '?')
    {
        return Err(check.invalid(
            "websocket.path_prefix",
            format!("{path_prefix:?} must start with '/' and contain no spaces or '?'"),
        ));
    }
    let min = Duration::from_millis(50);
    let websocket = WebSocketConfig {
        path_prefix,
        handshake_timeout: check.duration_min(
            "websocket.handshake_timeout",
            w.handshake_timeout,
            DEFAULT_HANDSHAKE_TIMEOUT,
            min,
        )?,
        ping_interval: check.duration_min(
            "websocket.ping_interval",
            w.ping_interval,
            DEFAULT_PING_INTERVAL,
            min,
        )?,
        pong_timeout: check.duration_min(
            "websocket.pong_timeout",
            w.pong_timeout,
            DEFAULT_PONG_TIMEOUT,
            min,
        )?,
        max_message_size: check.within(
            "websocket.max_message_size",
            w.max_message_size.unwrap_or(DEFAULT_MAX_MESSAGE_SIZE),
            1024..=16 * 1024 * 1024,
        )?,
        max_write_buffer: w.max_write_buffer.unwrap_or(DEFAULT_MAX_WRITE_BUFFER),
        ping_skip_threshold: w.ping_skip_threshold.unwrap_or(DEFAULT_PING_SKIP_THRESHOLD),
        partial_message_budget: w
            .partial_message_budget
            .unwrap_or(DEFAULT_PARTIAL_MESSAGE_BUDGET),
        partial_message_timeout: check.duration_min(
            "websocket.partial_message_timeout",
            w.partial_message_timeout,
            DEFAULT_PARTIAL_MESSAGE_TIMEOUT,
            min,
        )?,
    };
    // A write buffer smaller than one maximal message could never send a large command.
    if websocket.max_write_buffer < websocket.max_message_size + 16 {
        return Err(check.invalid(
            "websocket.max_write_buffer",
            format!(
                "{} must be larger than websocket.max_message_size ({}) plus a frame header",
                websocket.max_write_buffer, websocket.max_message_size
            ),
        ));
    }
    if websocket.ping_skip_threshold >= websocket.max_write_buffer {
        return Err(check.invalid(
            "websocket.ping_skip_threshold",
            format!(
                "{} must be below websocket.max_write_buffer ({})",
                websocket.ping_skip_threshold, websocket.max_write_buffer
            ),
        ));
    }
    // One message of the largest size must be able to complete, or none ever could.
    if websocket.partial_message_budget < websocket.max_message_size + 16 {
        return Err(check.invalid(
            "websocket.partial_message_budget",
            format!(
                "{} must be larger than websocket.max_message_size ({}) plus a frame header",
                websocket.partial_message_budget, websocket.max_message_size
            ),
        ));
    }
    Ok(websocket)
}

fn processor(check: &Check<'_>, p: RawProcessor) -> Result<ProcessorConfig, ConfigError> {
    Ok(ProcessorConfig {
        threads: check.threads("processor.threads", p.threads)?,
        queue_capacity: NonZeroUsize::new(p.queue_capacity.unwrap_or(DEFAULT_QUEUE_CAPACITY))
            .ok_or_else(|| check.invalid("processor.queue_capacity", "must be > 0".into()))?,
        queue_bytes: check.within(
            "processor.queue_bytes",
            p.queue_bytes.unwrap_or(DEFAULT_QUEUE_BYTES),
            64 * 1024..=1 << 34,
        )?,
    })
}

fn ocpp(check: &Check<'_>, o: RawOcpp) -> Result<OcppConfig, ConfigError> {
    let heartbeat_interval = check.duration(
        "ocpp.heartbeat_interval",
        o.heartbeat_interval,
        DEFAULT_HEARTBEAT_INTERVAL,
    )?;
    if heartbeat_interval.subsec_nanos() != 0 || heartbeat_interval.is_zero() {
        return Err(check.invalid(
            "ocpp.heartbeat_interval",
            format!("{heartbeat_interval:?} must be a whole, non-zero number of seconds"),
        ));
    }
    let message_timeout = check.duration_min(
        "ocpp.message_timeout",
        o.message_timeout,
        DEFAULT_MESSAGE_TIMEOUT,
        Duration::from_millis(50),
    )?;
    let max_queued_calls = check.within(
        "ocpp.max_queued_calls",
        o.max_queued_calls.unwrap_or(DEFAULT_MAX_QUEUED_CALLS),
        0..=1024,
    )?;
    let max_pipelined_calls = check.within(
        "ocpp.max_pipelined_calls",
        o.max_pipelined_calls.unwrap_or(DEFAULT_MAX_PIPELINED_CALLS),
        1..=256,
    )?;
    let max_calls_per_second = check.within(
        "ocpp.max_calls_per_second",
        o.max_calls_per_second
            .unwrap_or(DEFAULT_MAX_CALLS_PER_SECOND),
        0..=1000,
    )?;
    let call_burst = check.within(
        "ocpp.call_burst",
        o.call_burst.unwrap_or(DEFAULT_CALL_BURST),
        1..=100_000,
    )?;
    // "" means "none" for the optional files.
    let file = |value: Option<String>| value.filter(|v| !v.is_empty()).map(PathBuf::from);
    let allowed_charge_points = file(o.allowed_charge_points);
    let refuse_unknown_at_handshake = o.refuse_unknown_at_handshake.unwrap_or(false);
    if refuse_unknown_at_handshake && allowed_charge_points.is_none() {
        return Err(check.invalid(
            "ocpp.refuse_unknown_at_handshake",
            "needs ocpp.allowed_charge_points (a file of identities)".into(),
        ));
    }
    let identity_charset = match o.identity_charset.as_deref() {
        None => DEFAULT_IDENTITY_CHARSET,
        Some(name) => IdentityRule::from_name(name).ok_or_else(|| {
            check.invalid(
                "ocpp.identity_charset",
                format!("{name:?} is neither \"identifier_string\" nor \"unicode\""),
            )
        })?,
    };
    let protocols = match o.protocols {
        None => DEFAULT_PROTOCOLS,
        Some(names) => protocols(check, "ocpp.protocols", &names)?,
    };
    Ok(OcppConfig {
        protocols,
        heartbeat_interval,
        message_timeout,
        max_queued_calls,
        max_pipelined_calls,
        max_calls_per_second,
        call_burst,
        boot_status: o.boot_status.unwrap_or(DEFAULT_BOOT_STATUS),
        allowed_charge_points,
        refuse_unknown_at_handshake,
        identity_charset,
        id_tags: file(o.id_tags),
        data_transfer_status: o
            .data_transfer_status
            .unwrap_or(DEFAULT_DATA_TRANSFER_STATUS),
        transaction_id_file: file(
            o.transaction_id_file
                .or_else(|| Some(DEFAULT_TRANSACTION_ID_FILE.into())),
        ),
        state_file: file(o.state_file.or_else(|| Some(DEFAULT_STATE_FILE.into()))),
        max_disconnected: check.within(
            "ocpp.max_disconnected",
            o.max_disconnected.unwrap_or(0),
            0..=100_000_000,
        )?,
    })
}

fn admin(check: &Check<'_>, a: RawAdmin) -> Result<AdminConfig, ConfigError> {
    let listen = a.listen.unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.to_owned());
    let admin = AdminConfig {
        listen: match listen.as_str() {
            "" => None,
            text => Some(text.parse().map_err(|_| {
                check.invalid(
                    "admin.listen",
                    format!(
                        "{text:?} is not an address like \"127.0.0.1:9090\" (or \"\" for none)"
                    ),
                )
            })?),
        },
        token: a.token.filter(|t| !t.is_empty()),
        stuck_after: check.duration_min(
            "admin.stuck_after",
            a.stuck_after,
            DEFAULT_STUCK_AFTER,
            Duration::from_millis(200),
        )?,
    };
    if let Some(token) = &admin.token {
        check_token(token).map_err(|reason| check.invalid("admin.token", reason))?;
    }
    Ok(admin)
}

fn events(check: &Check<'_>, e: RawEvents) -> Result<EventsConfig, ConfigError> {
    let fsync_interval = check.duration(
        "events.fsync_interval",
        e.fsync_interval,
        DEFAULT_FSYNC_INTERVAL,
    )?;
    let fsync = match e.fsync.as_deref().unwrap_or(DEFAULT_FSYNC) {
        "never" => Fsync::Never,
        "interval" => Fsync::Interval(fsync_interval),
        "always" => Fsync::Always,
        other => {
            return Err(check.invalid(
                "events.fsync",
                format!("{other:?} is not one of \"never\", \"interval\", \"always\""),
            ));
        }
    };
    let events = EventsConfig {
        sinks: sinks(e.sink),
        path: PathBuf::from(e.path.unwrap_or_else(|| DEFAULT_EVENTS_PATH.to_owned())),
        max_file_bytes: check.within(
            "events.max_file_bytes",
            e.max_file_bytes.unwrap_or(DEFAULT_MAX_FILE_BYTES),
            4096..=u64::MAX,
        )?,
        max_files: check.within(
            "events.max_files",
            e.max_files.unwrap_or(DEFAULT_MAX_FILES),
            1..=1000,
        )?,
        fsync,
        ack_after_write: e.ack_after_write.unwrap_or(DEFAULT_ACK_AFTER_WRITE),
        queue_capacity: check.within(
            "events.queue_capacity",
            e.queue_capacity.unwrap_or(DEFAULT_EVENTS_QUEUE_CAPACITY),
            1..=1 << 20,
        )?,
        min_retention: check.duration(
            "events.min_retention",
            e.min_retention,
            DEFAULT_MIN_RETENTION,
        )?,
        charge_point_rate: e.charge_point_rate.unwrap_or(DEFAULT_CHARGE_POINT_RATE),
        charge_point_burst: check.within(
            "events.charge_point_burst",
            e.charge_point_burst.unwrap_or(DEFAULT_CHARGE_POINT_BURST),
            0..=1 << 30,
        )?,
    };
    if events.charge_point_rate > 0 && events.charge_point_burst < 64 * 1024 {
        return Err(check.invalid(
            "events.charge_point_burst",
            "must be at least 65536 (a whole message and its answer) when charge_point_rate is set"
                .into(),
        ));
    }
    if events.sinks.journal && events.path.as_os_str().is_empty() {
        return Err(check.invalid("events.path", "must name a file".into()));
    }
    Ok(events)
}

/// `events.sink`'s names as a set ("none" beside others adds nothing).
fn sinks(raw: Option<OneOrManySinks>) -> Sinks {
    let names = match raw {
        None => return DEFAULT_EVENTS_SINKS,
        Some(OneOrManySinks::One(one)) => vec![one],
        Some(OneOrManySinks::Many(many)) => many,
    };
    Sinks {
        journal: names.contains(&Sink::Journal),
        kafka: names.contains(&Sink::Kafka),
    }
}

pub(super) fn check_token(token: &str) -> Result<(), String> {
    if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be at least 16 printable ASCII characters without spaces".into());
    }
    Ok(())
}

/// The kernel's host name, for `server.node_id`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "ocpp-gateway".to_owned())
}
