//! TLS for one connection over rustls's unbuffered API, without I/O: [`TlsLayer::open`] turns
//! received ciphertext into plaintext (and whatever handshake bytes must be sent), and
//! [`TlsLayer::seal`] turns plaintext into records. The transport does the socket calls.
//!
//! Why the unbuffered API: rustls's usual `ServerConnection` owns a receive buffer and plaintext
//! queues that keep their capacity for the life of the connection (its own tracker puts an idle
//! connection near 20 KB). Here ciphertext is read into the loop's shared buffer and decrypted
//! from there into the loop's shared read buffer, so an idle connection keeps only rustls's
//! connection state and, between reads, at most one unfinished record ([`TlsLayer::incoming`],
//! freed when the record completes).
//!
//! The rules of the API, which this module keeps in one place: every state rustls returns is
//! handled before `process_tls_records` is called again; the `discard` it reports is removed from
//! the front of the buffer before the next call, and what follows it is passed again, unchanged,
//! at the front (rustls keeps offsets into it during the handshake). rustls hands over one record
//! of plaintext per call.
//!
//! The transport never reads more ciphertext than the plaintext buffer could take, and every
//! complete record is decrypted before `open` returns, so between calls rustls holds no
//! plaintext and sealing always finds the connection ready to write.

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};

use crate::net::transport::Held;

/// Most plaintext in one record.
pub const MAX_PLAINTEXT: usize = 16 * 1024;
/// Most ciphertext in one record (TLS 1.2 allows 2 KiB of expansion; rustls sends far less).
pub const MAX_RECORD: usize = 5 + MAX_PLAINTEXT + 2048;
/// Bytes a record adds to its plaintext, at most (TLS 1.2 AES-GCM: header 5, nonce 8, tag 16;
/// TLS 1.3: header 5, content type 1, tag 16), rounded up.
const RECORD_OVERHEAD: usize = 32;

/// Why a TLS connection cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The peer broke the protocol, or its certificate was refused: close the connection (an
    /// alert, if rustls made one, is in the output).
    #[error("TLS: {0}")]
    Protocol(#[from] rustls::Error),
    /// rustls was in a state this layer never leads it to: close the connection.
    #[error("TLS: unexpected state {0}")]
    Unexpected(&'static str),
    /// Sealing failed (the connection's key is exhausted): close the connection.
    #[error("TLS: cannot encrypt: {0}")]
    Encrypt(String),
}

/// The rustls side of a connection: a server's (the gateway) or a client's (the load generator).
pub enum TlsConn {
    Server(UnbufferedServerConnection),
    Client(UnbufferedClientConnection),
}

impl TlsConn {
    fn common(&self) -> &rustls::CommonState {
        match self {
            TlsConn::Server(c) => c,
            TlsConn::Client(c) => c,
        }
    }
}

/// What [`TlsLayer::open`] gave.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// Plaintext bytes written at the start of the plaintext buffer.
    pub plain: usize,
    /// The peer sent close_notify: no more plaintext will come.
    pub closed: bool,
    /// A record did not fit in the plaintext buffer: call again (without reading) for it.
    pub more: bool,
}

/// One connection's TLS state.
pub struct TlsLayer {
    conn: TlsConn,
    /// Ciphertext received and not consumed yet (an unfinished record, or handshake bytes
    /// rustls asked to see again), freed once consumed.
    incoming: Held,
    /// Plaintext given before the handshake finished (a client's first request), sealed as soon
    /// as it can be.
    waiting: Held,
    /// close_notify is to be sent once the handshake allows it.
    close_wanted: bool,
}

/// What one handling of a state asks of the driving loop.
enum Flow {
    /// Call `process_tls_records` again.
    Again,
    /// Stop: rustls needs more ciphertext, or the connection is ready to write.
    Stop,
    /// Stop: a record does not fit in what is left of the plaintext buffer.
    Full,
}

