//! An in-memory connection between the gateway's TLS server side ([`TlsLayer`], which keeps only
//! `transport`'s records once the handshake is done) and a stock rustls client (`ClientConnection`,
//! rustls's ordinary buffered API). Bytes move through `Vec`s; the gateway side takes them in
//! reads of at most [`Pipe::read_size`] bytes into buffers of the loop's size, the way
//! `Transport::read` does, so records arrive whole, split or several at once.
//!
//! Shared by the record-layer tests and the `tls_records` fuzz target (which includes this
//! file by path), so it uses nothing else of `tests/common` and never panics itself: every
//! failure comes back as a [`Failure`].

#![allow(dead_code)] // each user takes a different part

use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;

use ocpp_gateway::net::context::READ_BUFFER;
use rustls::pki_types::ServerName;
use rustls::server::UnbufferedServerConnection;
use rustls::{ClientConfig, ClientConnection, ServerConfig};
use transport::tls::{TlsError, TlsLayer};

/// Flights a handshake may take before the pipe gives up (TLS 1.2 needs two round trips).
const HANDSHAKE_FLIGHTS: usize = 8;

/// Why a step failed, and on which side.
#[derive(Debug)]
pub enum Failure {
    /// The gateway's layer refused (the transport would close the connection).
    Gateway(TlsError),
    /// The rustls client refused what the gateway sent.
    Client(rustls::Error),
    /// The client's byte stream failed (rustls reports some errors as I/O).
    ClientIo(std::io::Error),
    /// A handshake that did not finish in [`HANDSHAKE_FLIGHTS`], or a read that made no
    /// progress.
    Stalled(&'static str),
}

/// What the gateway side opened from one delivery.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Received {
    pub plain: Vec<u8>,
    /// close_notify came.
    pub closed: bool,
}

/// What the client read from one delivery.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ClientReceived {
    pub plain: Vec<u8>,
    /// close_notify came (the client's reader reports the end of the stream).
    pub closed: bool,
}

/// The two ends and the bytes between them.
pub struct Pipe {
    pub server: TlsLayer,
    pub client: ClientConnection,
    /// The gateway's gauge of bytes held between reads for this connection.
    pub gauge: usize,
    /// Most bytes one gateway-side read takes (the socket's share of a read).
    pub read_size: usize,
    /// Records the gateway sealed that the client has not read yet.
    pub to_client: Vec<u8>,
    cipher: Vec<u8>,
    plain: Vec<u8>,
}

impl Pipe {
    /// A connection to a server configured by `server` for `localhost`, handshake done and
    /// the gateway side holding only its record keys.
    pub fn connect(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
        read_size: usize,
    ) -> Result<Pipe, Failure> {
        let name = ServerName::try_from("localhost").map_err(|_| Failure::Stalled("name"))?;
        let mut client = ClientConnection::new(client, name).map_err(Failure::Client)?;
        // Writes of any size are sealed at once; the test decides when bytes move.
        client.set_buffer_limit(None);
        let server =
            UnbufferedServerConnection::new(server).map_err(|e| Failure::Gateway(e.into()))?;
        let mut pipe = Pipe {
            server: TlsLayer::server(server),
            client,
            gauge: 0,
            read_size: read_size.max(1),
            to_client: Vec::new(),
            cipher: vec![0; READ_BUFFER],
            plain: vec![0; READ_BUFFER],
        };
        for _ in 0..HANDSHAKE_FLIGHTS {
            let flight = pipe.client_flight()?;
            let received = pipe.gateway_reads(&flight)?;
            if !received.plain.is_empty() || received.closed {
                return Err(Failure::Stalled("application data during the handshake"));
            }
            pipe.client_reads()?;
            if !pipe.client.is_handshaking()
                && !pipe.client.wants_write()
                && pipe.server.is_established()
            {
                return Ok(pipe);
            }
        }
        Err(Failure::Stalled("handshake"))
    }

    /// Drops what the gateway side holds of an unfinished record (as closing would).
    pub fn drop_held(&mut self) {
        self.server.restore(&mut self.gauge, &mut self.cipher);
    }

