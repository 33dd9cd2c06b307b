//! Every byte of a charge point's connection passes through [`Transport`]: reads land in the
//! loop's shared buffer, writes go straight to the socket and only what the kernel refuses is
//! kept. On TLS listeners the same calls go through a [`TlsLayer`] (ciphertext is read into the
//! loop's [`Wire`] buffer and opened into the read buffer; plaintext is sealed into the wire's
//! other buffer and written), and on listeners behind a load balancer the PROXY header is taken
//! off first; nothing above this crate knows which.
//!
//! Those are the connection's first phases, each a type of its own file consumed into the next:
//! the PROXY header (`proxy_header`: `AwaitingHeader`, consumed into [`Proxied`]), the TLS
//! handshake ([`tls`]'s `handshake`: rustls's state, consumed into the established phase's
//! record keys, `tls::records`). The session's phases (upgrade, open, closing) follow in the
//! gateway. Each is tested without sockets over the in-memory stream ([`memory`]).
//!
//! [`Held`] is a byte buffer a connection keeps only while it must (an unfinished frame or
//! message, a write backlog), released when it empties, its capacity counted in a loop-wide
//! gauge: that gauge is what `websocket.partial_message_budget` caps and what `/metrics`
//! reports as `buffered_bytes`.

use std::io::{self, Read, Write};
use std::mem;

use mio::net::TcpStream;

use wire::proxy::ProxyError;

use crate::proxy_header::{AwaitingHeader, ProxyHeader};
use crate::tls::{Opened, TlsError, TlsLayer};

pub use proxy_header::Proxied;

pub mod tls;

mod proxy_header;

/// A buffer held this much larger than its content is shrunk.
const SHRINK_FACTOR: usize = 4;
/// Buffers at or below this capacity are never shrunk (not worth a reallocation).
const SHRINK_FLOOR: usize = 4096;

/// A byte buffer held only while needed; every change of its capacity is applied to `gauge`.
#[derive(Debug, Default)]
pub struct Held(Vec<u8>);

impl Held {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.0
    }

    /// Appends `data`, reserving room for `expect` bytes in all when that is more (so a frame
    /// whose length is known is held in one allocation of exactly its size).
    pub fn extend(&mut self, gauge: &mut usize, data: &[u8], expect: usize) {
        let before = self.0.capacity();
        let want = expect.max(self.0.len() + data.len());
        if want > self.0.capacity() {
            self.0.reserve_exact(want - self.0.len());
        }
        self.0.extend_from_slice(data);
        *gauge += self.0.capacity() - before;
    }

    /// Drops the first `n` bytes; frees the buffer when it empties and shrinks it when it is
    /// held far larger than what is left.
    pub fn consume(&mut self, gauge: &mut usize, n: usize) {
        let before = self.0.capacity();
        if n >= self.0.len() {
            self.0 = Vec::new();
        } else {
            self.0.drain(..n);
            if self.0.capacity() > SHRINK_FLOOR && self.0.capacity() > self.0.len() * SHRINK_FACTOR
            {
                self.0.shrink_to(self.0.len().max(SHRINK_FLOOR));
            }
        }
        *gauge = *gauge + self.0.capacity() - before;
    }

    /// Frees the buffer.
    pub fn clear(&mut self, gauge: &mut usize) {
        *gauge -= self.0.capacity();
        self.0 = Vec::new();
    }

    /// Gives the buffer to the caller (its capacity leaves the gauge).
    pub fn take(&mut self, gauge: &mut usize) -> Vec<u8> {
        *gauge -= self.0.capacity();
        std::mem::take(&mut self.0)
    }

    /// Takes a buffer over (its capacity joins the gauge).
    pub fn put(&mut self, gauge: &mut usize, bytes: Vec<u8>) {
        *gauge -= self.0.capacity();
        self.0 = bytes;
        *gauge += self.0.capacity();
    }
}

/// Bytes held by a loop's connections, by what holds them.
#[derive(Debug, Default)]
pub struct Buffered {
    /// Unfinished frames, messages and TLS records of upgraded connections, and input held
    /// back while paused: what `websocket.partial_message_budget` caps.
    pub read: usize,
    /// What connections hold before their upgrade (a PROXY header, a TLS handshake, an upgrade
    /// request): counted apart, so that unauthenticated peers never spend the budget of the
    /// upgraded ones.
    pub upgrading: usize,
    /// Write backlogs.
    pub write: usize,
}

