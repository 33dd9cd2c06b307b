//! The HTTP side of a charge point's WebSocket upgrade, without I/O: parsing the request
//! (`httparse`), deciding what it gets, and writing the answer. The loop feeds it the bytes it
//! read; whatever follows a complete request in the same read is already the start of the
//! WebSocket stream (RFC 6455 lets a client send its first frame right behind the request, and
//! some charge points do).
//!
//! Decisions, from RFC 6455 4.2.1 and the OCPP-J 1.6 spec (see `shared/ocpp16/FACTS.md`):
//! - the URL is `{path_prefix}/{identity}`, identity percent-encoded; anything else is 404, so a
//!   misconfigured charge point backs off instead of retrying a bad request at once;
//! - a request that is not a WebSocket upgrade (method, version, `Upgrade`, `Connection`,
//!   `Sec-WebSocket-Key`) is 400; so is a repeated `Upgrade`, `Sec-WebSocket-Key` or
//!   `Sec-WebSocket-Version` header (which one was meant is unknowable); another WebSocket
//!   version is 426 naming version 13;
//! - the subprotocol selected is the first of the caller's list (its preference order) that the
//!   client offered; when none is offered the upgrade completes *without* the header and the
//!   caller closes the connection right after (OCPP-J's rule);
//! - a request head over [`MAX_REQUEST`] bytes or [`MAX_HEADERS`] headers is 431;
//! - over `server.max_connections` the answer is 503 with a jittered `Retry-After`.

use percent_encoding::percent_decode_str;

/// The largest request head accepted, in bytes.
pub const MAX_REQUEST: usize = 8 * 1024;
/// The most header lines accepted.
pub const MAX_HEADERS: usize = 32;

/// What the bytes received so far amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Not a whole request yet.
    Partial,
    /// A complete upgrade request of `len` bytes (what follows belongs to the WebSocket).
    Upgrade { request: Request<'a>, len: usize },
    /// Answer this and close.
    Refused(Refusal),
}

/// The parts of an upgrade request the gateway acts on.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The request target's path (without the query).
    pub path: &'a str,
    /// `Sec-WebSocket-Key`, to derive the accept key from.
    pub key: &'a [u8],
    /// The subprotocol selected: an index into the list given to [`parse`], or None when the
    /// client offered none of them.
    pub protocol: Option<usize>,
    /// The `Authorization` header's value, if any (profiles 1 and 2 check it).
    pub authorization: Option<&'a [u8]>,
}

/// An HTTP error answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    BadRequest,
    NotFound,
    RequestTimeout,
    HeadersTooLarge,
    /// Basic auth missing or wrong (profiles 1 and 2).
    Unauthorized,
    /// The client certificate is not the identity's (profile 3).
    Forbidden,
    /// A WebSocket version other than 13.
    UpgradeRequired,
    /// Over `server.max_connections`; the client may retry after this many seconds.
    ServiceUnavailable {
        retry_after_secs: u32,
    },
    /// Too many failed authentications from the client's address (`security.lockout_*`).
    TooManyFailures {
        retry_after_secs: u32,
    },
    /// The identity must connect with a higher security profile than this listener's.
    ProfileTooLow,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::BadRequest => 400,
            Refusal::NotFound => 404,
            Refusal::RequestTimeout => 408,
            Refusal::HeadersTooLarge => 431,
            Refusal::Unauthorized => 401,
            Refusal::Forbidden => 403,
            Refusal::UpgradeRequired => 426,
            Refusal::ServiceUnavailable { .. } => 503,
            Refusal::TooManyFailures { .. } => 429,
            Refusal::ProfileTooLow => 403,
        }
    }

    /// Appends the whole response (the connection closes after it).
    pub fn write(self, out: &mut Vec<u8>) {
        let (status_line, extra, body): (&str, String, &str) = match self {
            Refusal::BadRequest => (
                "400 Bad Request",
                String::new(),
                "not a WebSocket upgrade\n",
            ),
            Refusal::NotFound => (
                "404 Not Found",
                String::new(),
                "no such charge point endpoint\n",
            ),
            Refusal::RequestTimeout => ("408 Request Timeout", String::new(), ""),
            Refusal::Unauthorized => (
                "401 Unauthorized",
                "WWW-Authenticate: Basic realm=\"OCPP\", charset=\"UTF-8\"\r\n".into(),
                "identity and AuthorizationKey required\n",
            ),
            Refusal::Forbidden => (
                "403 Forbidden",
                String::new(),
                "the client certificate is not this charge point's\n",
            ),
            Refusal::HeadersTooLarge => (
                "431 Request Header Fields Too Large",
                String::new(),
                "request head too large\n",
            ),
            Refusal::UpgradeRequired => (
                "426 Upgrade Required",
                "Sec-WebSocket-Version: 13\r\n".into(),
                "WebSocket version 13 required\n",
            ),
            Refusal::ServiceUnavailable { retry_after_secs } => (
                "503 Service Unavailable",
                format!("Retry-After: {retry_after_secs}\r\n"),
                "server is full\n",
            ),
            Refusal::TooManyFailures { retry_after_secs } => (
                "429 Too Many Requests",
                format!("Retry-After: {retry_after_secs}\r\n"),
                "too many failed authentications from this address\n",
            ),
            Refusal::ProfileTooLow => (
                "403 Forbidden",
                String::new(),
                "this charge point must use a higher security profile\n",
            ),
        };
        let head = format!(
            "HTTP/1.1 {status_line}\r\n{extra}Content-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        out.extend_from_slice(head.as_bytes());
    }
}

