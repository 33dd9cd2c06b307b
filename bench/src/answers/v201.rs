//! How a simulated 2.0.1 station answers the central system's CALLs: every one of the 2.0.1
//! actions a CSMS sends gets a CALLRESULT valid against its response schema. The request is
//! checked against its schema first (a broken one is answered with the CallError a station
//! owes, counted by the caller). What the simulation acts on is answered as a station would
//! (Reset, RequestStart/StopTransaction, TriggerMessage, GetVariables, SetVariables,
//! ChangeAvailability, UnlockConnector); anything else is declined with the first refusal its
//! schema allows, so the bench never promises work it will not do.

use ocpp::rpc::CallErrorCode;
use ocpp::v201::{self, Action, Edition, Part};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::{Answer, ChargePointView, Effect, internal_error, result, status};
use crate::messages::{self, ConnectorStatus, Outgoing};

/// Variables a simulated station reports (GetVariables) and accepts (SetVariables), by
/// (component, variable); values are fixed.
const VARIABLES: [(&str, &str, &str); 5] = [
    ("OCPPCommCtrlr", "HeartbeatInterval", "300"),
    ("SampledDataCtrlr", "TxUpdatedInterval", "60"),
    ("OCPPCommCtrlr", "WebSocketPingInterval", "0"),
    ("AuthCtrlr", "AuthorizeRemoteStart", "false"),
    ("ChargingStation", "Model", "SimCP-1"),
];

/// The answers tried, in order, for an action the simulation does not act on: refusals
/// first, then the shapes of the few responses that carry no status.
const DECLINES: [&str; 10] = [
    r#"{"status":"Rejected"}"#,
    r#"{"status":"NotSupported"}"#,
    r#"{"status":"Unknown"}"#,
    r#"{"status":"NotFound"}"#,
    r#"{"status":"Failed"}"#,
    r#"{"status":"NoProfiles"}"#,
    r#"{"status":"NoFirmware"}"#,
    r#"{"versionNumber":0}"#,
    r#"{"messagesInQueue":false}"#,
    "{}",
];

/// Answers the 2.0.1 (or, `edition`, 2.1) CALL `action_name` with `payload`.
pub fn answer(
    edition: Edition,
    action_name: &str,
    payload: &RawValue,
    cp: ChargePointView,
) -> Answer {
    let Some(action) = Action::parse(action_name).filter(|a| a.in_edition(edition)) else {
        return Answer::Error {
            code: CallErrorCode::NotImplemented,
            description: format!("unknown action {action_name:?}"),
            peer_fault: true,
        };
    };
    if !action.from_csms() {
        return Answer::Error {
            code: CallErrorCode::NotSupported,
            description: format!("{action_name} is not sent by a central system"),
            peer_fault: true,
        };
    }
    if let Err(invalid) = v201::check_in(edition, action, Part::Request, payload.get()) {
        return Answer::Error {
            code: invalid.code,
            description: invalid.description,
            peer_fault: true,
        };
    }
    respond(edition, action, payload.get(), cp)
}

