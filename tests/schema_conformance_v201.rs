//! Holds the OCPP 2.0.1 payload checks (`ocpp::v201`) against the official JSON schemas, the
//! oracle: `shared/ocpp201/schemas/` beside the checkout, read at test time and checked with the
//! `jsonschema` crate (format validation on). The gateway embeds its own copies: they must be
//! the same bytes.
//!
//! For each of the 128 schemas, valid samples are generated from the schema itself: a minimal
//! one (required properties only) and a full one (every property, arrays with as many elements
//! as `minItems` asks or one, strings of exactly `maxLength` multi-byte characters, numbers at
//! their bounds, `customData` with a vendor's extra fields). Both must pass the oracle and ours.
//! From the full sample, invalid ones are generated at every property of every level: a required
//! property removed, a value of each wrong JSON type, a string one character over `maxLength`, a
//! value outside the enumeration, a malformed date-time, a number below `minimum` or above
//! `maximum`, an integer with a fraction, too few or too many elements, an unknown property in a
//! closed object. Each must be rejected by the oracle *and* by ours, with the CallError code 2.0.1
//! gives for it.

use std::collections::BTreeMap;
use std::fs;

use ocpp::rpc::CallErrorCode;
use ocpp::v201::{self, Action, Part};
use serde_json::{Map, Value, json};

const SCHEMAS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/ocpp201/schemas");
const EMBEDDED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crates/ocpp/schemas/ocpp201");

/// The node a `$ref` names, or the node itself.
fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("local $ref");
            root.pointer(pointer).expect("$ref target exists")
        }
        None => node,
    }
}

/// A valid value for `node`; `full` fills every property, otherwise only the required ones.
fn sample(root: &Value, node: &Value, full: bool, depth: usize) -> Value {
    let node = resolve(root, node);
    match node.get("type").and_then(Value::as_str) {
        Some("object") => {
            let mut object = Map::new();
            let required: Vec<&str> = node
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let closed = node.get("additionalProperties") == Some(&json!(false));
            for (name, property) in node["properties"].as_object().into_iter().flatten() {
                if required.contains(&name.as_str()) || (full && depth < 6) {
                    object.insert(name.clone(), sample(root, property, full, depth + 1));
                }
            }
            if !closed && full {
                // customData and the like: a vendor's own fields pass.
                object.insert("vendorExtra".into(), json!({"any": [1, "thing"]}));
            }
            Value::Object(object)
        }
        Some("array") => {
            let n = node
                .get("minItems")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .max(1);
            let item = sample(root, &node["items"], full, depth + 1);
            Value::Array(vec![item; n as usize])
        }
        Some("string") => {
            if let Some(choices) = node.get("enum").and_then(Value::as_array) {
                return choices.last().cloned().expect("a non-empty enum");
            }
            if node.get("format").is_some() {
                return json!("2026-12-06T10:59:59.123+01:00");
            }
            match node.get("maxLength").and_then(Value::as_u64) {
                // Exactly maxLength characters, each two bytes in UTF-8.
                Some(max) if full => json!("é".repeat(max.min(2000) as usize)),
                _ => json!("x"),
            }
        }
        Some("integer") => json!(
            bound(node, "maximum")
                .or(bound(node, "minimum"))
                .unwrap_or(3.0) as i64
        ),
        Some("number") => json!(bound(node, "minimum").map_or(2.5, |m| m + 0.5)),
        Some("boolean") => json!(true),
        // No type (DataTransfer's `data`): anything.
        None => json!({"free": ["form", 1]}),
        other => panic!("schema type {other:?} not handled"),
    }
}

fn bound(node: &Value, key: &str) -> Option<f64> {
    node.get(key).and_then(Value::as_f64)
}

/// Values of another JSON type than `ty`.
fn wrong_types(ty: &str) -> Vec<Value> {
    match ty {
        "string" => vec![json!(42), json!({}), json!(null)],
        "integer" => vec![json!("7"), json!(1.5), json!(null)],
        "number" => vec![json!("7"), json!(true)],
        "boolean" => vec![json!("true"), json!(1)],
        "object" => vec![json!("x"), json!([])],
        "array" => vec![json!({}), json!("x")],
        other => panic!("schema type {other} not handled"),
    }
}