impl Buffered {
    /// The gauge that holdings of a connection count in: before its upgrade, or after.
    pub fn held(&mut self, upgrading: bool) -> &mut usize {
        if upgrading {
            &mut self.upgrading
        } else {
            &mut self.read
        }
    }
}

/// What a loop lends its transports: the gauges of what they hold, the bound on a write
/// backlog, and the scratch buffers TLS and the PROXY header need (allocated at first use, so
/// a loop without such listeners never has them).
#[derive(Debug)]
pub struct Wire {
    pub buffered: Buffered,
    /// A backlog may not grow past this many bytes (`websocket.max_write_buffer`).
    pub max_backlog: usize,
    /// Ciphertext (and PROXY headers) read from sockets.
    cipher: Vec<u8>,
    /// Records to send.
    sealed: Vec<u8>,
}

impl Wire {
    pub fn new(max_backlog: usize) -> Wire {
        Wire {
            buffered: Buffered::default(),
            max_backlog,
            cipher: Vec::new(),
            sealed: Vec::new(),
        }
    }
}

/// What a read gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// This many bytes (possibly none, on TLS) are at the start of the buffer; with `more` the
    /// socket or the TLS layer may have more now (no new readiness event will say so).
    Data { len: usize, more: bool },
    /// The peer closed its side (EOF, or TLS close_notify).
    Closed,
    /// Nothing to read now.
    Blocked,
}

/// Why a read failed: in every case the connection is over.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    /// A TLS handshake or record failed (plaintext on a TLS port, a refused certificate, ...).
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// The listener expects a PROXY header and this is none.
    #[error("{0}")]
    Proxy(#[from] ProxyError),
}

/// Why bytes could not be handed to the connection.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The backlog would pass its bound: the peer does not read what we send.
    #[error("write backlog full")]
    Backlog,
    /// The socket failed.
    #[error("write failed: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Tls(#[from] TlsError),
}

