//! Question: how many nanoseconds of pure logic does one Heartbeat cost the gateway, from the
//! text of the charge point's message to the text of the reply? Sockets, WebSocket framing,
//! channels and thread hand-offs are left out: this is the floor under them.
//!
//! - `heartbeat/text_to_reply`: the whole answer, with the calls the event loop and the
//!   processor make, in their order: `parse_frame`, then `handle_call` (which looks up the
//!   action, checks the payload against the Heartbeat schema and builds the response), then
//!   `write_call_result` into a fresh 128-byte `String`, as the processor does. There is no
//!   separate validation step in the gateway: `handle_call` decodes the payload into its
//!   schema-checked type, so validating it apart would count that work twice.
//! - `heartbeat/now_refresh`: building the `Now` a reply carries. The processor rebuilds it at
//!   most once per millisecond and reuses it for every message in that millisecond, so
//!   `text_to_reply` uses a cached one; add this figure once per message when traffic is
//!   slower than one message per millisecond per processor.
//! - `parse_frame/{heartbeat,boot_notification}`: the envelope alone, the event loop's share,
//!   for the smallest CALL and for a typical larger one.

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{Criterion, criterion_group, criterion_main};
use ocpp_gateway::config;
use ocpp_gateway::ocpp::rpc::{Frame, parse_frame, write_call_error, write_call_result};
use ocpp_gateway::processor::handlers::{
    ChargePointState, Now, Policy, Registration, Reply, handle_call,
};
use ocpp_gateway::processor::policy::TransactionIds;

/// UniqueIds are UUIDs for most charge points: the longest id the specification allows.
const HEARTBEAT: &str = r#"[2,"5f1c9a62-3d4e-4b7a-9c21-8e0f6d5b4a31","Heartbeat",{}]"#;
const BOOT_NOTIFICATION: &str = concat!(
    r#"[2,"0b7d3e9a-6c1f-4e28-a5d4-91f2c3b8e706","BootNotification","#,
    r#"{"chargePointVendor":"VendorX","chargePointModel":"ModelY","#,
    r#""chargePointSerialNumber":"CP-0001","chargeBoxSerialNumber":"CB-0001","#,
    r#""firmwareVersion":"1.2.3","iccid":"8931440400012345678","imsi":"204043123456789","#,
    r#""meterType":"DZG DVH4013","meterSerialNumber":"M-77"}]"#,
);

/// The policy of the default configuration (no allow-list, no idTag list), as the server
/// builds it, except that transaction ids stay in memory instead of a file.
fn default_policy() -> Policy {
    Policy {
        heartbeat_interval_secs: config::DEFAULT_HEARTBEAT_INTERVAL.as_secs(),
        boot_status: config::DEFAULT_BOOT_STATUS,
        identities: None,
        id_tags: None,
        data_transfer_status: config::DEFAULT_DATA_TRANSFER_STATUS,
        transactions: TransactionIds::open(None).expect("an in-memory counter opens"),
    }
}

/// One message in, its reply out; an unparsable message yields an empty reply.
fn reply_to(text: &str, policy: &Policy, state: &mut ChargePointState, now: &Now) -> String {
    let Ok(Frame::Call {
        unique_id,
        action,
        payload,
    }) = parse_frame(text)
    else {
        return String::new();
    };
    let mut out = String::with_capacity(128);
    match handle_call(policy, "CP-0001", state, &action, &payload, now) {
        Reply::Result(result) => write_call_result(&mut out, &unique_id, &result),
        Reply::Error { code, description } => {
            write_call_error(&mut out, &unique_id, code, &description);
        }
    }
    out
}

fn heartbeat(c: &mut Criterion) {
    let policy = default_policy();
    let mut state = ChargePointState {
        registration: Registration::Accepted,
        ..ChargePointState::default()
    };
    let now = Now::at(SystemTime::now());
    let reply = reply_to(HEARTBEAT, &policy, &mut state, &now);
    assert!(reply.starts_with("[3,"), "not a CALLRESULT: {reply}");

    let mut group = c.benchmark_group("heartbeat");
    group.bench_function("text_to_reply", |b| {
        b.iter(|| reply_to(black_box(HEARTBEAT), &policy, &mut state, &now));
    });
    group.bench_function("now_refresh", |b| {
        b.iter(|| Now::at(black_box(SystemTime::now())));
    });
    group.finish();
}

fn parse(c: &mut Criterion) {
    for text in [HEARTBEAT, BOOT_NOTIFICATION] {
        assert!(
            matches!(parse_frame(text), Ok(Frame::Call { .. })),
            "{text}"
        );
    }
    let mut group = c.benchmark_group("parse_frame");
    group.bench_function("heartbeat", |b| {
        b.iter(|| parse_frame(black_box(HEARTBEAT)))
    });
    group.bench_function("boot_notification", |b| {
        b.iter(|| parse_frame(black_box(BOOT_NOTIFICATION)));
    });
    group.finish();
}

criterion_group!(benches, heartbeat, parse);
criterion_main!(benches);
