//! One event loop: a `mio::Poll` pinned to a core, its own `SO_REUSEPORT` listener, a slab of
//! connections and a timing wheel. It never blocks on anything but `poll`: frames go to the
//! processors with `try_send` (a full queue pauses that one connection), replies come back on
//! the loop's channel with a coalesced wake.
//!
//! Sockets are registered once, readable and writable, edge-triggered: every read drains until
//! `WouldBlock`, and a writable edge (which the kernel only reports after a write was refused)
//! flushes what tungstenite kept. So the interest never changes and costs no syscall.
//!
//! One iteration: poll; handle socket events; drain the channel; hand paused frames over; fire
//! due timers; on shutdown, close a paced share of connections. The loop ends when shutdown was
//! asked and its slab is empty.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::Write;
use std::mem;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use log::{debug, error, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tungstenite::handshake::HandshakeError;
use tungstenite::handshake::server::ServerHandshake;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::config::Config;
use crate::events::{Event as JournalEvent, EventKind, Events as EventSinkHandle};
use crate::net::connection::{Connection, Handshake, Liveness, Session, State};
use crate::net::handshake::{self, ChargePointId, UpgradeCheck, Verdict};
use crate::net::socket::{HandshakeStream, Socket, would_block};
use crate::net::timer::TimerWheel;
use crate::net::{CloseCause, ConnId, LoopShared, ToLoop, TraceList};
use crate::ocpp::rpc::{self, Frame, FrameError};
use crate::ocpp::v16::{self, Action};
use crate::outbound::{CallOutcome, InFlight, OutboundCall};
use crate::processor::policy::Identities;
use crate::processor::{Inbound, shard_of};
use crate::stats::{LoopStats, Stats};

pub const LISTENER: Token = Token(usize::MAX - 1);
pub const WAKER: Token = Token(usize::MAX - 2);

/// Wheel resolution: timers fire at most this late (plus poll latency).
pub const TIMER_TICK: Duration = Duration::from_millis(10);
/// 4096 slots of 10 ms: one revolution is 41 s, so a 60 s ping timer is visited twice.
pub const TIMER_SLOTS: usize = 4096;
/// How long a closing connection may take to answer our close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// After EMFILE and friends, accepting is retried after this long instead of spinning.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Accepts per iteration before the loop turns to its other work (a connect storm must not
/// starve the connections already open).
const ACCEPT_BATCH: usize = 512;
/// Messages read from one connection per turn; a peer that keeps its socket full must not
/// keep the loop from its other connections and its timers.
const READS_PER_TURN: usize = 32;
/// Channel messages handled per iteration, for the same reason.
const INBOX_BATCH: usize = 4096;
/// Over-capacity handshakes answered 503 at once per loop; beyond this they are dropped unanswered.
const MAX_REFUSING: usize = 256;
/// `Retry-After` for 503s: this many seconds plus up to as many again of jitter.
const RETRY_AFTER_SECS: u32 = 15;
/// The log target of raw-frame traces (turned on per charge point through the operator API).
pub const TRACE_TARGET: &str = "ocpp_gateway::trace";
/// Warnings about peer input allowed per second per loop; the rest are counted only.
const WARNINGS_PER_SECOND: u32 = 20;

#[derive(Clone, Copy, Debug)]
pub enum TimerEvent {
    /// The connection's one liveness/handshake/close timer.
    Connection {
        key: u32,
        generation: u32,
    },
    /// The deadline of the connection's CALL in flight.
    CallTimeout {
        key: u32,
        generation: u32,
    },
    AcceptRetry,
}

/// Everything a loop needs, built by the server before the thread starts.
pub struct LoopParts {
    pub index: u16,
    pub poll: Poll,
    pub listener: TcpListener,
    pub inbox: Receiver<ToLoop>,
    pub shared: Arc<LoopShared>,
    pub processors: Vec<Sender<Inbound>>,
    pub config: Arc<Config>,
    pub stats: Arc<Stats>,
    /// When set, identities outside it are refused at the handshake (HTTP 404).
    pub known_identities: Option<Arc<Identities>>,
    pub events: EventSinkHandle,
    pub traces: Arc<TraceList>,
}

/// Frames and control messages on their way to the processors. Control messages (connected,
/// disconnected) must never be lost, so when a queue is full they wait here, in order; a frame
/// is only handed over when nothing waits ahead of it, which keeps each connection's messages
/// in order.
struct ProcessorLinks {
    senders: Vec<Sender<Inbound>>,
    outbox: Vec<VecDeque<Inbound>>,
}

impl ProcessorLinks {
    fn send_control(&mut self, processor: u16, msg: Inbound) {
        let p = usize::from(processor);
        let Some(outbox) = self.outbox.get_mut(p) else {
            return;
        };
        outbox.push_back(msg);
        Self::flush_one(&self.senders[p], outbox);
    }

    // The frame (136 bytes) comes back by value so the caller can park it: no box on this path.
    #[allow(clippy::result_large_err)]
    fn try_send_frame(&mut self, processor: u16, msg: Inbound) -> Result<(), Inbound> {
        let p = usize::from(processor);
        match (self.outbox.get(p), self.senders.get(p)) {
            (Some(outbox), Some(sender)) if outbox.is_empty() => match sender.try_send(msg) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => Ok(()),
                Err(TrySendError::Full(msg)) => Err(msg),
            },
            _ => Err(msg),
        }
    }

    fn flush(&mut self) {
        for (sender, outbox) in self.senders.iter().zip(&mut self.outbox) {
            Self::flush_one(sender, outbox);
        }
    }

    fn flush_one(sender: &Sender<Inbound>, outbox: &mut VecDeque<Inbound>) {
        while let Some(msg) = outbox.pop_front() {
            match sender.try_send(msg) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(msg)) => {
                    outbox.push_front(msg);
                    return;
                }
            }
        }
    }

    fn is_backlogged(&self) -> bool {
        self.outbox.iter().any(|o| !o.is_empty())
    }
}

