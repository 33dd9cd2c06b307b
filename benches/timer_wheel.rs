//! Question: what does one arm, one cancel and one expiry cost in an event loop's timer wheel
//! while 1,000,000 timers are live in it?
//!
//! The wheel is configured with the event loop's own constants (`TIMER_TICK`, 10 ms, and
//! `TIMER_SLOTS`, 4096) and holds the loop's own value type, [`TimerEvent`]. The live timers' deadlines are
//! spread uniformly over one default ping interval plus its largest jitter (60 s + 1/16), as
//! for a fleet whose connections went quiet at random moments; that is more than one 41 s
//! revolution, so slots hold entries of two revolutions, as in production.
//!
//! - `timer_wheel/arm`: arm one timer with a ping delay (60 s plus random jitter). The extra
//!   timers are cancelled, untimed, after each stretch of at most 100,000, so the wheel holds
//!   1.0 to 1.1 million timers throughout.
//! - `timer_wheel/cancel`: cancel one live timer, picked in a random order over all 1,000,000
//!   (a connection's timer is cancelled when it sends something, at no predictable place in
//!   memory). Cancelled timers are re-armed, untimed, so the count stays at 1,000,000.
//! - `timer_wheel/expire_1m/{step_by_tick,one_jump}`: every timer fires. `step_by_tick` moves
//!   time 10 ms per poll, as a loop that is never late does; `one_jump` polls once past every
//!   deadline, as after a stall. The time reported is for all 1,000,000 expiries: divide by
//!   1,000,000 (the throughput line is expiries per second).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ocpp_gateway::config::DEFAULT_PING_INTERVAL;
use ocpp_gateway::net::context::TimerEvent;
use ocpp_gateway::net::timer::{TimerId, TimerWheel};

/// The event loop's own wheel settings.
const TICK: Duration = ocpp_gateway::net::event_loop::TIMER_TICK;
const SLOTS: usize = ocpp_gateway::net::event_loop::TIMER_SLOTS;
/// Live timers in the wheel.
const LIVE: u32 = 1_000_000;
/// The default `ping_interval`, in milliseconds.
const PING_INTERVAL_MS: u64 = DEFAULT_PING_INTERVAL.as_millis() as u64;
/// Ping interval plus its largest jitter (1/16): the span live deadlines are spread over.
const SPREAD_NANOS: u64 = (PING_INTERVAL_MS + PING_INTERVAL_MS / 16) * 1_000_000;
/// Most operations timed in one stretch before the wheel is put back to 1,000,000, untimed.
const STRETCH: u64 = 100_000;

/// xorshift64: a fixed, reproducible spread without another dependency.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        Rng(0x9E37_79B9_7F4A_7C15)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

fn event(key: u32) -> TimerEvent {
    TimerEvent::Connection { key, generation: 0 }
}

/// A deadline somewhere in the next ping interval plus jitter.
fn spread_delay(rng: &mut Rng) -> Duration {
    Duration::from_nanos(1 + rng.below(SPREAD_NANOS))
}

/// A wheel as the loop builds it, holding `LIVE` timers, and their ids indexed by value key.
fn loaded_wheel(origin: Instant, rng: &mut Rng) -> (TimerWheel<TimerEvent>, Vec<TimerId>) {
    let mut wheel = TimerWheel::new(origin, TICK, SLOTS);
    let ids = (0..LIVE)
        .map(|key| wheel.arm(origin, spread_delay(rng), event(key)))
        .collect();
    (wheel, ids)
}

fn arm(c: &mut Criterion) {
    let origin = Instant::now();
    let mut rng = Rng::new();
    let (mut wheel, _live) = loaded_wheel(origin, &mut rng);
    // What the loop's `ping_delay` yields, drawn ahead so the timed loop only arms.
    let delays: Vec<Duration> = (0..4096)
        .map(|_| Duration::from_millis(PING_INTERVAL_MS + rng.below(PING_INTERVAL_MS / 16 + 1)))
        .collect();
    let mut extra = Vec::with_capacity(STRETCH as usize);
    c.bench_function("timer_wheel/arm", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let stretch = left.min(STRETCH);
                let start = Instant::now();
                for i in 0..stretch {
                    let delay = delays[i as usize % delays.len()];
                    extra.push(wheel.arm(origin, delay, event(LIVE + i as u32)));
                }
                timed += start.elapsed();
                for id in extra.drain(..) {
                    wheel.cancel(id);
                }
                left -= stretch;
            }
            timed
        });
    });
}

fn cancel(c: &mut Criterion) {
    let origin = Instant::now();
    let mut rng = Rng::new();
    let (mut wheel, mut ids) = loaded_wheel(origin, &mut rng);
    // Fisher-Yates: every live timer once per round, in an order memory cannot predict.
    let mut order: Vec<u32> = (0..LIVE).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut cursor = 0;
    c.bench_function("timer_wheel/cancel", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let end = (cursor + left.min(STRETCH) as usize).min(order.len());
                let picks = &order[cursor..end];
                let start = Instant::now();
                let mut cancelled = 0;
                for &key in picks {
                    cancelled += usize::from(wheel.cancel(ids[key as usize]).is_some());
                }
                timed += start.elapsed();
                assert_eq!(cancelled, picks.len(), "every pick was live");
                for &key in picks {
                    ids[key as usize] = wheel.arm(origin, spread_delay(&mut rng), event(key));
                }
                left -= picks.len() as u64;
                cursor = if end == order.len() { 0 } else { end };
            }
            timed
        });
    });
}

fn expire(c: &mut Criterion) {
    let origin = Instant::now();
    let mut rng = Rng::new();
    let mut group = c.benchmark_group("timer_wheel/expire_1m");
    // One iteration is a million expiries (tens of milliseconds): few samples suffice.
    group.sample_size(10);
    group.throughput(Throughput::Elements(LIVE.into()));
    group.bench_function("step_by_tick", |b| {
        b.iter_batched_ref(
            || loaded_wheel(origin, &mut rng).0,
            |wheel| {
                let (mut now, mut fired) = (origin, 0);
                while !wheel.is_empty() {
                    now += TICK;
                    while let Some(event) = wheel.poll_expired(now) {
                        black_box(event);
                        fired += 1;
                    }
                }
                assert_eq!(fired, LIVE);
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function("one_jump", |b| {
        b.iter_batched_ref(
            || loaded_wheel(origin, &mut rng).0,
            |wheel| {
                let past_all = origin + Duration::from_nanos(SPREAD_NANOS) + TICK;
                let mut fired = 0;
                while let Some(event) = wheel.poll_expired(past_all) {
                    black_box(event);
                    fired += 1;
                }
                assert_eq!(fired, LIVE);
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(benches, arm, cancel, expire);
criterion_main!(benches);
