//! A mixed fleet on one topic: a 1.6 charge point, a 2.0.1 station and a 2.1 station on one
//! gateway publish to `ocpp-events-up` (a real broker, `tansu`), every event valid against
//! `schemas/kafka/` and carrying `ocppVersion` ("1.6", "2.0.1", "2.1") where it comes from a
//! message or a connect; each 2.x transaction's Started, Updated and Ended make
//! `transaction.started`, `transaction.meter_values` and `transaction.stopped` with the station's
//! string transaction id, each answered only once the broker has it (`events.ack_after_write`),
//! so one consumer reads all three versions.

mod common;

use common::tansu::{self, EVENT_PARTITIONS, EVENTS, Record, assert_schema, broker, gateway};
use common::*;
use ocpp_gateway::types::Protocols;
use serde_json::{Value, json};

fn has(records: &[Record], cp: &str, kind: &str) -> bool {
    records
        .iter()
        .any(|r| r.key.as_deref() == Some(cp) && r.value["eventType"] == kind)
}

fn transaction_event(kind: &str, seq_no: u64, extra: Value) -> Value {
    let mut event = json!({"eventType": kind, "timestamp": "2026-12-06T10:00:00Z",
        "triggerReason": "Authorized", "seqNo": seq_no,
        "transactionInfo": {"transactionId": "TX-K-201"}, "evse": {"id": 1, "connectorId": 1}});
    if let (Some(event), Some(extra)) = (event.as_object_mut(), extra.as_object()) {
        event.extend(extra.clone());
    }
    event
}

