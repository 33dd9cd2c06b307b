//! The OCPP-J envelope: `rpc::parse_frame` and 2.1's `parse_frame_21` on any text, and the fast
//! peek the loop does (`message_type`). Must never panic; an answerable error echoes a UniqueId
//! of at most 128 characters (an empty or over-long one is echoed, so the sender can match the
//! CALLERROR); 2.1's SEND and CALLRESULTERROR are never answered. The loop's Heartbeat
//! recognizer (`v16::heartbeat::call_id`, which reads the usual form from its bytes) may only
//! answer what the full parse finds a Heartbeat CALL with that id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocpp::rpc::{self, FrameError};
use ocpp::v16::heartbeat;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = rpc::message_type(text);
    if let Some(id) = heartbeat::call_id(text) {
        assert_eq!(
            heartbeat::parsed_call_id(text).as_deref(),
            Some(id.as_str()),
            "{text:?}"
        );
    }
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
