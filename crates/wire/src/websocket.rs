//! RFC 6455 framing, without I/O: reading a frame header, unmasking a payload in place, writing
//! frames, close payloads. The event loop reads into one buffer per loop and decodes frames
//! where they lie, so a connection keeps no read buffer of its own; `ocpp-bench` uses the same
//! code as a client.
//!
//! Why not tungstenite's `WebSocket`: it owns a read buffer per connection (kept at its largest
//! size until the connection ends) and an assembly buffer, and reads until `WouldBlock`; the
//! memory budget of this project (1 KiB per idle connection) and its one-read-per-message hot
//! path need the bytes where the loop put them. tungstenite still serves for what it does well
//! elsewhere (the tests' and interop clients, `derive_accept_key`).
//!
//! Decisions where the RFC leaves room:
//! - Extensions are never negotiated, so any RSV bit is a protocol error (1002).
//! - A data frame longer than the message limit is refused from its header (1009), before
//!   any of its payload is held.
//! - Length fields that are not minimal are accepted (the RFC says senders MUST use the
//!   minimal form; refusing them helps nobody).

use std::ops::Range;

/// The longest frame header: 2 bytes, 8 of extended length, 4 of mask.
pub const MAX_HEADER: usize = 14;
/// Control frames carry at most this much payload.
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// A close reason fits in a control frame after the 2-byte code.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// Which end of the connection this code is: a server reads masked frames and writes
/// unmasked ones, a client the reverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// The opcode's four bits on the wire.
    pub fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: OpCode,
    pub mask: Option<[u8; 4]>,
    /// Header bytes (2 to 14).
    pub header_len: usize,
    /// Payload bytes (bounded by the limit passed to [`parse_header`]).
    pub payload_len: usize,
}

impl Header {
    /// Header plus payload.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.payload_len
    }

    /// Where the payload lies in a buffer that starts with this header.
    pub fn payload(&self) -> Range<usize> {
        self.header_len..self.frame_len()
    }
}

/// Why the peer's bytes cannot be accepted, each with the close code to fail the connection
/// with (RFC 6455 7.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// Framing the RFC forbids: close with 1002.
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    /// A message over the configured limit: close with 1009.
    #[error("message too big")]
    TooBig,
    /// A text message or close reason that is not UTF-8: close with 1007.
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8,
}

impl Violation {
    /// The close code to fail the connection with.
    pub fn close_code(self) -> u16 {
        match self {
            Violation::Protocol(_) => 1002,
            Violation::TooBig => 1009,
            Violation::InvalidUtf8 => 1007,
        }
    }

    /// The close reason sent with it.
    pub fn reason(self) -> &'static str {
        match self {
            Violation::Protocol(_) => "WebSocket protocol error",
            Violation::TooBig => "message too big",
            Violation::InvalidUtf8 => "invalid UTF-8 in text message",
        }
    }
}

/// Reads the frame header at the start of `buf`: `Ok(None)` when more bytes are needed. A data
/// frame whose payload exceeds `max_payload` is [`Violation::TooBig`].
pub fn parse_header(
    buf: &[u8],
    role: Role,
    max_payload: usize,
) -> Result<Option<Header>, Violation> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(Violation::Protocol("reserved bits set"));
    }
    let fin = b0 & 0x80 != 0;
    let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(Violation::Protocol("unknown opcode"))?;
    let masked = b1 & 0x80 != 0;
    match (role, masked) {
        (Role::Server, false) => return Err(Violation::Protocol("unmasked client frame")),
        (Role::Client, true) => return Err(Violation::Protocol("masked server frame")),
        _ => {}
    }
    let (len, mut at) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(bytes) => (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(bytes) => (u64::from_be_bytes(bytes), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if opcode.is_control() {
        if !fin {
            return Err(Violation::Protocol("fragmented control frame"));
        }
        if len > MAX_CONTROL_PAYLOAD as u64 {
            return Err(Violation::Protocol("control frame over 125 bytes"));
        }
    } else if len >> 63 != 0 {
        // RFC 6455 5.2: the most significant bit of a 64-bit length MUST be 0, whatever the
        // limit (even none, `usize::MAX`).
        return Err(Violation::Protocol("length with the high bit set"));
    } else if len > max_payload as u64 {
        return Err(Violation::TooBig);
    }
    let mask = if masked {
        let Some(bytes) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        Some([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        None
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        header_len: at,
        // Bounded above by `max_payload` or 125.
        payload_len: len as usize,
    }))
}

/// XORs `payload` with `mask` in place (masking and unmasking are the same operation).
pub fn apply_mask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// Bytes of an unmasked header for a payload of `len` bytes.
pub fn header_len(len: usize, masked: bool) -> usize {
    let base = match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    };
    if masked { base + 4 } else { base }
}

