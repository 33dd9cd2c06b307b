//! The client side of the WebSocket upgrade (RFC 6455 section 4.1) on a non-blocking socket,
//! with the `ocpp1.6` subprotocol required.
//!
//! Done here rather than by tungstenite's `ClientHandshake` for memory: tungstenite hands the
//! 4 KiB buffer its handshake read into on to the WebSocket as its frame buffer, which then keeps
//! that capacity for the life of the connection (measured: about 5.2 KiB per idle connection
//! instead of 1.3 KiB). Here the request goes out through the gateway crate's [`Transport`]
//! (so wss uses the same TLS layer as the gateway), the response is read into a buffer dropped
//! once the upgrade is done. The key and the accept digest still come from tungstenite.

use std::io;

use transport::{ReadError, Received, SendError, Transport, Wire};
use tungstenite::handshake::client::generate_key;
use tungstenite::handshake::derive_accept_key;

/// Longest upgrade response accepted.
const MAX_RESPONSE: usize = 8192;
/// Response headers looked at.
const MAX_HEADERS: usize = 32;

/// Why an upgrade failed.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The gateway answered with an HTTP error (503 when full, 404 for an unknown identity,
    /// 401/403 when refusing the credentials or certificate).
    #[error("HTTP {0} instead of 101")]
    Refused(u16),
    #[error("invalid upgrade response: {0}")]
    Invalid(String),
    /// 101 without the offered `Sec-WebSocket-Protocol`: OCPP-J says close at once.
    #[error("the gateway did not select the OCPP version offered")]
    NoSubprotocol,
    #[error("connection closed during the upgrade")]
    Closed,
    #[error("socket error during the upgrade: {0}")]
    Io(#[from] io::Error),
    /// The TLS handshake failed (certificate refused either way, no common suite, ...).
    #[error("{0}")]
    Tls(String),
}

impl From<ReadError> for UpgradeError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Io(e) => UpgradeError::Io(e),
            other => UpgradeError::Tls(other.to_string()),
        }
    }
}

impl From<SendError> for UpgradeError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Io(e) => UpgradeError::Io(e),
            other => UpgradeError::Tls(other.to_string()),
        }
    }
}

/// An upgrade in progress (over TLS: the TLS handshake first; the request waits for it).
#[derive(Debug)]
pub struct Upgrade {
    transport: Transport,
    /// The `Sec-WebSocket-Accept` the gateway must answer.
    accept: String,
    /// The subprotocol offered, which the gateway must select.
    protocol: &'static str,
    response: Vec<u8>,
}

/// Where an upgrade stands after [`Upgrade::advance`].
#[derive(Debug)]
pub enum Step {
    /// Upgraded: the transport, and any bytes that came right behind the response.
    Open(Transport, Vec<u8>),
    /// Waiting for the socket.
    Pending(Box<Upgrade>),
}

impl Upgrade {
    /// Starts upgrading over `transport` (connected) to `{host}{path}`, with an
    /// `Authorization` header when given.
    pub fn start(
        mut transport: Transport,
        wire: &mut Wire,
        host: &str,
        (path, protocol): (&str, &'static str),
        authorization: Option<&str>,
    ) -> Result<Box<Upgrade>, UpgradeError> {
        let key = generate_key();
        let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: {protocol}\r\n{auth}\r\n"
        );
        transport.start(wire)?;
        transport.send(wire, request.as_bytes())?;
        Ok(Box::new(Upgrade {
            transport,
            accept: derive_accept_key(key.as_bytes()),
            protocol,
            response: Vec::new(),
        }))
    }

