//! The vocabulary every thread shares, in one leaf module: who a charge point is
//! ([`ChargePointId`]), how another thread names its connection ([`ConnId`]), and why a
//! connection ended ([`CloseCause`], [`CloseReason`]). Nothing here depends on the rest of the
//! crate, so `net`, `processor`, `events` and `admin` can all use it without importing one
//! another.

use std::sync::Arc;

/// Identity rules live with the protocol (the `ocpp` crate); the gateway names them from here.
pub use ocpp::identity::{IdentityRule, MAX_CHARGE_POINT_ID_LEN, is_valid_identity};

/// A charge point identity, as decoded from the URL. Shared (`Arc`) because every frame that
/// travels to a processor carries it.
pub type ChargePointId = Arc<str>;

/// A connection's address from outside its loop: `(loop, slab key, generation)`. The
/// generation makes a message for a connection that closed, and whose slab slot was reused,
/// miss instead of reaching the new occupant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub loop_index: u16,
    pub key: u32,
    pub generation: u32,
}

/// Why a connection is being closed on another thread's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The same identity connected again; the newer connection wins.
    Takeover,
    /// An operator asked for it (`DELETE /api/v1/chargepoints/{id}/connection`).
    Operator,
    /// The charge point connected to another node of the cluster, later.
    TakenOverElsewhere,
    /// It did not authenticate and an authenticated connection holds the identity.
    IdentityInUse,
    /// Its BootNotification's serial number is not its certificate's CN.
    SerialMismatch,
    /// The identity authenticated at a higher security profile before than this listener's.
    ProfileTooLow,
    /// Its client certificate is revoked by a CRL read since it connected.
    CertificateRevoked,
}

impl CloseReason {
    /// The WebSocket close code and reason text sent to the charge point.
    pub fn frame(self) -> (u16, &'static str) {
        match self {
            CloseReason::Takeover => (
                1000,
                "replaced by a newer connection with the same identity",
            ),
            CloseReason::Operator => (1000, "closed by the operator"),
            CloseReason::TakenOverElsewhere => (1000, "taken over"),
            CloseReason::IdentityInUse => (1008, "identity held by an authenticated connection"),
            CloseReason::SerialMismatch => {
                (1008, "serial number does not match the client certificate")
            }
            CloseReason::ProfileTooLow => {
                (1008, "this charge point must use a higher security profile")
            }
            CloseReason::CertificateRevoked => (1008, "client certificate revoked"),
        }
    }

    pub fn cause(self) -> CloseCause {
        match self {
            CloseReason::Takeover | CloseReason::TakenOverElsewhere => CloseCause::Takeover,
            CloseReason::Operator => CloseCause::Operator,
            CloseReason::IdentityInUse => CloseCause::IdentityInUse,
            CloseReason::SerialMismatch => CloseCause::SerialMismatch,
            CloseReason::ProfileTooLow => CloseCause::ProfileTooLow,
            CloseReason::CertificateRevoked => CloseCause::CertificateRevoked,
        }
    }
}

/// Why an upgraded connection ended: the `reason` label of `ocpp_gateway_closes_total` and of
/// the journal's `disconnected` lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseCause {
    /// The charge point closed with a close frame (the closing handshake).
    PeerClosed,
    /// EOF, a reset or a socket error without a closing handshake.
    ConnectionLost,
    /// No pong (or anything else) within `websocket.pong_timeout` of a ping.
    PongTimeout,
    /// The charge point does not read what we send.
    SlowConsumer,
    /// WebSocket protocol error or invalid UTF-8 (1002, 1007).
    ProtocolError,
    /// A message over `websocket.max_message_size`, or one that could not be completed within
    /// the partial-message budget and timeout (1009).
    MessageTooBig,
    /// A binary frame (1003).
    BinaryFrame,
    /// The upgrade did not select `ocpp1.6` (1002).
    NoSubprotocol,
    /// The same identity connected again.
    Takeover,
    /// Closed through the operator API.
    Operator,
    /// The gateway is shutting down (1001).
    Shutdown,
    /// Unauthenticated, while an authenticated connection holds the identity (1008).
    IdentityInUse,
    /// BootNotification serial number is not the certificate's CN (1008).
    SerialMismatch,
    /// On a listener below the security profile the identity authenticated at before (1008).
    ProfileTooLow,
    /// Its client certificate was revoked by a CRL reloaded while it was connected (1008).
    CertificateRevoked,
}

