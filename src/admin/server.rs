//! The admin thread's loop: accepting, reading and writing clients (bounded), parking requests
//! that wait for another thread, liveness probes, deadlines. What a request gets is decided in
//! `router` and the endpoint modules.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use serde_json::json;
use slab::Slab;

use super::api::{Forward, Rotation, outcome_response, reply_response};
use super::health::{Probes, Progress};
use super::http::{self, Parsed, Response};
use super::{AdminParts, IDLE_TIMEOUT, LISTENER, MAX_CLIENTS, REQUEST_TIMEOUT, WAKER};
use crate::call::{CallOutcome, PendingCall};
use crate::cluster::remote::Reply;
use crate::mailbox::{ToLoop, ToProcessor};
use crate::query::ChargePointView;

/// How much longer than a local call a forwarded one may take (two trips through Redis, and
/// the remote thread's own deadline, which answers 504 first).
const FORWARD_MARGIN: Duration = Duration::from_secs(10);

/// A request parked until another thread answers.
pub(super) enum Waiting {
    Call {
        pending: PendingCall,
        until: Instant,
        /// A ChangeConfiguration of AuthorizationKey: the key to store once it is Accepted.
        rotation: Option<Rotation>,
        /// Cluster mode: the call, for the node that holds the charge point if this one
        /// does not.
        forward: Option<Box<Forward>>,
    },
    /// A call sent to another node, or a cluster listing.
    Remote {
        rx: Receiver<Reply>,
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
            | Waiting::Remote { until, .. }
            | Waiting::List { until, .. }
            | Waiting::Detail { until, .. }
            | Waiting::Disconnect { until, .. } => *until,
        }
    }
}

/// What handling a request gives.
pub(super) enum Handled {
    Respond(Response),
    Wait(Waiting),
}

pub(super) struct Client {
    stream: TcpStream,
    /// Received, not yet handled (bounded: at most one request plus one read more).
    input: Vec<u8>,
    /// The response being written, and how much of it went out.
    output: Vec<u8>,
    written: usize,
    keep_alive: bool,
    /// A request parked until another thread answers.
    waiting: Option<Waiting>,
    /// Reading or writing must make progress by then, or the client is dropped; while a
    /// request is arriving, no later than [`REQUEST_TIMEOUT`] after its first byte (bytes
    /// that trickle in do not move it).
    deadline: Instant,
    /// When the first byte of the request being received arrived.
    request_started: Option<Instant>,
    /// The client sent EOF: answer what it sent, then close.
    peer_done: bool,
    /// Close once the output is written.
    close_after_output: bool,
    /// `100 Continue` already sent for the request being received.
    continued: bool,
}

pub(super) struct AdminLoop {
    pub(super) poll: Poll,
    pub(super) listener: TcpListener,
    pub(super) waker: Arc<Waker>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) clients: Slab<Client>,
    pub(super) probes: Probes,
    pub(super) loop_progress: Vec<Progress>,
    pub(super) processor_progress: Vec<Progress>,
    pub(super) next_probe: Instant,
    /// `Bearer <token>` as sent in the header, when a token is configured.
    pub(super) token: Option<Vec<u8>>,
    pub(super) started: Instant,
    pub(super) parts: AdminParts,
}

impl AdminLoop {
    pub(super) fn run(&mut self) {
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
        for handle in self.parts.loops.handles.iter() {
            handle.try_send(ToLoop::Probe { seq });
        }
        for processor in self.parts.processors.handles.iter() {
            let _ = processor.try_send(ToProcessor::Probe { seq });
        }
        self.next_probe = now + self.probes.interval;
    }

    fn observe_progress(&mut self, now: Instant) {
        let stats = &self.parts.stats;
        Probes::observe(&mut self.loop_progress, &stats.loop_progress, now);
        Probes::observe(&mut self.processor_progress, &stats.processor_progress, now);
    }

    /// Which loops and which processors are stuck now.
    pub(super) fn stuck(&mut self, now: Instant) -> (Vec<bool>, Vec<bool>) {
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
                self.make_room();
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
                request_started: None,
                peer_done: false,
                close_after_output: false,
                continued: false,
            });
            self.drive(key);
        }
    }

    /// A full table must not lock out a health check (a load balancer acts on it): the
    /// client idle longest makes room, else the one whose request has been arriving longest
    /// (a slowloris), which gets 408.
    fn make_room(&mut self) {
        let idle = self
            .clients
            .iter()
            .filter(|(_, c)| c.waiting.is_none() && c.output.is_empty() && c.input.is_empty())
            .min_by_key(|(_, c)| c.deadline)
            .map(|(key, _)| key);
        if let Some(key) = idle {
            return self.remove(key);
        }
        let slowest = self
            .clients
            .iter()
            .filter(|(_, c)| c.waiting.is_none() && c.output.is_empty())
            .filter_map(|(key, c)| c.request_started.map(|started| (key, started)))
            .min_by_key(|&(_, started)| started)
            .map(|(key, _)| key);
        let (key, answer) = match slowest {
            Some(key) => (key, Response::error(408, "request not completed in time")),
            None => {
                let Some(key) = self.clients.iter().map(|(key, _)| key).min() else {
                    return;
                };
                (key, Response::error(503, "too many admin connections"))
            }
        };
        if let Some(client) = self.clients.get_mut(key) {
            // Best effort: the socket is dropped right after.
            let _ = client.stream.write(&answer.write(false));
        }
        self.remove(key);
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
                    client.request_started = None;
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
                    let now = Instant::now();
                    client.input.extend_from_slice(&chunk[..n]);
                    let started = *client.request_started.get_or_insert(now);
                    client.deadline = started + REQUEST_TIMEOUT;
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
            Waiting::Call {
                pending,
                until,
                rotation,
                forward,
            } => match pending.try_outcome() {
                Some(CallOutcome::NotConnected) if forward.is_some() => {
                    let until = now + self.parts.config.ocpp.longest_call() + FORWARD_MARGIN;
                    self.forward(forward)
                        .map_err(|rx| Waiting::Remote { rx, until })
                }
                Some(outcome) => Ok(match rotation {
                    Some(rotation) => self.rotated(rotation, outcome),
                    None => outcome_response(outcome),
                }),
                None if now >= until => Ok(Response::json(
                    504,
                    &json!({"outcome": "timeout", "error": "no outcome in time"}),
                )),
                None => Err(Waiting::Call {
                    pending,
                    until,
                    rotation,
                    forward,
                }),
            },
            Waiting::Remote { rx, until } => match rx.try_recv() {
                Ok(reply) => Ok(reply_response((reply.status, reply.body))),
                Err(_) if now >= until => Ok(Response::json(
                    504,
                    &json!({"outcome": "timeout", "error": "no outcome in time"}),
                )),
                Err(_) => Err(Waiting::Remote { rx, until }),
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
}
