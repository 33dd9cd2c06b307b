//! Every payload decoder: the first byte picks one of the 39 actions, the rest is the payload
//! (when it is JSON), checked as a request and as a response. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocpp::v16::{self, Action};
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok(payload) = serde_json::from_str::<&RawValue>(text) else {
        return;
    };
    let action = Action::ALL[usize::from(pick) % Action::ALL.len()];
    let _ = v16::validate_request(action, payload);
    let _ = v16::validate_response(action, payload);
});
