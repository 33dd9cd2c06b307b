//! The OCPP-J envelope: `rpc::parse_frame` and 2.1's `parse_frame_21` on any text, and the fast
//! peek the loop does (`message_type`). Must never panic; an answerable error echoes a UniqueId
//! of at most 128 characters (an empty or over-long one is echoed, so the sender can match the
//! CALLERROR); 2.1's SEND and CALLRESULTERROR are never answered. The loop's Heartbeat
//! recognizer (`v16::heartbeat::call_id`, which reads the usual form from its bytes) must agree
//! with the full parse on every text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocpp::rpc::{self, FrameError};
use ocpp::v16::heartbeat;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = rpc::message_type(text);
    assert_eq!(
        heartbeat::call_id(text),
        heartbeat::parsed_call_id(text),
        "{text:?}"
    );
    for parsed in [rpc::parse_frame(text), rpc::parse_frame_21(text)] {
        if let Err(FrameError::Answer { unique_id, .. }) = parsed {
            assert!(
                unique_id.chars().count() <= rpc::MAX_ECHOED_ID_LEN,
                "{unique_id:?}"
            );
        }
    }
    if matches!(rpc::message_type(text), Some(5 | 6)) {
        assert!(!matches!(
            rpc::parse_frame_21(text),
            Err(FrameError::Answer { .. })
        ));
    }
});
