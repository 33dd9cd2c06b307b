//! A charge point's journal lines: each CALL and its answer, within the charge point's
//! allowance (`journal_budget`), billing lines always.

use super::*;

/// Writes a charge point's journal lines within its allowance (see `journal_budget`).
pub(super) struct Journaling<'w, 's> {
    pub(super) writer: &'w mut dyn EventWriter,
    pub(super) rule: BudgetRule,
    pub(super) now_ms: u64,
    pub(super) stats: &'s ProcessorStats,
}

impl Journaling<'_, '_> {
    /// Writes `event` unless the allowance is spent (`always`: billing lines, written anyway);
    /// the lines left out (0 or 1), for the charge point's own count.
    pub(super) fn record(
        &mut self,
        budget: &mut JournalBudget,
        event: &Event<'_>,
        always: bool,
    ) -> u64 {
        match budget.admit(self.rule, self.now_ms, event.approx_len(), always) {
            Admit::Write => self.writer.record(event),
            Admit::WriteAfterSummary { lines, bytes } => {
                self.summary(event.at, event.cp, lines, bytes);
                self.writer.record(event);
            }
            Admit::Suppress => {
                self.stats.journal_lines_suppressed.inc();
                return 1;
            }
        }
        0
    }

    pub(super) fn summary(&mut self, at: SystemTime, cp: &str, lines: u32, bytes: u64) {
        self.writer.record(&Event {
            at,
            cp,
            kind: EventKind::Suppressed { lines, bytes },
        });
    }

    /// Journals a CALL from a charge point (`call`: UniqueId, action, payload) and our answer.
    /// A refused CALL keeps only the start of its payload.
    pub(super) fn exchange(
        &mut self,
        budget: &mut JournalBudget,
        (at, cp): (SystemTime, &str),
        (unique_id, action, payload): (&str, &str, &str),
        answer: Answer<'_>,
        billing: bool,
    ) -> u64 {
        let payload = match answer {
            Answer::Result(_) => Body::Whole(payload),
            Answer::Error { .. } => Body::Prefix(payload),
        };
        let call = EventKind::CallIn {
            unique_id,
            action,
            payload,
        };
        let reply = EventKind::AnswerOut {
            unique_id,
            action,
            answer,
        };
        self.record(budget, &Event { at, cp, kind: call }, billing)
            + self.record(
                budget,
                &Event {
                    at,
                    cp,
                    kind: reply,
                },
                billing,
            )
    }
}

/// A CALL from a charge point being handled.
pub(super) struct CallIn<'a> {
    pub(super) at: SystemTime,
    pub(super) unique_id: &'a str,
    pub(super) action: &'a str,
    /// `action`, when it is an OCPP 1.6 action (of a 1.6 connection).
    pub(super) known: Option<Action>,
    /// `action`, when it is an OCPP 2.0.1 action (of a 2.0.1 connection).
    pub(super) known201: Option<v201::Action>,
    /// A 2.0.1 StatusNotification: the connector's status before it.
    pub(super) previous201: Option<&'static str>,
    /// The version the connection speaks (how a CALLERROR's code is spelled).
    pub(super) version: Version,
    pub(super) payload: &'a RawValue,
}

/// Replaces the answer being written at `draft` with the CALLERROR `invalid`, counted.
pub(super) fn answer_with_call_error(
    (stats, labelled): (&ProcessorStats, &ProcessorLabelled),
    cp: &str,
    call: &CallIn<'_>,
    invalid: &Invalid,
    replies: &mut ReplyBatch,
    draft: &Draft,
) {
    stats.call_errors_sent.inc();
    labelled.call_errors_by_code[invalid.code.index()].inc();
    debug!(
        "cp={cp} {} -> CALLERROR {}: {}",
        call.action, invalid.code, invalid.description
    );
    replies.rewind(draft);
    rpc::write_call_error_in(
        replies.payload(),
        call.version,
        call.unique_id,
        invalid.code,
        &invalid.description,
    );
}

/// The answer written at `draft` as the journal shows it: the CALLRESULT's payload (from
/// `payload_start` to the closing bracket), or the CALLERROR.
pub(super) fn journaled_answer<'r>(
    replies: &'r ReplyBatch,
    draft: &Draft,
    payload_start: usize,
    (error, version): (Option<&'r Invalid>, Version),
) -> Answer<'r> {
    match error {
        None => {
            let text = replies.draft_text(draft);
            let payload = &text[payload_start..text.len() - 1];
            Answer::Result(std::str::from_utf8(payload).unwrap_or("{}"))
        }
        Some(invalid) => Answer::Error {
            code: invalid.code.spelled(version),
            description: &invalid.description,
        },
    }
}

/// Journals a CALL and its answer within the charge point's allowance (what is left out is
/// counted for the API), then, for integration sinks (`integrated`: the connectors' statuses
/// before the call), what an accepted call meant, which the allowance never leaves out.
pub(super) fn journal_call(
    mut journaling: Journaling<'_, '_>,
    entry: &mut ChargePoint,
    cp: &str,
    call: &CallIn<'_>,
    answer: Answer<'_>,
    (billing, integrated): (bool, Option<&[(u32, ChargePointStatus)]>),
) {
    let suppressed = journaling.exchange(
        &mut entry.journal,
        (call.at, cp),
        (call.unique_id, call.action, call.payload.get()),
        answer,
        billing,
    );
    entry.seen.suppressed(suppressed);
    let (Some(connectors_before), Answer::Result(answer)) = (integrated, answer) else {
        return;
    };
    let kind = match (call.known, call.known201) {
        (Some(action), _) => EventKind::Accepted {
            unique_id: call.unique_id,
            action,
            request: call.payload.get(),
            answer,
            connectors_before,
        },
        (None, Some(action)) => EventKind::Accepted201 {
            unique_id: call.unique_id,
            version: call.version,
            action,
            request: call.payload.get(),
            answer,
            previous_status: call.previous201,
        },
        (None, None) => return,
    };
    journaling.writer.record(&Event {
        at: call.at,
        cp,
        kind,
    });
}

/// Journals that a 2.0.1 TransactionEvent's `seqNo` skipped some (never left out by the
/// allowance: what is missing from a bill must be visible).
pub(super) fn record_gap(
    writer: &mut dyn EventWriter,
    (at, cp): (SystemTime, &str),
    payload: &RawValue,
    expected: u64,
) {
    let Ok(event) = v201::read::read::<v201::read::TransactionEvent<'_>>(payload.get()) else {
        return;
    };
    let Ok(seq_no) = u64::try_from(event.seq_no) else {
        return;
    };
    writer.record(&Event {
        at,
        cp,
        kind: EventKind::SeqGap {
            transaction_id: &event.transaction_info.transaction_id,
            expected,
            seq_no,
        },
    });
}
