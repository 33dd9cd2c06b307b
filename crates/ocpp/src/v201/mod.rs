//! OCPP 2.0.1 and 2.1: their actions (2.0.1's 64, and the 26 CALLs and one SEND 2.1 adds), who
//! sends each, and every payload checked against the official schema of its edition (embedded
//! from `schemas/ocpp201/` and `schemas/ocpp21/`, compiled once on first use by
//! [`crate::schema`]) in both directions, with 2.0.1's CallError codes (2.1 keeps them).
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

/// Defines [`Action`]: each name is its variant, with its sender; 2.0.1's first (their schema
/// files in both editions), then those 2.1 added, then 2.1's SEND-only message.
macro_rules! actions {
    (
        v201: { $($name:ident = $sender:ident,)* }
        v21: { $($new:ident = $new_sender:ident,)* }
        send: { $send:ident }
    ) => {
        /// The actions of OCPP 2.0.1 (64) and those OCPP 2.1 adds (26 CALLs and a SEND).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Action { $($name,)* $($new,)* $send }

        impl Action {
            /// Every action: 2.0.1's in the order of their schema files' names, then 2.1's.
            pub const ALL: [Action; 91] = [$(Action::$name,)* $(Action::$new,)* Action::$send];

            /// The action's name on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$name => stringify!($name),)*
                    $(Action::$new => stringify!($new),)*
                    Action::$send => stringify!($send),
                }
            }

            /// Who may send it.
            pub fn sender(self) -> Sender {
                match self {
                    $(Action::$name => Sender::$sender,)*
                    $(Action::$new => Sender::$new_sender,)*
                    Action::$send => Sender::Station,
                }
            }

            /// It is an action of `edition` (2.0.1's are 2.1's too).
            pub fn in_edition(self, edition: Edition) -> bool {
                edition == Edition::V21 || (self as usize) < V201_ACTIONS
            }

            /// 2.1's SEND (type 6): sent, never answered.
            pub fn is_send(self) -> bool {
                self == Action::$send
            }

            /// Its request and response schema documents in `edition` (a SEND has one document,
            /// given for both; None when the edition has no such action).
            fn documents(self, edition: Edition) -> Option<[&'static str; 2]> {
                match (edition, self) {
                    $((Edition::V201, Action::$name) => Some([
                        include_str!(concat!("../../schemas/ocpp201/", stringify!($name), "Request.json")),
                        include_str!(concat!("../../schemas/ocpp201/", stringify!($name), "Response.json")),
                    ]),)*
                    $((Edition::V21, Action::$name) => Some([
                        include_str!(concat!("../../schemas/ocpp21/", stringify!($name), "Request.json")),
                        include_str!(concat!("../../schemas/ocpp21/", stringify!($name), "Response.json")),
                    ]),)*
                    $((Edition::V21, Action::$new) => Some([
                        include_str!(concat!("../../schemas/ocpp21/", stringify!($new), "Request.json")),
                        include_str!(concat!("../../schemas/ocpp21/", stringify!($new), "Response.json")),
                    ]),)*
                    (Edition::V21, Action::$send) => {
                        let only = include_str!(concat!("../../schemas/ocpp21/", stringify!($send), ".json"));
                        Some([only, only])
                    }
                    _ => None,
                }
            }
        }
    };
}

/// 2.0.1's actions come first in [`Action::ALL`].
const V201_ACTIONS: usize = 64;

/// The editions of the 2.x protocol that share [`Action`]: their payloads differ (2.1 mostly
/// extends 2.0.1's), each checked against its own schemas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Edition {
    V201,
    V21,
}

