//! One fleet thread: a `mio::Poll` driving its share of the simulated charge points (global
//! index `i` belongs to thread `i % threads`), with no thread or task per connection.
//!
//! Sockets are registered once, readable and writable, edge-triggered: reads drain until
//! `WouldBlock` (at most [`READS_PER_TURN`] messages, then the charge point waits on the ready
//! list so one busy socket cannot starve the others), and a writable edge flushes what
//! tungstenite kept. Each charge point has one timer entry ([`Deadlines`]); connects go through
//! a queue paced by `--connect-rate` and `--max-inflight-handshakes`.
//!
//! One iteration: poll; socket events; ready list; commands from the coordinator; connects;
//! due timers; once a second, the last second's round trips to the coordinator.
//!
//! The gauges (`inflight`, `open`, `booted`) change in exactly two places each:
//! [`FleetLoop::take_link`]/[`FleetLoop::put_link`] and [`FleetLoop::set_booted`].

mod connect;
mod exchange;

use std::collections::{HashMap, VecDeque};
use std::mem;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use basics::Rng;
use basics::WarnBudget;
use hdrhistogram::Histogram;
use log::{error, warn};
use mio::{Events, Poll};
use transport::Wire;

use crate::charge_point::{Boot, ChargePoint, Link};
use crate::cli::RunConfig;
use crate::deadlines::Deadlines;
use crate::messages::Outgoing;
use crate::pacer::Pacer;
use crate::scenario::{NEVER, Reply, Timings};
use crate::stats::{self, ErrorKind, Latencies, ThreadCounters};
use exchange::Pump;
pub use exchange::{ClientConn, READ_BUFFER};

/// The token of the coordinator's waker; charge point keys are below `u32::MAX`.
pub const WAKER: mio::Token = mio::Token(usize::MAX - 1);
/// Timers handled per iteration; the rest wait for the next one (poll returns at once).
const TIMERS_PER_TURN: usize = 65_536;
/// How often the live round-trip histogram goes to the coordinator.
const WINDOW_US: u64 = 1_000_000;
/// Warnings per second per thread; the rest are only counted.
const WARNINGS_PER_SECOND: u32 = 10;

/// What the coordinator asks of a fleet thread (followed by a wake).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToFleet {
    /// The measured phase starts: forget the round trips so far.
    Measure,
    /// Drop every connection and reconnect at once (a new boot epoch starts).
    Storm,
    /// Close everything and end.
    Stop,
}

/// What a fleet thread tells the coordinator.
#[derive(Debug)]
pub enum FromFleet {
    /// Every charge point of the thread is booted, for the first time in this epoch.
    AllBooted { thread: u16, epoch: u32, at_us: u64 },
    /// The round trips of the last second.
    Window { round_trip: Box<Histogram<u64>> },
    /// The thread ended.
    Finished(Box<ThreadResult>),
}

#[derive(Debug)]
pub struct ThreadResult {
    pub thread: u16,
    pub latencies: Latencies,
}

/// Everything a fleet thread needs, built before it starts.
pub struct FleetParts {
    pub thread: u16,
    pub poll: Poll,
    pub config: Arc<RunConfig>,
    pub counters: Arc<ThreadCounters>,
    pub events: Sender<FromFleet>,
    pub commands: Receiver<ToFleet>,
    /// Shared by all threads and the coordinator: times compare across threads.
    pub origin: Instant,
}

pub struct FleetLoop {
    thread: u16,
    poll: Poll,
    config: Arc<RunConfig>,
    timings: Timings,
    cps: Vec<ChargePoint>,
    deadlines: Deadlines,
    connect_queue: VecDeque<u32>,
    pacer: Pacer,
    max_inflight: u32,
    inflight: u32,
    booted: u32,
    /// Charge points that may have more input than one turn read.
    ready: Vec<u32>,
    counters: Arc<ThreadCounters>,
    latencies: Latencies,
    window: Histogram<u64>,
    next_window_at: u64,
    events: Sender<FromFleet>,
    commands: Receiver<ToFleet>,
    origin: Instant,
    now: u64,
    rng: Rng,
    epoch: u32,
    all_booted_sent: bool,
    stopping: bool,
    /// A CALL of ours being written.
    text: String,
    /// An answer of ours being written.
    answer: Vec<u8>,
    /// Frames being written (masked, as a client must).
    frame: Vec<u8>,
    /// Where reads land (one per thread: a connection keeps only an unfinished frame).
    read_buf: Box<[u8]>,
    /// Bytes connections hold (unfinished input, write backlogs), and the buffers TLS borrows.
    wire: Wire,
    /// Client-certificate configurations by identity (`--client-cert-dir`), loaded once.
    tls_configs: HashMap<String, Arc<rustls::ClientConfig>>,
    warnings: WarnBudget,
}

