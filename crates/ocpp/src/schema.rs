//! JSON Schema for OCPP 2.x payloads: the draft-06 subset the OCA's 2.0.1 and 2.1 schemas are
//! written in, compiled once into a flat tree ([`Schema::compile`]) and checked while the payload
//! is parsed ([`Schema::check`]): no `serde_json::Value` is built, nothing is allocated for a
//! valid payload, and a key that appears twice is caught (a `Value` would keep the last one, and
//! the journal, which keeps the text, would then disagree with what was read).
//!
//! Keywords: `type` (one name), `properties`, `required`, `additionalProperties` (`false`, or
//! absent: open, as for `customData`), `enum` (strings), `maxLength` (in characters), `minimum`,
//! `maximum`, `items` (one schema), `minItems`, `maxItems`, `format: date-time` (RFC 3339 with a
//! time zone) and `$ref` to `#/definitions/...`. `additionalProperties` on a string (the
//! generator puts it on enumerations) has no effect, as draft-06 says. Annotations (`description`, `javaType`,
//! `comment`, `$schema`, `$id`, `default`) and `additionalItems` (without effect beside one
//! `items` schema) are skipped. Any other keyword is refused at compile time, so a schema that
//! asks for more than this checks can never be half-checked in silence.
//!
//! `integer` is stricter than draft-06 (where `1.0` is one): an integer is written as one, and
//! within 64 bits signed, as every typed reader of the field reads it; `1.0`, `1e0` or
//! `10000000000000000000` is refused here, naming the field, rather than failing a reader later.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::v16::primitives::is_date_time;

/// Most characters of one input value quoted in a violation.
const ECHO_LIMIT: usize = 64;
/// Most properties one object schema may name (they are tracked in a `u64`).
const MAX_PROPERTIES: usize = 64;

/// What a payload broke; each maps to one CallError code of the version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViolationKind {
    /// A value of the wrong JSON type.
    Type,
    /// A required property is missing.
    Required,
    /// Too few or too many array elements.
    Cardinality,
    /// A property the schema does not allow, or one given twice.
    Additional,
    /// A string not among the allowed values.
    Enum,
    /// A string longer than `maxLength`.
    Length,
    /// A number below `minimum` or above `maximum`.
    Range,
    /// A string that is not a date-time.
    Format,
    /// Not JSON, or nested deeper than the parser allows.
    Syntax,
}

/// Why a payload is not valid: what, where (`evse.connectorId`, `meterValue[0]`), and a short
/// description that quotes at most [`ECHO_LIMIT`] characters of input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    pub path: String,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.detail)
        } else {
            write!(f, "{}: {}", self.path, self.detail)
        }
    }
}

/// A schema that cannot be compiled (a keyword this module does not check, a broken `$ref`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("schema {at}: {reason}")]
pub struct CompileError {
    pub at: String,
    pub reason: String,
}

/// One compiled schema.
#[derive(Debug)]
pub struct Schema {
    nodes: Vec<Node>,
}

#[derive(Debug, Default)]
enum Node {
    /// No `type`: anything.
    #[default]
    Any,
    Object {
        properties: Vec<(Box<str>, usize)>,
        /// Bit `i` set: `properties[i]` is required.
        required: u64,
        /// `additionalProperties: false`.
        closed: bool,
    },
    Array {
        items: Option<usize>,
        min: Option<u64>,
        max: Option<u64>,
    },
    String {
        max_chars: Option<u64>,
        choices: Option<Vec<Box<str>>>,
        date_time: bool,
    },
    Number {
        integer: bool,
        min: Option<f64>,
        max: Option<f64>,
    },
    Boolean,
}

/// Compiles one schema document; `$ref`s resolve against its `definitions`.
struct Compiler<'a> {
    definitions: Option<&'a serde_json::Map<String, Value>>,
    nodes: Vec<Node>,
    /// Definitions compiled so far (a definition used twice is one node).
    compiled: HashMap<&'a str, usize>,
}

