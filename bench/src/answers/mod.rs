//! How a simulated charge point answers the central system's CALLs: all 26 OCPP 1.6 actions a
//! central system sends (19 core, 7 security) get a schema-valid CALLRESULT, as a cooperative
//! charge point would give ([`v201`] does the same for 2.0.1). The request is checked first with
//! the gateway's own validation, and a broken one is answered with the CallError a real charge
//! point owes (and counted by the caller, since the gateway should never send one). Pure: the
//! caller passes the charge point's state in and applies the returned [`Effect`].

pub mod v201;

use ocpp::Version;
use ocpp::rpc::CallErrorCode;
use ocpp::v16::{
    self, Action, ExtendedMessageTrigger, ExtendedTriggerMessageRequest, GetConfigurationRequest,
    MessageTrigger, RemoteStartTransactionRequest, RemoteStopTransactionRequest,
    TriggerMessageRequest,
};
use ocpp::v201::Edition;
use serde_json::value::RawValue;

use crate::messages::{ConnectorStatus, Outgoing};

/// Configuration keys a simulated charge point reports (GetConfiguration) and accepts
/// (ChangeConfiguration); values are fixed.
const CONFIGURATION: [(&str, &str); 8] = [
    ("HeartbeatInterval", "300"),
    ("MeterValueSampleInterval", "60"),
    ("NumberOfConnectors", "1"),
    ("ConnectionTimeOut", "60"),
    ("WebSocketPingInterval", "0"),
    ("AuthorizeRemoteTxRequests", "false"),
    ("LocalAuthorizeOffline", "true"),
    ("MeterValuesSampledData", "Energy.Active.Import.Register"),
];

/// What the charge point's answer depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChargePointView {
    /// A RemoteStartTransaction would start a session now.
    pub can_start: bool,
    /// The transaction in progress.
    pub transaction: Option<i64>,
    /// The run's tag, part of a 2.0.1 transaction id ([`crate::messages::Writer`]).
    pub run_tag: u32,
}

/// What the charge point does after answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    /// Start a charging session (RemoteStartTransaction accepted).
    StartSession,
    /// End the session in progress (RemoteStopTransaction accepted).
    StopSession,
    /// Reboot: close, reconnect, boot again (Reset accepted).
    Reboot,
    /// Send this message next (TriggerMessage accepted).
    Send(Outgoing),
}

/// The answer to one CALL of the central system.
#[derive(Debug)]
pub enum Answer {
    Result {
        payload: Box<RawValue>,
        effect: Effect,
    },
    Error {
        code: CallErrorCode,
        description: String,
        /// The gateway sent something no central system should: count it.
        peer_fault: bool,
    },
}

fn result(payload: &str, effect: Effect) -> Answer {
    match RawValue::from_string(payload.to_owned()) {
        Ok(payload) => Answer::Result { payload, effect },
        Err(e) => internal_error(e),
    }
}

fn internal_error(e: impl std::fmt::Display) -> Answer {
    Answer::Error {
        code: CallErrorCode::InternalError,
        description: format!("ocpp-bench could not build its answer: {e}"),
        peer_fault: false,
    }
}