/// A frame as one log line: JSON may carry raw newlines, which must not forge log lines.
fn escape_newlines(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\n', '\r']) {
        text.replace('\n', "\\n").replace('\r', "\\r").into()
    } else {
        text.into()
    }
}

/// What a failed tungstenite call means for the connection.
enum Failure {
    /// Not ready: try again on the next event.
    Blocked,
    /// The peer closed or reset, or the socket failed: drop it.
    Gone(CloseCause, String),
    /// The peer broke the protocol: close with this code.
    Violation { code: u16, reason: &'static str },
    /// The write buffer is full: the peer does not read.
    SlowConsumer,
}

fn classify(err: tungstenite::Error) -> Failure {
    use tungstenite::error::{CapacityError, Error, ProtocolError};
    match err {
        Error::Io(e) if would_block(&e) => Failure::Blocked,
        Error::Io(e) => Failure::Gone(CloseCause::ConnectionLost, format!("socket error: {e}")),
        Error::ConnectionClosed | Error::AlreadyClosed => {
            Failure::Gone(CloseCause::PeerClosed, "closed".into())
        }
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Failure::Gone(
            CloseCause::ConnectionLost,
            "reset without closing handshake".into(),
        ),
        Error::WriteBufferFull(_) => Failure::SlowConsumer,
        Error::Capacity(CapacityError::MessageTooLong { .. }) => Failure::Violation {
            code: 1009,
            reason: "message too big",
        },
        Error::Utf8(_) => Failure::Violation {
            code: 1007,
            reason: "invalid UTF-8 in text message",
        },
        Error::Protocol(_) | Error::Capacity(_) => Failure::Violation {
            code: 1002,
            reason: "WebSocket protocol error",
        },
        other => Failure::Gone(
            CloseCause::ConnectionLost,
            format!("websocket error: {other}"),
        ),
    }
}

/// Lets a few warnings a second through; peer input must not be able to flood the log.
struct WarnBudget {
    second: u64,
    used: u32,
}

impl WarnBudget {
    fn allow(&mut self, now_ms: u64) -> bool {
        let second = now_ms / 1000;
        if second != self.second {
            self.second = second;
            self.used = 0;
        }
        self.used += 1;
        self.used <= WARNINGS_PER_SECOND
    }
}

struct Drain {
    started: Instant,
    /// Connections asked to close so far.
    closed: u64,
    /// Slab keys below this were already visited.
    cursor: usize,
    per_second: f64,
}

pub struct EventLoop {
    index: u16,
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Slab<Connection>,
    wheel: TimerWheel<TimerEvent>,
    inbox: Receiver<ToLoop>,
    shared: Arc<LoopShared>,
    processors: ProcessorLinks,
    config: Arc<Config>,
    ws_config: WebSocketConfig,
    path_prefix: Arc<str>,
    known_identities: Option<Arc<Identities>>,
    stats: Arc<Stats>,
    events: EventSinkHandle,
    traces: Arc<TraceList>,
    origin: Instant,
    now: Instant,
    next_generation: u32,
    /// Per processor, in order: connections whose frame waits for room in its queue.
    paused: Vec<VecDeque<(usize, u32)>>,
    /// Connections that may have more input than one turn read (edge-triggered: no new event
    /// will come for it), served on the next iteration; `ready_next` is its spare.
    ready: Vec<(usize, u32)>,
    ready_next: Vec<(usize, u32)>,
    refusing: usize,
    /// Numbers the UniqueIds of our CALLs (prefixed with the loop index, so unique per process).
    next_call_id: u64,
    accept_more: bool,
    /// Accepting failed for lack of descriptors; a retry timer is armed.
    accept_paused: bool,
    inbox_more: bool,
    rng: u64,
    warnings: WarnBudget,
    drain: Option<Drain>,
}

impl EventLoop {
    pub fn new(parts: LoopParts) -> std::io::Result<EventLoop> {
        let LoopParts {
            index,
            poll,
            mut listener,
            inbox,
            shared,
            processors,
            config,
            stats,
            known_identities,
            events,
            traces,
        } = parts;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let ws = &config.websocket;
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(ws.read_buffer_size)
            .write_buffer_size(0)
            .max_write_buffer_size(ws.max_write_buffer)
            .max_message_size(Some(ws.max_message_size))
            .max_frame_size(Some(ws.max_message_size));
        let now = Instant::now();
        let processor_count = processors.len();
        Ok(EventLoop {
            index,
            poll,
            listener: Some(listener),
            conns: Slab::new(),
            wheel: TimerWheel::new(now, TIMER_TICK, TIMER_SLOTS),
            inbox,
            shared,
            processors: ProcessorLinks {
                senders: processors,
                outbox: (0..processor_count).map(|_| VecDeque::new()).collect(),
            },
            path_prefix: config.websocket.path_prefix.as_str().into(),
            config,
            ws_config,
            known_identities,
            stats,
            events,
            traces,
            origin: now,
            now,
            next_generation: 1,
            paused: (0..processor_count).map(|_| VecDeque::new()).collect(),
            ready: Vec::new(),
            ready_next: Vec::new(),
            refusing: 0,
            next_call_id: 0,
            accept_more: false,
            accept_paused: false,
            inbox_more: false,
            rng: 0x9E37_79B9_7F4A_7C15 ^ (u64::from(index) + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9),
            warnings: WarnBudget { second: 0, used: 0 },
            drain: None,
        })
    }

    /// Runs until shutdown was requested and every connection is closed.
    pub fn run(mut self) {
        self.run_until_drained();
        self.release_all();
    }

