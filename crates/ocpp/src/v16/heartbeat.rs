//! Heartbeat, answerable wherever the time is known. Heartbeat.conf is `{"currentTime": now}`
//! for every accepted charge point, so the gateway's event loop answers it without handing it to
//! a processor, and the processor, when it answers one, writes the same bytes the same way.
//! Whether a connection's Heartbeats may be answered early (its charge point Accepted, nothing
//! of it in flight that the answer could overtake) is the caller's to decide.

use std::borrow::Cow;
use std::ops::Range;

use crate::rpc::{self, Frame};
use crate::v16::{HeartbeatRequest, decode};

/// The unique id of `text` when it is a CALL of Heartbeat with a valid payload; None for
/// anything else (which then takes the ordinary way, with its ordinary errors).
pub fn call_id(text: &str) -> Option<Cow<'_, str>> {
    match rpc::parse_frame(text) {
        Ok(Frame::Call {
            unique_id,
            action,
            payload,
        }) if action == "Heartbeat" && decode::<HeartbeatRequest>(payload).is_ok() => {
            Some(unique_id)
        }
        _ => None,
    }
}

/// Appends Heartbeat.conf's payload; `time` is RFC 3339 text (the clock's, never empty).
pub fn write_conf(out: &mut Vec<u8>, time: &str) {
    out.extend_from_slice(b"{\"currentTime\":\"");
    out.extend_from_slice(time.as_bytes());
    out.extend_from_slice(b"\"}");
}

/// Appends the whole answer `[3,"<unique_id>",{"currentTime":"<time>"}]`; returns where its
/// payload lies in `out` (the journal records it).
pub fn write_answer(out: &mut Vec<u8>, unique_id: &str, time: &str) -> Range<usize> {
    rpc::write_call_result_head(out, unique_id);
    let start = out.len();
    write_conf(out, time);
    let end = out.len();
    out.push(rpc::CALL_RESULT_END);
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v16::{Action, HeartbeatResponse, validate_response};

    #[test]
    fn only_a_valid_heartbeat_call_is_one() {
        assert_eq!(call_id(r#"[2,"h1","Heartbeat",{}]"#).as_deref(), Some("h1"));
        assert_eq!(
            call_id(r#"[2,"h\"2","Heartbeat",{}]"#).as_deref(),
            Some("h\"2")
        );
        for other in [
            r#"[2,"h1","Heartbeat",{"extra":1}]"#,
            r#"[2,"h1","heartbeat",{}]"#,
            r#"[2,"h1","StatusNotification",{}]"#,
            r#"[3,"h1",{}]"#,
            r#"[2,"h1","Heartbeat"]"#,
            "not json",
        ] {
            assert_eq!(call_id(other), None, "{other}");
        }
    }

    #[test]
    fn the_answer_is_a_valid_heartbeat_conf() {
        let time = "2026-12-06T10:00:00.120Z";
        let mut out = b"xx".to_vec();
        let payload = write_answer(&mut out, "id\"1", time);
        let text = std::str::from_utf8(&out[2..]).unwrap();
        assert_eq!(
            text,
            r#"[3,"id\"1",{"currentTime":"2026-12-06T10:00:00.120Z"}]"#
        );
        let payload = std::str::from_utf8(&out[payload]).unwrap();
        let raw = serde_json::value::RawValue::from_string(payload.to_owned()).unwrap();
        validate_response(Action::Heartbeat, &raw).unwrap();
        let conf: HeartbeatResponse = decode(&raw).unwrap();
        assert_eq!(conf.current_time.as_str(), time);
    }
}
