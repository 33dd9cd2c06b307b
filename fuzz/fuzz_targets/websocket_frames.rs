//! The WebSocket frame decoder as the loop drives it: headers parsed one after the other from
//! the input, payloads unmasked in place, close payloads parsed. Must never panic, and never
//! report a frame longer than the input it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::websocket::{self, OpCode, Role};

fuzz_target!(|data: &[u8]| {
    let mut buf = data.to_vec();
    let mut used = 0;
    while used < buf.len() {
        let header = match websocket::parse_header(&buf[used..], Role::Server, 64 * 1024) {
            Ok(Some(header)) if header.frame_len() <= buf.len() - used => header,
            _ => break,
        };
        let frame = &mut buf[used..used + header.frame_len()];
        let payload = &mut frame[header.payload()];
        if let Some(mask) = header.mask {
            websocket::apply_mask(payload, mask);
        }
        if header.opcode == OpCode::Close {
            let _ = websocket::parse_close(payload);
        }
        used += header.frame_len();
    }
});
