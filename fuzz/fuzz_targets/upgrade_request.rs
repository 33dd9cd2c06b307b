//! The charge point's upgrade request: `net::upgrade::parse`, then the identity in its path
//! (percent-decoding and the identity rules). Must never panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocpp_gateway::net::upgrade::{self, Parsed};

fuzz_target!(|data: &[u8]| {
    if let Parsed::Upgrade { request, len } = upgrade::parse(data) {
        assert!(len <= data.len());
        let strict = ocpp_gateway::types::IdentityRule::IdentifierString;
        let _ = upgrade::charge_point_id("/ocpp", request.path, strict);
        let _ = upgrade::charge_point_id("", request.path, ocpp_gateway::types::IdentityRule::Unicode);
        let mut out = Vec::new();
        upgrade::write_switching(&mut out, request.key, request.ocpp16);
    }
});
