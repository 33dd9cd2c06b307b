//! 2.0.1 and 2.1 payloads against their schemas and typed readers.

use super::*;

#[test]
fn every_embedded_schema_compiles() {
    let v201 = table(Edition::V201).expect("all 128 schemas of 2.0.1 compile");
    assert_eq!(v201.iter().flatten().count(), 64);
    let v21 = table(Edition::V21).expect("all 181 schemas of 2.1 compile");
    assert_eq!(v21.iter().flatten().count(), 91);
}

#[test]
fn actions_are_split_by_sender() {
    let in_201 = |a: &&Action| a.in_edition(Edition::V201);
    let station = Action::ALL
        .iter()
        .filter(in_201)
        .filter(|a| a.from_station())
        .count();
    let csms = Action::ALL
        .iter()
        .filter(in_201)
        .filter(|a| a.from_csms())
        .count();
    // DataTransfer is both.
    assert_eq!((station, csms), (25, 40));
    // 2.1 adds 11 station CALLs, 15 of the central system, and a SEND of the station.
    let station = Action::ALL.iter().filter(|a| a.from_station()).count();
    let csms = Action::ALL.iter().filter(|a| a.from_csms()).count();
    assert_eq!((station, csms), (37, 55));
    assert!(Action::NotifyPeriodicEventStream.is_send());
    assert_eq!(
        Action::parse("TransactionEvent"),
        Some(Action::TransactionEvent)
    );
    assert_eq!(Action::parse("transactionevent"), None);
    for action in Action::ALL {
        assert_eq!(Action::parse(action.as_str()), Some(action));
        assert_eq!(Action::ALL[action.index()], action);
    }
}

#[test]
fn a_station_call_is_checked_by_action_sender_and_schema() {
    assert_eq!(check_request("Heartbeat", "{}"), Ok(Action::Heartbeat));
    let with_custom = r#"{"customData":{"vendorId":"ACME","anything":[1,{"x":null}]}}"#;
    assert_eq!(
        check_request("Heartbeat", with_custom),
        Ok(Action::Heartbeat)
    );
    let code = |action, payload| check_request(action, payload).map_err(|e| e.code);
    use CallErrorCode::*;
    assert_eq!(code("Heartbeat", r#"{"x":1}"#), Err(FormationViolation));
    assert_eq!(code("Nope", "{}"), Err(NotImplemented));
    assert_eq!(code("Reset", r#"{"type":"Immediate"}"#), Err(NotSupported));
    let boot = r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}"#;
    assert_eq!(code("BootNotification", boot), Ok(Action::BootNotification));
    let no_model = r#"{"reason":"PowerUp","chargingStation":{"vendorName":"V"}}"#;
    assert_eq!(
        code("BootNotification", no_model),
        Err(OccurenceConstraintViolation)
    );
    let bad_reason = r#"{"reason":"Bored","chargingStation":{"model":"M","vendorName":"V"}}"#;
    assert_eq!(
        code("BootNotification", bad_reason),
        Err(PropertyConstraintViolation)
    );
    let typed = r#"{"reason":"PowerUp","chargingStation":{"model":7,"vendorName":"V"}}"#;
    assert_eq!(
        code("BootNotification", typed),
        Err(TypeConstraintViolation)
    );
}

#[test]
fn a_description_names_the_field() {
    let invalid = check(
        Action::StatusNotification,
        Part::Request,
        r#"{"timestamp":"2026-01-01T00:00:00Z","connectorStatus":"Available","evseId":1,"connectorId":"1"}"#,
    )
    .expect_err("connectorId is an integer");
    assert!(
        invalid.description.starts_with("connectorId: "),
        "{}",
        invalid.description
    );
}
