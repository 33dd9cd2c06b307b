//! What the gateway answers to each CALL from a charge point. Pure: the time and the policy are
//! passed in, so every answer is unit-tested without sockets or threads.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::ocpp::rpc::CallErrorCode;
use crate::ocpp::v16::{self, BootNotificationResponse, HeartbeatResponse, RegistrationStatus};

/// The settings handlers answer by.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `interval` of an accepted BootNotification, in seconds.
    pub heartbeat_interval_secs: u64,
}

/// The answer to one CALL.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// A CALLRESULT with this payload (JSON object text).
    Result(String),
    /// A CALLERROR.
    Error {
        code: CallErrorCode,
        description: String,
    },
    /// A BootNotification was accepted: the caller remembers the boot, then sends the result.
    Booted(String),
}

impl From<v16::Invalid> for Reply {
    fn from(invalid: v16::Invalid) -> Reply {
        Reply::Error {
            code: invalid.code,
            description: invalid.description,
        }
    }
}

/// Answers `action` with `payload`; `now` is the current time as RFC 3339 UTC text.
pub fn handle_call(policy: &Policy, action: &str, payload: &RawValue, now: &str) -> Reply {
    match action {
        "BootNotification" => boot_notification(policy, payload, now),
        "Heartbeat" => match v16::decode::<v16::HeartbeatRequest>(payload) {
            Ok(_) => Reply::Result(to_json(&HeartbeatResponse { current_time: now })),
            Err(invalid) => invalid.into(),
        },
        _ => Reply::Error {
            code: CallErrorCode::NotImplemented,
            description: format!("action {} is not implemented", truncate(action, 64)),
        },
    }
}

fn boot_notification(policy: &Policy, payload: &RawValue, now: &str) -> Reply {
    let request = match v16::decode::<v16::BootNotificationRequest>(payload) {
        Ok(request) => request,
        Err(invalid) => return invalid.into(),
    };
    if let Err(invalid) = request.validate() {
        return invalid.into();
    }
    Reply::Booted(to_json(&BootNotificationResponse {
        status: RegistrationStatus::Accepted,
        current_time: now,
        interval: policy.heartbeat_interval_secs,
    }))
}

fn to_json(value: &impl Serialize) -> String {
    // Our own response structs hold only strings and integers: serializing them cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

fn truncate(s: &str, max_chars: usize) -> &str {
    s.char_indices().nth(max_chars).map_or(s, |(i, _)| &s[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-11-24T10:00:00.000Z";

    fn call(action: &str, payload: &str) -> Reply {
        let policy = Policy {
            heartbeat_interval_secs: 300,
        };
        handle_call(
            &policy,
            action,
            &RawValue::from_string(payload.to_owned()).unwrap(),
            NOW,
        )
    }

    #[test]
    fn boot_is_accepted_with_interval_and_time() {
        let reply = call(
            "BootNotification",
            r#"{"chargePointVendor":"V","chargePointModel":"M"}"#,
        );
        let Reply::Booted(json) = reply else {
            panic!("{reply:?}")
        };
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["status"], "Accepted");
        assert_eq!(value["interval"], 300);
        assert_eq!(value["currentTime"], NOW);
    }

    #[test]
    fn heartbeat_returns_current_time() {
        assert_eq!(
            call("Heartbeat", "{}"),
            Reply::Result(format!(r#"{{"currentTime":"{NOW}"}}"#))
        );
    }

    #[test]
    fn other_actions_are_not_implemented_yet() {
        for action in ["Authorize", "NoSuchAction", &"x".repeat(1000)] {
            let Reply::Error { code, description } = call(action, "{}") else {
                panic!()
            };
            assert_eq!(code, CallErrorCode::NotImplemented);
            assert!(description.len() < 120);
        }
    }

    #[test]
    fn invalid_boot_gets_a_call_error() {
        let Reply::Error { code, description } = call("BootNotification", "{}") else {
            panic!()
        };
        assert_eq!(code, CallErrorCode::OccurenceConstraintViolation);
        assert!(description.contains("chargePointVendor"), "{description}");
    }
}
