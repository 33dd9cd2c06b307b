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

use rustls::HandshakeKind;
use rustls::pki_types::CertificateDer;

use crate::Held;
use crate::records::Records;

/// Most plaintext in one record.
pub const MAX_PLAINTEXT: usize = 16 * 1024;
/// Most ciphertext in one record (TLS 1.2 allows 2 KiB of expansion; rustls sends far less).
pub const MAX_RECORD: usize = 5 + MAX_PLAINTEXT + 2048;
/// Bytes a record adds to its plaintext, at most (TLS 1.2 AES-GCM: header 5, nonce 8, tag 16;
/// TLS 1.3: header 5, content type 1, tag 16), rounded up.
const RECORD_OVERHEAD: usize = 32;

/// Why a TLS connection cannot go on.
/// The certificate a client presented, as far as the gateway cares: its subject CN.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClientCertificate {
    /// None presented (or not asked for).
    #[default]
    None,
    CommonName(Box<str>),
    /// Presented, but without a readable CN.
    NoCommonName,
}

/// Names one certificate across CRLs in 16 bytes: a hash of its issuer's name (DER) and its
/// serial number, as a CRL lists it.
pub type CertificateId = [u8; 16];

/// The [`CertificateId`] of the certificate `serial` (the INTEGER's content bytes; leading zero
/// bytes, which only keep it positive, are not part of the number) of `issuer`.
pub fn certificate_id(issuer: &[u8], serial: &[u8]) -> CertificateId {
    let zeros = serial.iter().take_while(|b| **b == 0).count();
    let serial = &serial[zeros.min(serial.len().saturating_sub(1))..];
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&(issuer.len() as u64).to_be_bytes());
    ctx.update(issuer);
    ctx.update(serial);
    let mut id = [0u8; 16];
    id.copy_from_slice(&ctx.finish().as_ref()[..16]);
    id
}

/// What the gateway keeps of a client certificate to watch its renewal: its serial number and
/// when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// Hex, as the certificate writes it (leading zero bytes included).
    pub serial: Box<str>,
    /// notAfter, seconds since the Unix epoch.
    pub not_after: i64,
}

