//! 2,000 charge points connected at once, each doing BootNotification and 5 Heartbeats, with
//! every reply checked (id echoed, payload as the action returns). Then the server's thread
//! count is the same as with none connected.

mod common;

use std::sync::{Arc, Barrier};

use common::*;
use serde_json::json;

const THREADS: usize = 8;
const PER_THREAD: usize = 250;
const HEARTBEATS: usize = 5;

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn two_thousand_charge_points_boot_and_heartbeat() {
    let server = TestServer::start(test_config());
    let threads_before = thread_count();
    let all_connected = Arc::new(Barrier::new(THREADS + 1));
    let all_checked = Arc::new(Barrier::new(THREADS + 1));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let url_base = server.url("");
            let addr = server.addr;
            let (all_connected, all_checked) =
                (Arc::clone(&all_connected), Arc::clone(&all_checked));
            std::thread::spawn(move || {
                let mut clients: Vec<Client> = (0..PER_THREAD)
                    .map(|i| {
                        let url = format!("{url_base}CP-{t}-{i}");
                        try_connect(addr, &url, "ocpp1.6").expect("upgrade").0
                    })
                    .collect();
                all_connected.wait();
                // Send to every client, then read every reply: all are in flight together.
                for round in 0..=HEARTBEATS {
                    for (i, client) in clients.iter_mut().enumerate() {
                        let (action, payload) = if round == 0 {
                            (
                                "BootNotification",
                                json!({"chargePointVendor": "V", "chargePointModel": "M"}),
                            )
                        } else {
                            ("Heartbeat", json!({}))
                        };
                        let text =
                            json!([2, format!("{t}-{i}-{round}"), action, payload]).to_string();
                        client.send(tungstenite::Message::text(text)).expect("send");
                    }
                    for (i, client) in clients.iter_mut().enumerate() {
                        let reply = next_json(client);
                        assert_eq!(reply[0], 3, "{reply}");
                        assert_eq!(reply[1], format!("{t}-{i}-{round}"));
                        let time = reply[2]["currentTime"].as_str().expect("currentTime");
                        assert!(time.ends_with('Z') && time.len() >= 20, "{time}");
                        if round == 0 {
                            assert_eq!(reply[2]["status"], "Accepted");
                            assert_eq!(reply[2]["interval"], 300);
                        }
                    }
                }
                all_checked.wait();
                clients.len()
            })
        })
        .collect();
    all_connected.wait();
    let stats = server.wait_for("all connections open", |s| {
        s.connections == THREADS * PER_THREAD
    });
    assert!(
        stats.loop_connections.iter().all(|&n| n > 0),
        "both loops accept: {stats:?}"
    );
    all_checked.wait();
    // The server adds no thread per connection (the 8 client threads are ours).
    assert_eq!(thread_count(), threads_before + THREADS);
    let done: usize = workers
        .into_iter()
        .map(|w| w.join().expect("client thread"))
        .sum();
    assert_eq!(done, THREADS * PER_THREAD);
    // Heartbeats the loops answered reach their processors' counters a moment later.
    let stats = server.wait_for("every CALL counted by the processors", |s| {
        s.calls_handled as usize == THREADS * PER_THREAD * (HEARTBEATS + 1)
    });
    assert_eq!(stats.handshakes_ok as usize, THREADS * PER_THREAD);
}
