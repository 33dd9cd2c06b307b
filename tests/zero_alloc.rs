//! A warm Heartbeat round trip allocates nothing: decoding the charge point's frame (the
//! loop's part), the batch to the processor, the processor's handling (envelope, lookup,
//! schema check, answer, journal lines), the framed answer, and the buffers going back to
//! their pools. A global allocator counts this thread's allocations; after a warm-up, 1,000
//! round trips must add none.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use ocpp_gateway::batch::{Entry, FrameBatch, Pool, ReplyBatch};
use ocpp_gateway::clock::WallClock;
use ocpp_gateway::config;
use ocpp_gateway::events::journal::line;
use ocpp_gateway::events::{Event, EventWriter};
use ocpp_gateway::policy::TransactionIds;
use ocpp_gateway::processor::handlers::Policy;
use ocpp_gateway::processor::shard::{Outputs, Shard};
use ocpp_gateway::stats::Stats;
use ocpp_gateway::types::{ChargePointId, ConnId};
use wire::websocket::{self, OpCode, Role};

/// Counts allocations made by the current thread (the test harness's other threads do not
/// disturb the count).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// const-initialised thread-local `Cell`, which itself never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// The journal's line rendering into a reused buffer, as a processor's writer does.
struct Rendering {
    lines: Vec<u8>,
    clock: WallClock,
}

impl EventWriter for Rendering {
    fn record(&mut self, event: &Event<'_>) {
        line::render(&mut self.lines, self.clock.text(event.at), "node-1", event);
    }
    fn hold(&mut self, _: &ocpp_gateway::events::HeldAnswer) {}
    fn due(&self, _: Instant) -> bool {
        self.lines.len() > 32 * 1024
    }
    fn due_at(&self) -> Option<Instant> {
        None
    }
    fn flush(&mut self) -> bool {
        self.lines.clear();
        false
    }
}

/// One round trip: the masked client frame in `wire` is decoded where it lies, handed over
/// in a batch, answered, and the answer's frame is returned (its length).
fn round_trip(
    wire: &mut [u8],
    cp: &ChargePointId,
    conn: ConnId,
    shard: &mut Shard,
    batches: &Pool<FrameBatch>,
    replies: &Pool<ReplyBatch>,
    writer: &mut Rendering,
) -> usize {
    // The loop: decode the frame in place, hand the message over.
    let header = websocket::parse_header(wire, Role::Server, 65_536)
        .expect("valid")
        .expect("complete");
    let range = header.payload();
    websocket::apply_mask(&mut wire[range.clone()], header.mask.expect("masked"));
    let text = std::str::from_utf8(&wire[range]).expect("UTF-8");
    let mut batch = batches.take();
    batch.push_message(conn, cp, text, Instant::now());
    // The processor: answer into the loop's reply batch, journal.
    let mut reply_batches = [replies.take()];
    let mut closes = Vec::new();
    let mut out = Outputs {
        replies: &mut reply_batches,
        writer: Some(writer),
        closes: &mut closes,
    };
    shard.handle_batch(&batch, &mut out);
    if writer.due(Instant::now()) {
        writer.flush();
    }
    batches.give(batch);
    // The loop: the frame it writes to the socket.
    let [answers] = reply_batches;
    let frame = answers.frame(&answers.replies()[0]);
    let header = websocket::parse_header(frame, Role::Client, usize::MAX)
        .expect("valid")
        .expect("complete");
    assert_eq!(header.opcode, OpCode::Text);
    let len = frame.len();
    replies.give(answers);
    // Masking again restores the frame for the next round (masking is its own inverse).
    let range = websocket::parse_header(wire, Role::Server, 65_536)
        .unwrap()
        .unwrap()
        .payload();
    websocket::apply_mask(&mut wire[range], [0x11, 0x22, 0x33, 0x44]);
    len
}

#[test]
fn a_warm_heartbeat_round_trip_allocates_nothing() {
    let policy = Policy {
        heartbeat_interval_secs: config::DEFAULT_HEARTBEAT_INTERVAL.as_secs(),
        boot_status: config::DEFAULT_BOOT_STATUS,
        identities: None,
        id_tags: None,
        data_transfer_status: config::DEFAULT_DATA_TRANSFER_STATUS,
        transactions: Arc::new(TransactionIds::open(None).expect("in memory")),
        check_serial_number: false,
    };
    let stats = Arc::new(Stats::new(1, 1));
    let mut shard = Shard::new(0, Arc::new(policy), stats, 1024, false);
    let conn = ConnId {
        loop_index: 0,
        key: 7,
        generation: 1,
    };
    let cp: ChargePointId = "CP-0001".into();
    let batches: Pool<FrameBatch> = Pool::new(4);
    let replies: Pool<ReplyBatch> = Pool::new(4);
    let mut writer = Rendering {
        lines: Vec::new(),
        clock: WallClock::default(),
    };
    // Connect and boot.
    let mut batch = batches.take();
    batch.push(Entry::Connected {
        conn,
        cp: Arc::clone(&cp),
        seq: 1,
        peer: "127.0.0.1:40000".parse().unwrap(),
        auth: ocpp_gateway::security::Auth::None,
        profile: ocpp_gateway::security::Profile::Unsecured,
        pinned: false,
    });
    let boot = r#"[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]"#;
    batch.push_message(conn, &cp, boot, Instant::now());
    let mut reply_batches = [replies.take()];
    let mut closes = Vec::new();
    shard.handle_batch(
        &batch,
        &mut Outputs {
            replies: &mut reply_batches,
            writer: Some(&mut writer),
            closes: &mut closes,
        },
    );
    batches.give(batch);
    let [answers] = reply_batches;
    assert!(websocket::payload_of(answers.frame(&answers.replies()[0])).starts_with(b"[3,\"b\""));
    replies.give(answers);

    let mut wire = Vec::new();
    let heartbeat = br#"[2,"5f1c9a62-3d4e-4b7a-9c21-8e0f6d5b4a31","Heartbeat",{}]"#;
    websocket::encode(
        &mut wire,
        OpCode::Text,
        heartbeat,
        Some([0x11, 0x22, 0x33, 0x44]),
    );

    // Warm-up: buffers reach their sizes, the clock text is formatted.
    for _ in 0..2_000 {
        round_trip(
            &mut wire,
            &cp,
            conn,
            &mut shard,
            &batches,
            &replies,
            &mut writer,
        );
    }
    // The counter counts (a test that could not fail would prove nothing).
    let probe = allocations();
    std::hint::black_box(Vec::<u8>::with_capacity(16));
    assert_eq!(allocations(), probe + 1);

    let before = allocations();
    let started = SystemTime::now();
    let mut bytes = 0;
    for _ in 0..1_000 {
        bytes += round_trip(
            &mut wire,
            &cp,
            conn,
            &mut shard,
            &batches,
            &replies,
            &mut writer,
        );
    }
    let allocated = allocations() - before;
    assert!(
        bytes > 1_000 * 60,
        "every round trip produced an answer frame"
    );
    assert_eq!(
        allocated,
        0,
        "1,000 warm Heartbeat round trips allocated {allocated} times (over {:?})",
        started.elapsed()
    );
}
