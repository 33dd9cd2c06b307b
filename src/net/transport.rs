//! Every byte of a charge point's connection passes through [`Transport`]: reads land in the
//! loop's shared buffer, writes go straight to the socket and only what the kernel refuses is
//! kept. Plain TCP today; TLS (the next step) wraps the same three calls (`read`, `send`,
//! `flush`), so nothing above this module changes for it.
//!
//! [`Held`] is a byte buffer a connection keeps only while it must (an unfinished frame or
//! message, a write backlog), released when it empties, its capacity counted in a loop-wide
//! gauge: that gauge is what `websocket.partial_message_budget` caps and what `/metrics`
//! reports as `buffered_bytes`.

use std::io::{self, Read, Write};

use mio::net::TcpStream;

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

/// What a read gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// This many bytes (at least one) are at the start of the buffer.
    Data(usize),
    /// The peer closed its side (EOF).
    Closed,
    /// Nothing to read now.
    Blocked,
}

/// Why bytes could not be handed to the connection.
#[derive(Debug)]
pub enum SendError {
    /// The backlog would pass its bound: the peer does not read what we send.
    Backlog,
    /// The socket failed.
    Io(io::Error),
}

/// The socket under a transport: TCP, or in unit tests a scripted stream (so a connection's
/// behaviour is tested without sockets).
#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    #[cfg(test)]
    Memory(Box<memory::MemoryStream>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(tcp) => tcp.read(buf),
            #[cfg(test)]
            Stream::Memory(m) => m.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(tcp) => tcp.write(buf),
            #[cfg(test)]
            Stream::Memory(m) => m.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A connection's byte stream.
#[derive(Debug)]
pub struct Transport {
    stream: Stream,
    /// What the kernel would not take yet, oldest first.
    backlog: Held,
}

impl Transport {
    pub fn new(tcp: TcpStream) -> Transport {
        Transport {
            stream: Stream::Tcp(tcp),
            backlog: Held::default(),
        }
    }

    /// A transport over a scripted stream, for unit tests.
    #[cfg(test)]
    pub fn memory(stream: memory::MemoryStream) -> Transport {
        Transport {
            stream: Stream::Memory(Box::new(stream)),
            backlog: Held::default(),
        }
    }

    /// The scripted stream of a test transport.
    #[cfg(test)]
    pub fn memory_mut(&mut self) -> &mut memory::MemoryStream {
        match &mut self.stream {
            Stream::Memory(m) => m,
            Stream::Tcp(_) => panic!("not a test transport"),
        }
    }

    /// Reads what is available into `buf`.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<Received> {
        loop {
            return match self.stream.read(buf) {
                Ok(0) => Ok(Received::Closed),
                Ok(n) => Ok(Received::Data(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Received::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    /// Sends `bytes`: straight to the socket when nothing waits, else behind the backlog.
    /// Whatever the kernel refuses joins the backlog, which may not grow past `max_backlog`.
    pub fn send(
        &mut self,
        gauge: &mut usize,
        bytes: &[u8],
        max_backlog: usize,
    ) -> Result<(), SendError> {
        let mut rest = bytes;
        if self.backlog.is_empty() {
            let written = write_some(&mut self.stream, rest).map_err(SendError::Io)?;
            rest = &rest[written..];
            if rest.is_empty() {
                return Ok(());
            }
        }
        if self.backlog.len() + rest.len() > max_backlog {
            return Err(SendError::Backlog);
        }
        self.backlog.extend(gauge, rest, 0);
        Ok(())
    }

    /// Writes as much of the backlog as the kernel takes; true when it is empty now.
    pub fn flush(&mut self, gauge: &mut usize) -> io::Result<bool> {
        while !self.backlog.is_empty() {
            let written = write_some(&mut self.stream, self.backlog.as_slice())?;
            if written == 0 {
                return Ok(false);
            }
            self.backlog.consume(gauge, written);
        }
        Ok(true)
    }

    /// Bytes waiting in the backlog.
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }

    /// Frees the backlog (the connection is going away).
    pub fn release(&mut self, gauge: &mut usize) {
        self.backlog.clear(gauge);
    }

    /// Shuts our sending side down (after a final close frame); false if it failed.
    pub fn shutdown_write(&mut self) -> bool {
        match &mut self.stream {
            Stream::Tcp(tcp) => tcp.shutdown(std::net::Shutdown::Write).is_ok(),
            #[cfg(test)]
            Stream::Memory(m) => {
                m.write_shut = true;
                true
            }
        }
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

/// A scripted stream for unit tests: what the peer sent waits in `input`, what we write lands
/// in `output` (up to `room` bytes, like a socket buffer).
#[cfg(test)]
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