/// The answer to a request already checked against its schema.
fn respond(edition: Edition, action: Action, payload: &str, cp: ChargePointView) -> Answer {
    match action {
        Action::Reset => result(r#"{"status":"Accepted"}"#, Effect::Reboot),
        Action::ChangeAvailability => status("Accepted"),
        Action::UnlockConnector => status("Unlocked"),
        Action::RequestStartTransaction if cp.can_start => {
            result(r#"{"status":"Accepted"}"#, Effect::StartSession)
        }
        Action::RequestStartTransaction => status("Rejected"),
        Action::RequestStopTransaction => request_stop(payload, cp),
        Action::TriggerMessage => trigger(payload),
        Action::GetVariables => get_variables(payload),
        Action::SetVariables => set_variables(payload),
        Action::SetVariableMonitoring => set_monitoring(payload),
        Action::ClearVariableMonitoring => clear_monitoring(payload),
        // 2.1: no tariffs here to clear.
        Action::ClearTariffs => result(
            r#"{"clearTariffsResult":[{"status":"NoTariff"}]}"#,
            Effect::None,
        ),
        other => decline(edition, other),
    }
}

/// The first of [`DECLINES`] the response schema (of `edition`) takes.
fn decline(edition: Edition, action: Action) -> Answer {
    match DECLINES
        .into_iter()
        .find(|answer| v201::check_in(edition, action, Part::Response, answer).is_ok())
    {
        Some(answer) => result(answer, Effect::None),
        None => Answer::Error {
            code: CallErrorCode::NotImplemented,
            description: format!("ocpp-bench has no answer to {}", action.as_str()),
            peer_fault: false,
        },
    }
}

fn request_stop(payload: &str, cp: ChargePointView) -> Answer {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Stop<'a> {
        transaction_id: &'a str,
    }
    let ours = cp
        .transaction
        .map(|n| messages::transaction_id_201(cp.run_tag, n));
    match serde_json::from_str::<Stop<'_>>(payload) {
        Ok(stop) if ours.as_deref() == Some(stop.transaction_id) => {
            result(r#"{"status":"Accepted"}"#, Effect::StopSession)
        }
        // Not ours, or an id with escapes (never one of ours).
        _ => status("Rejected"),
    }
}

fn trigger(payload: &str) -> Answer {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Trigger<'a> {
        requested_message: &'a str,
        evse: Option<Evse>,
    }
    #[derive(Deserialize)]
    struct Evse {
        id: i64,
    }
    let Ok(request) = serde_json::from_str::<Trigger<'_>>(payload) else {
        return status("Rejected");
    };
    let evse = match request.evse.map(|e| e.id) {
        None => 1,
        Some(id @ (0 | 1)) => id as u8,
        Some(_) => return status("Rejected"),
    };
    let msg = match request.requested_message {
        "BootNotification" => Outgoing::BootNotification,
        "Heartbeat" => Outgoing::Heartbeat,
        "LogStatusNotification" => Outgoing::DiagnosticsStatusNotification,
        "FirmwareStatusNotification" => Outgoing::FirmwareStatusNotification,
        "StatusNotification" => Outgoing::StatusNotification {
            connector: evse.max(1),
            status: ConnectorStatus::Available,
        },
        "MeterValues" => Outgoing::MeterValues {
            connector: evse.max(1),
            transaction: None,
            meter_wh: 0,
            seq_no: 0,
        },
        _ => return status("NotImplemented"),
    };
    result(r#"{"status":"Accepted"}"#, Effect::Send(msg))
}

/// One component/variable pair of a Get/SetVariables request, echoed in its result.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    component: Value,
    variable: Value,
    attribute_type: Option<Value>,
}

impl Item {
    /// The fixed value of the variable it names, if the station has it (only the default
    /// "Actual" attribute, on no particular instance or EVSE).
    fn known(&self) -> Option<&'static str> {
        let name = |v: &Value| v.get("name").and_then(Value::as_str).map(str::to_owned);
        let plain = |v: &Value| v.get("instance").is_none() && v.get("evse").is_none();
        let actual = self
            .attribute_type
            .as_ref()
            .is_none_or(|t| t.as_str() == Some("Actual"));
        let (component, variable) = (name(&self.component)?, name(&self.variable)?);
        if !(actual && plain(&self.component) && plain(&self.variable)) {
            return None;
        }
        VARIABLES
            .iter()
            .find(|(c, v, _)| *c == component && *v == variable)
            .map(|(_, _, value)| *value)
    }

    fn result(self, status: &str, value: Option<&str>) -> Value {
        let mut out = serde_json::Map::new();
        out.insert("attributeStatus".into(), status.into());
        if let Some(t) = self.attribute_type {
            out.insert("attributeType".into(), t);
        }
        if let Some(value) = value {
            out.insert("attributeValue".into(), value.into());
        }
        out.insert("component".into(), self.component);
        out.insert("variable".into(), self.variable);
        out.into()
    }
}

