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

use std::collections::VecDeque;
use std::mem;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use log::{debug, error, warn};
use mio::{Events, Interest, Poll, Token};
use ocpp_gateway::ocpp::rpc::{self, Frame, FrameError};
use ocpp_gateway::ocpp::v16::{
    self, Action, AuthorizationStatus, AuthorizeResponse, BootNotificationResponse, Invalid,
    RegistrationStatus, StartTransactionResponse,
};
use serde_json::value::RawValue;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::answers::{self, Answer, ChargePointView, Effect};
use crate::charge_point::{Boot, ChargePoint, Link, Outstanding};
use crate::cli::RunConfig;
use crate::deadlines::Deadlines;
use crate::dial::{self, Connect};
use crate::messages::{self, Outgoing};
use crate::pacer::Pacer;
use crate::rng::Rng;
use crate::scenario::{NEVER, Reply, Timings};
use crate::stats::{self, ErrorKind, Latencies, ThreadCounters};
use crate::upgrade::{Step, Upgrade, UpgradeError};

/// The token of the coordinator's waker; charge point keys are below `u32::MAX`.
pub const WAKER: Token = Token(usize::MAX - 1);
/// Messages read from one connection per turn.
const READS_PER_TURN: usize = 64;
/// Timers handled per iteration; the rest wait for the next one (poll returns at once).
const TIMERS_PER_TURN: usize = 65_536;
/// How often the live round-trip histogram goes to the coordinator.
const WINDOW_US: u64 = 1_000_000;
/// Unsent bytes per connection before the gateway counts as not reading.
const MAX_WRITE_BUFFER: usize = 1 << 20;
/// Largest message accepted from the gateway.
const MAX_MESSAGE: usize = 1 << 20;
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

/// What a failed tungstenite call means for the connection.
enum Failure {
    Blocked,
    Gone(String),
    Protocol(String),
}

fn classify(err: tungstenite::Error) -> Failure {
    use tungstenite::error::{Error, ProtocolError};
    match err {
        Error::Io(e) if e.kind() == std::io::ErrorKind::WouldBlock => Failure::Blocked,
        Error::Io(e) => Failure::Gone(format!("socket error: {e}")),
        Error::ConnectionClosed | Error::AlreadyClosed => Failure::Gone("closed".into()),
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            Failure::Gone("reset without closing handshake".into())
        }
        Error::WriteBufferFull(_) => Failure::Gone("write buffer full: gateway not reading".into()),
        Error::Protocol(e) => Failure::Protocol(e.to_string()),
        Error::Capacity(e) => Failure::Protocol(e.to_string()),
        Error::Utf8(e) => Failure::Protocol(format!("invalid UTF-8: {e}")),
        other => Failure::Gone(other.to_string()),
    }
}

/// A CALLRESULT read for what the charge point does next.
enum Checked {
    Boot { accepted: bool, interval_secs: i64 },
    Plan(Reply),
}

/// Checks a CALLRESULT payload against what `action` returns.
fn check_result(action: Action, payload: &RawValue) -> Result<Checked, Invalid> {
    Ok(match action {
        Action::BootNotification => {
            let r: BootNotificationResponse = v16::decode(payload)?;
            Checked::Boot {
                accepted: r.status == RegistrationStatus::Accepted,
                interval_secs: r.interval,
            }
        }
        Action::Authorize => {
            let r: AuthorizeResponse = v16::decode(payload)?;
            Checked::Plan(Reply::Authorized {
                accepted: r.id_tag_info.status == AuthorizationStatus::Accepted,
            })
        }
        Action::StartTransaction => {
            let r: StartTransactionResponse = v16::decode(payload)?;
            Checked::Plan(Reply::Started {
                transaction: r.transaction_id,
                accepted: r.id_tag_info.status == AuthorizationStatus::Accepted,
            })
        }
        other => {
            v16::validate_response(other, payload)?;
            Checked::Plan(Reply::Done)
        }
    })
}

