//! The OCPP-J RPC envelope: turning one WebSocket text message into a [`Frame`], and writing
//! CALL / CALLRESULT / CALLERROR text. Payloads stay raw JSON ([`RawValue`]); checking them
//! against an action's schema is the next layer's job.
//!
//! - CALL       `[2, "<UniqueId>", "<Action>", {payload}]`
//! - CALLRESULT `[3, "<UniqueId>", {payload}]`
//! - CALLERROR  `[4, "<UniqueId>", "<errorCode>", "<errorDescription>", {errorDetails}]`
//!
//! A message that is not a usable frame is a [`FrameError`], split by what the receiver must do:
//! - [`FrameError::Answer`]: a malformed CALL whose UniqueId could be read. Its sender waits for
//!   a response to that id (sending no other CALL meanwhile): a CALLERROR now beats a timeout.
//! - [`FrameError::Unanswerable`]: no id to answer with, or a malformed response. Responses are
//!   never answered (two peers could bounce errors forever): log and count.
//! - [`FrameError::UnknownMessageType`]: the specification says to ignore such a message.
//!
//! Every input is hostile: parsing never panics, walks the text once with the array's elements
//! borrowed from it (five kept at most, the rest skipped), and error descriptions quote at most
//! 64 characters of input. A valid frame borrows everything from the text (a string with
//! escapes is the one thing decoded into a new `String`), so the hot path allocates nothing.
//!
//! Decisions where the specification is silent:
//! - Lengths are counted in Unicode scalar values (`char`s).
//! - MessageTypeNumber is digits only: `"2"`, `2.0`, `2e0`, `-1` and numbers past `u64::MAX` are
//!   Unanswerable, not unknown types.
//! - A CALL is checked in the order UniqueId, element count, Action, payload, and the first problem
//!   is answered: too few elements is ProtocolError ("incomplete"), anything else is
//!   FormationViolation.
//! - Action is a non-empty string of at most 64 characters (the longest 1.6 name has 32): the cap
//!   bounds memory; unknown names are the next layer's NotImplemented.
//! - An empty or too long UniqueId of a CALL is echoed in the answer if it has at most 128
//!   characters; a longer one is Unanswerable (a cut id is useless to the peer, a whole one would
//!   let it make us send back any amount of junk).
//! - A string with a lone surrogate escape (`"\ud800"`) is invalid: as UniqueId the message is
//!   Unanswerable, as Action it is a FormationViolation.
//! - A received CALLERROR's errorCode is any string of at most 64 characters (the peer may use
//!   codes we don't know); errorDescription is kept whole (the WebSocket message limit bounds it).
//! - Nesting inside a payload is not limited here (serde_json skips raw values without recursing);
//!   the payload layer's serde_json recursion limit applies when it decodes one.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::error::Category;
use serde_json::value::RawValue;

/// Longest UniqueId the specification allows.
pub const MAX_UNIQUE_ID_LEN: usize = 36;
/// Longest Action accepted (the longest 1.6 action name has 32 characters).
const MAX_ACTION_LEN: usize = 64;
/// Longest invalid UniqueId still echoed in a CALLERROR.
pub const MAX_ECHOED_ID_LEN: usize = 128;
/// Longest errorCode accepted in a received CALLERROR.
const MAX_ERROR_CODE_LEN: usize = 64;
/// Most characters of input quoted in an error description.
const ECHO_LIMIT: usize = 64;
/// Most bytes one character takes in a JSON string (`\ud83d\ude80`).
const MAX_JSON_BYTES_PER_CHAR: usize = 12;

/// Defines [`CallErrorCode`] so that each wire spelling is its variant's name.
macro_rules! call_error_codes {
    ($($code:ident),* $(,)?) => {
        /// The ten OCPP 1.6 CallError codes, 1.6 spellings (including
        /// "OccurenceConstraintViolation").
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum CallErrorCode { $($code),* }

        impl CallErrorCode {
            /// Every code, in the specification's order.
            pub const ALL: [CallErrorCode; 10] = [$(Self::$code),*];

            /// The code's position in [`CallErrorCode::ALL`] (for per-code counters).
            pub fn index(self) -> usize {
                self as usize
            }

            /// The code as written on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$code => stringify!($code)),* }
            }
        }
    };
}

call_error_codes!(
    NotImplemented,
    NotSupported,
    InternalError,
    ProtocolError,
    SecurityError,
    FormationViolation,
    PropertyConstraintViolation,
    OccurenceConstraintViolation,
    TypeConstraintViolation,
    GenericError,
);

impl CallErrorCode {
    /// The code with exactly this 1.6 spelling (case-sensitive; 2.0.1 names are not codes here).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|code| code.as_str() == s)
    }
}

