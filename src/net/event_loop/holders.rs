//! Room before the upgrade: the connections still in their handshake that hold bytes are
//! listed in the order they began to hold them (`LoopContext::holders`), and when those not
//! upgraded yet hold all they may (`Limits::upgrade_budget`) the oldest are closed first.

use std::num::NonZeroU32;

use super::*;

impl EventLoop {
    /// After a connection acted: in its handshake and holding bytes, it joins the end of the
    /// list of holders (see [`Transition::MakeRoom`]) unless it is listed; no longer holding,
    /// it leaves it (its entry goes stale), to join again at the end if it holds again.
    pub(super) fn note_holder(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let holding = conn.is_upgrading() && conn.holds_input();
        match (conn.holder_stamp(), holding) {
            (None, true) => {
                let stamp = self.cx.next_holder_stamp;
                self.cx.next_holder_stamp = stamp.checked_add(1).unwrap_or(NonZeroU32::MIN);
                conn.set_holder_stamp(Some(stamp));
                self.cx.holders.push_back((key, conn.generation, stamp));
                self.compact_holders();
            }
            (Some(_), false) => conn.set_holder_stamp(None),
            _ => {}
        }
    }

    /// Whether the entry is the current listing of a connection still holding bytes in its
    /// handshake (not a stale one).
    fn listed(&self, entry: (usize, u32, NonZeroU32)) -> bool {
        listed(&self.conns, entry)
    }

    /// Stale entries behind a long-lived holder at the front (a peer that stops and starts
    /// holding, again and again) are dropped once the list has doubled since it was last
    /// compacted: the list stays within twice its live entries, at O(1) per listing.
    fn compact_holders(&mut self) {
        let cx = &mut self.cx;
        if cx.holders.len() < 64 || cx.holders.len() < 2 * cx.holders_compacted {
            return;
        }
        let conns = &self.conns;
        cx.holders.retain(|&entry| listed(conns, entry));
        cx.holders_compacted = cx.holders.len();
    }

    /// Each turn, the stale entries at the front of the holders list (upgraded, gone, or done
    /// with their partial request) are dropped, and the list lets go of room it no longer
    /// needs.
    pub(super) fn forget_handshakes(&mut self) {
        while let Some(&entry) = self.cx.holders.front() {
            if self.listed(entry) {
                break;
            }
            self.cx.holders.pop_front();
        }
        // What was popped no longer counts towards the next compaction's doubling.
        let cx = &mut self.cx;
        cx.holders_compacted = cx.holders_compacted.min(cx.holders.len());
        let list = &mut self.cx.holders;
        if list.capacity() > 64 && list.len() < list.capacity() / 4 {
            list.shrink_to(list.len() * 2);
        }
    }

    /// Closes the connections in their handshake that hold bytes, those that began holding
    /// first first, and before `key` did, until those not upgraded yet hold less than they
    /// may; then `key` reads again if it has more to read (`read_on`). If that is not enough,
    /// `key` is closed (a connection that
    /// holds on longest goes first: slowloris do, a station's handshake takes milliseconds).
    /// Each entry walked is either closed or dropped (stale), except the reader's: the walk
    /// costs what it frees.
    pub(super) fn make_room(&mut self, key: usize, read_on: bool) {
        let full = |cx: &LoopContext| cx.wire.buffered.upgrading >= cx.limits.upgrade_budget;
        let reader = self.conns.get(key).map(|c| (key, c.generation));
        while full(&self.cx) {
            let Some(&entry) = self.cx.holders.front() else {
                break;
            };
            let listed = self.listed(entry);
            if listed && Some((entry.0, entry.1)) == reader {
                break;
            }
            self.cx.holders.pop_front();
            if listed {
                self.cx.stats().upgrades_over_budget.inc();
                self.remove(entry.0, CloseCause::ConnectionLost);
            }
        }
        let cx = &mut self.cx;
        cx.holders_compacted = cx.holders_compacted.min(cx.holders.len());
        if full(&self.cx) {
            self.cx.stats().upgrades_over_budget.inc();
            self.remove(key, CloseCause::ConnectionLost);
        } else if read_on {
            self.act(key, Transition::Again);
        }
    }
}

/// See [`EventLoop::listed`].
fn listed(conns: &Slab<Connection>, (key, generation, stamp): (usize, u32, NonZeroU32)) -> bool {
    conns.get(key).is_some_and(|conn| {
        conn.generation == generation
            && conn.holder_stamp() == Some(stamp)
            && conn.is_upgrading()
            && conn.holds_input()
    })
}
