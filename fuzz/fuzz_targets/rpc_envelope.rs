//! The OCPP-J envelope: `rpc::parse_frame` on any text, and the fast peek the loop does
//! (`message_type`). Must never panic; an answerable error echoes a UniqueId of at most 128
//! characters (an empty or over-long one is echoed, so the sender can match the CALLERROR).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocpp::rpc::{self, FrameError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = rpc::message_type(text);
    if let Err(FrameError::Answer { unique_id, .. }) = rpc::parse_frame(text) {
        assert!(
            unique_id.chars().count() <= rpc::MAX_ECHOED_ID_LEN,
            "{unique_id:?}"
        );
    }
});
