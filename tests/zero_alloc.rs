//! A warm Heartbeat allocates nothing, through the gateway's own code on both sides: the real
//! session (`net::session::Connection` over the in-memory transport, with a real
//! `LoopContext`) reads the masked frame, decodes it where it lies and answers it itself (the
//! charge point is Accepted and has nothing in flight), the exchange goes in the loop's batch to
//! the real processor (`processor::pool`'s turn: its shard counts and journals it); then a
//! StatusNotification goes the whole way: loop, batch, processor turn (envelope, lookup, schema
//! check, answer, journal lines, the reply batch sent on the loop's channel with its wake), and
//! the session writing the framed answer. Buffers go back to their pools. The processor writes
//! its lines with the journal's own writer; the one stand-in is the journal's intake, which
//! gives each chunk straight back (the journal thread and its pool are not on this thread; a
//! chunk back from it late would make the count depend on timing). A global allocator counts this thread's
//! allocations (loop and processor both run on it); after a warm-up, 1,000 rounds must add none.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Receiver;
use ocpp_gateway::batch::{Pool, ReplyBatch};
use ocpp_gateway::config::{self, Config};
use ocpp_gateway::events::Events;
use ocpp_gateway::journal::testing::RecyclingSink;
use ocpp_gateway::mailbox::{LoopHandle, LoopShared, Loops, Processors, ToLoop, processor_channel};
use ocpp_gateway::net::context::LoopContext;
use ocpp_gateway::net::session::{Connection, Transition};
use ocpp_gateway::net::timer::TimerWheel;
use ocpp_gateway::policy::TransactionIds;
use ocpp_gateway::processor::handlers::{Policy, Signer};
use ocpp_gateway::processor::journal_budget::BudgetRule;
use ocpp_gateway::processor::pool::{self, PoolParts, Processor};
use ocpp_gateway::security::{Profile, Security};
use ocpp_gateway::stats::Stats;
use ocpp_gateway::trace::TraceList;
use ocpp_gateway::types::Protocols;
use transport::Transport;
use transport::memory::MemoryStream;
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

/// The connection's slab key.
const KEY: usize = 7;
const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// One event loop with one connection, and its processor, on this thread.
struct Gateway {
    cx: LoopContext,
    conn: Connection,
    processor: Processor,
    /// The loop's channel, as its mailbox reads it, and the pool its reply batches go back to.
    loop_rx: Receiver<ToLoop>,
    replies: Pool<ReplyBatch>,
    /// The loop's waker needs a poll to belong to.
    _poll: mio::Poll,
}

