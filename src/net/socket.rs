//! The byte streams tungstenite reads and writes. All socket I/O of a charge point passes through
//! here, so TLS (a later step) has one place to slot in.
//!
//! [`Socket`] also remembers how many bytes the kernel last refused: tungstenite writes its whole
//! pending out-buffer on every flush attempt, so that figure is the size of the connection's
//! write backlog, which decides whether an idle ping is worth sending.
//!
//! [`HandshakeStream`] shares the TCP stream with the loop while the upgrade is in progress,
//! because tungstenite drops the stream when a request cannot be parsed and the loop still wants
//! to answer `400 Bad Request` on it.

use std::io::{self, Read, Write};
use std::rc::Rc;

use mio::net::TcpStream;

/// An upgraded connection's stream.
#[derive(Debug)]
pub struct Socket {
    tcp: TcpStream,
    unsent: usize,
}

impl Socket {
    pub fn new(tcp: TcpStream) -> Socket {
        Socket { tcp, unsent: 0 }
    }

    /// Bytes tungstenite holds that the kernel would not take at the last attempt.
    pub fn unsent(&self) -> usize {
        self.unsent
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.read(buf)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.tcp.write(buf) {
            Ok(n) => {
                self.unsent = buf.len().saturating_sub(n);
                Ok(n)
            }
            Err(e) => {
                if e.kind() == io::ErrorKind::WouldBlock {
                    self.unsent = buf.len();
                }
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The stream while the upgrade runs: a second handle on the same socket stays with the loop.
#[derive(Debug, Clone)]
pub struct HandshakeStream(pub Rc<TcpStream>);

impl Read for HandshakeStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

impl Write for HandshakeStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `WouldBlock` turned into a value: the one place the loop asks "is this just not ready?".
pub fn would_block(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
}
