//! OCPP-J without I/O: the RPC envelope ([`rpc`]), the typed and validated payloads of OCPP 1.6
//! ([`v16`]), OCPP 2.0.1's actions checked against its official schemas ([`v201`], [`schema`]),
//! the versions by subprotocol ([`Version`]) and the rules for charge point identities
//! ([`identity`]).
//!
//! The bottom layer of the gateway with `wire`: serde only, no sockets, threads, clocks or
//! channels, so every rule here is tested as a pure function and reused by the load generator.

#![forbid(unsafe_code)]
#![warn(rust_2018_idioms)]

pub mod identity;
pub mod rpc;
pub mod schema;
pub mod v16;
pub mod v201;

pub use identity::{IdentityRule, MAX_CHARGE_POINT_ID_LEN, is_valid_identity};

/// The WebSocket subprotocol of OCPP-J 1.6, offered by charge points and selected by us.
pub const SUBPROTOCOL: &str = "ocpp1.6";

/// The OCPP versions spoken here, each named by its WebSocket subprotocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Version {
    #[default]
    V16,
    V201,
}

impl Version {
    pub const ALL: [Version; 2] = [Version::V16, Version::V201];

    /// The subprotocol that selects it (`Sec-WebSocket-Protocol`).
    pub fn subprotocol(self) -> &'static str {
        match self {
            Version::V16 => SUBPROTOCOL,
            Version::V201 => "ocpp2.0.1",
        }
    }

    /// The version a subprotocol name selects (exact, case-sensitive, as RFC 6455 compares).
    pub fn from_subprotocol(name: &str) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.subprotocol() == name)
    }

    /// As integration events and the API name it (`ocppVersion`): "1.6", "2.0.1".
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V16 => "1.6",
            Version::V201 => "2.0.1",
        }
    }
}

/// Written as [`Version::as_str`] ("1.6", "2.0.1").
impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Version, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Version::ALL
            .into_iter()
            .find(|v| v.as_str() == text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown OCPP version {text:?}")))
    }
}

impl rpc::CallErrorCode {
    /// The code as `version` spells it: 2.0.1 renamed FormationViolation to FormatViolation and
    /// corrected OccurenceConstraintViolation.
    pub fn spelled(self, version: Version) -> &'static str {
        match (version, self) {
            (Version::V201, rpc::CallErrorCode::FormationViolation) => "FormatViolation",
            (Version::V201, rpc::CallErrorCode::OccurenceConstraintViolation) => {
                "OccurrenceConstraintViolation"
            }
            _ => self.as_str(),
        }
    }
}
