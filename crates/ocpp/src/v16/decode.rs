//! Turning a raw payload into a typed one, and any failure into the CALLERROR to answer with.
//!
//! The payload types reject everything the schemas reject while serde reads them (see
//! `macros.rs` and `primitives.rs`); what is left here is naming the field
//! (`serde_path_to_error`) and mapping serde's message to the 1.6 error code. That mapping reads
//! the message's prefix, in this one place: serde's standard messages are stable API
//! (`missing_field`, `unknown_field`, `invalid_type`, ... each has a fixed wording), and every
//! check of ours reports through one of them.
//!
//! Descriptions never carry more than `ECHO_LIMIT` (64) characters of one input value: serde
//! quotes unknown keys, unknown enum values and mistyped strings whole, and the path holds the
//! keys, so those are cut.

use serde_json::value::RawValue;

use super::primitives::capped;
use super::{Invalid, Payload};
use crate::rpc::CallErrorCode;

/// serde message prefix -> 1.6 CallError code. Anything else (a JSON syntax error, which a
/// `RawValue` cannot hold, or serde_json's recursion limit) is a FormationViolation.
const CODES: &[(&str, CallErrorCode)] = {
    use CallErrorCode::*;
    &[
        ("missing field", OccurenceConstraintViolation),
        ("unknown field", FormationViolation),
        ("duplicate field", FormationViolation),
        ("invalid type", TypeConstraintViolation),
        ("unknown variant", PropertyConstraintViolation),
        ("invalid value", PropertyConstraintViolation),
        ("invalid length", PropertyConstraintViolation),
        // A number no JSON implementation represents (1e400, thousands of digits): a value out
        // of range, like one too large for the field.
        ("number out of range", PropertyConstraintViolation),
    ]
};

/// Decodes and validates one payload; the error names the field and the CallError code.
pub fn decode<T: Payload>(payload: &RawValue) -> Result<T, Invalid> {
    // Tracking the path costs an allocation per key read, and only a failure needs it: a
    // payload is read plainly first (nearly all are valid), and read again with the path
    // tracked only to describe what is wrong.
    let value: T = match serde_json::from_str(payload.get()) {
        Ok(value) => value,
        Err(_) => {
            let mut deserializer = serde_json::Deserializer::from_str(payload.get());
            serde_path_to_error::deserialize(&mut deserializer).map_err(invalid)?
        }
    };
    value.check()?;
    Ok(value)
}

fn invalid(error: serde_path_to_error::Error<serde_json::Error>) -> Invalid {
    let inner = error.inner();
    let mut message = inner.to_string();
    // serde_json appends the position; the path says more.
    let position = format!(" at line {} column {}", inner.line(), inner.column());
    if message.ends_with(&position) {
        message.truncate(message.len() - position.len());
    }
    // For an unknown key the path ends with that key: name the object it is in instead.
    let path = path_text(error.path(), message.starts_with("unknown field"));
    let message = cap_echoes(&message);
    let code = CODES
        .iter()
        .find(|(prefix, _)| message.starts_with(prefix))
        .map_or(CallErrorCode::FormationViolation, |&(_, code)| code);
    let description = if path.is_empty() {
        message
    } else {
        format!("{path}: {message}")
    };
    Invalid { code, description }
}

/// The field path as `meterValue[0].sampledValue[1].unit`, empty at the top, without its last
/// key if `drop_key`. Keys are input too, so each is cut like any echo.
fn path_text(path: &serde_path_to_error::Path, drop_key: bool) -> String {
    use serde_path_to_error::Segment;

    let mut segments: Vec<&Segment> = path.iter().collect();
    if drop_key && matches!(segments.last(), Some(Segment::Map { .. })) {
        segments.pop();
    }
    let mut out = String::new();
    for segment in segments {
        let name = match segment {
            Segment::Seq { index } => {
                out.push_str(&format!("[{index}]"));
                continue;
            }
            Segment::Map { key } | Segment::Enum { variant: key } => key.as_str(),
            Segment::Unknown => "?",
        };
        if !out.is_empty() {
            out.push('.');
        }
        let kept = capped(name);
        out.push_str(kept);
        if kept.len() < name.len() {
            out.push_str("...");
        }
    }
    out
}

/// Cuts the input serde quotes in `message` to `ECHO_LIMIT` characters:
/// - "unknown field `KEY`, expected ..." and "unknown variant `VALUE`, expected ..." (the quoted
///   text may itself hold backticks, so its end is the last "`, " serde wrote after it);
/// - "... string \"TEXT\", expected ..." (`Debug`-escaped: it ends at the first unescaped
///   quote).
fn cap_echoes(message: &str) -> String {
    for prefix in ["unknown field `", "unknown variant `"] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let end = ["`, expected", "`, there are no"]
                .iter()
                .filter_map(|tail| rest.rfind(tail))
                .max()
                .unwrap_or(rest.len());
            return cut(message, prefix.len(), prefix.len() + end);
        }
    }
    const STRING: &str = "string \"";
    if let Some(at) = message.find(STRING) {
        let start = at + STRING.len();
        let mut escaped = false;
        let end = message[start..]
            .char_indices()
            .find(|&(_, c)| {
                let closing = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                closing
            })
            .map_or(message.len(), |(i, _)| start + i);
        return cut(message, start, end);
    }
    message.to_owned()
}

/// `message` with the text in `start..end` cut to `ECHO_LIMIT` characters ("..." marks a cut).
fn cut(message: &str, start: usize, end: usize) -> String {
    let quoted = &message[start..end];
    let kept = capped(quoted);
    let mut out = String::with_capacity(start + kept.len() + 3 + message.len() - end);
    out.push_str(&message[..start]);
    out.push_str(kept);
    if kept.len() < quoted.len() {
        out.push_str("...");
    }
    out.push_str(&message[end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_are_capped() {
        let long = "x`y".repeat(100);
        let message = format!("unknown field `{long}`, expected `a`");
        let capped = cap_echoes(&message);
        assert!(capped.len() < 100, "{capped}");
        assert!(capped.ends_with("...`, expected `a`"), "{capped}");

        let message = format!(
            "invalid type: string \"{}\\\"{}\", expected i64",
            "a",
            "b".repeat(99)
        );
        let capped = cap_echoes(&message);
        assert!(capped.len() < 110, "{capped}");
        assert!(capped.ends_with("...\", expected i64"), "{capped}");

        let message = "invalid length 21, expected at most 20 characters";
        assert_eq!(cap_echoes(message), message);
    }
}
