//! The 2.0.1 and 2.1 handlers: answers, transaction tracking and durability effects,
//! certificate signing, without sockets.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::policy::{IdTags, Identities};
use crate::security::Auth;
use crate::types::{CloseReason, Version};
use ocpp::v201::Part;

const NOW: &str = "2026-12-06T11:00:00Z";

fn now() -> Now<'static> {
    Now {
        time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_554_800),
        text: NOW,
    }
}

fn accepted() -> ChargePointState {
    ChargePointState {
        registration: Registration::Accepted,
        version: crate::types::Version::V201,
        ..ChargePointState::default()
    }
}

const BOOT: &str = r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V","serialNumber":"CS-1"}}"#;

/// A valid request of each action whose policy reads its payload; `{}` stands for the rest
/// (their answers do not depend on it).
fn request(action: Action) -> &'static str {
    match action {
        Action::BootNotification => BOOT,
        Action::Authorize => r#"{"idToken":{"idToken":"TAG-1","type":"ISO14443"}}"#,
        Action::TransactionEvent => {
            r#"{"eventType":"Started","timestamp":"2026-12-06T10:59:00Z","triggerReason":"Authorized","seqNo":0,"transactionInfo":{"transactionId":"TX-1"},"idToken":{"idToken":"TAG-1","type":"ISO14443"}}"#
        }
        Action::StatusNotification => {
            r#"{"timestamp":"2026-12-06T10:59:00Z","connectorStatus":"Available","evseId":1,"connectorId":1}"#
        }
        Action::SignCertificate => r#"{"csr":"not a request"}"#,
        Action::VatNumberValidation => r#"{"vatNumber":"NL123456789B01"}"#,
        Action::OpenPeriodicEventStream => {
            r#"{"constantStreamData":{"id":3,"variableMonitoringId":7,"params":{"interval":10}}}"#
        }
        Action::ClosePeriodicEventStream => r#"{"id":3}"#,
        Action::GetCertificateChainStatus => {
            r#"{"certificateStatusRequests":[{"certificateHashData":{"hashAlgorithm":"SHA256","issuerNameHash":"a1","issuerKeyHash":"b2","serialNumber":"c3"},"source":"OCSP","urls":["http://ocsp.example"]}]}"#
        }
        _ => "{}",
    }
}

fn answer_of(
    policy: &Policy,
    state: &mut ChargePointState,
    action: Action,
    payload: &str,
) -> Result<serde_json::Value, Invalid> {
    let mut out = Vec::new();
    answer(policy, "CS-1", state, action, payload, now(), &mut out)?;
    let text = String::from_utf8(out).expect("UTF-8");
    let edition = state.version.edition().unwrap_or(ocpp::v201::Edition::V201);
    v201::check_in(edition, action, Part::Response, &text)
        .unwrap_or_else(|e| panic!("{action:?} answered {text}, against its schema: {e:?}"));
    Ok(serde_json::from_str(&text).expect("JSON"))
}

#[test]
fn every_station_action_of_21_is_answered_within_its_21_response_schema() {
    let policy = Policy::accept_all(300);
    let station = || ChargePointState {
        version: crate::types::Version::V21,
        ..accepted()
    };
    for action in Action::ALL
        .into_iter()
        .filter(|a| a.from_station() && !a.is_send())
    {
        let result = answer_of(&policy, &mut station(), action, request(action));
        if action == Action::Get15118EVCertificate {
            assert_eq!(
                result.expect_err("no 15118 service").code,
                CallErrorCode::NotSupported
            );
        } else {
            let answer = result.unwrap_or_else(|e| panic!("{action:?}: {e:?}"));
            match action {
                Action::OpenPeriodicEventStream => assert_eq!(answer["status"], "Accepted"),
                Action::PullDynamicScheduleUpdate => assert_eq!(answer["status"], "Rejected"),
                Action::VatNumberValidation => {
                    assert_eq!(answer["vatNumber"], "NL123456789B01");
                    assert_eq!(answer["status"], "Rejected");
                }
                Action::GetCertificateChainStatus => {
                    assert_eq!(answer["certificateStatus"][0]["status"], "Failed");
                    assert_eq!(answer["certificateStatus"][0]["source"], "OCSP");
                }
                _ => {}
            }
        }
    }
}