impl fmt::Display for CallErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One decoded frame, borrowed from the message text.
#[derive(Debug)]
pub enum Frame<'a> {
    /// `unique_id` has 1 to 36 characters, `action` 1 to 64, `payload` is a JSON object.
    Call {
        unique_id: Cow<'a, str>,
        action: Cow<'a, str>,
        payload: &'a RawValue,
    },
    /// `unique_id` has 1 to 36 characters, `payload` is a JSON object.
    CallResult {
        unique_id: Cow<'a, str>,
        payload: &'a RawValue,
    },
    /// `code` is the peer's string, known to us or not; `details` is a JSON object.
    CallError {
        unique_id: Cow<'a, str>,
        code: Cow<'a, str>,
        description: Cow<'a, str>,
        details: &'a RawValue,
    },
    /// OCPP 2.1 (type 6): a message never answered, `[6, id, action, payload]`.
    Send {
        unique_id: Cow<'a, str>,
        action: Cow<'a, str>,
        payload: &'a RawValue,
    },
    /// OCPP 2.1 (type 5): the receiver of a CALLRESULT could not process it,
    /// `[5, id, code, description, details]`; it answers that CALLRESULT, not a CALL.
    CallResultError {
        unique_id: Cow<'a, str>,
        code: Cow<'a, str>,
        description: Cow<'a, str>,
        details: &'a RawValue,
    },
}

/// Why a text message is not a usable frame, split by what the receiver must do.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A CALL whose UniqueId could be read but which is malformed: answer with this CALLERROR.
    #[error("malformed CALL {unique_id:?}, answer {code}: {description}")]
    Answer {
        unique_id: String,
        code: CallErrorCode,
        description: String,
    },
    /// Nothing can be answered (not JSON, not an array, no readable UniqueId, or a malformed
    /// CALLRESULT/CALLERROR - responses are never answered): log and count.
    #[error("unanswerable message: {reason}")]
    Unanswerable { reason: String },
    /// A well-formed array whose MessageTypeNumber is an integer other than 2, 3, 4: 1.6 says
    /// to ignore it; 2.0.1 answers `MessageTypeNotSupported` to `unique_id` when element 1 is
    /// a valid UniqueId.
    #[error("unknown MessageTypeNumber {message_type}, message ignored")]
    UnknownMessageType {
        message_type: u64,
        unique_id: Option<String>,
    },
}

/// How deeply a payload may nest arrays and objects. OCPP 1.6's deepest schema (a
/// SetChargingProfile's schedule periods) needs 5; 32 leaves room for DataTransfer's free
/// `data` and stops documents that break the journal's readers (jq stops at 10,000, Python's
/// json near 1,000) long before that.
pub const MAX_NESTING: usize = 32;

/// Whether `text` nests arrays/objects more than `limit` deep (one pass, stops early).
pub fn nests_deeper_than(text: &str, limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in text.as_bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The UniqueId of a text that starts like a CALL (`[2, "<id>"`), read without parsing the
/// rest: what a refusal of the whole message can still answer to.
fn leading_call_id(text: &str) -> Option<String> {
    if message_type(text) != Some(2) {
        return None;
    }
    let rest = text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .strip_prefix('[')?;
    let rest = rest.trim_start_matches([
        ' ', '\t', '\n', '\r', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9',
    ]);
    let rest = rest
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .strip_prefix(',')?;
    let rest = rest.trim_start_matches([' ', '\t', '\n', '\r']);
    if !rest.starts_with('"') {
        return None;
    }
    let mut escaped = false;
    let end = rest.char_indices().skip(1).find_map(|(i, c)| match c {
        _ if escaped => {
            escaped = false;
            None
        }
        '\\' => {
            escaped = true;
            None
        }
        '"' => Some(i),
        _ => None,
    })?;
    let id: String = serde_json::from_str(&rest[..=end]).ok()?;
    (1..=MAX_UNIQUE_ID_LEN)
        .contains(&id.chars().count())
        .then_some(id)
}

/// Parses one text message into a frame; the module doc has the rules.
pub fn parse_frame(text: &str) -> Result<Frame<'_>, FrameError> {
    parse_frame_with(text, false)
}

/// [`parse_frame`] for OCPP 2.1, which adds CALLRESULTERROR (5) and SEND (6). Neither is ever
/// answered: a malformed one is [`FrameError::Unanswerable`].
pub fn parse_frame_21(text: &str) -> Result<Frame<'_>, FrameError> {
    parse_frame_with(text, true)
}

fn parse_frame_with(text: &str, ocpp21: bool) -> Result<Frame<'_>, FrameError> {
    // The envelope is one level; the payload may have MAX_NESTING more.
    if nests_deeper_than(text, MAX_NESTING + 1) {
        let description = format!("nested deeper than {MAX_NESTING} levels");
        return Err(match leading_call_id(text) {
            Some(unique_id) => FrameError::Answer {
                unique_id,
                code: CallErrorCode::FormationViolation,
                description,
            },
            None => unanswerable(description),
        });
    }
    let elements: Elements<'_> = serde_json::from_str(text).map_err(|e| match e.classify() {
        // A data error names the value found, possibly quoting it whole: say less.
        Category::Data => unanswerable("message is not a JSON array"),
        _ => {
            let detail = e.to_string();
            unanswerable(format!("message is not valid JSON: {}", capped(&detail)))
        }
    })?;
    let [Some(first), ..] = elements.first else {
        return Err(unanswerable("message is an empty array"));
    };
    let digits = first.get();
    let number = capped(digits);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        let problem = format!("MessageTypeNumber must be a non-negative integer, got {number}");
        return Err(unanswerable(problem));
    }
    match digits.parse() {
        Ok(2) => parse_call(&elements),
        Ok(3) => parse_call_result(&elements),
        Ok(4) => parse_call_error(&elements, "CALLERROR"),
        Ok(5) if ocpp21 => parse_call_error(&elements, "CALLRESULTERROR"),
        Ok(6) if ocpp21 => parse_send(&elements),
        Ok(message_type) => Err(FrameError::UnknownMessageType {
            message_type,
            unique_id: read_unique_id(&elements)
                .ok()
                .filter(|id| unique_id_problem(id).is_none())
                .map(Cow::into_owned),
        }),
        Err(_) => Err(unanswerable(format!(
            "MessageTypeNumber {number} is too big"
        ))),
    }
}