    fn run_until_drained(&mut self) {
        let mut events = Events::with_capacity(1024);
        info!("loop={} running", self.index);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                error!("loop={} poll failed, stopping: {e}", self.index);
                return;
            }
            self.now = Instant::now();
            self.stats.loop_progress[usize::from(self.index)].fetch_add(1, Ordering::Relaxed);
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(key) => self.on_socket_event(
                        key,
                        event.is_readable() || event.is_read_closed() || event.is_error(),
                        event.is_writable(),
                    ),
                }
            }
            if self.accept_more {
                self.accept();
            }
            self.serve_ready();
            self.drain_inbox();
            if self.has_paused() || self.processors.is_backlogged() {
                self.resume_paused();
            }
            while let Some(timer) = self.wheel.poll_expired(self.now) {
                self.on_timer(timer);
            }
            if self.shared.shutdown_requested() {
                self.drain_step();
                // Every disconnect must reach its processor (and the journal) before we go;
                // meanwhile the inbox keeps draining, so a processor waiting on us can move.
                if self.conns.is_empty() && !self.processors.is_backlogged() {
                    break;
                }
            }
        }
        info!("loop={} stopped", self.index);
    }

    /// Whatever ended the loop, every connection is accounted for: gauges go down and the
    /// processors hear of each disconnect.
    fn release_all(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.remove(key, CloseCause::Shutdown, "event loop stopped");
        }
        self.processors.flush();
    }

    fn has_paused(&self) -> bool {
        self.paused.iter().any(|p| !p.is_empty())
    }

    fn serve_ready(&mut self) {
        mem::swap(&mut self.ready, &mut self.ready_next);
        let mut batch = mem::take(&mut self.ready_next);
        for (key, generation) in batch.drain(..) {
            if self
                .conns
                .get(key)
                .is_some_and(|c| c.generation == generation)
            {
                self.on_socket_event(key, true, false);
            }
        }
        self.ready_next = batch;
    }

    fn stats(&self) -> &LoopStats {
        &self.stats.loops[usize::from(self.index)]
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.now.duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: jitter only, no need for more.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn conn_id(&self, key: usize, generation: u32) -> ConnId {
        ConnId {
            loop_index: self.index,
            key: key as u32,
            generation,
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if self.accept_more || self.inbox_more || !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut timeout = self.wheel.next_timeout(self.now);
        let mut cap = |limit: Duration| {
            timeout = Some(timeout.map_or(limit, |t| t.min(limit)));
        };
        if self.has_paused() || self.processors.is_backlogged() {
            cap(Duration::from_millis(1));
        }
        if self.shared.shutdown_requested() {
            cap(Duration::from_millis(10));
        }
        timeout
    }

    // ---- accepting ----

    fn accept(&mut self) {
        self.accept_more = false;
        if self.accept_paused {
            return; // the retry timer will call again
        }
        for _ in 0..ACCEPT_BATCH {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((tcp, peer)) => self.admit(tcp, peer),
                Err(e) if would_block(&e) => return,
                Err(e) => {
                    self.stats().accept_errors.inc();
                    let out_of_resources = matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    );
                    if out_of_resources {
                        if self.warnings.allow(self.now_ms()) {
                            warn!("loop={} cannot accept, retrying shortly: {e}", self.index);
                        }
                        self.wheel
                            .arm(self.now, ACCEPT_RETRY, TimerEvent::AcceptRetry);
                        self.accept_paused = true;
                        return;
                    }
                    debug!("loop={} accept failed: {e}", self.index);
                }
            }
        }
        self.accept_more = true;
    }

    fn admit(&mut self, mut tcp: TcpStream, peer: SocketAddr) {
        self.stats().accepted.inc();
        let max = self.config.server.max_connections;
        let over_capacity = self.stats.connections.fetch_add(1, Ordering::Relaxed) >= max;
        if over_capacity {
            self.stats.connections.fetch_sub(1, Ordering::Relaxed);
            self.stats().over_capacity.inc();
            if self.refusing >= MAX_REFUSING {
                return; // dropping `tcp` closes it unanswered
            }
        }
        let _ = tcp.set_nodelay(true);
        if let Some(size) = self.config.server.socket_send_buffer {
            let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(size.get());
        }
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let registered = u32::try_from(key).is_ok()
            && self
                .poll
                .registry()
                .register(
                    &mut tcp,
                    Token(key),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_ok();
        if !registered {
            error!(
                "loop={} cannot register a connection from {peer}",
                self.index
            );
            if !over_capacity {
                self.stats.connections.fetch_sub(1, Ordering::Relaxed);
            }
            return;
        }
        if over_capacity {
            self.refusing += 1;
        } else {
            self.stats.loop_connections[usize::from(self.index)].fetch_add(1, Ordering::Relaxed);
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let tcp = Rc::new(tcp);
        let verdict = Rc::new(Cell::new(Verdict::Pending));
        let check = UpgradeCheck {
            path_prefix: Arc::clone(&self.path_prefix),
            known: self.known_identities.clone(),
            over_capacity,
            retry_after_secs: RETRY_AFTER_SECS + (self.rng % u64::from(RETRY_AFTER_SECS)) as u32,
            verdict: Rc::clone(&verdict),
        };
        let mid = ServerHandshake::start(
            HandshakeStream(Rc::clone(&tcp)),
            check,
            Some(self.ws_config),
        );
        let timer = self.wheel.arm(
            self.now,
            self.config.websocket.handshake_timeout,
            TimerEvent::Connection {
                key: key as u32,
                generation,
            },
        );
        entry.insert(Connection {
            generation,
            peer,
            timer: Some(timer),
            over_capacity,
            state: State::Handshaking(Box::new(Handshake { mid, tcp, verdict })),
        });
        self.random();
    }

    // ---- socket events ----

    fn on_socket_event(&mut self, key: usize, readable: bool, writable: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match &mut conn.state {
            State::Handshaking(_) => self.drive_handshake(key),
            State::Open(session) | State::Closing(session) => {
                if writable && session.ws.get_ref().unsent() > 0 {
                    let result = session.ws.flush();
                    if let Err(e) = result {
                        if !self.fail(key, e) {
                            return;
                        }
                    }
                }
                if readable {
                    self.read_messages(key);
                }
            }
            State::Lingering(_) => self.discard_input(key),
            State::Detached => {}
        }
    }

    fn drive_handshake(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let State::Handshaking(handshake) = mem::replace(&mut conn.state, State::Detached) else {
            return;
        };
        let Handshake { mid, tcp, verdict } = *handshake;
        match mid.handshake() {
            Err(HandshakeError::Interrupted(mid)) => {
                conn.state = State::Handshaking(Box::new(Handshake { mid, tcp, verdict }));
            }
            Ok(ws) => {
                drop(ws); // its stream is the second handle on `tcp`
                match (verdict.take(), Rc::try_unwrap(tcp)) {
                    (Verdict::Upgraded { id, ocpp16 }, Ok(tcp)) => self.open(key, tcp, id, ocpp16),
                    _ => {
                        error!(
                            "loop={} bug: upgrade finished without a verdict",
                            self.index
                        );
                        self.remove(key, CloseCause::ConnectionLost, "internal error");
                    }
                }
            }
            Err(HandshakeError::Failure(err)) => {
                use tungstenite::error::{Error, ProtocolError};
                let verdict = verdict.take();
                let garbage = matches!(verdict, Verdict::Pending)
                    && !matches!(
                        err,
                        Error::Io(_)
                            | Error::ConnectionClosed
                            | Error::AlreadyClosed
                            | Error::Protocol(ProtocolError::HandshakeIncomplete)
                    );
                if garbage {
                    let _ = (&*tcp).write(handshake::BAD_REQUEST);
                }
                let peer = conn.peer;
                // Counted: what we refused. Not counted: peers that reset or gave up.
                if garbage || (matches!(verdict, Verdict::Refused(_)) && !conn.over_capacity) {
                    self.stats().handshakes_rejected.inc();
                }
                debug!(
                    "loop={} handshake from {peer} ended: {err} ({verdict:?})",
                    self.index
                );
                self.remove(key, CloseCause::ConnectionLost, "handshake refused");
            }
        }
    }

    fn open(&mut self, key: usize, tcp: TcpStream, cp: ChargePointId, ocpp16: bool) {
        let now_ms = self.now_ms();
        let processor = shard_of(&cp, self.processors.senders.len()) as u16;
        let ws = WebSocket::from_raw_socket(Socket::new(tcp), Role::Server, Some(self.ws_config));
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if let Some(timer) = conn.timer.take() {
            self.wheel.cancel(timer);
        }
        let (generation, peer) = (conn.generation, conn.peer);
        conn.state = State::Open(Session {
            ws,
            cp: Arc::clone(&cp),
            processor,
            last_rx_ms: now_ms,
            liveness: Liveness::Idle,
            pending: None,
            calls: None,
            closing: None,
        });
        if !ocpp16 {
            self.stats().handshakes_rejected.inc();
            debug!(
                "cp={cp} loop={} did not offer {}",
                self.index,
                handshake::OCPP16
            );
            self.fail_connection(
                key,
                1002,
                "subprotocol ocpp1.6 required",
                CloseCause::NoSubprotocol,
            );
            return;
        }
        self.stats().handshakes_ok.inc();
        debug!("cp={cp} loop={} connected from {peer}", self.index);
        let conn_id = self.conn_id(key, generation);
        let seq = self.stats.sessions_opened.fetch_add(1, Ordering::Relaxed);
        self.processors.send_control(
            processor,
            Inbound::Connected {
                conn: conn_id,
                cp,
                seq,
                peer,
            },
        );
        let delay = self.ping_delay(0);
        self.arm(key, delay);
        // Anything that arrived right behind the upgrade request came with no new edge.
        self.read_messages(key);
    }

    /// Reads until `WouldBlock`, handing each text message on. Stops early while paused, and
    /// after [`READS_PER_TURN`] messages (the connection then waits on the ready list).
    fn read_messages(&mut self, key: usize) {
        for _ in 0..READS_PER_TURN {
            let now_ms = self.now_ms();
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let generation = conn.generation;
            let open = conn.is_open();
            let Some(session) = conn.session_mut() else {
                return;
            };
            if session.pending.is_some() {
                return;
            }
            let result = session.ws.read();
            if result.is_ok() {
                session.last_rx_ms = now_ms;
            }
            match result {
                Ok(Message::Text(text)) if open => self.on_text(key, generation, &text),
                // While closing, an answer to our call in flight still counts.
                Ok(Message::Text(text)) => {
                    if let Ok(frame @ (Frame::CallResult { .. } | Frame::CallError { .. })) =
                        rpc::parse_frame(&text)
                    {
                        self.on_response(key, frame);
                    }
                }
                Ok(Message::Binary(_)) if open => {
                    self.stats().binary_frames.inc();
                    self.close(
                        key,
                        1003,
                        "binary frames are not OCPP-J",
                        CloseCause::BinaryFrame,
                    );
                }
                // The peer closes: tungstenite queued our answer; wait (bounded) for it to go
                // out and for EOF, taking no more messages.
                Ok(Message::Close(_)) if open => self.enter_closing(key, CloseCause::PeerClosed),
                Ok(Message::Pong(_)) => self.stats().pongs_received.inc(),
                Ok(_) => {}
                Err(e) => {
                    self.fail(key, e);
                    return;
                }
            }
        }
        self.defer(key);
    }

    /// Puts `key` on the ready list: it is read again on the next iteration.
    fn defer(&mut self, key: usize) {
        if let Some(conn) = self.conns.get(key) {
            self.ready.push((key, conn.generation));
        }
    }

    /// Acts on a failed read, write or flush. True when it only would have blocked: the
    /// connection is still there and other directions may go on.
    fn fail(&mut self, key: usize, err: tungstenite::Error) -> bool {
        match classify(err) {
            Failure::Blocked => true,
            Failure::Gone(cause, why) => {
                self.remove(key, cause, &why);
                false
            }
            Failure::SlowConsumer => {
                self.close_slow_consumer(key, "slow consumer: write buffer full");
                false
            }
            Failure::Violation { code, reason } => {
                let (counter, cause) = match code {
                    1009 => (&self.stats().oversize_messages, CloseCause::MessageTooBig),
                    _ => (&self.stats().protocol_errors, CloseCause::ProtocolError),
                };
                counter.inc();
                self.fail_connection(key, code, reason, cause);
                false
            }
        }
    }

    /// The peer does not read what we send: drop it (a close frame could not get through).
    fn close_slow_consumer(&mut self, key: usize, why: &str) {
        self.stats().slow_consumers.inc();
        self.remove(key, CloseCause::SlowConsumer, why);
    }

    /// "Fail the WebSocket connection" (RFC 6455 7.1.7): a close frame, our side shut down,
    /// then [`State::Lingering`] until the peer's EOF or [`CLOSE_GRACE`].
    fn fail_connection(&mut self, key: usize, code: u16, reason: &'static str, cause: CloseCause) {
        let index = self.index;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let conn_id = ConnId {
            loop_index: index,
            key: key as u32,
            generation: conn.generation,
        };
        if let Some(timer) = conn.call_timer() {
            self.wheel.cancel(timer);
        }
        let (State::Open(session) | State::Closing(session)) =
            mem::replace(&mut conn.state, State::Detached)
        else {
            return self.remove(key, cause, reason);
        };
        let Session {
            mut ws,
            cp,
            processor,
            closing,
            ..
        } = session;
        let was_open = ws.can_write();
        if was_open {
            let _ = ws.close(Some(CloseFrame {
                code: code.into(),
                reason: reason.into(),
            }));
        }
        let socket = ws.into_inner();
        let linger =
            socket.unsent() == 0 && socket.tcp().shutdown(std::net::Shutdown::Write).is_ok();
        if linger {
            conn.state = State::Lingering(socket);
        }
        debug!("cp={cp} loop={index} failed: {reason}");
        self.session_ended(processor, conn_id, cp, closing.unwrap_or(cause));
        if !linger {
            return self.remove(key, cause, reason);
        }
        self.arm(key, CLOSE_GRACE);
        // The peer's EOF may already be in the socket, behind the edge we just consumed.
        self.defer(key);
    }

    /// Reads and discards what a failed connection still sends, until EOF.
    fn discard_input(&mut self, key: usize) {
        let Some(Connection {
            state: State::Lingering(socket),
            ..
        }) = self.conns.get_mut(key)
        else {
            return;
        };
        let mut scratch = [0u8; 1024];
        for _ in 0..READS_PER_TURN {
            match std::io::Read::read(socket, &mut scratch) {
                Ok(0) => {
                    return self.remove(key, CloseCause::PeerClosed, "closed after protocol error");
                }
                Ok(_) => {}
                Err(e) if would_block(&e) => return,
                Err(_) => {
                    return self.remove(
                        key,
                        CloseCause::ConnectionLost,
                        "reset after protocol error",
                    );
                }
            }
        }
        self.defer(key);
    }

    fn on_text(&mut self, key: usize, generation: u32, text: &str) {
        self.stats().messages_in.inc();
        if !self.traces.is_empty()
            && let Some(session) = self.conns.get_mut(key).and_then(Connection::session_mut)
            && self.traces.contains(&session.cp)
        {
            let text = escape_newlines(text);
            info!(target: TRACE_TARGET, "cp={} loop={} in: {text}", session.cp, self.index);
        }
        match rpc::parse_frame(text) {
            Ok(frame @ (Frame::CallResult { .. } | Frame::CallError { .. })) => {
                self.on_response(key, frame);
            }
            Ok(frame) => {
                let conn_id = self.conn_id(key, generation);
                let Some(session) = self.conns.get_mut(key).and_then(Connection::session_mut)
                else {
                    return;
                };
                let msg = Inbound::Frame {
                    conn: conn_id,
                    cp: Arc::clone(&session.cp),
                    frame,
                    received: self.now,
                };
                let processor = session.processor;
                if let Err(msg) = self.processors.try_send_frame(processor, msg) {
                    session.pending = Some(Box::new(msg));
                    self.paused[usize::from(processor)].push_back((key, generation));
                    self.stats().backpressure_pauses.inc();
                }
            }
            Err(FrameError::Answer {
                unique_id,
                code,
                description,
            }) => {
                self.stats().malformed_calls.inc();
                self.stats.loop_labelled[usize::from(self.index)].call_errors_by_code[code.index()]
                    .inc();
                let mut out = String::with_capacity(96 + description.len());
                rpc::write_call_error(&mut out, &unique_id, code, &description);
                self.write_text(key, out);
            }
            Err(FrameError::Unanswerable { reason }) => {
                self.stats().unanswerable_frames.inc();
                if self.warnings.allow(self.now_ms()) {
                    let cp = self.cp_of(key);
                    warn!("cp={cp} loop={} unanswerable message: {reason}", self.index);
                }
            }
            Err(FrameError::UnknownMessageType { message_type }) => {
                self.stats().ignored_frames.inc();
                debug!("loop={} ignored message type {message_type}", self.index);
            }
        }
    }

    fn cp_of(&mut self, key: usize) -> Arc<str> {
        self.conns
            .get_mut(key)
            .and_then(Connection::session_mut)
            .map_or_else(|| "-".into(), |s| Arc::clone(&s.cp))
    }

    fn write_text(&mut self, key: usize, text: String) {
        let Some(Connection {
            state: State::Open(session),
            ..
        }) = self.conns.get_mut(key)
        else {
            return;
        };
        if self.traces.contains(&session.cp) {
            let text = escape_newlines(&text);
            info!(target: TRACE_TARGET, "cp={} loop={} out: {text}", session.cp, self.index);
        }
        match session.ws.write(Message::text(text)) {
            Ok(()) => self.stats().messages_out.inc(),
            Err(e) => {
                if self.fail(key, e) {
                    self.stats().messages_out.inc(); // queued; a writable edge flushes it
                }
            }
        }
    }

    // ---- closing ----

    /// Sends a close frame and waits (bounded by [`CLOSE_GRACE`]) for the peer's.
    fn close(&mut self, key: usize, code: u16, reason: &'static str, cause: CloseCause) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match mem::replace(&mut conn.state, State::Detached) {
            State::Open(mut session) => {
                session.pending = None;
                session.closing = Some(cause);
                let frame = CloseFrame {
                    code: code.into(),
                    reason: reason.into(),
                };
                let result = session.ws.close(Some(frame));
                conn.state = State::Open(session);
                match result.map_err(classify) {
                    Ok(()) | Err(Failure::Blocked) => self.enter_closing(key, cause),
                    Err(_) => self.remove(key, cause, reason),
                }
            }
            State::Handshaking(_) => self.remove(key, cause, reason),
            other => conn.state = other,
        }
    }

    /// Open -> Closing: no more messages either way; the peer has [`CLOSE_GRACE`] to finish
    /// the closing handshake. Input that arrived while the connection was paused is read now.
    fn enter_closing(&mut self, key: usize, cause: CloseCause) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if let State::Open(mut session) = mem::replace(&mut conn.state, State::Detached) {
            session.pending = None;
            session.closing.get_or_insert(cause);
            conn.state = State::Closing(session);
            self.arm(key, CLOSE_GRACE);
            self.defer(key);
        }
    }

    /// Forgets the connection and closes its socket. `cause` is what a session's end is
    /// reported as, unless we had started closing it for a reason of our own.
    fn remove(&mut self, key: usize, cause: CloseCause, why: &str) {
        let Some(conn) = self.conns.try_remove(key) else {
            return;
        };
        if let Some(timer) = conn.timer {
            self.wheel.cancel(timer);
        }
        // Calls in flight or waiting resolve as NotConnected when the session is dropped.
        if let Some(timer) = conn.call_timer() {
            self.wheel.cancel(timer);
        }
        self.stats().closed.inc();
        if !conn.over_capacity {
            self.stats.connections.fetch_sub(1, Ordering::Relaxed);
            self.stats.loop_connections[usize::from(self.index)].fetch_sub(1, Ordering::Relaxed);
        } else {
            self.refusing -= 1;
        }
        if let State::Open(session) | State::Closing(session) = conn.state {
            debug!("cp={} loop={} disconnected: {why}", session.cp, self.index);
            let conn_id = self.conn_id(key, conn.generation);
            let cause = session.closing.unwrap_or(cause);
            self.session_ended(session.processor, conn_id, session.cp, cause);
        }
    }

    /// Counts a session's end and tells its processor (exactly once per upgraded connection).
    fn session_ended(
        &mut self,
        processor: u16,
        conn: ConnId,
        cp: ChargePointId,
        cause: CloseCause,
    ) {
        self.stats.loop_labelled[usize::from(self.index)].closes[cause.index()].inc();
        self.processors
            .send_control(processor, Inbound::Disconnected { conn, cp, cause });
    }

    // ---- timers ----

    fn arm(&mut self, key: usize, delay: Duration) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if let Some(old) = conn.timer.take() {
            self.wheel.cancel(old);
        }
        let event = TimerEvent::Connection {
            key: key as u32,
            generation: conn.generation,
        };
        conn.timer = Some(self.wheel.arm(self.now, delay, event));
    }

    /// The rest of the ping interval after `idle_ms` of silence, plus up to 1/16 of it as
    /// jitter so a fleet that reconnected together does not get pinged in waves.
    fn ping_delay(&mut self, idle_ms: u64) -> Duration {
        let interval_ms = self.config.websocket.ping_interval.as_millis() as u64;
        let jitter = self.random() % (interval_ms / 16 + 1);
        Duration::from_millis(interval_ms.saturating_sub(idle_ms) + jitter)
    }

    fn on_timer(&mut self, event: TimerEvent) {
        let (key, generation) = match event {
            TimerEvent::AcceptRetry => {
                self.accept_paused = false;
                return self.accept();
            }
            TimerEvent::Connection { key, generation } => (key as usize, generation),
            TimerEvent::CallTimeout { key, generation } => {
                return self.on_call_timeout(key as usize, generation);
            }
        };
        let now_ms = self.now_ms();
        let Some(conn) = self
            .conns
            .get_mut(key)
            .filter(|c| c.generation == generation)
        else {
            return;
        };
        conn.timer = None;
        match &mut conn.state {
            State::Handshaking(handshake) => {
                let _ = (&*handshake.tcp).write(handshake::REQUEST_TIMEOUT);
                if !conn.over_capacity {
                    self.stats().handshake_timeouts.inc();
                }
                self.remove(key, CloseCause::ConnectionLost, "handshake timeout");
            }
            State::Closing(_) | State::Lingering(_) => {
                self.remove(key, CloseCause::PeerClosed, "no close from peer");
            }
            State::Open(session) => match session.liveness {
                Liveness::Idle => self.ping_if_idle(key, now_ms),
                // A pong or anything else since the ping: alive.
                Liveness::AwaitingPong { sent_ms } if session.last_rx_ms >= sent_ms => {
                    session.liveness = Liveness::Idle;
                    self.ping_if_idle(key, now_ms);
                }
                Liveness::AwaitingPong { .. } => {
                    self.stats.loops[usize::from(self.index)]
                        .pong_timeouts
                        .inc();
                    debug!("cp={} loop={} pong timeout", session.cp, self.index);
                    // Best effort: a peer that does not answer pings will not read this.
                    let frame = CloseFrame {
                        code: 1001.into(),
                        reason: "pong timeout".into(),
                    };
                    let _ = session.ws.close(Some(frame));
                    self.remove(key, CloseCause::PongTimeout, "pong timeout");
                }
                Liveness::Stalled { since_ms, backlog } => {
                    // Flush first, so reading done by the peer shows even if an edge was missed.
                    let flushed = match session.ws.flush() {
                        Ok(()) => true,
                        Err(e) => matches!(classify(e), Failure::Blocked),
                    };
                    let unsent = session.ws.get_ref().unsent();
                    let progress = session.last_rx_ms >= since_ms || unsent < backlog as usize;
                    if flushed && progress {
                        session.liveness = Liveness::Idle;
                        self.ping_if_idle(key, now_ms);
                    } else {
                        self.close_slow_consumer(key, "slow consumer: no progress on its backlog");
                    }
                }
            },
            State::Detached => {}
        }
    }

    fn ping_if_idle(&mut self, key: usize, now_ms: u64) {
        let interval_ms = self.config.websocket.ping_interval.as_millis() as u64;
        let threshold = self.config.websocket.ping_skip_threshold;
        let Some(session) = self.conns.get_mut(key).and_then(Connection::session_mut) else {
            return;
        };
        let idle = now_ms.saturating_sub(session.last_rx_ms);
        if idle < interval_ms {
            let delay = self.ping_delay(idle);
            return self.arm(key, delay);
        }
        let backlog = session.ws.get_ref().unsent();
        if backlog > threshold {
            let backlog = u32::try_from(backlog).unwrap_or(u32::MAX);
            // A ping would only queue behind what the peer is not reading. It gets
            // `pong_timeout` to make progress on the backlog instead.
            session.liveness = Liveness::Stalled {
                since_ms: now_ms,
                backlog,
            };
            self.stats().pings_skipped.inc();
            let timeout = self.config.websocket.pong_timeout;
            return self.arm(key, timeout);
        }
        let result = session.ws.write(Message::Ping(Default::default()));
        session.liveness = Liveness::AwaitingPong { sent_ms: now_ms };
        self.stats().pings_sent.inc();
        let still_there = match result {
            Ok(()) => true,
            Err(e) => self.fail(key, e),
        };
        if still_there {
            let timeout = self.config.websocket.pong_timeout;
            self.arm(key, timeout);
        }
    }

    // ---- calls of the central system ----

    fn offer_call(&mut self, key: usize, call: OutboundCall) {
        let max_waiting = self.config.ocpp.max_queued_calls;
        let Some(Connection {
            state: State::Open(session),
            ..
        }) = self.conns.get_mut(key)
        else {
            return call.resolve(CallOutcome::NotConnected);
        };
        match session
            .calls
            .get_or_insert_with(Box::default)
            .offer(call, max_waiting)
        {
            Ok(Some(call)) => self.send_call(key, call),
            Ok(None) => {}
            Err(call) => {
                self.stats().calls_rejected.inc();
                call.resolve(CallOutcome::Rejected);
            }
        }
    }

    /// Sends `call` with a fresh UniqueId and arms its timeout.
    fn send_call(&mut self, key: usize, mut call: OutboundCall) {
        self.next_call_id = self.next_call_id.wrapping_add(1);
        let unique_id = format!("{}-{}", self.index, self.next_call_id);
        call.sent_as(&unique_id);
        let mut text = String::with_capacity(64 + call.payload().get().len());
        rpc::write_call(&mut text, &unique_id, call.action().name(), call.payload());
        let Some(conn) = self.conns.get_mut(key) else {
            return call.resolve(CallOutcome::NotConnected);
        };
        let event = TimerEvent::CallTimeout {
            key: key as u32,
            generation: conn.generation,
        };
        let Some(session) = conn.session_mut() else {
            return call.resolve(CallOutcome::NotConnected);
        };
        let overflowed = self.events.record_nowait(|| JournalEvent {
            at: SystemTime::now(),
            cp: Arc::clone(&session.cp),
            kind: EventKind::CallSent {
                unique_id: unique_id.clone(),
                action: call.action(),
                payload: call.payload().to_owned(),
            },
            ack: None,
        });
        if overflowed {
            self.stats.loops[usize::from(self.index)]
                .journal_overflow
                .inc();
        }
        self.stats.loop_labelled[usize::from(self.index)].calls_sent_by_action
            [call.action().index()]
        .inc();
        let timer = self
            .wheel
            .arm(self.now, self.config.ocpp.message_timeout, event);
        session
            .calls
            .get_or_insert_with(Box::default)
            .start(InFlight {
                unique_id,
                call,
                timer,
                sent_at: self.now,
            });
        self.stats().calls_sent.inc();
        self.write_text(key, text);
    }

    /// Sends the next waiting call, if nothing is in flight.
    fn send_next_call(&mut self, key: usize) {
        let next = self
            .conns
            .get_mut(key)
            .filter(|c| c.is_open())
            .and_then(Connection::session_mut)
            .and_then(|s| s.calls.as_mut())
            .and_then(|calls| calls.next_to_send());
        if let Some(call) = next {
            self.send_call(key, call);
        }
    }

    /// A CALLRESULT or CALLERROR from the charge point: the answer to our call in flight, or
    /// logged and dropped.
    fn on_response(&mut self, key: usize, frame: Frame) {
        let (unique_id, outcome) = match frame {
            Frame::CallResult { unique_id, payload } => (unique_id, CallOutcome::Result(payload)),
            Frame::CallError {
                unique_id,
                code,
                description,
                details,
            } => (
                unique_id,
                CallOutcome::Error {
                    code,
                    description,
                    details,
                },
            ),
            Frame::Call { .. } => return,
        };
        let in_flight = self
            .conns
            .get_mut(key)
            .and_then(Connection::session_mut)
            .and_then(|s| s.calls.as_mut())
            .and_then(|calls| calls.take_matching(&unique_id));
        let Some(InFlight {
            call,
            timer,
            sent_at,
            ..
        }) = in_flight
        else {
            self.stats().unexpected_responses.inc();
            if self.warnings.allow(self.now_ms()) {
                let cp = self.cp_of(key);
                warn!(
                    "cp={cp} loop={} answer to unknown call {unique_id:?} dropped",
                    self.index
                );
            }
            return;
        };
        self.wheel.cancel(timer);
        self.stats.loop_labelled[usize::from(self.index)]
            .round_trip
            .observe(self.now.saturating_duration_since(sent_at));
        self.journal_answer(key, &unique_id, call.action(), &outcome);
        let outcome = match outcome {
            CallOutcome::Result(payload) => match v16::validate_response(call.action(), &payload) {
                Ok(()) => {
                    self.stats().call_results.inc();
                    CallOutcome::Result(payload)
                }
                Err(invalid) => {
                    self.stats().invalid_results.inc();
                    CallOutcome::InvalidResult(invalid)
                }
            },
            other => {
                self.stats().call_errors_received.inc();
                other
            }
        };
        call.resolve(outcome);
        self.send_next_call(key);
    }

    /// Journals the charge point's answer to our call (the outcome is journaled on resolving).
    fn journal_answer(
        &mut self,
        key: usize,
        unique_id: &str,
        action: Action,
        answer: &CallOutcome,
    ) {
        if !self.events.is_on() {
            return;
        }
        let kind = match answer {
            CallOutcome::Result(payload) => EventKind::ResultReceived {
                unique_id: unique_id.to_owned(),
                action,
                payload: payload.clone(),
            },
            CallOutcome::Error {
                code,
                description,
                details,
            } => EventKind::ErrorReceived {
                unique_id: unique_id.to_owned(),
                action,
                code: code.clone(),
                description: description.clone(),
                details: details.clone(),
            },
            _ => return,
        };
        let cp = self.cp_of(key);
        let overflowed = self.events.record_nowait(|| JournalEvent {
            at: SystemTime::now(),
            cp,
            kind,
            ack: None,
        });
        if overflowed {
            self.stats().journal_overflow.inc();
        }
    }

    fn on_call_timeout(&mut self, key: usize, generation: u32) {
        let in_flight = self
            .conns
            .get_mut(key)
            .filter(|c| c.generation == generation)
            .and_then(Connection::session_mut)
            .and_then(|s| s.calls.as_mut())
            .and_then(|calls| calls.take_in_flight());
        if let Some(InFlight {
            call, unique_id, ..
        }) = in_flight
        {
            self.stats().call_timeouts.inc();
            debug!(
                "loop={} call {unique_id} ({}) timed out",
                self.index,
                call.action().name()
            );
            call.resolve(CallOutcome::Timeout);
            self.send_next_call(key);
        }
    }

    // ---- other threads ----

    fn drain_inbox(&mut self) {
        self.shared.clear_wake();
        self.inbox_more = false;
        for _ in 0..INBOX_BATCH {
            let Ok(msg) = self.inbox.try_recv() else {
                return;
            };
            match msg {
                ToLoop::Text { conn, text } => {
                    if let Some(key) = self.current(conn) {
                        self.write_text(key, text);
                    }
                }
                ToLoop::Call { conn, call } => match self.current(conn) {
                    Some(key) => self.offer_call(key, call),
                    None => call.resolve(CallOutcome::NotConnected),
                },
                ToLoop::Close { conn, reason } => {
                    if let Some(key) = self.current(conn) {
                        let open = self.conns.get(key).is_some_and(Connection::is_open);
                        if open && reason == crate::net::CloseReason::Takeover {
                            self.stats().takeovers.inc();
                        }
                        let (code, text) = reason.frame();
                        self.close(key, code, text, reason.cause());
                    }
                }
                ToLoop::Probe { seq } => {
                    self.stats.loop_alive[usize::from(self.index)].store(seq, Ordering::Relaxed);
                }
            }
        }
        self.inbox_more = true;
    }

    /// The slab key of `conn` if it is still the connection that id named.
    fn current(&self, conn: ConnId) -> Option<usize> {
        let key = conn.key as usize;
        self.conns
            .get(key)
            .filter(|c| c.generation == conn.generation)
            .map(|_| key)
    }

    /// Hands waiting frames over, oldest first per processor, stopping at the first one that
    /// still finds its queue full (so a long pause costs O(processors) per iteration).
    fn resume_paused(&mut self) {
        self.processors.flush();
        for (p, waiting) in self.paused.iter_mut().enumerate() {
            if self.processors.outbox[p].is_empty() {
                while let Some(&(key, generation)) = waiting.front() {
                    let session = self
                        .conns
                        .get_mut(key)
                        .filter(|c| c.generation == generation)
                        .and_then(Connection::session_mut);
                    let Some(msg) = session.and_then(|s| s.pending.take()) else {
                        waiting.pop_front(); // closed, or no longer paused
                        continue;
                    };
                    match self.processors.try_send_frame(p as u16, *msg) {
                        Ok(()) => {
                            waiting.pop_front();
                            self.ready.push((key, generation));
                        }
                        Err(msg) => {
                            if let Some(session) =
                                self.conns.get_mut(key).and_then(Connection::session_mut)
                            {
                                session.pending = Some(Box::new(msg));
                            }
                            break;
                        }
                    }
                }
            }
        }
    }

    // ---- shutdown ----

    /// Stops accepting, then asks a paced share of the connections to close each call.
    fn drain_step(&mut self) {
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
            let rate = self.config.server.drain_rate.get() as f64
                / self.config.server.workers.get() as f64;
            info!(
                "loop={} draining {} connections",
                self.index,
                self.conns.len()
            );
            self.drain = Some(Drain {
                started: self.now,
                closed: 0,
                cursor: 0,
                per_second: rate.max(1.0),
            });
        }
        let Some(drain) = &self.drain else { return };
        let elapsed = self.now.duration_since(drain.started).as_secs_f64();
        let allowed = (elapsed * drain.per_second) as u64 + 1;
        let (mut closed, mut cursor) = (drain.closed, drain.cursor);
        while closed < allowed {
            let next = (cursor..self.conns.capacity()).find(|&k| {
                self.conns
                    .get(k)
                    .is_some_and(|c| !matches!(c.state, State::Closing(_)))
            });
            let Some(key) = next else {
                cursor = self.conns.capacity();
                break;
            };
            cursor = key + 1;
            closed += 1;
            self.close(key, 1001, "server shutting down", CloseCause::Shutdown);
        }
        if let Some(drain) = &mut self.drain {
            drain.closed = closed;
            drain.cursor = cursor;
        }
    }
}