/// Writes a final frame's header for `len` payload bytes into `out` (which must hold
/// [`header_len`] bytes) and returns its length.
pub fn write_header(out: &mut [u8], opcode: OpCode, len: usize, mask: Option<[u8; 4]>) -> usize {
    out[0] = 0x80 | opcode.bits();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut at = match len {
        0..=125 => {
            out[1] = mask_bit | len as u8;
            2
        }
        126..=0xFFFF => {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    };
    if let Some(mask) = mask {
        out[at..at + 4].copy_from_slice(&mask);
        at += 4;
    }
    at
}

/// Room to leave in front of a payload whose (unmasked) header is written once its length is
/// known: see [`seal_text`].
pub const HEADER_ROOM: usize = 10;

/// Makes `buf[start..]` a final text frame: `buf[start..start + HEADER_ROOM]` was left free
/// and the payload follows it to the end. The header is written right-aligned into that room;
/// returns where the frame begins. So an answer is written once, in place, with no copy.
pub fn seal_text(buf: &mut [u8], start: usize) -> usize {
    let payload_start = start + HEADER_ROOM;
    let len = buf.len() - payload_start;
    let at = payload_start - header_len(len, false);
    write_header(&mut buf[at..payload_start], OpCode::Text, len, None);
    at
}

/// Appends one final frame carrying `payload` (masked with `mask` when given).
pub fn encode(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>) {
    let mut header = [0u8; MAX_HEADER];
    let n = write_header(&mut header, opcode, payload.len(), mask);
    out.reserve(n + payload.len());
    out.extend_from_slice(&header[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(mask) = mask {
        apply_mask(&mut out[start..], mask);
    }
}

/// Appends a close frame with `code` and `reason` (cut to fit a control frame, on a character
/// boundary).
pub fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str, mask: Option<[u8; 4]>) {
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    let reason = truncate_utf8(reason, MAX_CLOSE_REASON);
    payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
    encode(out, OpCode::Close, &payload[..2 + reason.len()], mask);
}

/// A received close frame's code and reason; `None` for an empty payload (no code).
pub fn parse_close(payload: &[u8]) -> Result<Option<(u16, &str)>, Violation> {
    match payload {
        [] => Ok(None),
        [_] => Err(Violation::Protocol("close payload of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            // 7.4: codes below 1000, the reserved 1004-1006 and 1015, 1016-2999 unassigned.
            let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !allowed {
                return Err(Violation::Protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| Violation::InvalidUtf8)?;
            Ok(Some((code, reason)))
        }
    }
}

/// The payload of one complete frame at the start of `frame` (as written by [`encode`] or a
/// processor): for tracing what goes out.
pub fn payload_of(frame: &[u8]) -> &[u8] {
    match parse_header(frame, Role::Client, usize::MAX) {
        Ok(Some(header)) if header.frame_len() <= frame.len() => &frame[header.payload()],
        _ => &[],
    }
}

/// At most `max` bytes of `s`, cut on a character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn frame(opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, opcode, payload, mask);
        out
    }

    #[test]
    fn rfc_examples_decode() {
        // RFC 6455 5.7: a masked "Hello" from a client.
        let mut bytes = vec![
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let header = parse_header(&bytes, Role::Server, 1024).unwrap().unwrap();
        assert_eq!(header.opcode, OpCode::Text);
        assert!(header.fin);
        assert_eq!((header.header_len, header.payload_len), (6, 5));
        let range = header.payload();
        apply_mask(&mut bytes[range.clone()], header.mask.unwrap());
        assert_eq!(&bytes[range], b"Hello");
        // Unmasked "Hello" from a server, and what `encode` writes for it.
        assert_eq!(
            frame(OpCode::Text, b"Hello", None),
            [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']
        );
        assert_eq!(
            frame(OpCode::Text, b"Hello", Some(MASK)),
            [
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
    }

    #[test]
    fn every_length_class_round_trips() {
        for len in [0, 1, 7, 8, 9, 125, 126, 127, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            for mask in [None, Some(MASK)] {
                let mut bytes = frame(OpCode::Binary, &payload, mask);
                let role = if mask.is_some() {
                    Role::Server
                } else {
                    Role::Client
                };
                assert_eq!(bytes.len(), header_len(len, mask.is_some()) + len);
                for cut in [0, 1, 3.min(bytes.len() - 1), bytes.len() - 1] {
                    let partial = parse_header(&bytes[..cut], role, usize::MAX).unwrap();
                    assert!(partial.is_none() || partial.unwrap().frame_len() > cut);
                }
                let header = parse_header(&bytes, role, usize::MAX).unwrap().unwrap();
                assert_eq!(header.frame_len(), bytes.len());
                let range = header.payload();
                if let Some(mask) = header.mask {
                    apply_mask(&mut bytes[range.clone()], mask);
                }
                assert_eq!(&bytes[range], &payload[..], "len {len}");
                assert_eq!(
                    payload_of(&frame(OpCode::Text, &payload, None)),
                    &payload[..]
                );
            }
        }
    }

    #[test]
    fn violations_carry_their_close_codes() {
        let cases: &[(&[u8], u16)] = &[
            (&[0x91, 0x80, 0, 0, 0, 0], 1002),                // RSV1
            (&[0x83, 0x80, 0, 0, 0, 0], 1002),                // opcode 3
            (&[0x81, 0x00], 1002),                            // unmasked from a client
            (&[0x09, 0x80, 0, 0, 0, 0], 1002),                // fragmented ping
            (&[0x89, 0xFE, 0x00, 0x7E], 1002),                // 126-byte ping
            (&[0x81, 0xFE, 0x10, 0x00], 1009),                // 4096 bytes over a 1024 limit
            (&[0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0], 1002), // high bit of a 64-bit length
        ];
        for (bytes, code) in cases {
            let err = parse_header(bytes, Role::Server, 1024).unwrap_err();
            assert_eq!(err.close_code(), *code, "{bytes:?}");
        }
        let high_bit = [0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        for limit in [0, 1024, usize::MAX] {
            assert_eq!(
                parse_header(&high_bit, Role::Server, limit),
                Err(Violation::Protocol("length with the high bit set")),
                "limit {limit}"
            );
        }
        let from_server = frame(OpCode::Text, b"x", Some(MASK));
        assert!(parse_header(&from_server, Role::Client, 10).is_err());
    }

    #[test]
    fn close_payloads() {
        let mut out = Vec::new();
        let long = "é".repeat(100);
        encode_close(&mut out, 1001, &long, None);
        let header = parse_header(&out, Role::Client, 0).unwrap().unwrap();
        assert!(header.payload_len <= MAX_CONTROL_PAYLOAD);
        let (code, reason) = parse_close(&out[header.payload()]).unwrap().unwrap();
        assert_eq!(code, 1001);
        assert!(long.starts_with(reason) && reason.len() <= MAX_CLOSE_REASON);
        assert_eq!(parse_close(&[]).unwrap(), None);
        assert!(parse_close(&[3]).is_err());
        assert!(parse_close(&1005u16.to_be_bytes()).is_err());
        assert!(parse_close(&999u16.to_be_bytes()).is_err());
        let bad_utf8 = [0x03, 0xE8, 0xFF];
        assert_eq!(parse_close(&bad_utf8).unwrap_err().close_code(), 1007);
    }

    #[test]
    fn masking_matches_the_bytewise_definition() {
        for len in 0..40 {
            let original: Vec<u8> = (0..len as u8).collect();
            let mut fast = original.clone();
            apply_mask(&mut fast, MASK);
            let slow: Vec<u8> = original
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ MASK[i % 4])
                .collect();
            assert_eq!(fast, slow);
        }
    }
}
