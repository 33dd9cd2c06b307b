//! OCPP 2.1's two new frames, with a raw WebSocket client: a SEND (NotifyPeriodicEventStream)
//! of a stream the station opened is checked against its schema and journaled, and never
//! answered - valid or not, opened or not (the next frame the station gets is its Heartbeat's
//! answer); at most 8 streams are open per connection; a CALLRESULT to a Reset that breaks
//! Reset's response schema is answered with CALLRESULTERROR and the operator's call ends
//! `invalid_result`; a CALLRESULTERROR the station sends (it answers our CALLRESULT, never a
//! call) is counted and ends no call of ours, even one with the same id. The same SEND on a 2.0.1 connection is an
//! unknown message type.

mod common;

use std::io::Write;

use common::*;
use ocpp_gateway::config::Sinks;
use serde_json::{Value, json};

const STREAM: &str =
    r#"{"id":1,"pending":0,"basetime":"2026-12-06T10:00:00Z","data":[{"t":0.5,"v":"230.1"}]}"#;

fn connect21(server: &TestServer, id: &str) -> RawClient {
    let mut stream = tcp(server.addr);
    let request = upgrade_request(
        &format!("/ocpp/{id}"),
        "Sec-WebSocket-Protocol: ocpp2.1\r\n",
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut client = RawClient::after_upgrade(stream);
    client.send_text(
        r#"[2,"b1","BootNotification",{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}]"#,
    );
    let answer = client.read_json();
    assert_eq!(answer[2]["status"], "Accepted", "{answer}");
    client
}

/// Sends a Heartbeat and expects its answer next: nothing was sent in between.
fn nothing_before_the_heartbeat(client: &mut RawClient, id: &str) {
    client.send_text(&format!(r#"[2,"{id}","Heartbeat",{{}}]"#));
    let next = client.read_json();
    assert_eq!((&next[0], &next[1]), (&json!(3), &json!(id)), "{next}");
}

#[test]
fn a_send_is_never_answered_and_bad_results_are_told() {
    let dir = std::env::temp_dir().join(format!("ocpp-v21-frames-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = test_config();
    config.events.sinks = Sinks::JOURNAL;
    config.events.path = dir.join("events.jsonl");
    let server = TestServer::start(config);
    let mut station = connect21(&server, "CS-21");

    // A SEND of a stream never opened is dropped; once opened, it is kept.
    station.send_text(&format!(r#"[6,"s0","NotifyPeriodicEventStream",{STREAM}]"#));
    let open = |id: u32| {
        format!(
            r#"[2,"o{id}","OpenPeriodicEventStream",{{"constantStreamData":{{"id":{id},"variableMonitoringId":7,"params":{{"interval":10}}}}}}]"#
        )
    };
    station.send_text(&open(1));
    assert_eq!(station.read_json()[2]["status"], "Accepted");
    station.send_text(&format!(r#"[6,"s1","NotifyPeriodicEventStream",{STREAM}]"#));
    nothing_before_the_heartbeat(&mut station, "h1");
    server.wait_for("the SEND kept", |s| {
        s.sends_received == 1 && s.unanswerable_frames == 1
    });
    // Broken, or not a SEND: still never answered, counted.
    station.send_text(r#"[6,"s2","NotifyPeriodicEventStream",{"id":"one"}]"#);
    station.send_text(r#"[6,"s3","Heartbeat",{}]"#);
    nothing_before_the_heartbeat(&mut station, "h2");
    server.wait_for("two more dropped", |s| {
        s.unanswerable_frames == 3 && s.sends_received == 1
    });
    // At most 8 streams: the 9th is refused; closing one makes room; a closed one's SEND drops.
    for id in 2..=8 {
        station.send_text(&open(id));
        assert_eq!(station.read_json()[2]["status"], "Accepted", "stream {id}");
    }
    station.send_text(&open(9));
    let refused = station.read_json();
    assert_eq!(refused[2]["status"], "Rejected", "{refused}");
    assert_eq!(refused[2]["statusInfo"]["reasonCode"], "TooManyStreams");
    station.send_text(r#"[2,"c1","ClosePeriodicEventStream",{"id":1}]"#);
    assert_eq!(station.read_json()[2], json!({}));
    station.send_text(&open(9));
    assert_eq!(station.read_json()[2]["status"], "Accepted");
    station.send_text(&format!(r#"[6,"s4","NotifyPeriodicEventStream",{STREAM}]"#));
    nothing_before_the_heartbeat(&mut station, "h4");
    server.wait_for("the closed stream's SEND dropped", |s| {
        s.unanswerable_frames == 4
    });

    // A CALLRESULT that breaks Reset's response schema: CALLRESULTERROR, and the caller is told.
    let reply = post_async(
        server.admin(),
        "CS-21",
        json!({"action": "Reset", "payload": {"type": "Immediate"}}),
    );
    let (id, action, _) = next_call_raw(&mut station);
    assert_eq!(action, "Reset");
    station.send_text(&format!(r#"[3,"{id}",{{"status":"Bogus"}}]"#));
    let told = station.read_json();
    assert_eq!((&told[0], &told[1]), (&json!(5), &json!(id)), "{told}");
    assert_eq!(told[2], "PropertyConstraintViolation");
    assert!(
        told[3].as_str().is_some_and(|d| d.contains("status")),
        "{told}"
    );
    let reply = reply.recv_timeout(WATCHDOG).expect("HTTP reply");
    assert_eq!(reply.json()["outcome"], "invalid_result", "{}", reply.body);

    // A CALLRESULTERROR answers a CALLRESULT of ours, never a call: one that names the id of
    // our call in flight does not end that call (the station's real answer does); it is
    // counted. So is one about our answer to the station's own Heartbeat.
    let reply = post_async(
        server.admin(),
        "CS-21",
        json!({"action": "Reset", "payload": {"type": "OnIdle"}}),
    );
    let (id, _, _) = next_call_raw(&mut station);
    station.send_text(&format!(
        r#"[5,"{id}","FormatViolation","cannot read your answer",{{}}]"#
    ));
    station.send_text(&format!(r#"[3,"{id}",{{"status":"Accepted"}}]"#));
    let reply = reply.recv_timeout(WATCHDOG).expect("HTTP reply");
    let outcome = reply.json();
    assert_eq!(outcome["outcome"], "result", "{outcome}");
    assert_eq!(outcome["payload"]["status"], "Accepted", "{outcome}");
    station.send_text(r#"[5,"h2","InternalError","cannot read your answer",{}]"#);
    server.wait_for("two CALLRESULTERRORs counted", |s| {
        s.call_result_errors_received == 2
    });
    nothing_before_the_heartbeat(&mut station, "h3");

    // On 2.0.1 the same SEND is a message type it does not have.
    let mut stream = tcp(server.addr);
    let request = upgrade_request("/ocpp/CS-201", "Sec-WebSocket-Protocol: ocpp2.0.1\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut old = RawClient::after_upgrade(stream);
    old.send_text(&format!(r#"[6,"s9","NotifyPeriodicEventStream",{STREAM}]"#));
    let answer = old.read_json();
    assert_eq!(
        (&answer[0], &answer[2]),
        (&json!(4), &json!("MessageTypeNotSupported")),
        "{answer}"
    );

    drop(server);
    let journal = std::fs::read_to_string(dir.join("events.jsonl")).expect("the journal");
    let lines: Vec<Value> = journal
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let sends: Vec<&Value> = lines
        .iter()
        .filter(|l| l["action"] == "NotifyPeriodicEventStream" && l["event"] == "call")
        .collect();
    assert_eq!(sends.len(), 1, "the valid SEND, once: {sends:?}");
    assert_eq!(sends[0]["id"], "s1");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The next CALL the raw client receives: (unique id, action, payload).
fn next_call_raw(client: &mut RawClient) -> (String, String, Value) {
    let frame = client.read_json();
    assert_eq!(frame[0], 2, "expected a CALL, got {frame}");
    (
        frame[1].as_str().unwrap().to_owned(),
        frame[2].as_str().unwrap().to_owned(),
        frame[3].clone(),
    )
}
