//! The handshake phase of a TLS connection: rustls drives it through its unbuffered API, over
//! the loop's shared buffers, without I/O. A server's [`Handshake`] is consumed by
//! [`Handshake::finish`] once its handshake is done, into the established phase: the record
//! keys ([`Records`]) and what the gateway keeps of the client's certificate ([`Peer`]). A
//! client's (the load generator's) stays with rustls for its whole life.
//!
//! The rules of the API, which this module keeps in one place: every state rustls returns is
//! handled before `process_tls_records` is called again; the `discard` it reports is removed from
//! the front of the buffer before the next call, and what follows it is passed again, unchanged,
//! at the front (rustls keeps offsets into it during the handshake). rustls hands over one record
//! of plaintext per call.

use rustls::HandshakeKind;
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::pki_types::CertificateDer;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};

use super::certificate::{self, Peer};
use super::records::Records;
use super::{MAX_PLAINTEXT, Opened, RECORD_OVERHEAD, TlsError};

/// The rustls side of a connection: a server's (the gateway) or a client's (the load generator).
pub(super) enum TlsConn {
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

/// A connection in its handshake (a client's: in any state), with rustls's whole state.
pub(super) struct Handshake {
    conn: TlsConn,
    /// close_notify is to be sent once the handshake allows it.
    pub close_wanted: bool,
}

impl Handshake {
    pub(super) fn new(conn: TlsConn) -> Handshake {
        Handshake {
            conn,
            close_wanted: false,
        }
    }

    pub(super) fn is_handshaking(&self) -> bool {
        self.conn.common().is_handshaking()
    }

    pub(super) fn resumed(&self) -> bool {
        self.conn.common().handshake_kind() == Some(HandshakeKind::Resumed)
    }

    /// The certificate chain the peer presented, leaf first.
    pub(super) fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.conn.common().peer_certificates()
    }

    /// A server's handshake is over: [`Handshake::finish`] may take it to the established phase.
    pub(super) fn is_finished(&self) -> bool {
        matches!(self.conn, TlsConn::Server(_)) && !self.is_handshaking()
    }

    /// Consumes a finished server handshake (see [`Handshake::is_finished`]) into the
    /// established phase: the record keys, and what the peer's certificate and the handshake
    /// said. rustls's state is dropped here.
    pub(super) fn finish(self) -> Result<(Records, Peer), TlsError> {
        let TlsConn::Server(conn) = self.conn else {
            return Err(TlsError::Unexpected("a client keeps its handshake state"));
        };
        let mut peer = Peer {
            resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
            ..Peer::default()
        };
        if let Some(leaf) = conn.peer_certificates().and_then(|c| c.first()) {
            (peer.certificate, peer.id, peer.facts) = certificate::leaf_facts(leaf);
        }
        Ok((Records::from_rustls(conn)?, peer))
    }

    /// Runs rustls over `cipher` until it needs more input or can write. Returns the bytes of
    /// `cipher` consumed, what was opened, and whether `seal` (and close_notify, when wanted)
    /// went out.
    pub(super) fn drive(
        &mut self,
        cipher: &mut [u8],
        plain: Option<&mut [u8]>,
        out: &mut Vec<u8>,
        seal: &[u8],
    ) -> Result<(usize, Opened, bool), TlsError> {
        let close_notify = self.close_wanted;
        let conn = &mut self.conn;
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
            let (discard, flow) = match conn {
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
                    flush_alert(conn, &mut cipher[start..], sink.out);
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

impl<'a> Sink<'a> {
    /// A sink that only collects bytes to send (no plaintext expected, nothing to seal).
    fn output_only(out: &'a mut Vec<u8>) -> Sink<'a> {
        Sink {
            plain: None,
            out,
            seal: &[],
            sealed: false,
            close_notify: false,
            closed: false,
        }
    }
}

/// After an error, rustls's fatal alert goes to `out` (best effort). rustls queues it with
/// the error, or (for some malformed input) on the next call, which parses the input again
/// and fails the same way; the call after that hands the alert over before parsing. So at
/// most two calls, stopping at the alert: a third would fail a second time, and rustls
/// refuses a second fatal alert. `rest` is what was left of the input (rustls may still point
/// into it; an empty slice would make it panic).
fn flush_alert(conn: &mut TlsConn, rest: &mut [u8], out: &mut Vec<u8>) {
    let mut sink = Sink::output_only(out);
    for _ in 0..2 {
        let before = sink.out.len();
        let (_, flow) = match conn {
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
impl Handshake {
    /// A client asks for new keys (rustls sends KeyUpdate with update_requested).
    pub(super) fn request_key_update(&mut self, out: &mut Vec<u8>) {
        let TlsConn::Client(client) = &mut self.conn else {
            panic!("not a client")
        };
        let status = client.process_tls_records(&mut []);
        let Ok(ConnectionState::WriteTraffic(traffic)) = status.state else {
            panic!("client not ready to write")
        };
        traffic.refresh_traffic_keys().unwrap();
        let mut sink = Sink::output_only(out);
        // The KeyUpdate is encoded on the next pass.
        for _ in 0..3 {
            let (_, flow) =
                handle::<ClientConnectionData>(client.process_tls_records(&mut []), &mut sink);
            if matches!(flow, Ok(Flow::Stop)) {
                break;
            }
        }
    }
}