/// The MessageTypeNumber of a message, read from its first bytes without parsing the rest
/// (None when the text does not start like an OCPP-J array). Loops use it to keep answers to
/// their own CALLs and pass everything else on.
pub fn message_type(text: &str) -> Option<u64> {
    let rest = text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .strip_prefix('[')?;
    let rest = rest.trim_start_matches([' ', '\t', '\n', '\r']);
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    rest[..digits].parse().ok()
}

/// Appends the CALL `[2,"<unique_id>","<action>",<payload>]`. The caller guarantees that
/// `payload` is a JSON object (checked in debug builds); strings are escaped, so any is fine.
pub fn write_call(out: &mut Vec<u8>, unique_id: &str, action: &str, payload: &str) {
    debug_assert!(payload.starts_with('{'));
    out.extend_from_slice(b"[2,");
    push_json_str(out, unique_id);
    out.push(b',');
    push_json_str(out, action);
    out.push(b',');
    out.extend_from_slice(payload.as_bytes());
    out.push(b']');
}

/// Appends the start of a CALLRESULT, `[3,"<unique_id>",`: the payload (a JSON object) and
/// [`CALL_RESULT_END`] follow.
pub fn write_call_result_head(out: &mut Vec<u8>, unique_id: &str) {
    out.extend_from_slice(b"[3,");
    push_json_str(out, unique_id);
    out.push(b',');
}

/// What closes a CALLRESULT after its payload.
pub const CALL_RESULT_END: u8 = b']';

/// Appends the CALLRESULT `[3,"<unique_id>",<payload>]`; `payload` is a JSON object.
pub fn write_call_result(out: &mut Vec<u8>, unique_id: &str, payload: &str) {
    debug_assert!(payload.starts_with('{'));
    write_call_result_head(out, unique_id);
    out.extend_from_slice(payload.as_bytes());
    out.push(CALL_RESULT_END);
}

/// Appends the CALLERROR `[4,"<unique_id>","<code>","<description>",{}]`: errorDetails is always
/// `{}`; description "" allowed.
pub fn write_call_error(
    out: &mut Vec<u8>,
    unique_id: &str,
    code: CallErrorCode,
    description: &str,
) {
    write_call_error_in(out, crate::Version::V16, unique_id, code, description)
}

/// [`write_call_error`] with the code as `version` spells it.
pub fn write_call_error_in(
    out: &mut Vec<u8>,
    version: crate::Version,
    unique_id: &str,
    code: CallErrorCode,
    description: &str,
) {
    write_call_error_coded(out, unique_id, code.spelled(version), description)
}

/// [`write_call_error`] with a code given as text (2.0.1's `MessageTypeNotSupported`, which 1.6
/// does not have).
pub fn write_call_error_coded(out: &mut Vec<u8>, unique_id: &str, code: &str, description: &str) {
    out.extend_from_slice(b"[4,");
    push_json_str(out, unique_id);
    out.extend_from_slice(b",\"");
    out.extend_from_slice(code.as_bytes());
    out.extend_from_slice(b"\",");
    push_json_str(out, description);
    out.extend_from_slice(b",{}]");
}

/// Appends 2.1's CALLRESULTERROR `[5,"<unique_id>","<code>","<description>",{}]`: the
/// CALLRESULT with `unique_id` could not be processed.
pub fn write_call_result_error(
    out: &mut Vec<u8>,
    unique_id: &str,
    code: CallErrorCode,
    description: &str,
) {
    out.extend_from_slice(b"[5,");
    push_json_str(out, unique_id);
    out.extend_from_slice(b",\"");
    out.extend_from_slice(code.spelled(crate::Version::V201).as_bytes());
    out.extend_from_slice(b"\",");
    push_json_str(out, description);
    out.extend_from_slice(b",{}]");
}

/// Appends 2.1's SEND `[6,"<unique_id>","<action>",<payload>]` (never answered).
pub fn write_send(out: &mut Vec<u8>, unique_id: &str, action: &str, payload: &str) {
    debug_assert!(payload.starts_with('{'));
    out.extend_from_slice(b"[6,");
    push_json_str(out, unique_id);
    out.push(b',');
    push_json_str(out, action);
    out.push(b',');
    out.extend_from_slice(payload.as_bytes());
    out.push(b']');
}

/// Appends `s` as a JSON string escaped exactly as serde_json does it (the tests compare): `"`,
/// `\` and control characters; everything else, non-ASCII included, as is.
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len().saturating_add(2));
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        plain = i + 1;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

/// The top-level array: its first five elements, borrowed from the text, and its length. Later
/// elements are skipped unstored, so a huge array costs no memory.
struct Elements<'a> {
    first: [Option<&'a RawValue>; 5],
    len: usize,
}