impl FleetLoop {
    pub fn new(parts: FleetParts) -> FleetLoop {
        let FleetParts {
            thread,
            poll,
            config,
            counters,
            events,
            commands,
            origin,
        } = parts;
        let threads = u32::from(config.threads);
        let timings = Timings::new(&config.scenario);
        let cps: Vec<ChargePoint> = (u32::from(thread)..config.connections)
            .step_by(threads as usize)
            .map(|index| ChargePoint::new(index, config.version_of(index), timings.plan()))
            .collect();
        let connect_queue = (0..cps.len() as u32).collect();
        let now = micros_since(origin);
        FleetLoop {
            thread,
            poll,
            pacer: Pacer::new(config.connect_rate.map(|r| r / f64::from(threads)), now),
            max_inflight: config.max_inflight_handshakes.div_ceil(threads).max(1),
            rng: Rng::new(config.seed.wrapping_mul(0x1000_0000_01B3) ^ u64::from(thread)),
            config,
            timings,
            cps,
            deadlines: Deadlines::default(),
            connect_queue,
            inflight: 0,
            booted: 0,
            ready: Vec::new(),
            counters,
            latencies: Latencies::new(),
            window: stats::histogram(),
            next_window_at: now + WINDOW_US,
            events,
            commands,
            origin,
            now,
            epoch: 0,
            all_booted_sent: false,
            stopping: false,
            text: String::with_capacity(512),
            answer: Vec::with_capacity(512),
            frame: Vec::with_capacity(512),
            read_buf: vec![0; exchange::READ_BUFFER].into_boxed_slice(),
            wire: Wire::new(exchange::MAX_WRITE_BUFFER),
            tls_configs: HashMap::new(),
            warnings: WarnBudget::new(WARNINGS_PER_SECOND),
        }
    }

