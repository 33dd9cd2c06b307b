//! Connecting a charge point: the TCP connect (paced, bounded in flight), the WebSocket
//! upgrade, and what happens when a connection fails (back-off with full jitter) or is dropped
//! on purpose.

use mio::{Interest, Token};

use super::exchange::ClientConn;
use super::{FleetLoop, micros, micros_since};
use crate::charge_point::{Boot, Link};
use crate::dial::{self, Connect};
use crate::messages::{ConnectorStatus, Outgoing};
use crate::scenario::NEVER;
use crate::stats::{self, ErrorKind, ThreadCounters};
use crate::upgrade::{Step, Upgrade, UpgradeError};
use rustls::client::UnbufferedClientConnection;
use transport::Transport;
use transport::tls::TlsLayer;

use crate::security;

impl FleetLoop {
    pub(super) fn start_connects(&mut self) {
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

    pub(super) fn on_socket_event(
        &mut self,
        key: u32,
        readable: bool,
        hangup: bool,
        writable: bool,
    ) {
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
            Link::Open(conn) => {
                if hangup {
                    conn.hangup = true;
                }
                if writable && let Err(e) = conn.transport.flush(&mut self.wire) {
                    return self.fail(key, ErrorKind::Disconnected, &e);
                }
                if readable || hangup {
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
        let identity = self.identity(key);
        let mut transport = Transport::new(stream);
        if let Some(tls) = &self.config.tls {
            let conn = tls
                .config_for(&identity, &mut self.tls_configs)
                .map_err(|e| e.to_string())
                .and_then(|config| {
                    UnbufferedClientConnection::new(config, tls.server_name.clone())
                        .map_err(|e| e.to_string())
                });
            match conn {
                Ok(conn) => transport = transport.with_tls(TlsLayer::client(conn)),
                Err(e) => return self.fail(key, ErrorKind::HandshakeFailed, &e),
            }
        }
        let authorization = self
            .config
            .basic_auth
            .as_deref()
            .map(|seed| security::basic_header(seed, &identity));
        let path = format!("{}{identity}", self.config.target.path_prefix);
        let started = Upgrade::start(
            transport,
            &mut self.wire,
            &self.config.target.host,
            (&path, self.cps[key as usize].version.subprotocol()),
            authorization.as_deref(),
        );
        match started {
            Ok(upgrade) => {
                self.put_link(key, Link::Handshaking(upgrade));
                self.drive_upgrade(key);
            }
            Err(e) => self.fail(key, ErrorKind::HandshakeFailed, &e),
        }
    }

    fn drive_upgrade(&mut self, key: u32) {
        let Link::Handshaking(upgrade) = self.take_link(key) else {
            return;
        };
        let mut buf = std::mem::take(&mut self.read_buf);
        let advanced = upgrade.advance(&mut self.wire, &mut buf);
        self.read_buf = buf;
        match advanced {
            Ok(Step::Open(transport, rest)) => {
                let mut conn = Box::new(ClientConn::new(transport));
                conn.input.extend(&mut self.wire.buffered.read, &rest, 0);
                self.opened(key, conn);
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

    fn opened(&mut self, key: u32, conn: Box<ClientConn>) {
        ThreadCounters::inc(&self.counters.handshakes);
        if conn.transport.tls().is_some_and(|tls| tls.resumed()) {
            ThreadCounters::inc(&self.counters.tls_resumed);
        }
        let started = self.cps[key as usize].connect_started_us;
        stats::record(&mut self.latencies.handshake, self.now - started);
        self.put_link(key, Link::Open(conn));
        let cp = &mut self.cps[key as usize];
        cp.link_deadline = NEVER;
        cp.boot = Boot::Sent;
        let first = if self.config.resume && cp.ever_booted {
            Outgoing::StatusNotification {
                connector: 0,
                status: ConnectorStatus::Available,
            }
        } else {
            Outgoing::BootNotification
        };
        self.send_call(key, first, self.now);
        // Bytes that came right behind the 101 arrived with no edge of their own.
        self.read_messages(key);
    }

    /// The connection failed: count it, drop it, and reconnect after a back-off with full
    /// jitter (uniform below a ceiling that doubles per consecutive failure).
    pub(super) fn fail(&mut self, key: u32, kind: ErrorKind, detail: &dyn std::fmt::Display) {
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
    pub(super) fn disconnect(&mut self, key: u32) {
        match self.take_link(key) {
            Link::Open(mut conn) => conn.release(&mut self.wire),
            Link::Handshaking(mut upgrade) => upgrade.release(&mut self.wire),
            _ => {}
        }
        self.set_booted(key, false);
        let cp = &mut self.cps[key as usize];
        cp.boot = Boot::NotSent;
        cp.call = None;
        cp.triggered = None;
        cp.link_deadline = NEVER;
    }

    /// Queues the charge point for a connect now (storm, reboot).
    pub(super) fn reconnect_now(&mut self, key: u32) {
        let cp = &mut self.cps[key as usize];
        if matches!(cp.link, Link::Down) {
            cp.link = Link::Queued;
            cp.link_deadline = NEVER;
            self.connect_queue.push_back(key);
        }
    }
}
