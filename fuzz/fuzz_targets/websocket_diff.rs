//! Differential: random bytes through the gateway's frame-header decoder and tungstenite's
//! `FrameHeader::parse`, as a server and as a client, with and without a message limit. Panics
//! with both answers on any disagreement the agreement rule (tests/oracle/frame.rs, shared with
//! the `frame_oracle` test) does not explain by an RFC 6455 section.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/oracle/frame.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| {
    if let Err(disagreement) = oracle::check_all(data) {
        panic!("{disagreement}");
    }
});
