//! Typed OCPP 1.6 payloads: a request and a response type for each of the 39 actions (28 core,
//! 11 from the security whitepaper), checked exactly as the official JSON schemas say, so the
//! gateway can read what charge points send, build what it answers, and relay the rest with a
//! schema check ([`validate_request`], [`validate_response`]).
//!
//! - [`decode()`] reads one payload into its type and reports the first violation as the
//!   CALLERROR to answer with ([`Invalid`]): unknown field -> FormationViolation, missing
//!   required field -> OccurenceConstraintViolation, wrong JSON type -> TypeConstraintViolation,
//!   too long / bad enum value / bad date-time or URI / not a multiple of 0.1 / empty where one
//!   is required -> PropertyConstraintViolation. The description names the field path
//!   (`meterValue[0].sampledValue[1].unit: unknown variant ...`) and quotes at most 64
//!   characters of input.
//! - Every type serializes to schema-valid JSON (absent optional fields are left out), and
//!   values of the checked types can only be built valid.
//!
//! Layout: `macros` (how a definition reads), `primitives` (the constrained value types),
//! `datatypes` (the shared core types), `core_messages` and `security_messages` (the payloads),
//! `action` (the action table), `decode` (errors). `tests/schema_conformance.rs` holds every type
//! against the 78 schema files.
//!
//! Decisions where the schemas leave room:
//! - JSON `integer` is `i64`; a number with a fraction or exponent (`1.0`, `1e3`) is not an
//!   integer (draft-04, which the core schemas use: TypeConstraintViolation), and an integer
//!   outside `i64` is a PropertyConstraintViolation.
//! - A repeated property name is a FormationViolation (which copy was meant is unknowable).
//! - Rules that depend on the message rather than on a shared type (MeterValues needs at least
//!   one sampledValue per meterValue; StopTransaction's unit list lacks "Hertz") are checked
//!   after decoding by [`Payload::check`].

#[macro_use]
mod macros;

mod action;
mod core_messages;
mod datatypes;
mod decode;
pub mod heartbeat;
pub(crate) mod primitives;
mod security_messages;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use self::action::{Action, validate_request, validate_response};
pub use self::core_messages::*;
pub use self::datatypes::*;
pub use self::decode::decode;
pub use self::primitives::{CiString, DateTime, Decimal, IdToken, NonEmpty, Uri, ValueError};
pub use self::security_messages::*;
use crate::rpc::CallErrorCode;

/// A payload the peer got wrong: the CALLERROR to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: CallErrorCode,
    pub description: String,
}

/// A request or response payload of one action.
pub trait Payload: Serialize + DeserializeOwned {
    /// The action this payload belongs to.
    const ACTION: Action;