impl<'de> Deserialize<'de> for Elements<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(ElementsVisitor)
    }
}

struct ElementsVisitor;

impl<'de> Visitor<'de> for ElementsVisitor {
    type Value = Elements<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut first = [None; 5];
        let mut len = 0usize;
        loop {
            let more = match first.get_mut(len) {
                Some(slot) => {
                    *slot = seq.next_element()?;
                    slot.is_some()
                }
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(Elements { first, len });
            }
            len = len.saturating_add(1);
        }
    }
}

fn parse_call<'a>(elements: &Elements<'a>) -> Result<Frame<'a>, FrameError> {
    use CallErrorCode::{FormationViolation, ProtocolError};
    let unique_id = read_unique_id(elements)?;
    let answer = |code, description| FrameError::Answer {
        unique_id: unique_id.to_string(),
        code,
        description,
    };
    let invalid = |description| answer(FormationViolation, description);
    if let Some(problem) = unique_id_problem(&unique_id) {
        return Err(invalid(problem));
    }
    let (action, payload) = match (elements.len, elements.first) {
        (4, [_, _, Some(action), Some(payload), _]) => (action, payload),
        (len @ ..4, _) => {
            let problem = format!("CALL has {len} elements, expected 4 (incomplete)");
            return Err(answer(ProtocolError, problem));
        }
        (len, _) => return Err(invalid(format!("CALL has {len} elements, expected 4"))),
    };
    let action = read_string(action, "Action", MAX_ACTION_LEN).map_err(invalid)?;
    if action.is_empty() {
        return Err(invalid("Action is empty".to_owned()));
    }
    let payload = read_object(payload, "payload").map_err(invalid)?;
    Ok(Frame::Call {
        unique_id,
        action,
        payload,
    })
}

fn parse_call_result<'a>(elements: &Elements<'a>) -> Result<Frame<'a>, FrameError> {
    let unique_id = read_response_id(elements, "CALLRESULT")?;
    let bad = |problem: String| unanswerable(format!("CALLRESULT {unique_id:?}: {problem}"));
    let (3, [_, _, Some(payload), ..]) = (elements.len, elements.first) else {
        return Err(bad(format!("has {} elements, expected 3", elements.len)));
    };
    let payload = read_object(payload, "payload").map_err(bad)?;
    Ok(Frame::CallResult { unique_id, payload })
}

/// A CALLERROR, or (`kind` "CALLRESULTERROR") 2.1's error about a CALLRESULT: the same shape.
fn parse_call_error<'a>(elements: &Elements<'a>, kind: &str) -> Result<Frame<'a>, FrameError> {
    let unique_id = read_response_id(elements, kind)?;
    let bad = |problem: String| unanswerable(format!("{kind} {unique_id:?}: {problem}"));
    let (5, [_, _, Some(code), Some(description), Some(details)]) = (elements.len, elements.first)
    else {
        return Err(bad(format!("has {} elements, expected 5", elements.len)));
    };
    let code = read_string(code, "errorCode", MAX_ERROR_CODE_LEN).map_err(bad)?;
    let description = read_string(description, "errorDescription", usize::MAX).map_err(bad)?;
    let details = read_object(details, "errorDetails").map_err(bad)?;
    if kind == "CALLRESULTERROR" {
        return Ok(Frame::CallResultError {
            unique_id,
            code,
            description,
            details,
        });
    }
    Ok(Frame::CallError {
        unique_id,
        code,
        description,
        details,
    })
}

/// 2.1's SEND: a CALL's shape, never answered (so nothing in it is answerable either).
fn parse_send<'a>(elements: &Elements<'a>) -> Result<Frame<'a>, FrameError> {
    let unique_id = read_response_id(elements, "SEND")?;
    let bad = |problem: String| unanswerable(format!("SEND {unique_id:?}: {problem}"));
    let (4, [_, _, Some(action), Some(payload), _]) = (elements.len, elements.first) else {
        return Err(bad(format!("has {} elements, expected 4", elements.len)));
    };
    let action = read_string(action, "Action", MAX_ACTION_LEN).map_err(bad)?;
    if action.is_empty() {
        return Err(bad("Action is empty".to_owned()));
    }
    let payload = read_object(payload, "payload").map_err(bad)?;
    Ok(Frame::Send {
        unique_id,
        action,
        payload,
    })
}

/// Element 1 as a string of at most 128 characters, which may still be an invalid UniqueId.
fn read_unique_id<'a>(elements: &Elements<'a>) -> Result<Cow<'a, str>, FrameError> {
    let [_, Some(raw), ..] = elements.first else {
        return Err(unanswerable("message has no UniqueId"));
    };
    read_string(raw, "UniqueId", MAX_ECHOED_ID_LEN).map_err(unanswerable)
}

/// Element 1 of a response, which must be a valid UniqueId.
fn read_response_id<'a>(elements: &Elements<'a>, kind: &str) -> Result<Cow<'a, str>, FrameError> {
    let unique_id = read_unique_id(elements)?;
    match unique_id_problem(&unique_id) {
        Some(problem) => Err(unanswerable(format!("{kind}: {problem}"))),
        None => Ok(unique_id),
    }
}

