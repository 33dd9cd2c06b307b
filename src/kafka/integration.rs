//! Events as the backend teams consume them: one JSON object per Kafka message,
//! `{"eventId","eventType","chargePointId","gatewayId","timestamp","payload"}` (the README's
//! "Kafka" section lists every event type and its payload).
//!
//! Rendered on the producer's thread (a processor) from the same [`Event`]s the journal gets:
//! the CALL's JSON is read again here only for the actions that make an integration event, and
//! only the fields the event carries are taken from it.

use std::borrow::Cow;
use std::io::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::events::{Answer, Body, Event, EventKind, PAYLOAD_PREFIX};
use ocpp::rpc::push_json_str;
mod v201;
use crate::types::Version;
use ocpp::v16::Action;

/// Where the envelope's fields come from besides the event.
pub struct Envelope<'a> {
    /// `eventId`: `{id_prefix}{n}` (the prefix names the node, its start and the writer).
    pub id_prefix: &'a str,
    pub n: u64,
    pub gateway: &'a str,
    /// The event's time, RFC 3339 with milliseconds.
    pub timestamp: &'a str,
}

/// What [`render`] made of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendered {
    /// An integration event, appended.
    Event,
    /// The event makes none (nothing appended).
    Nothing,
    /// It should have made one, but its payload is not what this gateway reads (nothing
    /// appended).
    Failed,
}