/// Where handled states put their results.
struct Sink<'a> {
    /// Plaintext buffer and how much of it is used (None when sealing: no plaintext may come).
    plain: Option<(&'a mut [u8], usize)>,
    /// Ciphertext to send, appended.
    out: &'a mut Vec<u8>,
    /// Plaintext to seal once the connection can write.
    seal: &'a [u8],
    /// `seal` (and close_notify if wanted) went out.
    sealed: bool,
    close_notify: bool,
    closed: bool,
}

impl TlsLayer {
    pub fn server(conn: UnbufferedServerConnection) -> TlsLayer {
        TlsLayer::with(TlsConn::Server(conn))
    }

    pub fn client(conn: UnbufferedClientConnection) -> TlsLayer {
        TlsLayer::with(TlsConn::Client(conn))
    }

    fn with(conn: TlsConn) -> TlsLayer {
        TlsLayer {
            conn,
            incoming: Held::default(),
            waiting: Held::default(),
            close_wanted: false,
        }
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.common().is_handshaking()
    }

    /// The certificate chain the peer presented (mutual TLS), leaf first.
    pub fn peer_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        self.conn.common().peer_certificates()
    }

    /// Bytes held between reads (an unfinished record; plaintext waiting for the handshake).
    pub fn held(&self) -> usize {
        self.incoming.len() + self.waiting.len()
    }

    /// Moves the ciphertext held from earlier reads to the front of `buf`; returns its length.
    /// The caller reads new ciphertext behind it and passes it all to [`TlsLayer::open`].
    pub fn restore(&mut self, gauge: &mut usize, buf: &mut [u8]) -> usize {
        let n = self.incoming.len().min(buf.len());
        buf[..n].copy_from_slice(&self.incoming.as_slice()[..n]);
        self.incoming.clear(gauge);
        n
    }

    /// Starts a client's handshake (its ClientHello goes to `out`); nothing for a server.
    pub fn start(&mut self, out: &mut Vec<u8>) -> Result<(), TlsError> {
        self.drive(&mut [], None, out, &[], false).map(|_| ())
    }

    /// Consumes the ciphertext in `cipher` (held bytes first, see [`TlsLayer::restore`]):
    /// plaintext goes to the front of `plain`, bytes to send (handshake, alerts, sealed waiting
    /// plaintext) are appended to `out`, and what is left unconsumed is held for next time.
    pub fn open(
        &mut self,
        gauge: &mut usize,
        cipher: &mut [u8],
        plain: &mut [u8],
        out: &mut Vec<u8>,
    ) -> Result<Opened, TlsError> {
        let waiting = self.waiting.take(gauge);
        let result = self.drive(cipher, Some(plain), out, &waiting, self.close_wanted);
        let (consumed, opened, sealed) = match result {
            Ok(done) => done,
            Err(e) => {
                self.waiting.put(gauge, waiting);
                return Err(e);
            }
        };
        if !sealed {
            self.waiting.put(gauge, waiting);
        }
        if consumed < cipher.len() {
            self.incoming.extend(gauge, &cipher[consumed..], 0);
        }
        Ok(opened)
    }

    /// Seals `plain` into records appended to `out` (held until the handshake is done if it
    /// is not yet).
    pub fn seal(
        &mut self,
        gauge: &mut usize,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), TlsError> {
        if !self.waiting.is_empty() || self.is_handshaking() {
            self.waiting.extend(gauge, plain, 0);
            return Ok(());
        }
        let mut incoming = self.incoming.take(gauge);
        let result = self.drive(&mut incoming, None, out, plain, self.close_wanted);
        self.incoming.put(gauge, incoming);
        let (consumed, _, sealed) = result?;
        self.incoming.consume(gauge, consumed);
        if !sealed {
            self.waiting.extend(gauge, plain, 0);
        }
        Ok(())
    }

    /// Queues close_notify (sent now if the connection can write, else once it can).
    pub fn close_notify(&mut self, gauge: &mut usize, out: &mut Vec<u8>) -> Result<(), TlsError> {
        self.close_wanted = true;
        if self.is_handshaking() {
            return Ok(());
        }
        let mut incoming = self.incoming.take(gauge);
        let result = self.drive(&mut incoming, None, out, &[], true);
        self.incoming.put(gauge, incoming);
        let (consumed, _, _) = result?;
        self.incoming.consume(gauge, consumed);
        Ok(())
    }

    /// Frees what the connection holds.
    pub fn release(&mut self, gauge: &mut usize) {
        self.incoming.clear(gauge);
        self.waiting.clear(gauge);
    }

    /// Runs rustls over `cipher` until it needs more input or can write. Returns the bytes of
    /// `cipher` consumed, what was opened, and whether `seal` went out.
    fn drive(
        &mut self,
        cipher: &mut [u8],
        plain: Option<&mut [u8]>,
        out: &mut Vec<u8>,
        seal: &[u8],
        close_notify: bool,
    ) -> Result<(usize, Opened, bool), TlsError> {
        let mut sink = Sink {
            plain: plain.map(|p| (p, 0)),
            out,
            seal,
            sealed: false,
            close_notify,
            closed: false,
        };
        let mut start = 0;
        let mut more = false;
        loop {
            let input = &mut cipher[start..];
            let (discard, flow) = match &mut self.conn {
                TlsConn::Server(c) => {
                    handle::<ServerConnectionData>(c.process_tls_records(input), &mut sink)
                }
                TlsConn::Client(c) => {
                    handle::<ClientConnectionData>(c.process_tls_records(input), &mut sink)
                }
            };
            start += discard;
            match flow {
                Ok(Flow::Again) => {}
                Ok(Flow::Stop) => break,
                Ok(Flow::Full) => {
                    more = true;
                    break;
                }
                Err(e) => {
                    self.flush_alert(&mut cipher[start..], sink.out);
                    return Err(e);
                }
            }
        }
        if sink.sealed && close_notify {
            self.close_wanted = false;
        }
        let opened = Opened {
            plain: sink.plain.map_or(0, |(_, used)| used),
            closed: sink.closed,
            more,
        };
        Ok((start, opened, sink.sealed))
    }

    /// After an error, rustls's fatal alert goes to `out` (best effort). rustls queues it with
    /// the error, or (for some malformed input) on the next call, which parses the input again
    /// and fails the same way; the call after that hands the alert over before parsing. So at
    /// most two calls, stopping at the alert: a third would fail a second time, and rustls
    /// refuses a second fatal alert. `rest` is what was left of the input (rustls may still
    /// point into it; an empty slice would make it panic).
    fn flush_alert(&mut self, rest: &mut [u8], out: &mut Vec<u8>) {
        let mut sink = Sink {
            plain: None,
            out,
            seal: &[],
            sealed: false,
            close_notify: false,
            closed: false,
        };
        for _ in 0..2 {
            let before = sink.out.len();
            let (_, flow) = match &mut self.conn {
                TlsConn::Server(c) => {
                    handle::<ServerConnectionData>(c.process_tls_records(rest), &mut sink)
                }
                TlsConn::Client(c) => {
                    handle::<ClientConnectionData>(c.process_tls_records(rest), &mut sink)
                }
            };
            if sink.out.len() > before || flow.is_ok() {
                return;
            }
        }
    }
}

