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
//! A connection's TLS goes through two phases, each a type of its own file, the first consumed
//! into the second: `handshake` (rustls's whole state; a client, the load generator, stays
//! there) and, for a server once its handshake is done, `records` (only the record keys, and
//! what `certificate` keeps of the client's certificate).
//!
//! The transport never reads more ciphertext than the plaintext buffer could take, and every
//! complete record is decrypted before `open` returns, so between calls rustls holds no
//! plaintext and sealing always finds the connection ready to write.

use rustls::client::UnbufferedClientConnection;
use rustls::server::UnbufferedServerConnection;

use crate::Held;

mod certificate;
mod handshake;
mod records;

pub use certificate::{CertificateFacts, CertificateId, ClientCertificate, certificate_id};

use certificate::Peer;
use handshake::{Handshake, TlsConn};
use records::Records;

/// Most plaintext in one record.
pub const MAX_PLAINTEXT: usize = 16 * 1024;
/// Most ciphertext in one record (TLS 1.2 allows 2 KiB of expansion; rustls sends far less).
pub const MAX_RECORD: usize = 5 + MAX_PLAINTEXT + 2048;
/// Bytes a record adds to its plaintext, at most (TLS 1.2 AES-GCM: header 5, nonce 8, tag 16;
/// TLS 1.3: header 5, content type 1, tag 16), rounded up.
pub(crate) const RECORD_OVERHEAD: usize = 32;

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