/// Appends the integration event for `event` to `out` (`raw_frames`: OCPP frames make
/// `ocpp.frame` events).
pub fn render(
    out: &mut Vec<u8>,
    envelope: &Envelope<'_>,
    event: &Event<'_>,
    raw_frames: bool,
) -> Rendered {
    let start = out.len();
    let Some(kind) = event_type(event, raw_frames) else {
        return Rendered::Nothing;
    };
    out.extend_from_slice(b"{\"eventId\":\"");
    let _ = write!(out, "{}{}", envelope.id_prefix, envelope.n);
    out.extend_from_slice(b"\",\"eventType\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"chargePointId\":");
    push_json_str(out, event.cp);
    out.extend_from_slice(b",\"gatewayId\":");
    push_json_str(out, envelope.gateway);
    out.extend_from_slice(b",\"timestamp\":");
    push_json_str(out, envelope.timestamp);
    if let Some(version) = version_of(&event.kind) {
        out.extend_from_slice(b",\"ocppVersion\":\"");
        out.extend_from_slice(version.as_str().as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b",\"payload\":");
    if payload(out, event).is_err() {
        // No half event goes out.
        out.truncate(start);
        return Rendered::Failed;
    }
    out.push(b'}');
    Rendered::Event
}

/// The OCPP version an event is in, where it says (`ocppVersion` in the envelope).
fn version_of(kind: &EventKind<'_>) -> Option<Version> {
    match *kind {
        EventKind::CallOut { action, .. } if is_certificate_signed(action) => {
            Some(action.version())
        }
        EventKind::Connected { version, .. } => Some(version),
        EventKind::Accepted { .. } => Some(Version::V16),
        EventKind::Accepted201 { version, .. } => Some(version),
        _ => None,
    }
}

/// The `eventType` of `event`, if it makes one.
fn event_type(event: &Event<'_>, raw_frames: bool) -> Option<&'static str> {
    Some(match event.kind {
        EventKind::Accepted201 {
            action,
            request,
            answer,
            ..
        } => return v201::event_type(action, request, answer),
        EventKind::Connected { .. } => "charge_point.connected",
        EventKind::Disconnected { .. } => "charge_point.disconnected",
        EventKind::CallOut { action, .. } if is_certificate_signed(action) => "certificate.signed",
        EventKind::Accepted { action, answer, .. } => match action {
            Action::BootNotification if status_accepted(answer) => "charge_point.connected",
            Action::SignCertificate if status_accepted(answer) => "certificate.sign_requested",
            Action::StatusNotification => "connector.status_changed",
            Action::StartTransaction => "transaction.started",
            Action::MeterValues => "transaction.meter_values",
            Action::StopTransaction => "transaction.stopped",
            _ => return None,
        },
        EventKind::CallIn { .. }
        | EventKind::AnswerOut { .. }
        | EventKind::CallOut { .. }
        | EventKind::ResultIn { .. }
        | EventKind::ErrorIn { .. }
            if raw_frames =>
        {
            "ocpp.frame"
        }
        _ => return None,
    })
}

fn is_certificate_signed(action: ocpp::AnyAction) -> bool {
    action.name() == "CertificateSigned"
}

/// A request's or answer's `status` is "Accepted".
pub(super) fn status_accepted(answer: &str) -> bool {
    #[derive(Deserialize)]
    struct Conf<'a> {
        #[serde(borrow)]
        status: Cow<'a, str>,
    }
    serde_json::from_str::<Conf<'_>>(answer).is_ok_and(|c| c.status == "Accepted")
}

pub(super) type Result = std::result::Result<(), serde_json::Error>;

fn payload(out: &mut Vec<u8>, event: &Event<'_>) -> Result {
    match event.kind {
        EventKind::Connected {
            peer,
            boot: Some(boot),
            version: Version::V201 | Version::V21,
            ..
        } => v201::connected(out, boot, "connect", Some(&peer.to_string())),
        EventKind::Accepted201 {
            unique_id,
            action,
            request,
            answer,
            previous_status,
            ..
        } => v201::payload(out, (unique_id, action), (request, answer), previous_status),
        EventKind::Connected { peer, boot, .. } => {
            let details = boot.map(serde_json::from_str::<Boot<'_>>).transpose()?;
            let peer = peer.to_string();
            connected(out, details.as_ref(), "connect", Some(&peer))
        }
        EventKind::CallOut {
            unique_id,
            action,
            payload,
        } if is_certificate_signed(action) => certificate_signed(out, unique_id, payload),
        EventKind::Disconnected { cause } => write(
            out,
            &Disconnected {
                reason: cause.as_str(),
            },
        ),
        EventKind::Accepted {
            unique_id,
            action,
            request,
            answer,
            connectors_before,
        } => match action {
            Action::BootNotification => {
                let boot: Boot<'_> = serde_json::from_str(request)?;
                connected(out, Some(&boot), "boot", None)
            }
            Action::SignCertificate => sign_requested(out, unique_id, request),
            Action::StatusNotification => {
                let r: StatusRequest<'_> = serde_json::from_str(request)?;
                let previous = connectors_before
                    .iter()
                    .find(|(id, _)| i64::from(*id) == r.connector_id)
                    .map(|(_, status)| status.as_str());
                write(
                    out,
                    &StatusChanged {
                        connector_id: r.connector_id,
                        status: r.status,
                        previous_status: previous,
                        error_code: r.error_code,
                        info: r.info,
                        vendor_error_code: r.vendor_error_code,
                        status_timestamp: r.timestamp,
                    },
                )
            }
            Action::StartTransaction => {
                let r: StartRequest<'_> = serde_json::from_str(request)?;
                let a: StartAnswer<'_> = serde_json::from_str(answer)?;
                write(
                    out,
                    &Started {
                        connector_id: r.connector_id,
                        transaction_id: a.transaction_id,
                        id_tag: r.id_tag,
                        id_tag_status: a.id_tag_info.status,
                        meter_start_wh: r.meter_start,
                        start_timestamp: r.timestamp,
                        reservation_id: r.reservation_id,
                    },
                )
            }
            Action::MeterValues => {
                let r: MeterRequest<'_> = serde_json::from_str(request)?;
                write(
                    out,
                    &MeterValues {
                        connector_id: r.connector_id,
                        transaction_id: r.transaction_id,
                        meter_values: r.meter_value,
                    },
                )
            }
            Action::StopTransaction => {
                let r: StopRequest<'_> = serde_json::from_str(request)?;
                write(
                    out,
                    &Stopped {
                        transaction_id: r.transaction_id,
                        // OCPP 1.6: an absent reason means Local.
                        reason: r.reason.unwrap_or(Cow::Borrowed("Local")),
                        meter_stop_wh: r.meter_stop,
                        stop_timestamp: r.timestamp,
                        id_tag: r.id_tag,
                        transaction_data: r.transaction_data,
                    },
                )
            }
            _ => write(out, &()),
        },
        _ => frame(out, &event.kind),
    }
}

/// `certificate.sign_requested` (both versions): the checked request, for the backend to sign
/// (`security.certificate_signing = "backend"`).
pub(super) fn sign_requested(out: &mut Vec<u8>, unique_id: &str, request: &str) -> Result {
    let r: CertificateRequest<'_> = serde_json::from_str(request)?;
    write(
        out,
        &SignRequested {
            unique_id,
            csr: r.csr,
            certificate_type: r.certificate_type,
            request_id: r.request_id,
        },
    )
}

/// `certificate.signed`: the chain as it went to the charge point (signed by the gateway's CA,
/// or delivered by the backend).
fn certificate_signed(out: &mut Vec<u8>, unique_id: &str, payload: &str) -> Result {
    let r: Chain<'_> = serde_json::from_str(payload)?;
    write(
        out,
        &Signed {
            unique_id,
            certificate_chain: r.certificate_chain,
            certificate_type: r.certificate_type,
            request_id: r.request_id,
        },
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CertificateRequest<'a> {
    #[serde(borrow)]
    csr: Cow<'a, str>,
    #[serde(borrow)]
    certificate_type: Option<Cow<'a, str>>,
    request_id: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SignRequested<'a> {
    unique_id: &'a str,
    csr: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate_type: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Chain<'a> {
    #[serde(borrow)]
    certificate_chain: Cow<'a, str>,
    #[serde(borrow)]
    certificate_type: Option<Cow<'a, str>>,
    request_id: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Signed<'a> {
    unique_id: &'a str,
    certificate_chain: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate_type: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<i64>,
}

pub(super) fn write<T: Serialize>(out: &mut Vec<u8>, value: &T) -> Result {
    serde_json::to_writer(out, value)
}

fn connected(
    out: &mut Vec<u8>,
    boot: Option<&Boot<'_>>,
    trigger: &str,
    remote_address: Option<&str>,
) -> Result {
    write(
        out,
        &Connected {
            trigger,
            vendor: boot.map(|b| &*b.vendor),
            model: boot.map(|b| &*b.model),
            firmware_version: boot.and_then(|b| b.firmware_version.as_deref()),
            serial_number: boot.and_then(|b| b.serial_number.as_deref()),
            remote_address,
        },
    )
}

/// An OCPP frame both ways, for audit (`kafka.raw_frames`).
fn frame(out: &mut Vec<u8>, kind: &EventKind<'_>) -> Result {
    let f = match *kind {
        EventKind::CallIn {
            unique_id,
            action,
            payload,
        } => {
            let (payload, prefix) = match payload {
                Body::Whole(json) => (RawValue::from_string(json.to_owned()).ok(), None),
                Body::Prefix(json) => {
                    let mut end = json.len().min(PAYLOAD_PREFIX);
                    while !json.is_char_boundary(end) {
                        end -= 1;
                    }
                    (None, Some(&json[..end]))
                }
            };
            Frame {
                direction: "in",
                message_type: "CALL",
                unique_id,
                action,
                payload,
                payload_prefix: prefix,
                ..Frame::default()
            }
        }
        EventKind::AnswerOut {
            unique_id,
            action,
            answer,
        } => match answer {
            Answer::Result(json) => Frame {
                direction: "out",
                message_type: "CALLRESULT",
                unique_id,
                action,
                payload: RawValue::from_string(json.to_owned()).ok(),
                ..Frame::default()
            },
            Answer::Error { code, description } => Frame {
                direction: "out",
                message_type: "CALLERROR",
                unique_id,
                action,
                error_code: Some(code),
                error_description: Some(description),
                ..Frame::default()
            },
        },
        EventKind::CallOut {
            unique_id,
            action,
            payload,
        } => Frame {
            direction: "out",
            message_type: "CALL",
            unique_id,
            action: action.name(),
            payload: RawValue::from_string(payload.to_owned()).ok(),
            ..Frame::default()
        },
        EventKind::ResultIn {
            unique_id,
            action,
            payload,
        } => Frame {
            direction: "in",
            message_type: "CALLRESULT",
            unique_id,
            action: action.name(),
            payload: RawValue::from_string(payload.to_owned()).ok(),
            ..Frame::default()
        },
        EventKind::ErrorIn {
            unique_id,
            action,
            code,
            description,
            ..
        } => Frame {
            direction: "in",
            message_type: "CALLERROR",
            unique_id,
            action: action.name(),
            error_code: Some(code),
            error_description: Some(description),
            ..Frame::default()
        },
        _ => Frame::default(),
    };
    write(out, &f)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Boot<'a> {
    #[serde(borrow, rename = "chargePointVendor")]
    vendor: Cow<'a, str>,
    #[serde(borrow, rename = "chargePointModel")]
    model: Cow<'a, str>,
    #[serde(borrow, default)]
    firmware_version: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "chargePointSerialNumber")]
    serial_number: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Connected<'a> {
    /// "connect" (the WebSocket opened; details from the last accepted boot, null when none
    /// is known) or "boot" (an accepted BootNotification; details from it).
    trigger: &'a str,
    vendor: Option<&'a str>,
    model: Option<&'a str>,
    firmware_version: Option<&'a str>,
    serial_number: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote_address: Option<&'a str>,
}

#[derive(Serialize)]
struct Disconnected<'a> {
    reason: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusRequest<'a> {
    connector_id: i64,
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(borrow)]
    error_code: Cow<'a, str>,
    #[serde(borrow, default)]
    info: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    vendor_error_code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusChanged<'a> {
    connector_id: i64,
    status: Cow<'a, str>,
    /// The connector's status before (null: none known).
    previous_status: Option<&'a str>,
    error_code: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vendor_error_code: Option<Cow<'a, str>>,
    /// The charge point's own time of the change, when it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    status_timestamp: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartRequest<'a> {
    connector_id: i64,
    #[serde(borrow)]
    id_tag: Cow<'a, str>,
    meter_start: i64,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(default)]
    reservation_id: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartAnswer<'a> {
    transaction_id: i64,
    #[serde(borrow)]
    id_tag_info: IdTagInfo<'a>,
}

