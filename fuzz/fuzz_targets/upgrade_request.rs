//! The charge point's upgrade request: `wire::upgrade::parse`, then the identity in its path
//! (percent-decoding and the identity rules). Must never panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocpp::IdentityRule;
use wire::upgrade::{self, Parsed};

fuzz_target!(|data: &[u8]| {
    if let Parsed::Upgrade { request, len } = upgrade::parse(data, &["ocpp2.0.1", "ocpp1.6"]) {
        assert!(len <= data.len());
        for rule in [IdentityRule::IdentifierString, IdentityRule::Unicode] {
            let _ = upgrade::charge_point_id("/ocpp", request.path, |id| rule.allows(id));
            let _ = upgrade::charge_point_id("", request.path, |id| rule.allows(id));
        }
        let protocol = request.protocol.map(|i| ["ocpp2.0.1", "ocpp1.6"][i]);
        let mut out = Vec::new();
        upgrade::write_switching(&mut out, request.key, protocol);
    }
});
