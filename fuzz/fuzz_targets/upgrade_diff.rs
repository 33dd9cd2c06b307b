//! Differential: random bytes through the gateway's upgrade-request parser and httparse with the
//! same header limit. Panics with both answers on any disagreement the agreement rule
//! (tests/oracle/upgrade.rs, shared with the `upgrade_oracle` test) does not explain.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/oracle/upgrade.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| {
    if let Err(disagreement) = oracle::check(data) {
        panic!("{disagreement}");
    }
});