/// Where a connection's TLS stands: its phase.
enum State {
    /// rustls runs it: a server's handshake, or a client throughout.
    Handshake(Box<Handshake>),
    /// A server connection after its handshake: only the record keys.
    Established(Box<Records>),
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
    peer: Peer,
    /// Ciphertext received and not consumed yet (an unfinished record, or handshake bytes
    /// rustls asked to see again), freed once consumed.
    incoming: Held,
    /// Plaintext given before the handshake finished (a client's first request), sealed as soon
    /// as it can be.
    waiting: Held,
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
            state: State::Handshake(Box::new(Handshake::new(conn))),
            peer: Peer::default(),
            incoming: Held::default(),
            waiting: Held::default(),
        }
    }

    /// The capacity of what it holds between reads (counted in a gauge): an unfinished record
    /// and plaintext waiting for the handshake, both charged to the same gauge.
    pub fn held_capacity(&self) -> usize {
        self.incoming.capacity() + self.waiting.capacity()
    }

    pub fn is_handshaking(&self) -> bool {
        match &self.state {
            State::Handshake(handshake) => handshake.is_handshaking(),
            State::Established(_) | State::Gone => false,
        }
    }

    /// Whether only the record keys are left of rustls's state (a server after its handshake).
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established(_))
    }

    /// Test hook: once the handshake is done, one key seals at most `records` records (see
    /// `Records::limit_records_per_key`); false (and nothing changes) before that.
    #[cfg(feature = "test-hooks")]
    pub fn limit_records_per_key(&mut self, records: u64) -> bool {
        match &mut self.state {
            State::Established(keys) => {
                keys.limit_records_per_key(records);
                true
            }
            State::Handshake(_) | State::Gone => false,
        }
    }

    /// The certificate the client presented (servers, once the handshake is done).
    pub fn client_certificate(&self) -> &ClientCertificate {
        &self.peer.certificate
    }

    /// The client certificate's serial number and expiry (servers, once the handshake is
    /// done), given once: the layer keeps nothing of them after.
    pub fn take_certificate_facts(&mut self) -> Option<Box<CertificateFacts>> {
        self.peer.facts.take()
    }

    /// The client certificate's [`CertificateId`] (servers, once the handshake is done, also
    /// when it resumed a session: the ticket carries the certificate).
    pub fn client_certificate_id(&self) -> Option<CertificateId> {
        self.peer.id
    }

    /// Whether the handshake (done) resumed a session from a ticket instead of a full one.
    pub fn resumed(&self) -> bool {
        match &self.state {
            State::Handshake(handshake) => handshake.resumed(),
            State::Established(_) | State::Gone => self.peer.resumed,
        }
    }

    /// The certificate chain the server presented (clients), leaf first.
    pub fn server_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        match &self.state {
            State::Handshake(handshake) => handshake.peer_certificates(),
            _ => None,
        }
    }

    /// A server whose handshake is done moves to the established phase: the handshake is
    /// consumed, only the record keys and what the gateway keeps of the peer stay.
    fn settle(&mut self) -> Result<(), TlsError> {
        if !matches!(&self.state, State::Handshake(handshake) if handshake.is_finished()) {
            return Ok(());
        }
        let State::Handshake(handshake) = std::mem::replace(&mut self.state, State::Gone) else {
            return Ok(());
        };
        let (records, peer) = handshake.finish()?;
        self.peer = peer;
        self.state = State::Established(Box::new(records));
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
        self.handshake()?.drive(&mut [], None, out, &[]).map(|_| ())
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
            State::Established(records) => records.open(cipher, plain, out)?,
            State::Gone => return Err(TlsError::Unexpected("connection lost its keys")),
            State::Handshake(_) => {
                let waiting = self.waiting.take(gauge);
                let result = self
                    .handshake()
                    .and_then(|handshake| handshake.drive(cipher, Some(plain), out, &waiting));
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
        if let State::Established(records) = &mut self.state {
            return records.seal(plain, out);
        }
        if !self.waiting.is_empty() || self.is_handshaking() {
            self.waiting.extend(gauge, plain, 0);
            return Ok(());
        }
        let mut incoming = self.incoming.take(gauge);
        let result = self
            .handshake()
            .and_then(|handshake| handshake.drive(&mut incoming, None, out, plain));
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
        if let State::Established(records) = &mut self.state {
            return records.close_notify(out);
        }
        let handshake = self.handshake()?;
        handshake.close_wanted = true;
        if handshake.is_handshaking() {
            return Ok(());
        }
        let mut incoming = self.incoming.take(gauge);
        let result = self
            .handshake()
            .and_then(|handshake| handshake.drive(&mut incoming, None, out, &[]));
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

    /// The handshake phase, which rustls runs (an error once it is gone).
    fn handshake(&mut self) -> Result<&mut Handshake, TlsError> {
        match &mut self.state {
            State::Handshake(handshake) => Ok(handshake),
            _ => Err(TlsError::Unexpected("rustls is gone")),
        }
    }
}

#[cfg(test)]
impl TlsLayer {
    /// A client asks for new keys (rustls sends KeyUpdate with update_requested).
    fn request_key_update(&mut self, out: &mut Vec<u8>) {
        let State::Handshake(handshake) = &mut self.state else {
            panic!("not a rustls connection")
        };
        handshake.request_key_update(out);
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

    /// A connection behind a balancer, over the in-memory transport: its PROXY header phase
    /// (the header split across reads), then the TLS handshake, consumed into the established
    /// phase, each handing the bytes behind it to the next; the gauges end where they began.
    #[test]
    fn a_connection_goes_through_its_transport_phases_in_order() {
        use crate::{Received, Transport, Wire, memory::MemoryStream};
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let (server, mut client) = pair(version);
            let mut transport = Transport::memory(MemoryStream::default())
                .expecting_proxy_header()
                .with_tls(server);
            let mut wire = Wire::new(1 << 20);
            let mut buf = vec![0u8; 64 * 1024];
            let mut client_gauge = 0;
            let mut hello = Vec::new();
            client.start(&mut hello).unwrap();
            client
                .seal(
                    &mut client_gauge,
                    b"GET /ocpp/CP1 HTTP/1.1\r\n\r\n",
                    &mut hello,
                )
                .unwrap();
            let header = b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 443\r\n";

            // The first part of the header: held, nothing read, nothing said yet.
            transport.memory_mut().input.extend(&header[..9]);
            let read = transport.read(&mut wire, &mut buf, 64 * 1024).unwrap();
            assert!(matches!(
                read,
                Received::Data { len: 0, .. } | Received::Blocked
            ));
            assert!(transport.held() > 0 && wire.buffered.upgrading == transport.held());
            assert_eq!(transport.take_proxied(), None);
            assert!(transport.tls().unwrap().is_handshaking());

            // The rest of the header with the ClientHello behind it: the header phase ends,
            // the handshake goes on until the client's request comes out as plaintext.
            transport.memory_mut().input.extend(&header[9..]);
            transport.memory_mut().input.extend(&hello);
            let mut plain = Vec::new();
            for _ in 0..6 {
                if let Received::Data { len, .. } =
                    transport.read(&mut wire, &mut buf, 64 * 1024).unwrap()
                {
                    plain.extend_from_slice(&buf[..len]);
                }
                let to_client = std::mem::take(&mut transport.memory_mut().output);
                let (_, back, _) = deliver(&mut client, &mut client_gauge, &to_client, 7).unwrap();
                transport.memory_mut().input.extend(&back);
            }
            assert_eq!(plain, b"GET /ocpp/CP1 HTTP/1.1\r\n\r\n", "{version:?}");
            let proxied = transport.take_proxied().expect("the header was read");
            assert_eq!(proxied.source, Some("192.0.2.1:1234".parse().unwrap()));
            assert!(
                transport.tls().unwrap().is_established(),
                "the handshake phase was consumed: only the record keys are left"
            );

            // Established: records both ways through the transport.
            transport.send(&mut wire, b"HTTP/1.1 101").unwrap();
            let to_client = std::mem::take(&mut transport.memory_mut().output);
            let (got, _, _) = deliver(&mut client, &mut client_gauge, &to_client, 7).unwrap();
            assert_eq!(got, b"HTTP/1.1 101");
            transport.upgraded(&mut wire);
            transport.release(&mut wire);
            assert_eq!(
                (
                    wire.buffered.upgrading,
                    wire.buffered.read,
                    wire.buffered.write
                ),
                (0, 0, 0)
            );
        }
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
