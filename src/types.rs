//! The vocabulary every thread shares, in one leaf module: who a charge point is
//! ([`ChargePointId`]), how another thread names its connection ([`ConnId`]), and why a
//! connection ended ([`CloseCause`], [`CloseReason`]). Nothing here depends on the rest of the
//! crate, so `net`, `processor`, `events` and `admin` can all use it without importing one
//! another.

use std::sync::Arc;

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
        }
    }

    pub fn cause(self) -> CloseCause {
        match self {
            CloseReason::Takeover | CloseReason::TakenOverElsewhere => CloseCause::Takeover,
            CloseReason::Operator => CloseCause::Operator,
            CloseReason::IdentityInUse => CloseCause::IdentityInUse,
            CloseReason::SerialMismatch => CloseCause::SerialMismatch,
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
}

impl CloseCause {
    pub const ALL: [CloseCause; 13] = [
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
        }
    }
}

/// Whether `id` may be a charge point identity: 1 to [`MAX_CHARGE_POINT_ID_LEN`] characters,
/// none of them `/`, a control character, an invisible format character (bidi overrides such
/// as U+202E, zero-width characters, U+FEFF) or a line/paragraph separator; no white space at
/// either end; not `.` or `..`. These are what make two identities look alike in a log or a
/// dashboard, or make a path segment mean something else.
///
/// [`MAX_CHARGE_POINT_ID_LEN`]: crate::config::MAX_CHARGE_POINT_ID_LEN
pub fn is_valid_identity(id: &str) -> bool {
    let len = id.chars().count();
    (1..=crate::config::MAX_CHARGE_POINT_ID_LEN).contains(&len)
        && id != "."
        && id != ".."
        && !id.starts_with(char::is_whitespace)
        && !id.ends_with(char::is_whitespace)
        && id
            .chars()
            .all(|c| c != '/' && !c.is_control() && !is_invisible(c))
}

/// Unicode's format characters (general category Cf) and the line and paragraph separators.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}'
        | '\u{0600}'..='\u{0605}'
        | '\u{061C}'
        | '\u{06DD}'
        | '\u{070F}'
        | '\u{0890}'..='\u{0891}'
        | '\u{08E2}'
        | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{110BD}'
        | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0001}'
        | '\u{E0020}'..='\u{E007F}')
}

#[cfg(test)]
mod identity_tests {
    use super::is_valid_identity;

    #[test]
    fn look_alike_and_path_like_identities_are_refused() {
        for good in ["CP1", "RDAM 123", "été", "CP:1", "a.b", "...", "x\u{00A0}y"] {
            assert!(is_valid_identity(good), "{good:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            " CP1",
            "CP1 ",
            "CP1\u{00A0}",
            "\u{3000}CP1",
            "CP\u{202E}1",
            "CP\u{200B}1",
            "\u{FEFF}CP1",
            "CP\u{2028}1",
            "CP\u{2029}1",
            "CP\u{2066}1",
            "CP\u{00AD}1",
            "CP\u{E0041}1",
            "CP\n1",
            "CP\u{7F}1",
            "CP\u{85}1",
            "a/b",
        ] {
            assert!(!is_valid_identity(bad), "{bad:?}");
        }
        assert!(is_valid_identity(&"x".repeat(48)));
        assert!(!is_valid_identity(&"x".repeat(49)));
    }
}