impl CloseCause {
    pub const ALL: [CloseCause; 15] = [
        CloseCause::PeerClosed,
        CloseCause::ConnectionLost,
        CloseCause::PongTimeout,
        CloseCause::SlowConsumer,
        CloseCause::ProtocolError,
        CloseCause::MessageTooBig,
        CloseCause::BinaryFrame,
        CloseCause::NoSubprotocol,
        CloseCause::Takeover,
        CloseCause::Operator,
        CloseCause::Shutdown,
        CloseCause::IdentityInUse,
        CloseCause::SerialMismatch,
        CloseCause::ProfileTooLow,
        CloseCause::CertificateRevoked,
    ];

    /// The cause's position in [`CloseCause::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CloseCause::PeerClosed => "peer_closed",
            CloseCause::ConnectionLost => "connection_lost",
            CloseCause::PongTimeout => "pong_timeout",
            CloseCause::SlowConsumer => "slow_consumer",
            CloseCause::ProtocolError => "protocol_error",
            CloseCause::MessageTooBig => "message_too_big",
            CloseCause::BinaryFrame => "binary_frame",
            CloseCause::NoSubprotocol => "no_subprotocol",
            CloseCause::Takeover => "takeover",
            CloseCause::Operator => "operator",
            CloseCause::Shutdown => "shutdown",
            CloseCause::IdentityInUse => "identity_in_use",
            CloseCause::SerialMismatch => "serial_mismatch",
            CloseCause::ProfileTooLow => "profile_too_low",
            CloseCause::CertificateRevoked => "certificate_revoked",
        }
    }
}

/// A listener's security profile (OCPP security whitepaper): what a charge point proves and
/// over what.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Profile {
    /// 0: no authentication.
    #[default]
    Unsecured,
    /// 1: Basic auth over TCP.
    BasicAuth,
    /// 2: TLS with Basic auth.
    TlsBasicAuth,
    /// 3: mutual TLS.
    MutualTls,
}

impl Profile {
    pub fn from_number(n: u8) -> Option<Profile> {
        Some(match n {
            0 => Profile::Unsecured,
            1 => Profile::BasicAuth,
            2 => Profile::TlsBasicAuth,
            3 => Profile::MutualTls,
            _ => return None,
        })
    }

    pub fn number(self) -> u8 {
        self as u8
    }

    pub fn tls(self) -> bool {
        matches!(self, Profile::TlsBasicAuth | Profile::MutualTls)
    }

    pub fn basic_auth(self) -> bool {
        matches!(self, Profile::BasicAuth | Profile::TlsBasicAuth)
    }
}

pub use ocpp::Version;

/// What a 2.0.1 station keeps beyond its registration: the transactions it has open, one per
/// EVSE at most, each with the next `seqNo` expected of it, and the last few it ended with the
/// `seqNo` after their Ended, so an event sent again (the station did not get our answer) is
/// recognised across restarts and, in cluster mode, on another node; and its connectors'
/// statuses.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct State201 {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open: Vec<OpenTransaction>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ended: Vec<(Box<str>, u64)>,
    /// Runtime only: the station's last answered TransactionEvent may not be kept (this state
    /// came from the state file or Redis after a restart or a failover, or a holder refused an
    /// answer since): sent again, it is kept again rather than recognised as a resend. Cleared
    /// by its next fresh event (a station sends one CALL at a time: it had the answers).
    #[serde(skip)]
    pub unsure: bool,
    /// Runtime only: [`crate::stats::Stats::held_answers_refused`] when its last
    /// TransactionEvent was answered.
    #[serde(skip)]
    pub refused_at: u64,
    /// Each connector's last reported status, in order of first report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connectors: Vec<Connector201>,
    /// OCPP 2.1: the periodic event streams the live connection opened (their ids), at most
    /// `handlers::MAX_STREAMS`; the connection's, so never saved and cleared by a new one.
    #[serde(skip)]
    pub streams: Vec<u32>,
}

/// A 2.0.1 connector (of an EVSE) and its last reported status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connector201 {
    pub evse_id: u32,
    pub connector_id: u32,
    pub status: ConnectorStatus201,
}

/// OCPP 2.0.1's ConnectorStatusEnumType.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ConnectorStatus201 {
    Available,
    Occupied,
    Reserved,
    Unavailable,
    Faulted,
}

impl ConnectorStatus201 {
    const ALL: [ConnectorStatus201; 5] = [
        ConnectorStatus201::Available,
        ConnectorStatus201::Occupied,
        ConnectorStatus201::Reserved,
        ConnectorStatus201::Unavailable,
        ConnectorStatus201::Faulted,
    ];

