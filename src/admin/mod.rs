//! The admin listener: `/health`, `/metrics` and the operator API on their own address
//! (`admin.listen`, loopback by default), served by one thread with its own `mio::Poll`, the
//! same machinery as the event loops, so there is no async runtime and no thread per request.
//!
//! Nothing here ever blocks on another thread. A request that needs a processor (listing charge
//! points, sending a call) hands it a question with an [`Answer`] that wakes this poll, parks the
//! client as [`Waiting`] with a deadline, and goes on serving others; so `/health` answers even
//! while a processor is stuck, which is exactly when it matters.
//!
//! Bounds: at most [`MAX_CLIENTS`] connections (more get 503 and are closed), a request head of
//! [`http::MAX_HEAD`] and a body of [`http::MAX_BODY`] bytes, [`IDLE_TIMEOUT`] to send a request.
//! With `admin.token` (or `OCPP_GATEWAY_ADMIN_TOKEN`) every endpoint but `/health` needs
//! `Authorization: Bearer <token>`.

pub mod health;
pub mod http;
pub mod metrics;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Receiver;
use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use slab::Slab;

use crate::config::{Config, MAX_CHARGE_POINT_ID_LEN};
use crate::events::journal::{Journal, JournalStatus};
use crate::net::{LoopHandle, ToLoop, TraceList};
use crate::ocpp::v16::Action;
use crate::outbound::{CallOutcome, Commands, PendingCall};
use crate::processor::query::{Answer, ChargePointView, Filter, Query};
use crate::processor::{Inbound, shard_of};
use crate::server::ServerError;
use crate::stats::Stats;
use health::{
    Health, JournalHealth, LoopHealth, OpenFiles, PingService, Probes, ProcessorHealth, Progress,
};
use http::{Parsed, Request, Response};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// Admin connections held at once.
pub const MAX_CLIENTS: usize = 64;
/// Time a client has to send a (next) request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a query may wait for the processors.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Charge points per page of a listing.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// What the admin thread needs from the server.
pub struct AdminParts {
    pub config: Arc<Config>,
    pub stats: Arc<Stats>,
    pub loops: Vec<LoopHandle>,
    pub commands: Commands,
    pub traces: Arc<TraceList>,
    pub journal: Option<(Arc<Journal>, Arc<JournalStatus>)>,
}