impl Gateway {
    fn new() -> Gateway {
        let mut config = Config::default();
        config.websocket.ping_interval = Duration::from_secs(3600);
        config.ocpp.max_calls_per_second = 0; // the rate limit is tested on its own
        let (handle, inbox) = processor_channel(
            8,
            config.processor.queue_capacity.get(),
            config.processor.queue_bytes,
        );
        let processors = Processors {
            handles: vec![handle].into(),
            batches: Pool::new(4),
        };
        let stats = Arc::new(Stats::new(1, 1));
        let cx = LoopContext::new(
            0,
            &config,
            Arc::clone(&stats),
            processors.clone(),
            None,
            Events::none(),
            Arc::new(TraceList::default()),
            Arc::new(Security::default()),
            TimerWheel::new(Instant::now(), Duration::from_millis(10), 64),
        );
        let transport = Transport::memory(MemoryStream::default());
        let peer = "127.0.0.1:40000".parse().unwrap();
        let conn = Connection::new(
            1,
            transport,
            peer,
            (Profile::Unsecured, Protocols::V16, false),
            false,
        );
        let policy = Policy {
            heartbeat_interval_secs: config::DEFAULT_HEARTBEAT_INTERVAL.as_secs(),
            boot_status: config::DEFAULT_BOOT_STATUS,
            identities: None,
            id_tags: None,
            data_transfer_status: config::DEFAULT_DATA_TRANSFER_STATUS,
            transactions: Arc::new(TransactionIds::open(None).expect("in memory")),
            check_serial_number: false,
            signing: Signer::Off,
        };
        let poll = mio::Poll::new().expect("a poll");
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).expect("a waker");
        let (loop_tx, loop_rx) = crossbeam_channel::bounded(64);
        let loops = Loops {
            handles: vec![LoopHandle {
                tx: loop_tx,
                shared: Arc::new(LoopShared::new(waker)),
            }]
            .into(),
            replies: Pool::new(4),
        };
        let replies = loops.replies.clone();
        let processor = pool::build(PoolParts {
            inboxes: vec![inbox],
            processors,
            loops,
            policy: Arc::new(policy),
            remember_limit: 1024,
            stats,
            events: Events::new(Arc::new(RecyclingSink::default())),
            traces: Arc::new(TraceList::default()),
            journal_rule: BudgetRule::UNLIMITED,
            state: None,
            cluster: None,
            renewal: (Duration::from_secs(3600), 0, Duration::from_secs(3600)),
        })
        .pop()
        .expect("one processor");
        Gateway {
            cx,
            conn,
            processor,
            loop_rx,
            replies,
            _poll: poll,
        }
    }

    /// The charge point sends `bytes`; the loop reads them (as on a readable event).
    fn receive(&mut self, bytes: &[u8]) {
        self.conn.transport.memory_mut().input.extend(bytes);
        let transition = self.conn.on_readable(&mut self.cx, KEY);
        assert!(matches!(transition, Transition::Continue), "{transition:?}");
    }

    /// The loop hands its batch over; the processor takes a turn (its thread's loop body) and
    /// the loop delivers the answers from its channel, as their threads do.
    fn processor_turn(&mut self) {
        self.cx.links.flush(Instant::now(), true);
        let (handled, gone) = self.processor.turn();
        assert!(handled > 0 && !gone, "the batch reached the processor");
        while let Ok(message) = self.loop_rx.try_recv() {
            let ToLoop::Replies(answers) = message else {
                panic!("only answers are sent here");
            };
            for reply in answers.replies() {
                let transition =
                    self.conn
                        .deliver(&mut self.cx, answers.frame(reply), reply.accepted);
                assert!(
                    !matches!(transition, Transition::Remove(_)),
                    "{transition:?}"
                );
            }
            self.replies.give(answers);
        }
    }

    /// What the loop wrote to the charge point since the last look: one text frame's payload
    /// must start with `expected`. The buffer is kept for the next round (no allocation).
    fn sent(&mut self, expected: &[u8]) -> usize {
        let output = &mut self.conn.transport.memory_mut().output;
        let header = websocket::parse_header(output, Role::Client, usize::MAX)
            .expect("valid")
            .expect("complete");
        assert_eq!(header.opcode, OpCode::Text);
        let payload = &output[header.payload()];
        assert!(
            payload.starts_with(expected),
            "{}",
            String::from_utf8_lossy(payload)
        );
        let len = output.len();
        output.clear();
        len
    }
}

fn masked(text: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    websocket::encode(&mut frame, OpCode::Text, text, Some(MASK));
    frame
}

/// One round: a Heartbeat the loop answers, then a StatusNotification the shard answers.
fn round(gateway: &mut Gateway, heartbeat: &[u8], status: &[u8]) -> usize {
    gateway.receive(heartbeat);
    let mut bytes = gateway.sent(br#"[3,"5f1c9a62-3d4e-4b7a-9c21-8e0f6d5b4a31",{"currentTime":""#);
    gateway.receive(status);
    gateway.processor_turn();
    bytes += gateway.sent(br#"[3,"st",{}]"#);
    bytes
}

#[test]
fn a_warm_heartbeat_and_status_notification_allocate_nothing() {
    let mut gateway = Gateway::new();
    gateway.receive(
        b"GET /ocpp/CP-0001 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n",
    );
    let switching = std::mem::take(&mut gateway.conn.transport.memory_mut().output);
    assert!(switching.starts_with(b"HTTP/1.1 101 "));
    gateway.receive(&masked(
        br#"[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]"#,
    ));
    gateway.processor_turn();
    gateway.sent(br#"[3,"b",{"status":"Accepted""#);

    let heartbeat = masked(br#"[2,"5f1c9a62-3d4e-4b7a-9c21-8e0f6d5b4a31","Heartbeat",{}]"#);
    let status = masked(
        br#"[2,"st","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Available"}]"#,
    );
    // Warm-up: buffers reach their sizes, the clock text is formatted.
    for _ in 0..2_000 {
        round(&mut gateway, &heartbeat, &status);
    }
    // The counter counts (a test that could not fail would prove nothing).
    let probe = allocations();
    std::hint::black_box(Vec::<u8>::with_capacity(16));
    assert_eq!(allocations(), probe + 1);

    let answered_before = gateway.cx.stats().heartbeats_answered.get();
    let before = allocations();
    let started = SystemTime::now();
    let mut bytes = 0;
    for _ in 0..1_000 {
        bytes += round(&mut gateway, &heartbeat, &status);
    }
    let allocated = allocations() - before;
    assert!(bytes > 1_000 * 80, "every round produced two answer frames");
    assert_eq!(
        gateway.cx.stats().heartbeats_answered.get() - answered_before,
        1_000,
        "the loop answered every Heartbeat itself"
    );
    assert_eq!(
        allocated,
        0,
        "1,000 warm rounds allocated {allocated} times (over {:?})",
        started.elapsed()
    );
}