const ANNOTATIONS: &[&str] = &[
    "description",
    "javaType",
    "comment",
    "$schema",
    "$id",
    "default",
    "additionalItems",
    "definitions",
];

impl<'a> Compiler<'a> {
    fn fail<T>(at: &str, reason: impl Into<String>) -> Result<T, CompileError> {
        Err(CompileError {
            at: at.to_owned(),
            reason: reason.into(),
        })
    }

    fn node(&mut self, schema: &'a Value, at: &str) -> Result<usize, CompileError> {
        let Some(map) = schema.as_object() else {
            return Self::fail(at, "not an object");
        };
        if let Some(reference) = map.get("$ref") {
            if map.len() > 1 {
                return Self::fail(at, "$ref with other keywords");
            }
            return self.reference(reference, at);
        }
        let index = self.nodes.len();
        self.nodes.push(Node::Any);
        let node = self.build(map, at)?;
        self.nodes[index] = node;
        Ok(index)
    }

    fn reference(&mut self, reference: &'a Value, at: &str) -> Result<usize, CompileError> {
        let Some(name) = reference
            .as_str()
            .and_then(|r| r.strip_prefix("#/definitions/"))
        else {
            return Self::fail(at, format!("unsupported $ref {reference}"));
        };
        if let Some(&index) = self.compiled.get(name) {
            return Ok(index);
        }
        let Some(target) = self.definitions.and_then(|d| d.get(name)) else {
            return Self::fail(at, format!("$ref to a missing definition {name}"));
        };
        let Some(map) = target.as_object() else {
            return Self::fail(at, format!("definition {name} is not an object"));
        };
        // Reserved before it is built, so a definition that refers to itself terminates.
        let index = self.nodes.len();
        self.nodes.push(Node::Any);
        self.compiled.insert(name, index);
        let node = self.build(map, &format!("#/definitions/{name}"))?;
        self.nodes[index] = node;
        Ok(index)
    }

    fn build(
        &mut self,
        map: &'a serde_json::Map<String, Value>,
        at: &str,
    ) -> Result<Node, CompileError> {
        let known: &[&str] = match map.get("type").and_then(Value::as_str) {
            None if map.contains_key("type") => return Self::fail(at, "type is not one name"),
            None => &[],
            Some("object") => &["type", "properties", "required", "additionalProperties"],
            // The generator writes `additionalProperties` on enumerations too, where it has
            // no effect (it applies to objects only).
            Some("array") => &["type", "items", "minItems", "maxItems"],
            Some("string") => &[
                "type",
                "maxLength",
                "enum",
                "format",
                "additionalProperties",
            ],
            Some("integer" | "number") => &["type", "minimum", "maximum"],
            Some("boolean") => &["type"],
            Some(other) => return Self::fail(at, format!("type {other}")),
        };
        if let Some(keyword) = map
            .keys()
            .find(|k| !known.contains(&k.as_str()) && !ANNOTATIONS.contains(&k.as_str()))
        {
            return Self::fail(at, format!("keyword {keyword} is not checked here"));
        }
        Ok(match map.get("type").and_then(Value::as_str) {
            None => Node::Any,
            Some("object") => self.object(map, at)?,
            Some("array") => Node::Array {
                items: match map.get("items") {
                    Some(items) => Some(self.node(items, &format!("{at}/items"))?),
                    None => None,
                },
                min: count(map, "minItems", at)?,
                max: count(map, "maxItems", at)?,
            },
            Some("string") => Node::String {
                max_chars: count(map, "maxLength", at)?,
                choices: match map.get("enum") {
                    None => None,
                    Some(Value::Array(choices)) => Some(
                        choices
                            .iter()
                            .map(|c| c.as_str().map(Box::from))
                            .collect::<Option<Vec<_>>>()
                            .map_or_else(|| Self::fail(at, "enum of non-strings"), Ok)?,
                    ),
                    Some(_) => return Self::fail(at, "enum is not an array"),
                },
                date_time: match map.get("format").map(|f| f.as_str()) {
                    None => false,
                    Some(Some("date-time")) => true,
                    Some(other) => return Self::fail(at, format!("format {other:?}")),
                },
            },
            Some(kind) => match kind {
                "boolean" => Node::Boolean,
                _ => Node::Number {
                    integer: kind == "integer",
                    min: bound(map, "minimum", at)?,
                    max: bound(map, "maximum", at)?,
                },
            },
        })
    }

