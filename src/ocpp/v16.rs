//! Typed OCPP 1.6 payloads. For now the two actions the engine answers itself, BootNotification
//! and Heartbeat, checked as the official schemas say (unknown fields rejected, CiString maximum
//! lengths); the next step grows this into all 39 actions.
//!
//! Validation failures become a [`CallErrorCode`] and a description that names the field.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ocpp::rpc::CallErrorCode;

/// A payload the charge point got wrong: answer with this CALLERROR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: CallErrorCode,
    pub description: String,
}

/// Decodes `payload` as `T`, mapping serde's complaint to the 1.6 CallError code for it.
pub fn decode<T: DeserializeOwned>(payload: &RawValue) -> Result<T, Invalid> {
    serde_json::from_str(payload.get()).map_err(|e| {
        let message = e.to_string();
        let code = if message.starts_with("missing field") {
            CallErrorCode::OccurenceConstraintViolation
        } else if message.starts_with("invalid type") {
            CallErrorCode::TypeConstraintViolation
        } else if message.starts_with("unknown field") {
            CallErrorCode::FormationViolation
        } else {
            CallErrorCode::PropertyConstraintViolation
        };
        Invalid {
            code,
            description: message,
        }
    })
}

/// A CiStringN field longer than N characters.
fn check_len(field: &'static str, value: Option<&str>, max: usize) -> Result<(), Invalid> {
    match value {
        Some(v) if v.chars().count() > max => Err(Invalid {
            code: CallErrorCode::PropertyConstraintViolation,
            description: format!("{field} is longer than {max} characters"),
        }),
        _ => Ok(()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BootNotificationRequest {
    pub charge_point_vendor: String,
    pub charge_point_model: String,
    pub charge_point_serial_number: Option<String>,
    pub charge_box_serial_number: Option<String>,
    pub firmware_version: Option<String>,
    pub iccid: Option<String>,
    pub imsi: Option<String>,
    pub meter_type: Option<String>,
    pub meter_serial_number: Option<String>,
}

impl BootNotificationRequest {
    pub fn validate(&self) -> Result<(), Invalid> {
        check_len("chargePointVendor", Some(&self.charge_point_vendor), 20)?;
        check_len("chargePointModel", Some(&self.charge_point_model), 20)?;
        check_len(
            "chargePointSerialNumber",
            self.charge_point_serial_number.as_deref(),
            25,
        )?;
        check_len(
            "chargeBoxSerialNumber",
            self.charge_box_serial_number.as_deref(),
            25,
        )?;
        check_len("firmwareVersion", self.firmware_version.as_deref(), 50)?;
        check_len("iccid", self.iccid.as_deref(), 20)?;
        check_len("imsi", self.imsi.as_deref(), 20)?;
        check_len("meterType", self.meter_type.as_deref(), 25)?;
        check_len("meterSerialNumber", self.meter_serial_number.as_deref(), 25)
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub enum RegistrationStatus {
    Accepted,
    Pending,
    Rejected,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BootNotificationResponse<'a> {
    pub status: RegistrationStatus,
    pub current_time: &'a str,
    pub interval: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatResponse<'a> {
    pub current_time: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn boot_notification_errors_map_to_codes() {
        let code = |s: &str| {
            decode::<BootNotificationRequest>(&raw(s))
                .and_then(|b| b.validate())
                .unwrap_err()
                .code
        };
        assert_eq!(
            code(r#"{"chargePointVendor":"V"}"#),
            CallErrorCode::OccurenceConstraintViolation
        );
        assert_eq!(
            code(r#"{"chargePointVendor":1,"chargePointModel":"M"}"#),
            CallErrorCode::TypeConstraintViolation
        );
        assert_eq!(
            code(r#"{"chargePointVendor":"V","chargePointModel":"M","x":1}"#),
            CallErrorCode::FormationViolation
        );
        assert_eq!(
            code(r#"{"chargePointVendor":"123456789012345678901","chargePointModel":"M"}"#),
            CallErrorCode::PropertyConstraintViolation
        );
    }

    #[test]
    fn heartbeat_takes_an_empty_object_only() {
        assert!(decode::<HeartbeatRequest>(&raw("{}")).is_ok());
        assert_eq!(
            decode::<HeartbeatRequest>(&raw(r#"{"a":1}"#))
                .unwrap_err()
                .code,
            CallErrorCode::FormationViolation
        );
    }
}
