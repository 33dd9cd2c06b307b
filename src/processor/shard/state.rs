//! What the state file keeps of this shard's charge points: the changes offered to the state
//! thread (with the billing answers that wait for their commit), and what it restored at start.

use super::*;

impl Shard {
    /// Keeps changed charge points in the state file, starting from what it held: accepted
    /// charge points come back disconnected, with their boot payload, connectors and open
    /// transaction, so one that reconnects without booting again is still Accepted.
    /// Past `ocpp.max_disconnected`, the oldest records are forgotten here and in the file.
    pub fn with_state(mut self, sender: Option<StateSender>, restored: Restored) -> Shard {
        let now_us = epoch_us(SystemTime::now());
        for (cp, saved) in restored {
            let since_us = match saved.seen_ms {
                0 => now_us, // a record of an older version
                ms => ms.saturating_mul(1000),
            };
            let mut connectors = saved.connectors;
            connectors.truncate(handlers::MAX_CONNECTORS);
            self.charge_points.insert(
                ChargePointId::from(cp),
                ChargePoint {
                    conn: None,
                    seq: 0,
                    state: ChargePointState {
                        registration: Registration::Accepted,
                        connectors: connectors.into_boxed_slice(),
                        open_transaction: saved.open_transaction.and_then(NonZeroI32::new),
                        version: saved.version,
                        v201: unsure(saved.v201),
                        ..ChargePointState::default()
                    },
                    journal: JournalBudget::default(),
                    profile: Profile::from_number(saved.profile).unwrap_or_default(),
                    listener: (Profile::Unsecured, false),
                    seen: Box::new(Seen {
                        peer: None,
                        since_us,
                        last_message_ms: None,
                        boot: saved.boot,
                        journal_suppressed: 0,
                        rate_limited: 0,
                        certificate: None,
                    }),
                    dirty: false,
                    saved: true,
                    held: None,
                },
            );
            self.remembered += 1;
        }
        self.state = sender;
        if self.remembered > self.remember_limit {
            self.forget_oldest(self.remembered - self.remember_limit);
        }
        self
    }

    /// Offers the state file the newest record of every charge point changed (and forgotten)
    /// since the last offer, with the billing answers that wait for them; never waits unless
    /// `last` (the processor is stopping) or answers are held (backpressure, as for a full
    /// journal). When the state thread is behind, they stay listed and are offered with the
    /// next round.
    pub fn offer_state(&mut self, last: bool) {
        if !self.keeps_state()
            || (self.dirty.is_empty()
                && self.touched.is_empty()
                && self.forgotten.is_empty()
                && self.state_held.is_empty())
        {
            return;
        }
        if let Some(sender) = &self.state {
            let mut changes: Vec<Change> =
                Vec::with_capacity(self.dirty.len() + self.touched.len() + self.forgotten.len());
            for cp in self.dirty.iter().chain(&self.touched) {
                if let Some(entry) = self.charge_points.get(cp) {
                    changes.push((Box::from(&**cp), saved_record(entry)));
                }
            }
            for cp in &self.forgotten {
                changes.push((Box::from(&**cp), None));
            }
            let held = std::mem::take(&mut self.state_held);
            let wait = last || !held.is_empty();
            let batch = StateBatch { changes, held };
            let offered = if wait {
                sender.send(batch)
            } else {
                sender.offer(batch)
            };
            if let Err(batch) = offered {
                if wait {
                    // Only a state thread that is gone refuses a waiting send: the answers it
                    // held can never be made durable, so they go out as CALLERROR now.
                    sender.refuse(batch.held, &self.stats.state.state_refused_answers);
                } else {
                    // A full channel: offered again with the next round.
                    self.state_held = batch.held;
                    self.stats.state.state_deferred.inc();
                    return;
                }
            }
        }
        // Redis gets what changed once the state file (if any) took it: a deferred round is
        // offered again and must not write Redis again each time. What this node forgets to
        // bound its memory stays in Redis.
        if let Some(cluster) = &self.cluster {
            for cp in &self.dirty {
                if let Some(entry) = self.charge_points.get(cp) {
                    cluster.send(ClusterOp::Saved {
                        cp: Box::from(&**cp),
                        record: saved_record(entry),
                    });
                }
            }
        }
        self.forgotten.clear();
        for cp in self.touched.drain(..) {
            if let Some(entry) = self.charge_points.get_mut(&cp) {
                entry.saved = true;
            }
        }
        for cp in self.dirty.drain(..) {
            if let Some(entry) = self.charge_points.get_mut(&cp) {
                entry.dirty = false;
                entry.saved = true;
            }
        }
    }

    /// Whether changes of registrations, statuses and transactions are kept anywhere (the
    /// state file, Redis).
    pub(super) fn keeps_state(&self) -> bool {
        self.state.is_some() || self.cluster.is_some()
    }

    /// What Redis knows of `cp`, which connected with `session`: a record there is the newest
    /// (the node that held the charge point before wrote it) unless this node changed the charge
    /// point since its last offer. Then the held messages are handled, in order.
    pub fn loaded(
        &mut self,
        cp: &ChargePointId,
        session: u64,
        lookup: Lookup,
        out: &mut Outputs<'_>,
    ) {
        let Some(entry) = self.charge_points.get_mut(cp) else {
            return;
        };
        if entry.seq != session {
            return; // an older connection's answer: the newer one waits for its own
        }
        let Some(held) = entry.held.take() else {
            return;
        };
        debug!(
            "cp={cp} Redis answered the connect: {}, {} message(s) held",
            match &lookup {
                Lookup::Found(_) => "accepted on some node before",
                Lookup::Absent => "unknown",
                Lookup::Unavailable => "unavailable",
            },
            held.len()
        );
        if let Lookup::Found(saved) = &lookup
            && let Some(remembered) = Profile::from_number(saved.profile)
            && remembered > entry.profile
        {
            entry.profile = remembered;
            let (listener, pinned) = entry.listener;
            if !pinned && listener < remembered {
                // Authenticated at a higher profile on some node before: not served here (its
                // held messages go unanswered with it).
                let refused = entry.conn.zip(entry.seen.peer);
                if let Some((conn, peer)) = refused {
                    self.refuse_below_profile(cp, conn, peer, (listener, remembered), out);
                }
                return;
            }
        }
        // What another node kept of another version's registration does not carry over.
        if let Lookup::Found(saved) = lookup
            && !entry.dirty
            && saved.version == entry.state.version
        {
            let mut connectors = saved.connectors;
            connectors.truncate(handlers::MAX_CONNECTORS);
            entry.state.registration = Registration::Accepted;
            entry.state.connectors = connectors.into_boxed_slice();
            entry.state.open_transaction = saved.open_transaction.and_then(NonZeroI32::new);
            entry.state.v201 = unsure(saved.v201);
            entry.seen.boot = saved.boot;
            entry.saved = true;
        }
        for (conn, text) in held.into_iter() {
            self.message(conn, cp, &text, out);
        }
    }
}

/// A station's 2.x state as storage kept it: the last event it answered may not be kept
/// (storage may be ahead of the journal and Kafka at a kill), so a resend of it is kept again.
fn unsure(v201: Option<Box<crate::types::State201>>) -> Option<Box<crate::types::State201>> {
    v201.map(|mut state| {
        state.unsure = true;
        state
    })
}