    /// What the client has sealed and not sent yet.
    pub fn client_flight(&mut self) -> Result<Vec<u8>, Failure> {
        let mut flight = Vec::new();
        while self.client.wants_write() {
            self.client
                .write_tls(&mut flight)
                .map_err(Failure::ClientIo)?;
        }
        Ok(flight)
    }

    /// The client writes `data` in writes of at most `write_size` bytes (one record each, or
    /// more for a write over 16 KiB) and returns the records.
    pub fn client_seals(&mut self, data: &[u8], write_size: usize) -> Result<Vec<u8>, Failure> {
        for piece in data.chunks(write_size.max(1)) {
            self.client
                .writer()
                .write_all(piece)
                .map_err(Failure::ClientIo)?;
        }
        self.client_flight()
    }

    /// Delivers `wire` to the gateway side, read by read as the transport would: plaintext
    /// comes back; what the gateway answers (a KeyUpdate) joins [`Pipe::to_client`]. Reading
    /// goes on after close_notify, as it does when plaintext came in the same read.
    pub fn gateway_reads(&mut self, wire: &[u8]) -> Result<Received, Failure> {
        let mut received = Received::default();
        let mut rest = wire;
        // Each pass takes input or opens a record that did not fit before.
        for _ in 0..=2 * wire.len() + 2 {
            let held = self.server.restore(&mut self.gauge, &mut self.cipher);
            let take = self.read_size.min(self.cipher.len() - held).min(rest.len());
            self.cipher[held..held + take].copy_from_slice(&rest[..take]);
            rest = &rest[take..];
            let opened = self
                .server
                .open(
                    &mut self.gauge,
                    &mut self.cipher[..held + take],
                    &mut self.plain,
                    &mut self.to_client,
                )
                .map_err(Failure::Gateway)?;
            received
                .plain
                .extend_from_slice(&self.plain[..opened.plain]);
            received.closed |= opened.closed;
            if rest.is_empty() && !opened.more {
                return Ok(received);
            }
        }
        Err(Failure::Stalled("the gateway side stopped reading"))
    }

    /// The gateway seals `data` (one record per 16 KiB) for the client.
    pub fn gateway_seals(&mut self, data: &[u8]) -> Result<(), Failure> {
        self.server
            .seal(&mut self.gauge, data, &mut self.to_client)
            .map_err(Failure::Gateway)
    }

    /// The gateway sends close_notify.
    pub fn gateway_closes(&mut self) -> Result<(), Failure> {
        self.server
            .close_notify(&mut self.gauge, &mut self.to_client)
            .map_err(Failure::Gateway)
    }

    /// Delivers [`Pipe::to_client`] to the client; returns the plaintext it read.
    pub fn client_reads(&mut self) -> Result<ClientReceived, Failure> {
        let wire = std::mem::take(&mut self.to_client);
        let mut rest = wire.as_slice();
        let mut received = ClientReceived::default();
        let mut buf = [0u8; 4096];
        loop {
            if !rest.is_empty() {
                let n = self.client.read_tls(&mut rest).map_err(Failure::ClientIo)?;
                if n == 0 {
                    return Err(Failure::Stalled("the client took no bytes"));
                }
            }
            self.client.process_new_packets().map_err(Failure::Client)?;
            // The client's plaintext buffer is bounded: empty it after every read.
            loop {
                match self.client.reader().read(&mut buf) {
                    Ok(0) => {
                        received.closed = true;
                        break;
                    }
                    Ok(n) => received.plain.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(Failure::ClientIo(e)),
                }
            }
            if rest.is_empty() || received.closed {
                return Ok(received);
            }
        }
    }

    /// The client sends `data` and the gateway side reads it.
    pub fn client_to_gateway(
        &mut self,
        data: &[u8],
        write_size: usize,
    ) -> Result<Received, Failure> {
        let wire = self.client_seals(data, write_size)?;
        self.gateway_reads(&wire)
    }

    /// The gateway sends `data` and the client reads it.
    pub fn gateway_to_client(&mut self, data: &[u8]) -> Result<ClientReceived, Failure> {
        self.gateway_seals(data)?;
        self.client_reads()
    }
}
