//! The admin listener's HTTP/1.1 request parser (`admin::http::parse`): heads, bodies,
//! pipelining, `Expect`. Must never panic, and never claim more bytes than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocpp_gateway::admin::http::{self, Parsed};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    for _ in 0..8 {
        match http::parse(rest) {
            Parsed::Complete(_, used) => {
                assert!(used > 0 && used <= rest.len());
                rest = &rest[used..];
            }
            _ => break,
        }
    }
});