#[test]
fn every_station_action_is_answered_within_its_response_schema() {
    let policy = Policy::accept_all(300);
    for action in Action::ALL
        .into_iter()
        .filter(|a| a.from_station() && a.in_edition(ocpp::v201::Edition::V201))
    {
        let result = answer_of(&policy, &mut accepted(), action, request(action));
        match action {
            Action::Get15118EVCertificate => {
                assert_eq!(
                    result.expect_err("no 15118 service").code,
                    CallErrorCode::NotSupported
                )
            }
            _ => {
                result.unwrap_or_else(|e| panic!("{action:?}: {e:?}"));
            }
        }
    }
}

#[test]
fn boot_answers_by_allow_list_and_serial_number() {
    let mut policy = Policy::accept_all(120);
    let answer = answer_of(
        &policy,
        &mut ChargePointState::default(),
        Action::BootNotification,
        BOOT,
    )
    .expect("answered");
    assert_eq!(
        answer,
        serde_json::json!({"currentTime": NOW, "interval": 120, "status": "Accepted"})
    );
    policy.identities = Some(Arc::new(Identities::parse("OTHER\n")));
    let mut state = ChargePointState::default();
    let answer = answer_of(&policy, &mut state, Action::BootNotification, BOOT).expect("answered");
    assert_eq!(
        (answer["status"].as_str(), state.registration),
        (Some("Rejected"), Registration::Rejected)
    );
    policy.identities = None;
    policy.check_serial_number = true;
    let mut state = ChargePointState {
        auth: Auth::Certificate,
        ..ChargePointState::default()
    };
    let other = BOOT.replace("CS-1", "CS-2");
    let answer =
        answer_of(&policy, &mut state, Action::BootNotification, &other).expect("answered");
    assert_eq!(answer["status"], "Rejected");
    assert_eq!(state.closing_after(), Some(CloseReason::SerialMismatch));
    policy.boot_status = RegistrationStatus::Pending;
    let mut state = ChargePointState::default();
    answer_of(&policy, &mut state, Action::BootNotification, BOOT).expect("answered");
    assert_eq!(state.registration, Registration::Pending);
}

#[test]
fn nothing_but_a_boot_before_acceptance() {
    let policy = Policy::accept_all(300);
    let mut state = ChargePointState::default();
    let payload = RawValue::from_string(
        r#"{"timestamp":"2026-12-06T10:59:00Z","connectorStatus":"Available","evseId":1,"connectorId":1}"#.into(),
    )
    .expect("JSON");
    let mut out = Vec::new();
    let refused = write_answer(
        &policy,
        "CS-1",
        &mut state,
        ("StatusNotification", &payload),
        now(),
        &mut out,
    )
    .expect_err("not accepted yet");
    assert_eq!(refused.0, Some(Action::StatusNotification));
    assert_eq!(refused.1.code, CallErrorCode::SecurityError);
    let boot = RawValue::from_string(BOOT.into()).expect("JSON");
    let mut out = Vec::new();
    let booted = write_answer(
        &policy,
        "CS-1",
        &mut state,
        ("BootNotification", &boot),
        now(),
        &mut out,
    );
    assert_eq!(
        booted.map_err(|e| e.1),
        Ok((Action::BootNotification, Effect::Fresh))
    );
    let mut out = Vec::new();
    let status = write_answer(
        &policy,
        "CS-1",
        &mut state,
        ("StatusNotification", &payload),
        now(),
        &mut out,
    );
    assert_eq!(
        status.map_err(|e| e.1),
        Ok((Action::StatusNotification, Effect::Fresh))
    );
    assert_eq!(out, b"{}");
}