fn unique_id_problem(unique_id: &str) -> Option<String> {
    if unique_id.is_empty() {
        Some("UniqueId is empty".to_owned())
    } else if unique_id.chars().count() > MAX_UNIQUE_ID_LEN {
        let max = MAX_UNIQUE_ID_LEN;
        Some(format!("UniqueId is longer than {max} characters"))
    } else {
        None
    }
}

/// Decodes a JSON string of at most `max_chars` characters; the error names `what` was wrong.
fn read_string<'a>(
    raw: &'a RawValue,
    what: &str,
    max_chars: usize,
) -> Result<Cow<'a, str>, String> {
    let text = raw.get();
    if !text.starts_with('"') {
        return Err(format!("{what} must be a string, got {}", json_kind(raw)));
    }
    let too_long = || format!("{what} is longer than {max_chars} characters");
    // Text that can only decode to too many characters is refused undecoded.
    let max_bytes = max_chars.saturating_mul(MAX_JSON_BYTES_PER_CHAR);
    if text.len() > max_bytes.saturating_add(2) {
        return Err(too_long());
    }
    // Without escapes the string is its own text; only escaped ones are decoded.
    let decoded: Cow<'a, str> = match text.get(1..text.len() - 1) {
        Some(inner) if !inner.contains('\\') => Cow::Borrowed(inner),
        _ => Cow::Owned(
            serde_json::from_str::<String>(text)
                .map_err(|_| format!("{what} is not a valid string (lone surrogate escape)"))?,
        ),
    };
    if decoded.chars().count() > max_chars {
        return Err(too_long());
    }
    Ok(decoded)
}

fn read_object<'a>(raw: &'a RawValue, what: &str) -> Result<&'a RawValue, String> {
    if raw.get().starts_with('{') {
        Ok(raw)
    } else {
        let kind = json_kind(raw);
        Err(format!("{what} must be a JSON object, got {kind}"))
    }
}

/// The JSON type of a raw value, from its first byte (raw values carry no leading whitespace).
fn json_kind(raw: &RawValue) -> &'static str {
    match raw.get().bytes().next() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

fn unanswerable(reason: impl Into<String>) -> FrameError {
    FrameError::Unanswerable {
        reason: reason.into(),
    }
}

