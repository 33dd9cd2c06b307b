//! What a booted charge point sends and when, one [`Plan`] per charge point. Pure: time (in
//! microseconds since the run's origin) and randomness are passed in, and the event loop asks
//! only two things, "when are you next due?" ([`Plan::next_due`]) and "what is due now?"
//! ([`Plan::poll`]), and only while no CALL of the charge point is outstanding (OCPP-J's one
//! CALL at a time), so a plan never has to queue.
//!
//! Periodic sends keep a fixed schedule (`next += interval`, not `now + interval`): a reply that
//! comes late delays the next send but not the ones after it, and the latency of a late send
//! counts from its planned time, so a slow gateway shows in the percentiles instead of quietly
//! lowering the offered rate (coordinated omission).

use crate::cli::{RealisticParams, Scenario};
use crate::messages::{ConnectorStatus, Outgoing};
use basics::Rng;

/// "Not scheduled."
pub const NEVER: u64 = u64::MAX;

/// Average charging power of a simulated session, for plausible meter readings.
const CHARGING_WATTS: u64 = 7_400;

/// The scenario's timings in microseconds, computed once per run.
#[derive(Debug, Clone)]
pub struct Timings {
    kind: Kind,
    interval_us: u64,
    meter_us: u64,
    /// Mean gap between two sessions of one charge point (infinite: none).
    session_gap_us: f64,
    session_us: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Idle,
    Heartbeat,
    Realistic,
    Saturate,
}

impl Timings {
    pub fn new(scenario: &Scenario) -> Timings {
        let micros =
            |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        let idle = Timings {
            kind: Kind::Idle,
            interval_us: NEVER,
            meter_us: NEVER,
            session_gap_us: f64::INFINITY,
            session_us: NEVER,
        };
        match scenario {
            Scenario::Idle | Scenario::Storm => idle,
            Scenario::Saturate => Timings {
                kind: Kind::Saturate,
                ..idle
            },
            Scenario::Heartbeat { interval } => Timings {
                kind: Kind::Heartbeat,
                interval_us: micros(*interval),
                ..idle
            },
            Scenario::Realistic(RealisticParams {
                heartbeat,
                meter_interval,
                sessions_per_hour,
                session_length,
            }) => Timings {
                kind: Kind::Realistic,
                interval_us: micros(*heartbeat),
                meter_us: micros(*meter_interval),
                session_gap_us: 3.6e9 / sessions_per_hour,
                session_us: micros(*session_length),
            },
        }
    }

    /// Where in its period charge point `index` of `count` sends: spread evenly over the fleet,
    /// so a fleet that boots together does not send in waves.
    pub fn slot_offset(&self, index: u32, count: u32) -> u64 {
        if self.interval_us == NEVER {
            return 0;
        }
        (u128::from(self.interval_us) * u128::from(index) / u128::from(count.max(1))) as u64
    }

    /// The fixed interval of the heartbeat scenario: sends a stall made a charge point skip
    /// are recorded as the latencies they would have had (no coordinated omission).
    pub fn fixed_interval_us(&self) -> Option<u64> {
        (self.kind == Kind::Heartbeat).then_some(self.interval_us)
    }

    /// The plan of a charge point that has not booted yet.
    pub fn plan(&self) -> Plan {
        match self.kind {
            Kind::Idle => Plan::Idle,
            Kind::Saturate => Plan::Saturate,
            Kind::Heartbeat => Plan::Heartbeat(Periodic::new(self.interval_us)),
            Kind::Realistic => Plan::Realistic(Realistic {
                heartbeat: Periodic::new(self.interval_us),
                step: Step::Announce(0),
                meter_wh: 0,
                sessions: 0,
                seq_no: 0,
            }),
        }
    }
}

/// A fixed-rate schedule.
#[derive(Debug, Clone)]
pub struct Periodic {
    interval_us: u64,
    next_at: u64,
}

impl Periodic {
    fn new(interval_us: u64) -> Periodic {
        Periodic {
            interval_us,
            next_at: NEVER,
        }
    }

    /// The first slot `offset + k * interval` at or after `now`.
    fn start(&mut self, now: u64, offset: u64) {
        let k = now.saturating_sub(offset).div_ceil(self.interval_us);
        self.next_at = offset.saturating_add(k.saturating_mul(self.interval_us));
    }

