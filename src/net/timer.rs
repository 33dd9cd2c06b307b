//! Hashed timing wheel (Varghese & Lauck) for per-connection deadlines.
//!
//! One event-loop thread owns a wheel holding all timers of its connections (handshake
//! deadline, idle ping, pong deadline, outbound call timeouts): up to millions, most cancelled
//! or re-armed before they fire, so arm and cancel must be O(1). Entries live in a [`Slab`] and
//! each slot heads an intrusive doubly linked list threaded through them (`prev`/`next` keys),
//! so unlinking needs only the key. Keys are `u32` to keep entries small, which limits a wheel
//! to `u32::MAX - 1` pending timers (`u32::MAX` means "no link"). A [`TimerId`] adds a
//! generation, so the id of a fired timer whose slab slot was reused cancels nothing. Time is
//! passed in: the loop reads the clock once per iteration, and tests never sleep.
//!
//! Tick `n` covers `[origin + n*tick, origin + (n+1)*tick)`. Deadlines are rounded *up* to a
//! tick boundary and a timer fires on the first poll whose `now` is in or after its deadline
//! tick: never early, at most one tick late.
//!
//! Hashed rather than hierarchical: a timer due at tick `d` sits in slot `d % slots` however
//! far away `d` is and stores `d` itself, so a slot mixes many revolutions and a visit takes
//! only entries already due. Arming stays O(1) for any delay at the cost of skipping entries of
//! later revolutions, which is cheap when one revolution covers the common timeouts. Due
//! entries move to a ready list in deadline order, so the caller can drain them one at a time
//! and arm or cancel in between.

use std::num::NonZeroU32;
use std::ops::Range;
use std::time::{Duration, Instant};

use slab::Slab;

/// "No entry" in the intrusive links and list heads.
const NIL: u32 = u32::MAX;
/// Cap on the slot count so a silly argument cannot allocate unbounded memory.
const MAX_SLOTS: usize = 1 << 24;
/// Slots [`TimerWheel::next_timeout`] looks ahead at most.
pub const MAX_SCAN: u64 = 64;

/// Handle for cancelling a timer; safe to keep after the timer fired or was cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    key: u32,
    /// Never zero: an `Option<TimerId>` (one per connection) takes no more room than the id.
    generation: NonZeroU32,
}

struct Entry<T> {
    /// Absolute tick at which the entry becomes due.
    deadline: u64,
    prev: u32,
    next: u32,
    generation: NonZeroU32,
    value: T,
}

/// A hashed timing wheel; see the module docs.
pub struct TimerWheel<T> {
    origin: Instant,
    tick_nanos: u64,
    /// `slots - 1`; slots is a power of two, so `tick & mask` is the slot index.
    mask: u64,
    /// List heads: one per slot, then the ready list (due entries, earliest first).
    heads: Vec<u32>,
    entries: Slab<Entry<T>>,
    /// Tick the cursor has reached. Entries with `deadline <= current` are on the ready list;
    /// all others are in slot `deadline & mask`.
    current: u64,
    /// Bumped on every arm; wraps (to 1) only after 2^32 arms, far beyond any id's useful
    /// life.
    next_generation: NonZeroU32,
}

impl<T> TimerWheel<T> {
    /// `slots` is rounded up to a power of two (min 1, capped at 2^24); `tick` must be > 0
    /// (debug_assert; zero is treated as 1 ms).
    pub fn new(origin: Instant, tick: Duration, slots: usize) -> Self {
        debug_assert!(!tick.is_zero(), "timer wheel tick must be positive");
        let tick_nanos = match tick.as_nanos() {
            0 => 1_000_000,
            nanos => u64::try_from(nanos).unwrap_or(u64::MAX),
        };
        let slots = slots.clamp(1, MAX_SLOTS).next_power_of_two();
        Self {
            origin,
            tick_nanos,
            mask: (slots - 1) as u64,
            heads: vec![NIL; slots + 1],
            entries: Slab::new(),
            current: 0,
            next_generation: NonZeroU32::MIN,
        }
    }

