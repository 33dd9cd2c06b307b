//! Question: how many nanoseconds of pure logic does one Heartbeat cost the gateway, from the
//! text of the charge point's message to the framed reply? Sockets, channels and thread
//! hand-offs are left out: this is the floor under them.
//!
//! - `heartbeat/text_to_reply`: what a processor does with one Heartbeat in a batch, through
//!   the same calls it makes: `Shard::handle_batch` parses the envelope, looks the charge point
//!   up, checks the payload against the Heartbeat schema, writes `[3,"<id>",{"currentTime":..}]`
//!   into the loop's reply batch and puts the WebSocket frame header in front of it.
//! - `heartbeat/with_journal`: the same with the journal on: two lines rendered by the
//!   journal's writer into the processor's chunk, handed over (the journal thread's write is
//!   not counted). `with_journal_and_stream`: the journal and the Redis events stream, as the
//!   gateway joins them (each line rendered once, copied into the second chunk);
//!   `..._apart`: the same two sinks with a writer each (each line rendered twice).
//! - `heartbeat/clock_text`: the RFC 3339 time an answer carries, refreshed once per
//!   millisecond per processor.
//! - `parse_frame/{heartbeat,boot_notification}`: the envelope alone, for the smallest CALL and
//!   for a typical larger one.
//! - `status_notification/{without_state,with_state}`: a StatusNotification through
//!   `Shard::handle_batch`, without and with `ocpp.state_file`: with it, the charge point is
//!   marked and its record (boot payload included) built and offered to the state thread's
//!   channel (drained here, so freeing the record is counted too; the commit is not: it runs
//!   on the state thread).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use ocpp::rpc::{Frame, parse_frame};
use ocpp_gateway::batch::{Entry, FrameBatch, Recycle, ReplyBatch};
use ocpp_gateway::clock::WallClock;
use ocpp_gateway::config;
use ocpp_gateway::events::{EventSink, EventWriter, Tee};
use ocpp_gateway::journal::Lines;
use ocpp_gateway::journal::testing::RecyclingSink;
use ocpp_gateway::policy::TransactionIds;
use ocpp_gateway::processor::handlers::{Policy, Signer};
use ocpp_gateway::processor::shard::{Outputs, Shard};
use ocpp_gateway::stats::Stats;
use ocpp_gateway::types::{ChargePointId, ConnId};

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
        transactions: std::sync::Arc::new(
            TransactionIds::open(None).expect("an in-memory counter opens"),
        ),
        check_serial_number: config::DEFAULT_CHECK_SERIAL_NUMBER,
        signing: Signer::Off,
    }
}

fn line_sink() -> Arc<RecyclingSink> {
    Arc::default()
}

/// A shard with one booted charge point, and a batch holding one Heartbeat of it.
fn booted() -> (Shard, FrameBatch) {
    let stats = Arc::new(Stats::new(1, 1));
    let mut shard = Shard::new(0, Arc::new(default_policy()), stats, 1024, false);
    let conn = ConnId {
        loop_index: 0,
        key: 1,
        generation: 1,
    };
    let cp: ChargePointId = "CP-0001".into();
    let mut batch = FrameBatch::default();
    batch.push(Entry::Connected {
        conn,
        cp: Arc::clone(&cp),
        seq: 1,
        peer: "127.0.0.1:40000".parse().expect("address"),
        auth: ocpp_gateway::security::Auth::None,
        profile: ocpp_gateway::security::Profile::Unsecured,
        pinned: false,
        version: ocpp_gateway::types::Version::V16,
        certificate: None,
    });
    batch.push_message(conn, &cp, BOOT_NOTIFICATION, Instant::now());
    let mut replies = vec![ReplyBatch::default()];
    let mut closes = Vec::new();
    let mut calls = Vec::new();
    let mut out = Outputs {
        replies: &mut replies,
        writer: None,
        closes: &mut closes,
        calls: &mut calls,
    };
    shard.handle_batch(&batch, &mut out);
    assert_eq!(replies[0].replies().len(), 1, "the boot is answered");
    let mut heartbeat = FrameBatch::default();
    heartbeat.push_message(conn, &cp, HEARTBEAT, Instant::now());
    (shard, heartbeat)
}

const STATUS_NOTIFICATION: &str = concat!(
    r#"[2,"2c9e4b7a-1d3f-4a6b-8e5c-7f0a9d2b1c34","StatusNotification","#,
    r#"{"connectorId":1,"errorCode":"NoError","status":"Charging"}]"#,
);

fn status_notification(c: &mut Criterion) {
    let mut group = c.benchmark_group("status_notification");
    for with_state in [false, true] {
        let (shard, _) = booted();
        let (sender, drained) = ocpp_gateway::state::StateSender::channel(16);
        let mut shard = if with_state {
            shard.with_state(Some(sender), Vec::new())
        } else {
            shard
        };
        let conn = ConnId {
            loop_index: 0,
            key: 1,
            generation: 1,
        };
        let mut batch = FrameBatch::default();
        batch.push_message(
            conn,
            &ChargePointId::from("CP-0001"),
            STATUS_NOTIFICATION,
            Instant::now(),
        );
        let mut replies = vec![ReplyBatch::default()];
        let mut closes = Vec::new();
        let mut calls = Vec::new();
        let name = if with_state {
            "with_state"
        } else {
            "without_state"
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut out = Outputs {
                    replies: &mut replies,
                    writer: None,
                    closes: &mut closes,
                    calls: &mut calls,
                };
                shard.handle_batch(black_box(&batch), &mut out);
                shard.offer_state(false);
                let framed = replies[0].frame(&replies[0].replies()[0]).len();
                replies[0].recycle();
                while let Ok(changes) = drained.try_recv() {
                    black_box(changes);
                }
                framed
            });
        });
    }
    group.finish();
}

fn heartbeat(c: &mut Criterion) {
    let (mut shard, batch) = booted();
    let mut replies = vec![ReplyBatch::default()];
    let mut closes = Vec::new();
    let mut calls = Vec::new();
    let mut group = c.benchmark_group("heartbeat");
    // The journal alone; the journal and the Redis stream as the gateway joins them (each line
    // rendered once); the same two as separate writers (each renders it).
    let writers: [(&str, Option<Box<dyn EventWriter>>); 4] = [
        ("text_to_reply", None),
        ("with_journal", Some(line_sink().writer())),
        (
            "with_journal_and_stream",
            Some(Lines(vec![line_sink(), line_sink()]).writer()),
        ),
        (
            "with_journal_and_stream_apart",
            Some(Tee(vec![line_sink(), line_sink()]).writer()),
        ),
    ];
    for (name, mut writer) in writers {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut out = Outputs {
                    replies: &mut replies,
                    writer: writer.as_deref_mut(),
                    closes: &mut closes,
                    calls: &mut calls,
                };
                shard.handle_batch(black_box(&batch), &mut out);
                let framed = replies[0].frame(&replies[0].replies()[0]).len();
                replies[0].recycle();
                if let Some(writer) = writer.as_mut() {
                    writer.flush();
                }
                framed
            });
        });
    }
    let mut clock = WallClock::default();
    group.bench_function("clock_text", |b| {
        b.iter(|| clock.text(black_box(SystemTime::now())).len());
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
        b.iter(|| parse_frame(black_box(HEARTBEAT)).is_ok())
    });
    group.bench_function("boot_notification", |b| {
        b.iter(|| parse_frame(black_box(BOOT_NOTIFICATION)).is_ok());
    });
    group.finish();
}

criterion_group!(benches, heartbeat, parse, status_notification);
criterion_main!(benches);
