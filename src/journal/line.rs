//! One journal line per event, rendered by hand into the producer's buffer: JSON with the
//! fields `ts`, `node`, `cp`, `event` and, as they apply, `dir`, `id`, `action`, `payload`,
//! `code`, `description`, `details`, `reason`, `peer`, `loop`, `outcome` (absent ones left out),
//! in that order, then a newline.
//!
//! Payloads are the peer's own JSON text, copied as is except for line breaks: JSON allows raw
//! newlines only as whitespace between tokens (inside strings they must be escaped), so turning
//! each into a space keeps the value and keeps one event on one line.

use std::io::Write as _;

use crate::events::{Answer, Body, Event, EventKind, PAYLOAD_PREFIX};
use ocpp::rpc::push_json_str;

/// Appends the line for `event` (with its newline) to `out`.
pub fn render(out: &mut Vec<u8>, ts: &str, node: &str, event: &Event<'_>) {
    out.extend_from_slice(b"{\"ts\":");
    push_json_str(out, ts);
    text(out, "node", node);
    text(out, "cp", event.cp);
    match event.kind {
        EventKind::Connected {
            peer,
            loop_index,
            version,
            ..
        } => {
            text(out, "event", "connected");
            out.extend_from_slice(b",\"peer\":\"");
            let _ = write!(out, "{peer}");
            let _ = write!(out, "\",\"loop\":{loop_index}");
            text(out, "ocppVersion", version.as_str());
        }
        EventKind::Disconnected { cause } => {
            text(out, "event", "disconnected");
            text(out, "reason", cause.as_str());
        }
        EventKind::CallIn {
            unique_id,
            action,
            payload,
        } => {
            head(out, "call", "in", Some(unique_id), action);
            match payload {
                Body::Whole(json) => raw(out, "payload", json),
                Body::Prefix(json) => {
                    let mut end = json.len().min(PAYLOAD_PREFIX);
                    while !json.is_char_boundary(end) {
                        end -= 1;
                    }
                    text(out, "payload_prefix", &json[..end]);
                    let _ = write!(out, ",\"payload_bytes\":{}", json.len());
                }
            }
        }
        EventKind::AnswerOut {
            unique_id,
            action,
            answer,
        } => match answer {
            Answer::Result(payload) => {
                head(out, "result", "out", Some(unique_id), action);
                raw(out, "payload", payload);
            }
            Answer::Error { code, description } => {
                head(out, "error", "out", Some(unique_id), action);
                text(out, "code", code);
                text(out, "description", description);
            }
        },
        EventKind::CallOut {
            unique_id,
            action,
            payload,
        } => {
            head(out, "call", "out", Some(unique_id), action.name());
            raw(out, "payload", payload);
        }
        EventKind::ResultIn {
            unique_id,
            action,
            payload,
        } => {
            head(out, "result", "in", Some(unique_id), action.name());
            raw(out, "payload", payload);
        }
        EventKind::ErrorIn {
            unique_id,
            action,
            code,
            description,
            details,
        } => {
            head(out, "error", "in", Some(unique_id), action.name());
            text(out, "code", code);
            text(out, "description", description);
            raw(out, "details", details);
        }
        EventKind::Outcome {
            unique_id,
            action,
            outcome,
        } => {
            text(out, "event", "outcome");
            if let Some(id) = unique_id {
                text(out, "id", id);
            }
            text(out, "action", action.name());
            text(out, "outcome", outcome);
        }
        EventKind::Refused {
            peer,
            status,
            reason,
        } => {
            text(out, "event", "refused");
            let _ = write!(out, ",\"code\":\"{status}\"");
            text(out, "reason", reason);
            let _ = write!(out, ",\"peer\":\"{peer}\"");
        }
        EventKind::Suppressed { lines, bytes } => {
            text(out, "event", "suppressed");
            text(out, "reason", "journal allowance spent");
            let _ = write!(out, ",\"lines\":{lines},\"bytes\":{bytes}");
        }
        // Not a journal line (the journal writer never renders it): the CALL and its answer
        // are journaled as they are.
        EventKind::SeqGap {
            transaction_id,
            expected,
            seq_no,
        } => {
            text(out, "event", "seq_gap");
            text(out, "transactionId", transaction_id);
            let _ = write!(out, ",\"expected\":{expected},\"seqNo\":{seq_no}");
        }
        EventKind::Accepted { .. } | EventKind::Accepted201 { .. } => {
            text(out, "event", "accepted")
        }
    }
    out.extend_from_slice(b"}\n");
}