fn get_variables(payload: &str) -> Answer {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Get {
        get_variable_data: Vec<Item>,
    }
    let request: Get = match serde_json::from_str(payload) {
        Ok(request) => request,
        Err(e) => return internal_error(e),
    };
    let results: Vec<Value> = request
        .get_variable_data
        .into_iter()
        .map(|item| match item.known() {
            Some(value) => item.result("Accepted", Some(value)),
            None => item.result("UnknownVariable", None),
        })
        .collect();
    to_answer(&serde_json::json!({ "getVariableResult": results }))
}

fn set_variables(payload: &str) -> Answer {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Set {
        set_variable_data: Vec<Item>,
    }
    let request: Set = match serde_json::from_str(payload) {
        Ok(request) => request,
        Err(e) => return internal_error(e),
    };
    let results: Vec<Value> = request
        .set_variable_data
        .into_iter()
        .map(|item| match item.known() {
            // The values are fixed: accepted and ignored, as a station that stores them would
            // not be observable here anyway.
            Some(_) => item.result("Accepted", None),
            None => item.result("UnknownVariable", None),
        })
        .collect();
    to_answer(&serde_json::json!({ "setVariableResult": results }))
}

/// No monitors are kept: each asked for is refused for its variable, echoing what identifies it.
fn set_monitoring(payload: &str) -> Answer {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Set {
        set_monitoring_data: Vec<Monitor>,
    }
    #[derive(Deserialize)]
    struct Monitor {
        id: Option<Value>,
        #[serde(rename = "type")]
        kind: Value,
        severity: Value,
        component: Value,
        variable: Value,
    }
    let request: Set = match serde_json::from_str(payload) {
        Ok(request) => request,
        Err(e) => return internal_error(e),
    };
    let results: Vec<Value> = request
        .set_monitoring_data
        .into_iter()
        .map(|m| {
            let mut out = serde_json::json!({
                "status": "UnknownVariable",
                "type": m.kind,
                "severity": m.severity,
                "component": m.component,
                "variable": m.variable,
            });
            if let Some(id) = m.id {
                out["id"] = id;
            }
            out
        })
        .collect();
    to_answer(&serde_json::json!({ "setMonitoringResult": results }))
}

/// No monitors are kept: every id asked for is not found.
fn clear_monitoring(payload: &str) -> Answer {
    #[derive(Deserialize)]
    struct Clear {
        id: Vec<i64>,
    }
    let request: Clear = match serde_json::from_str(payload) {
        Ok(request) => request,
        Err(e) => return internal_error(e),
    };
    let results: Vec<Value> = request
        .id
        .into_iter()
        .map(|id| serde_json::json!({ "status": "NotFound", "id": id }))
        .collect();
    to_answer(&serde_json::json!({ "clearMonitoringResult": results }))
}

