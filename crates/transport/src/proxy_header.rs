//! The PROXY header phase of a connection behind a load balancer that sends one (PROXY protocol
//! v1 or v2, parsed by `wire::proxy`): what arrived of the header is held ([`AwaitingHeader`])
//! until the read that completes it consumes the phase into what the header said
//! ([`Proxied`], given to the session once); the bytes behind it are the connection's first.

use std::io::Read;
use std::net::SocketAddr;

use wire::proxy::{self, Header, ProxyError};

use crate::{Held, Raw, ReadError, read_some};

/// What a PROXY header said of the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxied {
    /// The header's version, 1 or 2.
    pub version: u8,
    /// The client's address (None: a health check, or a family without one).
    pub source: Option<SocketAddr>,
    /// Version 2's PP2_TYPE_SSL TLV: what the balancer says of the client's TLS.
    pub ssl: Option<proxy::Ssl>,
}

/// The PROXY header of a connection that expects one: its phase.
#[derive(Debug)]
pub(crate) enum ProxyHeader {
    /// Expected and not complete yet.
    Awaiting(AwaitingHeader),
    /// Taken off; what it said, until the session takes it.
    Read(Proxied),
}

/// A header expected: what arrived of it so far (counted in the gauge it is read with).
#[derive(Debug, Default)]
pub(crate) struct AwaitingHeader {
    held: Held,
}

impl AwaitingHeader {
    /// Reads from `stream` into `dst` behind what arrived before and looks for the header.
    /// Consumes the phase and returns the next: this one again while the header is unfinished
    /// (or the read failed: what it holds is released with the transport), else what the header
    /// said, the bytes after it moved to the front of `dst` and reported by the read.
    pub(crate) fn read(
        mut self,
        gauge: &mut usize,
        stream: &mut impl Read,
        dst: &mut [u8],
    ) -> (ProxyHeader, Result<Raw, ReadError>) {
        let held = self.held.len();
        if held >= dst.len() {
            return (ProxyHeader::Awaiting(self), Err(ProxyError::Missing.into()));
        }
        dst[..held].copy_from_slice(self.held.as_slice());
        let (len, drained) = match read_some(stream, &mut dst[held..]) {
            Ok(Raw::Bytes { len, drained }) => (held + len, drained),
            other => return (ProxyHeader::Awaiting(self), other),
        };
        match proxy::parse(&dst[..len]) {
            Err(e) => (ProxyHeader::Awaiting(self), Err(e.into())),
            Ok(Header::Partial) if len > proxy::MAX_HEADER => {
                (ProxyHeader::Awaiting(self), Err(ProxyError::Missing.into()))
            }
            Ok(Header::Partial) => {
                self.held.clear(gauge);
                self.held.extend(gauge, &dst[..len], 0);
                let raw = Raw::Bytes { len: 0, drained };
                (ProxyHeader::Awaiting(self), Ok(raw))
            }
            Ok(Header::Done {
                len: header,
                version,
                source,
                ssl,
            }) => {
                self.held.clear(gauge);
                dst.copy_within(header..len, 0);
                let proxied = Proxied {
                    version,
                    source,
                    ssl,
                };
                let raw = Raw::Bytes {
                    len: len - header,
                    drained,
                };
                (ProxyHeader::Read(proxied), Ok(raw))
            }
        }
    }

    /// The capacity of what it holds.
    pub(crate) fn capacity(&self) -> usize {
        self.held.capacity()
    }

    /// Frees what it holds (the connection is going away).
    pub(crate) fn release(&mut self, gauge: &mut usize) {
        self.held.clear(gauge);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Received, Transport, Wire, memory};

    #[test]
    fn a_proxy_header_split_across_reads_is_taken_off() {
        let mut transport =
            Transport::memory(memory::MemoryStream::default()).expecting_proxy_header();
        let mut wire = Wire::new(1 << 16);
        let mut buf = vec![0u8; 4096];
        let header = b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\n";
        transport.memory_mut().input.extend(&header[..10]);
        assert_eq!(
            transport.read(&mut wire, &mut buf, 4096).unwrap(),
            Received::Data {
                len: 0,
                more: false
            }
        );
        assert!(
            wire.buffered.upgrading > 0 && wire.buffered.read == 0,
            "the partial header is held and counted, before the upgrade"
        );
        transport.memory_mut().input.extend(&header[10..]);
        transport.memory_mut().input.extend(b"GET /");
        assert_eq!(
            transport.read(&mut wire, &mut buf, 4096).unwrap(),
            Received::Data {
                len: 5,
                more: false
            }
        );
        assert_eq!(&buf[..5], b"GET /");
        assert_eq!((wire.buffered.read, wire.buffered.upgrading), (0, 0));
        assert_eq!(
            transport.take_proxied(),
            Some(Proxied {
                version: 1,
                source: Some("192.0.2.1:1234".parse().unwrap()),
                ssl: None
            })
        );
        assert_eq!(transport.take_proxied(), None, "given once");
        // Once taken off, nothing more is parsed.
        transport.memory_mut().input.extend(b"PROXY ");
        assert_eq!(
            transport.read(&mut wire, &mut buf, 4096).unwrap(),
            Received::Data {
                len: 6,
                more: false
            }
        );

        let mut missing =
            Transport::memory(memory::MemoryStream::default()).expecting_proxy_header();
        missing.memory_mut().input.extend(b"GET / HTTP/1.1\r\n");
        assert!(matches!(
            missing.read(&mut wire, &mut buf, 4096),
            Err(ReadError::Proxy(ProxyError::Missing))
        ));
    }
}
