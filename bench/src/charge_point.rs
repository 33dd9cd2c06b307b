//! One simulated charge point as its fleet thread keeps it: the connection's life ([`Link`],
//! an enum moved by value through its states), where booting stands ([`Boot`]), the one CALL it
//! may have outstanding, its scenario [`Plan`], and the one time it next needs a wake-up
//! ([`ChargePoint::wake_at`], the single place that decides it).
//!
//! A charge point keeps its slot for the whole run; only its connection comes and goes. The
//! per-connection cost is this struct and its boxed [`ClientConn`] (socket, and buffers held
//! only while a frame is unfinished or the gateway does not read); reads land in the thread's
//! one buffer.

use mio::net::TcpStream;
use ocpp::Version;

use crate::fleet::ClientConn;
use crate::messages::Outgoing;
use crate::scenario::{NEVER, Plan};
use crate::upgrade::Upgrade;

/// The connection.
pub enum Link {
    /// No socket; after `link_deadline` (back-off) the charge point queues for a connect slot.
    Down,
    /// Waiting in the thread's connect queue (pacing, in-flight limit).
    Queued,
    /// TCP connect in progress; gives up at `link_deadline`.
    Connecting(TcpStream),
    /// WebSocket upgrade in progress; gives up at `link_deadline`.
    Handshaking(Box<Upgrade>),
    Open(Box<ClientConn>),
}

impl Link {
    /// Counted in the "in flight" gauge (connect started, upgrade not done).
    pub fn is_inflight(&self) -> bool {
        matches!(self, Link::Connecting(_) | Link::Handshaking(_))
    }
}

/// BootNotification on the current connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    NotSent,
    Sent,
    Accepted,
    /// Pending, Rejected or failed: send it again then.
    RetryAt(u64),
}

/// The CALL a charge point waits for an answer to.
#[derive(Debug, Clone, Copy)]
pub struct Outstanding {
    pub unique_id: u32,
    /// What was sent (its action, and for a 2.0.1 TransactionEvent Started the station's own
    /// transaction number, which its answer does not repeat).
    pub msg: Outgoing,
    /// When it was meant to go out: latency counts from here.
    pub planned_us: u64,
    pub deadline_us: u64,
}

pub struct ChargePoint {
    /// Global index: identity, source address and schedule slot derive from it.
    pub index: u32,
    /// The OCPP version it offers and speaks.
    pub version: Version,
    pub link: Link,
    pub boot: Boot,
    pub plan: Plan,
    pub call: Option<Outstanding>,
    /// Asked for by TriggerMessage: goes out before anything the plan has due.
    pub triggered: Option<Outgoing>,
    pub next_unique_id: u32,
    /// Consecutive failed connections (the back-off exponent).
    pub failures: u32,
    /// Down: when to queue for a connect. Connecting/Handshaking: when to give up.
    pub link_deadline: u64,
    pub connect_started_us: u64,
    /// The time of this charge point's live timer entry ([`crate::deadlines`]).
    pub armed: u64,
    pub ever_booted: bool,
}

impl ChargePoint {
    pub fn new(index: u32, version: Version, plan: Plan) -> ChargePoint {
        ChargePoint {
            index,
            version,
            link: Link::Queued,
            boot: Boot::NotSent,
            plan,
            call: None,
            triggered: None,
            next_unique_id: 0,
            failures: 0,
            link_deadline: NEVER,
            connect_started_us: 0,
            armed: NEVER,
            ever_booted: false,
        }
    }

    pub fn take_unique_id(&mut self) -> u32 {
        self.next_unique_id = self.next_unique_id.wrapping_add(1).max(1);
        self.next_unique_id
    }

    /// When this charge point next has something to do, as of `now`.
    pub fn wake_at(&self, now: u64) -> u64 {
        match self.link {
            Link::Down | Link::Connecting(_) | Link::Handshaking(_) => self.link_deadline,
            Link::Queued => NEVER,
            Link::Open(_) => match self.call {
                // An answer nearly always comes long before the deadline: wake for the next
                // planned send when that is sooner, so the re-arm after the answer finds its
                // entry already in place instead of leaving a stale deadline entry behind.
                Some(call) => match (self.boot, self.plan.next_due()) {
                    (Boot::Accepted, next) if next > now => next.min(call.deadline_us),
                    _ => call.deadline_us,
                },
                None => match self.boot {
                    Boot::Accepted if self.triggered.is_some() => 0,
                    Boot::Accepted => self.plan.next_due(),
                    Boot::RetryAt(at) => at,
                    Boot::NotSent | Boot::Sent => NEVER,
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Scenario;
    use crate::scenario::Timings;

    #[test]
    fn wake_time_follows_the_state() {
        let timings = Timings::new(&Scenario::Heartbeat {
            interval: std::time::Duration::from_secs(1),
        });
        let mut cp = ChargePoint::new(3, Version::V16, timings.plan());
        assert_eq!(cp.wake_at(0), NEVER); // queued: the connect queue drives it
        cp.link = Link::Down;
        cp.link_deadline = 500;
        assert_eq!(cp.wake_at(0), 500);
        assert_eq!(cp.take_unique_id(), 1);
        assert_eq!(cp.take_unique_id(), 2);
        cp.next_unique_id = u32::MAX;
        assert_eq!(cp.take_unique_id(), 1);
    }

    #[test]
    fn slot_size_stays_small() {
        // The whole per-charge-point record, connection included; the read buffer is extra.
        let size = std::mem::size_of::<ChargePoint>();
        assert!(size <= 256, "ChargePoint is {size} bytes");
    }
}
