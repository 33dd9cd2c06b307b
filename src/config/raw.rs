//! `config.toml` as serde reads it: every key optional, unknown keys refused. [`super::validate`]
//! turns these into the runtime [`Config`](super::Config).

use serde::Deserialize;

use super::Sink;
use ocpp::v16::{DataTransferStatus, RegistrationStatus};
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub websocket: RawWebSocket,
    #[serde(default)]
    pub processor: RawProcessor,
    #[serde(default)]
    pub ocpp: RawOcpp,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub events: RawEvents,
    #[serde(default)]
    pub security: RawSecurity,
    /// Listeners besides `server.listen` (`[[listeners]]`).
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub cluster: RawCluster,
    #[serde(default)]
    pub kafka: RawKafka,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKafka {
    pub brokers: Option<String>,
    pub events_topic: Option<String>,
    pub commands_topic: Option<String>,
    pub consume_commands: Option<bool>,
    pub command_partitions: Option<Vec<i32>>,
    pub group_id: Option<String>,
    pub ack_timeout: Option<String>,
    pub degraded_after: Option<String>,
    pub command_max_age: Option<String>,
    pub raw_frames: Option<bool>,
    pub buffer_messages: Option<u32>,
    pub buffer_bytes: Option<u64>,
    pub linger: Option<String>,
    pub properties: Option<BTreeMap<String, String>>,
}

/// `events.sink`: one name or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrManySinks {
    One(Sink),
    Many(Vec<Sink>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub redis_url: Option<String>,
    pub prefix: Option<String>,
    pub node_ttl: Option<String>,
    pub buffer: Option<usize>,
    pub events: Option<bool>,
    pub events_maxlen: Option<u64>,
    pub events_ack_timeout: Option<String>,
    pub id_slot: Option<i64>,
    pub id_slots: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecurity {
    pub profile: Option<u8>,
    pub credentials: Option<String>,
    pub tls_cert: Option<OneOrMany>,
    pub tls_key: Option<OneOrMany>,
    pub client_ca: Option<String>,
    pub client_crl: Option<OneOrMany>,
    pub check_serial_number: Option<bool>,
    pub tls_resumption: Option<bool>,
    pub tls_ticket_keys: Option<String>,
    pub tls_ticket_lifetime: Option<String>,
    pub min_profile: Option<u8>,
    pub lockout_failures: Option<u32>,
    pub lockout_window: Option<String>,
    pub lockout_time: Option<String>,
    pub lockout_max_time: Option<String>,
    pub lockout_table: Option<usize>,
    pub journaled_refusals: Option<u32>,
    pub certificate_signing: Option<String>,
    pub ca_cert: Option<String>,
    pub ca_key: Option<String>,
    pub certificate_validity: Option<String>,
    pub renew_before: Option<String>,
    pub renewals_per_scan: Option<u32>,
    pub signings_per_second: Option<u32>,
    pub certificate_scan: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub listen: Option<String>,
    pub profile: Option<u8>,
    pub proxy_protocol: Option<bool>,
    pub tls_offload: Option<bool>,
    pub protocols: Option<Vec<String>>,
}

/// A key that takes one path or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub token: Option<String>,
    pub stuck_after: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvents {
    pub sink: Option<OneOrManySinks>,
    pub path: Option<String>,
    pub max_file_bytes: Option<u64>,
    pub max_files: Option<usize>,
    pub fsync: Option<String>,
    pub fsync_interval: Option<String>,
    pub ack_after_write: Option<bool>,
    pub queue_capacity: Option<usize>,
    pub min_retention: Option<String>,
    pub charge_point_rate: Option<u64>,
    pub charge_point_burst: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub workers: Option<usize>,
    pub pin_cores: Option<bool>,
    pub max_connections: Option<usize>,
    pub handshakes_per_turn: Option<u32>,
    pub drain_rate: Option<u32>,
    pub listen_backlog: Option<u32>,
    pub socket_send_buffer: Option<usize>,
    pub node_id: Option<String>,
    pub proxy_protocol: Option<bool>,
    pub tls_offload: Option<bool>,
    pub trusted_proxies: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebSocket {
    pub path_prefix: Option<String>,
    pub handshake_timeout: Option<String>,
    pub ping_interval: Option<String>,
    pub pong_timeout: Option<String>,
    pub max_message_size: Option<usize>,
    pub partial_message_budget: Option<usize>,
    pub partial_message_timeout: Option<String>,
    pub max_write_buffer: Option<usize>,
    pub ping_skip_threshold: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProcessor {
    pub threads: Option<usize>,
    pub queue_capacity: Option<usize>,
    pub queue_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOcpp {
    pub protocols: Option<Vec<String>>,
    pub heartbeat_interval: Option<String>,
    pub message_timeout: Option<String>,
    pub max_queued_calls: Option<usize>,
    pub max_pipelined_calls: Option<u16>,
    pub max_calls_per_second: Option<u32>,
    pub call_burst: Option<u32>,
    pub boot_status: Option<RegistrationStatus>,
    pub allowed_charge_points: Option<String>,
    pub refuse_unknown_at_handshake: Option<bool>,
    pub identity_charset: Option<String>,
    pub id_tags: Option<String>,
    pub data_transfer_status: Option<DataTransferStatus>,
    pub transaction_id_file: Option<String>,
    pub state_file: Option<String>,
    pub max_disconnected: Option<usize>,
}
