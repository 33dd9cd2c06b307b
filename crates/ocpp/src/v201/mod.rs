//! OCPP 2.0.1: its 64 actions, who sends each, and every payload checked against the official
//! schema (embedded from `schemas/ocpp201/`, compiled once on first use by [`crate::schema`]) in
//! both directions, with 2.0.1's CallError codes.
//!
//! How a broken payload is answered (OCPP-J 2.0.1, Part 4, 4.3): a property the schema does not
//! allow, or one given twice, is a `FormatViolation` (as 1.6's unknown field); a missing required
//! property or too few / too many elements an `OccurrenceConstraintViolation`; a value of the wrong
//! JSON type a `TypeConstraintViolation`; a string not in the enumeration, too long or not a
//! date-time, or a number out of range a `PropertyConstraintViolation`; text that is not JSON a
//! `FormatViolation`. `customData` is accepted wherever the schema has it, with any extra
//! properties (the schemas leave it open).

pub mod read;

use std::sync::OnceLock;

use crate::rpc::CallErrorCode;
use crate::schema::{CompileError, Schema, ViolationKind};
use crate::v16::Invalid;

/// Who may send an action's CALL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// The charging station (the gateway answers it).
    Station,
    /// The central system (the gateway sends it, for an operator or a backend).
    Csms,
    /// Either (DataTransfer).
    Both,
}

/// Defines [`Action`]: each name is its variant, with its sender and its two schema files.
macro_rules! actions {
    ($($name:ident = $sender:ident,)*) => {
        /// The 64 actions of OCPP 2.0.1.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Action { $($name),* }

        impl Action {
            /// Every action, in the order of the schema files' names.
            pub const ALL: [Action; 64] = [$(Action::$name),*];

            /// The action's name on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $(Action::$name => stringify!($name)),* }
            }

            /// Who may send its CALL.
            pub fn sender(self) -> Sender {
                match self { $(Action::$name => Sender::$sender),* }
            }

            /// Its request and response schema documents.
            fn documents(self) -> [&'static str; 2] {
                match self {
                    $(Action::$name => [
                        include_str!(concat!("../../schemas/ocpp201/", stringify!($name), "Request.json")),
                        include_str!(concat!("../../schemas/ocpp201/", stringify!($name), "Response.json")),
                    ]),*
                }
            }
        }
    };
}

actions! {
    Authorize = Station,
    BootNotification = Station,
    CancelReservation = Csms,
    CertificateSigned = Csms,
    ChangeAvailability = Csms,
    ClearCache = Csms,
    ClearChargingProfile = Csms,
    ClearDisplayMessage = Csms,
    ClearVariableMonitoring = Csms,
    ClearedChargingLimit = Station,
    CostUpdated = Csms,
    CustomerInformation = Csms,
    DataTransfer = Both,
    DeleteCertificate = Csms,
    FirmwareStatusNotification = Station,
    Get15118EVCertificate = Station,
    GetBaseReport = Csms,
    GetCertificateStatus = Station,
    GetChargingProfiles = Csms,
    GetCompositeSchedule = Csms,
    GetDisplayMessages = Csms,
    GetInstalledCertificateIds = Csms,
    GetLocalListVersion = Csms,
    GetLog = Csms,
    GetMonitoringReport = Csms,
    GetReport = Csms,
    GetTransactionStatus = Csms,
    GetVariables = Csms,
    Heartbeat = Station,
    InstallCertificate = Csms,
    LogStatusNotification = Station,
    MeterValues = Station,
    NotifyChargingLimit = Station,
    NotifyCustomerInformation = Station,
    NotifyDisplayMessages = Station,
    NotifyEVChargingNeeds = Station,
    NotifyEVChargingSchedule = Station,
    NotifyEvent = Station,
    NotifyMonitoringReport = Station,
    NotifyReport = Station,
    PublishFirmware = Csms,
    PublishFirmwareStatusNotification = Station,
    ReportChargingProfiles = Station,
    RequestStartTransaction = Csms,
    RequestStopTransaction = Csms,
    ReservationStatusUpdate = Station,
    ReserveNow = Csms,
    Reset = Csms,
    SecurityEventNotification = Station,
    SendLocalList = Csms,
    SetChargingProfile = Csms,
    SetDisplayMessage = Csms,
    SetMonitoringBase = Csms,
    SetMonitoringLevel = Csms,
    SetNetworkProfile = Csms,
    SetVariableMonitoring = Csms,
    SetVariables = Csms,
    SignCertificate = Station,
    StatusNotification = Station,
    TransactionEvent = Station,
    TriggerMessage = Csms,
    UnlockConnector = Csms,
    UnpublishFirmware = Csms,
    UpdateFirmware = Csms,
}

