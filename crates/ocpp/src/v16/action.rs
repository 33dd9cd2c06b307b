//! The 39 OCPP 1.6 actions in one table: name, who sends the CALL, request and response type,
//! and the message-level check where a schema has one. Everything that goes by action ([`Action`],
//! its direction, the [`Payload`] impls, [`validate_request`]/[`validate_response`]) is generated
//! from this table, so an action cannot be half added.

use serde_json::value::RawValue;

use super::core_messages::*;
use super::security_messages::*;
use super::{Invalid, Payload, Request, decode};

/// Who sends an action's CALL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sender {
    ChargePoint,
    CentralSystem,
    Both,
}

macro_rules! actions {
    (
        $(
            $action:ident: $sender:ident =>
                $request:ident $(check $check:path)?, $response:ident;
        )*
    ) => {
        /// An OCPP 1.6 action; its name is the schema file's name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Action {
            $( $action, )*
        }

        impl Action {
            /// Every action: the 28 core ones, then the 11 of the security whitepaper.
            pub const ALL: [Action; 39] = [$( Action::$action, )*];

            /// The action's position in [`Action::ALL`] (for per-action counters).
            pub fn index(self) -> usize {
                self as usize
            }

            /// The action's name as written in a CALL.
            pub fn name(self) -> &'static str {
                match self {
                    $( Action::$action => stringify!($action), )*
                }
            }

            /// The action with exactly this name (case-sensitive).
            pub fn from_name(name: &str) -> Option<Action> {
                match name {
                    $( stringify!($action) => Some(Action::$action), )*
                    _ => None,
                }
            }

            fn sender(self) -> Sender {
                match self {
                    $( Action::$action => Sender::$sender, )*
                }
            }
        }

        $(
            impl Payload for $request {
                const ACTION: Action = Action::$action;
                $(
                    fn check(&self) -> Result<(), Invalid> {
                        $check(self)
                    }
                )?
            }

            impl Payload for $response {
                const ACTION: Action = Action::$action;
            }

            impl Request for $request {
                type Response = $response;
            }
        )*

        /// Checks `payload` as a request of `action` without keeping it (for relaying).
        pub fn validate_request(action: Action, payload: &RawValue) -> Result<(), Invalid> {
            match action {
                $( Action::$action => decode::<$request>(payload).map(drop), )*
            }
        }

        /// Checks `payload` as a response to `action` without keeping it (for relaying).
        pub fn validate_response(action: Action, payload: &RawValue) -> Result<(), Invalid> {
            match action {
                $( Action::$action => decode::<$response>(payload).map(drop), )*
            }
        }
    };
}

actions! {
    // Core, charge point -> central system (DataTransfer goes both ways).
    Authorize: ChargePoint => AuthorizeRequest, AuthorizeResponse;
    BootNotification: ChargePoint => BootNotificationRequest, BootNotificationResponse;
    DataTransfer: Both => DataTransferRequest, DataTransferResponse;
    DiagnosticsStatusNotification: ChargePoint =>
        DiagnosticsStatusNotificationRequest, DiagnosticsStatusNotificationResponse;
    FirmwareStatusNotification: ChargePoint =>
        FirmwareStatusNotificationRequest, FirmwareStatusNotificationResponse;
    Heartbeat: ChargePoint => HeartbeatRequest, HeartbeatResponse;
    MeterValues: ChargePoint =>
        MeterValuesRequest check check_meter_values, MeterValuesResponse;
    StartTransaction: ChargePoint => StartTransactionRequest, StartTransactionResponse;
    StatusNotification: ChargePoint => StatusNotificationRequest, StatusNotificationResponse;
    StopTransaction: ChargePoint =>
        StopTransactionRequest check check_stop_transaction, StopTransactionResponse;

    // Core, central system -> charge point.
    CancelReservation: CentralSystem => CancelReservationRequest, CancelReservationResponse;
    ChangeAvailability: CentralSystem => ChangeAvailabilityRequest, ChangeAvailabilityResponse;
    ChangeConfiguration: CentralSystem =>
        ChangeConfigurationRequest, ChangeConfigurationResponse;
    ClearCache: CentralSystem => ClearCacheRequest, ClearCacheResponse;
    ClearChargingProfile: CentralSystem =>
        ClearChargingProfileRequest, ClearChargingProfileResponse;
    GetCompositeSchedule: CentralSystem =>
        GetCompositeScheduleRequest, GetCompositeScheduleResponse;
    GetConfiguration: CentralSystem => GetConfigurationRequest, GetConfigurationResponse;
    GetDiagnostics: CentralSystem => GetDiagnosticsRequest, GetDiagnosticsResponse;
    GetLocalListVersion: CentralSystem =>
        GetLocalListVersionRequest, GetLocalListVersionResponse;
    RemoteStartTransaction: CentralSystem =>
        RemoteStartTransactionRequest, RemoteStartTransactionResponse;
    RemoteStopTransaction: CentralSystem =>
        RemoteStopTransactionRequest, RemoteStopTransactionResponse;
    ReserveNow: CentralSystem => ReserveNowRequest, ReserveNowResponse;
    Reset: CentralSystem => ResetRequest, ResetResponse;
    SendLocalList: CentralSystem => SendLocalListRequest, SendLocalListResponse;
    SetChargingProfile: CentralSystem => SetChargingProfileRequest, SetChargingProfileResponse;
    TriggerMessage: CentralSystem => TriggerMessageRequest, TriggerMessageResponse;
    UnlockConnector: CentralSystem => UnlockConnectorRequest, UnlockConnectorResponse;
    UpdateFirmware: CentralSystem => UpdateFirmwareRequest, UpdateFirmwareResponse;

    // Security whitepaper, charge point -> central system.
    LogStatusNotification: ChargePoint =>
        LogStatusNotificationRequest, LogStatusNotificationResponse;
    SecurityEventNotification: ChargePoint =>
        SecurityEventNotificationRequest, SecurityEventNotificationResponse;
    SignCertificate: ChargePoint => SignCertificateRequest, SignCertificateResponse;
    SignedFirmwareStatusNotification: ChargePoint =>
        SignedFirmwareStatusNotificationRequest, SignedFirmwareStatusNotificationResponse;

    // Security whitepaper, central system -> charge point.
    CertificateSigned: CentralSystem => CertificateSignedRequest, CertificateSignedResponse;
    DeleteCertificate: CentralSystem => DeleteCertificateRequest, DeleteCertificateResponse;
    ExtendedTriggerMessage: CentralSystem =>
        ExtendedTriggerMessageRequest, ExtendedTriggerMessageResponse;
    GetInstalledCertificateIds: CentralSystem =>
        GetInstalledCertificateIdsRequest, GetInstalledCertificateIdsResponse;
    GetLog: CentralSystem => GetLogRequest, GetLogResponse;
    InstallCertificate: CentralSystem => InstallCertificateRequest, InstallCertificateResponse;
    SignedUpdateFirmware: CentralSystem =>
        SignedUpdateFirmwareRequest, SignedUpdateFirmwareResponse;
}

impl Action {
    /// Charge point -> central system (10 core + 4 security; DataTransfer is both).
    pub fn sent_by_charge_point(self) -> bool {
        matches!(self.sender(), Sender::ChargePoint | Sender::Both)
    }

    /// Central system -> charge point (19 core + 7 security; DataTransfer is both).
    pub fn sent_by_central_system(self) -> bool {
        matches!(self.sender(), Sender::CentralSystem | Sender::Both)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
