//! Holds the OCPP 2.1 payload checks (`ocpp::v201::check_in(Edition::V21, ..)`) against the
//! official JSON schemas, the oracle: `shared/ocpp21/schemas/` beside the checkout (181 files:
//! a request and a response per CALL action, and NotifyPeriodicEventStream, a SEND with one
//! document), read at test time and checked with the `jsonschema` crate, as the 2.0.1 test does
//! (`schema_samples`): valid samples from every schema accepted by both, every broken one
//! refused by both with the right CallError code. The embedded copies are the same bytes.
//! Also: 2.0.1's actions keep their 2.0.1 schemas on a 2.0.1 connection, and 2.1's new actions
//! are not 2.0.1's.

#[path = "schema_samples/mod.rs"]
mod samples;

use std::fs;

use ocpp::rpc::CallErrorCode;
use ocpp::v201::{self, Action, Edition, Part};

const SCHEMAS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/ocpp21/schemas");
const EMBEDDED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crates/ocpp/schemas/ocpp21");

#[test]
fn every_payload_check_agrees_with_its_schema() {
    let counts = samples::walk(Edition::V21, SCHEMAS, EMBEDDED);
    assert_eq!(counts.schemas, 181);
    assert!(counts.invalid > 3000, "{counts:?}");
}

#[test]
fn the_embedded_schemas_are_all_the_official_ones() {
    let official = fs::read_dir(SCHEMAS)
        .expect("shared/ocpp21/schemas")
        .count();
    let embedded = fs::read_dir(EMBEDDED)
        .expect("the embedded schemas")
        .count();
    assert_eq!((official, embedded), (181, 181));
}

#[test]
fn each_edition_checks_by_its_own_schemas() {
    // 2.1's NotifySettlement is not a 2.0.1 action.
    let settlement = r#"{"pspRef":"p1","status":"Settled","settlementAmount":12.5,"settlementTime":"2026-12-06T10:00:00Z"}"#;
    assert_eq!(
        v201::check_request_in(Edition::V21, "NotifySettlement", settlement),
        Ok(Action::NotifySettlement)
    );
    let code = |edition, action, payload| {
        v201::check_request_in(edition, action, payload).map_err(|e| e.code)
    };
    assert_eq!(
        code(Edition::V201, "NotifySettlement", settlement),
        Err(CallErrorCode::NotImplemented)
    );
    // A SEND is never a CALL; a CSMS action from a station is NotSupported in 2.1 too.
    assert_eq!(
        code(Edition::V21, "NotifyPeriodicEventStream", "{}"),
        Err(CallErrorCode::NotImplemented)
    );
    assert_eq!(
        code(Edition::V21, "SetDERControl", "{}"),
        Err(CallErrorCode::NotSupported)
    );
    // What 2.1 added to a 2.0.1 message is refused on a 2.0.1 connection: TransactionEvent's
    // cost details.
    let with_cost = r#"{"eventType":"Ended","timestamp":"2026-12-06T10:00:00Z","triggerReason":"EVCommunicationLost","seqNo":3,"transactionInfo":{"transactionId":"T1"},"costDetails":{"totalCost":{"currency":"EUR","typeOfCost":"NormalCost","total":{"exclTax":1.0}},"totalUsage":{"energy":1000,"chargingTime":60,"idleTime":0}}}"#;
    assert!(
        v201::check_in(
            Edition::V21,
            Action::TransactionEvent,
            Part::Request,
            with_cost
        )
        .is_ok()
    );
    assert_eq!(
        v201::check_in(
            Edition::V201,
            Action::TransactionEvent,
            Part::Request,
            with_cost
        )
        .map_err(|e| e.code),
        Err(CallErrorCode::FormationViolation)
    );
    let stations = Action::ALL
        .iter()
        .filter(|a| a.from_station() && !a.in_edition(Edition::V201))
        .count();
    assert_eq!(stations, 12, "11 CALLs and the SEND a 2.1 station adds");
}
