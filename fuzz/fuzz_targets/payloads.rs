//! Every payload decoder: the first byte picks one of the 39 actions of 1.6 and one of the 64
//! of 2.0.1, the rest is the payload, checked as a request and as a response of each (the 2.0.1
//! schema checker reads any text, JSON or not). Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocpp::v16::{self, Action};
use ocpp::v201::{self, Part};
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let action201 = v201::Action::ALL[usize::from(pick) % v201::Action::ALL.len()];
    let _ = v201::check(action201, Part::Request, text);
    let _ = v201::check(action201, Part::Response, text);
    let _ = v201::check_request(action201.as_str(), text);
    let Ok(payload) = serde_json::from_str::<&RawValue>(text) else {
        return;
    };
    let action = Action::ALL[usize::from(pick) % Action::ALL.len()];
    let _ = v16::validate_request(action, payload);
    let _ = v16::validate_response(action, payload);
});
