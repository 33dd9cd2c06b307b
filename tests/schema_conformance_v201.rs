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

#[path = "schema_samples/mod.rs"]
mod samples;

use std::fs;

use ocpp::rpc::CallErrorCode;
use ocpp::v201::{self, Action, Edition, Part};
use serde_json::Value;

const SCHEMAS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/ocpp201/schemas");
const EMBEDDED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crates/ocpp/schemas/ocpp201");

#[test]
fn every_payload_check_agrees_with_its_schema() {
    let counts = samples::walk(Edition::V201, SCHEMAS, EMBEDDED);
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
