//! The integration events of OCPP 2.0.1 stations: the same event types as 1.6's, so one
//! consumer of `ocpp-events-up` handles both (the envelope's `ocppVersion` says which):
//!
//! - an accepted BootNotification: `charge_point.connected` (trigger `boot`; vendor, model,
//!   firmware and serial number from `chargingStation`); a connect of a booted station the same
//!   with trigger `connect`;
//! - StatusNotification: `connector.status_changed` with `evseId` and `connectorId`;
//! - TransactionEvent: `transaction.started` (Started), `transaction.meter_values` (Updated with
//!   meter values), `transaction.stopped` (Ended). `transactionId` is the station's string,
//!   `seqNo`, `triggerReason` and `offline` come along, and the energy register (Wh) is read
//!   from the event's meter values when it carries one.
//!
//! The payloads were checked against the official schemas before they were answered: a field
//! read here is there and of its type.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{Result, write};
use ocpp::v201::read::{BootNotification, StatusNotification, TransactionEvent, read};
use ocpp::v201::{self, Action};

/// The `eventType` of an accepted 2.0.1 CALL, if it makes one.
pub(super) fn event_type(action: Action, request: &str, answer: &str) -> Option<&'static str> {
    Some(match action {
        Action::BootNotification if super::status_accepted(answer) => "charge_point.connected",
        Action::StatusNotification => "connector.status_changed",
        Action::SignCertificate if super::status_accepted(answer) => "certificate.sign_requested",
        action if crate::events::is_new_in_21(action) => "charge_point.message",
        Action::TransactionEvent => {
            let event: TransactionEvent<'_> = read(request).ok()?;
            match &*event.event_type {
                "Started" => "transaction.started",
                "Updated" if event.meter_value.is_some() => "transaction.meter_values",
                "Ended" => "transaction.stopped",
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// The payload of the event [`event_type`] named.
pub(super) fn payload(
    out: &mut Vec<u8>,
    (unique_id, action): (&str, Action),
    (request, answer): (&str, &str),
    previous_status: Option<&str>,
) -> Result {
    match action {
        Action::SignCertificate => super::sign_requested(out, unique_id, request),
        action if crate::events::is_new_in_21(action) => write(
            out,
            &Message {
                unique_id,
                action: action.as_str(),
                request: serde_json::from_str(request)?,
                answer: (!answer.is_empty())
                    .then(|| serde_json::from_str(answer))
                    .transpose()?,
            },
        ),
        Action::BootNotification => connected(out, request, "boot", None),
        Action::StatusNotification => {
            let r: StatusNotification<'_> = read(request)?;
            write(
                out,
                &StatusChanged {
                    evse_id: r.evse_id,
                    connector_id: r.connector_id,
                    status: r.connector_status,
                    previous_status,
                    status_timestamp: r.timestamp,
                },
            )
        }
        Action::TransactionEvent => transaction(out, request, answer),
        _ => write(out, &()),
    }
}

/// `charge_point.connected` from a 2.0.1 BootNotification payload.
pub(super) fn connected(
    out: &mut Vec<u8>,
    boot: &str,
    trigger: &str,
    remote_address: Option<&str>,
) -> Result {
    let boot: BootNotification<'_> = read(boot)?;
    let station = &boot.charging_station;
    write(
        out,
        &super::Connected {
            trigger,
            vendor: Some(&station.vendor_name),
            model: Some(&station.model),
            firmware_version: station.firmware_version.as_deref(),
            serial_number: station.serial_number.as_deref(),
            remote_address,
        },
    )
}

fn transaction(out: &mut Vec<u8>, request: &str, answer: &str) -> Result {
    let r: TransactionEvent<'_> = read(request)?;
    let evse_id = r.evse.as_ref().map(|e| e.id);
    let connector_id = r.evse.as_ref().and_then(|e| e.connector_id);
    let energy = r.meter_value.and_then(|m| v201::energy_wh(m.get()));
    let id_tag = r.id_token.as_ref().map(|t| &*t.id_token);
    let common = Common {
        transaction_id: &r.transaction_info.transaction_id,
        seq_no: r.seq_no,
        trigger_reason: &r.trigger_reason,
        offline: r.offline,
    };
    match &*r.event_type {
        "Started" => {
            let a: Answer<'_> = serde_json::from_str(answer)?;
            write(
                out,
                &Started {
                    evse_id,
                    connector_id,
                    id_tag,
                    id_token_type: r.id_token.as_ref().map(|t| &*t.kind),
                    id_tag_status: a.id_token_info.map(|i| i.status),
                    meter_start_wh: energy,
                    start_timestamp: &r.timestamp,
                    charging_state: r.transaction_info.charging_state.as_deref(),
                    common,
                },
            )
        }
        "Ended" => write(
            out,
            &Stopped {
                // 2.0.1 (as 1.6): an absent stoppedReason means Local.
                reason: r
                    .transaction_info
                    .stopped_reason
                    .as_deref()
                    .unwrap_or("Local"),
                meter_stop_wh: energy,
                stop_timestamp: &r.timestamp,
                id_tag,
                transaction_data: r.meter_value,
                common,
            },
        ),
        _ => write(
            out,
            &MeterValues {
                evse_id,
                connector_id,
                meter_values: r.meter_value,
                common,
            },
        ),
    }
}

// ---- read from the station's payloads ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer<'a> {
    #[serde(borrow, default)]
    id_token_info: Option<IdTokenInfo<'a>>,
}

#[derive(Deserialize)]
struct IdTokenInfo<'a> {
    #[serde(borrow)]
    status: Cow<'a, str>,
}

// ---- written into the events ----

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusChanged<'a> {
    evse_id: i64,
    connector_id: i64,
    status: Cow<'a, str>,
    /// The connector's status before (null: none known).
    previous_status: Option<&'a str>,
    status_timestamp: Cow<'a, str>,
}

/// What every transaction event of a 2.0.1 station carries.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Common<'a> {
    transaction_id: &'a str,
    seq_no: i64,
    trigger_reason: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    offline: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Started<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    evse_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connector_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_tag: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_tag_status: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    meter_start_wh: Option<f64>,
    start_timestamp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    charging_state: Option<&'a str>,
    #[serde(flatten)]
    common: Common<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MeterValues<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    evse_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connector_id: Option<i64>,
    meter_values: Option<&'a RawValue>,
    #[serde(flatten)]
    common: Common<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Stopped<'a> {
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    meter_stop_wh: Option<f64>,
    stop_timestamp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_tag: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction_data: Option<&'a RawValue>,
    #[serde(flatten)]
    common: Common<'a>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(
        action: Action,
        request: &str,
        answer: &str,
    ) -> (Option<&'static str>, serde_json::Value) {
        let kind = event_type(action, request, answer);
        let mut out = Vec::new();
        payload(
            &mut out,
            ("u1", action),
            (request, answer),
            Some("Available"),
        )
        .expect("renders");
        (kind, serde_json::from_slice(&out).expect("JSON"))
    }

    #[test]
    fn a_transaction_makes_started_meter_values_and_stopped() {
        let started = r#"{"eventType":"Started","timestamp":"2026-12-06T10:00:00Z","triggerReason":"Authorized","seqNo":0,"transactionInfo":{"transactionId":"TX-1","chargingState":"Charging"},"evse":{"id":1,"connectorId":2},"idToken":{"idToken":"TAG","type":"ISO14443"},"meterValue":[{"timestamp":"2026-12-06T10:00:00Z","sampledValue":[{"value":1.5,"unitOfMeasure":{"unit":"kWh"}}]}]}"#;
        let (kind, event) = render(
            Action::TransactionEvent,
            started,
            r#"{"idTokenInfo":{"status":"Accepted"}}"#,
        );
        assert_eq!(kind, Some("transaction.started"));
        assert_eq!(
            event,
            serde_json::json!({"evseId": 1, "connectorId": 2, "idTag": "TAG",
                "idTokenType": "ISO14443", "idTagStatus": "Accepted", "meterStartWh": 1500.0,
                "startTimestamp": "2026-12-06T10:00:00Z", "chargingState": "Charging",
                "transactionId": "TX-1", "seqNo": 0, "triggerReason": "Authorized"})
        );
        let updated = r#"{"eventType":"Updated","timestamp":"2026-12-06T10:05:00Z","triggerReason":"MeterValuePeriodic","seqNo":1,"offline":true,"transactionInfo":{"transactionId":"TX-1"},"meterValue":[{"timestamp":"2026-12-06T10:05:00Z","sampledValue":[{"value":2000}]}]}"#;
        let (kind, event) = render(Action::TransactionEvent, updated, "{}");
        assert_eq!(kind, Some("transaction.meter_values"));
        assert_eq!(
            (&event["offline"], &event["seqNo"]),
            (&serde_json::json!(true), &serde_json::json!(1))
        );
        let quiet = r#"{"eventType":"Updated","timestamp":"2026-12-06T10:05:00Z","triggerReason":"ChargingStateChanged","seqNo":2,"transactionInfo":{"transactionId":"TX-1"}}"#;
        assert_eq!(event_type(Action::TransactionEvent, quiet, "{}"), None);
        let ended = r#"{"eventType":"Ended","timestamp":"2026-12-06T11:00:00Z","triggerReason":"EVCommunicationLost","seqNo":3,"transactionInfo":{"transactionId":"TX-1"},"meterValue":[{"timestamp":"2026-12-06T11:00:00Z","sampledValue":[{"value":9,"measurand":"Power.Active.Import"},{"value":5,"unitOfMeasure":{"unit":"Wh","multiplier":3}}]}]}"#;
        let (kind, event) = render(Action::TransactionEvent, ended, "{}");
        assert_eq!(kind, Some("transaction.stopped"));
        assert_eq!(
            (&event["reason"], &event["meterStopWh"]),
            (&serde_json::json!("Local"), &serde_json::json!(5000.0))
        );
    }

    #[test]
    fn a_boot_and_a_status_make_their_events() {
        let boot = r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V","serialNumber":"S"}}"#;
        let (kind, event) = render(
            Action::BootNotification,
            boot,
            r#"{"currentTime":"2026-12-06T10:00:00Z","interval":300,"status":"Accepted"}"#,
        );
        assert_eq!(kind, Some("charge_point.connected"));
        assert_eq!(
            (&event["vendor"], &event["serialNumber"]),
            (&serde_json::json!("V"), &serde_json::json!("S"))
        );
        let pending = r#"{"currentTime":"2026-12-06T10:00:00Z","interval":300,"status":"Pending"}"#;
        assert_eq!(event_type(Action::BootNotification, boot, pending), None);
        let status = r#"{"timestamp":"2026-12-06T10:00:00Z","connectorStatus":"Occupied","evseId":1,"connectorId":1}"#;
        let (kind, event) = render(Action::StatusNotification, status, "{}");
        assert_eq!(kind, Some("connector.status_changed"));
        assert_eq!(
            (&event["evseId"], &event["status"]),
            (&serde_json::json!(1), &serde_json::json!("Occupied"))
        );
        assert_eq!(event["previousStatus"], "Available");
    }
}

/// `charge_point.message`: a station message 2.1 added, as sent and as answered (a SEND has
/// no answer).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Message<'a> {
    unique_id: &'a str,
    action: &'static str,
    /// Borrowed from the event: written as it came, not copied.
    request: &'a serde_json::value::RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer: Option<&'a serde_json::value::RawValue>,
}
