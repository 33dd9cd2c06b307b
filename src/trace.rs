//! Raw-frame traces: the charge points whose frames are logged (turned on per charge point through
//! the operator API), read by the loops and processors, set by the admin thread.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The log target of raw-frame traces (turned on per charge point through the operator API).
pub const TRACE_TARGET: &str = "ocpp_gateway::trace";

/// A frame as one log line: JSON may carry raw newlines, which must not forge log lines.
pub fn escape_newlines(text: &str) -> Cow<'_, str> {
    if text.contains(['\n', '\r']) {
        text.replace('\n', "\\n").replace('\r', "\\r").into()
    } else {
        text.into()
    }
}

/// Charge points whose raw frames are logged (target [`TRACE_TARGET`]), set through the
/// operator API. Loops consult it for every frame, so a change applies to the very next one;
/// empty (the usual case) it costs one relaxed atomic load per frame.
#[derive(Debug, Default)]
pub struct TraceList {
    ids: RwLock<HashSet<Box<str>>>,
    len: AtomicUsize,
}

/// How many charge points may be traced at once: tracing is for a few misbehaving units.
pub const MAX_TRACED: usize = 1024;

impl TraceList {
    /// True when nobody is traced: the check a loop makes before looking anything up.
    pub fn is_empty(&self) -> bool {
        self.len.load(Ordering::Relaxed) == 0
    }

    pub fn contains(&self, cp: &str) -> bool {
        if self.is_empty() {
            return false;
        }
        self.ids.read().is_ok_and(|ids| ids.contains(cp))
    }

    /// Turns tracing of `cp` on or off; false when turning on would pass [`MAX_TRACED`].
    pub fn set(&self, cp: &str, on: bool) -> bool {
        let Ok(mut ids) = self.ids.write() else {
            return false;
        };
        if on {
            if !ids.contains(cp) && ids.len() >= MAX_TRACED {
                return false;
            }
            ids.insert(cp.into());
        } else {
            ids.remove(cp);
        }
        self.len.store(ids.len(), Ordering::Relaxed);
        true
    }
}
