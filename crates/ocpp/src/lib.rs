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
    V21,
}

impl Version {
    pub const ALL: [Version; 3] = [Version::V16, Version::V201, Version::V21];

    /// The subprotocol that selects it (`Sec-WebSocket-Protocol`).
    pub fn subprotocol(self) -> &'static str {
        match self {
            Version::V16 => SUBPROTOCOL,
            Version::V201 => "ocpp2.0.1",
            Version::V21 => "ocpp2.1",
        }
    }

    /// The 2.x edition whose messages it speaks (None for 1.6).
    pub fn edition(self) -> Option<v201::Edition> {
        match self {
            Version::V16 => None,
            Version::V201 => Some(v201::Edition::V201),
            Version::V21 => Some(v201::Edition::V21),
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
            Version::V21 => "2.1",
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
            (Version::V201 | Version::V21, rpc::CallErrorCode::FormationViolation) => {
                "FormatViolation"
            }
            (Version::V201 | Version::V21, rpc::CallErrorCode::OccurenceConstraintViolation) => {
                "OccurrenceConstraintViolation"
            }
            _ => self.as_str(),
        }
    }
}

/// An action of a version, as a central system sends it to a charge point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AnyAction {
    V16(v16::Action),
    V201(v201::Action),
    /// An action of OCPP 2.1 (2.0.1's, with 2.1's payloads, or one 2.1 added).
    V21(v201::Action),
}

impl From<v16::Action> for AnyAction {
    fn from(action: v16::Action) -> AnyAction {
        AnyAction::V16(action)
    }
}

/// A 2.0.1 action (2.1's own are made with [`AnyAction::V21`]).
impl From<v201::Action> for AnyAction {
    fn from(action: v201::Action) -> AnyAction {
        AnyAction::V201(action)
    }
}

impl AnyAction {
    pub fn name(self) -> &'static str {
        match self {
            AnyAction::V16(action) => action.name(),
            AnyAction::V201(action) | AnyAction::V21(action) => action.as_str(),
        }
    }

    pub fn version(self) -> Version {
        match self {
            AnyAction::V16(_) => Version::V16,
            AnyAction::V201(_) => Version::V201,
            AnyAction::V21(_) => Version::V21,
        }
    }

    /// The 2.x action and its edition (None for 1.6).
    pub fn v2x(self) -> Option<(v201::Edition, v201::Action)> {
        match self {
            AnyAction::V16(_) => None,
            AnyAction::V201(action) => Some((v201::Edition::V201, action)),
            AnyAction::V21(action) => Some((v201::Edition::V21, action)),
        }
    }

    /// The action called `name` in `version` (any direction).
    pub fn in_version(version: Version, name: &str) -> Option<AnyAction> {
        match version {
            Version::V16 => v16::Action::from_name(name).map(AnyAction::V16),
            Version::V201 => v201::Action::parse(name)
                .filter(|a| a.in_edition(v201::Edition::V201))
                .map(AnyAction::V201),
            Version::V21 => v201::Action::parse(name).map(AnyAction::V21),
        }
    }

    /// The action called `name` in 1.6, else in 2.0.1, else in 2.1 (which one a call becomes
    /// is decided by its payload and the charge point's version: [`AnyAction::csms_call`],
    /// [`AnyAction::for_version`]).
    pub fn named(name: &str) -> Option<AnyAction> {
        AnyAction::in_version(Version::V16, name)
            .or_else(|| AnyAction::in_version(Version::V201, name))
            .or_else(|| AnyAction::in_version(Version::V21, name))
    }

    /// A central system may send it.
    pub fn sent_by_central_system(self) -> bool {
        match self {
            AnyAction::V16(action) => action.sent_by_central_system(),
            AnyAction::V201(action) | AnyAction::V21(action) => action.from_csms(),
        }
    }

    /// Checks a request payload of this action against its version's rules.
    pub fn check_request(self, payload: &serde_json::value::RawValue) -> Result<(), v16::Invalid> {
        match self {
            AnyAction::V16(action) => v16::validate_request(action, payload),
            AnyAction::V201(action) => v201::check(action, v201::Part::Request, payload.get()),
            AnyAction::V21(action) => v201::check_in(
                v201::Edition::V21,
                action,
                v201::Part::Request,
                payload.get(),
            ),
        }
    }

    /// Checks a response payload to this action against its version's rules.
    pub fn check_response(self, payload: &serde_json::value::RawValue) -> Result<(), v16::Invalid> {
        match self {
            AnyAction::V16(action) => v16::validate_response(action, payload),
            AnyAction::V201(action) => v201::check(action, v201::Part::Response, payload.get()),
            AnyAction::V21(action) => v201::check_in(
                v201::Edition::V21,
                action,
                v201::Part::Response,
                payload.get(),
            ),
        }
    }

    /// A central system's call named `name` with `payload`, for a charge point whose version is
    /// not known yet: the version in which the name is a central system's action and the payload
    /// valid, 1.6 first. Err: the CallError a charge point of either version would answer
    /// (the 1.6 one when the name is a 1.6 action).
    pub fn csms_call(
        name: &str,
        payload: &serde_json::value::RawValue,
    ) -> Result<AnyAction, v16::Invalid> {
        let mut first_error = None;
        for version in Version::ALL {
            let Some(action) = AnyAction::in_version(version, name) else {
                continue;
            };
            let checked = if action.sent_by_central_system() {
                action.check_request(payload)
            } else {
                Err(v16::Invalid {
                    code: rpc::CallErrorCode::NotSupported,
                    description: format!("{name} is not sent by a central system"),
                })
            };
            match checked {
                Ok(()) => return Ok(action),
                Err(invalid) => {
                    first_error.get_or_insert(invalid);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| v16::Invalid {
            code: rpc::CallErrorCode::NotImplemented,
            description: format!(
                "{:?} is not an OCPP 1.6, 2.0.1 or 2.1 action",
                rpc::capped(name)
            ),
        }))
    }

    /// The same call for a charge point that speaks `version`: this action when it is that
    /// version's, else the action of the same name there, with `payload` checked against it.
    pub fn for_version(
        self,
        version: Version,
        payload: &serde_json::value::RawValue,
    ) -> Result<AnyAction, v16::Invalid> {
        if self.version() == version {
            return Ok(self);
        }
        let Some(action) =
            AnyAction::in_version(version, self.name()).filter(|a| a.sent_by_central_system())
        else {
            return Err(v16::Invalid {
                code: rpc::CallErrorCode::NotSupported,
                description: format!(
                    "{} is an OCPP {} action; the charge point speaks OCPP {}",
                    self.name(),
                    self.version().as_str(),
                    version.as_str()
                ),
            });
        };
        action
            .check_request(payload)
            .map_err(|invalid| v16::Invalid {
                code: invalid.code,
                description: format!(
                    "as OCPP {}'s {}: {}",
                    version.as_str(),
                    self.name(),
                    invalid.description
                ),
            })?;
        Ok(action)
    }
}