/// Reads an upgrade request from the start of `buf`; `protocols` are the subprotocols the server
/// speaks, most preferred first.
pub fn parse<'a>(buf: &'a [u8], protocols: &[&str]) -> Parsed<'a> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_REQUEST => {
            return Parsed::Refused(Refusal::HeadersTooLarge);
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Refused(Refusal::HeadersTooLarge),
        Err(_) => return Parsed::Refused(Refusal::BadRequest),
    };
    if len > MAX_REQUEST {
        return Parsed::Refused(Refusal::HeadersTooLarge);
    }
    match check(&request, protocols) {
        Ok(checked) => Parsed::Upgrade {
            request: checked,
            len,
        },
        Err(refusal) => Parsed::Refused(refusal),
    }
}

fn check<'a>(
    request: &httparse::Request<'_, 'a>,
    protocols: &[&str],
) -> Result<Request<'a>, Refusal> {
    if request.method != Some("GET") || request.version != Some(1) {
        return Err(Refusal::BadRequest);
    }
    let values = |name: &'static str| {
        request
            .headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let single = |name: &'static str| {
        let mut found = values(name);
        match (found.next(), found.next()) {
            (Some(value), None) => Ok(value),
            _ => Err(Refusal::BadRequest),
        }
    };
    if !single("Upgrade")?.eq_ignore_ascii_case(b"websocket") {
        return Err(Refusal::BadRequest);
    }
    let connection_upgrade = values("Connection")
        .flat_map(|v| v.split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
    if !connection_upgrade {
        return Err(Refusal::BadRequest);
    }
    let key = single("Sec-WebSocket-Key")?;
    if !is_websocket_key(key) {
        return Err(Refusal::BadRequest);
    }
    if single("Sec-WebSocket-Version")?.trim_ascii() != b"13" {
        return Err(Refusal::UpgradeRequired);
    }
    let target = request.path.ok_or(Refusal::BadRequest)?;
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let offered = |name: &str| {
        values("Sec-WebSocket-Protocol")
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|token| token.trim_ascii() == name.as_bytes())
    };
    let protocol = protocols.iter().position(|name| offered(name));
    let mut authorizations = values("Authorization");
    let authorization = match (authorizations.next(), authorizations.next()) {
        (_, Some(_)) => return Err(Refusal::BadRequest),
        (one, None) => one,
    };
    Ok(Request {
        path,
        key,
        protocol,
        authorization,
    })
}

