//! The session's phases and their work driven over an in-memory transport: no sockets, a
//! real loop context, real processor queues.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::batch::{FrameBatch, Pool};
use crate::config::Config;
use crate::events::Events;
use crate::mailbox::{ProcessorInbox, Processors, ToProcessor, processor_channel};
use crate::net::timer::TimerWheel;
use crate::security::Security;
use crate::stats::Stats;
use crate::trace::TraceList;
use crate::types::Protocols;
use transport::memory::MemoryStream;

const KEY: usize = 3;
const MASK: [u8; 4] = [1, 2, 3, 4];

struct Harness {
    cx: LoopContext,
    inboxes: Vec<ProcessorInbox>,
    conn: Connection,
}

fn harness(change: impl FnOnce(&mut Config)) -> Harness {
    let mut config = Config::default();
    config.websocket.ping_interval = Duration::from_secs(60);
    change(&mut config);
    let (handles, inboxes): (Vec<_>, Vec<_>) = (0..2)
        .map(|_| {
            processor_channel(
                8,
                config.processor.queue_capacity.get(),
                config.processor.queue_bytes,
            )
        })
        .unzip();
    let processors = Processors {
        handles: handles.into(),
        batches: Pool::new(4),
    };
    let now = Instant::now();
    let cx = LoopContext::new(
        0,
        &config,
        Arc::new(Stats::new(1, 2)),
        processors,
        None,
        Events::none(),
        Arc::new(TraceList::default()),
        Arc::new(Security::default()),
        TimerWheel::new(now, Duration::from_millis(10), 64),
    );
    let transport = Transport::memory(MemoryStream::default());
    let peer = "127.0.0.1:4000".parse().unwrap();
    let conn = Connection::new(
        1,
        transport,
        peer,
        (Profile::Unsecured, Protocols::V16, false),
        false,
    );
    Harness { cx, inboxes, conn }
}

fn client_frame(opcode: OpCode, payload: &[u8], fin: bool) -> Vec<u8> {
    let mut out = Vec::new();
    websocket::encode(&mut out, opcode, payload, Some(MASK));
    if !fin {
        out[0] &= 0x7F;
    }
    out
}

fn text(payload: &str) -> Vec<u8> {
    client_frame(OpCode::Text, payload.as_bytes(), true)
}

impl Harness {
    fn stream(&mut self) -> &mut MemoryStream {
        self.conn.transport.memory_mut()
    }

    /// What the peer sends next, then a readable event.
    fn receive(&mut self, bytes: &[u8]) -> Transition {
        self.stream().input.extend(bytes);
        self.conn.on_readable(&mut self.cx, KEY)
    }

    fn upgrade(&mut self) {
        let request = "GET /ocpp/CP1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                       Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                       Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n";
        assert_eq!(self.receive(request.as_bytes()), Transition::Continue);
        assert!(self.conn.is_open());
        let output = std::mem::take(&mut self.stream().output);
        assert!(
            output.starts_with(b"HTTP/1.1 101 "),
            "{}",
            String::from_utf8_lossy(&output)
        );
    }

    /// The frames we wrote since the last look: (opcode, payload).
    fn sent(&mut self) -> Vec<(OpCode, Vec<u8>)> {
        let output = std::mem::take(&mut self.stream().output);
        let mut frames = Vec::new();
        let mut at = 0;
        while at < output.len() {
            let header = websocket::parse_header(&output[at..], Role::Client, usize::MAX)
                .unwrap()
                .unwrap();
            frames.push((header.opcode, output[at..][header.payload()].to_vec()));
            at += header.frame_len();
        }
        frames
    }

    /// Everything handed to the processors so far.
    fn handed_over(&mut self) -> Vec<FrameBatch> {
        self.cx.links.flush(self.cx.now, true);
        self.inboxes
            .iter()
            .flat_map(|inbox| inbox.rx.try_iter())
            .filter_map(|msg| match msg {
                ToProcessor::Batch(batch) => Some(batch),
                _ => None,
            })
            .collect()
    }