    /// The planned time of the send due now, if one is; the schedule moves on. After a stall of
    /// more than one interval, the missed slots are dropped (one catch-up send, not a burst).
    fn take(&mut self, now: u64) -> Option<u64> {
        if now < self.next_at {
            return None;
        }
        let planned = self.next_at;
        self.next_at = self.next_at.saturating_add(self.interval_us);
        if self.next_at <= now {
            let missed = (now - self.next_at) / self.interval_us + 1;
            self.next_at = self.next_at.saturating_add(missed * self.interval_us);
        }
        Some(planned)
    }
}

/// The answer to a charge point's CALL, as far as its plan cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Answered, nothing to read from it.
    Done,
    Authorized {
        accepted: bool,
    },
    Started {
        transaction: i64,
        accepted: bool,
    },
    /// CALLERROR, an invalid result or a timeout.
    Failed,
}

#[derive(Debug, Clone)]
pub enum Plan {
    /// Pings only.
    Idle,
    Heartbeat(Periodic),
    /// The next Heartbeat as soon as the last is answered.
    Saturate,
    Realistic(Realistic),
}

/// A charge point with one connector and a driver now and then.
#[derive(Debug, Clone)]
pub struct Realistic {
    heartbeat: Periodic,
    step: Step,
    meter_wh: u64,
    /// Sessions started: the station's number for the next one's transaction (2.0.1).
    sessions: u32,
    /// The current transaction's last 2.0.1 seqNo (Started is 0).
    seq_no: u32,
}

/// Where a charge point is in its session cycle. Steps named for a message send it next (due at
/// once); `Authorizing` and `Starting` wait for a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// After boot: StatusNotification Available for connector 0, then 1.
    Announce(u8),
    /// Waiting for a driver.
    Idle {
        start_at: u64,
    },
    /// A driver plugged in: StatusNotification Preparing, then Authorize (or, for a remote
    /// start, StartTransaction directly).
    Plugged {
        authorize: bool,
    },
    Authorize,
    Authorizing,
    Start,
    Starting,
    /// StartTransaction answered: StatusNotification Charging.
    Started {
        transaction: i64,
        ends_at: u64,
    },
    /// MeterValues every meter interval, StopTransaction at `ends_at`.
    Charging {
        transaction: i64,
        next_meter: u64,
        ends_at: u64,
        remote: bool,
    },
    /// StopTransaction answered: StatusNotification Finishing, then Available.
    Finishing,
    Unplugged,
}

impl Plan {
    /// The charge point was (re)booted: schedules start afresh.
    pub fn on_booted(&mut self, now: u64, offset: u64) {
        match self {
            Plan::Idle | Plan::Saturate => {}
            Plan::Heartbeat(periodic) => periodic.start(now, offset),
            Plan::Realistic(cp) => {
                cp.heartbeat.start(now, offset);
                cp.step = Step::Announce(0);
            }
        }
    }

    /// When something is next due ([`NEVER`]: nothing is scheduled).
    pub fn next_due(&self) -> u64 {
        match self {
            Plan::Idle => NEVER,
            Plan::Saturate => 0,
            Plan::Heartbeat(periodic) => periodic.next_at,
            Plan::Realistic(cp) => cp.heartbeat.next_at.min(cp.step_due()),
        }
    }

    /// The message due now and its planned send time, if one is due.
    pub fn poll(&mut self, timings: &Timings, now: u64, rng: &mut Rng) -> Option<(Outgoing, u64)> {
        match self {
            Plan::Idle => None,
            Plan::Saturate => Some((Outgoing::Heartbeat, now)),
            Plan::Heartbeat(periodic) => periodic.take(now).map(|at| (Outgoing::Heartbeat, at)),
            Plan::Realistic(cp) => {
                if cp.step_due() <= now
                    && let Some(msg) = cp.advance(timings, now, rng)
                {
                    return Some((msg, now));
                }
                cp.heartbeat.take(now).map(|at| (Outgoing::Heartbeat, at))
            }
        }
    }

    pub fn on_reply(&mut self, reply: Reply, timings: &Timings, now: u64, rng: &mut Rng) {
        if let Plan::Realistic(cp) = self {
            cp.on_reply(reply, timings, now, rng);
        }
    }

    /// RemoteStartTransaction would be accepted now.
    pub fn can_start(&self) -> bool {
        matches!(self, Plan::Realistic(cp) if matches!(cp.step, Step::Idle { .. }))
    }