#[test]
fn every_version_publishes_one_kind_of_event_on_one_topic() {
    if !tansu::available() {
        return;
    }
    let tansu = broker();
    let dir = std::env::temp_dir().join(format!("ocpp-kafka-201-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let mut config = gateway(&tansu, "gw-mixed", &dir);
    config.ocpp.protocols = Protocols::ALL;
    config.events.ack_after_write = true;
    let server = TestServer::start(config);

    let mut old = connect(&server, "CP-MIX-16");
    boot(&mut old);
    type Call = fn(&mut Client, &str, &str, Value) -> Value;
    type Connect = fn(&TestServer, &str) -> Client;
    let stations: [(&str, &str, Connect, Call); 2] = [
        ("CS-MIX-201", "2.0.1", connect_v201, call_v201),
        ("CS-MIX-21", "2.1", connect_v21, call_v21),
    ];
    // Kept open until the events are read (a disconnect would be one more event).
    let mut open = Vec::new();
    for (cs, _, connect_station, call_x) in stations {
        let mut new = connect_station(&server, cs);
        let boot = json!({"reason": "PowerUp",
                          "chargingStation": {"model": "Test", "vendorName": "Tests"}});
        assert_eq!(
            call_x(&mut new, "boot", "BootNotification", boot)[2]["status"],
            "Accepted"
        );
        let status = json!({"timestamp": "2026-12-06T10:00:00Z", "connectorStatus": "Occupied",
                            "evseId": 1, "connectorId": 1});
        assert_eq!(call_x(&mut new, "s1", "StatusNotification", status)[0], 3);
        let token = json!({"idToken": {"idToken": "TAG-K", "type": "ISO14443"},
            "meterValue": [{"timestamp": "2026-12-06T10:00:00Z",
                            "sampledValue": [{"value": 1000}]}]});
        let meter = json!({"meterValue": [{"timestamp": "2026-12-06T10:10:00Z",
                                           "sampledValue": [{"value": 2.5,
                                                             "unitOfMeasure": {"unit": "kWh"}}]}]});
        let end = json!({"transactionInfo": {"transactionId": "TX-K-201",
                                             "stoppedReason": "EVDisconnected"},
                         "meterValue": [{"timestamp": "2026-12-06T10:20:00Z",
                                         "sampledValue": [{"value": 3000}]}]});
        for (n, (kind, extra)) in [("Started", token), ("Updated", meter), ("Ended", end)]
            .into_iter()
            .enumerate()
        {
            let id = format!("tx-{n}");
            let reply = call_x(
                &mut new,
                &id,
                "TransactionEvent",
                transaction_event(kind, n as u64, extra),
            );
            assert_eq!(reply[0], 3, "{reply}");
        }

        let free = json!({"timestamp": "2026-12-06T10:30:00Z", "connectorStatus": "Available",
                          "evseId": 1, "connectorId": 1});
        assert_eq!(call_x(&mut new, "s2", "StatusNotification", free)[0], 3);
        open.push(new);
    }
    // 2.1's own messages, a SEND among them: published as `charge_point.message`.
    let v21 = &mut open[1];
    let settlement = json!({"pspRef": "PSP-1", "status": "Settled", "settlementAmount": 12.5,
                            "settlementTime": "2026-12-06T10:40:00Z", "transactionId": "TX-K-201"});
    assert_eq!(call_v21(v21, "n1", "NotifySettlement", settlement)[0], 3);
    let stream = json!({"constantStreamData": {"id": 4, "variableMonitoringId": 7,
                                                "params": {"interval": 10}}});
    assert_eq!(
        call_v21(v21, "o1", "OpenPeriodicEventStream", stream)[2]["status"],
        "Accepted"
    );
    let send = r#"[6,"p1","NotifyPeriodicEventStream",{"id":4,"pending":0,"basetime":"2026-12-06T10:41:00Z","data":[{"t":1,"v":"7.5"}]}]"#;
    v21.send(tungstenite::Message::text(send)).expect("send");
    assert_eq!(
        call_v21(v21, "h1", "Heartbeat", json!({}))[1],
        "h1",
        "the SEND unanswered"
    );

    let mut reader = tansu.reader(EVENTS, EVENT_PARTITIONS);
    // Answered only once on the topic: the stop is there as soon as the answer came.
    reader.until("both stations' last status", |seen| {
        let statuses = |cs: &str| {
            seen.iter()
                .filter(|r| r.key.as_deref() == Some(cs))
                .filter(|r| r.value["eventType"] == "connector.status_changed")
                .count()
        };
        let messages = seen
            .iter()
            .filter(|r| r.value["eventType"] == "charge_point.message")
            .count();
        statuses("CS-MIX-201") == 2
            && statuses("CS-MIX-21") == 2
            && messages == 3
            && has(seen, "CP-MIX-16", "charge_point.connected")
    });
    for event in reader.seen.iter().map(|r| &r.value) {
        assert_schema(event);
    }
    for (cs, version, _, _) in stations {
        let new_events = reader.of(cs);
        let kinds: Vec<&str> = new_events
            .iter()
            .filter_map(|e| e["eventType"].as_str())
            .filter(|kind| *kind != "charge_point.message")
            .collect();
        assert_eq!(
            kinds,
            [
                "charge_point.connected",
                "charge_point.connected",
                "connector.status_changed",
                "transaction.started",
                "transaction.meter_values",
                "transaction.stopped",
                "connector.status_changed",
            ]
        );
        assert!(
            new_events.iter().all(|e| e["ocppVersion"] == version),
            "{new_events:#?}"
        );
        let p = |i: usize| &new_events[i]["payload"];
        assert_eq!(
            (&p(1)["trigger"], &p(1)["vendor"]),
            (&json!("boot"), &json!("Tests"))
        );
        assert_eq!(
            (&p(2)["evseId"], &p(2)["status"], &p(2)["previousStatus"]),
            (&json!(1), &json!("Occupied"), &Value::Null)
        );
        assert_eq!(
            (&p(6)["status"], &p(6)["previousStatus"]),
            (&json!("Available"), &json!("Occupied"))
        );
        assert_eq!(
            (
                &p(3)["transactionId"],
                &p(3)["idTag"],
                &p(3)["idTagStatus"],
                &p(3)["meterStartWh"]
            ),
            (
                &json!("TX-K-201"),
                &json!("TAG-K"),
                &json!("Accepted"),
                &json!(1000.0)
            )
        );
        assert_eq!(p(4)["seqNo"], 1);
        assert_eq!(
            (&p(5)["reason"], &p(5)["meterStopWh"], &p(5)["seqNo"]),
            (&json!("EVDisconnected"), &json!(3000.0), &json!(2))
        );
    }
    let messages: Vec<(&Value, &Value)> = reader
        .of("CS-MIX-21")
        .into_iter()
        .filter(|e| e["eventType"] == "charge_point.message")
        .map(|e| (&e["payload"]["action"], &e["payload"]["uniqueId"]))
        .collect();
    assert_eq!(
        messages,
        [
            (&json!("NotifySettlement"), &json!("n1")),
            (&json!("OpenPeriodicEventStream"), &json!("o1")),
            (&json!("NotifyPeriodicEventStream"), &json!("p1")),
        ]
    );
    let old_events = reader.of("CP-MIX-16");
    assert!(
        old_events.iter().all(|e| e["ocppVersion"] == "1.6"),
        "{old_events:#?}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