    /// Schedules `value` to fire at `now + delay`, rounded up to the next tick boundary, and
    /// always at least one tick after the last tick already processed, so a timer armed while
    /// draining does not fire in the same drain unless its deadline truly passed. Never early.
    ///
    /// # Panics
    /// If `u32::MAX - 1` timers are already pending (memory runs out long before that).
    pub fn arm(&mut self, now: Instant, delay: Duration, value: T) -> TimerId {
        let due_nanos = self.nanos_at(now).saturating_add(delay.as_nanos());
        let due_tick = u64::try_from(due_nanos.div_ceil(u128::from(self.tick_nanos)));
        let after_processed = self.current.saturating_add(1);
        let deadline = due_tick.unwrap_or(u64::MAX).max(after_processed);
        let key = match u32::try_from(self.entries.vacant_key()) {
            Ok(key) if key != NIL => key,
            _ => panic!("timer wheel is limited to u32::MAX - 1 pending timers"),
        };
        let generation = self.next_generation;
        self.next_generation = generation.checked_add(1).unwrap_or(NonZeroU32::MIN);
        let (prev, next) = (NIL, NIL);
        let inserted = self.entries.insert(Entry {
            deadline,
            prev,
            next,
            generation,
            value,
        });
        debug_assert_eq!(inserted, key as usize);
        self.link_front(self.list_of(deadline), key);
        TimerId { key, generation }
    }