    /// Writes what waits and reads the response as far as the socket allows (`buf`: the
    /// thread's read buffer).
    pub fn advance(
        mut self: Box<Self>,
        wire: &mut Wire,
        buf: &mut [u8],
    ) -> Result<Step, UpgradeError> {
        self.transport.flush(wire)?;
        loop {
            let window = buf.len();
            match self.transport.read(wire, buf, window)? {
                Received::Data { len, more } => {
                    self.response.extend_from_slice(&buf[..len]);
                    let expected = (&*self.accept, self.protocol);
                    if let Some(len) = parse_response(&self.response, expected)? {
                        let rest = self.response[len..].to_vec();
                        return Ok(Step::Open(self.transport, rest));
                    }
                    if self.response.len() > MAX_RESPONSE {
                        return Err(UpgradeError::Invalid("response too long".into()));
                    }
                    if !more {
                        return Ok(Step::Pending(self));
                    }
                }
                Received::Blocked => return Ok(Step::Pending(self)),
                Received::Closed => return Err(UpgradeError::Closed),
            }
        }
    }

    /// Frees what the transport holds (the attempt is abandoned).
    pub fn release(&mut self, wire: &mut Wire) {
        self.transport.release(wire);
    }
}

/// The length of a complete, valid `101` response at the start of `buf`; None while partial.
fn parse_response(
    buf: &[u8],
    (accept, protocol): (&str, &str),
) -> Result<Option<usize>, UpgradeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(len)) => len,
        Err(e) => return Err(UpgradeError::Invalid(e.to_string())),
    };
    let code = response.code.unwrap_or(0);
    if code != 101 {
        return Err(UpgradeError::Refused(code));
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
    };
    let invalid = |what: &str| Err(UpgradeError::Invalid(what.to_owned()));
    if !header("Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return invalid("no `Upgrade: websocket`");
    }
    let connection = header("Connection").unwrap_or_default();
    if !connection
        .split(',')
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
    {
        return invalid("no `Connection: Upgrade`");
    }
    if header("Sec-WebSocket-Accept").as_deref() != Some(accept) {
        return invalid("wrong Sec-WebSocket-Accept");
    }
    if header("Sec-WebSocket-Protocol").as_deref() != Some(protocol) {
        return Err(UpgradeError::NoSubprotocol);
    }
    Ok(Some(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ocpp::SUBPROTOCOL as OCPP16;

    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn response(extra: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n{extra}\r\n"
        )
    }

    #[test]
    fn accepts_a_complete_upgrade_and_keeps_what_follows() {
        let ok = response("Sec-WebSocket-Protocol: ocpp1.6\r\n");
        let with_frame = format!("{ok}\u{81}\u{2}hi");
        assert_eq!(
            parse_response(with_frame.as_bytes(), (ACCEPT, OCPP16)).unwrap(),
            Some(ok.len())
        );
        assert_eq!(
            parse_response(&ok.as_bytes()[..20], (ACCEPT, OCPP16)).unwrap(),
            None
        );
    }

    #[test]
    fn refuses_what_is_not_an_ocpp_upgrade() {
        let no_protocol = response("");
        assert!(matches!(
            parse_response(no_protocol.as_bytes(), (ACCEPT, OCPP16)),
            Err(UpgradeError::NoSubprotocol)
        ));
        let wrong = response("Sec-WebSocket-Protocol: ocpp2.0.1\r\n");
        assert!(matches!(
            parse_response(wrong.as_bytes(), (ACCEPT, OCPP16)),
            Err(UpgradeError::NoSubprotocol)
        ));
        let ok = response("Sec-WebSocket-Protocol: ocpp1.6\r\n");
        assert!(matches!(
            parse_response(ok.as_bytes(), ("another", OCPP16)),
            Err(UpgradeError::Invalid(_))
        ));
        let full = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 20\r\n\r\n";
        assert!(matches!(
            parse_response(full, (ACCEPT, OCPP16)),
            Err(UpgradeError::Refused(503))
        ));
        assert!(matches!(
            parse_response(b"garbage\r\n\r\n", (ACCEPT, OCPP16)),
            Err(UpgradeError::Invalid(_))
        ));
    }

    #[test]
    fn the_accept_digest_is_rfc_6455s() {
        // The example of RFC 6455 section 1.3.
        assert_eq!(
            derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