fn head(out: &mut Vec<u8>, event: &str, dir: &str, id: Option<&str>, action: &str) {
    text(out, "event", event);
    text(out, "dir", dir);
    if let Some(id) = id {
        text(out, "id", id);
    }
    text(out, "action", action);
}

fn key(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn text(out: &mut Vec<u8>, name: &str, value: &str) {
    key(out, name);
    push_json_str(out, value);
}

/// A raw JSON value, its line breaks turned into spaces.
fn raw(out: &mut Vec<u8>, name: &str, json: &str) {
    key(out, name);
    let start = out.len();
    out.extend_from_slice(json.as_bytes());
    for byte in &mut out[start..] {
        if matches!(*byte, b'\n' | b'\r') {
            *byte = b' ';
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use serde_json::{Value, json};

    use super::*;
    use crate::types::{CloseCause, Version};
    use ocpp::rpc::CallErrorCode;
    use ocpp::v16::Action;

    fn line(kind: EventKind<'_>) -> Value {
        let mut out = Vec::new();
        let event = Event {
            at: SystemTime::now(),
            cp: "CP\"1",
            kind,
        };
        render(&mut out, "2023-11-14T22:13:20.123Z", "node-a", &event);
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
        serde_json::from_slice(&out).expect("a line is JSON")
    }

    #[test]
    fn an_exchange_is_a_call_line_then_an_answer_line() {
        let call = line(EventKind::CallIn {
            unique_id: "42",
            action: "Heartbeat",
            payload: Body::Whole("{\n\r}"),
        });
        assert_eq!(
            call,
            json!({"ts": "2023-11-14T22:13:20.123Z", "node": "node-a", "cp": "CP\"1",
                   "event": "call", "dir": "in", "id": "42", "action": "Heartbeat", "payload": {}})
        );
        let result = line(EventKind::AnswerOut {
            unique_id: "42",
            action: "Heartbeat",
            answer: Answer::Result(r#"{"currentTime":"x"}"#),
        });
        assert_eq!(result["event"], "result");
        assert_eq!(result["dir"], "out");
        assert_eq!(result["payload"]["currentTime"], "x");
        let error = line(EventKind::AnswerOut {
            unique_id: "43",
            action: "Bogus",
            answer: Answer::Error {
                code: CallErrorCode::NotImplemented.as_str(),
                description: "no \"Bogus\"\n",
            },
        });
        assert_eq!(error["code"], "NotImplemented");
        assert_eq!(error["description"], "no \"Bogus\"\n");
    }

    #[test]
    fn every_other_kind_is_one_line() {
        let peer = "10.0.0.7:50312".parse().unwrap();
        let connected = line(EventKind::Connected {
            peer,
            loop_index: 1,
            boot: None,
            version: Version::V201,
        });
        assert_eq!(
            (connected["peer"].as_str(), connected["loop"].as_u64()),
            (Some("10.0.0.7:50312"), Some(1))
        );
        assert_eq!(connected["ocppVersion"], "2.0.1");
        let gone = line(EventKind::Disconnected {
            cause: CloseCause::PongTimeout,
        });
        assert_eq!(gone["reason"], "pong_timeout");
        let sent = line(EventKind::CallOut {
            unique_id: "1-4",
            action: Action::Reset.into(),
            payload: r#"{"type":"Soft"}"#,
        });
        assert_eq!(
            (sent["dir"].as_str(), sent["payload"]["type"].as_str()),
            (Some("out"), Some("Soft"))
        );
        let failed = line(EventKind::ErrorIn {
            unique_id: "1-4",
            action: Action::Reset.into(),
            code: "NotSupported",
            description: "",
            details: "{}",
        });
        assert_eq!(failed["details"], json!({}));
        let outcome = line(EventKind::Outcome {
            unique_id: None,
            action: Action::Reset.into(),
            outcome: "not_connected",
        });
        assert!(outcome.get("id").is_none());
        assert_eq!(outcome["outcome"], "not_connected");
    }
}
