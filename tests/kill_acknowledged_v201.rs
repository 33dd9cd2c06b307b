//! An answer is a promise, for OCPP 2.0.1 too: once a station got the CALLRESULT of a
//! TransactionEvent, the event survives a `kill -9` of the gateway - in the journal and on the
//! events topic, and neither holds it twice. Stations run transactions back to back (Started,
//! Updated, Ended, many in flight at once), the gateway binary is killed at a random moment, and
//! the count kept by the stations (every CALLRESULT they received) is checked against the
//! journal and the topic. Then the gateway starts again on the same state and each station
//! sends again what a station would: the event it got no answer for (the kill came first), or
//! else its last acknowledged one (as if that answer had been lost). Each is answered and then
//! kept: in the journal and on the topic, at most twice (the state may say it was answered
//! while the journal or the broker never got it, so a resend after a restart is kept again);
//! everything sent once is there exactly once.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use serde_json::{Value, json};

/// Stations per client thread, and client threads.
const PER_THREAD: usize = 15;
const THREADS: usize = 4;
const KINDS: [&str; 3] = ["Started", "Updated", "Ended"];

/// One TransactionEvent: its transaction and seqNo.
type Sent = (String, u64);

#[derive(Default)]
struct Told {
    acks: BTreeMap<String, Vec<Sent>>,
    /// The event each station sent last and got no answer for (the gateway died first).
    unanswered: BTreeMap<String, Sent>,
    count: usize,
}

fn event(tx: &str, seq_no: u64) -> Value {
    let kind = KINDS[seq_no as usize];
    json!({"eventType": kind, "timestamp": "2026-12-06T10:00:00Z", "seqNo": seq_no,
           "triggerReason": if seq_no == 0 { "Authorized" } else { "MeterValuePeriodic" },
           "transactionInfo": {"transactionId": tx}, "evse": {"id": 1, "connectorId": 1},
           "meterValue": [{"timestamp": "2026-12-06T10:00:00Z",
                           "sampledValue": [{"value": 100 * (seq_no + 1)}]}]})
}

fn call_text(unique_id: &str, (tx, seq_no): &Sent) -> String {
    json!([2, unique_id, "TransactionEvent", event(tx, *seq_no)]).to_string()
}

/// Runs `PER_THREAD` stations, one connection each: boot, then the next event of a
/// transaction on every one of them at once, round after round, until the gateway is gone.
fn stations(addr: SocketAddr, thread: usize, shared: Arc<Tally<Told>>) {
    let mut clients = Vec::new();
    for n in 0..PER_THREAD {
        let id = format!("CS-K{thread}-{n:02}");
        let url = format!("ws://{addr}/ocpp/{id}");
        let Ok((mut client, _)) = try_connect(addr, &url, "ocpp2.0.1") else {
            return;
        };
        boot_v201(&mut client);
        clients.push((id, client));
    }
    for round in 0u64.. {
        let sent: Vec<Sent> = clients
            .iter()
            .map(|(id, _)| (format!("TX-{id}-{}", round / 3), round % 3))
            .collect();
        for ((id, client), event) in clients.iter_mut().zip(&sent) {
            // Unanswered from the moment it may reach the gateway.
            shared.lock().unanswered.insert(id.clone(), event.clone());
            let text = call_text(&format!("r{round}"), event);
            if client.send(tungstenite::Message::text(text)).is_err() {
                return;
            }
        }
        for ((id, client), event) in clients.iter_mut().zip(sent) {
            let answer = match client.read() {
                Ok(tungstenite::Message::Text(text)) => {
                    serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)
                }
                _ => return, // killed
            };
            assert_eq!(answer[0], 3, "{id}: {answer}");
            let mut told = shared.lock();
            told.unanswered.remove(id.as_str());
            told.acks.entry(id.clone()).or_default().push(event);
            told.count += 1;
            shared.ring();
        }
    }
}

/// How many times the journal holds each (transaction, seqNo) as a CALL (lines the kill cut
/// short are skipped).
fn journaled(path: &Path) -> HashMap<Sent, usize> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut seen = HashMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["event"] == "call" && v["action"] == "TransactionEvent" {
            let payload = &v["payload"];
            let tx = payload["transactionInfo"]["transactionId"]
                .as_str()
                .unwrap_or("?");
            let seq = payload["seqNo"].as_u64().unwrap_or(u64::MAX);
            *seen.entry((tx.to_owned(), seq)).or_insert(0) += 1;
        }
    }
    seen
}

