//! Heartbeat, answerable wherever the time is known. Heartbeat.conf is `{"currentTime": now}`
//! for every accepted charge point, so the gateway's event loop answers it without handing it to
//! a processor, and the processor, when it answers one, writes the same bytes the same way.
//! Whether a connection's Heartbeats may be answered early (its charge point Accepted, nothing
//! of it in flight that the answer could overtake) is the caller's to decide.
//!
//! [`call_id`] then [`write_answer`] are that shortcut whole, as pure functions: a loop gives
//! `call_id` every message of such a connection. Charge points send Heartbeat as
//! `[2,"<id>","Heartbeat",{}]`; that form (JSON whitespace allowed between tokens, an id of 1
//! to 36 printable ASCII characters without escapes) is recognised here from its bytes. A CALL of another action is told
//! apart from its first tokens, so a MeterValues is not parsed twice (here and by its
//! processor). Only a Heartbeat written some other way (an escaped or non-ASCII id or action,
//! a payload with members, ...) goes through the full RPC parse, which decides as it would anywhere.
//! `tests` checks the recognizer against that parse on every variant it generates, as does the
//! `rpc_envelope` fuzz target.

use std::borrow::Cow;
use std::ops::Range;

use crate::rpc::{self, Frame};
use crate::v16::{HeartbeatRequest, decode};

/// The unique id of `text` when it is a CALL of Heartbeat with a valid payload; None for
/// anything else (which then takes the ordinary way, with its ordinary errors).
pub fn call_id(text: &str) -> Option<Cow<'_, str>> {
    match shape(text) {
        Shape::Plain(unique_id) => Some(Cow::Borrowed(unique_id)),
        Shape::Other => None,
        Shape::Unsure => parsed_call_id(text),
    }
}

/// [`call_id`] by the full RPC parse and payload check, what the recognizer must agree with
/// (public for the `rpc_envelope` fuzz target).
#[doc(hidden)]
pub fn parsed_call_id(text: &str) -> Option<Cow<'_, str>> {
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

/// What the first tokens of a text say about it being a CALL of Heartbeat.
#[derive(Debug, PartialEq, Eq)]
enum Shape<'a> {
    /// `[2,"<id>","Heartbeat",{}]` with a plain id: certainly one, with this id.
    Plain(&'a str),
    /// Certainly not one: not a CALL, or a CALL of another action, or not valid JSON.
    Other,
    /// A Heartbeat CALL written some other way: only the full parse can tell.
    Unsure,
}

/// Reads `text` token by token as far as it must (see the module doc).
fn shape(text: &str) -> Shape<'_> {
    let mut at = Cursor {
        bytes: text.as_bytes(),
        pos: 0,
    };
    // Up to the action, anything unexpected means the full parse cannot find a Heartbeat
    // CALL either: no array, another MessageTypeId (JSON has no `02`), no string id.
    if !(at.token(b'[') && at.token(b'2') && at.token(b',')) {
        return Shape::Other;
    }
    let Some((id, id_plain)) = at.string() else {
        return Shape::Other;
    };
    if !at.token(b',') {
        return Shape::Other;
    }
    match at.string() {
        Some((action, true)) if action != b"Heartbeat" => return Shape::Other,
        Some((_, true)) => {}
        Some((_, false)) => return Shape::Unsure, // an escaped action may still be Heartbeat
        None => return Shape::Other,
    }
    let id_ok = id_plain && (1..=rpc::MAX_UNIQUE_ID_LEN).contains(&id.len());
    let rest_ok = at.token(b',') && at.token(b'{') && at.token(b'}') && at.token(b']');
    match std::str::from_utf8(id) {
        Ok(id) if id_ok && rest_ok && at.at_end() => Shape::Plain(id),
        _ => Shape::Unsure,
    }
}

