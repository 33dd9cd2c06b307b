//! `ocpp.state_file`: a gateway restarted with the same state accepts a reconnecting charge
//! point's StatusNotification, MeterValues and StopTransaction without a new BootNotification,
//! and still knows its open transaction and connectors: after a clean stop (in process), and
//! after SIGKILL once the state thread has committed (the binary).

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::Value;

const CP: &str = "CP-RESTART";

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ocpp-state-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

fn detail(admin: std::net::SocketAddr) -> Value {
    http(
        admin,
        "GET",
        &format!("/api/v1/chargepoints/{CP}"),
        None,
        None,
    )
    .json()
}

#[test]
fn a_clean_restart_keeps_registrations_connectors_and_open_transactions() {
    let dir = scratch("clean");
    let mut config = test_config();
    config.ocpp.state_file = Some(dir.join("state"));
    config.ocpp.transaction_id_file = Some(dir.join("transaction-id"));

    let mut first = TestServer::start(config.clone());
    let mut client = connect(&first, CP);
    let transaction = boot_and_start_transaction(&mut client);
    drop(client);
    first.stop();

    let second = TestServer::start(config);
    let view = detail(second.admin());
    assert_eq!(view["registration"], "accepted", "{view}");
    assert_eq!(view["open_transaction"], transaction, "{view}");
    assert_eq!(view["connected"], false, "{view}");
    assert_eq!(view["boot"]["chargePointVendor"], "Acme", "{view}");
    let connectors = view["connectors"].to_string();
    assert!(connectors.contains("Charging"), "{view}");

    let mut client = connect(&second, CP);
    resume_without_boot(&mut client, transaction);
    let view = detail(second.admin());
    assert_eq!(view["open_transaction"], Value::Null, "stopped: {view}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn after_sigkill_a_committed_registration_survives() {
    let dir = scratch("kill");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\npin_cores = false\n\
             [processor]\nthreads = 1\n\
             [ocpp]\nstate_file = \"{state}\"\ntransaction_id_file = \"{tx}\"\n\
             max_calls_per_second = 0\n\
             [admin]\nlisten = \"\"\n[events]\nsink = \"none\"\n",
            state = dir.join("state").display(),
            tx = dir.join("transaction-id").display(),
        ),
    )
    .expect("config written");

    let mut gateway = GatewayProcess::start_logging(&config, "info,ocpp_gateway::state=debug");
    let addr = gateway.addr;
    let mut client = try_connect(addr, &format!("ws://{addr}/ocpp/{CP}"), "ocpp1.6")
        .unwrap()
        .0;
    let transaction = boot_and_start_transaction(&mut client);
    // One processor hands changes over in order and the state thread commits them in order:
    // once a later charge point's boot is committed, everything of CP is.
    let mut marker = try_connect(addr, &format!("ws://{addr}/ocpp/CP-MARKER"), "ocpp1.6")
        .unwrap()
        .0;
    boot(&mut marker);
    gateway.wait_for_line("CP-MARKER");
    gateway.child.kill().expect("SIGKILL");
    let _ = gateway.child.wait();
    drop((client, marker));

    let gateway = GatewayProcess::start(&config);
    let addr = gateway.addr;
    let mut client = try_connect(addr, &format!("ws://{addr}/ocpp/{CP}"), "ocpp1.6")
        .unwrap()
        .0;
    resume_without_boot(&mut client, transaction);
    drop(client);
    gateway.signal("-TERM");
    let (status, _) = gateway.wait_exit();
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}
