//! The PROXY protocol header parser (v1 text, v2 binary). Must never panic, and a complete
//! header is never longer than the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::proxy::{self, Header};

fuzz_target!(|data: &[u8]| {
    if let Ok(Header::Done { len, .. }) = proxy::parse(data) {
        assert!(len <= data.len());
    }
});
