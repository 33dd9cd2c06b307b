//! Just enough HTTP/1.1 for the admin listener: parse one request out of a buffer (bounded head
//! and body, `Content-Length` only), and write one response. Pure: the admin loop owns the
//! sockets; everything here is unit-tested on byte strings.

use std::fmt::Write as _;

/// Largest request head (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// Largest request body (an outbound call's payload is at most `max_message_size`, but the
/// admin API is no bulk interface).
pub const MAX_BODY: usize = 64 * 1024;
const MAX_HEADERS: usize = 32;

/// A parsed request; `path` is still percent-encoded, `query` is what followed `?`.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
    pub keep_alive: bool,
}

/// What the bytes so far amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Need more bytes; `expect_continue`: the head is in and asks for `100 Continue`.
    Partial { expect_continue: bool },
    /// A request and how many bytes of the buffer it used.
    Complete(Request, usize),
    /// Answer with this response and close.
    Invalid(Response),
}

pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Parsed::Invalid(Response::error(431, "request head too large"));
        }
        Ok(httparse::Status::Partial) => {
            return Parsed::Partial {
                expect_continue: false,
            };
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Invalid(Response::error(431, "too many headers"));
        }
        Err(e) => return Parsed::Invalid(Response::error(400, &format!("bad request: {e}"))),
    };
    if head_len > MAX_HEAD {
        return Parsed::Invalid(Response::error(431, "request head too large"));
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::Invalid(Response::error(400, "bad request line"));
    };
    let mut content_length: Option<usize> = None;
    let mut expect_continue = false;
    let mut authorization = None;
    let mut connection_close = version == 0;
    for header in req.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or("").trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            match value.parse::<usize>() {
                Ok(n) if content_length.is_none_or(|m| m == n) => content_length = Some(n),
                _ => return Parsed::Invalid(Response::error(400, "bad Content-Length")),
            }
        } else if header.name.eq_ignore_ascii_case("expect") {
            expect_continue = value.eq_ignore_ascii_case("100-continue");
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Invalid(Response::error(
                411,
                "chunked bodies are not supported: send Content-Length",
            ));
        } else if header.name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value.to_owned());
        } else if header.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    connection_close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    connection_close = false;
                }
            }
        }
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > MAX_BODY {
        return Parsed::Invalid(Response::error(413, &format!("body over {MAX_BODY} bytes")));
    }
    let total = head_len + content_length;
    if buf.len() < total {
        return Parsed::Partial { expect_continue };
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, query),
        None => (target, ""),
    };
    Parsed::Complete(
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            authorization,
            body: buf[head_len..total].to_vec(),
            keep_alive: !connection_close,
        },
        total,
    )
}

/// A response to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Extra header lines, each without its CRLF.
    pub headers: Vec<String>,
}

impl Response {
    pub fn json(status: u16, value: &impl serde::Serialize) -> Response {
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        Response {
            status,
            content_type: "application/json",
            body,
            headers: Vec::new(),
        }
    }

    /// Adds the fields of `extra` (an object) to a JSON object body.
    pub fn merge_json(&mut self, extra: serde_json::Value) {
        let Ok(serde_json::Value::Object(mut body)) = serde_json::from_slice(&self.body) else {
            return;
        };
        if let serde_json::Value::Object(extra) = extra {
            body.extend(extra);
        }
        self.body = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    }

    /// `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Response {
        Response::json(status, &serde_json::json!({ "error": message }))
    }

    pub fn text(status: u16, content_type: &'static str, body: String) -> Response {
        Response {
            status,
            content_type,
            body: body.into_bytes(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, line: String) -> Response {
        self.headers.push(line);
        self
    }

    /// The bytes on the wire.
    pub fn write(&self, keep_alive: bool) -> Vec<u8> {
        let mut head = String::with_capacity(160);
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: {}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" },
        );
        for line in &self.headers {
            head.push_str(line);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// The value of `key` in a query string (percent-decoded), if present.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// Compares without leaking where the first difference is.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_request_with_a_body() {
        let raw = b"POST /api/v1/chargepoints/CP1/calls?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nAuthorization: Bearer t\r\n\r\n{}rest";
        let Parsed::Complete(req, used) = parse(raw) else {
            panic!("complete")
        };
        assert_eq!(used, raw.len() - 4);
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/api/v1/chargepoints/CP1/calls");
        assert_eq!(req.query, "x=1");
        assert_eq!(req.body, b"{}");
        assert_eq!(req.authorization.as_deref(), Some("Bearer t"));
        assert!(req.keep_alive);
    }

    #[test]
    fn partial_until_the_body_is_in() {
        let partial = Parsed::Partial {
            expect_continue: false,
        };
        assert_eq!(parse(b"GET /health HTTP/1.1\r\nHost: a\r\n"), partial);
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab"),
            partial
        );
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"),
            Parsed::Partial {
                expect_continue: true
            }
        );
    }

    #[test]
    fn duplicate_content_lengths_must_agree() {
        let Parsed::Invalid(response) =
            parse(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab")
        else {
            panic!("accepted")
        };
        assert_eq!(response.status, 400);
    }

    #[test]
    fn limits_and_garbage_are_answered() {
        let status = |raw: &[u8]| match parse(raw) {
            Parsed::Invalid(r) => r.status,
            other => panic!("{other:?}"),
        };
        assert_eq!(status(b"\x00\x01 garbage\r\n\r\n"), 400);
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"),
            413
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            411
        );
        assert_eq!(status(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), 400);
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD + 1));
        assert_eq!(status(&big), 431);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..40 {
            many.extend(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend(b"\r\n");
        assert_eq!(status(&many), 431);
    }

    #[test]
    fn http10_and_connection_close_do_not_keep_alive() {
        let Parsed::Complete(req, _) = parse(b"GET / HTTP/1.0\r\n\r\n") else {
            panic!()
        };
        assert!(!req.keep_alive);
        let Parsed::Complete(req, _) = parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n") else {
            panic!()
        };
        assert!(!req.keep_alive);
    }

    #[test]
    fn response_bytes() {
        let text = String::from_utf8(Response::error(404, "no").write(false)).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("Content-Length: 14\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n{\"error\":\"no\"}"), "{text}");
    }

    #[test]
    fn query_params_and_secrets() {
        assert_eq!(
            query_param("status=connected&after=CP%2F1", "after").as_deref(),
            Some("CP/1")
        );
        assert_eq!(query_param("a=1", "b"), None);
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
    }
}