    /// Runs until the coordinator says stop (or the coordinator is gone), then closes every
    /// connection and reports.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        self.report_if_all_booted();
        while !self.stopping {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                error!("thread={} poll failed, stopping: {e}", self.thread);
                break;
            }
            self.tick();
            for event in events.iter() {
                if event.token() == WAKER {
                    continue;
                }
                let Ok(key) = u32::try_from(event.token().0) else {
                    continue;
                };
                self.on_socket_event(
                    key,
                    event.is_readable(),
                    event.is_read_closed() || event.is_error(),
                    event.is_writable() || event.is_error(),
                );
            }
            self.serve_ready();
            self.handle_commands();
            self.start_connects();
            self.fire_timers();
            self.send_window();
        }
        self.close_all();
        let result = ThreadResult {
            thread: self.thread,
            latencies: mem::take(&mut self.latencies),
        };
        let _ = self.events.send(FromFleet::Finished(Box::new(result)));
    }

    fn tick(&mut self) {
        self.now = micros_since(self.origin);
    }

    fn poll_timeout(&self) -> Duration {
        if !self.ready.is_empty() {
            return Duration::ZERO;
        }
        let mut next = self.deadlines.next_time().unwrap_or(NEVER);
        next = next.min(self.next_window_at);
        if !self.connect_queue.is_empty() && self.inflight < self.max_inflight {
            next = next.min(self.pacer.next_token_at(self.now));
        }
        Duration::from_micros(next.saturating_sub(self.now))
    }

    fn identity(&self, key: u32) -> String {
        self.config.identity(self.cps[key as usize].index)
    }

    fn warn_limited(&mut self, key: u32, what: std::fmt::Arguments<'_>) {
        if self.warnings.allow(self.now / 1000) {
            warn!("cp={} thread={} {what}", self.identity(key), self.thread);
        }
    }

    // ---- gauges ----

    /// Takes the connection out of the charge point (leaving `Down`), adjusting the gauges.
    fn take_link(&mut self, key: u32) -> Link {
        let link = mem::replace(&mut self.cps[key as usize].link, Link::Down);
        if link.is_inflight() {
            self.inflight -= 1;
            ThreadCounters::dec(&self.counters.inflight);
        } else if matches!(link, Link::Open(_)) {
            ThreadCounters::dec(&self.counters.open);
        }
        link
    }

    /// Puts a connection into a charge point whose link was taken, adjusting the gauges.
    fn put_link(&mut self, key: u32, link: Link) {
        if link.is_inflight() {
            self.inflight += 1;
            ThreadCounters::inc(&self.counters.inflight);
        } else if matches!(link, Link::Open(_)) {
            ThreadCounters::inc(&self.counters.open);
        }
        let slot = &mut self.cps[key as usize].link;
        debug_assert!(matches!(slot, Link::Down), "put_link over a live link");
        *slot = link;
    }

    fn set_booted(&mut self, key: u32, booted: bool) {
        let cp = &mut self.cps[key as usize];
        let was = cp.boot == Boot::Accepted;
        if booted && !was {
            cp.boot = Boot::Accepted;
            self.booted += 1;
            ThreadCounters::inc(&self.counters.booted);
        } else if !booted && was {
            cp.boot = Boot::NotSent;
            self.booted -= 1;
            ThreadCounters::dec(&self.counters.booted);
        }
    }

    fn report_if_all_booted(&mut self) {
        if !self.all_booted_sent && self.booted as usize == self.cps.len() {
            self.all_booted_sent = true;
            let _ = self.events.send(FromFleet::AllBooted {
                thread: self.thread,
                epoch: self.epoch,
                at_us: self.now,
            });
        }
    }

    // ---- timers ----

    fn rearm(&mut self, key: u32) {
        let cp = &mut self.cps[key as usize];
        let at = cp.wake_at(self.now);
        self.deadlines.arm(key, &mut cp.armed, at);
    }

    fn fire_timers(&mut self) {
        for _ in 0..TIMERS_PER_TURN {
            let Some((at, key)) = self.deadlines.pop_due(self.now) else {
                return;
            };
            let Some(cp) = self.cps.get_mut(key as usize) else {
                continue;
            };
            if cp.armed != at {
                continue; // superseded by an earlier entry
            }
            cp.armed = NEVER;
            self.on_wake(key);
        }
    }

    fn on_wake(&mut self, key: u32) {
        let now = self.now;
        let cp = &mut self.cps[key as usize];
        match &cp.link {
            Link::Down if cp.link_deadline <= now => self.reconnect_now(key),
            Link::Connecting(_) | Link::Handshaking(_) if cp.link_deadline <= now => {
                let timeout = self.config.handshake_timeout;
                self.fail(
                    key,
                    ErrorKind::HandshakeTimeout,
                    &format!("no upgrade in {timeout:?}"),
                );
            }
            Link::Open(_) => {
                if let Some(call) = cp.call.filter(|c| c.deadline_us <= now) {
                    cp.call = None;
                    self.counters.error(ErrorKind::CallTimeout);
                    let name = call.msg.name(cp.version);
                    self.warn_limited(key, format_args!("no answer to {name}"));
                    if call.msg == Outgoing::BootNotification {
                        self.retry_boot(key, 0);
                    } else {
                        self.reply_to_plan(key, Reply::Failed);
                    }
                }
                self.pump(key, Pump::Other);
            }
            _ => {}
        }
        self.rearm(key);
    }

    // ---- the coordinator ----

    fn handle_commands(&mut self) {
        loop {
            match self.commands.try_recv() {
                Ok(ToFleet::Measure) => {
                    self.latencies.round_trip.reset();
                    self.latencies.stop_transaction.reset();
                    self.latencies.start_transaction.reset();
                }
                Ok(ToFleet::Storm) => self.storm(),
                Ok(ToFleet::Stop) | Err(TryRecvError::Disconnected) => {
                    self.stopping = true;
                    return;
                }
                Err(TryRecvError::Empty) => return,
            }
        }
    }

    /// Every connection drops at once and every charge point reconnects at once (paced only by
    /// the connect limits), as after a power cut or a network outage.
    fn storm(&mut self) {
        self.epoch += 1;
        self.all_booted_sent = false;
        for key in 0..self.cps.len() as u32 {
            if matches!(self.cps[key as usize].link, Link::Open(_)) {
                ThreadCounters::inc(&self.counters.dropped_on_purpose);
            }
            if !matches!(self.cps[key as usize].link, Link::Queued) {
                self.disconnect(key);
                self.cps[key as usize].failures = 0;
                self.reconnect_now(key);
            }
        }
        self.report_if_all_booted();
    }

    fn send_window(&mut self) {
        if self.now < self.next_window_at {
            return;
        }
        let round_trip = Box::new(self.window.clone());
        self.window.reset();
        let _ = self.events.send(FromFleet::Window { round_trip });
        self.next_window_at += WINDOW_US;
        if self.next_window_at <= self.now {
            self.next_window_at = self.now + WINDOW_US;
        }
    }

    /// Closes every connection with a close frame (best effort: no wait for the answer).
    fn close_all(&mut self) {
        for key in 0..self.cps.len() as u32 {
            self.send_close(key);
            self.disconnect(key);
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2)
}

fn micros_since(origin: Instant) -> u64 {
    micros(origin.elapsed())
}