    fn object(
        &mut self,
        map: &'a serde_json::Map<String, Value>,
        at: &str,
    ) -> Result<Node, CompileError> {
        let mut properties = Vec::new();
        if let Some(props) = map.get("properties") {
            let Some(props) = props.as_object() else {
                return Self::fail(at, "properties is not an object");
            };
            if props.len() > MAX_PROPERTIES {
                return Self::fail(at, format!("more than {MAX_PROPERTIES} properties"));
            }
            for (name, schema) in props {
                let node = self.node(schema, &format!("{at}/{name}"))?;
                properties.push((Box::from(name.as_str()), node));
            }
        }
        let mut required = 0u64;
        for name in map
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(i) = properties
                .iter()
                .position(|(p, _)| Some(&**p) == name.as_str())
            else {
                return Self::fail(at, format!("required {name} is not a property"));
            };
            required |= 1 << i;
        }
        let closed = match map.get("additionalProperties") {
            None | Some(Value::Bool(true)) => false,
            Some(Value::Bool(false)) => true,
            Some(_) => return Self::fail(at, "additionalProperties is not a boolean"),
        };
        Ok(Node::Object {
            properties,
            required,
            closed,
        })
    }
}

fn count(
    map: &serde_json::Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<Option<u64>, CompileError> {
    match map.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .map_or_else(|| Compiler::fail(at, format!("{key} is not a count")), Ok),
    }
}

fn bound(
    map: &serde_json::Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<Option<f64>, CompileError> {
    match map.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .map_or_else(|| Compiler::fail(at, format!("{key} is not a number")), Ok),
    }
}

impl Schema {
    /// Compiles a schema document (its `definitions` are what `$ref`s may name).
    pub fn compile(document: &Value) -> Result<Schema, CompileError> {
        let mut compiler = Compiler {
            definitions: document.get("definitions").and_then(Value::as_object),
            nodes: Vec::new(),
            compiled: HashMap::new(),
        };
        let root = compiler.node(document, "#")?;
        debug_assert_eq!(root, 0);
        Ok(Schema {
            nodes: compiler.nodes,
        })
    }

    /// Checks one JSON text against the schema while parsing it.
    pub fn check(&self, json: &str) -> Result<(), Violation> {
        let found = RefCell::new(None);
        let mut parser = serde_json::Deserializer::from_str(json);
        let outcome = Check {
            schema: self,
            node: 0,
            found: &found,
        }
        .deserialize(&mut parser)
        .and_then(|()| parser.end());
        match outcome {
            Ok(()) => Ok(()),
            Err(error) => Err(found.into_inner().unwrap_or_else(|| Violation {
                kind: ViolationKind::Syntax,
                path: String::new(),
                detail: cap(&strip_position(&error)),
            })),
        }
    }
}

/// serde_json's message without its " at line L column C".
fn strip_position(error: &serde_json::Error) -> String {
    let mut message = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    if message.ends_with(&position) {
        message.truncate(message.len() - position.len());
    }
    message
}

/// `text` cut to [`ECHO_LIMIT`] characters.
fn cap(text: &str) -> String {
    match text.char_indices().nth(ECHO_LIMIT) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

/// Checks one value against one node; a violation is put in `found` (with its path built on
/// the way out) and reported to serde as an error that stops the parse.
#[derive(Clone, Copy)]
struct Check<'s> {
    schema: &'s Schema,
    node: usize,
    found: &'s RefCell<Option<Violation>>,
}

