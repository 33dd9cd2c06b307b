//! Which of one writer's messages the broker confirmed. Messages are numbered per writer in the
//! order it recorded them; delivery reports come back in any order (one per message, from
//! different partitions). An answer held after message `n` may go once every message up to `n`
//! is settled, and only if none of them failed since the writer's previous held answer.

use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Settled,
}

/// One writer's messages between the oldest unsettled one and the newest.
#[derive(Debug, Default)]
pub struct Flight {
    /// The number of `states[0]`: every message before it is settled.
    base: u64,
    states: VecDeque<State>,
    /// Failed messages not yet covered by a held answer's verdict, in order.
    failed: VecDeque<u64>,
    unsettled: usize,
    /// Whether failures are kept for verdicts (a writer that never holds answers asks for
    /// none, so they would pile up).
    keeps_failures: bool,
}

/// What became of the messages a held answer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Some are still on their way.
    Waiting,
    /// All confirmed.
    Confirmed,
    /// All settled, at least one failed.
    Failed,
}

impl Flight {
    pub fn new(keeps_failures: bool) -> Flight {
        Flight {
            keeps_failures,
            ..Flight::default()
        }
    }

    /// Numbers the next message (messages must be numbered in order, from 0).
    pub fn push(&mut self) -> u64 {
        self.states.push_back(State::Waiting);
        self.unsettled += 1;
        self.base + self.states.len() as u64 - 1
    }

    /// Takes back the number just given (the message was not taken after all).
    pub fn unpush(&mut self) {
        if self.states.back() == Some(&State::Waiting) {
            self.states.pop_back();
            self.unsettled -= 1;
        }
    }

    /// Messages numbered so far.
    pub fn pushed(&self) -> u64 {
        self.base + self.states.len() as u64
    }

    /// Records the broker's report on message `n`.
    pub fn settle(&mut self, n: u64, ok: bool) {
        let Some(index) = n.checked_sub(self.base) else {
            return;
        };
        let Some(state) = self.states.get_mut(index as usize) else {
            return;
        };
        if *state == State::Settled {
            return;
        }
        *state = State::Settled;
        self.unsettled -= 1;
        if !ok && self.keeps_failures {
            let at = self.failed.partition_point(|&f| f < n);
            self.failed.insert(at, n);
        }
        while self.states.front() == Some(&State::Settled) {
            self.states.pop_front();
            self.base += 1;
        }
    }

    /// The verdict for an answer held once `count` messages were recorded; a settled one
    /// forgets the failures it covered.
    pub fn verdict(&mut self, count: u64) -> Verdict {
        if self.base < count {
            return Verdict::Waiting;
        }
        let failed = self.failed.front().is_some_and(|&f| f < count);
        while self.failed.front().is_some_and(|&f| f < count) {
            self.failed.pop_front();
        }
        if failed {
            Verdict::Failed
        } else {
            Verdict::Confirmed
        }
    }

    /// Messages not yet settled.
    pub fn waiting(&self) -> usize {
        self.unsettled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_waits_for_every_message_before_it() {
        let mut flight = Flight::new(true);
        let (a, b, c) = (flight.push(), flight.push(), flight.push());
        assert_eq!((a, b, c), (0, 1, 2));
        flight.settle(1, true);
        assert_eq!(flight.verdict(2), Verdict::Waiting, "0 is unsettled");
        flight.settle(0, true);
        assert_eq!(flight.verdict(2), Verdict::Confirmed);
        assert_eq!(flight.verdict(3), Verdict::Waiting);
        assert_eq!(flight.waiting(), 1);
        flight.settle(2, true);
        assert_eq!(flight.verdict(3), Verdict::Confirmed);
        assert_eq!(flight.waiting(), 0);
    }

    #[test]
    fn a_failure_fails_the_next_verdict_only() {
        let mut flight = Flight::new(true);
        for _ in 0..4 {
            flight.push();
        }
        flight.settle(3, true);
        flight.settle(1, false);
        flight.settle(0, true);
        assert_eq!(
            flight.verdict(1),
            Verdict::Confirmed,
            "message 0 went through"
        );
        flight.settle(2, true);
        assert_eq!(flight.verdict(3), Verdict::Failed, "message 1 failed");
        assert_eq!(flight.verdict(4), Verdict::Confirmed, "already reported");
    }

    #[test]
    fn reports_twice_or_out_of_range_change_nothing() {
        let mut flight = Flight::new(true);
        flight.push();
        flight.settle(0, true);
        flight.settle(0, false);
        flight.settle(9, false);
        assert_eq!(flight.verdict(1), Verdict::Confirmed);
    }
}
