//! A 2.1 station that floods its periodic event stream with large SENDs is held to its journal
//! allowance like any charge point's CALLs: every valid SEND is counted, the lines past the
//! allowance are left out (counted, per charge point in the API), and the journal stays near the
//! allowance however much was sent.

mod common;

use common::*;
use serde_json::json;
use tungstenite::Message;

#[test]
fn sends_past_the_journal_allowance_are_counted_not_journaled() {
    // A small allowance, so that the flood spends it within the test; no rate limit, so the
    // flood is as fast as the station can write.
    let (mut config, dir, path) = flood_journal("send-flood", (1024, 32 * 1024));
    config.ocpp.max_calls_per_second = 0;
    let mut server = TestServer::start(config);

    let mut station = connect_v21(&server, "CS-FLOOD");
    boot_v201(&mut station);
    let open = json!({"constantStreamData": {"id": 1, "variableMonitoringId": 7,
                      "params": {"interval": 10}}});
    let reply = call_v201(&mut station, "o1", "OpenPeriodicEventStream", open);
    assert_eq!(reply[2]["status"], "Accepted", "{reply}");

    let element = json!({"t": 0.5, "v": "x".repeat(2500)});
    let data: Vec<_> = (0..8).map(|_| element.clone()).collect();
    let payload = json!({"id": 1, "pending": 0, "basetime": "2026-12-06T10:00:00Z",
                         "data": data});
    let sends = 60;
    for i in 0..sends {
        let send = json!([6, format!("s{i}"), "NotifyPeriodicEventStream", payload]);
        station.send(Message::text(send.to_string())).unwrap();
    }
    // The Heartbeat's answer says the SENDs were all read (SENDs wait for no answer, so the
    // loop may answer it itself); their processor counts them a moment later.
    let reply = call_v201(&mut station, "h1", "Heartbeat", json!({}));
    assert_eq!(reply[0], 3, "{reply}");
    server.wait_for("every SEND counted", |s| s.sends_received == sends);
    let detail = http(
        server.admin(),
        "GET",
        "/api/v1/chargepoints/CS-FLOOD",
        None,
        None,
    )
    .json();
    let suppressed = detail["journal_lines_suppressed"].as_u64().unwrap();
    assert!(suppressed > 0, "{detail}");
    drop(station);
    server.stop();

    let journal = std::fs::read_to_string(&path).unwrap();
    let kept = journal
        .lines()
        .filter(|l| l.contains("NotifyPeriodicEventStream"))
        .count() as u64;
    assert_eq!(
        kept + suppressed,
        sends,
        "every SEND is journaled or counted as left out"
    );
    // 60 x 20 KB sent; the journal holds about the allowance.
    assert!(
        journal.len() < 200_000,
        "journal grew to {} bytes",
        journal.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