/// The CN, the [`CertificateId`] and the renewal facts of a leaf certificate.
fn leaf_facts(
    cert: &CertificateDer<'_>,
) -> (
    ClientCertificate,
    Option<CertificateId>,
    Option<Box<CertificateFacts>>,
) {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return (ClientCertificate::NoCommonName, None, None);
    };
    let facts = CertificateFacts {
        serial: parsed
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into(),
        not_after: parsed.validity().not_after.timestamp(),
    };
    let id = certificate_id(parsed.issuer().as_raw(), parsed.raw_serial());
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok());
    let certificate = match cn {
        Some(cn) => ClientCertificate::CommonName(cn.into()),
        None => ClientCertificate::NoCommonName,
    };
    (certificate, Some(id), Some(Box::new(facts)))
}

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
    /// A record after the handshake was malformed, did not decrypt, or was not allowed:
    /// close the connection.
    #[error("TLS: {0}")]
    Record(&'static str),
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

/// Where a connection's TLS stands.
enum State {
    /// rustls runs it: a server's handshake, or a client throughout.
    Rustls(Box<TlsConn>),
    /// A server connection after its handshake: only the record keys (see `net::records`).
    Records(Box<Records>),
    /// Between the two, or after a failed hand-over (every call fails).
    Gone,
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
    state: State,
    /// Captured when a server's handshake ends (rustls's chain goes with its state).
    client_certificate: ClientCertificate,
    /// The handshake resumed a session (a ticket), captured with the certificate.
    resumed: bool,
    /// The client certificate's issuer and serial (checked against CRLs), captured with it.
    client_certificate_id: Option<CertificateId>,
    /// Its serial number and expiry, until the session takes them at the upgrade.
    certificate_facts: Option<Box<CertificateFacts>>,
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

impl TlsLayer {
    pub fn server(conn: UnbufferedServerConnection) -> TlsLayer {
        TlsLayer::with(TlsConn::Server(conn))
    }

    pub fn client(conn: UnbufferedClientConnection) -> TlsLayer {
        TlsLayer::with(TlsConn::Client(conn))
    }

    fn with(conn: TlsConn) -> TlsLayer {
        TlsLayer {
            state: State::Rustls(Box::new(conn)),
            client_certificate: ClientCertificate::None,
            resumed: false,
            client_certificate_id: None,
            certificate_facts: None,
            incoming: Held::default(),
            waiting: Held::default(),
            close_wanted: false,
        }
    }

    /// The capacity of what it holds between reads (counted in a gauge): an unfinished record
    /// and plaintext waiting for the handshake, both charged to the same gauge.
    pub fn held_capacity(&self) -> usize {
        self.incoming.capacity() + self.waiting.capacity()
    }

    pub fn is_handshaking(&self) -> bool {
        match &self.state {
            State::Rustls(conn) => conn.common().is_handshaking(),
            State::Records(_) | State::Gone => false,
        }
    }

    /// Whether only the record keys are left of rustls's state (a server after its handshake).
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Records(_))
    }

    /// Test hook: once the handshake is done, one key seals at most `records` records (see
    /// `Records::limit_records_per_key`); false (and nothing changes) before that.
    #[cfg(feature = "test-hooks")]
    pub fn limit_records_per_key(&mut self, records: u64) -> bool {
        match &mut self.state {
            State::Records(keys) => {
                keys.limit_records_per_key(records);
                true
            }
            State::Rustls(_) | State::Gone => false,
        }
    }

    /// The certificate the client presented (servers, once the handshake is done).
    pub fn client_certificate(&self) -> &ClientCertificate {
        &self.client_certificate
    }

    /// The client certificate's serial number and expiry (servers, once the handshake is
    /// done), given once: the layer keeps nothing of them after.
    pub fn take_certificate_facts(&mut self) -> Option<Box<CertificateFacts>> {
        self.certificate_facts.take()
    }

    /// The client certificate's [`CertificateId`] (servers, once the handshake is done, also
    /// when it resumed a session: the ticket carries the certificate).
    pub fn client_certificate_id(&self) -> Option<CertificateId> {
        self.client_certificate_id
    }

    /// Whether the handshake (done) resumed a session from a ticket instead of a full one.
    pub fn resumed(&self) -> bool {
        match &self.state {
            State::Rustls(conn) => conn.common().handshake_kind() == Some(HandshakeKind::Resumed),
            State::Records(_) | State::Gone => self.resumed,
        }
    }

    /// The certificate chain the server presented (clients), leaf first.
    pub fn server_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        match &self.state {
            State::Rustls(conn) => conn.common().peer_certificates(),
            _ => None,
        }
    }

    /// A server whose handshake is done keeps only the record keys from here on.
    fn settle(&mut self) -> Result<(), TlsError> {
        let State::Rustls(conn) = &self.state else {
            return Ok(());
        };
        if !matches!(**conn, TlsConn::Server(_)) || conn.common().is_handshaking() {
            return Ok(());
        }
        self.resumed = conn.common().handshake_kind() == Some(HandshakeKind::Resumed);
        if let Some(leaf) = conn.common().peer_certificates().and_then(|c| c.first()) {
            (
                self.client_certificate,
                self.client_certificate_id,
                self.certificate_facts,
            ) = leaf_facts(leaf);
        }
        let State::Rustls(conn) = std::mem::replace(&mut self.state, State::Gone) else {
            return Ok(());
        };
        let TlsConn::Server(conn) = *conn else {
            return Ok(());
        };
        self.state = State::Records(Box::new(Records::from_rustls(conn)?));
        Ok(())
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
        let (consumed, opened) = match &mut self.state {
            State::Records(records) => records.open(cipher, plain, out)?,
            State::Gone => return Err(TlsError::Unexpected("connection lost its keys")),
            State::Rustls(_) => {
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
                if !opened.more && self.waiting.is_empty() {
                    self.settle()?;
                }
                (consumed, opened)
            }
        };
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
        if let State::Records(records) = &mut self.state {
            return records.seal(plain, out);
        }
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
        if let State::Records(records) = &mut self.state {
            return records.close_notify(out);
        }
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
        let State::Rustls(conn) = &mut self.state else {
            return Err(TlsError::Unexpected("rustls is gone"));
        };
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
            let (discard, flow) = match &mut **conn {
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
impl TlsLayer {
    /// A client asks for new keys (rustls sends KeyUpdate with update_requested).
    fn request_key_update(&mut self, out: &mut Vec<u8>) {
        let State::Rustls(conn) = &mut self.state else {
            panic!("not a rustls connection")
        };
        let TlsConn::Client(client) = &mut **conn else {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

    use super::*;

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A server and a client layer for a certificate of `localhost` signed by a fresh CA,
    /// speaking only `version`.
    fn pair(version: &'static rustls::SupportedProtocolVersion) -> (TlsLayer, TlsLayer) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        server.enable_secret_extraction = true;
        server.send_tls13_tickets = 0;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server = UnbufferedServerConnection::new(Arc::new(server)).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let client = UnbufferedClientConnection::new(Arc::new(client), name).unwrap();
        (TlsLayer::server(server), TlsLayer::client(client))
    }

    /// Feeds `wire` to `layer` `chunk` bytes at a time, as reads would; returns the plaintext,
    /// what the layer wants to send back, and whether the peer closed.
    fn deliver(
        layer: &mut TlsLayer,
        gauge: &mut usize,
        wire: &[u8],
        chunk: usize,
    ) -> Result<(Vec<u8>, Vec<u8>, bool), TlsError> {
        let mut plain_out = Vec::new();
        let mut reply = Vec::new();
        let mut closed = false;
        let mut cipher = vec![0u8; 64 * 1024];
        let mut plain = vec![0u8; 64 * 1024];
        for piece in wire.chunks(chunk.max(1)) {
            let held = layer.restore(gauge, &mut cipher);
            cipher[held..held + piece.len()].copy_from_slice(piece);
            let opened = layer.open(
                gauge,
                &mut cipher[..held + piece.len()],
                &mut plain,
                &mut reply,
            )?;
            assert!(!opened.more);
            closed |= opened.closed;
            plain_out.extend_from_slice(&plain[..opened.plain]);
        }
        Ok((plain_out, reply, closed))
    }

    /// Handshakes `client` with `server`, the client's first request riding behind it.
    fn handshake(server: &mut TlsLayer, client: &mut TlsLayer, chunk: usize) -> (usize, usize) {
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
            let (plain, to_client, _) = deliver(server, &mut sg, &to_server, chunk).unwrap();
            got.extend(plain);
            let (plain, back, _) = deliver(client, &mut cg, &to_client, chunk).unwrap();
            assert!(plain.is_empty());
            to_server = back;
        }
        assert!(!server.is_handshaking() && !client.is_handshaking());
        assert!(
            server.is_established(),
            "the server kept only its record keys"
        );
        assert_eq!(got, b"GET / HTTP/1.1\r\n\r\n");
        (sg, cg)
    }

    #[test]
    fn after_the_handshake_records_flow_both_ways_even_a_byte_at_a_time() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            for chunk in [usize::MAX, 1, 7] {
                let (mut server, mut client) = pair(version);
                let (mut sg, mut cg) = handshake(&mut server, &mut client, chunk);
                assert_eq!(
                    (server.held(), client.held()),
                    (0, 0),
                    "nothing held when idle"
                );
                assert_eq!((sg, cg), (0, 0), "the gauges agree");

                for size in [0, 1, 100, 16_384, 16_385, 40_000] {
                    let big: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
                    let mut records = Vec::new();
                    server.seal(&mut sg, &big, &mut records).unwrap();
                    assert!(records.len() >= big.len() && records.len() < big.len() + 200);
                    let (plain, _, _) = deliver(&mut client, &mut cg, &records, chunk).unwrap();
                    assert_eq!(plain, big, "{version:?} {size} server -> client");
                    let mut records = Vec::new();
                    client.seal(&mut cg, &big, &mut records).unwrap();
                    let (plain, _, _) = deliver(&mut server, &mut sg, &records, chunk).unwrap();
                    assert_eq!(plain, big, "{version:?} {size} client -> server");
                }

                // Each side's close_notify ends the other's stream.
                let mut bye = Vec::new();
                server.close_notify(&mut sg, &mut bye).unwrap();
                assert!(deliver(&mut client, &mut cg, &bye, chunk).unwrap().2);
                let mut bye = Vec::new();
                client.close_notify(&mut cg, &mut bye).unwrap();
                assert!(deliver(&mut server, &mut sg, &bye, chunk).unwrap().2);
                server.release(&mut sg);
                client.release(&mut cg);
                assert_eq!((sg, cg), (0, 0));
            }
        }
    }

    #[test]
    fn a_key_update_from_the_client_is_followed_and_answered() {
        let (mut server, mut client) = pair(&rustls::version::TLS13);
        let (mut sg, mut cg) = handshake(&mut server, &mut client, usize::MAX);
        for round in 0..3 {
            let mut update = Vec::new();
            client.request_key_update(&mut update);
            assert!(!update.is_empty());
            client
                .seal(&mut cg, b"under the new key", &mut update)
                .unwrap();
            let (plain, answer, _) = deliver(&mut server, &mut sg, &update, usize::MAX).unwrap();
            assert_eq!(plain, b"under the new key", "round {round}");
            assert!(
                !answer.is_empty(),
                "the server answers with its own KeyUpdate"
            );
            let mut reply = answer;
            server.seal(&mut sg, b"ours too", &mut reply).unwrap();
            let (plain, _, _) = deliver(&mut client, &mut cg, &reply, usize::MAX).unwrap();
            assert_eq!(plain, b"ours too", "round {round}");
        }
    }

    #[test]
    fn tampered_or_unexpected_records_fail_the_connection() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let (mut server, mut client) = pair(version);
            let (mut sg, mut cg) = handshake(&mut server, &mut client, usize::MAX);
            let mut record = Vec::new();
            client.seal(&mut cg, b"hello", &mut record).unwrap();
            let last = record.len() - 1;
            record[last] ^= 1;
            assert!(matches!(
                deliver(&mut server, &mut sg, &record, usize::MAX),
                Err(TlsError::Record(_))
            ));

            let (mut server, mut client) = pair(version);
            let (mut sg, _) = handshake(&mut server, &mut client, usize::MAX);
            // A plaintext handshake record (renegotiation, or garbage) after the handshake.
            let stray = [22, 3, 3, 0, 4, 1, 0, 0, 0];
            assert!(deliver(&mut server, &mut sg, &stray, usize::MAX).is_err());
            // A record longer than TLS allows.
            let (mut server, mut client) = pair(version);
            let (mut sg, _) = handshake(&mut server, &mut client, usize::MAX);
            assert!(deliver(&mut server, &mut sg, &[23, 3, 3, 0xFF, 0xFF], usize::MAX).is_err());
        }
    }

    #[test]
    fn garbage_and_plaintext_fail_the_handshake() {
        let inputs: [&[u8]; 2] = [
            b"GET /ocpp/CP1 HTTP/1.1\r\n\r\n",
            &[0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5],
        ];
        for (i, input) in inputs.into_iter().enumerate() {
            let (mut server, _) = pair(&rustls::version::TLS13);
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
