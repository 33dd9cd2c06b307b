//! One connection's calls of the central system: at most one in flight (OCPP-J allows one
//! outstanding CALL per direction), the rest waiting in order, bounded by
//! `ocpp.max_queued_calls`. The session sends, times out and answers them; this is the queue.

use std::collections::VecDeque;
use std::time::Instant;

use crate::call::OutboundCall;
use crate::net::timer::TimerId;

/// The call a connection has in flight.
#[derive(Debug)]
pub struct InFlight {
    pub unique_id: String,
    pub call: OutboundCall,
    pub timer: TimerId,
    /// For the round-trip histogram.
    pub sent_at: Instant,
}

/// One connection's outbound calls: at most one in flight, the rest waiting in order.
#[derive(Debug, Default)]
pub struct CallQueue {
    in_flight: Option<InFlight>,
    waiting: VecDeque<OutboundCall>,
}

impl CallQueue {
    /// Takes `call`: `Ok(Some(call))` to send now, `Ok(None)` queued behind the one in flight,
    /// `Err(call)` when `max_waiting` calls already wait (resolve it as rejected).
    pub fn offer(
        &mut self,
        call: OutboundCall,
        max_waiting: usize,
    ) -> Result<Option<OutboundCall>, OutboundCall> {
        if self.in_flight.is_none() && self.waiting.is_empty() {
            return Ok(Some(call));
        }
        if self.waiting.len() >= max_waiting {
            return Err(call);
        }
        self.waiting.push_back(call);
        Ok(None)
    }

    /// Records the call just sent.
    pub fn start(&mut self, in_flight: InFlight) {
        debug_assert!(self.in_flight.is_none(), "one call in flight at a time");
        self.in_flight = Some(in_flight);
    }

    /// The call in flight if `unique_id` answers it.
    pub fn take_matching(&mut self, unique_id: &str) -> Option<InFlight> {
        match &self.in_flight {
            Some(f) if f.unique_id == unique_id => self.in_flight.take(),
            _ => None,
        }
    }

    /// The call in flight, whatever its id (its timer fired).
    pub fn take_in_flight(&mut self) -> Option<InFlight> {
        self.in_flight.take()
    }

    /// Every call, the one in flight first (the connection is going away).
    pub fn drain(&mut self) -> impl Iterator<Item = OutboundCall> + '_ {
        let in_flight = self.in_flight.take().map(|f| f.call);
        in_flight.into_iter().chain(self.waiting.drain(..))
    }

    /// The next call to send, when none is in flight.
    pub fn next_to_send(&mut self) -> Option<OutboundCall> {
        if self.in_flight.is_some() {
            return None;
        }
        self.waiting.pop_front()
    }

    /// The timer of the call in flight, to cancel when the connection goes.
    pub fn timer(&self) -> Option<TimerId> {
        self.in_flight.as_ref().map(|f| f.timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::{CallOutcome, PendingCall};
    use crate::net::timer::TimerWheel;
    use ocpp::v16::Action;
    use serde_json::value::RawValue;
    use std::time::Duration;

    fn call() -> (OutboundCall, PendingCall) {
        OutboundCall::new(
            Action::Reset.into(),
            RawValue::from_string(r#"{"type":"Soft"}"#.into()).unwrap(),
        )
    }

    fn timer() -> TimerId {
        let now = Instant::now();
        TimerWheel::new(now, Duration::from_millis(10), 8).arm(now, Duration::ZERO, ())
    }

    #[test]
    fn one_in_flight_the_rest_wait_in_order_up_to_the_limit() {
        let mut queue = CallQueue::default();
        let (first, first_pending) = call();
        let first = queue.offer(first, 2).unwrap().expect("sent at once");
        queue.start(InFlight {
            unique_id: "1".into(),
            call: first,
            timer: timer(),
            sent_at: Instant::now(),
        });
        let (second, _second_pending) = call();
        let (third, _third_pending) = call();
        let (fourth, fourth_pending) = call();
        assert!(queue.offer(second, 2).unwrap().is_none());
        assert!(queue.offer(third, 2).unwrap().is_none());
        let rejected = queue.offer(fourth, 2).unwrap_err();
        rejected.resolve(CallOutcome::Rejected);
        assert_eq!(fourth_pending.wait(), CallOutcome::Rejected);

        assert!(
            queue.next_to_send().is_none(),
            "nothing goes out while a call is in flight"
        );
        assert!(queue.take_matching("other").is_none());
        let answered = queue.take_matching("1").expect("matches");
        answered.call.resolve(CallOutcome::Timeout);
        assert_eq!(first_pending.wait(), CallOutcome::Timeout);
        assert!(queue.next_to_send().is_some());
    }

    #[test]
    fn a_dropped_call_resolves_as_not_connected_exactly_once() {
        let (c, pending) = call();
        let mut queue = CallQueue::default();
        if let Some(c) = queue.offer(c, 1).unwrap() {
            queue.start(InFlight {
                unique_id: "x".into(),
                call: c,
                timer: timer(),
                sent_at: Instant::now(),
            });
        }
        drop(queue);
        assert_eq!(
            pending.wait_timeout(Duration::ZERO),
            Some(CallOutcome::NotConnected)
        );
    }
}
