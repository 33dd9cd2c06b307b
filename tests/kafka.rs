//! The Kafka events sink against a real Kafka-protocol broker (`tansu`, started here) with
//! librdkafka as the backend: a scripted session's integration events in order and valid
//! against `schemas/kafka/`; a StopTransaction answered only once its event is on the topic, a
//! held answer making `/health` degraded after `kafka.degraded_after`, StartTransaction refused
//! with InternalError after `kafka.ack_timeout` while the broker is stopped (Heartbeats still
//! served, `/health` degraded) and flowing again once it is back; a full buffer holding the
//! processors back; a stop while the broker hangs; raw frames. The commands topic is
//! `tests/kafka_commands.rs`.
//!
//! Needs `tansu` on the PATH (`.ci/run` installs it). Without it the tests say so loudly and
//! pass, except when `OCPP_REQUIRE_SERVERS` is set (as `.ci/run` does), where they fail.

mod common;

use std::time::Duration;

use common::tansu::{
    self, EVENT_PARTITIONS, EVENTS, Record, assert_schema, broker, gateway, scratch,
};
use common::*;
use serde_json::{Value, json};
use tungstenite::Message;

fn kinds(events: &[&Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["eventType"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Whether `records` hold an event of `kind` for `cp`.
fn has(records: &[Record], cp: &str, kind: &str) -> bool {
    records
        .iter()
        .any(|r| r.key.as_deref() == Some(cp) && r.value["eventType"] == kind)
}

#[test]
fn a_session_publishes_its_integration_events_in_order() {
    if !tansu::available() {
        return;
    }
    let tansu = broker();
    let dir = scratch("session");
    let mut server = TestServer::start(gateway(&tansu, "gw-session", &dir));
    let mut cp = connect(&server, "CP-K1");
    let transaction = boot_and_start_transaction(&mut cp);
    let meter = json!({"connectorId": 1, "transactionId": transaction, "meterValue": [
        {"timestamp": "2026-11-28T10:30:00Z", "sampledValue": [{"value": "4700", "unit": "Wh"}]}]});
    assert_eq!(call(&mut cp, "m1", "MeterValues", meter)[0], 3);
    let stop = json!({"transactionId": transaction, "meterStop": 9000,
                      "timestamp": "2026-11-28T11:00:00Z", "reason": "EVDisconnected"});
    assert_eq!(call(&mut cp, "t2", "StopTransaction", stop)[0], 3);
    let available = json!({"connectorId": 1, "errorCode": "NoError", "status": "Available"});
    assert_eq!(call(&mut cp, "s9", "StatusNotification", available)[0], 3);
    assert_eq!(call(&mut cp, "h1", "Heartbeat", json!({}))[0], 3);
    cp.close(None).expect("close");
    let _ = expect_close(&mut cp);

    let mut reader = tansu.reader(EVENTS, EVENT_PARTITIONS);
    reader.until("the session's disconnect", |seen| {
        has(seen, "CP-K1", "charge_point.disconnected")
    });
    let events = reader.of("CP-K1");
    assert_eq!(
        kinds(&events),
        [
            "charge_point.connected",
            "charge_point.connected",
            "connector.status_changed",
            "transaction.started",
            "connector.status_changed",
            "transaction.meter_values",
            "transaction.stopped",
            "connector.status_changed",
            "charge_point.disconnected",
        ],
        "in order, Heartbeats make none: {events:#?}"
    );
    for event in &events {
        assert_schema(event);
        assert_eq!(event["chargePointId"], "CP-K1");
        assert_eq!(event["gatewayId"], "gw-session");
    }
    let partitions: std::collections::HashSet<i32> = reader
        .seen
        .iter()
        .filter(|r| r.key.as_deref() == Some("CP-K1"))
        .map(|r| r.partition)
        .collect();
    assert_eq!(partitions.len(), 1, "keyed by charge point: one partition");
    let ids: std::collections::HashSet<&str> = events
        .iter()
        .filter_map(|e| e["eventId"].as_str())
        .collect();
    assert_eq!(ids.len(), events.len(), "eventIds are unique");

    let p = |i: usize| &events[i]["payload"];
    assert_eq!(p(0)["trigger"], "connect");
    assert_eq!(p(0)["vendor"], Value::Null, "never booted before");
    assert!(
        p(0)["remoteAddress"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:"))
    );
    assert_eq!(
        (&p(1)["trigger"], &p(1)["vendor"], &p(1)["model"]),
        (&json!("boot"), &json!("Acme"), &json!("Fast-1"))
    );
    assert_eq!(
        (&p(2)["status"], &p(2)["previousStatus"]),
        (&json!("Preparing"), &Value::Null)
    );
    assert_eq!(
        (
            &p(3)["transactionId"],
            &p(3)["idTag"],
            &p(3)["meterStartWh"],
            &p(3)["connectorId"]
        ),
        (&json!(transaction), &json!("TAG1"), &json!(1000), &json!(1))
    );
    assert_eq!(
        (&p(4)["status"], &p(4)["previousStatus"]),
        (&json!("Charging"), &json!("Preparing"))
    );
    assert_eq!(p(5)["meterValues"][0]["sampledValue"][0]["value"], "4700");
    assert_eq!(
        (
            &p(6)["transactionId"],
            &p(6)["reason"],
            &p(6)["meterStopWh"],
            &p(6)["stopTimestamp"]
        ),
        (
            &json!(transaction),
            &json!("EVDisconnected"),
            &json!(9000),
            &json!("2026-11-28T11:00:00Z")
        )
    );
    assert_eq!(
        (&p(7)["status"], &p(7)["previousStatus"]),
        (&json!("Available"), &json!("Charging"))
    );
    assert!(p(8)["reason"].as_str().is_some_and(|r| !r.is_empty()));

    // Reconnecting without a boot: the connect event carries what the last boot said.
    let mut again = connect(&server, "CP-K1");
    assert_eq!(call(&mut again, "h2", "Heartbeat", json!({}))[0], 3);
    reader.until("the second connect", |seen| {
        seen.iter()
            .filter(|r| {
                r.key.as_deref() == Some("CP-K1")
                    && r.value["eventType"] == "charge_point.connected"
            })
            .count()
            == 3
    });
    let last = reader
        .of("CP-K1")
        .into_iter()
        .last()
        .cloned()
        .expect("an event");
    assert_eq!(
        (&last["payload"]["trigger"], &last["payload"]["vendor"]),
        (&json!("connect"), &json!("Acme"))
    );
    let stats = server.stats();
    assert_eq!(stats.kafka_events_failed + stats.kafka_events_lost, 0);
    drop(again);
    server.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// Health's status and whether its problems say Kafka does not confirm events.
fn health(server: &TestServer) -> (String, bool) {
    let health = http(server.admin(), "GET", "/health", None, None).json();
    (
        health["status"].as_str().unwrap_or("").to_owned(),
        health["problems"]
            .to_string()
            .contains("Kafka does not confirm events"),
    )
}

#[test]
fn billing_answers_wait_for_the_broker_and_are_refused_while_it_is_stopped() {
    if !tansu::available() {
        return;
    }
    let tansu = broker();
    let dir = scratch("ack");
    let mut server = TestServer::start(gateway(&tansu, "gw-ack", &dir));
    let mut reader = tansu.reader(EVENTS, EVENT_PARTITIONS);
    let mut cp = connect(&server, "CP-ACK");
    let transaction = boot_and_start_transaction(&mut cp);
    let mut other = connect(&server, "CP-OTHER");
    boot(&mut other);

    // Answered only once the broker has the event: it is on the topic when the answer comes.
    // Everything before the StopTransaction is on the topic first: then only its event can
    // move the watermarks.
    reader.until("the events so far", |seen| {
        let charging = seen.iter().any(|r| {
            r.key.as_deref() == Some("CP-ACK") && r.value["payload"]["status"] == "Charging"
        });
        let other_booted = seen.iter().any(|r| {
            r.key.as_deref() == Some("CP-OTHER") && r.value["payload"]["trigger"] == "boot"
        });
        charging && other_booted
    });
    let before = reader.high_watermarks();
    let stop = json!({"transactionId": transaction, "meterStop": 9000,
                      "timestamp": "2026-11-28T11:00:00Z"});
    assert_eq!(call(&mut cp, "t2", "StopTransaction", stop)[0], 3);
    assert!(
        reader.high_watermarks() > before,
        "the StopTransaction answer came before its event was on the topic"
    );
    reader.until("transaction.stopped", |seen| {
        has(seen, "CP-ACK", "transaction.stopped")
    });

    // The broker stops answering: the next billing message is refused after ack_timeout (the
    // charge point keeps it), other charge points' Heartbeats are still answered.
    tansu.freeze(true);
    // Events that hold no answer are answered at once; /health notices the broker confirms
    // nothing within ack_timeout even so.
    let status = json!({"connectorId": 1, "errorCode": "NoError", "status": "Available"});
    assert_eq!(call(&mut other, "st1", "StatusNotification", status)[0], 3);
    wait_until("/health degraded: nothing confirmed", || {
        health(&server) == ("degraded".into(), true)
    });
    // A StartTransaction is billing too: held, and refused while the broker is away.
    let start = json!({"connectorId": 1, "idTag": "TAG1",
                       "meterStart": 9000, "timestamp": "2026-11-28T12:00:00Z"});
    let second = call(&mut cp, "t3", "StartTransaction", start.clone());
    assert_eq!(
        (&second[0], &second[2]),
        (&json!(4), &json!("InternalError")),
        "StartTransaction is held like StopTransaction: {second}"
    );
    let meter = json!({"connectorId": 1, "transactionId": transaction, "meterValue": [
        {"timestamp": "2026-11-28T12:10:00Z", "sampledValue": [{"value": "9100"}]}]});
    cp.send(Message::text(
        json!([2, "m-held", "MeterValues", meter]).to_string(),
    ))
    .expect("send");
    for i in 0..5 {
        let reply = call(&mut other, &format!("hb{i}"), "Heartbeat", json!({}));
        assert_eq!(
            reply[0], 3,
            "Heartbeats are served while Kafka is stopped: {reply}"
        );
    }
    let refused = next_json(&mut cp);
    assert_eq!(
        (&refused[0], &refused[1], &refused[2]),
        (&json!(4), &json!("m-held"), &json!("InternalError")),
        "{refused}"
    );
    server.wait_for("the refusal counted", |s| s.kafka_refused >= 1);
    wait_until("/health degraded by Kafka", || {
        health(&server) == ("degraded".into(), true)
    });

    // Back: the refused messages, sent again, go through; /health recovers.
    tansu.freeze(false);
    // As a charge point does: sent again until accepted (a broker just back may still need
    // longer than ack_timeout for the first confirmations; each try is bounded by it).
    let mut tries = 0;
    let next = loop {
        tries += 1;
        let again = call(
            &mut cp,
            &format!("t-again-{tries}"),
            "StartTransaction",
            start.clone(),
        );
        if again[0] == 3 {
            break again[2]["transactionId"]
                .as_i64()
                .expect("a transaction id");
        }
        assert_eq!(again[2], "InternalError", "{again}");
        assert!(tries < 10, "never accepted after the broker came back");
    };
    let meter = json!({"connectorId": 1, "transactionId": next, "meterValue": [
        {"timestamp": "2026-11-28T12:10:00Z", "sampledValue": [{"value": "9100"}]}]});
    let mut tries = 0;
    loop {
        tries += 1;
        let again = call(
            &mut cp,
            &format!("m-again-{tries}"),
            "MeterValues",
            meter.clone(),
        );
        if again[0] == 3 {
            break;
        }
        assert_eq!(again[2], "InternalError", "{again}");
        assert!(tries < 10, "never accepted after the broker came back");
    }
    wait_until("/health healthy again", || health(&server).0 == "healthy");
    reader.until("the meter values, after the broker came back", |seen| {
        seen.iter().any(|r| {
            r.key.as_deref() == Some("CP-ACK")
                && r.value["eventType"] == "transaction.meter_values"
                && r.value["payload"]["transactionId"] == next
        })
    });
    let stats = server.stats();
    assert_eq!(
        stats.kafka_events_failed + stats.kafka_events_lost,
        0,
        "{stats:#?}"
    );
    drop((cp, other));
    server.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_full_kafka_buffer_holds_the_processors_back_and_loses_nothing() {
    if !tansu::available() {
        return;
    }
    let tansu = broker();
    let dir = scratch("backpressure");
    let mut config = gateway(&tansu, "gw-full", &dir);
    if let Some(kafka) = config.kafka.as_mut() {
        kafka.buffer_messages = 1000; // the smallest librdkafka buffer the gateway allows
        kafka.ack_timeout = Duration::from_secs(60); // nothing held times out here
    }
    config.events.queue_capacity = 512; // two chunks between the processors and the sink
    let mut server = TestServer::start(config);
    const CHARGE_POINTS: usize = 8;
    const EACH: usize = 250; // 2,000 events in all: twice what librdkafka may buffer
    let mut clients: Vec<Client> = (0..CHARGE_POINTS)
        .map(|i| {
            let mut cp = connect(&server, &format!("CP-FULL-{i}"));
            boot(&mut cp);
            cp
        })
        .collect();
    tansu.freeze(true);
    let senders: Vec<_> = clients
        .drain(..)
        .map(|mut cp| {
            std::thread::spawn(move || {
                for n in 0..EACH {
                    let status = if n % 2 == 0 { "Available" } else { "Preparing" };
                    let payload =
                        json!({"connectorId": 1, "errorCode": "NoError", "status": status});
                    let reply = call(&mut cp, &format!("s{n}"), "StatusNotification", payload);
                    assert_eq!(reply[0], 3, "{reply}");
                }
                cp
            })
        })
        .collect();
    // librdkafka's buffer fills, then the sink stops taking chunks and the processors wait.
    server.wait_for("the sink to push back", |s| s.kafka_backpressure > 0);
    let stuck = server.stats();
    assert!(stuck.kafka_events_produced <= 1000 + 256, "{stuck:#?}");
    tansu.freeze(false);
    let clients: Vec<Client> = senders
        .into_iter()
        .map(|t| t.join().expect("every StatusNotification answered"))
        .collect();
    let mut reader = tansu.reader(EVENTS, EVENT_PARTITIONS);
    reader.until("every status change", |seen| {
        seen.iter()
            .filter(|r| r.value["eventType"] == "connector.status_changed")
            .count()
            >= CHARGE_POINTS * EACH
    });
    for i in 0..CHARGE_POINTS {
        let statuses = reader
            .of(&format!("CP-FULL-{i}"))
            .into_iter()
            .filter(|e| e["eventType"] == "connector.status_changed")
            .count();
        assert_eq!(statuses, EACH, "CP-FULL-{i}: each exactly once, none lost");
    }
    let stats = server.wait_for("every event confirmed", |s| {
        s.kafka_events_confirmed == s.kafka_events_produced
    });
    assert_eq!(
        stats.kafka_events_failed + stats.kafka_events_lost,
        0,
        "{stats:#?}"
    );
    drop(clients);
    server.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_gateway_stops_while_the_broker_hangs() {
    if !tansu::available() {
        return;
    }
    let tansu = broker();
    let dir = scratch("stop");
    let mut config = gateway(&tansu, "gw-stop", &dir);
    if let Some(kafka) = config.kafka.as_mut() {
        kafka.buffer_messages = 1000;
    }
    config.events.queue_capacity = 512;
    let mut server = TestServer::start(config);
    let clients: Vec<Client> = (0..8)
        .map(|i| {
            let mut cp = connect(&server, &format!("CP-STOP-{i}"));
            boot(&mut cp);
            cp
        })
        .collect();
    tansu.freeze(true);
    // Each charge point reports until its answers stop coming (the processors wait for the
    // sink) or the gateway closes it.
    let senders: Vec<_> = clients
        .into_iter()
        .map(|mut cp| {
            std::thread::spawn(move || {
                for n in 0..1000 {
                    let payload = json!({"connectorId": 1, "errorCode": "NoError",
                                         "status": if n % 2 == 0 { "Available" } else { "Preparing" }});
                    let text = json!([2, format!("s{n}"), "StatusNotification", payload]);
                    if cp.send(Message::text(text.to_string())).is_err() || cp.read().is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    server.wait_for("the processors to wait for the sink", |s| {
        s.kafka_backpressure > 0
    });
    // Stopping must not wait for the broker: the watchdog of `stop` fails the test if it does.
    server.stop();
    for sender in senders {
        let _ = sender.join();
    }
    tansu.freeze(false);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn raw_frames_publish_every_frame_both_ways() {
    if !tansu::available() {
        return;
    }
    let tansu = broker();
    let dir = scratch("frames");
    let mut config = gateway(&tansu, "gw-frames", &dir);
    if let Some(kafka) = config.kafka.as_mut() {
        kafka.raw_frames = true;
    }
    let mut server = TestServer::start(config);
    let mut cp = connect(&server, "CP-RAW");
    boot(&mut cp);
    assert_eq!(call(&mut cp, "h1", "Heartbeat", json!({}))[0], 3);
    let refused = call(&mut cp, "bad", "Heartbeat", json!({"unexpected": true}));
    assert_eq!(refused[0], 4, "{refused}");
    let pending = server
        .call("CP-RAW", ocpp::v16::Action::Reset, {
            serde_json::value::RawValue::from_string(r#"{"type":"Soft"}"#.into()).expect("json")
        })
        .expect("a valid call");
    let reset = next_json(&mut cp);
    cp.send(Message::text(
        json!([3, reset[1], {"status": "Accepted"}]).to_string(),
    ))
    .expect("send");
    assert!(pending.wait_timeout(WATCHDOG).is_some());

    let mut reader = tansu.reader(EVENTS, EVENT_PARTITIONS);
    let frames = |seen: &[Record]| -> Vec<Value> {
        seen.iter()
            .filter(|r| r.key.as_deref() == Some("CP-RAW") && r.value["eventType"] == "ocpp.frame")
            .map(|r| r.value["payload"].clone())
            .collect()
    };
    reader.until("the frames of the session", |seen| frames(seen).len() >= 8);
    let seen = frames(&reader.seen);
    let shape: Vec<(String, String, String)> = seen
        .iter()
        .map(|f| {
            let text = |k: &str| f[k].as_str().unwrap_or("").to_owned();
            (text("direction"), text("messageType"), text("action"))
        })
        .collect();
    let has = |d: &str, t: &str, a: &str| shape.contains(&(d.into(), t.into(), a.into()));
    assert!(
        has("in", "CALL", "BootNotification") && has("out", "CALLRESULT", "BootNotification"),
        "{shape:?}"
    );
    assert!(
        has("in", "CALL", "Heartbeat") && has("out", "CALLRESULT", "Heartbeat"),
        "{shape:?}"
    );
    assert!(
        has("out", "CALLERROR", "Heartbeat"),
        "the refused Heartbeat: {shape:?}"
    );
    assert!(
        has("out", "CALL", "Reset") && has("in", "CALLRESULT", "Reset"),
        "{shape:?}"
    );
    let refused_call = seen
        .iter()
        .find(|f| f["uniqueId"] == "bad" && f["messageType"] == "CALL")
        .expect("the refused CALL");
    assert!(
        refused_call["payloadPrefix"].as_str().is_some(),
        "{refused_call}"
    );
    for record in reader
        .seen
        .iter()
        .filter(|r| r.value["eventType"] == "ocpp.frame")
    {
        assert_schema(&record.value);
    }
    drop(cp);
    server.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn health_is_degraded_while_billing_answers_wait_for_the_broker() {
    if !tansu::available() {
        return;
    }
    let tansu = broker();
    let dir = scratch("held-health");
    let mut config = gateway(&tansu, "gw-held", &dir);
    if let Some(kafka) = config.kafka.as_mut() {
        kafka.ack_timeout = Duration::from_secs(60); // nothing is refused in this test
        kafka.degraded_after = Duration::from_millis(500);
    }
    let mut server = TestServer::start(config);
    let mut cp = connect(&server, "CP-HELD");
    let transaction = boot_and_start_transaction(&mut cp);
    wait_until("/health healthy", || health(&server).0 == "healthy");

    // The broker stops answering: the StopTransaction's answer is held, and /health says so
    // long before kafka.ack_timeout would refuse it.
    tansu.freeze(true);
    let stop = json!({"transactionId": transaction, "meterStop": 9000,
                      "timestamp": "2026-11-28T11:00:00Z"});
    cp.send(Message::text(
        json!([2, "t-held", "StopTransaction", stop]).to_string(),
    ))
    .expect("send");
    wait_until("/health degraded by held answers", || {
        let health = http(server.admin(), "GET", "/health", None, None).json();
        health["status"] == "degraded"
            && health["problems"]
                .to_string()
                .contains("billing answers have waited")
            && health["kafka"]["oldest_held_ms"].as_u64() >= Some(500)
    });
    assert_eq!(server.stats().kafka_refused, 0, "held, not refused yet");

    // Back: the held answer goes out as a CALLRESULT and /health recovers.
    tansu.freeze(false);
    let answer = next_json(&mut cp);
    assert_eq!(
        (&answer[0], &answer[1]),
        (&json!(3), &json!("t-held")),
        "{answer}"
    );
    wait_until("/health healthy again", || health(&server).0 == "healthy");
    drop(cp);
    server.stop();
    let _ = std::fs::remove_dir_all(dir);
}
