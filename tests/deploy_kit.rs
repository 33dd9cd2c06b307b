//! The deployment kit stays true to the gateway: every metric and label the Grafana dashboard
//! (`deploy/grafana-dashboard.json`) queries is one the gateway exports, and the systemd unit
//! (`deploy/ocpp-gateway.service`) is valid and gives the shipped configuration's drain time.
//! (The HAProxy configurations run for real in `tests/haproxy.rs` and `tests/tls_offload.rs`.)

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use serde_json::Value;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");

/// metric name -> label names seen, from a Prometheus text exposition (histogram series fold
/// into their family).
fn exported(metrics: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut families: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, labels) = match line.split_once('{') {
            Some((name, rest)) => (name, rest.split_once('}').map_or("", |(l, _)| l)),
            None => (line.split_whitespace().next().unwrap_or(""), ""),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        let entry = families.entry(family.to_owned()).or_default();
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            if let Some((key, _)) = pair.split_once('=') {
                entry.insert(key.to_owned());
            }
        }
        // A histogram is also queried by its bucket series.
        if family != name {
            families.entry(name.to_owned()).or_default();
        }
    }
    families
}

#[test]
fn the_dashboard_queries_only_what_the_gateway_exports() {
    // With the journal on, so that its metrics are exported too.
    let dir = std::env::temp_dir().join(format!("ocpp-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = test_config();
    config.events.sinks = ocpp_gateway::config::Sinks::JOURNAL;
    config.events.path = dir.join("events.jsonl");
    let server = TestServer::start(config);
    let mut client = connect(&server, "CP-DASH");
    boot(&mut client);
    let metrics = http(server.admin(), "GET", "/metrics", None, None).body;
    let families = exported(&metrics);

    let text = std::fs::read_to_string(format!("{DEPLOY}/grafana-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut checked = 0;
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for (at, _) in expr.match_indices("ocpp_gateway_") {
                let name: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let labels = families.get(&name).unwrap_or_else(|| {
                    panic!(
                        "{:?} queries {name}, which /metrics does not export",
                        panel["title"]
                    )
                });
                // `by (a, b)` and `{a="..."}` name labels the metric must have (Prometheus
                // adds instance and job; histograms have le).
                let mut wanted = Vec::new();
                if let Some((_, rest)) = expr.split_once("by (") {
                    wanted.extend(rest.split(')').next().unwrap_or("").split(','));
                }
                if let Some((_, rest)) = expr[at..].split_once('{')
                    && !rest.starts_with('{')
                {
                    let selector = rest.split('}').next().unwrap_or("");
                    wanted.extend(selector.split(',').filter_map(|p| p.split('=').next()));
                }
                for label in wanted.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
                    if ["instance", "job", "le"].contains(&label) {
                        continue;
                    }
                    assert!(
                        labels.contains(label),
                        "{:?}: {name} has no label {label} (it has {labels:?})",
                        panel["title"]
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "{checked} metric references checked");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_systemd_unit_is_valid_and_waits_for_the_drain() {
    let unit = std::fs::read_to_string(format!("{DEPLOY}/ocpp-gateway.service")).unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("the unit sets {key}"))
            .to_owned()
    };
    assert_eq!(value("Restart"), "on-failure");
    assert_eq!(value("KillSignal"), "SIGTERM");
    let nofile: u64 = value("LimitNOFILE").parse().unwrap();
    let config = ocpp_gateway::config::Config::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config.toml"
    )))
    .expect("the shipped config loads");
    assert!(nofile as usize > config.server.max_connections);
    let stop: u64 = value("TimeoutStopSec")
        .trim_end_matches('s')
        .parse()
        .unwrap();
    let drain = config.server.max_connections as u64 / u64::from(config.server.drain_rate.get());
    assert!(
        stop >= drain + 10,
        "TimeoutStopSec={stop}s, draining takes {drain}s"
    );

    // systemd's own check, with ExecStart pointing at the binary just built.
    let Ok(probe) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!("\n*** systemd-analyze not installed: the unit's syntax was not checked ***\n");
        return;
    };
    assert!(probe.status.success());
    let dir = std::env::temp_dir().join(format!("ocpp-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("ocpp-gateway.service");
    let exec = concat!(env!("CARGO_BIN_EXE_ocpp-gateway"), " ");
    std::fs::write(&copy, unit.replace("/usr/local/bin/ocpp-gateway ", exec)).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze runs");
    let report = String::from_utf8_lossy(&out.stderr).into_owned();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success() && report.trim().is_empty(), "{report}");
}
