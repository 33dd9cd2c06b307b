//! Who is connected: connects (with takeover and the profile floor), disconnects, and the bound
//! on charge points remembered without a connection.

use super::*;

impl Shard {
    /// Lists a removed charge point for removal from the state file, if it may be there.
    pub(super) fn forget(&mut self, cp: &ChargePointId, gone: &ChargePoint) {
        if self.keeps_state() && (gone.saved || gone.dirty) {
            self.forgotten.push(ChargePointId::clone(cp));
            self.dirty.retain(|d| d != cp);
            self.touched.retain(|d| d != cp);
        }
    }

    /// Closes `conn` of `cp` (1008), which connected on a `listener` profile below the one it
    /// authenticated at before (`remembered`): counted, journaled, logged within the budget.
    pub(super) fn refuse_below_profile(
        &mut self,
        cp: &ChargePointId,
        conn: ConnId,
        peer: SocketAddr,
        (listener, remembered): (Profile, Profile),
        out: &mut Outputs<'_>,
    ) {
        self.stats().profile_refusals.inc();
        let now_ms = self.origin.elapsed().as_millis() as u64;
        if self.warnings.allow(now_ms) {
            warn!(
                "cp={cp} connection from {peer} on a profile {} listener closed: it authenticated at profile {} before",
                listener.number(),
                remembered.number()
            );
        }
        if let Some(writer) = out.writer.as_deref_mut() {
            // Within the allowance refusals share (a client reconnecting in a loop must not
            // fill the disk, nor spend the identity's own allowance).
            let mut journaling = Journaling {
                writer,
                rule: self.journal_rule,
                now_ms,
                stats: &self.stats.processors[self.index],
            };
            let refused = Event {
                at: SystemTime::now(),
                cp,
                kind: EventKind::Refused {
                    peer,
                    status: 1008,
                    reason: "profile_too_low",
                },
            };
            journaling.record(&mut self.strangers, &refused, false);
        }
        out.closes.push((conn, CloseReason::ProfileTooLow));
    }

    /// A connection of `cp` (`seq` orders it, `auth` says how it proved the identity, `listener`
    /// is its listener's profile and whether the identity's credentials pin its floor).
    pub(super) fn connected(
        &mut self,
        conn: ConnId,
        cp: &ChargePointId,
        (seq, auth, listener, version): (u64, Auth, (Profile, bool), Version),
        (peer, certificate): (SocketAddr, Option<&CertificateFacts>),
        out: &mut Outputs<'_>,
    ) {
        let now = SystemTime::now();
        let certificate = certificate.map(|facts| {
            Box::new(Shown {
                facts: facts.clone(),
                renewal_asked: false,
            })
        });
        let (profile, pinned) = listener;
        let keeps_state = self.keeps_state();
        let loser = match self.charge_points.get_mut(cp) {
            // A connection older than the one we hold arrived late: it loses.
            Some(held) if held.seq > seq => Some(conn),
            // Never served below the profile it authenticated at (the whitepaper forbids going
            // down a profile), unless its credentials line says so.
            Some(held) if !pinned && profile < held.profile => {
                let remembered = held.profile;
                self.refuse_below_profile(cp, conn, peer, (profile, remembered), out);
                return;
            }
            // Never taken over by a connection that did not authenticate.
            Some(held)
                if held.conn.is_some() && held.state.auth != Auth::None && auth == Auth::None =>
            {
                self.stats().takeovers_refused.inc();
                warn!(
                    "cp={cp} unauthenticated connection from {peer} refused: the identity is held by an authenticated one"
                );
                out.closes.push((conn, CloseReason::IdentityInUse));
                return;
            }
            Some(held) => {
                let old = reconnect(
                    held,
                    cp,
                    (conn, seq, auth, listener, version),
                    (peer, certificate, now),
                    keeps_state.then_some(&mut self.dirty),
                );
                if old.is_none() {
                    self.remembered -= 1;
                }
                old.filter(|old| *old != conn)
            }
            None => {
                let fresh = ChargePoint {
                    conn: Some(conn),
                    seq,
                    state: ChargePointState {
                        auth,
                        version,
                        ..ChargePointState::default()
                    },
                    journal: JournalBudget::default(),
                    profile: if auth == Auth::None {
                        Profile::Unsecured
                    } else {
                        profile
                    },
                    listener,
                    seen: Box::new(Seen {
                        peer: Some(peer),
                        since_us: epoch_us(now),
                        last_message_ms: None,
                        boot: None,
                        journal_suppressed: 0,
                        rate_limited: 0,
                        certificate,
                    }),
                    dirty: false,
                    saved: false,
                    held: None,
                };
                self.charge_points.insert(ChargePointId::clone(cp), fresh);
                None
            }
        };
        self.announce_connected(conn, cp, loser, (peer, version, seq, now), out);
    }

