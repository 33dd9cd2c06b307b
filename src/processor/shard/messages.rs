//! A message from a charge point: the CALL answered by the handlers (or refused with a
//! CallError), what it changes, its journal lines, and answers held for the sinks.

use super::*;

impl Shard {
    /// One text message of a connection: answered into its loop's reply batch.
    pub(super) fn message(
        &mut self,
        conn: ConnId,
        cp: &ChargePointId,
        text: &str,
        out: &mut Outputs<'_>,
    ) {
        let Some(replies) = out.replies.get_mut(usize::from(conn.loop_index)) else {
            return;
        };
        let Some(entry) = self
            .charge_points
            .get_mut(cp)
            .filter(|e| e.conn == Some(conn))
        else {
            debug!("cp={cp} dropping a message of a replaced connection");
            return replies.none(conn, false);
        };
        if let Some(held) = &mut entry.held {
            held.push((conn, Box::from(text)));
            return;
        }
        let accepted = entry.state.registration == Registration::Accepted;
        let version = entry.state.version;
        let parsed = if version == Version::V21 {
            rpc::parse_frame_21(text)
        } else {
            rpc::parse_frame(text)
        };
        match parsed {
            Ok(Frame::Call {
                unique_id,
                action,
                payload,
            }) => self.call(conn, cp, (&unique_id, &action, payload), out),
            // 2.1's SEND: checked and journaled, never answered.
            Ok(Frame::Send {
                unique_id,
                action,
                payload,
            }) => {
                let sent = Sent {
                    unique_id: &unique_id,
                    action: &action,
                    payload,
                };
                self.send(cp, &sent, out.writer.as_deref_mut());
                replies.none(conn, accepted)
            }
            // Answers to our CALLs are matched by the loop that sent them; a CALLRESULTERROR
            // (2.1: the station could not process our answer to its CALL) is counted and logged.
            Ok(Frame::CallResult { .. } | Frame::CallError { .. }) => replies.none(conn, accepted),
            Ok(Frame::CallResultError {
                unique_id,
                code,
                description,
                ..
            }) => {
                self.stats().call_result_errors_received.inc();
                if self
                    .warnings
                    .allow(self.origin.elapsed().as_millis() as u64)
                {
                    warn!(
                        "cp={cp} could not process our answer to its call {:?}: {}: {}",
                        rpc::capped(&unique_id),
                        rpc::capped(&code),
                        rpc::capped(&description)
                    );
                }
                replies.none(conn, accepted)
            }
            Err(error) => self.unusable(conn, cp, error, replies, (accepted, version)),
        }
    }