/// The socket under a transport: TCP, or in unit tests and the socket-free benchmark
/// (`benches/million_sessions`, built with the `test-hooks` feature) an in-memory stream, so a
/// connection's behaviour runs without sockets.
#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    #[cfg(any(test, feature = "memory"))]
    Memory(Box<memory::MemoryStream>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(tcp) => tcp.read(buf),
            #[cfg(any(test, feature = "memory"))]
            Stream::Memory(m) => m.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(tcp) => tcp.write(buf),
            #[cfg(any(test, feature = "memory"))]
            Stream::Memory(m) => m.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a raw read gave (after the PROXY header, if one was expected).
pub(crate) enum Raw {
    /// This many bytes; `drained`: the socket had no more.
    Bytes {
        len: usize,
        drained: bool,
    },
    Eof,
    Blocked,
}

/// A connection's byte stream: plain TCP or TLS, optionally behind a PROXY header.
pub struct Transport {
    stream: Stream,
    /// What the kernel would not take yet, oldest first (ciphertext on TLS).
    backlog: Held,
    tls: Option<Box<TlsLayer>>,
    /// Boxed: most connections have none, and the slab entry stays small.
    proxy: Option<Box<ProxyHeader>>,
    /// The connection is not upgraded yet: what it holds counts in `Buffered::upgrading`.
    upgrading: bool,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("stream", &self.stream)
            .field("backlog", &self.backlog.len())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Transport {
    pub fn new(tcp: TcpStream) -> Transport {
        Transport::over(Stream::Tcp(tcp))
    }

    fn over(stream: Stream) -> Transport {
        Transport {
            stream,
            backlog: Held::default(),
            tls: None,
            proxy: None,
            upgrading: true,
        }
    }

    /// Runs TLS over this transport (before any byte was exchanged).
    pub fn with_tls(mut self, tls: TlsLayer) -> Transport {
        self.tls = Some(Box::new(tls));
        self
    }

    /// Expects a PROXY protocol header before anything else.
    pub fn expecting_proxy_header(mut self) -> Transport {
        self.proxy = Some(Box::new(ProxyHeader::Awaiting(AwaitingHeader::default())));
        self
    }

    /// A transport over an in-memory stream, for unit tests and the socket-free benchmark.
    #[cfg(any(test, feature = "memory"))]
    pub fn memory(stream: memory::MemoryStream) -> Transport {
        Transport::over(Stream::Memory(Box::new(stream)))
    }

    /// The in-memory stream of such a transport (panics on a TCP one).
    #[cfg(any(test, feature = "memory"))]
    pub fn memory_mut(&mut self) -> &mut memory::MemoryStream {
        match &mut self.stream {
            Stream::Memory(m) => m,
            Stream::Tcp(_) => panic!("not a test transport"),
        }
    }

    /// The capacity of what it holds for reading (a PROXY header, a TLS record) between reads.
    pub fn held(&self) -> usize {
        self.tls.as_ref().map_or(0, |tls| tls.held_capacity())
            + match self.proxy.as_deref() {
                Some(ProxyHeader::Awaiting(awaiting)) => awaiting.capacity(),
                _ => 0,
            }
    }

    /// Not upgraded yet: what it holds counts in `Buffered::upgrading`.
    pub fn is_upgrading(&self) -> bool {
        self.upgrading
    }

    /// The connection was upgraded: what the transport holds from now on (and holds now)
    /// counts in `Buffered::read`.
    pub fn upgraded(&mut self, wire: &mut Wire) {
        if !self.upgrading {
            return;
        }
        self.upgrading = false;
        let held = self.held();
        wire.buffered.upgrading -= held;
        wire.buffered.read += held;
    }

    /// The TLS layer, if this transport has one.
    pub fn tls(&self) -> Option<&TlsLayer> {
        self.tls.as_deref()
    }

    /// The same, to change.
    pub fn tls_mut(&mut self) -> Option<&mut TlsLayer> {
        self.tls.as_deref_mut()
    }

    /// What the PROXY header said, once it was read (given once).
    pub fn take_proxied(&mut self) -> Option<Proxied> {
        match self.proxy.as_deref() {
            Some(ProxyHeader::Read(_)) => match self.proxy.take().map(|b| *b) {
                Some(ProxyHeader::Read(proxied)) => Some(proxied),
                _ => None,
            },
            _ => None,
        }
    }

    /// Starts a TLS client's handshake (the load generator's side); nothing otherwise.
    pub fn start(&mut self, wire: &mut Wire) -> Result<(), SendError> {
        let Some(tls) = &mut self.tls else {
            return Ok(());
        };
        let mut out = mem::take(&mut wire.sealed);
        out.clear();
        let result = tls.start(&mut out).map_err(SendError::Tls);
        let sent = result.and_then(|()| self.send_raw(wire, &out));
        wire.sealed = out;
        sent
    }

    /// Reads what is available: plaintext lands at the start of `buf`. At most `window` bytes
    /// are taken from the socket (`buf` must be larger than one TLS record, which a read on TLS
    /// may have to complete).
    pub fn read(
        &mut self,
        wire: &mut Wire,
        buf: &mut [u8],
        window: usize,
    ) -> Result<Received, ReadError> {
        if self.tls.is_none() {
            let window = window.min(buf.len());
            return Ok(match self.read_raw(wire, &mut buf[..window])? {
                Raw::Bytes { len, drained } => Received::Data {
                    len,
                    more: !drained,
                },
                Raw::Eof => Received::Closed,
                Raw::Blocked => Received::Blocked,
            });
        }
        let mut cipher = mem::take(&mut wire.cipher);
        cipher.resize(buf.len(), 0);
        let result = self.read_tls(wire, &mut cipher, buf, window);
        wire.cipher = cipher;
        result
    }

    fn read_tls(
        &mut self,
        wire: &mut Wire,
        cipher: &mut [u8],
        buf: &mut [u8],
        window: usize,
    ) -> Result<Received, ReadError> {
        let held = match &mut self.tls {
            Some(tls) => tls.restore(wire.buffered.held(self.upgrading), cipher),
            None => 0,
        };
        // Plaintext is never longer than its ciphertext: reading no more than `buf` can take
        // means every record read can be opened now.
        let room = window.min(cipher.len() - held);
        if room == 0 {
            return Err(TlsError::Unexpected("handshake larger than the read buffer").into());
        }
        let (len, eof, drained) = match self.read_raw(wire, &mut cipher[held..held + room])? {
            Raw::Bytes { len, drained } => (len, false, drained),
            Raw::Eof => (0, true, true),
            Raw::Blocked => (0, false, true),
        };
        let mut out = mem::take(&mut wire.sealed);
        out.clear();
        let opened = match &mut self.tls {
            Some(tls) => tls.open(
                wire.buffered.held(self.upgrading),
                &mut cipher[..held + len],
                buf,
                &mut out,
            ),
            None => Ok(Opened::default()),
        };
        // Handshake messages and alerts go out even when opening failed.
        let sent = self.send_raw(wire, &out);
        wire.sealed = out;
        let opened = opened?;
        if let Err(e) = sent {
            return Err(match e {
                SendError::Io(e) => ReadError::Io(e),
                SendError::Tls(e) => ReadError::Tls(e),
                SendError::Backlog => ReadError::Io(io::ErrorKind::WriteZero.into()),
            });
        }
        let more = !drained || opened.more;
        Ok(if opened.plain > 0 {
            Received::Data {
                len: opened.plain,
                more: more || eof || opened.closed,
            }
        } else if eof || opened.closed {
            Received::Closed
        } else if more {
            Received::Data { len: 0, more }
        } else {
            Received::Blocked
        })
    }

    /// Reads from the socket into `dst`; while the PROXY header phase lasts, through it.
    fn read_raw(&mut self, wire: &mut Wire, dst: &mut [u8]) -> Result<Raw, ReadError> {
        let Some(ProxyHeader::Awaiting(awaiting)) = self.proxy.as_deref_mut() else {
            return read_some(&mut self.stream, dst);
        };
        let awaiting = std::mem::take(awaiting);
        let gauge = wire.buffered.held(self.upgrading);
        let (next, raw) = awaiting.read(gauge, &mut self.stream, dst);
        if let Some(phase) = self.proxy.as_deref_mut() {
            *phase = next;
        }
        raw
    }

    /// Sends `bytes` (plaintext: sealed first on TLS): straight to the socket when nothing
    /// waits, else behind the backlog. Whatever the kernel refuses joins the backlog, which may
    /// not grow past the wire's `max_backlog`.
    pub fn send(&mut self, wire: &mut Wire, bytes: &[u8]) -> Result<(), SendError> {
        let Some(tls) = &mut self.tls else {
            return self.send_raw(wire, bytes);
        };
        let mut out = mem::take(&mut wire.sealed);
        out.clear();
        let sealed = tls.seal(wire.buffered.held(self.upgrading), bytes, &mut out);
        let sent = sealed
            .map_err(SendError::Tls)
            .and_then(|()| self.send_raw(wire, &out));
        wire.sealed = out;
        sent
    }

    fn send_raw(&mut self, wire: &mut Wire, bytes: &[u8]) -> Result<(), SendError> {
        let mut rest = bytes;
        if rest.is_empty() {
            return Ok(());
        }
        if self.backlog.is_empty() {
            let written = write_some(&mut self.stream, rest)?;
            rest = &rest[written..];
            if rest.is_empty() {
                return Ok(());
            }
        }
        if self.backlog.len() + rest.len() > wire.max_backlog {
            return Err(SendError::Backlog);
        }
        self.backlog.extend(&mut wire.buffered.write, rest, 0);
        Ok(())
    }

    /// Writes as much of the backlog as the kernel takes; true when it is empty now.
    pub fn flush(&mut self, wire: &mut Wire) -> io::Result<bool> {
        while !self.backlog.is_empty() {
            let written = write_some(&mut self.stream, self.backlog.as_slice())?;
            if written == 0 {
                return Ok(false);
            }
            self.backlog.consume(&mut wire.buffered.write, written);
        }
        Ok(true)
    }

    /// Bytes waiting in the backlog.
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }

    /// Frees what the transport holds (the connection is going away).
    pub fn release(&mut self, wire: &mut Wire) {
        self.backlog.clear(&mut wire.buffered.write);
        if let Some(tls) = &mut self.tls {
            tls.release(wire.buffered.held(self.upgrading));
        }
        if let Some(ProxyHeader::Awaiting(awaiting)) = self.proxy.as_deref_mut() {
            awaiting.release(wire.buffered.held(self.upgrading));
        }
    }

    /// Shuts our sending side down (after a final close frame; on TLS after close_notify);
    /// false if it failed.
    pub fn shutdown_write(&mut self, wire: &mut Wire) -> bool {
        if let Some(tls) = &mut self.tls {
            let mut out = mem::take(&mut wire.sealed);
            out.clear();
            let notified = tls
                .close_notify(wire.buffered.held(self.upgrading), &mut out)
                .is_ok()
                && self.send_raw(wire, &out).is_ok();
            wire.sealed = out;
            if !notified || self.backlog() != 0 {
                return false;
            }
        }
        match &mut self.stream {
            Stream::Tcp(tcp) => tcp.shutdown(std::net::Shutdown::Write).is_ok(),
            #[cfg(any(test, feature = "memory"))]
            Stream::Memory(m) => {
                m.write_shut = true;
                true
            }
        }
    }
}

/// One read: `WouldBlock` and `EINTR` become values.
pub(crate) fn read_some(stream: &mut impl Read, dst: &mut [u8]) -> Result<Raw, ReadError> {
    loop {
        return match stream.read(dst) {
            Ok(0) if !dst.is_empty() => Ok(Raw::Eof),
            Ok(n) => Ok(Raw::Bytes {
                len: n,
                drained: n < dst.len(),
            }),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Raw::Blocked),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e.into()),
        };
    }
}

