//! Accepting: connections taken from the loop's listeners (a paced batch per turn, a pause
//! after EMFILE and friends), checked against `server.trusted_proxies` and
//! `server.max_connections`, registered and given their transport (TLS, PROXY header) and
//! their handshake deadline.

use std::net::SocketAddr;

use log::{debug, error, warn};
use mio::net::TcpStream;
use rustls::server::UnbufferedServerConnection;
use transport::Transport;
use transport::tls::TlsLayer;

use super::*;

impl EventLoop {
    pub(super) fn accept_all(&mut self) {
        self.accept_more = false;
        for i in 0..self.listeners.len() {
            self.accept(i);
        }
    }

    pub(super) fn accept(&mut self, listener: usize) {
        if self.accept_paused {
            return; // the retry timer will call again
        }
        for _ in 0..ACCEPT_BATCH {
            let Some(listening) = self.listeners.get(listener) else {
                return;
            };
            match listening.socket.accept() {
                Ok((tcp, peer)) => self.admit(tcp, peer, listener),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    self.cx.stats().accept_errors.inc();
                    let out_of_resources = matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    );
                    if out_of_resources {
                        if self.cx.warnings.allow(self.cx.now_ms()) {
                            warn!("loop={} cannot accept, retrying shortly: {e}", self.index());
                        }
                        self.cx
                            .wheel
                            .arm(self.cx.now, ACCEPT_RETRY, TimerEvent::AcceptRetry);
                        self.accept_paused = true;
                        return;
                    }
                    debug!("loop={} accept failed: {e}", self.index());
                }
            }
        }
        self.accept_more = true;
    }

    /// The transport a connection accepted on `listener` runs over, or None when TLS cannot
    /// start for it (logged; the socket is closed).
    fn transport_for(&mut self, tcp: TcpStream, listener: usize) -> Option<Transport> {
        let listening = &self.listeners[listener];
        let (profile, proxy) = (listening.profile, listening.proxy_protocol);
        let mut transport = Transport::new(tcp);
        if profile.tls() && !listening.tls_offload {
            let config = self.cx.tls_config(profile)?;
            match UnbufferedServerConnection::new(config) {
                Ok(conn) => transport = transport.with_tls(TlsLayer::server(conn)),
                Err(e) => {
                    error!("loop={} cannot start TLS: {e}", self.index());
                    return None;
                }
            }
        }
        if proxy {
            transport = transport.expecting_proxy_header();
        }
        Some(transport)
    }

    fn admit(&mut self, mut tcp: TcpStream, peer: SocketAddr, listener: usize) {
        let stats = Arc::clone(&self.cx.stats);
        let index = usize::from(self.index());
        self.cx.stats().accepted.inc();
        let trusted = &self.config.server.trusted_proxies;
        if self.listeners[listener].proxy_protocol
            && !trusted.is_empty()
            && !trusted.iter().any(|net| net.contains(peer.ip()))
        {
            // Only a balancer may name a client's address or vouch for its TLS.
            self.cx.stats().proxy_untrusted.inc();
            if self.cx.warnings.allow(self.cx.now_ms()) {
                warn!(
                    "loop={} peer={peer} closed: a PROXY listener takes connections from \
                     server.trusted_proxies only",
                    self.index()
                );
            }
            return; // dropping `tcp` closes it unread
        }
        let max = self.config.server.max_connections;
        let over_capacity = stats.connections.fetch_add(1, Ordering::Relaxed) >= max;
        if over_capacity {
            stats.connections.fetch_sub(1, Ordering::Relaxed);
            self.cx.stats().over_capacity.inc();
            if self.refusing >= MAX_REFUSING {
                return; // dropping `tcp` closes it unanswered
            }
        }
        let _ = tcp.set_nodelay(true);
        if let Some(size) = self.config.server.socket_send_buffer {
            let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(size.get());
        }
        let (profile, protocols, offloaded) = {
            let listening = &self.listeners[listener];
            (
                listening.profile,
                listening.protocols,
                listening.tls_offload,
            )
        };
        let key = self.conns.vacant_key();
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
        let transport = if registered {
            self.transport_for(tcp, listener)
        } else {
            error!("loop={index} cannot register a connection from {peer}");
            None
        };
        let Some(transport) = transport else {
            if !over_capacity {
                stats.connections.fetch_sub(1, Ordering::Relaxed);
            }
            return;
        };
        if over_capacity {
            self.refusing += 1;
        } else {
            stats.loop_connections[index].fetch_add(1, Ordering::Relaxed);
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let inserted = self.conns.insert(Connection::new(
            generation,
            transport,
            peer,
            (profile, protocols, offloaded),
            over_capacity,
        ));
        debug_assert_eq!(inserted, key);
        let conn = &mut self.conns[key];
        let timeout = self.cx.limits.handshake_timeout;
        conn.arm(&mut self.cx, key, timeout);
    }
}