/// A `Sec-WebSocket-Key`: base64 of 16 bytes, so 22 characters of the alphabet then `==`.
fn is_websocket_key(key: &[u8]) -> bool {
    let key = key.trim_ascii();
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Appends the `101 Switching Protocols` answer, selecting `protocol` when there is one.
pub fn write_switching(out: &mut Vec<u8>, key: &[u8], protocol: Option<&str>) {
    let accept = tungstenite::handshake::derive_accept_key(key.trim_ascii());
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept.as_bytes());
    if let Some(protocol) = protocol {
        out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
        out.extend_from_slice(protocol.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// The identity in `path` (`{prefix}/{percent-encoded id}`), or None when the path is not a
/// charge point URL: wrong prefix, a `/` in the rest, not UTF-8 once decoded, or not an
/// identity `allows` accepts (the caller's identity rule).
pub fn charge_point_id(
    prefix: &str,
    path: &str,
    allows: impl FnOnce(&str) -> bool,
) -> Option<String> {
    let encoded = path.strip_prefix(prefix)?.strip_prefix('/')?;
    if encoded.is_empty() || encoded.contains('/') || !well_formed_escapes(encoded) {
        return None;
    }
    let id = percent_decode_str(encoded).decode_utf8().ok()?;
    allows(&id).then(|| id.into_owned())
}

/// Every `%` starts a two-hex-digit escape (percent-decoding alone would pass a stray `%`).
fn well_formed_escapes(encoded: &str) -> bool {
    let bytes = encoded.as_bytes();
    bytes.iter().enumerate().filter(|(_, b)| **b == b'%').all(|(i, _)| {
        matches!(bytes.get(i + 1..i + 3), Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OCPP: &[&str] = &["ocpp2.0.1", "ocpp1.6"];

    /// A stand-in for the caller's identity rule: ASCII letters, digits and `-`, 1 to 48.
    fn simple(id: &str) -> bool {
        (1..=48).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    }

    fn any(_: &str) -> bool {
        true
    }

    fn parse(buf: &[u8]) -> Parsed<'_> {
        super::parse(buf, OCPP)
    }

    fn upgrade_request(extra: &str) -> String {
        format!(
            "GET /ocpp/CP1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    #[test]
    fn a_complete_request_and_what_follows_it() {
        let text = upgrade_request("Sec-WebSocket-Protocol: ocpp1.5, ocpp1.6\r\n");
        let mut bytes = text.clone().into_bytes();
        bytes.extend_from_slice(&[0x81, 0x80]); // the first frame, right behind
        let Parsed::Upgrade { request, len } = parse(&bytes) else {
            panic!("{:?}", parse(&bytes))
        };
        assert_eq!(len, text.len());
        assert_eq!(request.path, "/ocpp/CP1");
        assert_eq!(request.protocol, Some(1));
        for cut in [0, 10, text.len() - 1] {
            assert_eq!(parse(&bytes[..cut]), Parsed::Partial, "{cut}");
        }
        let mut out = Vec::new();
        write_switching(&mut out, request.key, Some("ocpp1.6"));
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("HTTP/1.1 101 "), "{out}");
        assert!(
            out.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{out}"
        );
        assert!(out.contains("Sec-WebSocket-Protocol: ocpp1.6\r\n"), "{out}");
        let query = upgrade_request("").replace("/ocpp/CP1 ", "/ocpp/CP1?x=1 ");
        let Parsed::Upgrade { request, .. } = parse(query.as_bytes()) else {
            panic!()
        };
        assert_eq!(request.path, "/ocpp/CP1");
        assert_eq!(request.protocol, None);
    }

    #[test]
    fn the_servers_preference_wins() {
        let both = upgrade_request(
            "Sec-WebSocket-Protocol: ocpp1.6\r\nSec-WebSocket-Protocol: ocpp2.0.1\r\n",
        );
        let Parsed::Upgrade { request, .. } = parse(both.as_bytes()) else {
            panic!()
        };
        assert_eq!(request.protocol, Some(0));
        let Parsed::Upgrade { request, .. } = super::parse(both.as_bytes(), &["ocpp1.6"]) else {
            panic!()
        };
        assert_eq!(request.protocol, Some(0));
        let Parsed::Upgrade { request, .. } = super::parse(both.as_bytes(), &["ocpp2.1"]) else {
            panic!()
        };
        assert_eq!(request.protocol, None);
        let near = upgrade_request("Sec-WebSocket-Protocol: ocpp1.6x, OCPP1.6\r\n");
        let Parsed::Upgrade { request, .. } = parse(near.as_bytes()) else {
            panic!()
        };
        assert_eq!(request.protocol, None, "names match exactly");
    }

    #[test]
    fn refusals() {
        let bad = |text: &str| match parse(text.as_bytes()) {
            Parsed::Refused(r) => r,
            other => panic!("{text:?}: {other:?}"),
        };
        let ok = upgrade_request("");
        assert_eq!(bad("\x16\x03\x01garbage\r\n\r\n"), Refusal::BadRequest);
        assert_eq!(
            bad("GET /ocpp/CP1 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Refusal::BadRequest
        );
        assert_eq!(bad(&ok.replace("GET", "POST")), Refusal::BadRequest);
        assert_eq!(
            bad(&ok.replace("HTTP/1.1", "HTTP/1.0")),
            Refusal::BadRequest
        );
        assert_eq!(
            bad(&upgrade_request("Upgrade: websocket\r\n")),
            Refusal::BadRequest
        );
        assert_eq!(
            bad(&ok.replace("keep-alive, Upgrade", "keep-alive")),
            Refusal::BadRequest
        );
        assert_eq!(
            bad(&ok.replace("dGhlIHNhbXBsZSBub25jZQ==", "short")),
            Refusal::BadRequest
        );
        assert_eq!(
            bad(&upgrade_request(
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            )),
            Refusal::BadRequest
        );
        assert_eq!(
            bad(&ok.replace("Version: 13", "Version: 8")),
            Refusal::UpgradeRequired
        );
        let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(bad(&upgrade_request(&many)), Refusal::HeadersTooLarge);
        let huge = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_REQUEST));
        assert_eq!(bad(&huge), Refusal::HeadersTooLarge);
        for refusal in [
            Refusal::NotFound,
            Refusal::ServiceUnavailable {
                retry_after_secs: 17,
            },
            Refusal::TooManyFailures {
                retry_after_secs: 9,
            },
            Refusal::ProfileTooLow,
        ] {
            let mut out = Vec::new();
            refusal.write(&mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(
                text.starts_with(&format!("HTTP/1.1 {} ", refusal.status())),
                "{text}"
            );
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(
                head.contains(&format!("Content-Length: {}", body.len())),
                "{text}"
            );
        }
    }

    #[test]
    fn plain_and_percent_encoded_ids() {
        assert_eq!(
            charge_point_id("/ocpp", "/ocpp/CP1", simple).as_deref(),
            Some("CP1")
        );
        assert_eq!(
            charge_point_id("/ocpp", "/ocpp/RDAM%2D123", simple).as_deref(),
            Some("RDAM-123")
        );
        assert_eq!(
            charge_point_id("", "/CP-7", simple).as_deref(),
            Some("CP-7")
        );
        assert_eq!(charge_point_id("/a/b", "/a/b/%C3%A9t%C3%A9", simple), None);
        assert_eq!(
            charge_point_id("/a/b", "/a/b/%C3%A9t%C3%A9", any).as_deref(),
            Some("été")
        );
    }

    #[test]
    fn rejects_what_is_not_a_charge_point_path() {
        let too_long = format!("/ocpp/{}", "x".repeat(49));
        let longest = format!("/ocpp/{}", "x".repeat(48));
        assert!(charge_point_id("/ocpp", &longest, simple).is_some());
        for path in [
            "/",
            "/ocpp",
            "/ocpp/",
            "/ocppCP1",
            "/other/CP1",
            "/ocpp/CP1/",
            "/ocpp/a/b",
            "/ocpp/%2F",
            "/ocpp/%0A",
            "/ocpp/%FF",
            "/ocpp/%",
            "/ocpp/a%2",
            "/ocpp/%zz",
            "/ocpp/.",
            "/ocpp/..",
            "/ocpp/%2E%2E",
            "/ocpp/%20CP1",
            "/ocpp/CP1%20",
            "/ocpp/RDAM%20123",
            "/ocpp/CP%E2%80%AE1",
            "/ocpp/CP%E2%80%8B1",
            "/ocpp/%EF%BB%BFCP1",
            "/ocpp/CP%E2%80%A81",
            "/ocpp/CP%E3%85%A4X",
            "/ocpp/CP%CD%8FX",
            "/ocpp/CP%EF%B8%8FX",
            too_long.as_str(),
        ] {
            assert_eq!(charge_point_id("/ocpp", path, simple), None, "{path}");
        }
    }
}
