//! The agreement rule between the gateway's upgrade-request parser (`wire::upgrade::parse`) and
//! httparse called directly with the same header limit, shared by the `upgrade_diff` fuzz target
//! and the `upgrade_oracle` test (one copy of the rule, included by path from both).
//!
//! httparse decides where a request ends and whether it is HTTP at all; the gateway must follow
//! it there, and may refuse a well-formed request only for a reason `wire::upgrade` documents.

use wire::upgrade::{self, MAX_HEADERS, MAX_REQUEST, Parsed, Refusal};

/// Checks one input; `Err` describes a disagreement with both answers.
pub fn check(buf: &[u8]) -> Result<(), String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let theirs = request.parse(buf);
    let ours = upgrade::parse(buf, &["ocpp2.0.1", "ocpp1.6"]);
    let disagree = |why: &str| {
        Err(format!(
            "{why}: {:?}: gateway {ours:?}, httparse {theirs:?}",
            String::from_utf8_lossy(buf)
        ))
    };
    match (&theirs, &ours) {
        (Ok(httparse::Status::Complete(n)), Parsed::Upgrade { request: mine, len }) => {
            if len != n || *n > MAX_REQUEST {
                return disagree("request length");
            }
            // What the gateway read must be what httparse read: a GET of HTTP/1.1 (RFC 6455
            // 4.1, client requirement 2), the target's path, the one Sec-WebSocket-Key value.
            let target = request.path.unwrap_or_default();
            let path = target.split_once('?').map_or(target, |(path, _)| path);
            let mut keys = request
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("Sec-WebSocket-Key"));
            let key = match (keys.next(), keys.next()) {
                (Some(h), None) => Some(h.value),
                _ => None,
            };
            if request.method != Some("GET")
                || request.version != Some(1)
                || mine.path != path
                || key != Some(mine.key)
            {
                return disagree("upgrade reads other parts than httparse");
            }
            Ok(())
        }
        // A complete, well-formed request that is not an acceptable upgrade: 400 (RFC 6455
        // 4.2.1: an invalid client handshake gets an HTTP error such as 400 Bad Request) or 426
        // (4.2.2 item 4 and 4.4: a version other than 13). A head over MAX_REQUEST is 431, as
        // documented.
        (Ok(httparse::Status::Complete(_)), Parsed::Refused(Refusal::BadRequest))
        | (Ok(httparse::Status::Complete(_)), Parsed::Refused(Refusal::UpgradeRequired)) => Ok(()),
        (Ok(httparse::Status::Complete(n)), Parsed::Refused(Refusal::HeadersTooLarge))
            if *n > MAX_REQUEST =>
        {
            Ok(())
        }
        // Not complete for httparse: the gateway waits, unless it already holds more than
        // MAX_REQUEST bytes, where it gives up with the documented 431 rather than wait on.
        (Ok(httparse::Status::Partial), Parsed::Partial) if buf.len() <= MAX_REQUEST => Ok(()),
        (Ok(httparse::Status::Partial), Parsed::Refused(Refusal::HeadersTooLarge))
            if buf.len() > MAX_REQUEST =>
        {
            Ok(())
        }
        // More header lines than MAX_HEADERS: the documented 431.
        (Err(httparse::Error::TooManyHeaders), Parsed::Refused(Refusal::HeadersTooLarge)) => Ok(()),
        // Not HTTP: 400.
        (Err(e), Parsed::Refused(Refusal::BadRequest)) if *e != httparse::Error::TooManyHeaders => {
            Ok(())
        }
        _ => disagree("disagree"),
    }
}