    /// A CALL of a connection's charge point: counted, answered by the handlers of its
    /// version (or refused with a CallError), what it changes marked for the state file, then
    /// journaled and its answer sent or held for the places that must keep it first.
    fn call(
        &mut self,
        conn: ConnId,
        cp: &ChargePointId,
        (unique_id, action, payload): (&str, &str, &RawValue),
        out: &mut Outputs<'_>,
    ) {
        let keeps_state = self.keeps_state();
        let (Some(replies), Some(entry)) = (
            out.replies.get_mut(usize::from(conn.loop_index)),
            self.charge_points.get_mut(cp),
        ) else {
            return;
        };
        let version = entry.state.version;
        let at = SystemTime::now();
        let now = Now {
            time: at,
            text: self.clock.text(at),
        };
        // Once per message, for counters and the handler: the action in the version spoken.
        let (known, known201) = match version {
            Version::V16 => (Action::from_name(action), None),
            Version::V201 | Version::V21 => (
                None,
                v201::Action::parse(action)
                    .filter(|a| version.edition().is_some_and(|e| a.in_edition(e))),
            ),
        };
        let mut call = CallIn {
            at,
            unique_id,
            action,
            known,
            known201,
            previous201: None,
            version,
            payload,
        };
        let stats = &self.stats;
        count_call(stats, self.index, &call);
        entry.seen.last_message_ms = NonZeroU64::new(epoch_ms(at).max(1));
        if known201 == Some(v201::Action::TransactionEvent) {
            unsure_of_last_event(stats, self.owed_events.any(cp), entry);
        }
        let integrated = integrated_before(
            &self.policy,
            out.writer.as_deref().is_some_and(|w| w.integrates()),
            entry,
            &mut call,
        );
        let draft = replies.begin();
        rpc::write_call_result_head(replies.payload(), unique_id);
        let payload_start = replies.draft_text(&draft).len();
        let (answered, effect) = answer_call(
            &self.policy,
            cp,
            &mut entry.state,
            &call,
            now,
            replies.payload(),
        );
        let error = match answered {
            Ok(()) => {
                replies.payload().push(rpc::CALL_RESULT_END);
                if known == Some(Action::BootNotification)
                    || known201 == Some(v201::Action::BootNotification)
                {
                    entry.seen.boot = compact(payload);
                }
                if keeps_state && call_changes_state(&call) && !entry.dirty {
                    entry.dirty = true;
                    self.dirty.push(ChargePointId::clone(cp));
                }
                None
            }
            Err(invalid) => {
                let stats = (
                    &*stats.processors[self.index],
                    &*stats.processor_labelled[self.index],
                );
                answer_with_call_error(stats, cp, &call, &invalid, replies, &draft);
                Some(invalid)
            }
        };
        let accepted = entry.state.registration == Registration::Accepted;
        after_answer(
            &stats.processors[self.index],
            (conn, cp),
            &mut entry.state,
            out.closes,
            out.calls,
        );
        // A resent event was journaled and published when it first came: not again (a resend
        // while the first copy's answer is still held is `Again`, see above). Its answer is
        // held like any billing answer.
        let resent = effect == Effect::Resent;
        if matches!(effect, Effect::Resent | Effect::Again) {
            stats.processors[self.index].transaction_events_resent.inc();
        }
        let billing = error.is_none() && kept_like_billing(&self.policy, &call);
        // Billing answers wait until every place that keeps them has them (the sinks, the
        // state file) when asked to; errors never need to.
        let holds_state = billing && self.state.as_ref().is_some_and(StateSender::holds);
        let mut writer = out.writer.as_deref_mut();
        if let Some(writer) = writer.as_deref_mut() {
            if let Effect::Gap { expected } = effect {
                stats.processors[self.index].transaction_seq_gaps.inc();
                record_gap(&mut *writer, (call.at, cp), payload, expected);
            }
            if !resent {
                let answer =
                    journaled_answer(replies, &draft, payload_start, (error.as_ref(), version));
                let journaling = Journaling {
                    writer,
                    rule: self.journal_rule,
                    now_ms: self.origin.elapsed().as_millis() as u64,
                    stats: &self.stats.processors[self.index],
                };
                journal_call(
                    journaling,
                    entry,
                    cp,
                    &call,
                    answer,
                    (billing, integrated.as_deref()),
                );
            }
        }
        let sinks = writer.filter(|_| self.acks_after_write && billing);
        let state = self.state.as_ref().filter(|_| holds_state);
        let held = send_or_hold(
            replies,
            draft,
            (conn, accepted),
            sinks,
            state.map(|s| (s, &mut self.state_held)),
        );
        if let Some(answer) = held
            && call.known201 == Some(v201::Action::TransactionEvent)
        {
            self.owed_events.push(cp, &answer);
        }
    }

