//! An answer is a promise: once a charge point got the CALLRESULT of a StartTransaction or
//! StopTransaction, what it sent survives a `kill -9` of the gateway. Charge points run
//! transactions back to back (many in flight), the gateway binary is killed at a random moment,
//! and the count kept by the clients (every CALLRESULT they received) is checked against the
//! journal, the state file (read through the API of the restarted gateway) and, with a broker,
//! the events topic; with `cluster.events`, the Redis events stream.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use serde_json::{Value, json};

/// Charge points per client thread, and client threads.
const PER_THREAD: usize = 15;
const THREADS: usize = 4;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ocpp-kill-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// What a charge point was told, in order: `(action, transaction id)`.
#[derive(Default)]
struct Told {
    acks: BTreeMap<String, Vec<(&'static str, i64)>>,
    /// A message sent whose answer never came (the gateway died first).
    unanswered: HashMap<String, (&'static str, i64)>,
    count: usize,
}

/// Runs `PER_THREAD` charge points on one connection each: boot, then StartTransaction and
/// StopTransaction on every one of them at once, round after round, until the gateway is gone.
fn charge_points(addr: SocketAddr, thread: usize, shared: Arc<Tally<Told>>) {
    let mut clients = Vec::new();
    for n in 0..PER_THREAD {
        let id = format!("CP-K{thread}-{n:02}");
        let url = format!("ws://{addr}/ocpp/{id}");
        let Ok((mut client, _)) = try_connect(addr, &url, "ocpp1.6") else {
            return;
        };
        boot(&mut client);
        clients.push((id, client));
    }
    let mut open: Vec<Option<i64>> = vec![None; clients.len()];
    for round in 0.. {
        for (i, (id, client)) in clients.iter_mut().enumerate() {
            let sent = match open[i] {
                None => ("StartTransaction", 0),
                Some(tx) => ("StopTransaction", tx),
            };
            // Unanswered from the moment it may reach the gateway.
            shared.lock().unanswered.insert(id.clone(), sent);
            let message = match open[i] {
                None => json!([2, format!("r{round}"), "StartTransaction",
                    {"connectorId": 1, "idTag": "TAG1", "meterStart": round,
                     "timestamp": "2026-12-06T10:00:00Z"}]),
                Some(tx) => json!([2, format!("r{round}"), "StopTransaction",
                    {"transactionId": tx, "meterStop": round + 10,
                     "timestamp": "2026-12-06T10:01:00Z"}]),
            };
            if client
                .send(tungstenite::Message::text(message.to_string()))
                .is_err()
            {
                return;
            }
        }
        for (i, (id, client)) in clients.iter_mut().enumerate() {
            let answer = match client.read() {
                Ok(tungstenite::Message::Text(text)) => {
                    serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)
                }
                _ => return, // killed
            };
            assert_eq!(answer[0], 3, "{id}: {answer}");
            let acked = match open[i] {
                None => {
                    let tx = answer[2]["transactionId"].as_i64().expect("transactionId");
                    open[i] = Some(tx);
                    ("StartTransaction", tx)
                }
                Some(tx) => {
                    open[i] = None;
                    ("StopTransaction", tx)
                }
            };
            let mut told = shared.lock();
            told.unanswered.remove(id);
            told.acks.entry(id.clone()).or_default().push(acked);
            told.count += 1;
            shared.ring();
        }
    }
}

/// The transaction ids of the journal's StartTransaction answers, and of its StopTransaction
/// calls (lines the kill cut short are skipped).
fn journaled(path: &Path) -> (HashSet<i64>, HashSet<i64>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    started_and_stopped(text.lines())
}

/// The transaction ids of StartTransaction answers and StopTransaction calls among `lines`
/// (journal lines; lines the kill cut short are skipped).
fn started_and_stopped<'a>(lines: impl Iterator<Item = &'a str>) -> (HashSet<i64>, HashSet<i64>) {
    let (mut started, mut stopped) = (HashSet::new(), HashSet::new());
    for line in lines {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        match (v["event"].as_str(), v["action"].as_str()) {
            (Some("result"), Some("StartTransaction")) => {
                started.extend(v["payload"]["transactionId"].as_i64());
            }
            (Some("call"), Some("StopTransaction")) => {
                stopped.extend(v["payload"]["transactionId"].as_i64());
            }
            _ => {}
        }
    }
    (started, stopped)
}

/// Asserts that every start and stop the charge points were told of is among `started` and
/// `stopped` (what `place` kept); returns how many starts and stops that was.
fn all_acknowledged_in(
    told: &Told,
    (started, stopped): (&HashSet<i64>, &HashSet<i64>),
    place: &str,
) -> (usize, usize) {
    let (mut starts, mut stops) = (0, 0);
    for (cp, acks) in &told.acks {
        for (action, tx) in acks {
            let kept = if *action == "StartTransaction" {
                starts += 1;
                started.contains(tx)
            } else {
                stops += 1;
                stopped.contains(tx)
            };
            assert!(kept, "{cp}: acknowledged {action} {tx} not in {place}");
        }
    }
    (starts, stops)
}

/// Runs the charge points against the gateway on `config`, kills it with SIGKILL once they
/// have a random number of answers, and returns what they were told.
fn run_and_kill(config: &Path) -> Told {
    kill_at_random(
        config,
        THREADS,
        (300, 900),
        |t: &Told| t.count,
        charge_points,
    )
}