/// One invalid instance and the code it must get.
struct Broken {
    what: String,
    instance: Value,
    code: CallErrorCode,
}

fn with(root: &Value, pointer: &str, change: impl FnOnce(&mut Value)) -> Value {
    let mut instance = root.clone();
    change(
        instance
            .pointer_mut(pointer)
            .expect("pointer from the walk"),
    );
    instance
}

/// Walks `node` and the full sample's value at `pointer` together, adding one mutation per
/// rule at every level.
fn mutate(root: &Value, node: &Value, whole: &Value, pointer: &str, out: &mut Vec<Broken>) {
    use CallErrorCode::*;
    let node = resolve(root, node);
    let Some(ty) = node.get("type").and_then(Value::as_str) else {
        return;
    };
    let mut push = |what: String, instance: Value, code| {
        out.push(Broken {
            what,
            instance,
            code,
        })
    };
    if !pointer.is_empty() {
        // An integer with a fraction (1.5) is a value of the wrong type too.
        for wrong in wrong_types(ty) {
            push(
                format!("{pointer} = {wrong}"),
                with(whole, pointer, |v| *v = wrong.clone()),
                TypeConstraintViolation,
            );
        }
    }
    match ty {
        "object" => {
            let value = whole.pointer(pointer).expect("walked");
            let closed = node.get("additionalProperties") == Some(&json!(false));
            if closed {
                push(
                    format!("{pointer}/unknownField"),
                    with(whole, pointer, |v| {
                        v["unknownField"] = json!(1);
                    }),
                    FormationViolation,
                );
            }
            for name in node
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = name.as_str().expect("required names");
                push(
                    format!("{pointer} without {name}"),
                    with(whole, pointer, |v| {
                        v.as_object_mut().expect("object").remove(name);
                    }),
                    OccurenceConstraintViolation,
                );
            }
            for (name, property) in node["properties"].as_object().into_iter().flatten() {
                if value.get(name).is_some() {
                    let inner = format!("{pointer}/{name}");
                    mutate(root, property, whole, &inner, out);
                }
            }
        }
        "array" => {
            let len = whole
                .pointer(pointer)
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            if let Some(min) = node.get("minItems").and_then(Value::as_u64) {
                push(
                    format!("{pointer} with {} elements", min - 1),
                    with(whole, pointer, |v| {
                        v.as_array_mut().expect("array").truncate(min as usize - 1);
                    }),
                    OccurenceConstraintViolation,
                );
            }
            if let Some(max) = node.get("maxItems").and_then(Value::as_u64)
                && max <= 64
            {
                push(
                    format!("{pointer} with {} elements", max + 1),
                    with(whole, pointer, |v| {
                        let array = v.as_array_mut().expect("array");
                        let first = array[0].clone();
                        array.resize(max as usize + 1, first);
                    }),
                    OccurenceConstraintViolation,
                );
            }
            if len > 0 {
                mutate(root, &node["items"], whole, &format!("{pointer}/0"), out);
            }
        }
        "string" => {
            if node.get("enum").is_some() {
                push(
                    format!("{pointer} not in the enumeration"),
                    with(whole, pointer, |v| *v = json!("NotAValue")),
                    PropertyConstraintViolation,
                );
            }
            if let Some(max) = node.get("maxLength").and_then(Value::as_u64)
                && node.get("enum").is_none()
            {
                push(
                    format!("{pointer} of {} characters", max + 1),
                    with(whole, pointer, |v| *v = json!("é".repeat(max as usize + 1))),
                    PropertyConstraintViolation,
                );
            }
            if node.get("format").is_some() {
                push(
                    format!("{pointer} not a date-time"),
                    with(whole, pointer, |v| *v = json!("2026-13-01T00:00:00Z")),
                    PropertyConstraintViolation,
                );
            }
        }
        "integer" | "number" => {
            if let Some(min) = bound(node, "minimum") {
                push(
                    format!("{pointer} below {min}"),
                    with(whole, pointer, |v| *v = json!(min - 1.0)),
                    PropertyConstraintViolation,
                );
            }
            if let Some(max) = bound(node, "maximum") {
                push(
                    format!("{pointer} above {max}"),
                    with(whole, pointer, |v| *v = json!(max + 1.0)),
                    PropertyConstraintViolation,
                );
            }
        }
        _ => {}
    }
}