    /// Journals the connect (after the disconnect of the connection it took over), asks the
    /// cluster who else holds the identity, and closes the loser of a takeover.
    fn announce_connected(
        &mut self,
        conn: ConnId,
        cp: &ChargePointId,
        loser: Option<ConnId>,
        (peer, version, seq, now): (SocketAddr, Version, u64, SystemTime),
        out: &mut Outputs<'_>,
    ) {
        // Journaled in the order a reader needs: the old connection ends, the new one starts.
        // A late connection that loses at once was never journaled as connected.
        if let Some(writer) = out.writer.as_deref_mut() {
            if loser.is_some_and(|l| l != conn) {
                writer.record(&Event {
                    at: now,
                    cp,
                    kind: EventKind::Disconnected {
                        cause: CloseCause::Takeover,
                    },
                });
            }
            if loser != Some(conn) {
                let boot = self
                    .charge_points
                    .get(cp)
                    .and_then(|e| e.seen.boot.as_deref());
                writer.record(&Event {
                    at: now,
                    cp,
                    kind: EventKind::Connected {
                        peer,
                        loop_index: conn.loop_index,
                        boot: boot.map(RawValue::get),
                        version,
                    },
                });
            }
        }
        if loser != Some(conn)
            && let Some(cluster) = &self.cluster
        {
            let asked = cluster.send(ClusterOp::Connected {
                cp: ChargePointId::clone(cp),
                session: seq,
                at_ms: epoch_ms(now),
            });
            // Until Redis says what it knows (another node may have accepted it), the
            // connection's messages wait; when it cannot be asked, they go on at once.
            if asked && let Some(entry) = self.charge_points.get_mut(cp) {
                entry.held = Some(Box::default());
            }
        }
        if let Some(loser) = loser {
            info!(
                "cp={cp} loop={} replaced by a newer connection",
                loser.loop_index
            );
            out.closes.push((loser, CloseReason::Takeover));
        }
    }

    pub(super) fn disconnected(
        &mut self,
        conn: ConnId,
        cp: &ChargePointId,
        cause: CloseCause,
        out: &mut Outputs<'_>,
    ) {
        let now = SystemTime::now();
        let Some(entry) = self.charge_points.get_mut(cp) else {
            return;
        };
        if entry.conn != Some(conn) {
            return; // an older connection, already replaced (and journaled as such)
        }
        entry.held = None; // messages of a closed connection: nobody to answer

        if let Some(cluster) = &self.cluster {
            cluster.send(ClusterOp::Disconnected {
                cp: ChargePointId::clone(cp),
                at_ms: entry.seen.since_us / 1000,
            });
        }
        entry.seen.since_us = epoch_us(now);
        if let Some(writer) = out.writer.as_deref_mut() {
            if let Some((lines, bytes)) = entry.journal.take_summary() {
                writer.record(&Event {
                    at: now,
                    cp,
                    kind: EventKind::Suppressed { lines, bytes },
                });
            }
            writer.record(&Event {
                at: now,
                cp,
                kind: EventKind::Disconnected { cause },
            });
        }
        if entry.state.registration != Registration::Accepted {
            if let Some(gone) = self.charge_points.remove(cp) {
                self.forget(cp, &gone);
            }
            return;
        }
        entry.conn = None;
        // When it was last seen is part of its record in the state file (the oldest are
        // forgotten first, also across a restart); Redis, which keeps the fleet, is not
        // written for it.
        if self.state.is_some() && !entry.dirty {
            self.touched.push(ChargePointId::clone(cp));
        }
        self.remembered += 1;
        if self.remembered > self.remember_limit {
            // Forget the oldest eighth of the disconnected charge points (they boot again), so
            // the cost stays O(1) per disconnect on average and no one can wipe the whole
            // memory of a processor in one go.
            let forget = (self.remember_limit / 8).max(1);
            let now_ms = self.origin.elapsed().as_millis() as u64;
            if self.warnings.allow(now_ms) {
                warn!(
                    "processor={} remembers {} disconnected charge points (ocpp.max_disconnected: {} here): forgetting the {forget} seen longest ago",
                    self.index, self.remembered, self.remember_limit
                );
            }
            self.forget_oldest(forget);
        }
    }