/// At most the first 64 characters of `s`.
pub fn capped(s: &str) -> &str {
    s.char_indices()
        .nth(ECHO_LIMIT)
        .and_then(|(end, _)| s.get(..end))
        .unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CallErrorCode::{FormationViolation as FV, ProtocolError as PE};
    use serde_json::Value;

    /// A frame as strings: its type number, then its fields (payloads as raw JSON).
    fn fields(frame: Frame<'_>) -> Vec<String> {
        let (number, fields, raw) = match frame {
            Frame::Call {
                unique_id,
                action,
                payload,
            } => ("2", vec![unique_id, action], payload),
            Frame::CallResult { unique_id, payload } => ("3", vec![unique_id], payload),
            Frame::CallError {
                unique_id,
                code,
                description,
                details,
            } => ("4", vec![unique_id, code, description], details),
            Frame::CallResultError {
                unique_id,
                code,
                description,
                details,
            } => ("5", vec![unique_id, code, description], details),
            Frame::Send {
                unique_id,
                action,
                payload,
            } => ("6", vec![unique_id, action], payload),
        };
        let fields = fields.into_iter().map(String::from).collect();
        [vec![number.to_owned()], fields, vec![raw.get().to_owned()]].concat()
    }

    fn parts(text: &str) -> Vec<String> {
        fields(parse_frame(text).unwrap_or_else(|e| panic!("{text}: {e:?}")))
    }

    fn expect_answer(text: &str, id: &str, code: CallErrorCode, why: &str) {
        let Err(FrameError::Answer {
            unique_id,
            code: got,
            description,
        }) = parse_frame(text)
        else {
            panic!("{text}: expected Answer, got {:?}", parse_frame(text))
        };
        assert_eq!((unique_id.as_str(), got), (id, code), "{text}");
        assert!(description.contains(why), "{text}: {description}");
    }

    fn expect_unanswerable(text: &str, why: &str) {
        let Err(FrameError::Unanswerable { reason }) = parse_frame(text) else {
            panic!("{text:.80}: got {:?}", parse_frame(text))
        };
        let fits = reason.chars().count() < 200;
        assert!(reason.contains(why) && fits, "{text:.80}: {reason}");
    }

    /// Quotes, backslashes, control characters, non-ASCII, text that looks like JSON.
    const HOSTILE: &[&str] = &[
        "\"",
        "\\",
        "\u{0}\u{1}\u{8}\u{c}\n\r\t\u{1f}\u{7f}",
        "é漢🚀\u{2028}\u{2029}\u{feff}",
        "\"],[4,\"x\"",
        "\\u0000",
    ];

    #[test]
    fn writers_escape_like_serde_json_and_round_trip() {
        let payload: &RawValue = serde_json::from_str(r#"{"a":[1]}"#).expect("JSON");
        let ascii = (0..=0x80u32).filter_map(char::from_u32).map(String::from);
        let text = |out: &[u8]| String::from_utf8(out.to_vec()).expect("UTF-8");
        for s in ascii.chain(HOSTILE.iter().map(|s| (*s).to_owned())) {
            let mut out = Vec::new();
            push_json_str(&mut out, &s);
            let expected = serde_json::to_string(&s).expect("a str serializes");
            assert_eq!(text(&out), expected, "{s:?}");
            let start = out.len(); // the writers append
            write_call(&mut out, &s, &s, payload.get());
            assert_eq!(parts(&text(&out[start..])), ["2", &s, &s, payload.get()]);
            out.clear();
            write_call_result(&mut out, &s, payload.get());
            assert_eq!(parts(&text(&out)), ["3", &s, payload.get()]);
            for code in CallErrorCode::ALL {
                out.clear();
                write_call_error(&mut out, &s, code, &s);
                assert_eq!(parts(&text(&out)), ["4", &s, code.as_str(), &s, "{}"]);
                let value: Value = serde_json::from_slice(&out).expect("valid JSON");
                assert_eq!(value, serde_json::json!([4, s, code.as_str(), s, {}]));
            }
        }
    }

    #[test]
    fn ocpp_21_adds_send_and_callresulterror_and_only_21_reads_them() {
        let send = r#"[6,"s1","NotifyPeriodicEventStream",{"id":1,"pending":0,"basetime":"2026-12-06T10:00:00Z","data":[]}]"#;
        let Ok(Frame::Send {
            unique_id,
            action,
            payload,
        }) = parse_frame_21(send)
        else {
            panic!("a SEND")
        };
        assert_eq!((&*unique_id, &*action), ("s1", "NotifyPeriodicEventStream"));
        assert!(payload.get().starts_with("{\"id\":1"));
        let error = r#"[5,"c9","OccurrenceConstraintViolation","status missing",{}]"#;
        assert!(matches!(
            parse_frame_21(error),
            Ok(Frame::CallResultError { unique_id, code, .. })
                if unique_id == "c9" && code == "OccurrenceConstraintViolation"
        ));
        // Before 2.1 both are unknown message types (ignored, or MessageTypeNotSupported).
        for text in [send, error] {
            assert!(matches!(
                parse_frame(text),
                Err(FrameError::UnknownMessageType {
                    unique_id: Some(_),
                    ..
                })
            ));
        }
        // Neither is ever answered, malformed or not.
        for bad in [
            r#"[6,"s1","NotifyPeriodicEventStream"]"#,
            r#"[6,"s1","",{}]"#,
            r#"[6,"s1","X",[]]"#,
            r#"[6,"","X",{}]"#,
            r#"[5,"c9","X","y"]"#,
            r#"[5,"c9","X","y",[]]"#,
        ] {
            assert!(
                matches!(parse_frame_21(bad), Err(FrameError::Unanswerable { .. })),
                "{bad}"
            );
        }
        // A CALL, CALLRESULT and CALLERROR read as before.
        assert!(matches!(
            parse_frame_21(r#"[2,"a","Heartbeat",{}]"#),
            Ok(Frame::Call { .. })
        ));
        let mut out = Vec::new();
        write_call_result_error(
            &mut out,
            "c9",
            CallErrorCode::OccurenceConstraintViolation,
            "x\"y",
        );
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"[5,"c9","OccurrenceConstraintViolation","x\"y",{}]"#
        );
        out.clear();
        write_send(&mut out, "s2", "NotifyPeriodicEventStream", r#"{"id":2}"#);
        assert!(matches!(
            parse_frame_21(std::str::from_utf8(&out).unwrap()),
            Ok(Frame::Send { unique_id, .. }) if unique_id == "s2"
        ));
    }

    #[test]
    fn accepted_shapes() {
        let text = " \n[ 2 ,\t\"i\\\"d\\u00e9\" , \"Heart\\u0062eat\" , { } ] \r\n";
        assert_eq!(parts(text), ["2", "i\"dé", "Heartbeat", "{ }"]);
        let id36 = "é".repeat(36); // 36 characters, 72 bytes
        assert_eq!(parts(&format!(r#"[3,"{id36}",{{}}]"#)), ["3", &id36, "{}"]);
        let nested = format!("{}{}", "[".repeat(31), "]".repeat(31));
        let deep = format!(r#"[2,"id","A",{{"a":{nested}}}]"#);
        assert_eq!(parts(&deep).len(), 4, "32 levels in a payload are fine");
        let huge = r#"[4,"id","","",{"n":1e999999,"m":-123456789012345678901234567890}]"#;
        assert_eq!(parts(huge).len(), 5);
        let max = format!("[{}]", u64::MAX);
        let unknown = [
            (r#"[7,"id"]"#, 7, Some("id")),
            (
                r#"[6,"s-1","NotifyPeriodicEventStream",{}]"#,
                6,
                Some("s-1"),
            ),
            ("[0]", 0, None),
            ("[1,{}]", 1, None),
            (r#"[5,""]"#, 5, None),
            (&max, u64::MAX, None),
        ];
        for (text, n, id) in unknown {
            let ignored = FrameError::UnknownMessageType {
                message_type: n,
                unique_id: id.map(String::from),
            };
            assert_eq!(parse_frame(text).err(), Some(ignored));
        }
    }

    #[test]
    fn malformed_calls_are_answered() {
        let cases = [
            (r#"[2,"id"]"#, PE, "CALL has 2 elements, expected 4"),
            (r#"[2,"id","A"]"#, PE, "3 elements, expected 4 (incomplete)"),
            (r#"[2,"id","A",{},1]"#, FV, "CALL has 5 elements"),
            (r#"[2,"id","",{}]"#, FV, "Action is empty"),
            (r#"[2,"id",null,{}]"#, FV, "Action must be a string"),
            (r#"[2,"id",["A"],{}]"#, FV, "got an array"),
            (r#"[2,"id","\ud800",{}]"#, FV, "Action is not a valid"),
            (r#"[2,"id","A",null]"#, FV, "payload must be a JSON object"),
            (r#"[2,"id","A",[]]"#, FV, "got an array"),
            (r#"[2,"id","A","{}"]"#, FV, "got a string"),
            (r#"[2,"id","A",true]"#, FV, "got a boolean"),
            (r#"[2,"id","A",-0.5]"#, FV, "got a number"),
        ];
        for (text, code, why) in cases {
            expect_answer(text, "id", code, why);
        }
        let action = "A".repeat(65);
        let why = "Action is longer than 64 characters";
        expect_answer(&format!(r#"[2,"id","{action}",{{}}]"#), "id", FV, why);
        for id in ["x".repeat(37), "é".repeat(128)] {
            let why = "UniqueId is longer than 36 characters";
            expect_answer(&format!(r#"[2,"{id}","A",{{}}]"#), &id, FV, why);
        }
        expect_answer(r#"[2,"","A",{}]"#, "", FV, "UniqueId is empty");
        expect_answer(r#"[2,"i\"d","A",1]"#, "i\"d", FV, "got a number");
    }

    #[test]
    fn payloads_nested_deeper_than_the_limit_are_refused() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let ok = format!(
            r#"[2,"id-1","DataTransfer",{{"vendorId":"V","data":{}}}]"#,
            nested(30)
        );
        assert!(parse_frame(&ok).is_ok());
        let deep = format!(
            r#"[2, "id-\"2","DataTransfer",{{"vendorId":"V","data":{}}}]"#,
            nested(40)
        );
        assert_eq!(
            parse_frame(&deep).unwrap_err(),
            FrameError::Answer {
                unique_id: "id-\"2".into(),
                code: CallErrorCode::FormationViolation,
                description: "nested deeper than 32 levels".into(),
            }
        );
        let huge = format!(r#"[2,"id-3","DataTransfer",{{"data":{}}}]"#, nested(30_000));
        assert!(matches!(parse_frame(&huge), Err(FrameError::Answer { .. })));
        let answer = format!(r#"[3,"id-4",{{"a":{}}}]"#, nested(40));
        assert!(matches!(
            parse_frame(&answer),
            Err(FrameError::Unanswerable { .. })
        ));
        // Brackets inside strings do not count.
        let text = format!(
            r#"[2,"id-5","DataTransfer",{{"vendorId":"V","data":"{}"}}]"#,
            "[".repeat(100)
        );
        assert!(parse_frame(&text).is_ok());
        assert!(!nests_deeper_than(r#"["\"[[[["]"#, 1));
    }

    #[test]
    fn unanswerable_messages() {
        let cases = [
            ("", "not valid JSON"),
            (" \n\t", "not valid JSON"),
            ("[]", "empty array"),
            ("{}", "not a JSON array"),
            ("null", "not a JSON array"),
            ("\"text\"", "not a JSON array"),
            (r#"[2,"id","A",{}"#, "not valid JSON"),
            (r#"[2,"id","A",{}] x"#, "not valid JSON"),
            (r#"[2,"id","A",{"a":}]"#, "not valid JSON"),
            ("[2,\"i\nd\",\"A\",{}]", "not valid JSON"),
            ("[2]", "no UniqueId"),
            (r#"[2,5,"A",{}]"#, "UniqueId must be a string, got a number"),
            (r#"[2,"\ud800","A",{}]"#, "UniqueId is not a valid string"),
            (r#"["2","id","A",{}]"#, r#"non-negative integer, got "2""#),
            (r#"[2.0,"id","A",{}]"#, "got 2.0"),
            (r#"[2e0,"id","A",{}]"#, "got 2e0"),
            (r#"[-1,"id","A",{}]"#, "got -1"),
            (r#"[null,"id","A",{}]"#, "got null"),
            (r#"[99999999999999999999999,"id"]"#, "too big"),
            (r#"[3,"id"]"#, r#"CALLRESULT "id": has 2 elements"#),
            (r#"[3,"id",{},{}]"#, "has 4 elements, expected 3"),
            (r#"[3,"id",[]]"#, "payload must be a JSON object"),
            (r#"[3,"",{}]"#, "CALLRESULT: UniqueId is empty"),
            (r#"[4,"id","X"]"#, r#"CALLERROR "id": has 3 elements"#),
            (r#"[4,"id","X","d",null]"#, "errorDetails must be a JSON"),
            (r#"[4,"id",1,"d",{}]"#, "errorCode must be a string"),
            (r#"[4,"id","X",null,{}]"#, "errorDescription must be"),
            (r#"[4,"id","X","d",{},{}]"#, "has 6 elements, expected 5"),
        ];
        for (text, why) in cases {
            expect_unanswerable(text, why);
        }
        let (x37, x129, e65) = ("x".repeat(37), "x".repeat(129), "E".repeat(65));
        expect_unanswerable(&format!(r#"[2,"{x129}","A",{{}}]"#), "longer than 128");
        expect_unanswerable(&format!(r#"[3,"{x37}",{{}}]"#), "longer than 36");
        expect_unanswerable(&format!(r#"[4,"id","{e65}","",{{}}]"#), "errorCode is");
        // Deep nesting is refused before any parsing: never a stack overflow.
        expect_unanswerable(&"[".repeat(10_000), "nested deeper than 32");
        let nested = format!("{}{}", "[".repeat(9_999), "]".repeat(9_999));
        expect_unanswerable(&nested, "nested deeper than 32");
        // Long input is never quoted whole (expect_unanswerable checks the length).
        expect_unanswerable(&format!("[{}]", "9".repeat(10_000)), "too big");
        expect_unanswerable(&format!("\"{}", "q".repeat(10_000)), "not valid JSON");
    }

    #[test]
    fn message_type_is_read_from_the_first_bytes() {
        assert_eq!(message_type(" \n[ 3 ,\"x\",{}]"), Some(3));
        assert_eq!(message_type("[4,"), Some(4));
        assert_eq!(message_type("[2"), Some(2));
        for text in [
            "",
            "{}",
            "[",
            "[\"2\"]",
            "[-1]",
            "x[2]",
            "[99999999999999999999999]",
        ] {
            assert_eq!(message_type(text), None, "{text}");
        }
    }

    #[test]
    fn call_error_codes() {
        for code in CallErrorCode::ALL {
            assert_eq!(CallErrorCode::parse(code.as_str()), Some(code));
            assert_eq!(code.to_string(), code.as_str());
        }
        let names = CallErrorCode::ALL.map(CallErrorCode::as_str);
        assert!(names.contains(&"OccurenceConstraintViolation"));
        let v201 = "FormatViolation RpcFrameworkError MessageTypeNotSupported";
        let typos = "OccurrenceConstraintViolation genericError GenericError. ";
        for wrong in v201.split(' ').chain(typos.split(' ')) {
            assert_eq!(CallErrorCode::parse(wrong), None, "{wrong}");
        }
    }

    /// xorshift64: deterministic random numbers without another crate.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n.max(1) as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }

        fn chance(&mut self) -> bool {
            self.below(2) == 0
        }
    }

    /// Pieces of JSON and of hostile strings, separated by `|`.
    const PIECES: &str = r#"[|]|{|}|,|:|"|\|\u|d800|0|2|3|4|-|.|e| |null|"id"|"Heartbeat"|{}|é|🚀"#;
    /// Array elements, separated by `|`.
    const ELEMENTS: &str = r#"2|7|-1|2.0|"id"|""|"\ud800"|"A"|"é🚀\n\""|{}|{"a":[1]}|[]|null|true"#;
    const VALID: &[&str] = &[
        r#"[2,"19223201","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]"#,
        r#"[3,"19223201",{"status":"Accepted","interval":300}]"#,
        r#"[4,"162376037","NotSupported","Not \"here\"",{"a":[1,2.5e3,null]}]"#,
    ];

    /// Whatever comes out keeps its promises: a frame writes back to itself, an answer is valid.
    fn check(text: &str) {
        let mut out = Vec::new();
        match parse_frame(text) {
            Ok(frame) => {
                let fields = fields(frame);
                match fields.as_slice() {
                    [_, id, action, payload] => write_call(&mut out, id, action, payload),
                    [_, id, payload] => write_call_result(&mut out, id, payload),
                    _ => return, // a CALLERROR's code need not be one of ours
                }
                assert_eq!(parts(&String::from_utf8(out).expect("UTF-8")), fields);
            }
            Err(FrameError::Answer {
                unique_id,
                code,
                description,
            }) => {
                write_call_error(&mut out, &unique_id, code, &description);
                serde_json::from_slice::<Value>(&out).expect("a CALLERROR is valid JSON");
            }
            Err(FrameError::Unanswerable { reason }) => assert!(reason.chars().count() < 200),
            Err(FrameError::UnknownMessageType {
                message_type: n, ..
            }) => {
                assert!(!(2..=4).contains(&n))
            }
        }
    }

    #[test]
    fn never_panics_on_random_input() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let pieces: Vec<&str> = PIECES.split('|').chain(["\0", "\n"]).collect();
        let long = format!("\"{}\"", "x".repeat(40));
        let elements: Vec<&str> = ELEMENTS.split('|').chain([long.as_str()]).collect();
        for _ in 0..20_000 {
            let soup: String = (0..rng.below(24)).map(|_| rng.pick(&pieces)).collect();
            check(&soup);
            let mut array = rng.pick(&["2", "3", "4"]).to_owned();
            for _ in 0..rng.below(6) {
                array = format!("{array},{}", rng.pick(&elements));
            }
            check(&format!("[{array}]"));
            let mut chars: Vec<char> = rng.pick(VALID).chars().collect();
            for _ in 0..=rng.below(3) {
                let at = rng.below(chars.len() + 1);
                let end = (at + rng.below(4)).min(chars.len());
                let insert = if rng.chance() { rng.pick(&pieces) } else { "" };
                chars.splice(at..end, insert.chars());
            }
            check(&chars.into_iter().collect::<String>());
        }
    }
}