/// Handles one state rustls reached; returns its discard and what to do next.
fn handle<Data>(
    status: UnbufferedStatus<'_, '_, Data>,
    sink: &mut Sink<'_>,
) -> (usize, Result<Flow, TlsError>) {
    let UnbufferedStatus { discard, state } = status;
    let state = match state {
        Ok(state) => state,
        Err(e) => return (discard, Err(TlsError::Protocol(e))),
    };
    let flow = match state {
        ConnectionState::ReadTraffic(mut traffic) => {
            let Some((plain, used)) = &mut sink.plain else {
                return (
                    discard,
                    Err(TlsError::Unexpected("plaintext while sealing")),
                );
            };
            let len = traffic.peek_len().map_or(0, |n| n.get());
            if len > plain.len() - *used {
                return (discard, Ok(Flow::Full));
            }
            match traffic.next_record() {
                Some(Ok(record)) => {
                    plain[*used..*used + record.payload.len()].copy_from_slice(record.payload);
                    *used += record.payload.len();
                    Ok(Flow::Again)
                }
                Some(Err(e)) => Err(TlsError::Protocol(e)),
                None => Ok(Flow::Again),
            }
        }
        ConnectionState::EncodeTlsData(mut encode) => {
            let result = grow_into(sink.out, 1024, |buf| match encode.encode(buf) {
                Ok(n) => Ok(n),
                Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                    Err(Some(required_size))
                }
                Err(EncodeError::AlreadyEncoded) => Err(None),
            });
            result
                .map(|_| Flow::Again)
                .map_err(|()| TlsError::Unexpected("handshake data already encoded"))
        }
        ConnectionState::TransmitTlsData(transmit) => {
            // What was encoded is in `out`; the transport sends it in order with the rest.
            transmit.done();
            Ok(Flow::Again)
        }
        ConnectionState::BlockedHandshake => Ok(Flow::Stop),
        ConnectionState::WriteTraffic(mut traffic) => {
            let mut result = Ok(Flow::Stop);
            if !sink.seal.is_empty() {
                let seal = sink.seal;
                let room = seal.len() + (seal.len() / MAX_PLAINTEXT + 1) * RECORD_OVERHEAD;
                let sealed = grow_into(sink.out, room, |buf| match traffic.encrypt(seal, buf) {
                    Ok(n) => Ok(n),
                    Err(EncryptError::InsufficientSize(InsufficientSizeError {
                        required_size,
                    })) => Err(Some(required_size)),
                    Err(e) => {
                        log::debug!("TLS encrypt failed: {e}");
                        Err(None)
                    }
                });
                if sealed.is_err() {
                    result = Err(TlsError::Encrypt("encrypter exhausted".into()));
                }
            }
            if result.is_ok() && sink.close_notify {
                let sent = grow_into(sink.out, 64, |buf| match traffic.queue_close_notify(buf) {
                    Ok(n) => Ok(n),
                    Err(EncryptError::InsufficientSize(InsufficientSizeError {
                        required_size,
                    })) => Err(Some(required_size)),
                    Err(_) => Err(None),
                });
                if sent.is_err() {
                    result = Err(TlsError::Encrypt("close_notify".into()));
                }
            }
            sink.sealed = result.is_ok();
            result
        }
        ConnectionState::PeerClosed => {
            sink.closed = true;
            Ok(Flow::Again)
        }
        ConnectionState::Closed => {
            sink.closed = true;
            Ok(Flow::Stop)
        }
        ConnectionState::ReadEarlyData(_) => Err(TlsError::Unexpected("early data")),
        _ => Err(TlsError::Unexpected("unknown state")),
    };
    (discard, flow)
}