/// A position in the bytes of a text.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// `byte` after optional whitespace (a `2` followed by more of a number, `20` or `2.0`,
    /// fails at the `,` that must follow).
    fn token(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        if self.bytes.get(self.pos) != Some(&byte) {
            return false;
        }
        self.pos += 1;
        true
    }

    /// A JSON string after optional whitespace: its raw content, and whether it is plain
    /// (printable ASCII, no escapes). None: no string here, or one no JSON parser accepts (a
    /// control character, or no end).
    fn string(&mut self) -> Option<(&'a [u8], bool)> {
        self.skip_whitespace();
        if self.bytes.get(self.pos) != Some(&b'"') {
            return None;
        }
        let start = self.pos + 1;
        let mut plain = true;
        let mut i = start;
        loop {
            match *self.bytes.get(i)? {
                b'"' => break,
                b'\\' => {
                    plain = false;
                    i += 1; // the escaped character (checked by the full parse)
                }
                0..0x20 => return None,
                0x7F.. => plain = false,
                _ => {}
            }
            i += 1;
        }
        self.pos = i + 1;
        Some((&self.bytes[start..i], plain))
    }

    fn at_end(&mut self) -> bool {
        self.skip_whitespace();
        self.pos == self.bytes.len()
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

    /// Heartbeat CALLs and near misses, written in many ways.
    fn variants() -> Vec<String> {
        let spaces = ["", " ", "\t", "\r\n ", "  \n"];
        let types = ["2", "3", "20", "2.0", "02", "\"2\"", "-2", "2e0", "22"];
        let ids = [
            r#""h1""#,
            r#""""#,
            r#""a-36-characters-long-id-000000000000""#,
            r#""a-37-characters-long-id-0000000000000""#,
            r#""q\"uote""#,
            r#""\u0041""#,
            r#""é""#,
            "\"tab\there\"",
            "\"del\u{7f}\"",
            "5",
            "null",
            r#""unterminated"#,
        ];
        let actions = [
            r#""Heartbeat""#,
            r#""heartbeat""#,
            r#""Heart\u0062eat""#,
            r#""StatusNotification""#,
            r#""Heartbeat ""#,
            r#""Heartbeat\"""#,
            "7",
        ];
        let payloads = [
            "{}",
            "{ }",
            r#"{"a":1}"#,
            "[]",
            "null",
            "{",
            r#"{"customData":{}}"#,
        ];
        let ends = ["]", "] ", ",1]", "]]", "", "] x"];
        let mut out = Vec::new();
        for (n, ty) in types.iter().enumerate() {
            for (k, id) in ids.iter().enumerate() {
                for (a, action) in actions.iter().enumerate() {
                    for (p, payload) in payloads.iter().enumerate() {
                        for (e, end) in ends.iter().enumerate() {
                            let sp = |i: usize| spaces[(n + k + a + p + e + i) % spaces.len()];
                            out.push(format!(
                                "{}[{}{ty}{},{}{id}{},{action},{}{payload}{}{end}",
                                sp(0),
                                sp(1),
                                sp(2),
                                sp(3),
                                sp(4),
                                sp(5),
                                sp(6)
                            ));
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn the_recognizer_agrees_with_the_full_parse() {
        let mut plain = 0;
        for text in variants() {
            assert_eq!(call_id(&text), parsed_call_id(&text), "{text:?}");
            plain += usize::from(matches!(shape(&text), Shape::Plain(_)));
        }
        // Type 2, a plain valid id (2 of them), Heartbeat, `{}` or `{ }`, `]` or `] `.
        assert_eq!(plain, 8, "the usual form is read from its bytes");
        for usual in [
            r#"[2,"h1","Heartbeat",{}]"#,
            "[2, \"h1\", \"Heartbeat\", {}]",
            "\n[ 2 ,\"h1\",\"Heartbeat\" , { } ]\n",
        ] {
            assert_eq!(shape(usual), Shape::Plain("h1"), "{usual:?}");
        }
        for other in [
            r#"[2,"h1","StatusNotification",{"connectorId":1}]"#,
            r#"[3,"h1",{}]"#,
            r#"[2,"h1","MeterValues","#,
        ] {
            assert_eq!(
                shape(other),
                Shape::Other,
                "{other:?}: decided without a parse"
            );
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