/// Writes what the kernel takes of `bytes` now (0 when it takes nothing).
fn write_some(stream: &mut impl Write, bytes: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match stream.write(&bytes[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// An in-memory stream for unit tests and the socket-free benchmark: what the peer sent waits
/// in `input`, what we write lands in `output` (up to `room` bytes, like a socket buffer).
#[cfg(any(test, feature = "memory"))]
pub mod memory {
    use std::io::{self, Read, Write};

    #[derive(Debug, Default)]
    pub struct MemoryStream {
        pub input: std::collections::VecDeque<u8>,
        /// The peer closed its side: reads give EOF once `input` is empty.
        pub eof: bool,
        pub output: Vec<u8>,
        /// Bytes `output` may still take (None: no limit).
        pub room: Option<usize>,
        pub write_shut: bool,
    }

    impl Read for MemoryStream {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.input.is_empty() {
                return if self.eof {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
            let n = buf.len().min(self.input.len());
            for (slot, byte) in buf.iter_mut().zip(self.input.drain(..n)) {
                *slot = byte;
            }
            Ok(n)
        }
    }

    impl Write for MemoryStream {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = self.room.map_or(buf.len(), |room| room.min(buf.len()));
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.output.extend_from_slice(&buf[..n]);
            if let Some(room) = &mut self.room {
                *room -= n;
            }
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_buffers_count_their_capacity_and_let_go() {
        let mut gauge = 0;
        let mut held = Held::default();
        held.extend(&mut gauge, b"abc", 10);
        assert_eq!((held.len(), gauge), (3, held.capacity()));
        assert!(held.capacity() >= 10);
        held.extend(&mut gauge, &[7; 7], 0);
        assert_eq!(gauge, held.capacity());
        held.consume(&mut gauge, 4);
        assert_eq!((held.as_slice(), gauge), (&[7u8; 6][..], held.capacity()));
        held.consume(&mut gauge, 6);
        assert_eq!(
            (held.capacity(), gauge),
            (0, 0),
            "an emptied buffer is freed"
        );

        held.extend(&mut gauge, &vec![1; 100_000], 0);
        held.consume(&mut gauge, 99_000);
        assert!(held.capacity() < 10_000, "shrunk to what it holds");
        assert_eq!(gauge, held.capacity());
        let bytes = held.take(&mut gauge);
        assert_eq!((bytes.len(), gauge), (1000, 0));
        held.put(&mut gauge, bytes);
        assert_eq!(gauge, held.capacity());
        held.clear(&mut gauge);
        assert_eq!(gauge, 0);
    }
}