actions! {
    v201: {
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
    v21: {
    AFRRSignal = Csms,
    AdjustPeriodicEventStream = Csms,
    BatterySwap = Station,
    ChangeTransactionTariff = Csms,
    ClearDERControl = Csms,
    ClearTariffs = Csms,
    ClosePeriodicEventStream = Station,
    GetCertificateChainStatus = Station,
    GetDERControl = Csms,
    GetPeriodicEventStream = Csms,
    GetTariffs = Csms,
    NotifyAllowedEnergyTransfer = Csms,
    NotifyDERAlarm = Station,
    NotifyDERStartStop = Station,
    NotifyPriorityCharging = Station,
    NotifySettlement = Station,
    NotifyWebPaymentStarted = Csms,
    OpenPeriodicEventStream = Station,
    PullDynamicScheduleUpdate = Station,
    ReportDERControl = Station,
    RequestBatterySwap = Csms,
    SetDERControl = Csms,
    SetDefaultTariff = Csms,
    UpdateDynamicSchedule = Csms,
    UsePriorityCharging = Csms,
    VatNumberValidation = Station,
    }
    send: { NotifyPeriodicEventStream }
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

/// The two compiled schemas of every action of an edition, in [`Action::ALL`]'s order (None
/// for an action the edition does not have).
type Table = Vec<Option<[Schema; 2]>>;

/// Compiles an edition's schemas once. The embedded documents are checked by this crate's
/// tests, so a failure here is a build that should never have passed; it is still an error,
/// not a panic.
fn table(edition: Edition) -> Result<&'static Table, &'static CompileError> {
    static TABLES: [OnceLock<Result<Table, CompileError>>; 2] = [OnceLock::new(), OnceLock::new()];
    TABLES[edition as usize]
        .get_or_init(|| {
            Action::ALL
                .iter()
                .map(|action| {
                    let Some(documents) = action.documents(edition) else {
                        return Ok(None);
                    };
                    let [request, response] = documents.map(|text| {
                        let document = serde_json::from_str(text).map_err(|e| CompileError {
                            at: action.as_str().to_owned(),
                            reason: e.to_string(),
                        })?;
                        Schema::compile(&document)
                    });
                    Ok(Some([request?, response?]))
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

/// Checks one payload (JSON text) of a 2.0.1 `action` against its schema.
pub fn check(action: Action, part: Part, payload: &str) -> Result<(), Invalid> {
    check_in(Edition::V201, action, part, payload)
}

/// Checks one payload (JSON text) of `action` against its schema in `edition`.
pub fn check_in(
    edition: Edition,
    action: Action,
    part: Part,
    payload: &str,
) -> Result<(), Invalid> {
    let table = table(edition).map_err(|e| Invalid {
        code: CallErrorCode::InternalError,
        description: format!("the {} schemas did not compile: {e}", action.as_str()),
    })?;
    let Some(schemas) = &table[action.index()] else {
        return Err(Invalid {
            code: CallErrorCode::NotImplemented,
            description: format!("{} is not an action of this OCPP version", action.as_str()),
        });
    };
    schemas[part as usize]
        .check(payload)
        .map_err(|violation| Invalid {
            code: code_of(violation.kind),
            description: violation.to_string(),
        })
}

/// A CALL from a 2.0.1 station (see [`check_request_in`]).
pub fn check_request(action: &str, payload: &str) -> Result<Action, Invalid> {
    check_request_in(Edition::V201, action, payload)
}

/// A CALL from a station of `edition`: its action must be one of the edition's that a station
/// sends, and its payload valid. Unknown action (or one of a later edition, or 2.1's SEND sent
/// as a CALL): `NotImplemented`; one only the central system sends: `NotSupported`.
pub fn check_request_in(edition: Edition, action: &str, payload: &str) -> Result<Action, Invalid> {
    let known = Action::parse(action).filter(|a| a.in_edition(edition));
    check_request_as(edition, action, known, payload)
}

/// [`check_request_in`] for a caller that looked the action up already (`known`: the action
/// named `action` in `edition`, if there is one).
pub fn check_request_as(
    edition: Edition,
    action: &str,
    known: Option<Action>,
    payload: &str,
) -> Result<Action, Invalid> {
    let Some(known) = known.filter(|a| !a.is_send()) else {
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
    check_in(edition, known, Part::Request, payload)?;
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