    /// Forgets the `count` disconnected charge points seen longest ago (in memory, the state
    /// file and, in cluster mode, nowhere else: Redis keeps the fleet). Never one that
    /// authenticated at a profile above 0 (its floor must not be erased by someone booting
    /// made-up identities; only real credentials make such entries, so they are bounded by
    /// the fleet), and those with an open transaction only after all others.
    pub(super) fn forget_oldest(&mut self, count: usize) {
        let mut oldest: Vec<((bool, u64), ChargePointId)> = self
            .charge_points
            .iter()
            .filter(|(_, e)| e.conn.is_none() && e.profile == Profile::Unsecured)
            .map(|(cp, e)| {
                let key = (e.state.open_transaction.is_some(), e.seen.since_us);
                (key, ChargePointId::clone(cp))
            })
            .collect();
        let count = count.min(oldest.len());
        if count == 0 {
            return;
        }
        if count < oldest.len() {
            oldest.select_nth_unstable_by_key(count - 1, |(key, _)| *key);
            oldest.truncate(count);
        }
        let keep_state = self.state.is_some();
        for (_, cp) in oldest {
            if let Some(entry) = self.charge_points.remove(&cp)
                && keep_state
                && (entry.saved || entry.dirty)
            {
                self.forgotten.push(cp);
            }
        }
        self.stats.processors[self.index]
            .registrations_forgotten
            .add(count as u64);
        self.dirty.retain(|cp| self.charge_points.contains_key(cp));
        self.touched
            .retain(|cp| self.charge_points.contains_key(cp));
        self.remembered = self
            .charge_points
            .values()
            .filter(|e| e.conn.is_none())
            .count();
    }
}

/// A known charge point connects again: the new connection takes the identity over (its proof,
/// its listener, a higher profile floor), and another OCPP version registers it anew. Returns
/// the connection it replaced, if any; `dirty` (when the shard keeps state) lists it for the
/// state file when what is saved of it changed.
fn reconnect(
    held: &mut ChargePoint,
    cp: &ChargePointId,
    (conn, seq, auth, listener, version): (ConnId, u64, Auth, (Profile, bool), Version),
    (peer, certificate, now): (SocketAddr, Option<Box<Shown>>, SystemTime),
    dirty: Option<&mut Vec<ChargePointId>>,
) -> Option<ConnId> {
    let old = held.conn.replace(conn);
    held.held = None; // the old connection's messages: nobody left to answer
    held.seq = seq;
    held.state.auth = auth;
    held.listener = listener;
    let mut changed = false;
    if auth != Auth::None && listener.0 > held.profile {
        held.profile = listener.0;
        changed = held.state.registration == Registration::Accepted;
    }
    if held.state.version != version {
        // Another version is a new registration of the identity: what it booted, reported and
        // opened in the other version does not carry over (its security profile floor and
        // journal allowance do).
        info!(
            "cp={cp} reconnected with OCPP {} (was {}): registered anew",
            version.as_str(),
            held.state.version.as_str()
        );
        held.state = ChargePointState {
            auth,
            version,
            ..ChargePointState::default()
        };
        held.seen.boot = None;
        changed = true;
    }
    if changed
        && !held.dirty
        && let Some(dirty) = dirty
    {
        held.dirty = true;
        dirty.push(ChargePointId::clone(cp));
    }
    held.seen.peer = Some(peer);
    held.seen.since_us = epoch_us(now);
    // Streams are the connection's.
    if let Some(v201) = &mut held.state.v201 {
        v201.streams.clear();
    }
    // The same certificate again keeps its renewal flag; another one starts without.
    held.seen.certificate = match (held.seen.certificate.take(), certificate) {
        (Some(old), Some(new)) if old.facts == new.facts => Some(old),
        (_, new) => new,
    };
    old
}
