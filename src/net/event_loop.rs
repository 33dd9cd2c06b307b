//! One event loop: a `mio::Poll` pinned to a core, its own `SO_REUSEPORT` listener, a slab of
//! [`Connection`]s and a timing wheel. It accepts, polls, dispatches socket events, timers and
//! mailbox messages to connections, and does what their [`Transition`]s say; what a connection
//! does lives in [`session`](crate::net::session).
//!
//! Sockets are registered once, readable and writable, edge-triggered: a read that returns less
//! than the buffer drained the socket (the next arrival raises a new edge), and a writable edge
//! (which the kernel only reports after a write was refused) flushes what the kernel refused.
//! So the interest never changes and costs no syscall, and a message costs one read.
//!
//! One iteration: poll; socket events; connections served again; hand this turn's messages
//! to the processors (one batch and at most one wake per processor); the mailbox (answers,
//! closes, calls); due timers; paused connections whose reason cleared; hand over what those
//! produced; on shutdown, close a paced share of connections. The loop ends when shutdown was
//! asked, its slab is empty and every disconnect has reached its processor.

use std::mem;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use log::{error, info, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::batch::{Pool, ReplyBatch};
use crate::call::CallOutcome;

use crate::config::{Config, ListenerConfig};
use crate::events::Events as EventSinkHandle;
use crate::mailbox::{LoopShared, Processors, ToLoop};
use crate::net::context::{LoopContext, TimerEvent};
use crate::net::session::{Connection, Pause, Transition};
use crate::net::timer::TimerWheel;
use crate::policy::Identities;
use crate::security::{Profile, Security};
use crate::stats::Stats;
use crate::trace::TraceList;
use crate::types::{CloseCause, CloseReason, ConnId, Protocols};

mod accept;
mod holders;

pub const WAKER: Token = Token(usize::MAX - 2);
/// Listener `i` is `Token(LISTENER_BASE + i)`; connection keys stay below 2^32.
const LISTENER_BASE: usize = 1 << 40;

/// Wheel resolution: timers fire at most this late (plus poll latency).
pub const TIMER_TICK: Duration = Duration::from_millis(10);
/// 4096 slots of 10 ms: one revolution is 41 s, so a 60 s ping timer is visited twice.
pub const TIMER_SLOTS: usize = 4096;
/// After EMFILE and friends, accepting is retried after this long instead of spinning.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Accepts per iteration before the loop turns to its other work (a connect storm must not
/// starve the connections already open).
const ACCEPT_BATCH: usize = 512;
/// Mailbox messages handled per iteration, for the same reason.
const INBOX_BATCH: usize = 4096;
/// Over-capacity handshakes answered 503 at once per loop; beyond this they are dropped unanswered.
const MAX_REFUSING: usize = 256;
/// How long a stopping loop waits for its processors to take the last disconnects.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// Everything a loop needs, built by the server before the thread starts.
pub struct LoopParts {
    pub index: u16,
    pub poll: Poll,
    /// This loop's socket for each listener, with the listener's settings.
    pub listeners: Vec<(TcpListener, ListenerConfig)>,
    pub inbox: Receiver<ToLoop>,
    pub shared: Arc<LoopShared>,
    pub processors: Processors,
    pub replies: Pool<ReplyBatch>,
    pub config: Arc<Config>,
    pub stats: Arc<Stats>,
    /// When set, identities outside it are refused at the handshake (HTTP 404).
    pub known_identities: Option<Arc<Identities>>,
    pub events: EventSinkHandle,
    pub traces: Arc<TraceList>,
    pub security: Arc<Security>,
}

/// One of the loop's listening sockets.
struct Listening {
    socket: TcpListener,
    profile: Profile,
    proxy_protocol: bool,
    /// TLS is done by the balancer in front (then the socket speaks plain TCP).
    tls_offload: bool,
    protocols: Protocols,
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
    poll: Poll,
    /// Emptied when draining starts.
    listeners: Vec<Listening>,
    conns: Slab<Connection>,
    cx: LoopContext,
    inbox: Receiver<ToLoop>,
    shared: Arc<LoopShared>,
    replies: Pool<ReplyBatch>,
    config: Arc<Config>,
    next_generation: u32,
    /// Connections to serve again next iteration (edge-triggered: no new event will come for
    /// input left behind); `ready_next` is its spare.
    ready: Vec<(usize, u32)>,
    ready_next: Vec<(usize, u32)>,
    refusing: usize,
    accept_more: bool,
    /// Accepting failed for lack of descriptors; a retry timer is armed.
    accept_paused: bool,
    /// Upgrading connections this iteration may still serve (`server.handshakes_per_turn`:
    /// a TLS handshake costs the loop 0.1-0.3 ms, so a reconnect storm would otherwise put
    /// whole milliseconds of handshakes between a connected charge point's message and its
    /// answer; the rest wait on the ready list for the next iteration).
    handshake_budget: u32,
    handshakes_per_turn: u32,
    inbox_more: bool,
    /// A batch could not be handed to its processor yet.
    batches_held: bool,
    drain: Option<Drain>,
}

impl EventLoop {
    pub fn new(parts: LoopParts) -> std::io::Result<EventLoop> {
        let LoopParts {
            index,
            poll,
            listeners,
            inbox,
            shared,
            processors,
            replies,
            config,
            stats,
            known_identities,
            events,
            traces,
            security,
        } = parts;
        let mut listening = Vec::with_capacity(listeners.len());
        for (i, (mut socket, settings)) in listeners.into_iter().enumerate() {
            poll.registry()
                .register(&mut socket, Token(LISTENER_BASE + i), Interest::READABLE)?;
            listening.push(Listening {
                socket,
                profile: settings.profile,
                proxy_protocol: settings.proxy_protocol,
                tls_offload: settings.tls_offload,
                protocols: settings.protocols,
            });
        }
        let wheel = TimerWheel::new(Instant::now(), TIMER_TICK, TIMER_SLOTS);
        let cx = LoopContext::new(
            index,
            &config,
            stats,
            processors,
            known_identities,
            events,
            traces,
            security,
            wheel,
        );
        let handshakes_per_turn = config.server.handshakes_per_turn;
        Ok(EventLoop {
            poll,
            listeners: listening,
            conns: Slab::new(),
            cx,
            inbox,
            shared,
            replies,
            config,
            next_generation: 1,
            ready: Vec::new(),
            ready_next: Vec::new(),
            refusing: 0,
            accept_more: false,
            accept_paused: false,
            handshake_budget: handshakes_per_turn,
            handshakes_per_turn,
            inbox_more: false,
            batches_held: false,
            drain: None,
        })
    }

    /// Runs until shutdown was requested and every connection is closed.
    pub fn run(mut self) {
        self.run_until_drained();
        self.release_all();
    }

    fn index(&self) -> u16 {
        self.cx.index
    }

    fn run_until_drained(&mut self) {
        let mut events = Events::with_capacity(1024);
        info!("loop={} running", self.index());
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                error!("loop={} poll failed, stopping: {e}", self.index());
                return;
            }
            self.cx.begin_turn(Instant::now());
            self.handshake_budget = self.handshakes_per_turn;
            self.cx.stats.loop_progress[usize::from(self.index())].fetch_add(1, Ordering::Relaxed);
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    Token(token) if token >= LISTENER_BASE => self.accept(token - LISTENER_BASE),
                    Token(key) => self.on_socket_event(
                        key,
                        event.is_readable(),
                        event.is_read_closed() || event.is_error(),
                        event.is_writable(),
                    ),
                }
            }
            if self.accept_more {
                self.accept_all();
            }
            self.serve_ready();
            // What this turn read goes to the processors before anything else is done.
            self.batches_held = self.cx.links.flush(self.cx.now, false);
            self.drain_inbox();
            while let Some(timer) = self.cx.wheel.poll_expired(self.cx.now) {
                self.on_timer(timer);
            }
            self.resume_waiting();
            let draining = self.drain.is_some();
            self.batches_held = self.cx.links.flush(self.cx.now, draining);
            if self.batches_held || self.cx.links.is_backlogged() {
                // Room at a processor comes as a wake from it; room it made before the ask,
                // this second look sees.
                self.cx.links.want_room(self.index());
                self.resume_waiting();
                self.batches_held = self.cx.links.flush(self.cx.now, draining);
            }
            self.forget_handshakes();
            self.publish_gauges();
            if self.shared.shutdown_requested() {
                self.drain_step();
                // Every disconnect must reach its processor before we go; meanwhile the mailbox
                // keeps draining, so a processor waiting on us can move.
                if self.conns.is_empty() && !self.batches_held && self.cx.links.lazy_due().is_none()
                {
                    break;
                }
            }
        }
        info!("loop={} stopped", self.index());
    }

    /// Whatever ended the loop, every connection is accounted for: gauges go down and the
    /// processors hear of each disconnect.
    fn release_all(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.remove(key, CloseCause::Shutdown);
        }
        // The disconnects must reach the processors: wait for room (their wakes), draining
        // the mailbox meanwhile so a processor waiting on this loop can move; bounded, since a
        // processor that has stopped frees nothing.
        let deadline = Instant::now() + RELEASE_WAIT;
        let mut events = Events::with_capacity(16);
        while self.cx.links.flush(Instant::now(), true) {
            self.cx.links.want_room(self.index());
            if !self.cx.links.flush(Instant::now(), true) {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                warn!(
                    "loop={} stopped with disconnects its processors did not take",
                    self.index()
                );
                break;
            }
            let _ = self.poll.poll(&mut events, Some(left));
            self.drain_inbox();
        }
        self.publish_gauges();
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if self.accept_more || self.inbox_more || !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut timeout = self.cx.wheel.next_timeout(self.cx.now);
        let mut cap = |limit: Duration| {
            timeout = Some(timeout.map_or(limit, |t| t.min(limit)));
        };
        if let Some(due) = self.cx.links.lazy_due() {
            cap(due.saturating_duration_since(self.cx.now));
        }
        if let Some(std::cmp::Reverse((due_ms, _, _))) = self.cx.rate_waiting.peek() {
            cap(Duration::from_millis(
                due_ms.saturating_sub(self.cx.now_ms()),
            ));
        }
        // Nothing else bounds the wait: room at a processor comes as its wake (`want_room`),
        // room under the partial-message budget only from this loop's own work, after which
        // `resume_waiting` runs in the same turn.
        // Draining: the next connection's turn to close, at the drain's pace (a shutdown
        // request wakes the loop itself; once every connection was asked, their closes come
        // as events and close-grace timers).
        if let Some(drain) = &self.drain
            && drain.cursor < self.conns.capacity()
        {
            let next =
                drain.started + Duration::from_secs_f64(drain.closed as f64 / drain.per_second);
            cap(next.saturating_duration_since(self.cx.now));
        }
        timeout
    }

    fn publish_gauges(&self) {
        let gauges = &self.cx.stats.loop_buffered[usize::from(self.index())];
        gauges.read.store(
            self.cx.wire.buffered.read + self.cx.wire.buffered.upgrading,
            Ordering::Relaxed,
        );
        gauges
            .write
            .store(self.cx.wire.buffered.write, Ordering::Relaxed);
    }

    /// Does what a connection's transition says.
    fn act(&mut self, key: usize, transition: Transition) {
        if !matches!(transition, Transition::Remove(_)) {
            self.note_holder(key);
        }
        match transition {
            Transition::Continue => {}
            Transition::Again => {
                if let Some(conn) = self.conns.get(key) {
                    self.ready.push((key, conn.generation));
                }
            }
            Transition::Pause(pause) => {
                let Some(conn) = self.conns.get_mut(key) else {
                    return;
                };
                conn.paused = Some(pause);
                let entry = (key, conn.generation);
                match pause {
                    Pause::Processor(p, bytes) => {
                        self.cx.stats().backpressure_pauses.inc();
                        if let Some(waiting) = self.cx.links.waiting.get_mut(usize::from(p)) {
                            waiting.push_back((entry.0, entry.1, bytes));
                            self.cx.links.handle(p).queue.wait();
                        }
                    }
                    Pause::Budget => {
                        self.cx.stats().budget_pauses.inc();
                        self.cx.budget_waiting.push_back(entry);
                    }
                    // Resumed by the answer that brings it under the limit.
                    Pause::Calls => self.cx.stats().pipelining_pauses.inc(),
                    // Resumed when its next CALL fits (counted where it was decided).
                    Pause::Rate => {}
                }
            }
            Transition::Remove(cause) => self.remove(key, cause),
            Transition::MakeRoom { read_on } => self.make_room(key, read_on),
        }
    }

    /// The slab key of `conn` if it is still the connection that id named.
    fn current(&self, conn: ConnId) -> Option<usize> {
        let key = conn.key as usize;
        self.conns
            .get(key)
            .filter(|c| c.generation == conn.generation)
            .map(|_| key)
    }

    /// Forgets the connection and closes its socket.
    fn remove(&mut self, key: usize, cause: CloseCause) {
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
        conn.finish(&mut self.cx, key, cause);
        self.cx.stats().closed.inc();
        if conn.over_capacity {
            self.refusing -= 1;
        } else {
            self.cx.stats.connections.fetch_sub(1, Ordering::Relaxed);
            self.cx.stats.loop_connections[usize::from(self.index())]
                .fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn serve_ready(&mut self) {
        mem::swap(&mut self.ready, &mut self.ready_next);
        let mut batch = mem::take(&mut self.ready_next);
        for (key, generation) in batch.drain(..) {
            let Some(upgrading) = self
                .conns
                .get(key)
                .filter(|c| c.generation == generation)
                .map(Connection::is_upgrading)
            else {
                continue;
            };
            if upgrading && !self.spend_handshake() {
                self.ready.push((key, generation));
                continue;
            }
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            let transition = conn.on_readable(&mut self.cx, key);
            self.act(key, transition);
        }
        self.ready_next = batch;
    }

    /// Moves connections whose pause reason cleared back to the ready list.
    fn resume_waiting(&mut self) {
        let now_ms = self.cx.now_ms();
        while let Some(&std::cmp::Reverse((due, key, generation))) = self.cx.rate_waiting.peek() {
            if due > now_ms {
                break;
            }
            self.cx.rate_waiting.pop();
            self.resume((key, generation), Pause::Rate);
        }
        // Connections waiting for a processor come back oldest first, as many as its queue
        // has room for the messages they wait to hand on (resuming one without room would
        // only pause it again).
        for p in 0..self.cx.links.count() {
            let mut reserved = 0;
            while let Some(&(key, generation, bytes)) = self.cx.links.waiting[p].front() {
                if !self.cx.links.has_room(p as u16, reserved + bytes as usize) {
                    break;
                }
                self.cx.links.waiting[p].pop_front();
                self.cx.links.handle(p as u16).queue.unwait();
                if self.resume((key, generation), Pause::Processor(p as u16, bytes)) {
                    reserved += bytes as usize;
                }
            }
        }
        // Connections waiting for room come back oldest first, one per largest message the
        // room could take (at least one whenever there is any), not all at once.
        if !self.cx.over_budget() {
            let mut room = self
                .cx
                .limits
                .partial_budget
                .saturating_sub(self.cx.wire.buffered.read);
            let mut resumed = false;
            while let Some(&entry) = self.cx.budget_waiting.front() {
                if resumed && room < self.cx.limits.max_message {
                    break;
                }
                self.cx.budget_waiting.pop_front();
                if self.resume(entry, Pause::Budget) {
                    resumed = true;
                    room = room.saturating_sub(self.cx.limits.max_message);
                }
            }
        }
    }

    /// Serves a parked connection again if it still waits for `pause`; false if not.
    fn resume(&mut self, (key, generation): (usize, u32), pause: Pause) -> bool {
        if let Some(conn) = self.conns.get_mut(key)
            && conn.generation == generation
            && conn.paused == Some(pause)
        {
            conn.paused = None;
            self.ready.push((key, generation));
            return true;
        }
        false
    }

    // ---- socket events ----

    fn on_socket_event(&mut self, key: usize, readable: bool, hangup: bool, writable: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.hangup |= hangup;
        let readable = readable || hangup;
        if writable {
            let transition = conn.on_writable(&mut self.cx);
            if transition != Transition::Continue {
                return self.act(key, transition);
            }
        }
        if !readable {
            return;
        }
        let Some((upgrading, generation)) = self
            .conns
            .get(key)
            .map(|c| (c.is_upgrading(), c.generation))
        else {
            return;
        };
        if upgrading && !self.spend_handshake() {
            // Its edge is gone: the ready list brings it back next iteration.
            self.ready.push((key, generation));
            return;
        }
        if let Some(conn) = self.conns.get_mut(key) {
            let transition = conn.on_readable(&mut self.cx, key);
            self.act(key, transition);
        }
    }

    /// Takes one upgrading connection's turn from this iteration's budget; false when spent.
    fn spend_handshake(&mut self) -> bool {
        let left = self.handshake_budget > 0;
        self.handshake_budget = self.handshake_budget.saturating_sub(1);
        if !left {
            self.cx.stats().handshakes_deferred.inc();
        }
        left
    }

    // ---- timers ----

    fn on_timer(&mut self, event: TimerEvent) {
        let (key, generation, call) = match event {
            TimerEvent::AcceptRetry => {
                self.accept_paused = false;
                return self.accept_all();
            }
            TimerEvent::Connection { key, generation } => (key as usize, generation, false),
            TimerEvent::CallTimeout { key, generation } => (key as usize, generation, true),
        };
        let Some(conn) = self
            .conns
            .get_mut(key)
            .filter(|c| c.generation == generation)
        else {
            return;
        };
        let transition = if call {
            conn.on_call_timeout(&mut self.cx, key)
        } else {
            conn.on_timer(&mut self.cx, key)
        };
        self.act(key, transition);
    }

    // ---- other threads ----

    /// Takes what other threads sent, then, if processors' answers came, reads the wall clock
    /// again: they were stamped before it, so a Heartbeat the loop answers after one of them
    /// never carries an earlier time.
    fn drain_inbox(&mut self) {
        if self.receive_inbox() {
            self.cx.read_wall();
        }
    }

    /// True when processors' answers were delivered.
    fn receive_inbox(&mut self) -> bool {
        self.shared.clear_wake();
        self.inbox_more = false;
        let mut answers = false;
        for _ in 0..INBOX_BATCH {
            let Ok(msg) = self.inbox.try_recv() else {
                return answers;
            };
            match msg {
                ToLoop::Replies(batch) => {
                    answers = true;
                    for reply in batch.replies() {
                        let Some(key) = self.current(reply.conn) else {
                            continue;
                        };
                        let conn = &mut self.conns[key];
                        let transition =
                            conn.deliver(&mut self.cx, batch.frame(reply), reply.accepted);
                        self.act(key, transition);
                    }
                    self.replies.give(batch);
                }
                ToLoop::Call { conn, call } => match self.current(conn) {
                    Some(key) => {
                        let transition = self.conns[key].offer_call(&mut self.cx, key, call);
                        self.act(key, transition);
                    }
                    None => call.resolve(CallOutcome::NotConnected),
                },
                ToLoop::Close { conn, reason } => {
                    if let Some(key) = self.current(conn) {
                        let entry = &mut self.conns[key];
                        if entry.is_open() && reason == CloseReason::Takeover {
                            self.cx.stats().takeovers.inc();
                        }
                        let (code, text) = reason.frame();
                        let transition = entry.close(&mut self.cx, key, code, text, reason.cause());
                        self.act(key, transition);
                    }
                }
                ToLoop::Probe { seq } => {
                    self.cx.stats.loop_alive[usize::from(self.index())]
                        .store(seq, Ordering::Relaxed);
                }
                ToLoop::SweepRevoked => self.close_revoked(),
            }
        }
        self.inbox_more = true;
        answers
    }

    /// Closes (1008) the open connections whose client certificate the current CRLs revoke.
    fn close_revoked(&mut self) {
        let Some(configs) = self.cx.security.tls.as_ref().map(|tls| tls.current()) else {
            return;
        };
        let revoked: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, conn)| conn.is_open())
            .filter(|(_, conn)| {
                let id = conn.transport.tls().and_then(|t| t.client_certificate_id());
                id.is_some_and(|id| configs.revoked.contains(&id))
            })
            .map(|(key, _)| key)
            .collect();
        for key in revoked {
            self.cx.stats().certificates_revoked.inc();
            let reason = CloseReason::CertificateRevoked;
            let (code, text) = reason.frame();
            let transition = self.conns[key].close(&mut self.cx, key, code, text, reason.cause());
            self.act(key, transition);
        }
    }

    // ---- shutdown ----

    /// Stops accepting, then asks a paced share of the connections to close each call.
    fn drain_step(&mut self) {
        if self.drain.is_none() {
            for mut listening in self.listeners.drain(..) {
                let _ = self.poll.registry().deregister(&mut listening.socket);
            }
            let rate = f64::from(self.config.server.drain_rate.get())
                / self.config.server.workers.get() as f64;
            info!(
                "loop={} draining {} connections",
                self.index(),
                self.conns.len()
            );
            self.drain = Some(Drain {
                started: self.cx.now,
                closed: 0,
                cursor: 0,
                per_second: rate.max(1.0),
            });
        }
        let Some(drain) = &self.drain else { return };
        let elapsed = self.cx.now.duration_since(drain.started).as_secs_f64();
        let allowed = (elapsed * drain.per_second) as u64 + 1;
        let (mut closed, mut cursor) = (drain.closed, drain.cursor);
        while closed < allowed {
            let next = (cursor..self.conns.capacity()).find(|&k| self.conns.get(k).is_some());
            let Some(key) = next else {
                cursor = self.conns.capacity();
                break;
            };
            cursor = key + 1;
            closed += 1;
            let transition = self.conns[key].close(
                &mut self.cx,
                key,
                1001,
                "server shutting down",
                CloseCause::Shutdown,
            );
            self.act(key, transition);
        }
        if let Some(drain) = &mut self.drain {
            drain.closed = closed;
            drain.cursor = cursor;
        }
    }
}
