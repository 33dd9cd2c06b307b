//! A loop that waits for room at a processor is woken by the processor, not by polling: while
//! the processor is stalled and a connection is paused for it, the loops take (next to) no
//! turns, and once the processor moves, the paused connection is read again and every CALL is
//! answered (with no poll left, only the processor's wake can resume it).

mod common;

use std::num::NonZeroUsize;
use std::time::Duration;

use common::*;
use serde_json::json;

/// CALLs the charge point sends while its processor is stalled.
const CALLS: usize = 40;
/// How long the loops are watched while they wait. A count is asserted, not a time: a loop
/// that polled every millisecond took several hundred turns in this window.
const WATCH: Duration = Duration::from_millis(500);

#[test]
fn a_loop_waiting_for_a_processor_sleeps_until_woken() {
    let mut config = test_config();
    config.processor.threads = NonZeroUsize::new(1).unwrap();
    config.processor.queue_capacity = NonZeroUsize::new(2).unwrap();
    config.ocpp.max_pipelined_calls = 1000;
    let server = TestServer::start(config);
    let mut client = RawClient::connect(&server, "CP-WAIT");
    client.send_text(
        r#"[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]"#,
    );
    assert_eq!(client.read_json()[2]["status"], "Accepted");

    let stall = server.server().stall_processor(0);
    let status = json!({"connectorId": 1, "errorCode": "NoError", "status": "Available"});
    for n in 0..CALLS {
        client.send_text(&json!([2, format!("s{n}"), "StatusNotification", status]).to_string());
    }
    server.wait_for("the connection paused for its processor", |s| {
        s.backpressure_pauses >= 1
    });
    let before = server.stats().loop_turns;
    std::thread::park_timeout(WATCH); // a window to count in, not a synchronisation
    let turns = server.stats().loop_turns - before;
    assert!(
        turns < 50,
        "{turns} loop turns while waiting for a stalled processor: polling"
    );

    drop(stall);
    let mut answered = 0;
    while answered < CALLS {
        let reply = client.read_json();
        assert_eq!(reply[0], 3, "{reply}");
        answered += 1;
    }
    assert!(server.stats().backpressure_pauses >= 1);
}