    /// O(1). Returns the value if the timer was still pending; `None` if it already fired or
    /// was cancelled (the generation check makes ids of reused slab slots not match).
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let entry = self.entries.get(id.key as usize)?;
        if entry.generation != id.generation {
            return None;
        }
        self.remove(self.list_of(entry.deadline), id.key)
    }

    /// Pops one timer whose deadline tick is <= the tick containing `now`, advancing the cursor
    /// through elapsed ticks as needed. Timers come out in deadline-tick order. Call in a loop;
    /// the caller may arm or cancel between calls. A `now` earlier than before yields `None`.
    pub fn poll_expired(&mut self, now: Instant) -> Option<T> {
        let now_tick = self.tick_of(now);
        loop {
            if let Some(value) = self.pop_ready(now_tick) {
                return Some(value);
            }
            if self.current >= now_tick {
                return None;
            }
            if self.entries.is_empty() {
                // Nothing can become due on the way: skip the whole gap at once.
                self.current = now_tick;
                return None;
            }
            if now_tick - self.current > self.mask {
                // A revolution or more: one pass over all slots beats stepping every tick.
                self.advance_to(now_tick, 0..self.ready_list());
            } else {
                let slot = self.slot_of(self.current + 1);
                self.advance_to(self.current + 1, slot..slot + 1);
            }
        }
    }

    /// How long the event loop may sleep: `None` when no timer is pending, `Duration::ZERO` if
    /// something is due, else the time until the first tick whose slot holds any entry, looking
    /// at most [`MAX_SCAN`] slots ahead (then the answer is that far). A slot may only hold later
    /// revolutions (an early, harmless wake-up), but the answer is never later than the true
    /// earliest deadline. The loop asks once per turn, so the scan is bounded: when the next
    /// timer is seconds away, a few wake-ups more cost less than walking thousands of slots.
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        if self.entries.is_empty() {
            return None;
        }
        if self.heads[self.ready_list()] != NIL {
            return Some(Duration::ZERO);
        }
        let scan = self.mask.saturating_add(1).min(MAX_SCAN);
        let first_busy_tick = (1..=scan)
            .map(|offset| self.current.saturating_add(offset))
            .find(|&tick| self.heads[self.slot_of(tick)] != NIL)
            .unwrap_or(self.current.saturating_add(scan));
        let boundary = u128::from(first_busy_tick) * u128::from(self.tick_nanos);
        let wait = boundary.saturating_sub(self.nanos_at(now));
        // Clamping at ~584 years only makes the answer earlier, which is allowed.
        let wait = u64::try_from(wait).unwrap_or(u64::MAX);
        Some(Duration::from_nanos(wait))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Nanoseconds from `origin` to `now` (zero if `now` is earlier).
    fn nanos_at(&self, now: Instant) -> u128 {
        now.saturating_duration_since(self.origin).as_nanos()
    }

    fn tick_of(&self, now: Instant) -> u64 {
        let ticks = self.nanos_at(now) / u128::from(self.tick_nanos);
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    fn slot_of(&self, tick: u64) -> usize {
        (tick & self.mask) as usize
    }

    fn ready_list(&self) -> usize {
        self.heads.len() - 1
    }

    /// Which list an entry is on, by the invariant documented on `current`.
    fn list_of(&self, deadline: u64) -> usize {
        if deadline <= self.current {
            self.ready_list()
        } else {
            self.slot_of(deadline)
        }
    }

    fn link_front(&mut self, list: usize, key: u32) {
        let old_head = self.heads[list];
        if let Some(entry) = self.entries.get_mut(key as usize) {
            entry.prev = NIL;
            entry.next = old_head;
        }
        if let Some(old) = self.entries.get_mut(old_head as usize) {
            old.prev = key;
        }
        self.heads[list] = key;
    }

    fn unlink(&mut self, list: usize, key: u32) {
        let Some(&Entry { prev, next, .. }) = self.entries.get(key as usize) else {
            debug_assert!(false, "unlinking a missing timer entry");
            return;
        };
        match self.entries.get_mut(prev as usize) {
            Some(prev_entry) => prev_entry.next = next,
            None => {
                debug_assert_eq!(self.heads[list], key, "entry is not on the expected list");
                self.heads[list] = next;
            }
        }
        if let Some(next_entry) = self.entries.get_mut(next as usize) {
            next_entry.prev = prev;
        }
    }

    fn pop_ready(&mut self, now_tick: u64) -> Option<T> {
        let ready = self.ready_list();
        let head = self.heads[ready];
        // The ready list is sorted, so checking its head suffices; this keeps an earlier `now`
        // from popping leftovers of a partially drained later poll.
        if self.entries.get(head as usize)?.deadline > now_tick {
            return None;
        }
        self.remove(ready, head)
    }

    fn remove(&mut self, list: usize, key: u32) -> Option<T> {
        self.unlink(list, key);
        let entry = self.entries.try_remove(key as usize);
        entry.map(|entry| entry.value)
    }

    /// Moves the cursor to `tick` and readies the entries of `slots` due by then, earliest
    /// first. Stepping one tick only needs that tick's slot (earlier ticks were readied on
    /// their own visits); a jump of a revolution or more needs every slot.
    fn advance_to(&mut self, tick: u64, slots: Range<usize>) {
        debug_assert_eq!(self.heads[self.ready_list()], NIL);
        let mut due = Vec::new();
        for slot in slots {
            let mut key = self.heads[slot];
            while let Some(&Entry { deadline, next, .. }) = self.entries.get(key as usize) {
                if deadline <= tick {
                    self.unlink(slot, key);
                    due.push((deadline, key));
                }
                key = next;
            }
        }
        self.current = tick;
        due.sort_unstable();
        // Linking at the front in reverse leaves the earliest deadline at the head.
        for &(_, key) in due.iter().rev() {
            self.link_front(self.ready_list(), key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    /// A wheel with 10 ms ticks, and its origin.
    fn new_wheel<T>(slots: usize) -> (Instant, TimerWheel<T>) {
        let t0 = Instant::now();
        (t0, TimerWheel::new(t0, ms(10), slots))
    }

    fn drain<T>(wheel: &mut TimerWheel<T>, now: Instant) -> Vec<T> {
        std::iter::from_fn(|| wheel.poll_expired(now)).collect()
    }

    #[test]
    fn fires_exactly_at_its_tick_and_not_one_tick_before() {
        let (t0, mut wheel) = new_wheel(8);
        wheel.arm(t0, ms(30), "a");
        assert!(drain(&mut wheel, t0 + ms(20)).is_empty());
        assert!(drain(&mut wheel, t0 + ms(30) - Duration::from_nanos(1)).is_empty());
        assert_eq!(drain(&mut wheel, t0 + ms(30)), ["a"]);
        // Leftovers of a partial drain stay put when polled with an earlier `now`.
        wheel.arm(t0 + ms(30), ms(10), "b");
        wheel.arm(t0 + ms(30), ms(10), "c");
        assert!(wheel.poll_expired(t0 + ms(40)).is_some());
        assert_eq!(wheel.poll_expired(t0 + ms(39)), None);
        assert!(wheel.poll_expired(t0 + ms(40)).is_some());
    }

    #[test]
    fn never_fires_early_for_delays_off_the_tick_grid() {
        let us = Duration::from_micros;
        for start in (0..25_000).step_by(2_300) {
            for delay in (0..45_000).step_by(1_700) {
                let (t0, mut wheel) = new_wheel(4);
                assert_eq!(wheel.poll_expired(t0 + us(start)), None);
                wheel.arm(t0 + us(start), us(delay), ());
                let fire_tick = (start + delay).div_ceil(10_000).max(start / 10_000 + 1);
                let fire_at = t0 + us(fire_tick * 10_000);
                assert_eq!(wheel.poll_expired(fire_at - Duration::from_nanos(1)), None);
                assert_eq!(wheel.poll_expired(fire_at), Some(()));
            }
        }
    }

    #[test]
    fn cancel_before_and_after_expiry_and_len_bookkeeping() {
        let (t0, mut wheel) = new_wheel(8);
        let fires = wheel.arm(t0, ms(10), 1);
        let cancelled = wheel.arm(t0, ms(20), 2);
        assert_eq!(wheel.len(), 2);
        assert_eq!((wheel.cancel(cancelled), wheel.len()), (Some(2), 1));
        assert_eq!(wheel.cancel(cancelled), None);
        assert_eq!(drain(&mut wheel, t0 + ms(1_000)), [1]);
        assert_eq!((wheel.cancel(fires), wheel.is_empty()), (None, true));
    }

    #[test]
    fn stale_id_after_slot_reuse_does_not_cancel_the_new_timer() {
        let (t0, mut wheel) = new_wheel(8);
        let old = wheel.arm(t0, ms(10), "old");
        assert_eq!(wheel.cancel(old), Some("old"));
        let new = wheel.arm(t0, ms(10), "new");
        assert_eq!(old.key, new.key, "the slab slot is reused");
        assert_eq!((wheel.cancel(old), wheel.len()), (None, 1));
        assert_eq!(drain(&mut wheel, t0 + ms(10)), ["new"]);
    }

    #[test]
    fn expiry_follows_deadline_order_when_stepping_and_sweeping() {
        for slots in [4, 64] {
            let (t0, mut wheel) = new_wheel(slots);
            for delay in [50, 30, 10, 40, 20, 200] {
                wheel.arm(t0, ms(delay), delay);
            }
            assert_eq!(drain(&mut wheel, t0 + ms(100)), [10, 20, 30, 40, 50]);
            assert_eq!(wheel.len(), 1);
        }
    }

    #[test]
    fn many_timers_in_one_slot_across_rounds() {
        let t0 = Instant::now();
        let mut wheel = TimerWheel::new(t0, ms(1), 8);
        for i in 0..10_000 {
            wheel.arm(t0, ms(5 + 8 * (i % 4)), i % 4);
        }
        let due = drain(&mut wheel, t0 + ms(5));
        assert!(due.len() == 2_500 && due.iter().all(|&round| round == 0));
        assert!(
            drain(&mut wheel, t0 + ms(12)).is_empty(),
            "no later round early"
        );
        let due = drain(&mut wheel, t0 + ms(13));
        assert!(due.len() == 2_500 && due.iter().all(|&round| round == 1));
        let due = drain(&mut wheel, t0 + ms(100));
        assert!(due.len() == 5_000 && due[0] == 2 && due.is_sorted());
    }

    #[test]
    fn wraps_around_the_slot_index_over_several_revolutions() {
        let (t0, mut wheel) = new_wheel(4);
        for tick in 1..=20 {
            wheel.arm(t0, ms(10 * tick), tick);
        }
        wheel.arm(t0, ms(30), 100); // re-armed every 3 ticks
        for tick in 1..=20 {
            let boundary = t0 + ms(10 * tick);
            assert!(drain(&mut wheel, boundary - Duration::from_nanos(1)).is_empty());
            let mut fired = drain(&mut wheel, boundary);
            fired.sort_unstable();
            let rearm = tick % 3 == 0;
            assert_eq!(fired, if rearm { vec![tick, 100] } else { vec![tick] });
            if rearm {
                wheel.arm(boundary, ms(30), 100);
            }
        }
        assert_eq!(wheel.poll_expired(t0 + ms(5)), None, "earlier now");
        assert_eq!(wheel.len(), 1);
    }

    #[test]
    fn timer_armed_while_draining_waits_for_a_future_tick() {
        let (t0, mut wheel) = new_wheel(8);
        for value in 0..3 {
            wheel.arm(t0, ms(10), value);
        }
        let mut fired = 0;
        while let Some(value) = wheel.poll_expired(t0 + ms(10)) {
            fired += 1;
            wheel.arm(t0 + ms(10), Duration::ZERO, value + 10);
            wheel.arm(t0 + ms(13), ms(6), value + 20);
        }
        assert_eq!(fired, 3);
        assert!(drain(&mut wheel, t0 + ms(19)).is_empty());
        assert_eq!(drain(&mut wheel, t0 + ms(20)).len(), 6);
    }

    #[test]
    fn big_time_jumps_with_empty_and_busy_wheel() {
        let (t0, mut wheel) = new_wheel(16);
        let far = t0 + Duration::from_secs(3_600 * 1_000_000);
        assert_eq!(wheel.poll_expired(far), None);
        assert_eq!(
            wheel.current, 360_000_000_000,
            "empty: jumped straight to now"
        );
        wheel.arm(far, ms(10), "soon");
        assert_eq!(wheel.poll_expired(far + ms(9)), None);
        assert_eq!(wheel.poll_expired(far + ms(10)), Some("soon"));
        let year = Duration::from_secs(365 * 86_400);
        wheel.arm(far, year * 2, "2 years");
        wheel.arm(far, ms(3_600_000), "hour");
        wheel.arm(far, year * 20, "20 years");
        wheel.arm(far, Duration::MAX, "never");
        assert_eq!(drain(&mut wheel, far + year * 10), ["hour", "2 years"]);
        assert_eq!(wheel.len(), 2);
    }

    #[test]
    fn next_timeout_when_empty_due_and_in_the_future() {
        let (t0, mut wheel) = new_wheel(8);
        assert_eq!(wheel.next_timeout(t0), None);
        wheel.arm(t0, ms(30), 1);
        assert_eq!(wheel.next_timeout(t0), Some(ms(30)));
        assert_eq!(wheel.next_timeout(t0 + ms(15)), Some(ms(15)));
        assert_eq!(wheel.next_timeout(t0 + ms(35)), Some(Duration::ZERO));
        wheel.arm(t0, ms(500), 2);
        wheel.arm(t0, ms(30), 3);
        assert!(wheel.poll_expired(t0 + ms(30)).is_some());
        assert_eq!(wheel.next_timeout(t0 + ms(30)), Some(Duration::ZERO)); // one still ready
        assert!(wheel.poll_expired(t0 + ms(30)).is_some());
        // Only the 500 ms timer is left: waking early is allowed, waking late is not.
        let wait = wheel.next_timeout(t0 + ms(30)).unwrap_or(Duration::MAX);
        assert!(wait > Duration::ZERO && wait <= ms(470), "{wait:?}");
        assert_eq!(drain(&mut wheel, t0 + ms(500)), [2]);
        assert_eq!(wheel.next_timeout(t0 + ms(500)), None);
    }

    #[test]
    fn next_timeout_looks_a_bounded_distance_ahead() {
        let (t0, mut wheel) = new_wheel(4096);
        wheel.arm(t0, ms(10_000), 1);
        // Ticks of 10 ms: at most MAX_SCAN ticks are looked at, so the loop wakes early.
        let wait = wheel.next_timeout(t0).unwrap();
        assert!(wait <= ms(10 * MAX_SCAN), "{wait:?}");
        assert!(wheel.poll_expired(t0 + wait).is_none());
        assert_eq!(drain(&mut wheel, t0 + ms(10_000)), [1]);
    }

    const TICK_NS: u64 = 1_000_000;
    const SLOTS: u64 = 16;

    /// xorshift64: deterministic randomness without extra crates.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, bound: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % bound
        }
    }

    /// Applies the same operations to a wheel and to a naive model of it.
    struct Sim {
        wheel: TimerWheel<u64>,
        /// Pending timers: value -> (tick it must fire in, id).
        model: BTreeMap<u64, (u64, TimerId)>,
        /// Ids of timers that fired or were cancelled.
        dead: Vec<TimerId>,
        rng: Rng,
        now_ns: u64,
        polled_tick: u64,
        next_value: u64,
    }

    impl Sim {
        fn at(&self, nanos: u64) -> Instant {
            self.wheel.origin + Duration::from_nanos(nanos)
        }

        /// The sim arms only with the cursor on now's tick (between drains) or with a delay of
        /// at least 1 ns (mid-drain), so the timer's tick is its rounded-up due tick, but at
        /// least the tick after now's.
        fn arm(&mut self, delay_ns: u64) {
            let (value, now_ns) = (self.next_value, self.now_ns);
            self.next_value += 1;
            let id = self
                .wheel
                .arm(self.at(now_ns), Duration::from_nanos(delay_ns), value);
            let tick = (now_ns + delay_ns)
                .div_ceil(TICK_NS)
                .max(now_ns / TICK_NS + 1);
            self.model.insert(value, (tick, id));
        }

        /// Cancels a random pending timer, or retries a random dead id.
        fn cancel(&mut self) {
            let pick = self.rng.below(self.model.len() as u64 + 1) as usize;
            match self.model.iter().nth(pick) {
                Some((&value, &(_, id))) => {
                    assert_eq!(self.wheel.cancel(id), Some(value));
                    self.model.remove(&value);
                    self.dead.push(id);
                }
                None => {
                    let stale = self
                        .dead
                        .get(self.rng.below(self.dead.len() as u64 + 1) as usize);
                    assert_eq!(stale.and_then(|&id| self.wheel.cancel(id)), None);
                }
            }
        }

        /// Moves time forward and drains, arming and cancelling mid-drain now and then.
        fn advance(&mut self, by_ns: u64) {
            let earlier = self.at(self.now_ns.saturating_sub(by_ns));
            assert_eq!(self.wheel.poll_expired(earlier), None);
            self.now_ns += by_ns;
            let (now, now_tick, mut previous) = (self.at(self.now_ns), self.now_ns / TICK_NS, 0);
            while let Some(value) = self.wheel.poll_expired(now) {
                let (tick, id) = self.model.remove(&value).expect("fires only once");
                // Fired at the first poll whose now reached its tick, in deadline order.
                assert!(self.polled_tick < tick && tick <= now_tick && previous <= tick);
                previous = tick;
                self.dead.push(id);
                match self.rng.below(8) {
                    0 | 1 => {
                        let delay_ns = 1 + self.rng.below(2 * TICK_NS);
                        self.arm(delay_ns);
                    }
                    2 => self.cancel(),
                    _ => {}
                }
            }
            assert!(self.model.values().all(|&(tick, _)| tick > now_tick));
            self.polled_tick = now_tick;
            let earliest = self.model.values().map(|&(tick, _)| tick).min();
            match (self.wheel.next_timeout(now), earliest) {
                (None, None) => {}
                (Some(wait), Some(tick)) => {
                    assert!(wait > Duration::ZERO && now + wait <= self.at(tick * TICK_NS));
                }
                other => panic!("next_timeout disagrees with the model: {other:?}"),
            }
        }
    }

    #[test]
    fn randomized_against_naive_model() {
        for seed in 1..=8u64 {
            let t0 = Instant::now();
            let mut sim = Sim {
                wheel: TimerWheel::new(t0, Duration::from_nanos(TICK_NS), SLOTS as usize),
                model: BTreeMap::new(),
                dead: Vec::new(),
                rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                now_ns: 0,
                polled_tick: 0,
                next_value: 0,
            };
            for _ in 0..3_000 {
                let (roll, ns) = (sim.rng.below(100), sim.rng.below(u64::MAX));
                match roll {
                    0..=2 => sim.arm(ns % (100 * SLOTS * TICK_NS)), // many revolutions out
                    3..=49 => sim.arm(ns % (3 * SLOTS * TICK_NS)),
                    50..=69 => sim.cancel(),
                    70..=72 => sim.advance(ns % (40 * SLOTS * TICK_NS)), // sweeps
                    _ => sim.advance(ns % (3 * TICK_NS)),
                }
                assert_eq!(sim.wheel.len(), sim.model.len());
            }
        }
    }
}
