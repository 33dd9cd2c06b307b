//! The agreement rule between the gateway's frame-header decoder (`wire::websocket::parse_header`)
//! and tungstenite's `FrameHeader::parse`, shared by the `websocket_diff` fuzz target and the
//! `frame_oracle` test (one copy of the rule, included by path from both).
//!
//! Wherever both decoders speak about the same bytes they must agree: header complete or not,
//! FIN, RSV bits, opcode, mask, payload length, header length. The gateway refuses some headers
//! tungstenite's parser accepts (tungstenite leaves those checks to its connection layer); each
//! such refusal is listed in [`expected_refusal`] with the RFC 6455 section that requires it.
//! Anything else is a disagreement, reported with both answers.

use std::io::Cursor;

use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::OpCode as TOpCode;
use wire::websocket::{self, MAX_HEADER, Role, Violation};

/// What tungstenite says about `buf`: the header, its payload length and its header length;
/// `Ok(None)` when incomplete; `Err` with its message when refused.
type Theirs = Result<Option<(FrameHeader, u64, usize)>, String>;

fn theirs(buf: &[u8]) -> Theirs {
    let mut cursor = Cursor::new(buf);
    match FrameHeader::parse(&mut cursor) {
        Ok(Some((header, len))) => Ok(Some((header, len, cursor.position() as usize))),
        Ok(None) => Ok(None),
        Err(err) => Err(err.to_string()),
    }
}

/// The refusal the gateway owes a header tungstenite decoded completely, in the order the
/// gateway checks; `None` when it must accept it.
fn expected_refusal(header: &FrameHeader, len: u64, role: Role, limit: usize) -> Option<Violation> {
    // 5.2: RSV1-3 MUST be 0 unless an extension defining them was negotiated; the gateway
    // negotiates none.
    if header.rsv1 || header.rsv2 || header.rsv3 {
        return Some(Violation::Protocol("reserved bits set"));
    }
    // 5.1: a server MUST close the connection on an unmasked client frame, and a client on a
    // masked server frame.
    match (role, header.mask.is_some()) {
        (Role::Server, false) => return Some(Violation::Protocol("unmasked client frame")),
        (Role::Client, true) => return Some(Violation::Protocol("masked server frame")),
        _ => {}
    }
    let control = matches!(header.opcode, TOpCode::Control(_));
    if control {
        // 5.5: control frames MUST NOT be fragmented and carry at most 125 payload bytes.
        if !header.is_final {
            return Some(Violation::Protocol("fragmented control frame"));
        }
        if len > websocket::MAX_CONTROL_PAYLOAD as u64 {
            return Some(Violation::Protocol("control frame over 125 bytes"));
        }
    } else if len >> 63 != 0 {
        // 5.2: the most significant bit of a 64-bit payload length MUST be 0.
        return Some(Violation::Protocol("length with the high bit set"));
    } else if len > limit as u64 {
        // Not an RFC rule: the gateway's message limit, failed with 1009 (7.4.1) from the
        // header, before any payload is held.
        return Some(Violation::TooBig);
    }
    None
}

/// Checks one input under one role and limit; `Err` describes a disagreement with both answers.
pub fn check(buf: &[u8], role: Role, limit: usize) -> Result<(), String> {
    let ours = websocket::parse_header(buf, role, limit);
    let theirs = theirs(buf);
    let disagree = |why: &str| {
        Err(format!(
            "{why}: {buf:02x?} {role:?} limit {limit}: gateway {ours:?}, tungstenite {theirs:?}"
        ))
    };
    match (&ours, &theirs) {
        (Ok(None), Ok(None)) => Ok(()),
        (Ok(Some(mine)), Ok(Some((header, len, header_len)))) => {
            let same = mine.fin == header.is_final
                && mine.opcode.bits() == u8::from(header.opcode)
                && mine.mask == header.mask
                && mine.payload_len as u64 == *len
                && mine.header_len == *header_len;
            if !same {
                return disagree("decoded differently");
            }
            match expected_refusal(header, *len, role, limit) {
                None => Ok(()),
                Some(_) => disagree("accepted what RFC 6455 (or the limit) refuses"),
            }
        }
        (Err(violation), Ok(Some((header, len, _)))) => {
            if expected_refusal(header, *len, role, limit) == Some(*violation) {
                Ok(())
            } else {
                disagree("unexplained refusal")
            }
        }
        // Both refuse a reserved opcode (5.2: 3-7 and 0xB-0xF are reserved). Tungstenite checks
        // the opcode after reading the whole header; the gateway checks RSV bits first.
        (Err(Violation::Protocol("reserved bits set" | "unknown opcode")), Err(_)) => Ok(()),
        // The gateway refuses from the first bytes that decide it (RSV bits, opcode, mask bit,
        // a control frame's length); tungstenite reads the whole header first. Such a refusal
        // must not depend on bytes not yet received: the same input completed with zeros gets
        // the same refusal, and that refusal is explained as above.
        (Err(violation), Ok(None)) => {
            let mut padded = buf.to_vec();
            padded.resize(buf.len().max(MAX_HEADER), 0);
            let again = websocket::parse_header(&padded, role, limit);
            if again != Err(*violation) {
                return disagree(&format!(
                    "refusal depends on missing bytes ({again:?} once complete)"
                ));
            }
            check(&padded, role, limit).map_err(|e| format!("once complete: {e}"))
        }
        _ => disagree("disagree"),
    }
}

/// Checks `buf` as a server and as a client, without a limit and with a 64 KiB one.
pub fn check_all(buf: &[u8]) -> Result<(), String> {
    for role in [Role::Server, Role::Client] {
        for limit in [usize::MAX, 64 * 1024] {
            check(buf, role, limit)?;
        }
    }
    Ok(())
}