/// How many times the topic holds each (transaction, seqNo).
fn published(records: &[tansu::Record]) -> HashMap<Sent, usize> {
    let mut seen = HashMap::new();
    for r in records {
        let p = &r.value["payload"];
        if let (Some(tx), Some(seq)) = (p["transactionId"].as_str(), p["seqNo"].as_u64()) {
            *seen.entry((tx.to_owned(), seq)).or_insert(0) += 1;
        }
    }
    seen
}

fn run_and_kill(config: &Path) -> Told {
    kill_at_random(config, THREADS, (300, 900), |t: &Told| t.count, stations)
}

/// After the restart every station sends again the event it got no answer for, or else its
/// last acknowledged one: each is answered. Returns what was sent again.
fn resend_after_restart(config: &Path, told: &Told) -> Vec<Sent> {
    let mut gateway = Running(Some(GatewayProcess::start(config)));
    let addr = gateway.0.as_ref().map(|g| g.addr).expect("running");
    let mut resent = Vec::new();
    for (id, acks) in &told.acks {
        let again = match told.unanswered.get(id) {
            Some(unanswered) => unanswered,
            None => match acks.last() {
                Some(last) => last,
                None => continue,
            },
        };
        let url = format!("ws://{addr}/ocpp/{id}");
        let (mut client, _) = try_connect(addr, &url, "ocpp2.0.1").expect("reconnect");
        client
            .send(tungstenite::Message::text(call_text("again", again)))
            .expect("send");
        let answer = next_json(&mut client);
        assert_eq!(
            (&answer[0], &answer[1]),
            (&json!(3), &json!("again")),
            "{id}: {answer}"
        );
        resent.push(again.clone());
    }
    if let Some(gateway) = gateway.0.take() {
        gateway.signal("-TERM");
        let _ = gateway.wait_exit();
    }
    resent
}

/// Every acknowledged event is held by `held` (what `what` holds) exactly once, except those
/// sent again after the restart (`resent`, all acknowledged then): once or twice.
fn kept(told: &Told, resent: &[Sent], held: &HashMap<Sent, usize>, what: &str) {
    let acked = told.acks.values().flatten().chain(resent);
    for sent in acked {
        let most = if resent.contains(sent) { 2 } else { 1 };
        match held.get(sent) {
            Some(n) if *n <= most => {}
            Some(n) => panic!("{sent:?} is in the {what} {n} times"),
            None => panic!("acknowledged {sent:?} is not in the {what}"),
        }
    }
    let twice = held.iter().filter(|(_, n)| **n > 1);
    for (sent, n) in twice {
        assert!(
            *n <= 2 && resent.contains(sent),
            "{sent:?} is in the {what} {n} times, sent once"
        );
    }
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ocpp-kill-201-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

#[test]
fn acknowledged_transaction_events_survive_a_kill_and_resends_are_kept() {
    if !tansu::available() {
        return;
    }
    let broker = tansu::Tansu::start();
    broker.create_topic("ocpp-events-up", 2);
    let dir = scratch();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\npin_cores = false\n\
             [processor]\nthreads = 2\n\
             [ocpp]\nstate_file = \"{state}\"\ntransaction_id_file = \"{tx}\"\n\
             max_calls_per_second = 0\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n\
             [events]\npath = \"{journal}\"\nsink = [\"journal\", \"kafka\"]\n\
             [kafka]\nbrokers = \"{brokers}\"\nconsume_commands = false\n",
            state = dir.join("state").display(),
            tx = dir.join("transaction-id").display(),
            journal = dir.join("events.jsonl").display(),
            brokers = broker.brokers(),
        ),
    )
    .expect("config written");

    let told = run_and_kill(&config);
    kept(&told, &[], &journaled(&dir.join("events.jsonl")), "journal");
    let resent = resend_after_restart(&config, &told);
    kept(
        &told,
        &resent,
        &journaled(&dir.join("events.jsonl")),
        "journal after the resends",
    );

    let acked: Vec<Sent> = told
        .acks
        .values()
        .flatten()
        .chain(&resent)
        .cloned()
        .collect();
    let mut reader = broker.reader("ocpp-events-up", 2);
    let records = reader.until("every acknowledged event on the topic", |records| {
        let on_topic = published(records);
        acked.iter().all(|sent| on_topic.contains_key(sent))
    });
    // The events published before the kill but not acknowledged may be there too; what was
    // acknowledged is there, once unless it was sent again.
    kept(&told, &resent, &published(records), "topic");
    let unanswered = told.unanswered.len();
    eprintln!(
        "{} acknowledged TransactionEvents of {} stations, each in the journal and on the topic; \
         {} sent again after the restart ({unanswered} of them unanswered before), all kept",
        told.count,
        told.acks.len(),
        resent.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