    /// The schema rules no field type carries, checked after decoding; most payloads have none.
    fn check(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

/// A request payload, tied to the response its CALL expects.
pub trait Request: Payload {
    type Response: Payload;
}

/// A PropertyConstraintViolation with this description.
fn property_violation(description: String) -> Invalid {
    Invalid {
        code: CallErrorCode::PropertyConstraintViolation,
        description,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    fn error<T: Payload + std::fmt::Debug>(json: &str) -> Invalid {
        decode::<T>(&raw(json)).unwrap_err()
    }

    #[test]
    fn boot_notification_errors_map_to_codes() {
        let e = error::<BootNotificationRequest>(r#"{"chargePointVendor":"V"}"#);
        assert_eq!(e.code, CallErrorCode::OccurenceConstraintViolation);
        assert_eq!(e.description, "missing field `chargePointModel`");
        let e =
            error::<BootNotificationRequest>(r#"{"chargePointVendor":1,"chargePointModel":"M"}"#);
        assert_eq!(e.code, CallErrorCode::TypeConstraintViolation);
        assert!(
            e.description.starts_with("chargePointVendor: invalid type"),
            "{e:?}"
        );
        let e = error::<BootNotificationRequest>(
            r#"{"chargePointVendor":"V","chargePointModel":"M","x":1}"#,
        );
        assert_eq!(e.code, CallErrorCode::FormationViolation);
        let e = error::<BootNotificationRequest>(
            r#"{"chargePointVendor":"123456789012345678901","chargePointModel":"M"}"#,
        );
        assert_eq!(e.code, CallErrorCode::PropertyConstraintViolation);
        assert_eq!(
            e.description,
            "chargePointVendor: invalid length 21, expected at most 20 characters"
        );
    }

    #[test]
    fn shapes_serde_derive_would_take_are_rejected() {
        let e = error::<AuthorizeRequest>(r#"["tag"]"#);
        assert_eq!(e.code, CallErrorCode::TypeConstraintViolation);
        let e = error::<StopTransactionRequest>(
            r#"{"idTag":null,"meterStop":1,"timestamp":"2026-01-01T00:00:00Z","transactionId":1}"#,
        );
        assert_eq!(e.code, CallErrorCode::TypeConstraintViolation);
        let e = error::<ResetRequest>(r#"{"type":{"Hard":null}}"#);
        assert_eq!(e.code, CallErrorCode::TypeConstraintViolation);
        let e = error::<HeartbeatRequest>(r#"{"a":1,"a":1}"#);
        assert_eq!(e.code, CallErrorCode::FormationViolation);
        let e = error::<CancelReservationRequest>(r#"{"reservationId":1.0}"#);
        assert_eq!(e.code, CallErrorCode::TypeConstraintViolation);
    }

    #[test]
    fn nested_errors_name_the_path() {
        let e = error::<MeterValuesRequest>(
            r#"{"connectorId":1,"meterValue":[{"timestamp":"2026-01-01T00:00:00Z",
                "sampledValue":[{"value":"1"},{"value":"2","unit":"Parsec"}]}]}"#,
        );
        assert_eq!(e.code, CallErrorCode::PropertyConstraintViolation);
        assert!(
            e.description
                .starts_with("meterValue[0].sampledValue[1].unit: unknown variant"),
            "{e:?}"
        );
        let e = error::<MeterValuesRequest>(
            r#"{"connectorId":1,"meterValue":[{"timestamp":"2026-01-01T00:00:00Z",
                "sampledValue":[]}]}"#,
        );
        assert_eq!(e.code, CallErrorCode::PropertyConstraintViolation);
        let e = error::<SetChargingProfileRequest>(
            r#"{"connectorId":1,"csChargingProfiles":{"chargingProfileId":1,"stackLevel":0,
                "chargingProfilePurpose":"TxProfile","chargingProfileKind":"Absolute",
                "chargingSchedule":{"chargingRateUnit":"A",
                "chargingSchedulePeriod":[{"startPeriod":0,"limit":0.05}]}}}"#,
        );
        assert_eq!(e.code, CallErrorCode::PropertyConstraintViolation);
        assert!(
            e.description
                .starts_with("csChargingProfiles.chargingSchedule.chargingSchedulePeriod[0].limit"),
            "{e:?}"
        );
    }

    #[test]
    fn both_celsius_spellings_and_hertz_where_allowed() {
        for unit in ["Celsius", "Celcius", "Hertz"] {
            let json = format!(
                r#"{{"connectorId":1,"meterValue":[{{"timestamp":"2026-01-01T00:00:00Z",
                    "sampledValue":[{{"value":"20","unit":"{unit}"}}]}}]}}"#
            );
            assert!(decode::<MeterValuesRequest>(&raw(&json)).is_ok(), "{unit}");
        }
        let e = error::<StopTransactionRequest>(
            r#"{"meterStop":1,"timestamp":"2026-01-01T00:00:00Z","transactionId":1,
                "transactionData":[{"timestamp":"2026-01-01T00:00:00Z",
                "sampledValue":[{"value":"50","unit":"Hertz"}]}]}"#,
        );
        assert_eq!(e.code, CallErrorCode::PropertyConstraintViolation);
    }

    #[test]
    fn responses_serialize_without_absent_fields() {
        let response = AuthorizeResponse {
            id_tag_info: IdTagInfo {
                expiry_date: None,
                parent_id_tag: Some(IdToken::new("PARENT").unwrap()),
                status: AuthorizationStatus::Accepted,
            },
        };
        assert_eq!(
            serde_json::to_string(&response).unwrap(),
            r#"{"idTagInfo":{"parentIdTag":"PARENT","status":"Accepted"}}"#
        );
    }

    #[test]
    fn hostile_input_is_echoed_at_most_64_characters() {
        let z = "Z".repeat(1000);
        let payloads = [
            format!(r#"{{"{z}":1}}"#),
            format!(r#"{{"status":"{z}","type":"{z}","idTag":"{z}"}}"#),
            format!(r#"{{"connectorId":"{z}","transactionId":"{z}","reservationId":"{z}"}}"#),
            format!(r#"{{"currentTime":"{z}","timestamp":"{z}","location":"{z}"}}"#),
            format!(r#"{{"idTagInfo":{{"status":"Accepted","{z}":"{z}"}}}}"#),
            format!("{}{}", "[".repeat(200), "]".repeat(200)),
            format!(r#"{{"key":[{}]}}"#, "{},".repeat(300) + "{}"),
        ];
        for payload in &payloads {
            for action in Action::ALL {
                for result in [
                    validate_request(action, &raw(payload)),
                    validate_response(action, &raw(payload)),
                ] {
                    if let Err(e) = result {
                        assert!(!e.description.contains(&z[..65]), "{action}: {e:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn actions_by_name() {
        for action in Action::ALL {
            assert_eq!(Action::from_name(action.name()), Some(action));
        }
        assert_eq!(Action::from_name("heartbeat"), None);
        assert!(validate_request(Action::Heartbeat, &raw("{}")).is_ok());
        assert!(validate_response(Action::Heartbeat, &raw("{}")).is_err());
    }
}