impl Action {
    /// The action with exactly this name (case-sensitive).
    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL
            .into_iter()
            .find(|action| action.as_str() == name)
    }

    /// The charging station may send it.
    pub fn from_station(self) -> bool {
        matches!(self.sender(), Sender::Station | Sender::Both)
    }

    /// The central system may send it.
    pub fn from_csms(self) -> bool {
        matches!(self.sender(), Sender::Csms | Sender::Both)
    }

    /// The position in [`Action::ALL`] (for per-action counters).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The two compiled schemas of every action, in [`Action::ALL`]'s order.
type Table = Vec<[Schema; 2]>;

/// Compiles every schema once. The embedded documents are checked by this crate's tests, so a
/// failure here is a build that should never have passed; it is still an error, not a panic.
fn table() -> Result<&'static Table, &'static CompileError> {
    static TABLE: OnceLock<Result<Table, CompileError>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            Action::ALL
                .iter()
                .map(|action| {
                    let [request, response] = action.documents().map(|text| {
                        let document = serde_json::from_str(text).map_err(|e| CompileError {
                            at: action.as_str().to_owned(),
                            reason: e.to_string(),
                        })?;
                        Schema::compile(&document)
                    });
                    Ok([request?, response?])
                })
                .collect()
        })
        .as_ref()
}

/// Which of an action's two payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Request,
    Response,
}

/// Checks one payload (JSON text) of `action` against its schema.
pub fn check(action: Action, part: Part, payload: &str) -> Result<(), Invalid> {
    let table = table().map_err(|e| Invalid {
        code: CallErrorCode::InternalError,
        description: format!("the {} schemas did not compile: {e}", action.as_str()),
    })?;
    let schema = &table[action.index()][part as usize];
    schema.check(payload).map_err(|violation| Invalid {
        code: code_of(violation.kind),
        description: violation.to_string(),
    })
}

/// A CALL from the station: its action must be one a station sends, and its payload valid.
/// Unknown action: `NotImplemented`; one only the central system sends: `NotSupported`.
pub fn check_request(action: &str, payload: &str) -> Result<Action, Invalid> {
    let Some(known) = Action::parse(action) else {
        return Err(Invalid {
            code: CallErrorCode::NotImplemented,
            description: format!("unknown action {:?}", crate::rpc::capped(action)),
        });
    };
    if !known.from_station() {
        return Err(Invalid {
            code: CallErrorCode::NotSupported,
            description: format!("{action} is sent by the central system, not a station"),
        });
    }
    check(known, Part::Request, payload)?;
    Ok(known)
}

/// The CallError code for what a payload broke.
pub fn code_of(kind: ViolationKind) -> CallErrorCode {
    use CallErrorCode::*;
    match kind {
        ViolationKind::Type => TypeConstraintViolation,
        ViolationKind::Required | ViolationKind::Cardinality => OccurenceConstraintViolation,
        ViolationKind::Additional | ViolationKind::Syntax => FormationViolation,
        ViolationKind::Enum
        | ViolationKind::Length
        | ViolationKind::Range
        | ViolationKind::Format => PropertyConstraintViolation,
    }
}

/// The energy register in Wh from a meterValue array: the first sampled value of
/// `Energy.Active.Import.Register` (the measurand when none is named) on no particular phase,
/// scaled by its unit (Wh or kWh) and multiplier.
pub fn energy_wh(meter_value: &str) -> Option<f64> {
    let values: Vec<MeterValue<'_>> = serde_json::from_str(meter_value).ok()?;
    values
        .iter()
        .flat_map(|v| &v.sampled_value)
        .find(|s| {
            s.phase.is_none()
                && s.measurand
                    .as_deref()
                    .is_none_or(|m| m == "Energy.Active.Import.Register")
        })
        .map(|s| {
            let unit = s.unit_of_measure.as_ref();
            let scale = match unit.and_then(|u| u.unit.as_deref()) {
                Some("kWh") => 1000.0,
                _ => 1.0,
            };
            let multiplier = unit.and_then(|u| u.multiplier).unwrap_or(0);
            s.value * scale * 10f64.powi(multiplier)
        })
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct MeterValue<'a> {
    #[serde(borrow)]
    sampled_value: Vec<Sampled<'a>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sampled<'a> {
    value: f64,
    #[serde(borrow, default)]
    measurand: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    phase: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    unit_of_measure: Option<Unit<'a>>,
}

#[derive(serde::Deserialize)]
struct Unit<'a> {
    #[serde(borrow, default)]
    unit: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    multiplier: Option<i32>,
}

#[cfg(test)]
mod tests;