    pub fn transaction(&self) -> Option<i64> {
        match self {
            Plan::Realistic(cp) => match cp.step {
                Step::Started { transaction, .. } | Step::Charging { transaction, .. } => {
                    Some(transaction)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// RemoteStartTransaction was accepted.
    pub fn remote_start(&mut self) {
        if let Plan::Realistic(cp) = self
            && matches!(cp.step, Step::Idle { .. })
        {
            cp.step = Step::Plugged { authorize: false };
        }
    }

    /// RemoteStopTransaction was accepted.
    pub fn remote_stop(&mut self, now: u64) {
        if let Plan::Realistic(cp) = self {
            match &mut cp.step {
                Step::Charging {
                    ends_at, remote, ..
                } => {
                    *ends_at = now;
                    *remote = true;
                }
                Step::Started { ends_at, .. } => *ends_at = now,
                _ => {}
            }
        }
    }

    /// Accepted Reset reboots only a realistic charge point; the others stay connected so the
    /// figures of a steady run are not disturbed by the test that called Reset.
    pub fn reboots_on_reset(&self) -> bool {
        matches!(self, Plan::Realistic(_))
    }
}

impl Realistic {
    fn step_due(&self) -> u64 {
        match self.step {
            Step::Idle { start_at } => start_at,
            Step::Charging {
                next_meter,
                ends_at,
                ..
            } => next_meter.min(ends_at),
            Step::Authorizing | Step::Starting => NEVER,
            Step::Announce(_)
            | Step::Plugged { .. }
            | Step::Authorize
            | Step::Start
            | Step::Started { .. }
            | Step::Finishing
            | Step::Unplugged => 0,
        }
    }

    fn idle(timings: &Timings, now: u64, rng: &mut Rng) -> Step {
        let gap = rng.exponential(timings.session_gap_us);
        let start_at = if gap.is_finite() && gap < 1e18 {
            now.saturating_add(gap as u64)
        } else {
            NEVER
        };
        Step::Idle { start_at }
    }

    /// Sends what the current step says and moves on.
    fn advance(&mut self, timings: &Timings, now: u64, rng: &mut Rng) -> Option<Outgoing> {
        let status = |connector, status| Outgoing::StatusNotification { connector, status };
        let (msg, next) = match self.step {
            Step::Announce(0) => (status(0, ConnectorStatus::Available), Step::Announce(1)),
            Step::Announce(_) => (
                status(1, ConnectorStatus::Available),
                Self::idle(timings, now, rng),
            ),
            Step::Idle { .. } | Step::Plugged { authorize: true } => {
                (status(1, ConnectorStatus::Preparing), Step::Authorize)
            }
            Step::Plugged { authorize: false } => {
                (status(1, ConnectorStatus::Preparing), Step::Start)
            }
            Step::Authorize => (Outgoing::Authorize, Step::Authorizing),
            Step::Start => {
                self.sessions = self.sessions.wrapping_add(1);
                self.seq_no = 0;
                let msg = Outgoing::StartTransaction {
                    connector: 1,
                    meter_wh: self.meter_wh,
                    transaction: i64::from(self.sessions),
                };
                (msg, Step::Starting)
            }
            Step::Started {
                transaction,
                ends_at,
            } => (
                status(1, ConnectorStatus::Charging),
                Step::Charging {
                    transaction,
                    next_meter: now.saturating_add(timings.meter_us),
                    ends_at,
                    remote: false,
                },
            ),
            Step::Charging {
                transaction,
                next_meter,
                ends_at,
                remote,
            } => {
                self.seq_no += 1;
                if now >= ends_at {
                    let msg = Outgoing::StopTransaction {
                        transaction,
                        meter_wh: self.meter_wh,
                        remote,
                        seq_no: self.seq_no,
                    };
                    (msg, Step::Finishing)
                } else {
                    // One meter interval of charging since the last reading.
                    self.meter_wh += CHARGING_WATTS * timings.meter_us / 3_600_000_000;
                    let msg = Outgoing::MeterValues {
                        connector: 1,
                        transaction: Some(transaction),
                        meter_wh: self.meter_wh,
                        seq_no: self.seq_no,
                    };
                    let next = Step::Charging {
                        transaction,
                        next_meter: next_meter.saturating_add(timings.meter_us).max(now + 1),
                        ends_at,
                        remote,
                    };
                    (msg, next)
                }
            }
            Step::Finishing => (status(1, ConnectorStatus::Finishing), Step::Unplugged),
            Step::Unplugged => (
                status(1, ConnectorStatus::Available),
                Self::idle(timings, now, rng),
            ),
            Step::Authorizing | Step::Starting => return None,
        };
        self.step = next;
        Some(msg)
    }

    fn on_reply(&mut self, reply: Reply, timings: &Timings, now: u64, rng: &mut Rng) {
        self.step = match (self.step, reply) {
            (Step::Authorizing, Reply::Authorized { accepted: true }) => Step::Start,
            (Step::Authorizing, _) => Step::Unplugged,
            (
                Step::Starting,
                Reply::Started {
                    transaction,
                    accepted,
                },
            ) => {
                // Half to one and a half times the mean length; a refused idTag stops at once.
                let length = timings.session_us / 2 + rng.below(timings.session_us.max(1));
                let ends_at = if accepted {
                    now.saturating_add(length)
                } else {
                    now
                };
                Step::Started {
                    transaction,
                    ends_at,
                }
            }
            (Step::Starting, _) => Step::Unplugged,
            (step, _) => step,
        };
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const S: u64 = 1_000_000;

    fn realistic() -> Timings {
        Timings::new(&Scenario::Realistic(RealisticParams {
            heartbeat: Duration::from_secs(100),
            meter_interval: Duration::from_secs(10),
            sessions_per_hour: 3600.0, // a session every second on average
            session_length: Duration::from_secs(30),
        }))
    }

    #[test]
    fn heartbeats_keep_their_slots_and_drop_missed_ones() {
        let timings = Timings::new(&Scenario::Heartbeat {
            interval: Duration::from_secs(10),
        });
        assert_eq!(timings.slot_offset(3, 4), 15 * S / 2);
        let mut plan = timings.plan();
        let mut rng = Rng::new(1);
        plan.on_booted(12 * S, 5 * S);
        assert_eq!(plan.next_due(), 15 * S);
        assert_eq!(plan.poll(&timings, 14 * S, &mut rng), None);
        // Sent late: counts from its slot; the next slot is unchanged.
        assert_eq!(
            plan.poll(&timings, 17 * S, &mut rng),
            Some((Outgoing::Heartbeat, 15 * S))
        );
        assert_eq!(plan.next_due(), 25 * S);
        // Stalled for three intervals: one catch-up, then back on the grid.
        assert_eq!(
            plan.poll(&timings, 58 * S, &mut rng),
            Some((Outgoing::Heartbeat, 25 * S))
        );
        assert_eq!(plan.next_due(), 65 * S);
    }

    #[test]
    fn saturate_is_always_due_and_idle_never() {
        let mut rng = Rng::new(1);
        let timings = Timings::new(&Scenario::Saturate);
        let mut plan = timings.plan();
        assert_eq!(plan.next_due(), 0);
        assert_eq!(
            plan.poll(&timings, 7, &mut rng),
            Some((Outgoing::Heartbeat, 7))
        );
        let timings = Timings::new(&Scenario::Idle);
        let mut plan = timings.plan();
        plan.on_booted(0, 0);
        assert_eq!(plan.next_due(), NEVER);
        assert_eq!(plan.poll(&timings, 7, &mut rng), None);
    }

    /// Drives a realistic plan, answering every CALL at once, and returns the actions sent.
    fn drive(plan: &mut Plan, timings: &Timings, until: u64, rng: &mut Rng) -> Vec<Outgoing> {
        let mut sent = Vec::new();
        let mut now = 0;
        let mut transaction = 100;
        while now < until {
            match plan.poll(timings, now, rng) {
                Some((msg, _)) => {
                    let reply = match msg {
                        Outgoing::Authorize => Reply::Authorized { accepted: true },
                        Outgoing::StartTransaction { .. } => {
                            transaction += 1;
                            Reply::Started {
                                transaction,
                                accepted: true,
                            }
                        }
                        _ => Reply::Done,
                    };
                    sent.push(msg);
                    plan.on_reply(reply, timings, now, rng);
                }
                None => now = plan.next_due().max(now + 1),
            }
        }
        sent
    }

    #[test]
    fn realistic_sessions_follow_the_ocpp_sequence() {
        let timings = realistic();
        let mut rng = Rng::new(7);
        let mut plan = timings.plan();
        plan.on_booted(0, 0);
        let sent = drive(&mut plan, &timings, 200 * S, &mut rng);
        let names: Vec<&str> = sent
            .iter()
            .map(|m| m.action().name())
            .filter(|n| *n != "Heartbeat")
            .collect();
        assert!(sent.contains(&Outgoing::Heartbeat));
        assert_eq!(
            &names[..5],
            [
                "StatusNotification",
                "StatusNotification",
                "StatusNotification",
                "Authorize",
                "StartTransaction"
            ]
        );
        let starts = names.iter().filter(|n| **n == "StartTransaction").count();
        let stops = names.iter().filter(|n| **n == "StopTransaction").count();
        assert!(starts >= 3, "{names:?}");
        assert!(stops + 1 >= starts && stops <= starts, "{names:?}");
        assert!(names.contains(&"MeterValues"));
        let meter: Vec<u64> = sent
            .iter()
            .filter_map(|m| match m {
                Outgoing::StopTransaction { meter_wh, .. } => Some(*meter_wh),
                _ => None,
            })
            .collect();
        assert!(meter.windows(2).all(|w| w[0] <= w[1]), "{meter:?}");
    }

    #[test]
    fn each_session_numbers_its_transaction_events() {
        let timings = realistic();
        let mut rng = Rng::new(11);
        let mut plan = timings.plan();
        plan.on_booted(0, 0);
        let sent = drive(&mut plan, &timings, 300 * S, &mut rng);
        // (the station's transaction number, seqNo) of every transaction message, in order.
        let mut expected_tx = 0;
        let mut expected_seq = 0;
        let mut ended = 0;
        for msg in sent {
            match msg {
                Outgoing::StartTransaction { transaction, .. } => {
                    expected_tx += 1;
                    assert_eq!(transaction, expected_tx);
                    expected_seq = 1;
                }
                Outgoing::MeterValues { seq_no, .. } => {
                    assert_eq!(seq_no, expected_seq);
                    expected_seq += 1;
                }
                Outgoing::StopTransaction { seq_no, .. } => {
                    assert_eq!(seq_no, expected_seq);
                    ended += 1;
                }
                _ => {}
            }
        }
        assert!(ended >= 3, "{ended} sessions ended");
    }

    #[test]
    fn remote_start_and_stop() {
        let timings = Timings::new(&Scenario::Realistic(RealisticParams {
            heartbeat: Duration::from_secs(100),
            meter_interval: Duration::from_secs(10),
            sessions_per_hour: 0.0,
            session_length: Duration::from_secs(3600),
        }));
        let mut rng = Rng::new(7);
        let mut plan = timings.plan();
        plan.on_booted(0, 0);
        drive(&mut plan, &timings, S, &mut rng); // announces, then idle for ever
        assert!(plan.can_start());
        plan.remote_start();
        let mut sent = Vec::new();
        while let Some((msg, _)) = plan.poll(&timings, 2 * S, &mut rng) {
            sent.push(msg.action().name());
            let reply = match msg {
                Outgoing::StartTransaction { .. } => Reply::Started {
                    transaction: 9,
                    accepted: true,
                },
                _ => Reply::Done,
            };
            plan.on_reply(reply, &timings, 2 * S, &mut rng);
        }
        assert_eq!(
            sent,
            [
                "StatusNotification",
                "StartTransaction",
                "StatusNotification"
            ]
        );
        assert_eq!(plan.transaction(), Some(9));
        plan.remote_stop(3 * S);
        match plan.poll(&timings, 3 * S, &mut rng) {
            Some((
                Outgoing::StopTransaction {
                    transaction: 9,
                    remote: true,
                    ..
                },
                _,
            )) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_failed_authorize_ends_the_session() {
        let timings = realistic();
        let mut rng = Rng::new(3);
        let mut plan = timings.plan();
        plan.on_booted(0, 0);
        let mut now = 0;
        loop {
            let Some((msg, _)) = plan.poll(&timings, now, &mut rng) else {
                now = plan.next_due();
                continue;
            };
            if msg == Outgoing::Authorize {
                plan.on_reply(Reply::Failed, &timings, now, &mut rng);
                break;
            }
            plan.on_reply(Reply::Done, &timings, now, &mut rng);
        }
        let next = plan.poll(&timings, now, &mut rng).map(|(m, _)| m);
        assert_eq!(
            next,
            Some(Outgoing::StatusNotification {
                connector: 1,
                status: ConnectorStatus::Available
            })
        );
    }
}