#[derive(Default, Debug)]
struct Counts {
    schemas: usize,
    valid: usize,
    invalid: usize,
}

#[test]
fn every_payload_check_agrees_with_its_schema() {
    let mut failures = Vec::new();
    let mut counts = Counts::default();
    let mut by_code: BTreeMap<&str, usize> = BTreeMap::new();
    for action in Action::ALL {
        for (part, suffix) in [(Part::Request, "Request"), (Part::Response, "Response")] {
            let name = format!("{}{suffix}", action.as_str());
            let path = format!("{SCHEMAS}/{name}.json");
            let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let embedded = fs::read_to_string(format!("{EMBEDDED}/{name}.json"))
                .unwrap_or_else(|e| panic!("embedded {name}: {e}"));
            assert_eq!(
                text, embedded,
                "{name}: the embedded copy differs from the official one"
            );
            let schema: Value = serde_json::from_str(&text).expect("a schema is JSON");
            let oracle = jsonschema::options()
                .should_validate_formats(true)
                .build(&schema)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            counts.schemas += 1;
            let full = sample(&schema, &schema, true, 0);
            for instance in [sample(&schema, &schema, false, 0), full.clone()] {
                counts.valid += 1;
                let text = instance.to_string();
                if !oracle.is_valid(&instance) {
                    failures.push(format!("{name}: the oracle rejects the sample {text}"));
                } else if let Err(e) = v201::check(action, part, &text) {
                    failures.push(format!("{name}: rejects {text}: {e:?}"));
                }
            }
            let mut broken = Vec::new();
            mutate(&schema, &schema, &full, "", &mut broken);
            for Broken {
                what,
                instance,
                code,
            } in broken
            {
                counts.invalid += 1;
                if oracle.is_valid(&instance) {
                    failures.push(format!("{name}: the oracle accepts {what}"));
                    continue;
                }
                match v201::check(action, part, &instance.to_string()) {
                    Ok(()) => failures.push(format!("{name}: accepts {what}")),
                    Err(e) if e.code != code => failures.push(format!(
                        "{name}: {what}: {} ({}), expected {}",
                        e.code, e.description, code
                    )),
                    Err(_) => *by_code.entry(code.as_str()).or_default() += 1,
                }
            }
        }
    }
    println!("{counts:?}, invalid by code: {by_code:?}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(counts.schemas, 128);
    assert!(counts.invalid > 2000, "{counts:?}");
}

#[test]
fn the_embedded_schemas_are_all_the_official_ones() {
    let official = fs::read_dir(SCHEMAS)
        .expect("shared/ocpp201/schemas")
        .count();
    let embedded = fs::read_dir(EMBEDDED)
        .expect("the embedded schemas")
        .count();
    assert_eq!((official, embedded), (128, 128));
}

#[test]
fn a_duplicated_property_is_refused_though_json_would_keep_one() {
    let twice =
        r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V","model":"N"}}"#;
    let oracle_view: Value = serde_json::from_str(twice).expect("serde_json keeps the last");
    assert_eq!(oracle_view["chargingStation"]["model"], "N");
    let invalid =
        v201::check(Action::BootNotification, Part::Request, twice).expect_err("a key given twice");
    assert_eq!(invalid.code, CallErrorCode::FormationViolation);
    assert_eq!(invalid.code.spelled(ocpp::Version::V201), "FormatViolation");
}