/// Appends to `out` what `write` puts into a slice of spare room, starting with `room` bytes and
/// growing to what `write` says it needs (`Err(Some(n))`); `Err(None)` is a failure.
fn grow_into(
    out: &mut Vec<u8>,
    room: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> Result<usize, ()> {
    let start = out.len();
    let mut room = room;
    for _ in 0..2 {
        out.resize(start + room, 0);
        match write(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(n);
            }
            Err(Some(required)) => room = required,
            Err(None) => break,
        }
    }
    out.truncate(start);
    Err(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

    use super::*;
    use crate::security::certificates::provider;

    /// A server and a client layer for a certificate of `localhost` signed by a fresh CA.
    fn pair() -> (TlsLayer, TlsLayer) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server = UnbufferedServerConnection::new(Arc::new(server)).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let client = UnbufferedClientConnection::new(Arc::new(client), name).unwrap();
        (TlsLayer::server(server), TlsLayer::client(client))
    }

    /// Feeds `wire` to `layer` `chunk` bytes at a time, as reads would; returns the plaintext
    /// and what the layer wants to send back.
    fn deliver(
        layer: &mut TlsLayer,
        gauge: &mut usize,
        wire: &[u8],
        chunk: usize,
    ) -> (Vec<u8>, Vec<u8>) {
        let mut plain_out = Vec::new();
        let mut reply = Vec::new();
        let mut cipher = vec![0u8; 64 * 1024];
        let mut plain = vec![0u8; 64 * 1024];
        for piece in wire.chunks(chunk.max(1)) {
            let held = layer.restore(gauge, &mut cipher);
            cipher[held..held + piece.len()].copy_from_slice(piece);
            let opened = layer
                .open(
                    gauge,
                    &mut cipher[..held + piece.len()],
                    &mut plain,
                    &mut reply,
                )
                .unwrap();
            assert!(!opened.more);
            plain_out.extend_from_slice(&plain[..opened.plain]);
        }
        (plain_out, reply)
    }

    #[test]
    fn a_handshake_then_records_both_ways_even_a_byte_at_a_time() {
        for chunk in [usize::MAX, 1, 7] {
            let (mut server, mut client) = pair();
            let (mut sg, mut cg) = (0, 0);
            let mut to_server = Vec::new();
            client.start(&mut to_server).unwrap();
            // Sent before the handshake is done: held, then sealed once it can be.
            client
                .seal(&mut cg, b"GET / HTTP/1.1\r\n\r\n", &mut to_server)
                .unwrap();
            assert!(client.held() > 0);
            let mut got = Vec::new();
            for _ in 0..4 {
                let (plain, to_client) = deliver(&mut server, &mut sg, &to_server, chunk);
                got.extend(plain);
                let (plain, back) = deliver(&mut client, &mut cg, &to_client, chunk);
                assert!(plain.is_empty());
                to_server = back;
            }
            assert!(!server.is_handshaking() && !client.is_handshaking());
            assert_eq!(got, b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(
                (server.held(), client.held()),
                (0, 0),
                "nothing held when idle"
            );
            assert_eq!((sg, cg), (0, 0), "the gauges agree");

            let big = vec![b'x'; 40_000];
            let mut records = Vec::new();
            server.seal(&mut sg, &big, &mut records).unwrap();
            assert!(records.len() > big.len() && records.len() < big.len() + 200);
            let (plain, _) = deliver(&mut client, &mut cg, &records, chunk);
            assert_eq!(plain, big);

            let mut bye = Vec::new();
            client.close_notify(&mut cg, &mut bye).unwrap();
            let mut cipher = bye.clone();
            let mut plain = vec![0u8; 1024];
            let mut out = Vec::new();
            let opened = server
                .open(&mut sg, &mut cipher, &mut plain, &mut out)
                .unwrap();
            assert!(opened.closed);
        }
    }

    #[test]
    fn garbage_and_plaintext_fail() {
        let inputs: [&[u8]; 2] = [
            b"GET /ocpp/CP1 HTTP/1.1\r\n\r\n",
            &[0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5],
        ];
        for (i, input) in inputs.into_iter().enumerate() {
            let (mut server, _) = pair();
            let mut gauge = 0;
            let mut cipher = input.to_vec();
            let mut plain = vec![0u8; 1024];
            let mut out = Vec::new();
            let result = server.open(&mut gauge, &mut cipher, &mut plain, &mut out);
            assert!(matches!(result, Err(TlsError::Protocol(_))), "{result:?}");
            if i == 0 {
                assert_eq!(out.first(), Some(&0x15), "an alert record goes back");
            }
            server.release(&mut gauge);
            assert_eq!(gauge, 0);
        }
    }
}