impl Check<'_> {
    fn node(&self) -> &Node {
        &self.schema.nodes[self.node]
    }

    fn violation<E: de::Error>(&self, kind: ViolationKind, detail: String) -> E {
        *self.found.borrow_mut() = Some(Violation {
            kind,
            path: String::new(),
            detail,
        });
        E::custom("schema violation")
    }

    /// The error of a nested value gets `segment` in front of its path.
    fn within<E>(&self, error: E, segment: fmt::Arguments<'_>) -> E {
        if let Some(violation) = self.found.borrow_mut().as_mut() {
            let inner = std::mem::take(&mut violation.path);
            let mut path = segment.to_string();
            if !inner.is_empty() {
                if !inner.starts_with('[') {
                    path.push('.');
                }
                path.push_str(&inner);
            }
            violation.path = path;
        }
        error
    }

    fn wrong_type<E: de::Error>(&self, found: &str) -> E {
        let expected = match self.node() {
            Node::Any => "anything",
            Node::Object { .. } => "an object",
            Node::Array { .. } => "an array",
            Node::String { .. } => "a string",
            Node::Number { integer: true, .. } => "an integer",
            Node::Number { .. } => "a number",
            Node::Boolean => "a boolean",
        };
        self.violation(ViolationKind::Type, format!("{found}, expected {expected}"))
    }

    fn number<E: de::Error>(&self, value: f64, shown: fmt::Arguments<'_>) -> Result<(), E> {
        let Node::Number { integer, min, max } = self.node() else {
            return match self.node() {
                Node::Any => Ok(()),
                _ => Err(self.wrong_type(&format!("number {shown}"))),
            };
        };
        if *integer && value.fract() != 0.0 {
            return Err(self.wrong_type(&format!("number {shown}")));
        }
        if min.is_some_and(|min| value < min) || max.is_some_and(|max| value > max) {
            let range = match (min, max) {
                (Some(min), Some(max)) => format!("from {min} to {max}"),
                (Some(min), None) => format!("at least {min}"),
                (None, _) => format!("at most {}", max.unwrap_or_default()),
            };
            return Err(self.violation(ViolationKind::Range, format!("{shown} is not {range}")));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Check<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.node() {
            Node::Any => deserializer.deserialize_ignored_any(IgnoredAny).map(|_| ()),
            _ => deserializer.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for Check<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value valid against the schema")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<(), E> {
        match self.node() {
            Node::Boolean | Node::Any => Ok(()),
            _ => Err(self.wrong_type(&format!("boolean {value}"))),
        }
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.number(value as f64, format_args!("{value}"))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        // Whoever reads an integer reads it as 64-bit signed: one beyond is refused here,
        // with its field, not later as an internal error.
        if i64::try_from(value).is_err()
            && matches!(self.node(), Node::Number { integer: true, .. })
        {
            return Err(self.violation(
                ViolationKind::Range,
                format!("{value} is beyond a 64-bit signed integer"),
            ));
        }
        self.number(value as f64, format_args!("{value}"))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        // An integer is written as one: `3.0` or `3e0` (which JSON Schema would let pass) is
        // refused, as every typed reader of the field would refuse it.
        if matches!(self.node(), Node::Number { integer: true, .. }) {
            return Err(self.wrong_type(&format!("number {value} (with a fraction or exponent)")));
        }
        self.number(value, format_args!("{value}"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(self.wrong_type("null"))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        let Node::String {
            max_chars,
            choices,
            date_time,
        } = self.node()
        else {
            return Err(self.wrong_type(&format!("string {:?}", cap(value))));
        };
        if let Some(choices) = choices
            && !choices.iter().any(|c| **c == *value)
        {
            let detail = format!("{:?} is not one of the allowed values", cap(value));
            return Err(self.violation(ViolationKind::Enum, detail));
        }
        if let Some(max) = max_chars {
            // Counting stops one past the limit: a huge string costs no more than that.
            let limit = usize::try_from(max.saturating_add(1)).unwrap_or(usize::MAX);
            let chars = value.chars().take(limit).count() as u64;
            if chars > *max {
                let detail = format!("longer than {max} characters");
                return Err(self.violation(ViolationKind::Length, detail));
            }
        }
        if *date_time && !is_date_time(value) {
            let detail = format!("{:?} is not an RFC 3339 date-time", cap(value));
            return Err(self.violation(ViolationKind::Format, detail));
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Node::Array { items, min, max } = self.node() else {
            return Err(self.wrong_type("an array"));
        };
        let mut n = 0u64;
        loop {
            let next = match items {
                Some(item) => seq.next_element_seed(Check {
                    node: *item,
                    ..self
                }),
                None => seq.next_element::<IgnoredAny>().map(|e| e.map(|_| ())),
            };
            match next {
                Ok(Some(())) => n += 1,
                Ok(None) => break,
                Err(error) => return Err(self.within(error, format_args!("[{n}]"))),
            }
            if max.is_some_and(|max| n > max) {
                let detail = format!("more than {} elements", max.unwrap_or_default());
                return Err(self.violation(ViolationKind::Cardinality, detail));
            }
        }
        if let Some(min) = min
            && n < *min
        {
            let detail = format!("{n} elements, at least {min} required");
            return Err(self.violation(ViolationKind::Cardinality, detail));
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Node::Object {
            properties,
            required,
            closed,
        } = self.node()
        else {
            return Err(self.wrong_type("an object"));
        };
        let mut seen = 0u64;
        while let Some(key) = map.next_key_seed(Key)? {
            let key: &str = &key;
            let Some(i) = properties.iter().position(|(name, _)| **name == *key) else {
                if *closed {
                    let detail = format!("property {:?} is not allowed here", cap(key));
                    return Err(self.violation(ViolationKind::Additional, detail));
                }
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if seen & (1 << i) != 0 {
                let detail = format!("property {:?} is given twice", cap(key));
                return Err(self.violation(ViolationKind::Additional, detail));
            }
            seen |= 1 << i;
            let check = Check {
                node: properties[i].1,
                ..self
            };
            if let Err(error) = map.next_value_seed(check) {
                return Err(self.within(error, format_args!("{key}")));
            }
        }
        let missing = required & !seen;
        if missing != 0 {
            let name = &properties[missing.trailing_zeros() as usize].0;
            let detail = format!("required property {name:?} is missing");
            return Err(self.violation(ViolationKind::Required, detail));
        }
        Ok(())
    }
}

/// An object key, borrowed from the text when it has no escapes.
struct Key;

enum KeyText<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl std::ops::Deref for KeyText<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            KeyText::Borrowed(s) => s,
            KeyText::Owned(s) => s,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Key {
    type Value = KeyText<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<KeyText<'de>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = KeyText<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<KeyText<'de>, E> {
        Ok(KeyText::Borrowed(key))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<KeyText<'de>, E> {
        Ok(KeyText::Owned(key.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::compile(&json!({
            "definitions": {
                "CustomDataType": {
                    "type": "object",
                    "properties": { "vendorId": { "type": "string", "maxLength": 255 } },
                    "required": ["vendorId"]
                },
                "EvseType": {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "id": { "type": "integer", "minimum": 0 },
                        "customData": { "$ref": "#/definitions/CustomDataType" }
                    },
                    "required": ["id"]
                }
            },
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "customData": { "$ref": "#/definitions/CustomDataType" },
                "status": { "type": "string", "enum": ["Accepted", "Rejected"] },
                "at": { "type": "string", "format": "date-time" },
                "name": { "type": "string", "maxLength": 3 },
                "evse": { "type": "array", "items": { "$ref": "#/definitions/EvseType" },
                          "minItems": 1, "maxItems": 2 },
                "ratio": { "type": "number", "maximum": 1.5 },
                "on": { "type": "boolean" }
            },
            "required": ["status"]
        }))
        .expect("compiles")
    }

    fn kind(json: &str) -> (ViolationKind, String) {
        let violation = schema().check(json).expect_err(json);
        (violation.kind, violation.path)
    }

    #[test]
    fn valid_payloads_pass() {
        let schema = schema();
        for json in [
            r#"{"status":"Accepted"}"#,
            r#"{"status":"Rejected","at":"2026-01-31T23:59:59.5+01:00","name":"a\u00e9b"}"#,
            r#"{"status":"Accepted","evse":[{"id":1},{"id":0,"customData":{"vendorId":"x","more":[1]}}]}"#,
            r#"{"status":"Accepted","customData":{"vendorId":"v","extra":{"deep":true}},"ratio":1.5,"on":false}"#,
        ] {
            assert_eq!(schema.check(json), Ok(()), "{json}");
        }
    }

    #[test]
    fn each_violation_has_its_kind_and_path() {
        use ViolationKind::*;
        let cases = [
            (r#"{}"#, Required, ""),
            (r#"{"status":1}"#, Type, "status"),
            (r#"{"status":"Maybe"}"#, Enum, "status"),
            (r#"{"status":"Accepted","name":"abcd"}"#, Length, "name"),
            (r#"{"status":"Accepted","at":"yesterday"}"#, Format, "at"),
            (r#"{"status":"Accepted","ratio":1.6}"#, Range, "ratio"),
            (r#"{"status":"Accepted","evse":[]}"#, Cardinality, "evse"),
            (
                r#"{"status":"Accepted","evse":[{"id":1},{"id":2},{"id":3}]}"#,
                Cardinality,
                "evse",
            ),
            (
                r#"{"status":"Accepted","evse":[{"id":1},{"id":-1}]}"#,
                Range,
                "evse[1].id",
            ),
            (
                r#"{"status":"Accepted","evse":[{"id":1.5}]}"#,
                Type,
                "evse[0].id",
            ),
            (
                r#"{"status":"Accepted","evse":[{"id":1.0}]}"#,
                Type,
                "evse[0].id",
            ),
            (
                r#"{"status":"Accepted","evse":[{"id":1e0}]}"#,
                Type,
                "evse[0].id",
            ),
            (
                r#"{"status":"Accepted","evse":[{"id":10000000000000000000}]}"#,
                Range,
                "evse[0].id",
            ),
            (r#"{"status":"Accepted","evse":[{}]}"#, Required, "evse[0]"),
            (
                r#"{"status":"Accepted","evse":[{"id":1,"x":2}]}"#,
                Additional,
                "evse[0]",
            ),
            (r#"{"status":"Accepted","extra":1}"#, Additional, ""),
            (
                r#"{"status":"Accepted","status":"Accepted"}"#,
                Additional,
                "",
            ),
            (
                r#"{"status":"Accepted","customData":{}}"#,
                Required,
                "customData",
            ),
            (r#"{"status":"Accepted","on":null}"#, Type, "on"),
            (r#"{"status":"Accepted""#, Syntax, ""),
            (r#"[1]"#, Type, ""),
        ];
        for (json, kind_, path) in cases {
            assert_eq!(kind(json), (kind_, path.to_owned()), "{json}");
        }
    }

    #[test]
    fn echoes_are_capped() {
        let long = "x".repeat(10_000);
        let violation = schema()
            .check(&format!(r#"{{"status":"{long}"}}"#))
            .expect_err("not an allowed value");
        assert!(violation.detail.len() < 200, "{}", violation.detail);
    }

    #[test]
    fn keywords_not_checked_here_are_refused() {
        for document in [
            json!({"type": "string", "pattern": "^a"}),
            json!({"type": "object", "anyOf": []}),
            json!({"type": ["string", "null"]}),
            json!({"$ref": "#/definitions/Missing"}),
            json!({"type": "string", "format": "uri"}),
        ] {
            assert!(Schema::compile(&document).is_err(), "{document}");
        }
    }
}