fn config_file(dir: &Path, admin: u16, extra: &str) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\npin_cores = false\n\
             [processor]\nthreads = 2\n\
             [ocpp]\nstate_file = \"{state}\"\ntransaction_id_file = \"{tx}\"\n\
             max_calls_per_second = 0\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [events]\npath = \"{journal}\"\n{extra}",
            state = dir.join("state").display(),
            tx = dir.join("transaction-id").display(),
            journal = dir.join("events.jsonl").display(),
        ),
    )
    .expect("config written");
    path
}

/// Every acknowledged Start and Stop is in the journal; after a restart, the API shows each
/// charge point's open transaction as its answers said (an unanswered Stop may or may not
/// have closed it; an unanswered Start may or may not have opened one).
fn check_journal_and_state(dir: &Path, config: &Path, admin: u16, told: &Told) {
    let (started, stopped) = journaled(&dir.join("events.jsonl"));
    let (starts, stops) = all_acknowledged_in(told, (&started, &stopped), "the journal");
    eprintln!(
        "{} answers ({starts} starts, {stops} stops) of {} charge points, all journaled",
        told.count,
        told.acks.len()
    );

    let mut gateway = Running(Some(GatewayProcess::start(config)));
    let admin: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    for (cp, acks) in &told.acks {
        let view = http(
            admin,
            "GET",
            &format!("/api/v1/chargepoints/{cp}"),
            None,
            None,
        )
        .json();
        let open = view["open_transaction"].as_i64();
        let last = acks.last().copied();
        let pending = told.unanswered.get(cp).copied();
        let allowed: Vec<Option<i64>> = match (last, pending) {
            (Some(("StartTransaction", tx)), None) => vec![Some(tx)],
            (Some(("StartTransaction", tx)), Some(_)) => vec![Some(tx), None],
            (_, None) => vec![None],
            // A Start sent and not answered: whatever id it got, or none.
            (_, Some(_)) => vec![None, open],
        };
        assert!(
            allowed.contains(&open),
            "{cp}: open transaction {open:?} after the restart, the charge point was told {last:?} (unanswered: {pending:?})"
        );
    }
    if let Some(gateway) = gateway.0.take() {
        gateway.signal("-TERM");
        let _ = gateway.wait_exit();
    }
}

#[test]
fn acknowledged_transactions_survive_a_kill_of_the_gateway() {
    let dir = scratch("journal");
    let admin = free_port();
    let config = config_file(&dir, admin, "");
    let told = run_and_kill(&config);
    check_journal_and_state(&dir, &config, admin, &told);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn acknowledged_transactions_survive_a_kill_of_the_gateway_with_kafka() {
    if !tansu::available() {
        return;
    }
    let broker = tansu::Tansu::start();
    broker.create_topic("ocpp-events-up", 2);
    let dir = scratch("kafka");
    let admin = free_port();
    let config = config_file(
        &dir,
        admin,
        &format!(
            "sink = [\"journal\", \"kafka\"]\n[kafka]\nbrokers = \"{}\"\nconsume_commands = false\n",
            broker.brokers()
        ),
    );
    let told = run_and_kill(&config);
    check_journal_and_state(&dir, &config, admin, &told);
    // Every acknowledged start is on the topic (the broker was not killed).
    let starts: HashSet<i64> = told
        .acks
        .values()
        .flatten()
        .filter(|(action, _)| *action == "StartTransaction")
        .map(|(_, tx)| *tx)
        .collect();
    let mut reader = broker.reader("ocpp-events-up", 2);
    let on_topic = |records: &[tansu::Record]| -> HashSet<i64> {
        records
            .iter()
            .filter(|r| r.value["eventType"] == "transaction.started")
            .filter_map(|r| r.value["payload"]["transactionId"].as_i64())
            .collect()
    };
    let records = reader.until("every acknowledged start on the topic", |records| {
        starts.is_subset(&on_topic(records))
    });
    let found = on_topic(records);
    let missing: Vec<_> = starts.difference(&found).collect();
    assert!(missing.is_empty(), "not on the topic: {missing:?}");
    eprintln!("{} acknowledged starts, all on the topic", starts.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn acknowledged_transactions_survive_a_kill_of_the_gateway_with_the_redis_stream() {
    if !server_available("redis-server", "redis-server") {
        return;
    }
    let redis = common::redis_server::Redis::start(free_port());
    let dir = scratch("stream");
    let admin = free_port();
    let config = config_file(
        &dir,
        admin,
        &format!(
            "[cluster]\nredis_url = \"{}\"\nprefix = \"k1:\"\nid_slot = 0\nevents = true\n",
            redis.url()
        ),
    );
    let told = run_and_kill(&config);
    // Every acknowledged start and stop is on the stream (Redis was not killed), at once: an
    // answer went out only once Redis had its line.
    let lines = redis.stream_lines("k1:events");
    let (started, stopped) = started_and_stopped(lines.iter().map(String::as_str));
    let (starts, stops) = all_acknowledged_in(&told, (&started, &stopped), "the stream");
    eprintln!(
        "{} acknowledged starts and stops, all on the stream ({} lines)",
        starts + stops,
        lines.len()
    );
    check_journal_and_state(&dir, &config, admin, &told);
    let _ = std::fs::remove_dir_all(&dir);
}
