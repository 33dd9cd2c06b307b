//! Question: what does checking one request payload against its action's OCPP 1.6 schema cost,
//! per action, for payloads of the size charge points really send?
//!
//! One bench id per action under `validate_request/`, each timing `validate_request` on one
//! representative, valid payload (checked before measuring, so no error path is timed). It is
//! the same decoding `handle_call` does before answering, and what relaying a payload costs.
//! The throughput line gives the payload's bytes per second, to compare actions of different
//! sizes. Payload shapes:
//! - BootNotification: all nine fields set.
//! - StatusNotification: a fault report with info, timestamp and vendor fields.
//! - StartTransaction: with a reservation; StopTransaction: with reason, idTag and
//!   `transactionData` of two meter values (three sampled values in all).
//! - MeterValues: one periodic sample of an AC charger, ten sampled values (energy, power,
//!   current and voltage per phase, frequency, temperature), all with context, measurand,
//!   phase or location, and unit.
//! - DataTransfer: vendor, message id and a small JSON document as `data`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ocpp::v16::{Action, validate_request};
use serde_json::value::RawValue;

const BOOT_NOTIFICATION: &str = r#"{"chargePointVendor":"VendorX","chargePointModel":"ModelY",
"chargePointSerialNumber":"CP-0001","chargeBoxSerialNumber":"CB-0001","firmwareVersion":"1.2.3",
"iccid":"8931440400012345678","imsi":"204043123456789","meterType":"DZG DVH4013",
"meterSerialNumber":"M-77"}"#;

const HEARTBEAT: &str = "{}";

const STATUS_NOTIFICATION: &str = r#"{"connectorId":2,"errorCode":"EVCommunicationError",
"info":"lost the vehicle","status":"SuspendedEVSE","timestamp":"2026-11-24T10:00:00.000Z",
"vendorId":"com.example","vendorErrorCode":"E042"}"#;

const AUTHORIZE: &str = r#"{"idTag":"04A2B3C4D5E6F7"}"#;

const START_TRANSACTION: &str = r#"{"connectorId":1,"idTag":"04A2B3C4D5E6F7","meterStart":123456,
"reservationId":9,"timestamp":"2026-11-24T10:00:00.000Z"}"#;

const STOP_TRANSACTION: &str = r#"{"idTag":"04A2B3C4D5E6F7","meterStop":138456,
"timestamp":"2026-11-24T11:00:00.000Z","transactionId":1001,"reason":"EVDisconnected",
"transactionData":[
{"timestamp":"2026-11-24T10:00:00.000Z","sampledValue":[
{"value":"123456","context":"Transaction.Begin","format":"Raw",
"measurand":"Energy.Active.Import.Register","location":"Outlet","unit":"Wh"}]},
{"timestamp":"2026-11-24T11:00:00.000Z","sampledValue":[
{"value":"138456","context":"Transaction.End","format":"Raw",
"measurand":"Energy.Active.Import.Register","location":"Outlet","unit":"Wh"},
{"value":"31","context":"Transaction.End","measurand":"Temperature","location":"Body",
"unit":"Celsius"}]}]}"#;

const METER_VALUES: &str = r#"{"connectorId":1,"transactionId":1001,"meterValue":[
{"timestamp":"2026-11-24T10:15:00.000Z","sampledValue":[
{"value":"127654","context":"Sample.Periodic","measurand":"Energy.Active.Import.Register",
"location":"Outlet","unit":"Wh"},
{"value":"10980","context":"Sample.Periodic","measurand":"Power.Active.Import",
"location":"Outlet","unit":"W"},
{"value":"15.9","context":"Sample.Periodic","measurand":"Current.Import","phase":"L1",
"unit":"A"},
{"value":"16.0","context":"Sample.Periodic","measurand":"Current.Import","phase":"L2",
"unit":"A"},
{"value":"15.8","context":"Sample.Periodic","measurand":"Current.Import","phase":"L3",
"unit":"A"},
{"value":"230.1","context":"Sample.Periodic","measurand":"Voltage","phase":"L1-N","unit":"V"},
{"value":"229.7","context":"Sample.Periodic","measurand":"Voltage","phase":"L2-N","unit":"V"},
{"value":"231.0","context":"Sample.Periodic","measurand":"Voltage","phase":"L3-N","unit":"V"},
{"value":"50.0","context":"Sample.Periodic","measurand":"Frequency","unit":"Hertz"},
{"value":"34","context":"Sample.Periodic","measurand":"Temperature","location":"Body",
"unit":"Celsius"}]}]}"#;

const DATA_TRANSFER: &str = r#"{"vendorId":"com.example","messageId":"Diagnostics",
"data":"{\"fan\":\"ok\",\"rcd\":\"ok\",\"uptime\":86400}"}"#;

/// The payloads, by action, in the order the bench ids are reported.
const PAYLOADS: [(Action, &str); 8] = [
    (Action::BootNotification, BOOT_NOTIFICATION),
    (Action::Heartbeat, HEARTBEAT),
    (Action::StatusNotification, STATUS_NOTIFICATION),
    (Action::Authorize, AUTHORIZE),
    (Action::StartTransaction, START_TRANSACTION),
    (Action::StopTransaction, STOP_TRANSACTION),
    (Action::MeterValues, METER_VALUES),
    (Action::DataTransfer, DATA_TRANSFER),
];

fn validation(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate_request");
    for (action, json) in PAYLOADS {
        // The samples break lines between tokens only, for reading; charge points send them
        // without whitespace.
        let compact = json.replace('\n', "");
        let payload = RawValue::from_string(compact).expect("the sample is JSON");
        if let Err(invalid) = validate_request(action, &payload) {
            panic!("the {action} sample is invalid: {invalid:?}");
        }
        group.throughput(Throughput::Bytes(payload.get().len() as u64));
        group.bench_function(action.name(), |b| {
            b.iter(|| validate_request(action, black_box(&payload)));
        });
    }
    group.finish();
}

criterion_group!(benches, validation);
criterion_main!(benches);
