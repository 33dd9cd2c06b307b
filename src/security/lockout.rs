//! The brake on guessing: failed authentications per source address, shared by every loop.
//!
//! Keys are random, so guessing never succeeds; what an operator wants is that it costs the
//! guesser, not the gateway. After `security.lockout_failures` refusals (401 or 403) from one
//! address within `security.lockout_window`, that address is refused with 429 and a
//! `Retry-After` for `security.lockout_time`, doubled with every further lockout up to
//! `security.lockout_max_time`. The check comes before any hashing. It is per address, never per
//! identity: a lock on an identity would let anyone lock a charge point out, and a correct key
//! from another address is never refused for someone else's failures.
//!
//! The same table decides which refusals are journaled: at most
//! `security.journaled_refusals` per address and window; the rest are only counted. So a
//! burst of guesses spends the guesser's allowance, never that of the identity it names.
//!
//! Why one table behind a mutex: `SO_REUSEPORT` spreads one address's connections over all
//! loops, so a per-loop count would let a guesser multiply its allowance by the number of
//! loops. The lock is taken once per upgrade on an authenticating listener (a lookup: no
//! allocation for a good connection) and once per refusal. Memory is bounded: at most
//! `security.lockout_table` addresses, the oldest entry evicted first. IPv6 addresses count by
//! their /64, which is what one host usually holds.
//!
//! Pure apart from the lock: time comes in as an [`Instant`].

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use crate::config::LockoutRule;

/// What a refusal did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// Within the address's journal allowance: write the line.
    pub journal: bool,
    /// This refusal locked the address out, for so many seconds.
    pub locked_for: Option<u32>,
}

/// One address, as the operator API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locked {
    /// The address (an IPv6 one as its /64).
    pub address: IpAddr,
    /// Seconds until it may try again.
    pub retry_after_secs: u32,
    /// Lockouts in a row (the next one lasts twice as long).
    pub lockouts: u32,
}

/// Counters the metrics read.
#[derive(Debug, Default)]
pub struct LockoutCounts {
    /// Times an address was locked out.
    pub lockouts: AtomicU64,
    /// Upgrades refused with 429 because their address was locked out.
    pub refused: AtomicU64,
    /// Refusals over their address's journal allowance: counted, not journaled.
    pub unjournaled: AtomicU64,
    /// Entries evicted to make room.
    pub evicted: AtomicU64,
}

/// The failure table every loop shares.
#[derive(Debug)]
pub struct Lockouts {
    rule: LockoutRule,
    origin: Instant,
    table: Mutex<Table>,
    pub counts: LockoutCounts,
}

#[derive(Debug, Default)]
struct Table {
    records: HashMap<IpAddr, Record>,
    /// Keys in insertion order: the front is evicted first (same length as `records`).
    order: VecDeque<IpAddr>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Record {
    window_start_ms: u64,
    failures: u32,
    journaled: u32,
    locked_until_ms: u64,
    /// Lockouts in a row; forgotten after `max` without a failure.
    strikes: u32,
    last_failure_ms: u64,
}

/// The key an address counts under: itself, or its /64 for IPv6.
fn key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
        },
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whole seconds, rounded up, at least 1.
fn seconds(ms: u64) -> u32 {
    u32::try_from(ms.div_ceil(1000).max(1)).unwrap_or(u32::MAX)
}

impl LockoutRule {
    /// Never locks out, journals every refusal (tests that build a `Security` by hand).
    pub const OFF: LockoutRule = LockoutRule {
        failures: 0,
        window: Duration::from_secs(60),
        first: Duration::from_secs(10),
        max: Duration::from_secs(10),
        table: 1024,
        journaled: u32::MAX,
    };
}

impl Default for Lockouts {
    fn default() -> Lockouts {
        Lockouts::new(LockoutRule::OFF)
    }
}

impl Lockouts {
    pub fn new(rule: LockoutRule) -> Lockouts {
        Lockouts {
            rule,
            origin: Instant::now(),
            table: Mutex::new(Table::default()),
            counts: LockoutCounts::default(),
        }
    }

    fn now_ms(&self, now: Instant) -> u64 {
        millis(now.saturating_duration_since(self.origin))
    }

    /// Seconds `address` must wait before it may try again, if it is locked out (counted).
    pub fn locked(&self, address: IpAddr, now: Instant) -> Option<u32> {
        if self.rule.failures == 0 {
            return None;
        }
        let now_ms = self.now_ms(now);
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let record = table.records.get(&key(address))?;
        (record.locked_until_ms > now_ms).then(|| {
            self.counts.refused.fetch_add(1, Ordering::Relaxed);
            seconds(record.locked_until_ms - now_ms)
        })
    }

    /// Records a refusal from `address`.
    pub fn refused(&self, address: IpAddr, now: Instant) -> Refused {
        let rule = self.rule;
        let now_ms = self.now_ms(now);
        let window_ms = millis(rule.window);
        let max_ms = millis(rule.max);
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let record = table.entry(key(address), rule.table, &self.counts);
        if now_ms.saturating_sub(record.last_failure_ms) > max_ms.max(window_ms) {
            record.strikes = 0;
        }
        if record.failures == 0 && record.journaled == 0
            || now_ms.saturating_sub(record.window_start_ms) >= window_ms
        {
            record.window_start_ms = now_ms;
            record.failures = 0;
            record.journaled = 0;
        }
        record.last_failure_ms = now_ms;
        record.failures = record.failures.saturating_add(1);
        let journal = record.journaled < rule.journaled;
        if journal {
            record.journaled += 1;
        } else {
            self.counts.unjournaled.fetch_add(1, Ordering::Relaxed);
        }
        let mut locked_for = None;
        if rule.failures > 0 && record.failures >= rule.failures {
            let doubling = 1u64 << record.strikes.min(32);
            let lock_ms = millis(rule.first).saturating_mul(doubling).min(max_ms);
            record.strikes = record.strikes.saturating_add(1);
            record.locked_until_ms = now_ms.saturating_add(lock_ms);
            record.failures = 0;
            self.counts.lockouts.fetch_add(1, Ordering::Relaxed);
            locked_for = Some(seconds(lock_ms));
        }
        Refused {
            journal,
            locked_for,
        }
    }

