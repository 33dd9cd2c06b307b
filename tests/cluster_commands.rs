//! The cluster's command stream on a real `redis-server` started by the test: a backend's call
//! reaches the charge point through whichever node holds it, and its outcome comes back.
//!
//! Needs `redis-server` (Debian's package). Without it the test says so loudly and passes,
//! except when `OCPP_REQUIRE_SERVERS` is set (as `.ci/run` does), where it fails.

mod common;

use common::redis_server::{Redis, node};
use common::*;

#[test]
fn a_backend_runs_a_call_through_the_command_stream() {
    if !server_available("redis-server", "redis-server") {
        return;
    }
    let redis = Redis::start(free_port());
    let a = TestServer::start(node(&redis, "node-a", "t8:"));
    redis.wait_for_nodes("t8:", &["node-a"]);
    let mut client = connect(&a, "CP-S");
    boot(&mut client);
    let mut con = redis.connection().expect("redis");
    let command = |con: &mut redis::Connection, id: &str, cp: &str, action: &str, payload: &str| {
        redis::cmd("XADD")
            .arg("t8:commands:node-a")
            .arg("*")
            .arg("command_id")
            .arg(id)
            .arg("charge_point")
            .arg(cp)
            .arg("action")
            .arg(action)
            .arg("payload")
            .arg(payload)
            .exec(con)
            .expect("XADD");
    };
    let result = |con: &mut redis::Connection, id: &str| -> serde_json::Value {
        let (_, value): (String, String) = redis::cmd("BLPOP")
            .arg(format!("t8:command-result:{id}"))
            .arg(WATCHDOG.as_secs())
            .query(con)
            .expect("a result within the watchdog");
        serde_json::from_str(&value).expect("JSON")
    };
    // The stream's reader starts at the end it found: wait until a first record is answered.
    wait_until("a probe command answered", || {
        command(
            &mut con,
            "probe",
            "CP-NOBODY",
            "Reset",
            r#"{"type":"Soft"}"#,
        );
        redis::cmd("LLEN")
            .arg("t8:command-result:probe")
            .query::<i64>(&mut con)
            .is_ok_and(|n| n > 0)
    });

    command(&mut con, "c-1", "CP-S", "Reset", r#"{"type":"Hard"}"#);
    let call = next_json(&mut client);
    assert_eq!(
        (call[0].as_i64(), call[2].as_str()),
        (Some(2), Some("Reset")),
        "{call}"
    );
    let answer = serde_json::json!([3, call[1], {"status": "Accepted"}]).to_string();
    client
        .send(tungstenite::Message::text(answer))
        .expect("answer");
    let outcome = result(&mut con, "c-1");
    assert_eq!(outcome["status"], 200, "{outcome}");
    assert_eq!(
        outcome["body"]["payload"]["status"], "Accepted",
        "{outcome}"
    );

    // Never dropped silently: a charge point not held here, an unknown action, a payload that
    // is not the action's, a key rotation (the API of the holding node stores keys).
    command(
        &mut con,
        "c-2",
        "CP-ELSEWHERE",
        "Reset",
        r#"{"type":"Soft"}"#,
    );
    assert_eq!(result(&mut con, "c-2")["status"], 404);
    command(&mut con, "c-3", "CP-S", "Teleport", "{}");
    assert_eq!(result(&mut con, "c-3")["status"], 400);
    command(&mut con, "c-4", "CP-S", "Reset", r#"{"type":"Sideways"}"#);
    assert_eq!(result(&mut con, "c-4")["status"], 400);
    command(
        &mut con,
        "c-5",
        "CP-S",
        "ChangeConfiguration",
        r#"{"key":"AuthorizationKey","value":"00112233445566778899"}"#,
    );
    let refused = result(&mut con, "c-5");
    assert_eq!(refused["status"], 400, "{refused}");
    // The same outcomes on the results stream, by command id.
    let results: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg("t8:command-results")
        .arg("-")
        .arg("+")
        .query(&mut con)
        .expect("XRANGE");
    let ids: Vec<String> = results
        .ids
        .iter()
        .filter_map(|e| e.get::<String>("command_id"))
        .filter(|id| id.starts_with("c-"))
        .collect();
    assert_eq!(ids, ["c-1", "c-2", "c-3", "c-4", "c-5"]);
}