#[derive(Deserialize)]
struct IdTagInfo<'a> {
    #[serde(borrow)]
    status: Cow<'a, str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Started<'a> {
    connector_id: i64,
    transaction_id: i64,
    id_tag: Cow<'a, str>,
    /// What the gateway answered for the idTag (Accepted, Invalid, ...).
    id_tag_status: Cow<'a, str>,
    meter_start_wh: i64,
    start_timestamp: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reservation_id: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MeterRequest<'a> {
    connector_id: i64,
    #[serde(default)]
    transaction_id: Option<i64>,
    #[serde(borrow)]
    meter_value: &'a RawValue,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MeterValues<'a> {
    connector_id: i64,
    /// Null for readings outside a transaction.
    transaction_id: Option<i64>,
    /// The charge point's `meterValue` array as it sent it.
    meter_values: &'a RawValue,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StopRequest<'a> {
    transaction_id: i64,
    meter_stop: i64,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id_tag: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    transaction_data: Option<&'a RawValue>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Stopped<'a> {
    transaction_id: i64,
    reason: Cow<'a, str>,
    meter_stop_wh: i64,
    stop_timestamp: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_tag: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction_data: Option<&'a RawValue>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Frame<'a> {
    /// "in" (from the charge point) or "out".
    direction: &'a str,
    /// "CALL", "CALLRESULT" or "CALLERROR".
    message_type: &'a str,
    unique_id: &'a str,
    action: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Box<RawValue>>,
    /// A refused CALL: only the start of its payload, as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_prefix: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::CloseCause;
    use ocpp::v16::ChargePointStatus;
    use serde_json::{Value, json};
    use std::time::SystemTime;

    fn render_one(kind: EventKind<'_>, raw_frames: bool) -> Option<Value> {
        let mut out = Vec::new();
        let envelope = Envelope {
            id_prefix: "gw1-1a2b-0-",
            n: 7,
            gateway: "gw1",
            timestamp: "2026-11-28T10:00:00.000Z",
        };
        let event = Event {
            at: SystemTime::now(),
            cp: "CP-1",
            kind,
        };
        (render(&mut out, &envelope, &event, raw_frames) == Rendered::Event)
            .then(|| serde_json::from_slice(&out).expect("an event is JSON"))
    }

    fn accepted<'a>(
        action: Action,
        request: &'a str,
        answer: &'a str,
        before: &'a [(u32, ChargePointStatus)],
    ) -> EventKind<'a> {
        EventKind::Accepted {
            unique_id: "u1",
            action,
            request,
            answer,
            connectors_before: before,
        }
    }

    fn assert_valid(event: &Value) {
        let name = event["eventType"].as_str().unwrap();
        let path = format!("{}/schemas/kafka/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(event)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{event}: {errors:?}");
    }

    #[test]
    fn certificate_requests_and_chains_are_events_in_both_versions() {
        let csr = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n";
        let request = json!({"csr": csr}).to_string();
        let e = render_one(
            accepted(
                Action::SignCertificate,
                &request,
                r#"{"status":"Accepted"}"#,
                &[],
            ),
            false,
        )
        .expect("an event");
        assert_eq!(e["eventType"], "certificate.sign_requested");
        assert_eq!(e["ocppVersion"], "1.6");
        assert_eq!(e["payload"], json!({"uniqueId": "u1", "csr": csr}));
        assert_valid(&e);
        let refused = accepted(
            Action::SignCertificate,
            &request,
            r#"{"status":"Rejected"}"#,
            &[],
        );
        assert!(
            render_one(refused, false).is_none(),
            "a refused request is not for the backend"
        );

        let request =
            json!({"csr": csr, "certificateType": "ChargingStationCertificate"}).to_string();
        let e = render_one(
            EventKind::Accepted201 {
                unique_id: "u2",
                version: Version::V201,
                action: ocpp::v201::Action::SignCertificate,
                request: &request,
                answer: r#"{"status":"Accepted"}"#,
                previous_status: None,
            },
            false,
        )
        .expect("an event");
        assert_eq!(
            e["payload"]["certificateType"],
            "ChargingStationCertificate"
        );
        assert_eq!(e["ocppVersion"], "2.0.1");
        assert_valid(&e);

        let chain = json!({"certificateChain": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"})
            .to_string();
        for action in [
            ocpp::AnyAction::V16(Action::CertificateSigned),
            ocpp::AnyAction::V201(ocpp::v201::Action::CertificateSigned),
        ] {
            let e = render_one(
                EventKind::CallOut {
                    unique_id: "g-9",
                    action,
                    payload: &chain,
                },
                false,
            )
            .expect("an event");
            assert_eq!(e["eventType"], "certificate.signed");
            assert_eq!(e["payload"]["uniqueId"], "g-9");
            assert_valid(&e);
        }
    }

    #[test]
    fn the_envelope_names_the_event() {
        let e = render_one(
            EventKind::Disconnected {
                cause: CloseCause::PongTimeout,
            },
            false,
        )
        .unwrap();
        assert_eq!(
            e,
            json!({"eventId": "gw1-1a2b-0-7", "eventType": "charge_point.disconnected",
                   "chargePointId": "CP-1", "gatewayId": "gw1",
                   "timestamp": "2026-11-28T10:00:00.000Z",
                   "payload": {"reason": CloseCause::PongTimeout.as_str()}})
        );
    }

    #[test]
    fn connects_and_boots_carry_what_is_known() {
        let peer = "10.1.2.3:4000".parse().unwrap();
        let first = render_one(
            EventKind::Connected {
                peer,
                loop_index: 0,
                boot: None,
                version: crate::types::Version::V16,
            },
            false,
        )
        .unwrap();
        assert_eq!(
            first["payload"],
            json!({"trigger": "connect", "vendor": null, "model": null, "firmwareVersion": null,
                   "serialNumber": null, "remoteAddress": "10.1.2.3:4000"})
        );
        let boot = r#"{"chargePointVendor":"V","chargePointModel":"M","firmwareVersion":"1.2"}"#;
        let again = render_one(
            EventKind::Connected {
                peer,
                loop_index: 0,
                boot: Some(boot),
                version: crate::types::Version::V16,
            },
            false,
        )
        .unwrap();
        assert_eq!(again["payload"]["vendor"], "V");
        assert_eq!(again["payload"]["firmwareVersion"], "1.2");
        let booted = render_one(
            accepted(
                Action::BootNotification,
                boot,
                r#"{"status":"Accepted","currentTime":"x","interval":300}"#,
                &[],
            ),
            false,
        )
        .unwrap();
        assert_eq!(booted["eventType"], "charge_point.connected");
        assert_eq!(booted["payload"]["trigger"], "boot");
        assert_eq!(booted["payload"]["model"], "M");
        let pending = render_one(
            accepted(
                Action::BootNotification,
                boot,
                r#"{"status":"Pending","currentTime":"x","interval":300}"#,
                &[],
            ),
            false,
        );
        assert!(pending.is_none(), "a boot not accepted makes no event");
    }

    #[test]
    fn a_status_notification_names_the_previous_status() {
        let before = [(1, ChargePointStatus::Preparing)];
        let request = r#"{"connectorId":1,"status":"Charging","errorCode":"NoError"}"#;
        let e = render_one(
            accepted(Action::StatusNotification, request, "{}", &before),
            false,
        )
        .unwrap();
        assert_eq!(
            e["payload"],
            json!({"connectorId": 1, "status": "Charging", "previousStatus": "Preparing",
                   "errorCode": "NoError"})
        );
        let other =
            r#"{"connectorId":2,"status":"Faulted","errorCode":"GroundFailure","info":"x"}"#;
        let e = render_one(
            accepted(Action::StatusNotification, other, "{}", &before),
            false,
        )
        .unwrap();
        assert_eq!(e["payload"]["previousStatus"], Value::Null);
        assert_eq!(e["payload"]["info"], "x");
    }

    #[test]
    fn transactions_start_meter_and_stop() {
        let start = r#"{"connectorId":1,"idTag":"TAG\"1","meterStart":1200,"timestamp":"2026-11-28T09:00:00Z"}"#;
        let e = render_one(
            accepted(
                Action::StartTransaction,
                start,
                r#"{"transactionId":42,"idTagInfo":{"status":"Accepted"}}"#,
                &[],
            ),
            false,
        )
        .unwrap();
        assert_eq!(e["eventType"], "transaction.started");
        assert_eq!(
            e["payload"],
            json!({"connectorId": 1, "transactionId": 42, "idTag": "TAG\"1", "idTagStatus": "Accepted",
                   "meterStartWh": 1200, "startTimestamp": "2026-11-28T09:00:00Z"})
        );
        let meter = r#"{"connectorId":1,"transactionId":42,"meterValue":[{"timestamp":"t","sampledValue":[{"value":"5"}]}]}"#;
        let e = render_one(accepted(Action::MeterValues, meter, "{}", &[]), false).unwrap();
        assert_eq!(
            e["payload"]["meterValues"][0]["sampledValue"][0]["value"],
            "5"
        );
        assert_eq!(e["payload"]["transactionId"], 42);
        let stop = r#"{"transactionId":42,"meterStop":5200,"timestamp":"2026-11-28T10:00:00Z"}"#;
        let e = render_one(accepted(Action::StopTransaction, stop, "{}", &[]), false).unwrap();
        assert_eq!(
            e["payload"],
            json!({"transactionId": 42, "reason": "Local", "meterStopWh": 5200,
                   "stopTimestamp": "2026-11-28T10:00:00Z"})
        );
    }

    #[test]
    fn frames_only_when_asked() {
        let call = EventKind::CallIn {
            unique_id: "9",
            action: "Heartbeat",
            payload: Body::Whole("{}"),
        };
        assert!(render_one(call, false).is_none());
        let e = render_one(call, true).unwrap();
        assert_eq!(e["eventType"], "ocpp.frame");
        assert_eq!(
            e["payload"],
            json!({"direction": "in", "messageType": "CALL", "uniqueId": "9",
                   "action": "Heartbeat", "payload": {}})
        );
    }
}