    /// The status with this name (the schema's enumeration).
    pub fn parse(name: &str) -> Option<ConnectorStatus201> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorStatus201::Available => "Available",
            ConnectorStatus201::Occupied => "Occupied",
            ConnectorStatus201::Reserved => "Reserved",
            ConnectorStatus201::Unavailable => "Unavailable",
            ConnectorStatus201::Faulted => "Faulted",
        }
    }
}

/// One open 2.0.1 transaction, as its station's TransactionEvents told it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenTransaction {
    /// The station's id for it.
    pub id: Box<str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evse_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter_start_wh: Option<f64>,
    /// The `seqNo` its next event should carry.
    pub next_seq: u64,
    /// The `seqNo`s skipped so far, of the 64 below `next_seq` (bit i: `next_seq - 1 - i`), so
    /// one that arrives late is kept, not taken for a resend.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub missing: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The OCPP versions a listener speaks, in the gateway's order of preference (`ocpp.protocols`,
/// narrowed per listener): of a charge point's offers, the first here that it offered wins.
#[derive(Debug, Clone, Copy)]
pub struct Protocols {
    list: [Version; Version::ALL.len()],
    len: u8,
}

/// Equal when the same versions are listed in the same order (the unused slots do not count).
impl PartialEq for Protocols {
    fn eq(&self, other: &Protocols) -> bool {
        self.versions() == other.versions()
    }
}

impl Eq for Protocols {}

impl Protocols {
    /// All three, the newest first (the default).
    pub const ALL: Protocols = Protocols {
        list: [Version::V21, Version::V201, Version::V16],
        len: 3,
    };

    /// 2.0.1 and 1.6, the newest first.
    pub const BOTH: Protocols = Protocols {
        list: [Version::V201, Version::V16, Version::V21],
        len: 2,
    };

    /// OCPP 1.6 only.
    pub const V16: Protocols = Protocols {
        list: [Version::V16, Version::V201, Version::V21],
        len: 1,
    };

    /// From subprotocol names in order; Err names the first unknown or repeated one, or says
    /// the list is empty.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Protocols, String> {
        let mut protocols = Protocols {
            list: [Version::V16; Version::ALL.len()],
            len: 0,
        };
        for name in names {
            let name = name.as_ref();
            let Some(version) = Version::from_subprotocol(name) else {
                let known: Vec<_> = Version::ALL.iter().map(|v| v.subprotocol()).collect();
                return Err(format!(
                    "unknown protocol {name:?} (known: {})",
                    known.join(", ")
                ));
            };
            if protocols.versions().contains(&version) {
                return Err(format!("{name:?} is listed twice"));
            }
            protocols.list[usize::from(protocols.len)] = version;
            protocols.len += 1;
        }
        if protocols.len == 0 {
            return Err("no protocol listed".into());
        }
        Ok(protocols)
    }

    /// In order of preference.
    pub fn versions(&self) -> &[Version] {
        &self.list[..usize::from(self.len)]
    }

    /// The subprotocol names, in order of preference (what the upgrade parser matches).
    pub fn names(&self) -> [&'static str; Version::ALL.len()] {
        self.list.map(Version::subprotocol)
    }

    /// Every version here is also in `other` (a listener narrows the global list).
    pub fn within(&self, other: &Protocols) -> bool {
        self.versions().iter().all(|v| other.versions().contains(v))
    }
}

#[cfg(test)]
mod protocol_tests {
    use super::*;

    #[test]
    fn protocols_keep_their_order_and_refuse_unknown_or_repeated_names() {
        let both = Protocols::parse(&["ocpp1.6", "ocpp2.0.1"]).expect("two known names");
        assert_eq!(both.versions(), [Version::V16, Version::V201]);
        assert_eq!(&both.names()[..2], ["ocpp1.6", "ocpp2.0.1"]);
        assert_eq!(Protocols::BOTH.versions(), [Version::V201, Version::V16]);
        assert_eq!(Protocols::V16.versions(), [Version::V16]);
        let one = Protocols::parse(&["ocpp2.0.1"]).expect("one");
        assert!(one.within(&both) && !both.within(&one));
        assert!(Protocols::parse(&["ocpp1.5"]).is_err());
        assert!(Protocols::parse(&["ocpp1.6", "ocpp1.6"]).is_err());
        assert!(Protocols::parse::<&str>(&[]).is_err());
    }
}
