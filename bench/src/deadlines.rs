//! The timers of one fleet thread: a min-heap of `(time, charge point)` with lazy cancellation,
//! at most one live entry per charge point however many messages it exchanges.
//!
//! A charge point remembers the time its live entry fires (`armed`). Asking for an earlier wake
//! pushes a new entry and the old one goes stale (it is skipped when popped, because it no longer
//! equals `armed`); asking for a later one pushes nothing: the early entry fires, the charge
//! point finds nothing due and re-arms for the real time. While a CALL is outstanding a charge
//! point asks to wake at its next planned send (or the CALL's deadline, if sooner), so the
//! answer's re-arm usually finds its entry in place: one push and one pop per message, and no
//! stale deadline entries piling up.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::scenario::NEVER;

#[derive(Debug, Default)]
pub struct Deadlines {
    heap: BinaryHeap<Reverse<(u64, u32)>>,
}

impl Deadlines {
    /// Makes sure charge point `key`, whose live entry fires at `*armed`, wakes by `at`.
    pub fn arm(&mut self, key: u32, armed: &mut u64, at: u64) {
        if at == NEVER || *armed <= at {
            return;
        }
        *armed = at;
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest entry's time (it may be stale).
    pub fn next_time(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Pops an entry due at `now`: `(time, key)`. The caller checks it against the charge
    /// point's `armed` and, when equal, clears `armed` to [`NEVER`] and handles the wake.
    pub fn pop_due(&mut self, now: u64) -> Option<(u64, u32)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(entry)| entry),
            _ => None,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_requests_push_nothing_earlier_ones_supersede() {
        let mut d = Deadlines::default();
        let mut armed = NEVER;
        d.arm(7, &mut armed, 100);
        d.arm(7, &mut armed, 500); // later: the entry at 100 will do
        assert_eq!(d.len(), 1);
        d.arm(7, &mut armed, 50); // earlier: a new live entry, the old one stale
        assert_eq!((d.len(), armed), (2, 50));
        assert_eq!(d.pop_due(49), None);
        assert_eq!(d.pop_due(60), Some((50, 7)));
        armed = NEVER; // handled
        let (at, key) = d.pop_due(1000).unwrap();
        assert_ne!(at, armed, "entry for {key} at {at} is stale");
        assert_eq!(d.next_time(), None);
        d.arm(7, &mut armed, NEVER);
        assert_eq!(d.len(), 0);
    }
}