#[test]
fn a_schema_violation_is_answered_with_its_code_and_counted_as_its_action() {
    let policy = Policy::accept_all(300);
    let payload = RawValue::from_string(r#"{"evseId":"1"}"#.into()).expect("JSON");
    let mut out = Vec::new();
    let (action, invalid) = write_answer(
        &policy,
        "CS-1",
        &mut accepted(),
        ("StatusNotification", &payload),
        now(),
        &mut out,
    )
    .expect_err("evseId is an integer");
    assert_eq!(action, Some(Action::StatusNotification));
    assert_eq!(invalid.code, CallErrorCode::TypeConstraintViolation);
    assert!(
        invalid.description.starts_with("evseId: "),
        "{}",
        invalid.description
    );
}

#[test]
fn tokens_are_answered_from_the_tag_list() {
    let mut policy = Policy::accept_all(300);
    policy.id_tags = Some(
        IdTags::parse(
            "[[tag]]\nid = \"TAG-1\"\nstatus = \"Accepted\"\nparent = \"FLEET\"\n[[tag]]\nid = \"BAD\"\nstatus = \"Blocked\"\n",
        )
        .expect("a tag list"),
    );
    let authorize = |token: &str| {
        let payload = format!(r#"{{"idToken":{{"idToken":"{token}","type":"ISO14443"}}}}"#);
        answer_of(&policy, &mut accepted(), Action::Authorize, &payload).expect("answered")
    };
    assert_eq!(
        authorize("TAG-1")["idTokenInfo"],
        serde_json::json!({"status": "Accepted", "groupIdToken": {"idToken": "FLEET", "type": "Central"}})
    );
    assert_eq!(authorize("BAD")["idTokenInfo"]["status"], "Blocked");
    assert_eq!(authorize("NOBODY")["idTokenInfo"]["status"], "Invalid");
    let started = answer_of(
        &policy,
        &mut accepted(),
        Action::TransactionEvent,
        request(Action::TransactionEvent),
    )
    .expect("answered");
    assert_eq!(started["idTokenInfo"]["status"], "Accepted");
    let updated = r#"{"eventType":"Updated","timestamp":"2026-12-06T10:59:30Z","triggerReason":"MeterValuePeriodic","seqNo":1,"transactionInfo":{"transactionId":"TX-1"}}"#;
    let updated =
        answer_of(&policy, &mut accepted(), Action::TransactionEvent, updated).expect("answered");
    assert_eq!(updated, serde_json::json!({}), "no idToken, no idTokenInfo");
}

fn event(kind: &str, id: &str, seq_no: i64, evse: i64) -> String {
    format!(
        r#"{{"eventType":"{kind}","timestamp":"2026-12-06T10:00:00Z","triggerReason":"Authorized","seqNo":{seq_no},"transactionInfo":{{"transactionId":"{id}"}},"evse":{{"id":{evse}}},"meterValue":[{{"timestamp":"2026-12-06T10:00:00Z","sampledValue":[{{"value":1.25,"unitOfMeasure":{{"unit":"kWh"}}}}]}}]}}"#
    )
}

fn effect(state: &mut ChargePointState, payload: &str) -> Effect {
    let mut out = Vec::new();
    let policy = Policy::accept_all(300);
    let effect = answer(
        &policy,
        "CS-1",
        state,
        Action::TransactionEvent,
        payload,
        now(),
        &mut out,
    )
    .expect("answered");
    v201::check(
        Action::TransactionEvent,
        Part::Response,
        &String::from_utf8_lossy(&out),
    )
    .expect("a valid answer");
    effect
}

#[test]
fn a_transaction_is_followed_by_its_seq_no() {
    let mut state = accepted();
    assert_eq!(
        effect(&mut state, &event("Started", "TX-A", 0, 1)),
        Effect::Fresh
    );
    let open = &state.v201.as_ref().expect("followed").open[0];
    assert_eq!(
        (&*open.id, open.evse_id, open.meter_start_wh),
        ("TX-A", Some(1), Some(1250.0))
    );
    assert_eq!(
        effect(&mut state, &event("Updated", "TX-A", 1, 1)),
        Effect::Fresh
    );
    assert_eq!(
        effect(&mut state, &event("Updated", "TX-A", 1, 1)),
        Effect::Resent,
        "sent again"
    );
    assert_eq!(
        effect(&mut state, &event("Started", "TX-A", 0, 1)),
        Effect::Resent
    );
    assert_eq!(
        effect(&mut state, &event("Updated", "TX-A", 3, 1)),
        Effect::Gap { expected: 2 }
    );
    assert_eq!(
        effect(&mut state, &event("Ended", "TX-A", 4, 1)),
        Effect::Fresh
    );
    assert!(state.v201.as_ref().expect("followed").open.is_empty());
    assert_eq!(
        effect(&mut state, &event("Ended", "TX-A", 4, 1)),
        Effect::Resent,
        "its Ended again"
    );
    assert_eq!(
        effect(&mut state, &event("Updated", "TX-A", 2, 1)),
        Effect::Late,
        "a late one, after the Ended: kept"
    );
}

#[test]
fn a_skipped_event_that_comes_late_is_kept_and_a_resend_when_unsure_is_kept_again() {
    let mut state = accepted();
    effect(&mut state, &event("Started", "TX-L", 0, 1));
    assert_eq!(
        effect(&mut state, &event("Updated", "TX-L", 3, 1)),
        Effect::Gap { expected: 1 }
    );
    // 1 and 2 were skipped: each is kept when it comes, once.
    assert_eq!(
        effect(&mut state, &event("Updated", "TX-L", 2, 1)),
        Effect::Late
    );
    assert_eq!(
        effect(&mut state, &event("Updated", "TX-L", 2, 1)),
        Effect::Resent
    );
    assert_eq!(
        effect(&mut state, &event("Updated", "TX-L", 1, 1)),
        Effect::Late
    );
    assert_eq!(
        effect(&mut state, &event("Updated", "TX-L", 3, 1)),
        Effect::Resent
    );
    // A gap wider than the window: what falls out of it counts as answered.
    assert_eq!(
        effect(&mut state, &event("Updated", "TX-L", 100, 1)),
        Effect::Gap { expected: 4 }
    );
    assert_eq!(
        effect(&mut state, &event("Updated", "TX-L", 99, 1)),
        Effect::Late
    );
    assert_eq!(
        effect(&mut state, &event("Updated", "TX-L", 5, 1)),
        Effect::Resent
    );
    // A transaction first seen far into its events: the window holds what came before it.
    assert_eq!(
        effect(&mut state, &event("Updated", "TX-F", 70, 1)),
        Effect::Gap { expected: 0 }
    );
    assert_eq!(
        effect(&mut state, &event("Updated", "TX-F", 69, 1)),
        Effect::Late
    );
    assert_eq!(
        effect(&mut state, &event("Updated", "TX-F", 70, 1)),
        Effect::Resent
    );
    // State from storage (a restart): the last answered event may not have been kept, so its
    // resend is kept again; after a fresh event the station is known to have had its answers.
    state.v201.as_mut().unwrap().unsure = true;
    assert_eq!(
        effect(&mut state, &event("Updated", "TX-L", 99, 1)),
        Effect::Resent
    );
    assert_eq!(
        effect(&mut state, &event("Updated", "TX-L", 100, 1)),
        Effect::Again
    );
    assert_eq!(
        effect(&mut state, &event("Updated", "TX-L", 100, 1)),
        Effect::Resent
    );
    state.v201.as_mut().unwrap().unsure = true;
    assert_eq!(
        effect(&mut state, &event("Ended", "TX-L", 101, 1)),
        Effect::Fresh
    );
    assert_eq!(
        effect(&mut state, &event("Ended", "TX-L", 101, 1)),
        Effect::Resent
    );
    state.v201.as_mut().unwrap().unsure = true;
    assert_eq!(
        effect(&mut state, &event("Ended", "TX-L", 101, 1)),
        Effect::Again
    );
}

#[test]
fn transactions_of_several_evses_are_followed_apart_and_bounded() {
    let mut state = accepted();
    assert_eq!(
        effect(&mut state, &event("Started", "TX-1", 0, 1)),
        Effect::Fresh
    );
    assert_eq!(
        effect(&mut state, &event("Started", "TX-2", 0, 2)),
        Effect::Fresh
    );
    assert_eq!(
        effect(&mut state, &event("Updated", "TX-1", 1, 1)),
        Effect::Fresh
    );
    assert_eq!(
        effect(&mut state, &event("Updated", "TX-2", 1, 2)),
        Effect::Fresh
    );
    // First seen in the middle (a failover without state): what came before is a gap.
    assert_eq!(
        effect(&mut state, &event("Updated", "TX-3", 5, 3)),
        Effect::Gap { expected: 0 }
    );
    for n in 0..40 {
        effect(&mut state, &event("Started", &format!("TX-MANY-{n}"), 0, 1));
        effect(&mut state, &event("Ended", &format!("TX-DONE-{n}"), 0, 1));
    }
    let transactions = state.v201.as_ref().expect("followed");
    assert_eq!(transactions.open.len(), MAX_OPEN_TRANSACTIONS);
    assert_eq!(transactions.ended.len(), ENDED_REMEMBERED);
}

#[test]
fn connector_statuses_are_kept_per_evse_and_bounded() {
    let mut state = accepted();
    let status = |evse: u32, connector: u32, status: &str| {
        format!(
            r#"{{"timestamp":"2026-12-06T10:00:00Z","connectorStatus":"{status}","evseId":{evse},"connectorId":{connector}}}"#
        )
    };
    let report = |state: &mut ChargePointState, payload: &str| {
        answer_of(
            &Policy::accept_all(300),
            state,
            Action::StatusNotification,
            payload,
        )
        .expect("answered");
    };
    assert_eq!(previous_status(&state, &status(1, 1, "Occupied")), None);
    report(&mut state, &status(1, 1, "Occupied"));
    report(&mut state, &status(2, 1, "Available"));
    assert_eq!(
        previous_status(&state, &status(1, 1, "Available")),
        Some("Occupied")
    );
    report(&mut state, &status(1, 1, "Available"));
    let connectors = &state.v201.as_ref().expect("kept").connectors;
    assert_eq!(
        connectors
            .iter()
            .map(|c| (c.evse_id, c.connector_id, c.status.as_str()))
            .collect::<Vec<_>>(),
        [(1, 1, "Available"), (2, 1, "Available")]
    );
    for evse in 3..100 {
        report(&mut state, &status(evse, 1, "Faulted"));
    }
    assert_eq!(
        state.v201.as_ref().expect("kept").connectors.len(),
        handlers::MAX_CONNECTORS
    );
}

#[test]
fn sign_certificate_checks_signs_and_says_why_not() {
    use crate::security::signing::testing;
    use serde_json::{Value, json};
    let mut policy = Policy::accept_all(300);
    policy.signing = handlers::Signer::Ca(Arc::new(testing::authority("handlers-v201")));
    let mut state = ChargePointState {
        auth: Auth::Certificate,
        ..accepted()
    };
    let sign = |policy: &Policy, state: &mut ChargePointState, request: Value| {
        let raw = RawValue::from_string(request.to_string()).unwrap();
        let mut out = Vec::new();
        write_answer(
            policy,
            "CP1",
            state,
            ("SignCertificate", &raw),
            now(),
            &mut out,
        )
        .expect("answered");
        let answer: Value = serde_json::from_slice(&out).unwrap();
        v201::check(Action::SignCertificate, Part::Response, &answer.to_string()).expect("valid");
        answer
    };
    let good = json!({"csr": testing::csr("CP1"), "certificateType": "ChargingStationCertificate"});
    assert_eq!(
        sign(&policy, &mut state, good.clone())["status"],
        "Accepted"
    );
    let follow_up = state
        .after
        .take()
        .and_then(|a| a.call)
        .expect("CertificateSigned follows");
    assert_eq!(
        follow_up.action,
        ocpp::AnyAction::V201(Action::CertificateSigned)
    );
    let payload: Value = serde_json::from_str(follow_up.payload.get()).unwrap();
    assert_eq!(payload["certificateType"], "ChargingStationCertificate");

    for (request, code) in [
        (json!({"csr": testing::csr("CP2")}), "InvalidCommonName"),
        (json!({"csr": "not a request"}), "InvalidCSR"),
        (
            json!({"csr": testing::csr("CP1"), "certificateType": "V2GCertificate"}),
            "UnsupportedCertType",
        ),
    ] {
        let answer = sign(&policy, &mut state, request);
        assert_eq!(answer["status"], "Rejected");
        assert_eq!(answer["statusInfo"]["reasonCode"], code);
        assert!(state.follow_up().is_none());
    }
    // 2.1: the request's id comes back with the certificate; a request without a type is for
    // this connection too.
    let mut state21 = ChargePointState {
        version: Version::V21,
        ..state.clone()
    };
    let request = json!({"csr": testing::csr("CP1"), "requestId": 42});
    assert_eq!(sign(&policy, &mut state21, request)["status"], "Accepted");
    let follow_up = state21
        .after
        .take()
        .and_then(|a| a.call)
        .expect("CertificateSigned follows");
    let payload: Value = serde_json::from_str(follow_up.payload.get()).unwrap();
    assert_eq!(payload["requestId"], 42);
    v201::check_in(
        v201::Edition::V21,
        Action::CertificateSigned,
        Part::Request,
        follow_up.payload.get(),
    )
    .expect("a valid 2.1 CertificateSigned");
    let request = json!({"csr": testing::csr("CP1"), "certificateType": "V2G20Certificate"});
    let answer = sign(&policy, &mut state21, request);
    assert_eq!(answer["statusInfo"]["reasonCode"], "UnsupportedCertType");
    assert!(state21.follow_up().is_none());
    // Past the CA's pace: Rejected, to be sent again.
    let paced = testing::authority("handlers-v201-paced").paced(1);
    policy.signing = handlers::Signer::Ca(Arc::new(paced));
    assert_eq!(
        sign(&policy, &mut state, good.clone())["status"],
        "Accepted"
    );
    state.after = None;
    let answer = sign(&policy, &mut state, good.clone());
    assert_eq!(answer["statusInfo"]["reasonCode"], "TooManyRequests");
    assert!(state.follow_up().is_none());
    policy.signing = handlers::Signer::Off;
    let answer = sign(&policy, &mut state, good);
    assert_eq!(answer["statusInfo"]["reasonCode"], "NoCA");
}
