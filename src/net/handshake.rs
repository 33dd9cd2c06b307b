//! The HTTP side of a charge point's WebSocket upgrade: which paths name a charge point, which
//! subprotocol is selected, and the HTTP errors for everything else. tungstenite drives the
//! upgrade itself (non-blocking, its `MidHandshake` waits in the loop's slab); this module is the
//! [`Callback`] it calls once the request is complete, plus the pure checks behind it.
//!
//! Decisions, from the OCPP-J 1.6 spec (see `shared/ocpp16/FACTS.md`):
//! - the URL is `{path_prefix}/{identity}`, identity percent-encoded; anything else is 404, so a
//!   misconfigured charge point backs off instead of retrying a bad request at once;
//! - `ocpp1.6` is selected when offered among others; when it is not offered at all the upgrade
//!   completes *without* the header and the connection is closed right after (the spec's rule);
//! - over `server.max_connections` the answer is 503 with a jittered `Retry-After`.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use percent_encoding::percent_decode_str;
use tungstenite::handshake::server::{Callback, ErrorResponse, Request, Response};
use tungstenite::http::{HeaderValue, StatusCode, header};

use crate::config::MAX_CHARGE_POINT_ID_LEN;
use crate::processor::policy::Identities;

/// The subprotocol this gateway speaks.
pub const OCPP16: &str = "ocpp1.6";

/// A charge point identity, as decoded from the URL. Shared (`Arc`) because every frame that
/// travels to a processor carries it.
pub type ChargePointId = Arc<str>;

/// What the handshake decided, read by the loop once tungstenite is done.
#[derive(Debug, Clone, Default)]
pub enum Verdict {
    /// The request never reached the callback (incomplete or not a WebSocket upgrade).
    #[default]
    Pending,
    /// Upgraded. `ocpp16` is false when the client did not offer `ocpp1.6`: close at once.
    Upgraded { id: ChargePointId, ocpp16: bool },
    /// Answered with this HTTP status.
    Refused(StatusCode),
}

/// Where the callback leaves its [`Verdict`]: the callback is moved into tungstenite's handshake,
/// so the loop keeps the other end of this cell.
pub type VerdictSlot = Rc<Cell<Verdict>>;

/// The callback tungstenite calls with the complete upgrade request.
pub struct UpgradeCheck {
    pub path_prefix: Arc<str>,
    /// When set, only these identities may connect (others: 404).
    pub known: Option<Arc<Identities>>,
    /// Decided at accept time: this connection is over `server.max_connections`.
    pub over_capacity: bool,
    /// Seconds to put in `Retry-After` when over capacity.
    pub retry_after_secs: u32,
    pub verdict: VerdictSlot,
}

impl Callback for UpgradeCheck {
    fn on_request(
        self,
        request: &Request,
        mut response: Response,
    ) -> Result<Response, ErrorResponse> {
        if self.over_capacity {
            self.verdict
                .set(Verdict::Refused(StatusCode::SERVICE_UNAVAILABLE));
            let mut refusal = error_response(StatusCode::SERVICE_UNAVAILABLE, "server is full\n");
            refusal
                .headers_mut()
                .insert(header::RETRY_AFTER, self.retry_after_secs.into());
            return Err(refusal);
        }
        let id = charge_point_id(&self.path_prefix, request.uri().path())
            .filter(|id| self.known.as_ref().is_none_or(|known| known.contains(id)));
        let Some(id) = id else {
            self.verdict.set(Verdict::Refused(StatusCode::NOT_FOUND));
            return Err(error_response(
                StatusCode::NOT_FOUND,
                "no such charge point endpoint\n",
            ));
        };
        let ocpp16 = offers_ocpp16(request);
        if ocpp16 {
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(OCPP16),
            );
        }
        self.verdict.set(Verdict::Upgraded {
            id: id.into(),
            ocpp16,
        });
        Ok(response)
    }
}

/// True when any `Sec-WebSocket-Protocol` header lists `ocpp1.6` (tokens are case-sensitive).
pub fn offers_ocpp16(request: &Request) -> bool {
    request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim() == OCPP16)
}

/// The identity in `path` (`{prefix}/{percent-encoded id}`), or None when the path is not a
/// charge point URL: wrong prefix, empty, more than [`MAX_CHARGE_POINT_ID_LEN`] characters, a
/// `/` or a control character in it, or not UTF-8 once decoded.
pub fn charge_point_id(prefix: &str, path: &str) -> Option<String> {
    let encoded = path.strip_prefix(prefix)?.strip_prefix('/')?;
    if encoded.is_empty() || encoded.contains('/') || !well_formed_escapes(encoded) {
        return None;
    }
    let id = percent_decode_str(encoded).decode_utf8().ok()?;
    let printable = id.chars().all(|c| !c.is_control() && c != '/');
    let len = id.chars().count();
    (printable && (1..=MAX_CHARGE_POINT_ID_LEN).contains(&len)).then(|| id.into_owned())
}

/// Every `%` starts a two-hex-digit escape (percent-decoding alone would pass a stray `%`).
fn well_formed_escapes(encoded: &str) -> bool {
    let bytes = encoded.as_bytes();
    bytes.iter().enumerate().filter(|(_, b)| **b == b'%').all(|(i, _)| {
        matches!(bytes.get(i + 1..i + 3), Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit())
    })
}

fn error_response(status: StatusCode, body: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(body.to_owned()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(header::CONTENT_LENGTH, body.len().into());
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Written by hand to a socket whose request tungstenite could not parse.
pub const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// Written by hand to a socket whose request did not arrive in time.
pub const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_percent_encoded_ids() {
        assert_eq!(
            charge_point_id("/ocpp", "/ocpp/CP1").as_deref(),
            Some("CP1")
        );
        assert_eq!(
            charge_point_id("/ocpp", "/ocpp/RDAM%20123").as_deref(),
            Some("RDAM 123")
        );
        assert_eq!(charge_point_id("", "/CP-7").as_deref(), Some("CP-7"));
        assert_eq!(
            charge_point_id("/a/b", "/a/b/%C3%A9t%C3%A9").as_deref(),
            Some("été")
        );
    }

    #[test]
    fn rejects_what_is_not_a_charge_point_path() {
        let too_long = format!("/ocpp/{}", "x".repeat(MAX_CHARGE_POINT_ID_LEN + 1));
        let longest = format!("/ocpp/{}", "x".repeat(MAX_CHARGE_POINT_ID_LEN));
        assert!(charge_point_id("/ocpp", &longest).is_some());
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
            too_long.as_str(),
        ] {
            assert_eq!(charge_point_id("/ocpp", path), None, "{path}");
        }
    }

    #[test]
    fn subprotocol_offers() {
        let offered = |values: &[&str]| {
            let mut request = Request::new(());
            for v in values {
                request.headers_mut().append(
                    header::SEC_WEBSOCKET_PROTOCOL,
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            offers_ocpp16(&request)
        };
        assert!(offered(&["ocpp1.6"]));
        assert!(offered(&["ocpp1.5, ocpp1.6"]));
        assert!(offered(&["ocpp2.0.1", "ocpp1.6"]));
        assert!(!offered(&[]));
        assert!(!offered(&["ocpp1.5"]));
        assert!(!offered(&["OCPP1.6"]));
        assert!(!offered(&["ocpp1.6x"]));
    }
}
