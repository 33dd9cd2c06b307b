//! Heartbeat, answerable wherever the time is known. Heartbeat.conf is `{"currentTime": now}`
//! for every accepted charge point, so the gateway's event loop answers it without handing it to
//! a processor, and the processor, when it answers one, writes the same bytes the same way.
//! Whether a connection's Heartbeats may be answered early (its charge point Accepted, nothing
//! of it in flight that the answer could overtake) is the caller's to decide.
//!
//! [`call_id`] then [`write_answer`] are that shortcut whole, as pure functions that need
//! nothing else of the crate: a loop gives `call_id` every message of such a connection.
//! Charge points send Heartbeat as `[2,"<id>","Heartbeat",{}]`; that form (JSON whitespace
//! allowed between tokens, an id of 1 to 36 printable ASCII characters without escapes) is
//! recognised here from its bytes. A CALL of another action is told apart from its first
//! tokens, so a MeterValues is not parsed twice (here and by its processor). Anything else,
//! a Heartbeat written some other way included (an escaped or non-ASCII id or action, a
//! payload with members, ...), is None: its processor parses it fully and answers it as it
//! answers any message. A [`PlainId`] needs no escaping, so the answer is written as it is.
//! `tests` holds the recognizer to the full RPC parse on every variant it generates (whatever
//! it answers is a Heartbeat CALL with that id; the usual forms are all answered), and its
//! answer to `rpc`'s CALLRESULT writer; the `rpc_envelope` fuzz target checks the first on
//! every input.

use std::borrow::Cow;
use std::ops::Range;

use crate::rpc::{self, Frame};
use crate::v16::{HeartbeatRequest, decode};

/// A CALL's unique id of 1 to 36 printable ASCII characters, neither `"` nor `\\`: written
/// into JSON as it is. Only [`call_id`] makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainId<'a>(&'a str);

impl<'a> PlainId<'a> {
    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

/// The unique id of `text` when it is a Heartbeat CALL in the usual form (see the module
/// doc); None for anything else, which takes the ordinary way with its ordinary answer.
pub fn call_id(text: &str) -> Option<PlainId<'_>> {
    match shape(text) {
        Shape::Plain(unique_id) => Some(PlainId(unique_id)),
        Shape::Other | Shape::Unsure => None,
    }
}

/// The unique id of `text` by the full RPC parse and payload check when it is a Heartbeat CALL
/// written any way: what [`call_id`] must agree with whenever it answers (public for the
/// `rpc_envelope` fuzz target).
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
    /// Perhaps a Heartbeat CALL written some other way: only the full parse can tell.
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
/// payload lies in `out` (the journal records it). The id needs no escaping (a [`PlainId`]).
pub fn write_answer(out: &mut Vec<u8>, unique_id: PlainId<'_>, time: &str) -> Range<usize> {
    out.extend_from_slice(b"[3,\"");
    out.extend_from_slice(unique_id.0.as_bytes());
    out.extend_from_slice(b"\",");
    let start = out.len();
    write_conf(out, time);
    let end = out.len();
    out.push(b']');
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v16::{Action, HeartbeatResponse, validate_response};

    #[test]
    fn only_a_valid_heartbeat_call_is_one() {
        let id = |text| call_id(text).map(|id| id.as_str());
        assert_eq!(id(r#"[2,"h1","Heartbeat",{}]"#), Some("h1"));
        // A Heartbeat all the same, but its id would need escaping: its processor answers it.
        let escaped = r#"[2,"h\"2","Heartbeat",{}]"#;
        assert_eq!(id(escaped), None);
        assert_eq!(parsed_call_id(escaped).as_deref(), Some("h\"2"));
        for other in [
            r#"[2,"h1","Heartbeat",{"extra":1}]"#,
            r#"[2,"h1","heartbeat",{}]"#,
            r#"[2,"h1","StatusNotification",{}]"#,
            r#"[3,"h1",{}]"#,
            r#"[2,"h1","Heartbeat"]"#,
            "not json",
        ] {
            assert_eq!(id(other), None, "{other}");
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
        let (mut plain, mut by_processor) = (0, 0);
        for text in variants() {
            let parsed = parsed_call_id(&text);
            match call_id(&text) {
                Some(id) => {
                    assert_eq!(parsed.as_deref(), Some(id.as_str()), "{text:?}");
                    plain += 1;
                }
                None => by_processor += usize::from(parsed.is_some()),
            }
            if shape(&text) == Shape::Other {
                assert_eq!(parsed, None, "{text:?}: ruled out, yet a Heartbeat");
            }
        }
        // Type 2, a plain valid id (2 of them), Heartbeat, `{}` or `{ }`, `]` or `] `.
        assert_eq!(plain, 8, "the usual form is read from its bytes");
        // Escaped ids and actions, `{"customData":{}}`: Heartbeats the processor answers.
        assert!(by_processor > 0);
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
        let id = call_id(r#"[2,"id'1","Heartbeat",{}]"#).unwrap();
        let payload = write_answer(&mut out, id, time);
        let text = std::str::from_utf8(&out[2..]).unwrap();
        assert_eq!(
            text,
            r#"[3,"id'1",{"currentTime":"2026-12-06T10:00:00.120Z"}]"#
        );
        let payload = std::str::from_utf8(&out[payload]).unwrap();
        let raw = serde_json::value::RawValue::from_string(payload.to_owned()).unwrap();
        validate_response(Action::Heartbeat, &raw).unwrap();
        let conf: HeartbeatResponse = decode(&raw).unwrap();
        assert_eq!(conf.current_time.as_str(), time);
    }

    /// Written as it is, the id comes out as `rpc`'s escaping writer would write it.
    #[test]
    fn the_answer_is_what_the_rpc_writer_writes() {
        let time = "2026-12-06T10:00:00.120Z";
        let mut conf = Vec::new();
        write_conf(&mut conf, time);
        let conf = std::str::from_utf8(&conf).unwrap();
        let printable = (0x20u8..0x7F).map(char::from);
        let ids: Vec<String> = printable
            .clone()
            .map(String::from)
            .chain([
                printable
                    .filter(|c| !matches!(c, '"' | '\\'))
                    .take(36)
                    .collect(),
                "x".repeat(36),
            ])
            .collect();
        let mut answered = 0;
        for id in &ids {
            let text = format!(
                r#"[2,{},"Heartbeat",{{}}]"#,
                serde_json::to_string(id).unwrap()
            );
            let Some(plain) = call_id(&text) else {
                assert!(id.contains(['"', '\\']) || id.len() > 36, "{id:?}");
                continue;
            };
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            write_answer(&mut ours, plain, time);
            rpc::write_call_result(&mut theirs, id, conf);
            assert_eq!(ours, theirs, "{id:?}");
            answered += 1;
        }
        assert_eq!(answered, ids.len() - 2);
    }
}
