//! Valid and broken samples generated from an OCPP 2.x JSON schema, and the walk that holds the
//! gateway's payload checks (`ocpp::v201::check_in`) against the official schemas of an edition
//! (the `jsonschema` crate as the oracle, format validation on). Shared by the 2.0.1 and 2.1
//! conformance tests.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;

use ocpp::rpc::CallErrorCode;
use ocpp::v201::{self, Action, Edition, Part};
use serde_json::{Map, Value, json};

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
        // Inside its bounds: 2.5 unless a bound says otherwise (2.1 has `maximum: 0` for
        // discharge limits).
        Some("number") => json!(match (bound(node, "minimum"), bound(node, "maximum")) {
            (Some(min), Some(max)) => (min + max) / 2.0,
            (Some(min), None) => min + 0.5,
            (None, Some(max)) => max - 0.5,
            (None, None) => 2.5,
        }),
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
        kind @ ("integer" | "number") => {
            // An integer out of range is written as an integer (`3.0` is of the wrong type).
            let value = |v: f64| {
                if kind == "integer" {
                    json!(v as i64)
                } else {
                    json!(v)
                }
            };
            if let Some(min) = bound(node, "minimum") {
                push(
                    format!("{pointer} below {min}"),
                    with(whole, pointer, |v| *v = value(min - 1.0)),
                    PropertyConstraintViolation,
                );
            }
            if let Some(max) = bound(node, "maximum") {
                push(
                    format!("{pointer} above {max}"),
                    with(whole, pointer, |v| *v = value(max + 1.0)),
                    PropertyConstraintViolation,
                );
            }
        }
        _ => {}
    }
}

#[derive(Default, Debug)]
pub struct Counts {
    pub schemas: usize,
    pub valid: usize,
    pub invalid: usize,
}

/// Every schema of `edition` in `official` (each action's request and response, a SEND's one
/// document), its embedded copy in `embedded` the same bytes; the samples valid for the oracle
/// and ours, each broken one refused by both with 2.x's CallError code. Panics listing every
/// disagreement; returns what was checked.
pub fn walk(edition: Edition, official: &str, embedded: &str) -> Counts {
    let mut failures = Vec::new();
    let mut counts = Counts::default();
    let mut by_code: BTreeMap<&str, usize> = BTreeMap::new();
    for action in Action::ALL.into_iter().filter(|a| a.in_edition(edition)) {
        let parts: &[(Part, &str)] = if action.is_send() {
            &[(Part::Request, "")]
        } else {
            &[(Part::Request, "Request"), (Part::Response, "Response")]
        };
        for &(part, suffix) in parts {
            let name = format!("{}{suffix}", action.as_str());
            let path = format!("{official}/{name}.json");
            let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let copy = fs::read_to_string(format!("{embedded}/{name}.json"))
                .unwrap_or_else(|e| panic!("embedded {name}: {e}"));
            assert_eq!(
                text, copy,
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
                } else if let Err(e) = v201::check_in(edition, action, part, &text) {
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
                match v201::check_in(edition, action, part, &instance.to_string()) {
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
    counts
}