    /// The addresses locked out now, longest wait first (at most `limit`).
    pub fn list(&self, now: Instant, limit: usize) -> Vec<Locked> {
        let now_ms = self.now_ms(now);
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut locked: Vec<Locked> = table
            .records
            .iter()
            .filter(|(_, r)| r.locked_until_ms > now_ms)
            .map(|(address, r)| Locked {
                address: *address,
                retry_after_secs: seconds(r.locked_until_ms - now_ms),
                lockouts: r.strikes,
            })
            .collect();
        locked.sort_by_key(|l| std::cmp::Reverse(l.retry_after_secs));
        locked.truncate(limit);
        locked
    }

    /// Addresses remembered (locked or counting).
    pub fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .records
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Table {
    /// `key`'s record, made (evicting the oldest when `cap` are held) if it has none.
    fn entry(&mut self, key: IpAddr, cap: usize, counts: &LockoutCounts) -> &mut Record {
        if !self.records.contains_key(&key) {
            while self.records.len() >= cap.max(1) {
                let Some(oldest) = self.order.pop_front() else {
                    break;
                };
                self.records.remove(&oldest);
                counts.evicted.fetch_add(1, Ordering::Relaxed);
            }
            self.order.push_back(key);
        }
        self.records.entry(key).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: LockoutRule = LockoutRule {
        failures: 3,
        window: Duration::from_secs(60),
        first: Duration::from_secs(10),
        max: Duration::from_secs(35),
        table: 4,
        journaled: 2,
    };

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn locks_after_the_failures_and_doubles_up_to_the_max() {
        let table = Lockouts::new(RULE);
        let t0 = table.origin;
        let at = |s: u64| t0 + Duration::from_secs(s);
        let a = ip("10.0.0.1");
        assert_eq!(table.locked(a, at(0)), None);
        assert_eq!(table.refused(a, at(0)).locked_for, None);
        assert_eq!(table.refused(a, at(1)).locked_for, None);
        assert_eq!(table.refused(a, at(2)).locked_for, Some(10));
        assert_eq!(table.locked(a, at(3)), Some(9));
        // Another address is not affected.
        assert_eq!(table.locked(ip("10.0.0.2"), at(3)), None);
        assert_eq!(table.locked(a, at(12)), None);
        for s in 12..14 {
            assert_eq!(table.refused(a, at(s)).locked_for, None);
        }
        assert_eq!(table.refused(a, at(14)).locked_for, Some(20));
        for s in 40..42 {
            table.refused(a, at(s));
        }
        // 40 s would be next: capped at 35.
        assert_eq!(table.refused(a, at(42)).locked_for, Some(35));
        assert_eq!(table.counts.lockouts.load(Ordering::Relaxed), 3);
        assert_eq!(table.counts.refused.load(Ordering::Relaxed), 1);
        let listed = table.list(at(43), 10);
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].address, listed[0].lockouts), (a, 3));
        // Quiet for longer than the max: the strikes are forgotten.
        for s in 200..202 {
            table.refused(a, at(s));
        }
        assert_eq!(table.refused(a, at(202)).locked_for, Some(10));
    }

    #[test]
    fn failures_outside_the_window_start_over() {
        let table = Lockouts::new(RULE);
        let t0 = table.origin;
        let a = ip("10.0.0.1");
        for s in [0, 30, 61, 90] {
            assert_eq!(
                table.refused(a, t0 + Duration::from_secs(s)).locked_for,
                None
            );
        }
        assert!(
            table
                .refused(a, t0 + Duration::from_secs(100))
                .locked_for
                .is_some()
        );
    }

    #[test]
    fn journal_allowance_per_address_and_window() {
        let rule = LockoutRule {
            failures: 0,
            ..RULE
        };
        let table = Lockouts::new(rule);
        let t0 = table.origin;
        let a = ip("10.0.0.1");
        let journaled: Vec<bool> = (0..5).map(|_| table.refused(a, t0).journal).collect();
        assert_eq!(journaled, [true, true, false, false, false]);
        assert!(table.refused(ip("10.0.0.2"), t0).journal);
        assert!(table.refused(a, t0 + Duration::from_secs(61)).journal);
        assert_eq!(table.counts.unjournaled.load(Ordering::Relaxed), 3);
        // Never locked with failures = 0.
        assert_eq!(table.locked(a, t0), None);
    }

    #[test]
    fn the_table_is_capped_oldest_first_and_ipv6_counts_by_64() {
        let table = Lockouts::new(RULE);
        let t0 = table.origin;
        for i in 0..6 {
            table.refused(ip(&format!("10.0.0.{i}")), t0);
        }
        assert_eq!(table.len(), 4);
        assert_eq!(table.counts.evicted.load(Ordering::Relaxed), 2);
        let table = Lockouts::new(RULE);
        table.refused(ip("2001:db8::1"), t0);
        table.refused(ip("2001:db8::ffff:2"), t0);
        assert_eq!(
            table.refused(ip("2001:db8::3"), t0).locked_for,
            Some(10),
            "one /64"
        );
        assert!(table.locked(ip("2001:db8:0:1::1"), t0).is_none());
        assert!(table.refused(ip("::ffff:10.0.0.9"), t0).journal);
        assert_eq!(key(ip("::ffff:10.0.0.9")), ip("10.0.0.9"));
    }
}
