//! An answer is a promise, for a certificate request too: with `security.certificate_signing =
//! "backend"`, a charge point told Accepted waits for a certificate only the published request
//! can bring. Charge points (Basic auth) send SignCertificate back to back, the gateway binary
//! is killed at a random moment, and every request the clients saw Accepted (their own count)
//! must be in the journal and on the events topic as `certificate.sign_requested`.
//!
//! Needs `tansu` on the PATH (`.ci/run` installs it); without it the test says so and passes,
//! except when `OCPP_REQUIRE_SERVERS` is set.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use common::pki::{basic, connect_as, credentials_file};
use common::*;
use rcgen::{CertificateParams, DnType, KeyPair};
use serde_json::{Value, json};
use tungstenite::Message;

const KEY: &[u8] = b"sixteen-byte-key";
const PER_THREAD: usize = 5;
const THREADS: usize = 4;

fn identity(thread: usize, n: usize) -> String {
    format!("CP-C{thread}-{n}")
}

fn csr(cn: &str) -> String {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().unwrap();
    params.serialize_request(&key).unwrap().pem().unwrap()
}

/// The requests the clients saw Accepted, as `identity/uniqueId`.
#[derive(Default)]
struct Told {
    accepted: BTreeSet<String>,
}

/// `PER_THREAD` charge points, each with its CSR, sending SignCertificate round after round
/// until the gateway is gone.
fn charge_points(addr: SocketAddr, thread: usize, shared: Arc<Tally<Told>>) {
    let mut clients = Vec::new();
    for n in 0..PER_THREAD {
        let id = identity(thread, n);
        let Ok(mut client) = connect_as(addr, &id, Some(&basic(&id, KEY))) else {
            return;
        };
        boot(&mut client);
        let request = csr(&id);
        clients.push((id, client, request));
    }
    for round in 0.. {
        for (_, client, request) in &mut clients {
            let call = json!([2, format!("s{round}"), "SignCertificate", {"csr": request}]);
            if client.send(Message::text(call.to_string())).is_err() {
                return;
            }
        }
        for (id, client, _) in &mut clients {
            let answer = match client.read() {
                Ok(Message::Text(text)) => serde_json::from_str::<Value>(&text).unwrap_or_default(),
                _ => return, // killed
            };
            assert_eq!(answer[0], 3, "{id}: {answer}");
            assert_eq!(answer[2]["status"], "Accepted", "{id}: {answer}");
            shared.lock().accepted.insert(format!("{id}/s{round}"));
            shared.ring();
        }
    }
}

fn config_file(dir: &Path, brokers: &str) -> std::path::PathBuf {
    let credentials = dir.join("credentials");
    let ids: Vec<String> = (0..THREADS)
        .flat_map(|t| (0..PER_THREAD).map(move |n| identity(t, n)))
        .collect();
    let entries: Vec<(&str, &[u8])> = ids.iter().map(|id| (id.as_str(), KEY)).collect();
    credentials_file(&credentials, &entries);
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\npin_cores = false\n\
             [processor]\nthreads = 2\n\
             [ocpp]\nstate_file = \"{state}\"\ntransaction_id_file = \"\"\n\
             max_calls_per_second = 0\n\
             [security]\nprofile = 1\ncredentials = \"{credentials}\"\n\
             certificate_signing = \"backend\"\n\
             [events]\npath = \"{journal}\"\nsink = [\"journal\", \"kafka\"]\n\
             [kafka]\nbrokers = \"{brokers}\"\nconsume_commands = false\n",
            state = dir.join("state").display(),
            credentials = credentials.display(),
            journal = dir.join("events.jsonl").display(),
        ),
    )
    .expect("config written");
    path
}

/// The journal's SignCertificate calls, as `identity/uniqueId` (lines the kill cut short are
/// skipped).
fn journaled(path: &Path) -> HashSet<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v["event"] == "call" && v["action"] == "SignCertificate")
        .filter_map(|v| Some(format!("{}/{}", v["cp"].as_str()?, v["id"].as_str()?)))
        .collect()
}

#[test]
fn accepted_certificate_requests_survive_a_kill_of_the_gateway() {
    if !tansu::available() {
        return;
    }
    let broker = tansu::Tansu::start();
    broker.create_topic("ocpp-events-up", 2);
    let dir = tansu::scratch("kill-csr");
    let config = config_file(&dir, &broker.brokers());

    let told = kill_at_random(
        &config,
        THREADS,
        (100, 400),
        |t: &Told| t.accepted.len(),
        charge_points,
    );
    let accepted = told.accepted;

    let in_journal = journaled(&dir.join("events.jsonl"));
    let missing: Vec<_> = accepted
        .iter()
        .filter(|a| !in_journal.contains(*a))
        .collect();
    assert!(missing.is_empty(), "accepted, not journaled: {missing:?}");

    let on_topic = |records: &[tansu::Record]| -> HashSet<String> {
        records
            .iter()
            .filter(|r| r.value["eventType"] == "certificate.sign_requested")
            .filter_map(|r| {
                let cp = r.value["chargePointId"].as_str()?;
                Some(format!("{cp}/{}", r.value["payload"]["uniqueId"].as_str()?))
            })
            .collect()
    };
    let mut reader = broker.reader("ocpp-events-up", 2);
    let records = reader.until("every accepted request on the topic", |records| {
        let found = on_topic(records);
        accepted.iter().all(|a| found.contains(a))
    });
    let found = on_topic(records);
    let missing: Vec<_> = accepted.iter().filter(|a| !found.contains(*a)).collect();
    assert!(
        missing.is_empty(),
        "accepted, not on the topic: {missing:?}"
    );
    eprintln!(
        "{} accepted requests, all journaled and on the topic",
        accepted.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