fn status(status: &str) -> Answer {
    result(&format!(r#"{{"status":"{status}"}}"#), Effect::None)
}

/// Answers the CALL `action_name` with `payload`, sent to a charge point speaking `version`.
pub fn answer_in(
    version: Version,
    action_name: &str,
    payload: &RawValue,
    cp: ChargePointView,
) -> Answer {
    match version {
        Version::V16 => answer(action_name, payload, cp),
        Version::V201 => v201::answer(Edition::V201, action_name, payload, cp),
        Version::V21 => v201::answer(Edition::V21, action_name, payload, cp),
    }
}

/// Answers the 1.6 CALL `action_name` with `payload`.
pub fn answer(action_name: &str, payload: &RawValue, cp: ChargePointView) -> Answer {
    let Some(action) = Action::from_name(action_name) else {
        return Answer::Error {
            code: CallErrorCode::NotImplemented,
            description: format!("unknown action {action_name:?}"),
            peer_fault: true,
        };
    };
    if !action.sent_by_central_system() {
        return Answer::Error {
            code: CallErrorCode::NotSupported,
            description: format!("{action_name} is not sent by a central system"),
            peer_fault: true,
        };
    }
    if let Err(invalid) = v16::validate_request(action, payload) {
        return Answer::Error {
            code: invalid.code,
            description: invalid.description,
            peer_fault: true,
        };
    }
    match action {
        Action::CancelReservation => status("Rejected"),
        Action::ChangeAvailability => status("Accepted"),
        Action::ChangeConfiguration => change_configuration(payload),
        Action::ClearCache => status("Accepted"),
        Action::ClearChargingProfile => status("Unknown"),
        Action::DataTransfer => status("UnknownVendorId"),
        Action::GetCompositeSchedule => status("Rejected"),
        Action::GetConfiguration => get_configuration(payload),
        Action::GetDiagnostics => result("{}", Effect::None),
        Action::GetLocalListVersion => result(r#"{"listVersion":0}"#, Effect::None),
        Action::RemoteStartTransaction => remote_start(payload, cp),
        Action::RemoteStopTransaction => remote_stop(payload, cp),
        Action::ReserveNow => status("Rejected"),
        Action::Reset => result(r#"{"status":"Accepted"}"#, Effect::Reboot),
        Action::SendLocalList => status("NotSupported"),
        Action::SetChargingProfile => status("Accepted"),
        Action::TriggerMessage => trigger(payload),
        Action::UnlockConnector => status("Unlocked"),
        Action::UpdateFirmware => result("{}", Effect::None),
        Action::CertificateSigned => status("Rejected"),
        Action::DeleteCertificate => status("NotFound"),
        Action::ExtendedTriggerMessage => extended_trigger(payload),
        Action::GetInstalledCertificateIds => status("NotFound"),
        Action::GetLog => status("Rejected"),
        Action::InstallCertificate => status("Rejected"),
        Action::SignedUpdateFirmware => status("Rejected"),
        // Sent by charge points only: refused above.
        Action::Authorize
        | Action::BootNotification
        | Action::DiagnosticsStatusNotification
        | Action::FirmwareStatusNotification
        | Action::Heartbeat
        | Action::MeterValues
        | Action::StartTransaction
        | Action::StatusNotification
        | Action::StopTransaction
        | Action::LogStatusNotification
        | Action::SecurityEventNotification
        | Action::SignCertificate
        | Action::SignedFirmwareStatusNotification => Answer::Error {
            code: CallErrorCode::NotSupported,
            description: format!("{action_name} is not sent by a central system"),
            peer_fault: true,
        },
    }
}

fn change_configuration(payload: &RawValue) -> Answer {
    #[derive(serde::Deserialize)]
    struct Change<'a> {
        key: &'a str,
    }
    match serde_json::from_str::<Change<'_>>(payload.get()) {
        Ok(change) if CONFIGURATION.iter().any(|(k, _)| *k == change.key) => status("Accepted"),
        Ok(_) => status("NotSupported"),
        // Validated already; a key with escapes does not borrow, and is no key of ours.
        Err(_) => status("NotSupported"),
    }
}

fn get_configuration(payload: &RawValue) -> Answer {
    let request: GetConfigurationRequest = match v16::decode(payload) {
        Ok(request) => request,
        Err(invalid) => return internal_error(invalid.description),
    };
    let entry = |(key, value): &(&str, &str)| serde_json::json!({"key": key, "readonly": true, "value": value});
    let payload = match request.key.as_deref() {
        None | Some([]) => serde_json::json!({
            "configurationKey": CONFIGURATION.iter().map(entry).collect::<Vec<_>>(),
        }),
        Some(keys) => {
            let (mut known, mut unknown) = (Vec::new(), Vec::new());
            for key in keys {
                match CONFIGURATION.iter().find(|(k, _)| *k == key.as_str()) {
                    Some(item) => known.push(entry(item)),
                    None => unknown.push(serde_json::Value::from(key.as_str())),
                }
            }
            let mut payload = serde_json::Map::new();
            if !known.is_empty() {
                payload.insert("configurationKey".into(), known.into());
            }
            if !unknown.is_empty() {
                payload.insert("unknownKey".into(), unknown.into());
            }
            payload.into()
        }
    };
    match serde_json::value::to_raw_value(&payload) {
        Ok(payload) => Answer::Result {
            payload,
            effect: Effect::None,
        },
        Err(e) => internal_error(e),
    }
}

fn remote_start(payload: &RawValue, cp: ChargePointView) -> Answer {
    let request: RemoteStartTransactionRequest = match v16::decode(payload) {
        Ok(request) => request,
        Err(invalid) => return internal_error(invalid.description),
    };
    // One connector (1); 0 and absent mean "the charge point chooses".
    let connector_ok = matches!(request.connector_id, None | Some(0 | 1));
    if cp.can_start && connector_ok {
        result(r#"{"status":"Accepted"}"#, Effect::StartSession)
    } else {
        status("Rejected")
    }
}

fn remote_stop(payload: &RawValue, cp: ChargePointView) -> Answer {
    let request: RemoteStopTransactionRequest = match v16::decode(payload) {
        Ok(request) => request,
        Err(invalid) => return internal_error(invalid.description),
    };
    if cp.transaction == Some(request.transaction_id) {
        result(r#"{"status":"Accepted"}"#, Effect::StopSession)
    } else {
        status("Rejected")
    }
}

fn trigger(payload: &RawValue) -> Answer {
    let request: TriggerMessageRequest = match v16::decode(payload) {
        Ok(request) => request,
        Err(invalid) => return internal_error(invalid.description),
    };
    let connector = connector_of(request.connector_id);
    let msg = match request.requested_message {
        MessageTrigger::BootNotification => Outgoing::BootNotification,
        MessageTrigger::DiagnosticsStatusNotification => Outgoing::DiagnosticsStatusNotification,
        MessageTrigger::FirmwareStatusNotification => Outgoing::FirmwareStatusNotification,
        MessageTrigger::Heartbeat => Outgoing::Heartbeat,
        MessageTrigger::MeterValues => meter_values(connector),
        MessageTrigger::StatusNotification => status_notification(connector),
    };
    triggered(connector, msg)
}

fn extended_trigger(payload: &RawValue) -> Answer {
    let request: ExtendedTriggerMessageRequest = match v16::decode(payload) {
        Ok(request) => request,
        Err(invalid) => return internal_error(invalid.description),
    };
    let connector = connector_of(request.connector_id);
    let msg = match request.requested_message {
        ExtendedMessageTrigger::BootNotification => Outgoing::BootNotification,
        ExtendedMessageTrigger::Heartbeat => Outgoing::Heartbeat,
        ExtendedMessageTrigger::MeterValues => meter_values(connector),
        ExtendedMessageTrigger::StatusNotification => status_notification(connector),
        ExtendedMessageTrigger::FirmwareStatusNotification
        | ExtendedMessageTrigger::LogStatusNotification
        | ExtendedMessageTrigger::SignChargePointCertificate => {
            return status("NotImplemented");
        }
    };
    triggered(connector, msg)
}

/// The connector a trigger names: None when it names one this charge point does not have.
fn connector_of(requested: Option<i64>) -> Option<u8> {
    match requested {
        None => Some(1),
        Some(c @ (0 | 1)) => Some(c as u8),
        Some(_) => None,
    }
}

fn triggered(connector: Option<u8>, msg: Outgoing) -> Answer {
    match connector {
        Some(_) => result(r#"{"status":"Accepted"}"#, Effect::Send(msg)),
        None => status("Rejected"),
    }
}

fn meter_values(connector: Option<u8>) -> Outgoing {
    Outgoing::MeterValues {
        connector: connector.unwrap_or(1).max(1),
        transaction: None,
        meter_wh: 0,
        seq_no: 0,
    }
}

fn status_notification(connector: Option<u8>) -> Outgoing {
    Outgoing::StatusNotification {
        connector: connector.unwrap_or(1),
        status: ConnectorStatus::Available,
    }
}

#[cfg(test)]
mod tests {
    use ocpp::v16::validate_response;

    use super::*;

    /// A valid request for each of the 26 actions a central system sends (shared with the
    /// smoke test, which sends them through a real gateway).
    pub(crate) fn requests() -> Vec<(String, String)> {
        let table: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(include_str!("../../tests/central_system_calls.json"))
                .expect("the request table is JSON");
        table
            .into_iter()
            .map(|(name, payload)| (name, payload.to_string()))
            .collect()
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn every_central_system_action_gets_a_valid_result() {
        let sent: Vec<_> = Action::ALL
            .into_iter()
            .filter(|a| a.sent_by_central_system())
            .collect();
        let requests = requests();
        assert_eq!(sent.len(), requests.len());
        for view in [
            ChargePointView::default(),
            ChargePointView {
                can_start: true,
                transaction: Some(42),
                run_tag: 0,
            },
        ] {
            for (name, request) in &requests {
                let action = Action::from_name(name).unwrap();
                v16::validate_request(action, &raw(request))
                    .unwrap_or_else(|e| panic!("test request {name}: {e:?}"));
                match answer(name, &raw(request), view) {
                    Answer::Result { payload, .. } => validate_response(action, &payload)
                        .unwrap_or_else(|e| panic!("{name} -> {}: {e:?}", payload.get())),
                    other => panic!("{name}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn effects_follow_the_charge_point_state() {
        let busy = ChargePointView {
            can_start: false,
            transaction: Some(42),
            run_tag: 0,
        };
        let effect = |name: &str, payload: &str, view| match answer(name, &raw(payload), view) {
            Answer::Result { payload, effect } => (payload.get().to_owned(), effect),
            other => panic!("{other:?}"),
        };
        let (payload, e) = effect("RemoteStartTransaction", r#"{"idTag":"T"}"#, busy);
        assert_eq!(
            (payload.as_str(), e),
            (r#"{"status":"Rejected"}"#, Effect::None)
        );
        let (_, e) = effect("RemoteStopTransaction", r#"{"transactionId":42}"#, busy);
        assert_eq!(e, Effect::StopSession);
        let (payload, _) = effect("RemoteStopTransaction", r#"{"transactionId":7}"#, busy);
        assert_eq!(payload, r#"{"status":"Rejected"}"#);
        let (_, e) = effect("Reset", r#"{"type":"Hard"}"#, busy);
        assert_eq!(e, Effect::Reboot);
        let (_, e) = effect(
            "TriggerMessage",
            r#"{"requestedMessage":"Heartbeat"}"#,
            busy,
        );
        assert_eq!(e, Effect::Send(Outgoing::Heartbeat));
        let (payload, _) = effect(
            "TriggerMessage",
            r#"{"requestedMessage":"Heartbeat","connectorId":5}"#,
            busy,
        );
        assert_eq!(payload, r#"{"status":"Rejected"}"#);
        let (payload, _) = effect("GetConfiguration", "{}", busy);
        assert!(payload.contains("MeterValueSampleInterval"), "{payload}");
    }

    #[test]
    fn wrong_calls_get_the_call_error_a_charge_point_owes() {
        for version in [Version::V16, Version::V201] {
            let code = |name: &str, payload: &str| match answer_in(
                version,
                name,
                &raw(payload),
                Default::default(),
            ) {
                Answer::Error {
                    code, peer_fault, ..
                } => {
                    assert!(peer_fault);
                    code
                }
                other => panic!("{version:?} {name}: {other:?}"),
            };
            assert_eq!(code("Frobnicate", "{}"), CallErrorCode::NotImplemented);
            assert_eq!(code("Heartbeat", "{}"), CallErrorCode::NotSupported);
            assert_eq!(
                code("Reset", "{}"),
                CallErrorCode::OccurenceConstraintViolation
            );
            assert_eq!(
                code("Reset", r#"{"type":"Sideways"}"#),
                CallErrorCode::PropertyConstraintViolation
            );
        }
    }
}