/// Why [`FleetLoop::pump`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pump {
    /// An answer just completed the outstanding CALL.
    AfterAnswer,
    /// A timer, a gateway CALL, a boot.
    Other,
}

struct WarnBudget {
    second: u64,
    used: u32,
}

impl WarnBudget {
    fn allow(&mut self, now_us: u64) -> bool {
        let second = now_us / 1_000_000;
        if second != self.second {
            self.second = second;
            self.used = 0;
        }
        self.used += 1;
        self.used <= WARNINGS_PER_SECOND
    }
}

pub struct FleetLoop {
    thread: u16,
    poll: Poll,
    config: Arc<RunConfig>,
    timings: Timings,
    ws_config: WebSocketConfig,
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
    text: String,
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
            .map(|index| ChargePoint::new(index, timings.plan()))
            .collect();
        let connect_queue = (0..cps.len() as u32).collect();
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(config.read_buffer)
            .write_buffer_size(0)
            .max_write_buffer_size(MAX_WRITE_BUFFER)
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let now = micros_since(origin);
        FleetLoop {
            thread,
            poll,
            pacer: Pacer::new(config.connect_rate.map(|r| r / f64::from(threads)), now),
            max_inflight: config.max_inflight_handshakes.div_ceil(threads).max(1),
            rng: Rng::new(config.seed.wrapping_mul(0x1000_0000_01B3) ^ u64::from(thread)),
            config,
            timings,
            ws_config,
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
            warnings: WarnBudget { second: 0, used: 0 },
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
                let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                self.on_socket_event(key, readable, event.is_writable() || event.is_error());
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
        if self.warnings.allow(self.now) {
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

    // ---- connecting ----

    fn start_connects(&mut self) {
        while !self.stopping && self.inflight < self.max_inflight {
            let Some(&key) = self.connect_queue.front() else {
                return;
            };
            if !self.pacer.try_take(self.now) {
                return;
            }
            self.connect_queue.pop_front();
            self.connect(key);
        }
    }

    fn connect(&mut self, key: u32) {
        let cp = &mut self.cps[key as usize];
        if !matches!(cp.link, Link::Queued) {
            return;
        }
        cp.link = Link::Down;
        // A fresh reading: one pass opens many sockets, and a stale clock would charge the
        // time we spent on the others to this one's connect latency.
        self.now = micros_since(self.origin);
        cp.connect_started_us = self.now;
        ThreadCounters::inc(&self.counters.connect_attempts);
        let sources = &self.config.source_ips;
        let source = (!sources.is_empty()).then(|| sources[cp.index as usize % sources.len()]);
        let mut stream = match dial::start(self.config.target.addr, source) {
            Ok(stream) => stream,
            Err(e) => return self.fail(key, ErrorKind::Connect, &e),
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(key as usize), interest)
        {
            return self.fail(key, ErrorKind::Connect, &e);
        }
        self.put_link(key, Link::Connecting(stream));
        let cp = &mut self.cps[key as usize];
        cp.link_deadline = self.now + micros(self.config.handshake_timeout);
        self.rearm(key);
    }

    fn on_socket_event(&mut self, key: u32, readable: bool, writable: bool) {
        let Some(cp) = self.cps.get_mut(key as usize) else {
            return;
        };
        match &mut cp.link {
            Link::Connecting(stream) => match dial::connected(stream) {
                Connect::Done => self.begin_upgrade(key),
                Connect::Pending => {}
                Connect::Failed(e) => self.fail(key, ErrorKind::Connect, &e),
            },
            Link::Handshaking(_) => self.drive_upgrade(key),
            Link::Open(ws) => {
                if writable
                    && let Err(e) = ws.flush()
                    && !self.on_ws_error(key, e)
                {
                    return;
                }
                if readable {
                    self.read_messages(key);
                }
            }
            Link::Down | Link::Queued => {}
        }
    }

    fn begin_upgrade(&mut self, key: u32) {
        let Link::Connecting(stream) = self.take_link(key) else {
            return;
        };
        stats::record(
            &mut self.latencies.connect,
            self.now - self.cps[key as usize].connect_started_us,
        );
        let path = format!("{}{}", self.config.target.path_prefix, self.identity(key));
        let upgrade = Upgrade::start(stream, &self.config.target.host, &path);
        self.put_link(key, Link::Handshaking(upgrade));
        self.drive_upgrade(key);
    }

    fn drive_upgrade(&mut self, key: u32) {
        let Link::Handshaking(upgrade) = self.take_link(key) else {
            return;
        };
        match upgrade.advance() {
            Ok(Step::Open(stream, rest)) => {
                let ws = WebSocket::from_partially_read(
                    stream,
                    rest,
                    Role::Client,
                    Some(self.ws_config),
                );
                self.opened(key, ws);
            }
            Ok(Step::Pending(upgrade)) => self.put_link(key, Link::Handshaking(upgrade)),
            Err(e) => {
                let kind = match e {
                    UpgradeError::Refused(_) => ErrorKind::HandshakeRefused,
                    _ => ErrorKind::HandshakeFailed,
                };
                self.fail(key, kind, &e);
            }
        }
    }

    fn opened(&mut self, key: u32, ws: WebSocket<mio::net::TcpStream>) {
        ThreadCounters::inc(&self.counters.handshakes);
        let started = self.cps[key as usize].connect_started_us;
        stats::record(&mut self.latencies.handshake, self.now - started);
        self.put_link(key, Link::Open(Box::new(ws)));
        let cp = &mut self.cps[key as usize];
        cp.link_deadline = NEVER;
        cp.boot = Boot::Sent;
        self.send_call(key, Outgoing::BootNotification, self.now);
        // Bytes that came right behind the 101 arrived with no edge of their own.
        self.read_messages(key);
    }

    /// The connection failed: count it, drop it, and reconnect after a back-off with full
    /// jitter (uniform below a ceiling that doubles per consecutive failure).
    fn fail(&mut self, key: u32, kind: ErrorKind, detail: &dyn std::fmt::Display) {
        self.counters.error(kind);
        self.warn_limited(key, format_args!("{}: {detail}", kind.name()));
        self.disconnect(key);
        if self.stopping {
            return;
        }
        let min = micros(self.config.backoff_min);
        let max = micros(self.config.backoff_max);
        let cp = &mut self.cps[key as usize];
        cp.failures = cp.failures.saturating_add(1);
        let ceiling = min
            .saturating_mul(1u64 << (cp.failures - 1).min(30))
            .min(max);
        cp.link_deadline = self.now + self.rng.below(ceiling + 1);
        self.rearm(key);
    }

    /// Drops the connection and everything tied to it; the charge point is left `Down`.
    fn disconnect(&mut self, key: u32) {
        drop(self.take_link(key));
        self.set_booted(key, false);
        let cp = &mut self.cps[key as usize];
        cp.boot = Boot::NotSent;
        cp.call = None;
        cp.triggered = None;
        cp.link_deadline = NEVER;
    }

    /// Queues the charge point for a connect now (storm, reboot).
    fn reconnect_now(&mut self, key: u32) {
        let cp = &mut self.cps[key as usize];
        if matches!(cp.link, Link::Down) {
            cp.link = Link::Queued;
            cp.link_deadline = NEVER;
            self.connect_queue.push_back(key);
        }
    }

    // ---- messages ----

    /// Acts on a failed read, write or flush: true when it only would have blocked.
    fn on_ws_error(&mut self, key: u32, err: tungstenite::Error) -> bool {
        match classify(err) {
            Failure::Blocked => true,
            Failure::Gone(why) => {
                self.fail(key, ErrorKind::Disconnected, &why);
                false
            }
            Failure::Protocol(why) => {
                self.fail(key, ErrorKind::WebSocketProtocol, &why);
                false
            }
        }
    }

    fn serve_ready(&mut self) {
        for key in mem::take(&mut self.ready) {
            self.read_messages(key);
        }
    }

    fn read_messages(&mut self, key: u32) {
        for _ in 0..READS_PER_TURN {
            let Some(ChargePoint {
                link: Link::Open(ws),
                ..
            }) = self.cps.get_mut(key as usize)
            else {
                return;
            };
            match ws.read() {
                Ok(Message::Text(text)) => {
                    ThreadCounters::inc(&self.counters.messages_in);
                    // Fresh time for each reply: a batch of events must not flatter latency.
                    self.tick();
                    self.on_text(key, &text);
                }
                Ok(Message::Ping(_)) => ThreadCounters::inc(&self.counters.pings),
                Ok(_) => {}
                Err(e) => {
                    self.on_ws_error(key, e);
                    return;
                }
            }
        }
        self.ready.push(key);
    }

    fn on_text(&mut self, key: u32, text: &str) {
        match rpc::parse_frame(text) {
            Ok(Frame::CallResult { unique_id, payload }) => {
                self.on_answer(key, &unique_id, Ok(&payload));
            }
            Ok(Frame::CallError {
                unique_id,
                code,
                description,
                ..
            }) => self.on_answer(key, &unique_id, Err((&code, &description))),
            Ok(Frame::Call {
                unique_id,
                action,
                payload,
            }) => self.on_call(key, &unique_id, &action, &payload),
            Err(FrameError::Answer {
                unique_id,
                code,
                description,
            }) => {
                self.counters.error(ErrorKind::InvalidCallReceived);
                self.warn_limited(
                    key,
                    format_args!("malformed CALL from the gateway: {description}"),
                );
                self.text.clear();
                rpc::write_call_error(&mut self.text, &unique_id, code, &description);
                let text = self.text.clone();
                self.send_text(key, text);
            }
            Err(FrameError::Unanswerable { reason }) => {
                self.counters.error(ErrorKind::Unparsable);
                self.warn_limited(key, format_args!("{reason}"));
            }
            Err(FrameError::UnknownMessageType { message_type }) => {
                debug!("thread={} ignored message type {message_type}", self.thread);
            }
        }
    }

    /// A CALLRESULT (`Ok`) or CALLERROR (`Err((code, description))`) from the gateway.
    fn on_answer(&mut self, key: u32, unique_id: &str, answer: Result<&RawValue, (&str, &str)>) {
        let cp = &mut self.cps[key as usize];
        let Some(call) = cp.call.filter(|c| unique_id.parse() == Ok(c.unique_id)) else {
            let expected = cp.call.map(|c| c.unique_id);
            self.counters.error(ErrorKind::WrongUniqueId);
            self.warn_limited(
                key,
                format_args!("answer to {unique_id:?}, outstanding: {expected:?}"),
            );
            return;
        };
        cp.call = None;
        let latency = self.now.saturating_sub(call.planned_us);
        let checked = match answer {
            Ok(payload) => match check_result(call.action, payload) {
                Ok(checked) => {
                    ThreadCounters::inc(&self.counters.results_ok);
                    Some(checked)
                }
                Err(invalid) => {
                    self.counters.error(ErrorKind::InvalidPayload);
                    let action = call.action;
                    self.warn_limited(
                        key,
                        format_args!("invalid {action} result: {}", invalid.description),
                    );
                    None
                }
            },
            Err((code, description)) => {
                self.counters.error(ErrorKind::CallError);
                let action = call.action;
                self.warn_limited(key, format_args!("{action} answered {code}: {description}"));
                None
            }
        };
        if call.action != Action::BootNotification {
            let interval = self.timings.fixed_interval_us();
            stats::record_with_skipped(&mut self.latencies.round_trip, latency, interval);
            stats::record_with_skipped(&mut self.window, latency, interval);
        }
        match checked {
            Some(Checked::Boot {
                accepted,
                interval_secs,
            }) => self.on_boot_answer(key, accepted, interval_secs),
            Some(Checked::Plan(reply)) => self.reply_to_plan(key, reply),
            None if call.action == Action::BootNotification => {
                self.retry_boot(key, micros(self.config.backoff_min));
            }
            None => self.reply_to_plan(key, Reply::Failed),
        }
        self.pump(key, Pump::AfterAnswer);
    }

    fn reply_to_plan(&mut self, key: u32, reply: Reply) {
        let cp = &mut self.cps[key as usize];
        cp.plan
            .on_reply(reply, &self.timings, self.now, &mut self.rng);
    }

    fn on_boot_answer(&mut self, key: u32, accepted: bool, interval_secs: i64) {
        let cp = &self.cps[key as usize];
        if cp.boot == Boot::Accepted {
            return; // a triggered BootNotification: nothing changes
        }
        if !accepted {
            self.counters.error(ErrorKind::BootNotAccepted);
            self.warn_limited(key, format_args!("BootNotification not accepted"));
            let wait = u64::try_from(interval_secs.clamp(1, 300)).unwrap_or(1) * 1_000_000;
            return self.retry_boot(key, wait);
        }
        stats::record(&mut self.latencies.boot, self.now - cp.connect_started_us);
        ThreadCounters::inc(&self.counters.boots);
        if cp.ever_booted {
            ThreadCounters::inc(&self.counters.reboots);
        }
        let offset = self.timings.slot_offset(cp.index, self.config.connections);
        self.set_booted(key, true);
        let cp = &mut self.cps[key as usize];
        cp.ever_booted = true;
        cp.failures = 0;
        cp.plan.on_booted(self.now, offset);
        self.report_if_all_booted();
    }

    fn retry_boot(&mut self, key: u32, after_us: u64) {
        let cp = &mut self.cps[key as usize];
        if cp.boot != Boot::Accepted {
            cp.boot = Boot::RetryAt(self.now + after_us);
        }
    }

    /// A CALL of the gateway: answer it, then do what the answer implies.
    fn on_call(&mut self, key: u32, unique_id: &str, action: &str, payload: &RawValue) {
        let cp = &self.cps[key as usize];
        let view = ChargePointView {
            can_start: cp.boot == Boot::Accepted && cp.plan.can_start(),
            transaction: cp.plan.transaction(),
        };
        self.text.clear();
        let effect = match answers::answer(action, payload, view) {
            Answer::Result { payload, effect } => {
                ThreadCounters::inc(&self.counters.calls_answered);
                rpc::write_call_result(&mut self.text, unique_id, &payload);
                effect
            }
            Answer::Error {
                code,
                description,
                peer_fault,
            } => {
                if peer_fault {
                    self.counters.error(ErrorKind::InvalidCallReceived);
                    self.warn_limited(key, format_args!("{action} refused: {code}: {description}"));
                }
                rpc::write_call_error(&mut self.text, unique_id, code, &description);
                Effect::None
            }
        };
        let text = self.text.clone();
        if !self.send_text(key, text) {
            return;
        }
        let cp = &mut self.cps[key as usize];
        match effect {
            Effect::None => {}
            Effect::StartSession => cp.plan.remote_start(),
            Effect::StopSession => cp.plan.remote_stop(self.now),
            Effect::Send(msg) => cp.triggered = Some(msg),
            Effect::Reboot if cp.plan.reboots_on_reset() => return self.reboot(key),
            Effect::Reboot => {}
        }
        self.pump(key, Pump::Other);
    }

    /// Reset accepted: close (our answer already written), reconnect at once, boot again.
    fn reboot(&mut self, key: u32) {
        if let Link::Open(mut ws) = self.take_link(key) {
            let _ = ws.close(None);
            let _ = ws.flush();
        }
        ThreadCounters::inc(&self.counters.dropped_on_purpose);
        self.disconnect(key);
        self.cps[key as usize].failures = 0;
        self.reconnect_now(key);
    }

    /// Writes one text message; false when the connection failed on it.
    fn send_text(&mut self, key: u32, text: String) -> bool {
        let Some(ChargePoint {
            link: Link::Open(ws),
            ..
        }) = self.cps.get_mut(key as usize)
        else {
            return false;
        };
        let result = ws.write(Message::text(text)).and_then(|()| ws.flush());
        ThreadCounters::inc(&self.counters.messages_out);
        match result {
            Ok(()) => true,
            Err(e) => self.on_ws_error(key, e),
        }
    }

    /// Sends `msg` as the charge point's next CALL, planned at `planned_us`.
    fn send_call(&mut self, key: u32, msg: Outgoing, planned_us: u64) {
        let cp = &mut self.cps[key as usize];
        debug_assert!(cp.call.is_none(), "one CALL outstanding at a time");
        let unique_id = cp.take_unique_id();
        messages::write_call(
            &mut self.text,
            unique_id,
            msg,
            cp.index,
            &self.config.id_prefix,
        );
        cp.call = Some(Outstanding {
            unique_id,
            action: msg.action(),
            planned_us,
            deadline_us: self.now + micros(self.config.call_timeout),
        });
        let text = self.text.clone();
        if self.send_text(key, text) {
            ThreadCounters::inc(&self.counters.calls_sent);
        }
    }

    /// Sends what is due, if nothing is outstanding, and re-arms the timer.
    ///
    /// Latency counts from the planned time only when the gateway made the send late: when it
    /// is sent right after an answer (`Pump::AfterAnswer`) and its slot passed while that answer
    /// was awaited. A send that is late because of our own timer resolution or load counts from
    /// now, so the bench's lateness is not blamed on the gateway.
    fn pump(&mut self, key: u32, why: Pump) {
        // A fresh reading: timers fire in batches, and a send stamped with the batch's start
        // would charge our own batch time to the gateway's round trip.
        self.now = micros_since(self.origin);
        let cp = &mut self.cps[key as usize];
        if matches!(cp.link, Link::Open(_)) && cp.call.is_none() {
            match cp.boot {
                Boot::Accepted => {
                    let due = match cp.triggered.take() {
                        Some(msg) => Some((msg, self.now)),
                        None => cp.plan.poll(&self.timings, self.now, &mut self.rng),
                    };
                    if let Some((msg, planned)) = due {
                        let planned = match why {
                            Pump::AfterAnswer => planned,
                            Pump::Other => self.now,
                        };
                        self.send_call(key, msg, planned);
                    }
                }
                Boot::RetryAt(at) if at <= self.now => {
                    cp.boot = Boot::Sent;
                    self.send_call(key, Outgoing::BootNotification, self.now);
                }
                Boot::RetryAt(_) | Boot::NotSent | Boot::Sent => {}
            }
        }
        self.rearm(key);
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
                    let action = call.action;
                    self.warn_limited(key, format_args!("no answer to {action}"));
                    if action == Action::BootNotification {
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
                Ok(ToFleet::Measure) => self.latencies.round_trip.reset(),
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
            if let Link::Open(mut ws) = self.take_link(key) {
                let _ = ws.close(None);
                let _ = ws.flush();
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn results_are_checked_against_their_action() {
        let boot =
            raw(r#"{"status":"Pending","currentTime":"2026-01-01T00:00:00Z","interval":30}"#);
        assert!(matches!(
            check_result(Action::BootNotification, &boot),
            Ok(Checked::Boot {
                accepted: false,
                interval_secs: 30
            })
        ));
        let start = raw(r#"{"idTagInfo":{"status":"Accepted"},"transactionId":5}"#);
        assert!(matches!(
            check_result(Action::StartTransaction, &start),
            Ok(Checked::Plan(Reply::Started {
                transaction: 5,
                accepted: true
            }))
        ));
        // A Heartbeat answered with a StatusNotification result is a mismatch.
        assert!(check_result(Action::Heartbeat, &raw("{}")).is_err());
        assert!(check_result(Action::StatusNotification, &raw("{}")).is_ok());
    }
}