/// The running admin thread.
pub struct Admin {
    addr: SocketAddr,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Admin {
    pub fn start(parts: AdminParts) -> Result<Admin, ServerError> {
        let Some(addr) = parts.config.admin.listen else {
            return Err(ServerError::Spawn {
                what: "admin listener (admin.listen is empty)",
                source: io::Error::other("no address"),
            });
        };
        let bind_err = |source| ServerError::Bind { addr, source };
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .map_err(bind_err)?;
        socket.set_reuse_address(true).map_err(bind_err)?;
        socket.set_nonblocking(true).map_err(bind_err)?;
        socket.bind(&addr.into()).map_err(bind_err)?;
        socket.listen(128).map_err(bind_err)?;
        let std_listener: std::net::TcpListener = socket.into();
        let addr = std_listener.local_addr().map_err(bind_err)?;
        let mut listener = TcpListener::from_std(std_listener);
        let spawn_err = |what| move |source| ServerError::Spawn { what, source };
        let poll = Poll::new().map_err(spawn_err("admin poll"))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(spawn_err("admin listener"))?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(spawn_err("admin waker"))?);
        let stop = Arc::new(AtomicBool::new(false));
        let token = parts
            .config
            .admin
            .token
            .clone()
            .map(|t| format!("Bearer {t}").into_bytes());
        let now = Instant::now();
        let mut admin_loop = AdminLoop {
            poll,
            listener,
            waker: Arc::clone(&waker),
            stop: Arc::clone(&stop),
            clients: Slab::with_capacity(MAX_CLIENTS),
            probes: Probes::new(parts.config.admin.stuck_after),
            loop_progress: Probes::progress(parts.loops.len(), now),
            processor_progress: Probes::progress(parts.commands.processors.len(), now),
            next_probe: now,
            token,
            started: now,
            parts,
        };
        let thread = std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || admin_loop.run())
            .map_err(spawn_err("admin thread"))?;
        info!("admin endpoints on http://{addr}");
        Ok(Admin {
            addr,
            waker,
            stop,
            thread,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the thread (clients waiting on a call get no answer) and waits for it.
    pub fn stop(self) -> std::thread::Result<()> {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        self.thread.join()
    }
}

/// A request parked until another thread answers.
enum Waiting {
    Call {
        pending: PendingCall,
        until: Instant,
    },
    List {
        rx: Receiver<Vec<ChargePointView>>,
        expected: usize,
        pages: Vec<ChargePointView>,
        limit: usize,
        until: Instant,
    },
    Detail {
        rx: Receiver<Option<ChargePointView>>,
        until: Instant,
    },
    Disconnect {
        rx: Receiver<bool>,
        until: Instant,
    },
}

impl Waiting {
    fn until(&self) -> Instant {
        match self {
            Waiting::Call { until, .. }
            | Waiting::List { until, .. }
            | Waiting::Detail { until, .. }
            | Waiting::Disconnect { until, .. } => *until,
        }
    }
}

/// What handling a request gives.
enum Handled {
    Respond(Response),
    Wait(Waiting),
}

struct Client {
    stream: TcpStream,
    /// Received, not yet handled (bounded: at most one request plus one read more).
    input: Vec<u8>,
    /// The response being written, and how much of it went out.
    output: Vec<u8>,
    written: usize,
    keep_alive: bool,
    /// A request parked until another thread answers.
    waiting: Option<Waiting>,
    /// Reading or writing must make progress by then, or the client is dropped.
    deadline: Instant,
    /// The client sent EOF: answer what it sent, then close.
    peer_done: bool,
    /// Close once the output is written.
    close_after_output: bool,
    /// `100 Continue` already sent for the request being received.
    continued: bool,
}

struct AdminLoop {
    poll: Poll,
    listener: TcpListener,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    clients: Slab<Client>,
    probes: Probes,
    loop_progress: Vec<Progress>,
    processor_progress: Vec<Progress>,
    next_probe: Instant,
    /// `Bearer <token>` as sent in the header, when a token is configured.
    token: Option<Vec<u8>>,
    started: Instant,
    parts: AdminParts,
}

impl AdminLoop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        while !self.stop.load(Ordering::Acquire) {
            let now = Instant::now();
            let timeout = self.poll_timeout(now);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("admin poll failed, stopping the admin listener: {e}");
                return;
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(key) => self.drive(key),
                }
            }
            let now = Instant::now();
            if now >= self.next_probe {
                self.probe(now);
            }
            self.check_waiting(now);
            self.expire(now);
        }
        debug!("admin stopped");
    }

    fn poll_timeout(&self, now: Instant) -> Duration {
        let mut next = self.next_probe;
        for (_, client) in &self.clients {
            let due = client
                .waiting
                .as_ref()
                .map_or(client.deadline, Waiting::until);
            next = next.min(due);
        }
        next.saturating_duration_since(now)
    }

    // ---- liveness probes ----

    fn probe(&mut self, now: Instant) {
        self.observe_progress(now);
        let seq = self.probes.next(now);
        for handle in &self.parts.loops {
            handle.try_send(ToLoop::Probe { seq });
        }
        for processor in &self.parts.commands.processors {
            let _ = processor.try_send(Inbound::Probe { seq });
        }
        self.next_probe = now + self.probes.interval;
    }

    fn observe_progress(&mut self, now: Instant) {
        let stats = &self.parts.stats;
        Probes::observe(&mut self.loop_progress, &stats.loop_progress, now);
        Probes::observe(&mut self.processor_progress, &stats.processor_progress, now);
    }

    /// Which loops and which processors are stuck now.
    fn stuck(&mut self, now: Instant) -> (Vec<bool>, Vec<bool>) {
        self.observe_progress(now);
        let stats = &self.parts.stats;
        (
            self.probes
                .stuck(&stats.loop_alive, &self.loop_progress, now),
            self.probes
                .stuck(&stats.processor_alive, &self.processor_progress, now),
        )
    }

    // ---- connections ----

    fn accept(&mut self) {
        loop {
            let (mut stream, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    warn!("admin accept failed: {e}");
                    return;
                }
            };
            if self.clients.len() >= MAX_CLIENTS {
                // Idle keep-alive connections must not lock out a health check: the one idle
                // longest makes room.
                let idle = self
                    .clients
                    .iter()
                    .filter(|(_, c)| {
                        c.waiting.is_none() && c.output.is_empty() && c.input.is_empty()
                    })
                    .min_by_key(|(_, c)| c.deadline)
                    .map(|(key, _)| key);
                if let Some(key) = idle {
                    self.remove(key);
                }
            }
            if self.clients.len() >= MAX_CLIENTS {
                let busy = Response::error(503, "too many admin connections").write(false);
                let _ = stream.write(&busy);
                debug!("admin: refused {peer}, {MAX_CLIENTS} connections already");
                continue;
            }
            let entry = self.clients.vacant_entry();
            let key = entry.key();
            if self
                .poll
                .registry()
                .register(
                    &mut stream,
                    Token(key),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                continue;
            }
            entry.insert(Client {
                stream,
                input: Vec::with_capacity(1024),
                output: Vec::new(),
                written: 0,
                keep_alive: true,
                waiting: None,
                deadline: Instant::now() + IDLE_TIMEOUT,
                peer_done: false,
                close_after_output: false,
                continued: false,
            });
            self.drive(key);
        }
    }

    fn remove(&mut self, key: usize) {
        if let Some(mut client) = self.clients.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut client.stream);
        }
    }

    /// Moves one client along as far as it can go without blocking: write what is pending,
    /// then take the next buffered request, reading only when a request is incomplete (so its
    /// input stays bounded, and a client that does not read its answers stops being read).
    /// A loop, not recursion: pipelined requests cannot grow the stack.
    fn drive(&mut self, key: usize) {
        loop {
            let Some(client) = self.clients.get_mut(key) else {
                return;
            };
            // 1. What is pending goes out first.
            while client.written < client.output.len() {
                match client.stream.write(&client.output[client.written..]) {
                    Ok(0) => return self.remove(key),
                    Ok(n) => {
                        client.written += n;
                        client.deadline = Instant::now() + IDLE_TIMEOUT;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return self.remove(key),
                }
            }
            client.output.clear();
            client.written = 0;
            if client.close_after_output {
                return self.remove(key);
            }
            if client.waiting.is_some() {
                return;
            }
            // 2. The next request, if it is all here.
            match http::parse(&client.input) {
                Parsed::Complete(request, used) => {
                    client.input.drain(..used);
                    client.continued = false;
                    client.keep_alive = request.keep_alive && !client.peer_done;
                    let keep_alive = client.keep_alive;
                    match self.handle(request) {
                        Handled::Respond(response) => self.respond(key, response, keep_alive),
                        Handled::Wait(waiting) => {
                            if let Some(client) = self.clients.get_mut(key) {
                                client.waiting = Some(waiting);
                            }
                            return;
                        }
                    }
                    continue;
                }
                Parsed::Invalid(response) => {
                    client.input.clear();
                    self.respond(key, response, false);
                    continue;
                }
                Parsed::Partial { expect_continue } => {
                    if expect_continue && !client.continued {
                        client.continued = true;
                        client.output = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
                        continue;
                    }
                }
            }
            // 3. Incomplete: read more (never beyond one request's bound).
            if client.peer_done {
                return self.remove(key);
            }
            let room = (http::MAX_HEAD + http::MAX_BODY + 1).saturating_sub(client.input.len());
            let mut chunk = [0u8; 4096];
            let want = room.clamp(1, chunk.len());
            match client.stream.read(&mut chunk[..want]) {
                Ok(0) => client.peer_done = true,
                Ok(n) => {
                    client.input.extend_from_slice(&chunk[..n]);
                    client.deadline = Instant::now() + IDLE_TIMEOUT;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.remove(key),
            }
        }
    }

    /// Queues `response` for the client (the caller drives it out).
    fn respond(&mut self, key: usize, response: Response, keep_alive: bool) {
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        let keep_alive = keep_alive && !client.peer_done;
        client.close_after_output |= !keep_alive;
        client.output = response.write(keep_alive);
        client.written = 0;
        client.deadline = Instant::now() + IDLE_TIMEOUT;
    }

    fn check_waiting(&mut self, now: Instant) {
        let keys: Vec<usize> = self
            .clients
            .iter()
            .filter(|(_, c)| c.waiting.is_some())
            .map(|(key, _)| key)
            .collect();
        for key in keys {
            let Some(client) = self.clients.get_mut(key) else {
                continue;
            };
            let Some(waiting) = client.waiting.take() else {
                continue;
            };
            let keep_alive = client.keep_alive;
            match self.poll_waiting(waiting, now) {
                Ok(response) => {
                    self.respond(key, response, keep_alive);
                    self.drive(key);
                }
                Err(waiting) => {
                    if let Some(client) = self.clients.get_mut(key) {
                        client.waiting = Some(waiting);
                    }
                }
            }
        }
    }

    /// The response, once the answer is in (or the deadline passed).
    fn poll_waiting(&self, waiting: Waiting, now: Instant) -> Result<Response, Waiting> {
        match waiting {
            Waiting::Call { pending, until } => match pending.try_outcome() {
                Some(outcome) => Ok(outcome_response(outcome)),
                None if now >= until => Ok(Response::json(
                    504,
                    &json!({"outcome": "timeout", "error": "no outcome in time"}),
                )),
                None => Err(Waiting::Call { pending, until }),
            },
            Waiting::List {
                rx,
                expected,
                mut pages,
                limit,
                until,
            } => {
                let mut expected = expected;
                while let Ok(page) = rx.try_recv() {
                    pages.extend(page);
                    expected -= 1;
                }
                if expected == 0 {
                    pages.sort_unstable_by(|a, b| a.id.cmp(&b.id));
                    let more = pages.len() > limit;
                    pages.truncate(limit);
                    let next = if more {
                        pages.last().map(|v| v.id.clone())
                    } else {
                        None
                    };
                    Ok(Response::json(
                        200,
                        &json!({"chargepoints": pages, "count": pages.len(), "next": next}),
                    ))
                } else if now >= until {
                    Ok(Response::error(503, "a processor did not answer in time"))
                } else {
                    Err(Waiting::List {
                        rx,
                        expected,
                        pages,
                        limit,
                        until,
                    })
                }
            }
            Waiting::Detail { rx, until } => match rx.try_recv() {
                Ok(Some(view)) => Ok(Response::json(200, &view)),
                Ok(None) => Ok(Response::error(404, "unknown charge point")),
                Err(_) if now >= until => {
                    Ok(Response::error(503, "the processor did not answer in time"))
                }
                Err(_) => Err(Waiting::Detail { rx, until }),
            },
            Waiting::Disconnect { rx, until } => match rx.try_recv() {
                Ok(true) => Ok(Response::json(200, &json!({"closed": true}))),
                Ok(false) => Ok(Response::error(404, "not connected")),
                Err(_) if now >= until => {
                    Ok(Response::error(503, "the processor did not answer in time"))
                }
                Err(_) => Err(Waiting::Disconnect { rx, until }),
            },
        }
    }

    /// Drops clients that stopped making progress: an idle keep-alive connection, a request
    /// that is not completed, an answer that is not read.
    fn expire(&mut self, now: Instant) {
        let late: Vec<(usize, bool)> = self
            .clients
            .iter()
            .filter(|(_, c)| c.waiting.is_none() && now >= c.deadline)
            .map(|(key, c)| (key, c.output.is_empty() && !c.input.is_empty()))
            .collect();
        for (key, partial_request) in late {
            if partial_request {
                self.respond(
                    key,
                    Response::error(408, "request not completed in time"),
                    false,
                );
                if let Some(client) = self.clients.get_mut(key) {
                    // One chance to write the 408; a client that does not read it is gone.
                    client.deadline = now + Duration::from_secs(1);
                    client.input.clear();
                }
                self.drive(key);
            } else {
                self.remove(key);
            }
        }
    }

    // ---- requests ----

    fn handle(&mut self, request: Request) -> Handled {
        let segments: Vec<String> = request
            .path
            .split('/')
            .skip(1)
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method = request.method.as_str();
        if segments != ["health"] && !self.authorized(&request) {
            return Handled::Respond(
                Response::error(401, "missing or wrong bearer token")
                    .with_header("WWW-Authenticate: Bearer realm=\"ocpp-gateway\"".into()),
            );
        }
        let allow = |methods: &str| {
            Handled::Respond(
                Response::error(405, &format!("use {methods}"))
                    .with_header(format!("Allow: {methods}")),
            )
        };
        match (method, segments.as_slice()) {
            ("GET", ["health"]) => Handled::Respond(self.health()),
            (_, ["health"]) => allow("GET"),
            ("GET", ["metrics"]) => Handled::Respond(self.metrics()),
            (_, ["metrics"]) => allow("GET"),
            ("GET", ["api", "v1", "chargepoints"]) => self.list(&request.query),
            (_, ["api", "v1", "chargepoints"]) => allow("GET"),
            (method, ["api", "v1", "chargepoints", id, rest @ ..]) => {
                if id.is_empty()
                    || id.chars().count() > MAX_CHARGE_POINT_ID_LEN
                    || id.chars().any(char::is_control)
                {
                    return Handled::Respond(Response::error(
                        400,
                        &format!("a charge point id has 1 to {MAX_CHARGE_POINT_ID_LEN} characters"),
                    ));
                }
                match (method, rest) {
                    ("GET", []) => self.detail(id),
                    (_, []) => allow("GET"),
                    ("POST", ["calls"]) => self.call(id, &request.body),
                    (_, ["calls"]) => allow("POST"),
                    ("DELETE", ["connection"]) => self.disconnect(id),
                    (_, ["connection"]) => allow("DELETE"),
                    ("POST", ["trace"]) => Handled::Respond(self.trace(id, true)),
                    ("DELETE", ["trace"]) => Handled::Respond(self.trace(id, false)),
                    (_, ["trace"]) => allow("POST, DELETE"),
                    _ => Handled::Respond(Response::error(404, "no such endpoint")),
                }
            }
            _ => Handled::Respond(Response::error(404, "no such endpoint")),
        }
    }

    fn authorized(&self, request: &Request) -> bool {
        match &self.token {
            None => true,
            Some(expected) => request
                .authorization
                .as_deref()
                .is_some_and(|got| http::same_secret(got.as_bytes(), expected)),
        }
    }

    fn processor_of(&self, cp: &str) -> usize {
        shard_of(cp, self.parts.commands.processors.len())
    }

    /// Sends a query to processor `index`; false when its queue is full or it is gone.
    fn ask(&self, index: usize, query: Query) -> bool {
        self.parts.commands.processors[index]
            .try_send(Inbound::Query(query))
            .is_ok()
    }

    fn busy() -> Handled {
        Handled::Respond(
            Response::error(503, "the gateway is too busy to answer; try again")
                .with_header("Retry-After: 1".into()),
        )
    }

    fn list(&self, query: &str) -> Handled {
        let filter = match http::query_param(query, "status").as_deref() {
            None | Some("") | Some("all") => Filter::All,
            Some("connected") => Filter::Connected,
            Some("disconnected") => Filter::Disconnected,
            Some(other) => {
                return Handled::Respond(Response::error(
                    400,
                    &format!("status {other:?} is not one of all, connected, disconnected"),
                ));
            }
        };
        let limit = match http::query_param(query, "limit") {
            None => DEFAULT_PAGE,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
                _ => {
                    return Handled::Respond(Response::error(
                        400,
                        &format!("limit must be a number from 1 to {MAX_PAGE}"),
                    ));
                }
            },
        };
        let after = http::query_param(query, "after").filter(|a| !a.is_empty());
        let processors = self.parts.commands.processors.len();
        let (tx, rx) = crossbeam_channel::bounded(processors);
        let mut asked = 0;
        for index in 0..processors {
            let query = Query::List {
                filter,
                after: after.clone(),
                // One more than a page tells whether there is a next one.
                limit: limit + 1,
                reply: Answer::new(tx.clone(), Arc::clone(&self.waker)),
            };
            if !self.ask(index, query) {
                return Self::busy();
            }
            asked += 1;
        }
        Handled::Wait(Waiting::List {
            rx,
            expected: asked,
            pages: Vec::new(),
            limit,
            until: Instant::now() + QUERY_TIMEOUT,
        })
    }

    fn detail(&self, id: &str) -> Handled {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let query = Query::Detail {
            cp: id.into(),
            reply: Answer::new(tx, Arc::clone(&self.waker)),
        };
        if !self.ask(self.processor_of(id), query) {
            return Self::busy();
        }
        Handled::Wait(Waiting::Detail {
            rx,
            until: Instant::now() + QUERY_TIMEOUT,
        })
    }

    fn disconnect(&self, id: &str) -> Handled {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let query = Query::Disconnect {
            cp: id.into(),
            reply: Answer::new(tx, Arc::clone(&self.waker)),
        };
        if !self.ask(self.processor_of(id), query) {
            return Self::busy();
        }
        Handled::Wait(Waiting::Disconnect {
            rx,
            until: Instant::now() + QUERY_TIMEOUT,
        })
    }

    fn trace(&self, id: &str, on: bool) -> Response {
        if !self.parts.traces.set(id, on) {
            return Response::error(
                429,
                &format!(
                    "at most {} charge points can be traced at once",
                    crate::net::MAX_TRACED
                ),
            );
        }
        info!(
            "cp={id} frame trace turned {}",
            if on { "on" } else { "off" }
        );
        Response::json(200, &json!({"id": id, "trace": on}))
    }

    fn call(&self, id: &str, body: &[u8]) -> Handled {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct CallRequest {
            action: String,
            payload: Box<RawValue>,
        }
        let request: CallRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return Handled::Respond(Response::error(
                    400,
                    &format!("body must be {{\"action\": \"...\", \"payload\": {{...}}}}: {e}"),
                ));
            }
        };
        let Some(action) = Action::from_name(&request.action) else {
            return Handled::Respond(Response::json(
                400,
                &json!({"error": format!("{:?} is not an OCPP 1.6 action", request.action),
                        "code": "NotImplemented"}),
            ));
        };
        let waker = Some(Arc::clone(&self.waker));
        match self.parts.commands.call(id, action, request.payload, waker) {
            Err(invalid) => Handled::Respond(Response::json(
                400,
                &json!({"error": invalid.description, "code": invalid.code.as_str()}),
            )),
            Ok(pending) => {
                // The outcome always arrives (each queued call ahead is answered or times
                // out); this bound only guards against a bug leaving the client hanging.
                let ocpp = &self.parts.config.ocpp;
                let queued = u32::try_from(ocpp.max_queued_calls + 1).unwrap_or(u32::MAX);
                let until = Instant::now()
                    + ocpp.message_timeout.saturating_mul(queued)
                    + Duration::from_secs(5);
                Handled::Wait(Waiting::Call { pending, until })
            }
        }
    }

    fn health(&mut self) -> Response {
        let now = Instant::now();
        let stats = &self.parts.stats;
        let snapshot = stats.snapshot();
        let (loops_stuck, processors_stuck) = self.stuck(now);
        let mut problems = Vec::new();
        let loops: Vec<LoopHealth> = self
            .parts
            .loops
            .iter()
            .enumerate()
            .map(|(index, handle)| {
                if loops_stuck[index] {
                    problems.push(format!("event loop {index} does not answer"));
                }
                LoopHealth {
                    index,
                    connections: snapshot.loop_connections.get(index).copied().unwrap_or(0),
                    queue_depth: handle.tx.len(),
                    alive: !loops_stuck[index],
                }
            })
            .collect();
        let processors: Vec<ProcessorHealth> = self
            .parts
            .commands
            .processors
            .iter()
            .enumerate()
            .map(|(index, sender)| {
                if processors_stuck[index] {
                    problems.push(format!("processor {index} does not answer"));
                }
                ProcessorHealth {
                    index,
                    queue_depth: sender.len(),
                    alive: !processors_stuck[index],
                }
            })
            .collect();
        let mut degraded = false;
        let journal = match &self.parts.journal {
            None => JournalHealth {
                status: "off",
                path: None,
                queue_depth: 0,
                errors: snapshot.journal_errors,
                lines_lost: snapshot.journal_lines_lost,
                last_error: None,
            },
            Some((journal, status)) => {
                let stuck = status.silent_for() >= self.parts.config.admin.stuck_after;
                let failing = status.failing();
                if stuck {
                    problems.push("the journal thread does not answer".into());
                } else if failing {
                    degraded = true;
                    problems.push(format!(
                        "the journal cannot write: {}",
                        status.last_error().unwrap_or_default()
                    ));
                }
                JournalHealth {
                    status: if stuck {
                        "stuck"
                    } else if failing {
                        "failing"
                    } else {
                        "ok"
                    },
                    path: Some(status.path.display().to_string()),
                    queue_depth: journal.queue_depth(),
                    errors: snapshot.journal_errors,
                    lines_lost: snapshot.journal_lines_lost,
                    last_error: status.last_error(),
                }
            }
        };
        let unhealthy =
            loops_stuck.iter().chain(&processors_stuck).any(|&s| s) || journal.status == "stuck";
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((0, 0));
        let uptime = self.started.elapsed();
        let health = Health {
            status: if unhealthy {
                "unhealthy"
            } else if degraded {
                "degraded"
            } else {
                "healthy"
            },
            timestamp: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            uptime: health::go_duration(uptime),
            uptime_seconds: uptime.as_secs_f64(),
            connections: snapshot.connections,
            ping_service: PingService {
                active_connections: snapshot.connections,
                ping_interval: health::go_duration(self.parts.config.websocket.ping_interval),
                total_pings: snapshot.pings_sent,
                skipped_pings: snapshot.pings_skipped,
            },
            loops,
            processors,
            journal,
            open_files_limit: OpenFiles { soft, hard },
            problems,
        };
        Response::json(if unhealthy { 503 } else { 200 }, &health)
    }

    fn metrics(&mut self) -> Response {
        let now = Instant::now();
        let (loops_stuck, processors_stuck) = self.stuck(now);
        let stats = &self.parts.stats;
        let journal_stuck =
            self.parts.journal.as_ref().is_some_and(|(_, status)| {
                status.silent_for() >= self.parts.config.admin.stuck_after
            });
        let healthy = !loops_stuck.iter().chain(&processors_stuck).any(|&s| s) && !journal_stuck;
        let gauges = metrics::Gauges {
            processor_queue_depths: self
                .parts
                .commands
                .processors
                .iter()
                .map(|s| s.len())
                .collect(),
            loop_queue_depths: self.parts.loops.iter().map(|l| l.tx.len()).collect(),
            journal_queue_depth: self.parts.journal.as_ref().map(|(j, _)| j.queue_depth()),
            journal_failing: self
                .parts
                .journal
                .as_ref()
                .is_some_and(|(_, status)| status.failing()),
            open_files_limit: rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(s, _)| s),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            healthy,
        };
        Response::text(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::render(&stats.snapshot(), &gauges),
        )
    }
}

/// The HTTP answer for a call's outcome.
fn outcome_response(outcome: CallOutcome) -> Response {
    match outcome {
        CallOutcome::Result(payload) => {
            Response::json(200, &json!({"outcome": "result", "payload": payload}))
        }
        CallOutcome::Error {
            code,
            description,
            details,
        } => Response::json(
            200,
            &json!({"outcome": "error", "code": code, "description": description,
                    "details": details}),
        ),
        CallOutcome::InvalidResult(invalid) => Response::json(
            502,
            &json!({"outcome": "invalid_result", "code": invalid.code.as_str(),
                    "error": invalid.description}),
        ),
        CallOutcome::Timeout => Response::json(
            504,
            &json!({"outcome": "timeout", "error": "the charge point did not answer in time"}),
        ),
        CallOutcome::NotConnected => Response::json(
            404,
            &json!({"outcome": "not_connected", "error": "the charge point is not connected"}),
        ),
        CallOutcome::Rejected => Response::json(
            429,
            &json!({"outcome": "rejected",
                    "error": "too many calls wait for this charge point; try again later"}),
        )
        .with_header("Retry-After: 1".into()),
    }
}
