//! A CALL for every action a charge point sends (the 10 of the core spec and the 4 of the
//! security whitepaper), with a valid payload, is answered with a CALLRESULT whose payload is
//! valid against the official response schema (checked by `common::call`).

mod common;

use common::*;
use ocpp::v16::Action;
use serde_json::{Value, json};

fn sample(action: Action) -> Value {
    let at = "2026-11-24T10:00:00.000Z";
    match action {
        Action::Authorize => json!({"idTag": "TAG-1"}),
        Action::BootNotification => json!({
            "chargePointVendor": "Acme", "chargePointModel": "X1", "chargePointSerialNumber": "S1",
            "firmwareVersion": "1.0.0", "iccid": "8931", "imsi": "2620", "meterType": "DC",
        }),
        Action::DataTransfer => json!({"vendorId": "com.acme", "messageId": "m1", "data": "{}"}),
        Action::DiagnosticsStatusNotification => json!({"status": "Uploaded"}),
        Action::FirmwareStatusNotification => json!({"status": "Installed"}),
        Action::Heartbeat => json!({}),
        Action::MeterValues => json!({
            "connectorId": 1, "transactionId": 7,
            "meterValue": [{"timestamp": at, "sampledValue": [
                {"value": "1234.5", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                {"value": "40", "measurand": "Temperature", "unit": "Celcius"},
            ]}],
        }),
        Action::StartTransaction => {
            json!({"connectorId": 1, "idTag": "TAG-1", "meterStart": 0, "timestamp": at})
        }
        Action::StatusNotification => json!({
            "connectorId": 1, "errorCode": "NoError", "status": "Charging", "timestamp": at,
        }),
        Action::StopTransaction => json!({
            "transactionId": 7, "meterStop": 10, "timestamp": at, "idTag": "TAG-1",
            "reason": "Local",
        }),
        Action::SecurityEventNotification => {
            json!({"type": "FirmwareUpdated", "timestamp": at, "techInfo": "v2"})
        }
        Action::SignCertificate => {
            json!({"csr": "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----"})
        }
        Action::LogStatusNotification => json!({"status": "Uploaded", "requestId": 3}),
        Action::SignedFirmwareStatusNotification => json!({"status": "Installed", "requestId": 4}),
        other => panic!("{} is not sent by a charge point", other.name()),
    }
}

#[test]
fn every_charge_point_action_gets_a_schema_valid_answer() {
    let server = TestServer::start(test_config());
    let mut client = connect(&server, "CP-all");
    boot(&mut client);
    let actions: Vec<Action> = Action::ALL
        .into_iter()
        .filter(|a| a.sent_by_charge_point())
        .collect();
    assert_eq!(actions.len(), 14);
    for (i, action) in actions.into_iter().enumerate() {
        let id = format!("a{i}");
        let reply = call(&mut client, &id, action.name(), sample(action));
        assert_eq!(reply[0], 3, "{} -> {reply}", action.name());
        assert_eq!(reply[1], id);
    }
    assert_eq!(server.stats().call_errors_sent, 0);
}

#[test]
fn actions_of_the_central_system_are_not_supported_from_a_charge_point() {
    let server = TestServer::start(test_config());
    let mut client = connect(&server, "CP-wrong-way");
    boot(&mut client);
    let reply = call(&mut client, "r1", "Reset", json!({"type": "Hard"}));
    assert_eq!(
        (reply[0].clone(), reply[2].clone()),
        (json!(4), json!("NotSupported"))
    );
}