fn to_answer(payload: &Value) -> Answer {
    match serde_json::value::to_raw_value(payload) {
        Ok(payload) => Answer::Result {
            payload,
            effect: Effect::None,
        },
        Err(e) => internal_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(name: &str, payload: &str, view: ChargePointView) -> (String, Effect) {
        let payload = RawValue::from_string(payload.to_owned()).unwrap();
        match answer(Edition::V201, name, &payload, view) {
            Answer::Result { payload, effect } => (payload.get().to_owned(), effect),
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn every_csms_action_gets_a_result_valid_against_its_schema() {
        for (edition, count) in [(Edition::V201, 40), (Edition::V21, 55)] {
            every_csms_action_in(edition, count);
        }
    }

    fn every_csms_action_in(edition: Edition, expected: usize) {
        let busy = ChargePointView {
            can_start: false,
            transaction: Some(3),
            run_tag: 0xAB,
        };
        let mut answered_count = 0;
        for action in Action::ALL
            .into_iter()
            .filter(|a| a.from_csms() && a.in_edition(edition))
        {
            for view in [ChargePointView::default(), busy] {
                // The request does not matter for a declined action; the acted-on ones are
                // tested with real requests below.
                let request = match action {
                    Action::GetVariables => {
                        r#"{"getVariableData":[{"component":{"name":"OCPPCommCtrlr"},"variable":{"name":"HeartbeatInterval"}}]}"#
                    }
                    Action::SetVariables => {
                        r#"{"setVariableData":[{"attributeValue":"1","component":{"name":"X"},"variable":{"name":"Y"}}]}"#
                    }
                    Action::TriggerMessage => r#"{"requestedMessage":"Heartbeat"}"#,
                    Action::RequestStopTransaction => r#"{"transactionId":"000000ab-3"}"#,
                    Action::ClearVariableMonitoring => r#"{"id":[4,5]}"#,
                    Action::SetVariableMonitoring => {
                        r#"{"setMonitoringData":[{"id":2,"value":1.5,"type":"UpperThreshold","severity":5,"component":{"name":"EVSE","evse":{"id":1}},"variable":{"name":"Power"}}]}"#
                    }
                    _ => "{}",
                };
                v201::check_in(edition, action, Part::Request, request)
                    .or_else(|e| if request == "{}" { Ok(()) } else { Err(e) })
                    .unwrap_or_else(|e| panic!("test request {}: {e:?}", action.as_str()));
                match respond(edition, action, request, view) {
                    Answer::Result { payload, .. } => {
                        let checked =
                            v201::check_in(edition, action, Part::Response, payload.get());
                        checked.unwrap_or_else(|e| {
                            panic!("{} -> {}: {e:?}", action.as_str(), payload.get())
                        });
                        answered_count += 1;
                    }
                    other => panic!("{}: {other:?}", action.as_str()),
                }
            }
        }
        // 2.0.1: 39 sent by the CSMS only, and DataTransfer, sent both ways; 2.1 adds 15.
        assert_eq!(
            answered_count,
            2 * expected,
            "every CSMS action, both views"
        );
    }

    #[test]
    fn what_the_simulation_acts_on() {
        let idle = ChargePointView {
            can_start: true,
            transaction: None,
            run_tag: 0xAB,
        };
        let busy = ChargePointView {
            can_start: false,
            transaction: Some(3),
            run_tag: 0xAB,
        };
        let start = r#"{"idToken":{"idToken":"T1","type":"ISO14443"},"remoteStartId":1}"#;
        assert_eq!(
            answered("RequestStartTransaction", start, idle).1,
            Effect::StartSession
        );
        assert_eq!(
            answered("RequestStartTransaction", start, busy),
            (r#"{"status":"Rejected"}"#.to_owned(), Effect::None)
        );
        let stop = |id: &str| format!(r#"{{"transactionId":"{id}"}}"#);
        assert_eq!(
            answered("RequestStopTransaction", &stop("000000ab-3"), busy).1,
            Effect::StopSession
        );
        assert_eq!(
            answered("RequestStopTransaction", &stop("000000ab-4"), busy).1,
            Effect::None
        );
        assert_eq!(
            answered("Reset", r#"{"type":"Immediate"}"#, busy).1,
            Effect::Reboot
        );
        assert_eq!(
            answered(
                "TriggerMessage",
                r#"{"requestedMessage":"StatusNotification","evse":{"id":1,"connectorId":1}}"#,
                busy
            )
            .1,
            Effect::Send(Outgoing::StatusNotification {
                connector: 1,
                status: ConnectorStatus::Available
            })
        );
        assert_eq!(
            answered(
                "TriggerMessage",
                r#"{"requestedMessage":"Heartbeat","evse":{"id":7}}"#,
                busy
            ),
            (r#"{"status":"Rejected"}"#.to_owned(), Effect::None)
        );
        let (payload, _) = answered(
            "GetVariables",
            r#"{"getVariableData":[{"component":{"name":"OCPPCommCtrlr"},"variable":{"name":"HeartbeatInterval"}},{"component":{"name":"OCPPCommCtrlr"},"variable":{"name":"Nope"}}]}"#,
            busy,
        );
        let results: Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(results["getVariableResult"][0]["attributeValue"], "300");
        assert_eq!(
            results["getVariableResult"][1]["attributeStatus"],
            "UnknownVariable"
        );
        v201::check(Action::GetVariables, Part::Response, &payload).unwrap();
    }
}