    /// A 2.1 SEND of an accepted station: checked against its schema and its stream, journaled
    /// within the charge point's journal allowance like a CALL (and published with
    /// `kafka.raw_frames`), never answered; a SEND that is not one, breaks its schema or names
    /// a stream not open is counted and logged within the warning budget.
    fn send(
        &mut self,
        cp: &ChargePointId,
        sent: &Sent<'_>,
        writer: Option<&mut (dyn EventWriter + 'static)>,
    ) {
        let Some(entry) = self.charge_points.get_mut(cp) else {
            return;
        };
        let accepted = entry.state.registration == Registration::Accepted;
        let streams = entry
            .state
            .v201
            .as_ref()
            .map_or(&[][..], |v| &v.streams[..]);
        let action = match check_send(sent, accepted, streams) {
            Ok(action) => action,
            Err(invalid) => {
                self.stats.processors[self.index].unanswerable_frames.inc();
                if self
                    .warnings
                    .allow(self.origin.elapsed().as_millis() as u64)
                {
                    warn!(
                        "cp={cp} SEND {:?} dropped: {}",
                        sent.unique_id, invalid.description
                    );
                }
                return;
            }
        };
        self.stats.processors[self.index].sends_received.inc();
        let Some(writer) = writer else {
            return;
        };
        let at = SystemTime::now();
        let integrates = writer.integrates();
        let mut journaling = Journaling {
            writer,
            rule: self.journal_rule,
            now_ms: self.origin.elapsed().as_millis() as u64,
            stats: &self.stats.processors[self.index],
        };
        let line = Event {
            at,
            cp,
            kind: EventKind::CallIn {
                unique_id: sent.unique_id,
                action: sent.action,
                payload: Body::Whole(sent.payload.get()),
            },
        };
        let suppressed = journaling.record(&mut entry.journal, &line, false);
        entry.seen.suppressed(suppressed);
        if integrates {
            // Published like 2.1's other new messages (`charge_point.message`), unanswered;
            // what a message means is never left out by the allowance.
            journaling.writer.record(&Event {
                at,
                cp,
                kind: EventKind::Accepted201 {
                    unique_id: sent.unique_id,
                    version: Version::V21,
                    action,
                    request: sent.payload.get(),
                    answer: "",
                    previous_status: None,
                },
            });
        }
    }

    /// A message that is not a CALL nor an answer to ours: a CALLERROR when it can be
    /// answered, nothing otherwise; counted, and logged within the warning budget.
    pub(super) fn unusable(
        &mut self,
        conn: ConnId,
        cp: &ChargePointId,
        error: FrameError,
        replies: &mut ReplyBatch,
        (accepted, version): (bool, Version),
    ) {
        match error {
            FrameError::Answer {
                unique_id,
                code,
                description,
            } => {
                self.stats().malformed_calls.inc();
                self.labelled().call_errors_by_code[code.index()].inc();
                let draft = replies.begin();
                let out = replies.payload();
                rpc::write_call_error_in(out, version, &unique_id, code, &description);
                replies.finish(draft, conn, accepted);
            }
            FrameError::Unanswerable { reason } => {
                self.stats().unanswerable_frames.inc();
                let now_ms = self.origin.elapsed().as_millis() as u64;
                if self.warnings.allow(now_ms) {
                    warn!(
                        "cp={cp} processor={} unanswerable message: {reason}",
                        self.index
                    );
                }
                replies.none(conn, accepted);
            }
            // 2.0.1 and 2.1 answer an unknown type when it can name the message; 1.6 ignores it.
            FrameError::UnknownMessageType {
                message_type,
                unique_id: Some(unique_id),
            } if version != Version::V16 => {
                self.stats().call_errors_sent.inc();
                let draft = replies.begin();
                let description = format!("MessageTypeNumber {message_type} is not supported");
                let out = replies.payload();
                rpc::write_call_error_coded(
                    out,
                    &unique_id,
                    "MessageTypeNotSupported",
                    &description,
                );
                replies.finish(draft, conn, accepted);
            }
            FrameError::UnknownMessageType { message_type, .. } => {
                self.stats().ignored_frames.inc();
                debug!("cp={cp} ignored message type {message_type}");
                replies.none(conn, accepted);
            }
        }
    }

    /// A Heartbeat the loop answered itself (see `net::session`): counted and journaled here,
    /// in order with everything else of the charge point, exactly as if answered here.
    pub(super) fn answered(
        &mut self,
        conn: ConnId,
        cp: &ChargePointId,
        call: &str,
        answer: &str,
        at: SystemTime,
        writer: Option<&mut (dyn EventWriter + 'static)>,
    ) {
        let Some(entry) = self
            .charge_points
            .get_mut(cp)
            .filter(|e| e.conn == Some(conn))
        else {
            return; // a replaced connection: its messages are not journaled
        };
        let Ok(Frame::Call {
            unique_id,
            action,
            payload,
        }) = rpc::parse_frame(call)
        else {
            return;
        };
        self.stats.processors[self.index].calls_handled.inc();
        let labelled = &self.stats.processor_labelled[self.index];
        match entry.state.version {
            Version::V16 => labelled.calls_by_action[action_slot(Some(Action::Heartbeat))].inc(),
            Version::V201 | Version::V21 => {
                labelled.calls_by_action_v201[v201::Action::Heartbeat.index()].inc()
            }
        }
        entry.seen.last_message_ms = NonZeroU64::new(epoch_ms(at).max(1));
        if let Some(writer) = writer {
            let mut journaling = Journaling {
                writer,
                rule: self.journal_rule,
                now_ms: self.origin.elapsed().as_millis() as u64,
                stats: &self.stats.processors[self.index],
            };
            let call = (&*unique_id, &*action, payload.get());
            let suppressed = journaling.exchange(
                &mut entry.journal,
                (at, cp),
                call,
                Answer::Result(answer),
                false,
            );
            entry.seen.suppressed(suppressed);
        }
    }
}

/// A 2.1 SEND as read.
struct Sent<'a> {
    unique_id: &'a str,
    action: &'a str,
    payload: &'a RawValue,
}

/// Whether a SEND may be kept: one of 2.1's SENDs, from an accepted station, valid by its
/// schema, for a stream the station opened on this connection.
fn check_send(sent: &Sent<'_>, accepted: bool, streams: &[u32]) -> Result<v201::Action, Invalid> {
    let Some(action) = v201::Action::parse(sent.action).filter(|a| a.is_send()) else {
        return Err(Invalid {
            code: rpc::CallErrorCode::NotImplemented,
            description: format!("{:?} is not a SEND of OCPP 2.1", rpc::capped(sent.action)),
        });
    };
    if !accepted {
        return Err(Invalid {
            code: rpc::CallErrorCode::SecurityError,
            description: "a SEND before the station was accepted".into(),
        });
    }
    v201::check_in(
        v201::Edition::V21,
        action,
        v201::Part::Request,
        sent.payload.get(),
    )?;
    // NotifyPeriodicEventStream belongs to a stream the station opened.
    match serde_json::from_str::<SendStream>(sent.payload.get()) {
        Ok(stream) if streams.contains(&stream.id) => Ok(action),
        _ => Err(Invalid {
            code: rpc::CallErrorCode::PropertyConstraintViolation,
            description: "the stream was not opened on this connection".into(),
        }),
    }
}

/// The stream a NotifyPeriodicEventStream belongs to.
#[derive(serde::Deserialize)]
struct SendStream {
    id: u32,
}

/// Counts a CALL, under its action in the version spoken.
fn count_call(stats: &Stats, index: usize, call: &CallIn<'_>) {
    stats.processors[index].calls_handled.inc();
    let labelled = &stats.processor_labelled[index];
    match call.version {
        Version::V16 => labelled.calls_by_action[action_slot(call.known)].inc(),
        Version::V201 | Version::V21 => {
            let slot = call
                .known201
                .map_or(v201::Action::ALL.len(), v201::Action::index);
            labelled.calls_by_action_v201[slot].inc();
        }
    }
}

/// What an integration sink (Kafka) needs of the charge point from before the message changes
/// it: a 1.6 StatusNotification's connectors (returned), a 2.0.1 one's status (set in `call`).
/// None: the message makes no integration event (no such sink, not such a message, or a
/// SignCertificate the gateway signs itself, which is not the backend's business).
fn integrated_before(
    policy: &Policy,
    integrates: bool,
    entry: &ChargePoint,
    call: &mut CallIn<'_>,
) -> Option<Vec<(u32, ChargePointStatus)>> {
    let for_backend = !signing(call) || backend_signs(policy);
    let integrates = integrates
        && for_backend
        && (call.known.is_some_and(events::is_integrated)
            || call.known201.is_some_and(events::is_integrated_v201));
    if !integrates {
        return None;
    }
    if call.known201 == Some(v201::Action::StatusNotification) {
        call.previous201 = handlers_v201::previous_status(&entry.state, call.payload.get());
    }
    Some(match call.known {
        Some(Action::StatusNotification) => entry.state.connectors.to_vec(),
        _ => Vec::new(),
    })
}

/// Writes the answer's payload by the handlers of the call's version; what the message meant
/// to the transaction it belongs to (2.0.1: fresh, resent, after a gap) with it.
fn answer_call(
    policy: &Policy,
    cp: &ChargePointId,
    state: &mut ChargePointState,
    call: &CallIn<'_>,
    now: Now<'_>,
    out: &mut Vec<u8>,
) -> (Result<(), Invalid>, Effect) {
    match call.version {
        Version::V16 => {
            let answered = handlers::write_answer(
                policy,
                cp,
                state,
                call.action,
                call.known,
                call.payload,
                now,
                out,
            );
            (answered, Effect::Fresh)
        }
        Version::V201 | Version::V21 => {
            // The action was looked up once, for the counters: not again.
            let named = (call.action, call.known201, call.payload);
            match handlers_v201::write_answer_to(policy, cp, state, named, now, out) {
                Ok((_, effect)) => (Ok(()), effect),
                Err((_, invalid)) => (Err(invalid), Effect::Fresh),
            }
        }
    }
}

/// Whether an answered CALL changes what the state file keeps of the charge point.
fn call_changes_state(call: &CallIn<'_>) -> bool {
    call.known.is_some_and(super::changes_state)
        || matches!(
            call.known201,
            Some(
                v201::Action::BootNotification
                    | v201::Action::TransactionEvent
                    | v201::Action::StatusNotification
            )
        )
}

/// What an answer asks to happen after it: the connection closed (a BootNotification whose
/// serial number is not its certificate's CN), a call of ours (CertificateSigned).
fn after_answer(
    stats: &ProcessorStats,
    (conn, cp): (ConnId, &ChargePointId),
    state: &mut ChargePointState,
    closes: &mut Vec<(ConnId, CloseReason)>,
    calls: &mut Vec<(ConnId, ChargePointId, Box<FollowUp>)>,
) {
    let Some(after) = state.after.take() else {
        return;
    };
    if let Some(reason) = after.close {
        if reason == CloseReason::SerialMismatch {
            stats.serial_mismatches.inc();
            warn!(
                "cp={cp} BootNotification serial number is not the certificate's CN: Rejected, closing"
            );
        }
        closes.push((conn, reason));
    }
    if let Some(follow_up) = after.call {
        calls.push((conn, ChargePointId::clone(cp), follow_up));
    }
}

/// Before a station's TransactionEvent: its last answered event may be the one not kept when a
/// holder refused some answer since (the station was told to send again), or when an answer of
/// this station's is still held (`owed`: its first copy may yet be refused, and the holders'
/// verdicts do not carry over to a resend's answer). A resend of it is then kept again.
fn unsure_of_last_event(stats: &Stats, owed: bool, entry: &mut ChargePoint) {
    let refused = stats.held_answers_refused();
    if let Some(v201) = entry.state.v201.as_mut()
        && (refused > v201.refused_at || owed)
    {
        v201.unsure = true;
        v201.refused_at = refused;
    }
}

/// Sends an answer, or holds it for every place that must keep its message first: the sinks
/// (through their writer) and the state file. One answer for all its holders: the last to
/// settle it sends it.
fn send_or_hold(
    replies: &mut ReplyBatch,
    draft: Draft,
    (conn, accepted): (ConnId, bool),
    sinks: Option<&mut (dyn EventWriter + 'static)>,
    state: Option<(&StateSender, &mut HeldAnswers)>,
) -> Option<events::HeldAnswer> {
    let sealed = replies.seal(draft);
    if sinks.is_none() && state.is_none() {
        replies.commit(sealed, conn, accepted);
        return None;
    }
    let holders = sinks.as_deref().map_or(0, |w| w.holders()) + usize::from(state.is_some());
    let answer = events::Held::new(conn, replies.sealed(&sealed), holders);
    if let Some(writer) = sinks {
        writer.hold(&answer);
    }
    if let Some((state, held)) = state {
        state.hold(held, &answer);
    }
    replies.discard(sealed);
    Some(answer)
}

/// Whether an answered CALL is kept like billing: its answer held until every place that keeps
/// it has it (with `events.ack_after_write`), its journal lines never left out. Billing itself
/// (transactions, meter values, 2.1's NotifySettlement: a payment settled), and a CSR for the
/// backend to sign: the station, told Accepted, waits for a certificate that only the published
/// request can bring.
pub(super) fn kept_like_billing(policy: &Policy, call: &CallIn<'_>) -> bool {
    call.known.is_some_and(is_billing)
        || matches!(
            call.known201,
            Some(v201::Action::TransactionEvent | v201::Action::NotifySettlement)
        )
        || (signing(call) && backend_signs(policy))
}

/// A SignCertificate, of either version.
fn signing(call: &CallIn<'_>) -> bool {
    call.known == Some(Action::SignCertificate)
        || call.known201 == Some(v201::Action::SignCertificate)
}

/// The backend signs certificates (`security.certificate_signing = "backend"`).
fn backend_signs(policy: &Policy) -> bool {
    matches!(policy.signing, handlers::Signer::Backend)
}