    /// The texts of the messages handed over so far.
    fn messages(&mut self) -> Vec<String> {
        let batches = self.handed_over();
        batches
            .iter()
            .flat_map(|batch| {
                batch.entries().iter().filter_map(|entry| match entry {
                    Entry::Message { text, .. } => Some(batch.text(text).to_owned()),
                    _ => None,
                })
            })
            .collect()
    }

    fn session(&self) -> &Session {
        self.conn.session().expect("a session")
    }
}

#[test]
fn the_upgrade_and_a_frame_in_the_same_read() {
    let mut h = harness(|_| {});
    let mut bytes = b"GET /ocpp/CP1 HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
        .to_vec();
    bytes.extend(text(r#"[2,"1","Heartbeat",{}]"#));
    assert_eq!(h.receive(&bytes), Transition::Continue);
    let batches = h.handed_over();
    let entries: Vec<&Entry> = batches.iter().flat_map(|b| b.entries()).collect();
    assert!(matches!(entries[0], Entry::Connected { cp, .. } if &**cp == "CP1"));
    assert!(matches!(entries[1], Entry::Message { .. }));
    assert_eq!(h.session().in_flight, 1);
    assert_eq!(h.cx.wire.buffered.read, 0, "nothing held");
}

#[test]
fn a_refused_upgrade_is_answered_and_removed() {
    let mut h = harness(|_| {});
    let request = "GET /elsewhere HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let half = &request.as_bytes()[..20];
    assert_eq!(h.receive(half), Transition::Continue);
    assert_eq!(
        (h.cx.wire.buffered.upgrading, h.cx.wire.buffered.read),
        (h.conn.input.capacity(), 0),
        "the half request is held, counted apart from the partial-message budget"
    );
    let rest = &request.as_bytes()[20..];
    assert_eq!(
        h.receive(rest),
        Transition::Remove(CloseCause::ConnectionLost)
    );
    assert!(h.stream().output.starts_with(b"HTTP/1.1 404 "));
}

#[test]
fn unfinished_frames_and_messages_are_held_sized_and_freed() {
    let mut h = harness(|_| {});
    h.upgrade();
    let frame = text(&format!(
        r#"[2,"1","DataTransfer",{{"vendorId":"{}"}}]"#,
        "v".repeat(2000)
    ));
    assert_eq!(h.receive(&frame[..100]), Transition::Continue);
    assert_eq!(
        h.conn.input.capacity(),
        frame.len(),
        "held at the frame's size"
    );
    assert_eq!(h.cx.wire.buffered.read, frame.len());
    assert!(h.session().partial_since_ms().is_some());
    assert_eq!(h.receive(&frame[100..]), Transition::Continue);
    assert_eq!((h.cx.wire.buffered.read, h.conn.input.capacity()), (0, 0));
    assert_eq!(h.messages().len(), 1);

    h.conn.session_mut().unwrap().in_flight = 0;
    let first = client_frame(OpCode::Text, br#"[2,"2","Heart"#, false);
    let second = client_frame(OpCode::Continuation, br#"beat",{}]"#, true);
    assert_eq!(h.receive(&first), Transition::Continue);
    assert!(h.cx.wire.buffered.read > 0 && h.session().message.is_some());
    assert_eq!(h.receive(&second), Transition::Continue);
    assert_eq!(h.cx.wire.buffered.read, 0);
    assert!(h.session().partial_since_ms().is_none());
    assert_eq!(h.messages(), [r#"[2,"2","Heartbeat",{}]"#]);
}

#[test]
fn violations_fail_the_connection_with_their_codes() {
    for (bytes, code) in [
        (client_frame(OpCode::Binary, b"x", true), 1003),
        (vec![0x81, 0x01, b'x'], 1002), // unmasked
        (client_frame(OpCode::Text, &[0xff, 0xfe], true), 1007),
        (client_frame(OpCode::Continuation, b"x", true), 1002),
        (client_frame(OpCode::Text, &vec![b'a'; 70_000], true), 1009),
    ] {
        let mut h = harness(|_| {});
        h.upgrade();
        let transition = h.receive(&bytes);
        let sent = h.sent();
        let (opcode, payload) = sent.last().expect("a close frame");
        assert_eq!(*opcode, OpCode::Close);
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), code);
        if code == 1003 {
            assert!(
                matches!(h.conn.phase, Phase::Closing(_)),
                "a close handshake"
            );
            assert_eq!(transition, Transition::Again);
        } else {
            assert!(matches!(h.conn.phase, Phase::Lingering), "failed: {code}");
            assert!(h.stream().write_shut);
            assert_eq!(transition, Transition::Again);
        }
    }
}

#[test]
fn pipelined_calls_pause_reading_until_an_answer() {
    let mut h = harness(|c| c.ocpp.max_pipelined_calls = 2);
    h.upgrade();
    let mut bytes = Vec::new();
    for id in 1..=3 {
        bytes.extend(text(&format!(r#"[2,"{id}","Heartbeat",{{}}]"#)));
    }
    assert_eq!(h.receive(&bytes), Transition::Pause(Pause::Calls));
    h.conn.paused = Some(Pause::Calls);
    assert_eq!(h.messages().len(), 2);
    assert!(!h.conn.input.is_empty(), "the third is held unread");
    let mut answer = Vec::new();
    websocket::encode(&mut answer, OpCode::Text, b"[3,\"1\",{}]", None);
    assert_eq!(h.conn.deliver(&mut h.cx, &answer, false), Transition::Again);
    assert_eq!(h.conn.on_readable(&mut h.cx, KEY), Transition::Continue);
    assert_eq!(h.messages().len(), 1);
    assert!(h.conn.input.is_empty());
    // What the pause held back is consumed: no partial-message clock is left running (it
    // would close this healthy connection with 1009 a timeout later).
    assert_eq!(h.session().partial_since_ms(), None);
}

#[test]
fn a_full_processor_queue_pauses_reading() {
    let mut h = harness(|c| c.processor.queue_capacity = std::num::NonZeroUsize::new(1).unwrap());
    h.upgrade();
    let mut bytes = text(r#"[2,"1","Heartbeat",{}]"#);
    bytes.extend(text(r#"[2,"2","Heartbeat",{}]"#));
    let transition = h.receive(&bytes);
    let processor = h.session().processor;
    let heartbeat_len = r#"[2,"1","Heartbeat",{}]"#.len() as u32;
    assert_eq!(
        transition,
        Transition::Pause(Pause::Processor(processor, heartbeat_len))
    );
}

#[test]
fn the_budget_pauses_and_a_message_held_too_long_closes_with_1009() {
    let mut h = harness(|c| {
        c.websocket.max_message_size = 1024;
        c.websocket.partial_message_budget = 1100;
        c.websocket.partial_message_timeout = Duration::from_secs(5);
    });
    h.upgrade();
    let first = client_frame(OpCode::Text, &[b'a'; 1000], false);
    assert_eq!(h.receive(&first), Transition::Continue);
    assert_eq!(h.cx.wire.buffered.read, 1000, "the first fragment is held");
    // Other connections hold the rest of the budget: a connection holding an unfinished
    // message is not read any further (its bytes stay in the socket).
    h.cx.wire.buffered.read += 5000;
    let more = client_frame(OpCode::Continuation, &[b'a'; 10], false);
    assert_eq!(h.receive(&more), Transition::Pause(Pause::Budget));
    assert_eq!(h.stream().input.len(), more.len(), "nothing was read");
    // Still unfinished after partial_message_timeout: closed with 1009.
    h.cx.now += Duration::from_secs(6);
    assert_eq!(h.conn.on_timer(&mut h.cx, KEY), Transition::Again);
    let sent = h.sent();
    let (opcode, payload) = sent.last().unwrap();
    assert_eq!(
        (*opcode, &payload[..2]),
        (OpCode::Close, &1009u16.to_be_bytes()[..])
    );
    assert_eq!(h.cx.wire.buffered.read, 5000, "what it held is freed");
}

#[test]
fn idle_pings_and_a_missing_pong_closes() {
    let mut h = harness(|_| {});
    h.upgrade();
    h.cx.now += Duration::from_secs(61);
    assert_eq!(h.conn.on_timer(&mut h.cx, KEY), Transition::Continue);
    assert_eq!(h.sent(), [(OpCode::Ping, vec![])]);
    assert!(matches!(
        h.session().liveness,
        Liveness::AwaitingPong { .. }
    ));
    h.cx.now += Duration::from_secs(31);
    assert_eq!(
        h.conn.on_timer(&mut h.cx, KEY),
        Transition::Remove(CloseCause::PongTimeout)
    );

    let mut h = harness(|_| {});
    h.upgrade();
    h.cx.now += Duration::from_secs(61);
    h.conn.on_timer(&mut h.cx, KEY);
    h.sent();
    assert_eq!(
        h.receive(&client_frame(OpCode::Pong, b"", true)),
        Transition::Continue
    );
    h.cx.now += Duration::from_secs(31);
    assert_eq!(
        h.conn.on_timer(&mut h.cx, KEY),
        Transition::Continue,
        "a pong is life"
    );
    assert_eq!(h.session().liveness, Liveness::Idle);
}

#[test]
fn a_paused_connection_is_not_closed_for_a_pong_it_could_not_read() {
    let mut h = harness(|_| {});
    h.upgrade();
    h.cx.now += Duration::from_secs(61);
    assert_eq!(h.conn.on_timer(&mut h.cx, KEY), Transition::Continue);
    assert_eq!(h.sent(), [(OpCode::Ping, vec![])]);
    // Paused (its processor's queue is full): the pong sits unread in the socket.
    h.conn.paused = Some(Pause::Processor(0, 100));
    h.cx.now += Duration::from_secs(31);
    assert_eq!(h.conn.on_timer(&mut h.cx, KEY), Transition::Continue);
    // Reading again: no pong came after all, and a timeout later it is closed.
    h.conn.paused = None;
    h.cx.now += Duration::from_secs(31);
    assert_eq!(
        h.conn.on_timer(&mut h.cx, KEY),
        Transition::Remove(CloseCause::PongTimeout)
    );
}

#[test]
fn pings_are_answered_and_a_close_is_echoed() {
    let mut h = harness(|_| {});
    h.upgrade();
    assert_eq!(
        h.receive(&client_frame(OpCode::Ping, b"hi", true)),
        Transition::Continue
    );
    assert_eq!(h.sent(), [(OpCode::Pong, b"hi".to_vec())]);
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    let transition = h.receive(&client_frame(OpCode::Close, &close, true));
    assert_eq!(transition, Transition::Remove(CloseCause::PeerClosed));
    assert_eq!(h.sent()[0].0, OpCode::Close);
}

#[test]
fn eof_without_a_close_is_a_lost_connection() {
    let mut h = harness(|_| {});
    h.upgrade();
    h.stream().eof = true;
    assert_eq!(
        h.conn.on_readable(&mut h.cx, KEY),
        Transition::Remove(CloseCause::ConnectionLost)
    );
}

#[test]
fn an_accepted_charge_points_heartbeat_is_answered_here_and_handed_on() {
    let mut h = harness(|_| {});
    h.upgrade();
    // Not known to be accepted: the processor answers.
    assert_eq!(
        h.receive(&text(r#"[2,"1","Heartbeat",{}]"#)),
        Transition::Continue
    );
    assert!(h.sent().is_empty());
    assert_eq!(h.messages().len(), 1);
    let mut answer = Vec::new();
    websocket::encode(
        &mut answer,
        OpCode::Text,
        br#"[3,"1",{"currentTime":"x"}]"#,
        None,
    );
    h.conn.deliver(&mut h.cx, &answer, true);
    h.sent();
    // Accepted, nothing in flight: answered by the loop.
    assert_eq!(
        h.receive(&text(r#"[2,"2","Heartbeat",{}]"#)),
        Transition::Continue
    );
    let sent = h.sent();
    let reply: serde_json::Value = serde_json::from_slice(&sent[0].1).unwrap();
    assert_eq!((reply[0].as_u64(), reply[1].as_str()), (Some(3), Some("2")));
    assert!(reply[2]["currentTime"].as_str().unwrap().ends_with('Z'));
    let batches = h.handed_over();
    let answered = batches
        .iter()
        .flat_map(|b| b.entries())
        .any(|e| matches!(e, Entry::Answered { .. }));
    assert!(answered, "the exchange still reaches the processor");
    // Anything else, or an invalid Heartbeat, goes to the processor.
    h.receive(&text(r#"[2,"3","Heartbeat",{"x":1}]"#));
    assert!(h.sent().is_empty());
    assert_eq!(h.messages().len(), 1);
}

#[test]
fn every_message_but_an_answer_counts_as_a_call_for_the_rate_limit() {
    use super::reading::starts_a_call;
    for call in [
        &b"[2,\"1\",\"Heartbeat\",{}]"[..],
        b"[6,\"s\",\"NotifyPeriodicEventStream\"",
        // Padding or a character cut at the end of the peek cannot hide a CALL.
        b"                [2,\"1\"",
        b"[2,\"aaaaaaaaaa\xc3",
        b"\xff\xfe",
        b"",
    ] {
        assert!(starts_a_call(call), "{}", String::from_utf8_lossy(call));
    }
    // Nor can a type whose digits may go on past the peek, nor 2.1's CALLRESULTERROR (the
    // processor's, not the loop's).
    for call in [&b"[3"[..], b"              [4", b"[5,\"1\",\"x\""] {
        assert!(starts_a_call(call), "{}", String::from_utf8_lossy(call));
    }
    for answer in [&b"[3,\"1\",{}]"[..], b" [4,\"1\",\"InternalError\"", b"[3 "] {
        assert!(
            !starts_a_call(answer),
            "{}",
            String::from_utf8_lossy(answer)
        );
    }
}

#[test]
fn a_message_larger_than_a_batch_still_goes_to_its_processor() {
    let mut h = harness(|c| c.websocket.max_message_size = 2 << 20);
    h.upgrade();
    let data = "x".repeat(1_500_000);
    let big = format!(r#"[2,"1","DataTransfer",{{"vendorId":"V","data":"{data}"}}]"#);
    let mut bytes = Vec::new();
    // Fed as the socket would give it, a buffer at a time.
    let frame = text(&big);
    let mut transition = Transition::Continue;
    for chunk in frame.chunks(64 * 1024) {
        bytes.clear();
        bytes.extend_from_slice(chunk);
        transition = h.receive(&bytes);
        assert!(
            !matches!(transition, Transition::Pause(_)),
            "{transition:?}"
        );
    }
    assert_eq!(transition, Transition::Continue);
    assert_eq!(h.messages(), vec![big]);
}

#[test]
fn a_flood_of_pings_gets_one_pong_per_read() {
    let mut h = harness(|_| {});
    h.upgrade();
    let mut bytes = Vec::new();
    for i in 0..1000u32 {
        bytes.extend(client_frame(OpCode::Ping, &i.to_be_bytes(), true));
    }
    assert_eq!(h.receive(&bytes), Transition::Continue);
    // The latest ping is answered, once.
    assert_eq!(
        h.sent(),
        vec![(OpCode::Pong, 999u32.to_be_bytes().to_vec())]
    );
    // A ping after a message is answered too.
    let mut bytes = client_frame(OpCode::Ping, b"a", true);
    bytes.extend(text(r#"[2,"1","Heartbeat",{}]"#));
    bytes.extend(client_frame(OpCode::Ping, b"b", true));
    assert_eq!(h.receive(&bytes), Transition::Continue);
    let pongs: Vec<_> = h.sent().into_iter().map(|(_, payload)| payload).collect();
    assert_eq!(pongs, vec![b"a".to_vec(), b"b".to_vec()]);
}

#[test]
fn nothing_after_the_peers_close_frame_is_handled() {
    let mut h = harness(|_| {});
    h.upgrade();
    // Our answer to the Close cannot go out yet: the connection waits for it.
    h.stream().room = Some(0);
    let mut bytes = client_frame(OpCode::Close, &1000u16.to_be_bytes(), true);
    bytes.extend(text(r#"[3,"gw-1",{}]"#));
    bytes.extend(text(r#"[2,"1","Heartbeat",{}]"#));
    assert_eq!(h.receive(&bytes), Transition::Continue);
    assert!(h.messages().is_empty());
    let stats = h.cx.stats();
    assert_eq!(
        stats.unexpected_responses.get(),
        0,
        "the answer after the Close"
    );
}

#[test]
fn what_unauthenticated_peers_hold_is_bounded_apart_from_the_upgraded() {
    let mut h = harness(|c| c.websocket.partial_message_budget = 4 << 20);
    let head = "GET /ocpp/CP1 HTTP/1.1\r\nHost: x\r\n";
    // A head held before the upgrade: counted apart, moved when the upgrade completes.
    assert_eq!(h.receive(head.as_bytes()), Transition::Continue);
    assert!(h.cx.wire.buffered.upgrading > 0);
    assert_eq!(h.cx.wire.buffered.read, 0);
    let rest = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n";
    let mut bytes = rest.as_bytes().to_vec();
    // Half a frame right behind the request: held after the upgrade, in the upgraded gauge.
    bytes.extend(&text(r#"[2,"1","Heartbeat",{}]"#)[..5]);
    assert_eq!(h.receive(&bytes), Transition::Continue);
    assert!(h.conn.is_open());
    assert_eq!(h.cx.wire.buffered.upgrading, 0);
    assert_eq!(h.cx.wire.buffered.read, h.conn.input.capacity());
    // Other connections, not upgraded, hold all they may but a head's length: one holding
    // nothing reads a head and goes on...
    h.cx.wire.buffered.upgrading = h.cx.limits.upgrade_budget - head.len() - 1;
    let mut other = harness(|_| {});
    std::mem::swap(&mut other.cx, &mut h.cx);
    other.stream().input.extend(head.as_bytes());
    assert_eq!(
        other.conn.on_readable(&mut other.cx, KEY),
        Transition::Continue
    );
    // ... a read that takes them to all they may hold asks the loop to make room at once ...
    other.stream().input.extend(b"U");
    assert_eq!(
        other.conn.on_readable(&mut other.cx, KEY),
        Transition::MakeRoom { read_on: false }
    );
    assert_eq!(other.stream().input.len(), 0, "it was read");
    // ... and so does one that holds part and would read more, before it reads.
    other.stream().input.extend(b"pgrade: websocket\r\n");
    assert_eq!(
        other.conn.on_readable(&mut other.cx, KEY),
        Transition::MakeRoom { read_on: true }
    );
    assert!(!other.stream().input.is_empty(), "not read");
    std::mem::swap(&mut other.cx, &mut h.cx);
    // ... and the upgraded one reads on, whatever the others hold.
    assert_eq!(h.cx.wire.buffered.upgrading, h.cx.limits.upgrade_budget);
    assert_eq!(
        h.receive(&text(r#"[2,"1","Heartbeat",{}]"#)[5..]),
        Transition::Continue
    );
    assert_eq!(h.messages().len(), 1);
}

/// The `Disconnected` entries handed over so far: the cause each session's end was reported as.
fn disconnects(h: &mut Harness) -> Vec<CloseCause> {
    let batches = h.handed_over();
    batches
        .iter()
        .flat_map(|batch| batch.entries())
        .filter_map(|entry| match entry {
            Entry::Disconnected { cause, .. } => Some(*cause),
            _ => None,
        })
        .collect()
}

#[test]
fn the_phases_follow_one_another_and_the_first_close_cause_is_reported_once() {
    // Ours first: the peer's answering Close ends the session with our cause.
    let mut h = harness(|_| {});
    assert!(matches!(h.conn.phase, Phase::Upgrading(_)));
    h.upgrade();
    assert!(matches!(h.conn.phase, Phase::Open(_)));
    let close = h.conn.close(&mut h.cx, KEY, 1001, "", CloseCause::Shutdown);
    assert_eq!(close, Transition::Again);
    assert!(matches!(&h.conn.phase, Phase::Closing(c) if c.cause == CloseCause::Shutdown));
    assert_eq!(h.sent().last().map(|f| f.0), Some(OpCode::Close));
    let answer = client_frame(OpCode::Close, &1001u16.to_be_bytes(), true);
    assert_eq!(h.receive(&answer), Transition::Remove(CloseCause::Shutdown));
    h.conn.finish(&mut h.cx, KEY, CloseCause::ConnectionLost);
    assert_eq!(disconnects(&mut h), [CloseCause::Shutdown]);

    // While closing, the peer's EOF, its silence until the grace ends, or a failed write end
    // the session with the cause it closed for.
    for ending in ["eof", "timer", "write"] {
        let mut h = harness(|_| {});
        h.upgrade();
        h.conn.close(&mut h.cx, KEY, 1001, "", CloseCause::Operator);
        let transition = match ending {
            "eof" => {
                h.stream().eof = true;
                h.conn.on_readable(&mut h.cx, KEY)
            }
            "timer" => h.conn.on_timer(&mut h.cx, KEY),
            _ => Transition::Remove(h.conn.lost_cause()),
        };
        assert_eq!(
            transition,
            Transition::Remove(CloseCause::Operator),
            "{ending}"
        );
    }

    // The peer's first: answered, and the session ends as the peer's close once ours is out.
    let mut h = harness(|_| {});
    h.upgrade();
    let close = client_frame(OpCode::Close, &1000u16.to_be_bytes(), true);
    assert_eq!(
        h.receive(&close),
        Transition::Remove(CloseCause::PeerClosed)
    );
    assert!(matches!(&h.conn.phase, Phase::Closing(c) if c.peer_closed()));
    assert_eq!(h.sent().last().map(|f| f.0), Some(OpCode::Close));
    // Closing again (the operator, a shutdown) neither sends a second close nor changes the cause.
    let again = h.conn.close(&mut h.cx, KEY, 1001, "", CloseCause::Operator);
    assert_eq!(again, Transition::Continue);
    assert!(h.sent().is_empty());
    h.conn.finish(&mut h.cx, KEY, CloseCause::ConnectionLost);
    assert_eq!(disconnects(&mut h), [CloseCause::PeerClosed]);

    // Failed while closing: the cause stays the first one, reported once, and it lingers.
    let mut h = harness(|_| {});
    h.upgrade();
    h.conn.close(&mut h.cx, KEY, 1001, "", CloseCause::Operator);
    h.sent();
    let unmasked = [0x81, 0x01, b'x'];
    assert_eq!(h.receive(&unmasked), Transition::Again);
    assert!(matches!(h.conn.phase, Phase::Lingering));
    assert!(h.sent().is_empty(), "no second close frame");
    h.conn.finish(&mut h.cx, KEY, CloseCause::ConnectionLost);
    assert_eq!(disconnects(&mut h), [CloseCause::Operator]);

    // Before the upgrade there is no session to report.
    let mut h = harness(|_| {});
    let close = h.conn.close(&mut h.cx, KEY, 1001, "", CloseCause::Shutdown);
    assert_eq!(close, Transition::Remove(CloseCause::Shutdown));
    h.conn.finish(&mut h.cx, KEY, CloseCause::Shutdown);
    assert!(disconnects(&mut h).is_empty());
}

#[test]
fn an_open_session_stays_small() {
    // Each connection's slab entry holds its phase: the open session and the connection's
    // one timer id, with nothing of their own to say "none".
    assert!(
        std::mem::size_of::<Session>() <= 80,
        "{}",
        std::mem::size_of::<Session>()
    );
    assert_eq!(
        std::mem::size_of::<Option<crate::net::timer::TimerId>>(),
        std::mem::size_of::<crate::net::timer::TimerId>()
    );
    // The whole slab entry (README: 200 bytes since 38dc7f9).
    assert!(
        std::mem::size_of::<Connection>() <= 200,
        "{}",
        std::mem::size_of::<Connection>()
    );
}
