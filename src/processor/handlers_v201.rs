//! What the gateway answers to each OCPP 2.0.1 CALL from a charging station: the same built-in
//! policies as 1.6 ([`super::handlers::Policy`]: who may boot, which tokens are authorized, the
//! DataTransfer status), written for 2.0.1's messages. Pure, like the 1.6 handlers: the time,
//! the policies and the station's state are passed in.
//!
//! Order of checks for a CALL: the action and its payload against the official schema
//! (`ocpp::v201`: NotImplemented for an unknown action, NotSupported for one only a central
//! system sends, then the schema's violation); before the station is Accepted anything but
//! BootNotification is SecurityError (as 1.6's errata 3.8 and 2.0.1's B02/B03: a Pending or
//! Rejected station sends nothing else); then the policy answers.
//!
//! Answers by action:
//! - BootNotification: Accepted / Pending / Rejected by the allow-list and `ocpp.boot_status`,
//!   `interval` = `ocpp.heartbeat_interval`; on a profile-3 listener with
//!   `security.check_serial_number`, a `serialNumber` that is not the certificate's CN is
//!   Rejected and the connection closed after the answer (as 1.6).
//! - Heartbeat: `currentTime` (the loop gives the same answer when it answers one itself).
//! - Authorize: `idTokenInfo` from the tag list (every token Accepted without one).
//! - TransactionEvent: `{}`, with `idTokenInfo` when the event carries an `idToken` (the
//!   CSMS must then say what it thinks of the token); a billing message: the processor answers
//!   it only once it is kept (journal, Kafka, state file, as `events.ack_after_write` says).
//!   Each transaction's `seqNo` is followed ([`track`]): an event sent again (its answer was
//!   lost) is [`Effect::Resent`] - answered, but not journaled or published a second time -
//!   unless that answer may not have been kept (state from storage after a restart, a holder's
//!   refusal since): then [`Effect::Again`], kept again; a `seqNo` past the next expected one is
//!   an [`Effect::Gap`] the processor journals, and a skipped one that comes later is
//!   [`Effect::Late`], kept.
//! - DataTransfer: `ocpp.data_transfer_status`.
//! - SignCertificate: with `security.ca_cert` the CSR is checked (signature, CN = identity, key,
//!   extensions) and signed: Accepted, then CertificateSigned with the chain; in backend mode
//!   Accepted once checked (the backend signs); Rejected with the reason otherwise (and always
//!   without a signer). A V2GCertificate request is not signed by the gateway's CA.
//! - GetCertificateStatus: Failed (no OCSP responder is configured).
//! - NotifyEVChargingNeeds, NotifyEVChargingSchedule: Rejected (the gateway plans no charging).
//! - Get15118EVCertificate: NotSupported (no ISO 15118 certificate service).
//! - Every other station message (StatusNotification, MeterValues, NotifyReport, NotifyEvent,
//!   SecurityEventNotification, FirmwareStatusNotification, LogStatusNotification, ...): `{}`,
//!   after its payload was checked; it is journaled and published for the backend.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::handlers::{self, ChargePointState, Now, Policy, Registration};
use crate::security::signing::CsrRefusal;
use crate::state::{Connector201, ConnectorStatus201, OpenTransaction, State201};
use ocpp::rpc::CallErrorCode;
use ocpp::v16::{AuthorizationStatus, Invalid, RegistrationStatus};
use ocpp::v201::read as msg;
use ocpp::v201::{self, Action};

/// Open transactions a station may have at once (one per EVSE); beyond, the oldest is
/// forgotten (bounds what a hostile station makes us keep).
pub const MAX_OPEN_TRANSACTIONS: usize = 16;
/// Ended transactions remembered, to know their events when they are sent again.
pub const ENDED_REMEMBERED: usize = 4;

/// What a TransactionEvent meant besides its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing to add (every message but TransactionEvent, and a transaction's next event).
    Fresh,
    /// An event of this transaction already answered and kept (the station did not get the
    /// answer): answered again, not journaled or published twice.
    Resent,
    /// The last event answered, sent again when that answer may not have been kept (the state
    /// came from storage after a restart or failover, or a holder refused an answer since):
    /// answered and kept again (journaled and published: possibly a second time; consumers
    /// dedupe on transaction and `seqNo`).
    Again,
    /// A `seqNo` skipped earlier arrives (out of order, after an offline period): kept.
    Late,
    /// Its `seqNo` skipped some: `expected` was the next one (events are missing, or arrive
    /// out of order after an offline period).
    Gap { expected: u64 },
}

/// Answers one CALL of a 2.0.1 station: the CALLRESULT payload is written to `out`; the error
/// is the CALLERROR to answer instead. Ok carries the action (for counters and what follows)
/// and what a TransactionEvent meant.
pub fn write_answer(
    policy: &Policy,
    cp: &str,
    state: &mut ChargePointState,
    (name, payload): (&str, &RawValue),
    now: Now<'_>,
    out: &mut Vec<u8>,
) -> Result<(Action, Effect), (Option<Action>, Invalid)> {
    let edition = state.version.edition().unwrap_or(v201::Edition::V201);
    let known = Action::parse(name).filter(|a| a.in_edition(edition));
    write_answer_to(policy, cp, state, (name, known, payload), now, out)
}

/// [`write_answer`] for a CALL whose action the caller already looked up (`known`: the
/// action of that name in the station's edition, if there is one).
pub fn write_answer_to(
    policy: &Policy,
    cp: &str,
    state: &mut ChargePointState,
    (name, known, payload): (&str, Option<Action>, &RawValue),
    now: Now<'_>,
    out: &mut Vec<u8>,
) -> Result<(Action, Effect), (Option<Action>, Invalid)> {
    // 2.0.1 or 2.1: each checked by its own schemas, 2.1's additions unknown to 2.0.1.
    let edition = state.version.edition().unwrap_or(v201::Edition::V201);
    // An action we know that failed its schema is still counted as that action.
    let action = v201::check_request_as(edition, name, known, payload.get())
        .map_err(|invalid| (known, invalid))?;
    if action != Action::BootNotification && state.registration != Registration::Accepted {
        let description = format!("{name} before the station was accepted");
        return Err((
            Some(action),
            error(CallErrorCode::SecurityError, description),
        ));
    }
    let effect = answer(policy, cp, state, action, payload.get(), now, out)
        .map_err(|e| (Some(action), e))?;
    Ok((action, effect))
}

/// Follows a TransactionEvent's transaction by its `seqNo` (see [`Effect`]).
pub fn track(state: &mut ChargePointState, event: &msg::TransactionEvent<'_>) -> Effect {
    let transactions = state.v201.get_or_insert_default();
    // seqNo is an integer without a lower bound in the schema: a negative one is not followed.
    let Ok(seq) = u64::try_from(event.seq_no) else {
        return Effect::Fresh;
    };
    let id = &*event.transaction_info.transaction_id;
    // The last answered event may not be kept (after a restart, or a refusal since).
    let unsure = transactions.unsure;
    let ended = event.event_type == "Ended";
    let effect = if let Some(i) = transactions.open.iter().position(|t| &*t.id == id) {
        let open = &mut transactions.open[i];
        let effect = follow(open, seq, unsure);
        if ended && matches!(effect, Effect::Fresh | Effect::Gap { .. }) {
            let next = open.next_seq;
            transactions.open.remove(i);
            remember_ended(transactions, id, next);
        }
        effect
    } else if let Some((_, next)) = transactions
        .ended
        .iter()
        .find(|(ended, next)| &**ended == id && seq < *next)
    {
        // Of an ended transaction only the last event (its Ended) can come again: a station
        // sends one call at a time and resends only the one it got no answer for. An earlier
        // one that arrives is one it skipped (late, kept).
        match (seq + 1 == *next, unsure) {
            (true, false) => Effect::Resent,
            (true, true) => Effect::Again,
            (false, _) => Effect::Late,
        }
    } else {
        // A transaction seen for the first time: from its Started (seqNo 0), or later (after a
        // failover without the state, or a Started lost): then what came before is a gap.
        if ended {
            remember_ended(transactions, id, seq + 1);
        } else {
            if transactions.open.len() >= MAX_OPEN_TRANSACTIONS {
                transactions.open.remove(0);
            }
            let mut open = OpenTransaction {
                id: id.into(),
                evse_id: event.evse.as_ref().map(|e| e.id),
                id_token: event.id_token.as_ref().map(|t| (&*t.id_token).into()),
                meter_start_wh: event.meter_value.and_then(|m| v201::energy_wh(m.get())),
                next_seq: 0,
                missing: 0,
            };
            // The same window as every later event: what came before is missing.
            follow(&mut open, seq, false);
            transactions.open.push(open);
        }
        if seq > 0 {
            Effect::Gap { expected: 0 }
        } else {
            Effect::Fresh
        }
    };
    if effect != Effect::Resent {
        // Kept now (or refused, which the shard learns from the count): sure again.
        transactions.unsure = false;
    }
    effect
}

/// One event of an open transaction: the next one, one past it (a gap), one that was
/// missing, or one answered before (its resend: kept again when that answer may not be).
fn follow(open: &mut OpenTransaction, seq: u64, unsure: bool) -> Effect {
    if seq < open.next_seq {
        let back = open.next_seq - 1 - seq;
        if back < 64 && open.missing & (1 << back) != 0 {
            open.missing &= !(1 << back);
            return Effect::Late;
        }
        return if back == 0 && unsure {
            Effect::Again
        } else {
            Effect::Resent
        };
    }
    // seq >= next_seq: shift the window, marking what was skipped.
    let skipped = seq - open.next_seq;
    let shift = skipped + 1;
    open.missing = if shift >= 64 {
        u64::MAX << 1
    } else {
        let gap = ((1u64 << skipped) - 1) << 1;
        (open.missing << shift) | gap
    };
    let effect = if skipped > 0 {
        Effect::Gap {
            expected: open.next_seq,
        }
    } else {
        Effect::Fresh
    };
    open.next_seq = seq + 1;
    effect
}

/// Keeps the connector's status (up to [`handlers::MAX_CONNECTORS`]; reports beyond are
/// answered, not kept).
fn status_notification(state: &mut ChargePointState, request: &msg::StatusNotification<'_>) {
    let (Ok(evse_id), Ok(connector_id), Some(status)) = (
        u32::try_from(request.evse_id),
        u32::try_from(request.connector_id),
        ConnectorStatus201::parse(&request.connector_status),
    ) else {
        return;
    };
    let connectors = &mut state.v201.get_or_insert_default().connectors;
    let known = connectors
        .iter()
        .position(|c| (c.evse_id, c.connector_id) == (evse_id, connector_id));
    match known {
        Some(i) => connectors[i].status = status,
        None if connectors.len() < handlers::MAX_CONNECTORS => connectors.push(Connector201 {
            evse_id,
            connector_id,
            status,
        }),
        None => {}
    }
}

/// The status `cp` last reported for a StatusNotification's connector, before `payload`.
pub fn previous_status(state: &ChargePointState, payload: &str) -> Option<&'static str> {
    let request: msg::StatusNotification<'_> = msg::read(payload).ok()?;
    let v201 = state.v201.as_ref()?;
    v201.connectors
        .iter()
        .find(|c| {
            (i64::from(c.evse_id), i64::from(c.connector_id))
                == (request.evse_id, request.connector_id)
        })
        .map(|c| c.status.as_str())
}

fn remember_ended(transactions: &mut State201, id: &str, next: u64) {
    transactions.ended.retain(|(ended, _)| &**ended != id);
    if transactions.ended.len() >= ENDED_REMEMBERED {
        transactions.ended.remove(0);
    }
    transactions.ended.push((id.into(), next));
}

fn answer(
    policy: &Policy,
    cp: &str,
    state: &mut ChargePointState,
    action: Action,
    payload: &str,
    now: Now<'_>,
    out: &mut Vec<u8>,
) -> Result<Effect, Invalid> {
    let mut effect = Effect::Fresh;
    match action {
        Action::BootNotification => boot_notification(policy, cp, state, payload, now, out)?,
        Action::Heartbeat => write(
            out,
            &CurrentTime {
                current_time: time(now)?,
            },
        )?,
        Action::Authorize => {
            let request: msg::Authorize<'_> = read(payload)?;
            let id_token_info = id_token_info(policy, &request.id_token.id_token, now);
            write(out, &AuthorizeAnswer { id_token_info })?;
        }
        Action::TransactionEvent => {
            let request: msg::TransactionEvent<'_> = read(payload)?;
            effect = track(state, &request);
            let id_token_info = request
                .id_token
                .as_ref()
                .map(|token| id_token_info(policy, &token.id_token, now));
            write(out, &TransactionEventAnswer { id_token_info })?;
        }
        Action::DataTransfer => write(
            out,
            &Status {
                status: data_transfer_status(policy),
                status_info: None,
            },
        )?,
        Action::SignCertificate => sign_certificate(policy, cp, state, payload, now, out)?,
        Action::GetCertificateStatus => {
            refused(out, "Failed", ("NoOCSP", "no OCSP responder is configured"))?
        }
        Action::StatusNotification => {
            let request: msg::StatusNotification<'_> = read(payload)?;
            status_notification(state, &request);
            out.extend_from_slice(b"{}");
        }
        Action::NotifyEVChargingNeeds | Action::NotifyEVChargingSchedule => refused(
            out,
            "Rejected",
            ("NoSmartCharging", "the gateway does not plan charging"),
        )?,
        Action::Get15118EVCertificate => {
            return Err(error(
                CallErrorCode::NotSupported,
                "no ISO 15118 certificate service is configured".into(),
            ));
        }
        Action::OpenPeriodicEventStream => open_stream(state, payload, out)?,
        Action::ClosePeriodicEventStream => {
            let request: StreamId = read(payload)?;
            if let Some(v201) = &mut state.v201 {
                v201.streams.retain(|id| *id != request.id);
            }
            out.extend_from_slice(b"{}");
        }
        Action::PullDynamicScheduleUpdate => refused(
            out,
            "Rejected",
            (
                "NoSchedule",
                "the gateway keeps no dynamic charging schedules",
            ),
        )?,
        Action::VatNumberValidation => {
            let request: VatNumberRequest<'_> = read(payload)?;
            write(
                out,
                &VatNumberAnswer {
                    vat_number: &request.vat_number,
                    status: "Rejected",
                    status_info: StatusInfo {
                        reason_code: "NotSupported",
                        additional_info: "the gateway validates no VAT numbers",
                    },
                },
            )?
        }
        Action::GetCertificateChainStatus => chain_status(payload, now, out)?,
        // Every other station message, 2.1's acknowledgements among them (BatterySwap,
        // ClosePeriodicEventStream, NotifySettlement, NotifyDERAlarm, NotifyDERStartStop,
        // NotifyPriorityCharging, ReportDERControl): `{}`.
        _ => out.extend_from_slice(b"{}"),
    }
    Ok(effect)
}

/// A request the gateway cannot serve: `status` with its reason code and text.
fn refused(
    out: &mut Vec<u8>,
    status: &'static str,
    (reason_code, additional_info): (&'static str, &'static str),
) -> Result<(), Invalid> {
    write(
        out,
        &Status {
            status,
            status_info: Some(StatusInfo {
                reason_code,
                additional_info,
            }),
        },
    )
}

/// SignCertificate: signed by the sub-CA (CertificateSigned follows the answer), asked of the
/// backend, or Rejected with the CSR's fault.
fn sign_certificate(
    policy: &Policy,
    cp: &str,
    state: &mut ChargePointState,
    payload: &str,
    now: Now<'_>,
    out: &mut Vec<u8>,
) -> Result<(), Invalid> {
    let request: SignCertificateRequest<'_> = read(payload)?;
    let for_this_connection = matches!(
        request.certificate_type.as_deref(),
        None | Some("ChargingStationCertificate")
    );
    let signed = if !for_this_connection && matches!(policy.signing, handlers::Signer::Ca(_)) {
        // ISO 15118 certificates (-2 and -20) come from the V2G PKI, not the operator's sub-CA.
        Err(CsrRefusal::CertificateType)
    } else {
        handlers::sign_certificate(policy, (cp, state.auth), &request.csr, now.time)
    };
    match signed {
        Ok(signed) => {
            let call = signed
                .map(|signed| {
                    handlers::certificate_signed(state.version, &signed, request.request_id)
                })
                .transpose()?;
            state.follow_with(call);
            write(
                out,
                &Status {
                    status: "Accepted",
                    status_info: None,
                },
            )
        }
        Err(refusal) => refused(out, "Rejected", (refusal.code(), refusal.text())),
    }
}

/// 2.1: a station opens a periodic event stream (its SENDs are journaled, and count against
/// the rate limit), at most `MAX_STREAMS` at once.
fn open_stream(
    state: &mut ChargePointState,
    payload: &str,
    out: &mut Vec<u8>,
) -> Result<(), Invalid> {
    let request: OpenStream = read(payload)?;
    let id = request.constant_stream_data.id;
    let streams = &mut state.v201.get_or_insert_default().streams;
    if streams.contains(&id) || streams.len() < handlers::MAX_STREAMS {
        if !streams.contains(&id) {
            streams.push(id);
        }
        return write(
            out,
            &Status {
                status: "Accepted",
                status_info: None,
            },
        );
    }
    refused(
        out,
        "Rejected",
        (
            "TooManyStreams",
            "the gateway keeps at most 8 periodic event streams per station",
        ),
    )
}

/// 2.1: the status of each certificate asked about: Failed (no OCSP responder to ask).
fn chain_status(payload: &str, now: Now<'_>, out: &mut Vec<u8>) -> Result<(), Invalid> {
    let request: ChainStatusRequest<'_> = read(payload)?;
    let statuses: Vec<ChainStatus<'_>> = request
        .certificate_status_requests
        .iter()
        .map(|r| ChainStatus {
            certificate_hash_data: r.certificate_hash_data,
            source: &r.source,
            status: "Failed",
            next_update: now.text,
        })
        .collect();
    write(
        out,
        &ChainStatusAnswer {
            certificate_status: statuses,
        },
    )
}

/// Accepted, Pending or Rejected by `policy`, as for 1.6 ([`handlers::registration`]).
fn boot_notification(
    policy: &Policy,
    cp: &str,
    state: &mut ChargePointState,
    payload: &str,
    now: Now<'_>,
    out: &mut Vec<u8>,
) -> Result<(), Invalid> {
    let request: msg::BootNotification<'_> = read(payload)?;
    let serial = request.charging_station.serial_number.as_deref();
    let status = match handlers::registration(policy, cp, state, serial) {
        RegistrationStatus::Accepted => "Accepted",
        RegistrationStatus::Pending => "Pending",
        RegistrationStatus::Rejected => "Rejected",
    };
    write(
        out,
        &BootAnswer {
            current_time: time(now)?,
            interval: policy.heartbeat_interval_secs,
            status,
        },
    )
}

/// What the tag list says of a token (2.0.1 knows every 1.6 status by the same name).
fn id_token_info(policy: &Policy, token: &str, now: Now<'_>) -> IdTokenInfo {
    let Some(tags) = &policy.id_tags else {
        return IdTokenInfo {
            status: "Accepted",
            cache_expiry_date_time: None,
            group_id_token: None,
        };
    };
    let verdict = tags.check(token, now.time);
    IdTokenInfo {
        status: match verdict.status {
            AuthorizationStatus::Accepted => "Accepted",
            AuthorizationStatus::Blocked => "Blocked",
            AuthorizationStatus::Expired => "Expired",
            AuthorizationStatus::Invalid => "Invalid",
            AuthorizationStatus::ConcurrentTx => "ConcurrentTx",
        },
        cache_expiry_date_time: verdict.expiry,
        group_id_token: verdict.parent.map(|id_token| GroupIdToken {
            id_token,
            kind: "Central",
        }),
    }
}

fn data_transfer_status(policy: &Policy) -> &'static str {
    use ocpp::v16::DataTransferStatus::*;
    match policy.data_transfer_status {
        Accepted => "Accepted",
        Rejected => "Rejected",
        UnknownMessageId => "UnknownMessageId",
        UnknownVendorId => "UnknownVendorId",
    }
}

fn error(code: CallErrorCode, description: String) -> Invalid {
    Invalid { code, description }
}

fn time<'a>(now: Now<'a>) -> Result<&'a str, Invalid> {
    if now.text.is_empty() {
        return Err(error(
            CallErrorCode::InternalError,
            "the gateway's clock cannot be read".into(),
        ));
    }
    Ok(now.text)
}

/// Reads the fields a policy needs from a payload the schema check already passed.
fn read<'a, T: Deserialize<'a>>(payload: &'a str) -> Result<T, Invalid> {
    serde_json::from_str(payload).map_err(|e| {
        error(
            CallErrorCode::InternalError,
            format!("a checked payload could not be read: {e}"),
        )
    })
}

fn write<T: Serialize>(out: &mut Vec<u8>, value: &T) -> Result<(), Invalid> {
    serde_json::to_writer(out, value)
        .map_err(|e| error(CallErrorCode::InternalError, format!("answer: {e}")))
}

// ---- the fields read and written (the schemas define the rest) ----

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BootAnswer<'a> {
    current_time: &'a str,
    interval: u64,
    status: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CurrentTime<'a> {
    current_time: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IdTokenInfo {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_expiry_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_id_token: Option<GroupIdToken>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupIdToken {
    id_token: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizeAnswer {
    id_token_info: IdTokenInfo,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TransactionEventAnswer {
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token_info: Option<IdTokenInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenStream {
    constant_stream_data: StreamId,
}

#[derive(Deserialize)]
struct StreamId {
    id: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VatNumberRequest<'a> {
    #[serde(borrow)]
    vat_number: std::borrow::Cow<'a, str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VatNumberAnswer<'a> {
    vat_number: &'a str,
    status: &'static str,
    status_info: StatusInfo,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChainStatusRequest<'a> {
    #[serde(borrow)]
    certificate_status_requests: Vec<ChainStatusItem<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChainStatusItem<'a> {
    #[serde(borrow)]
    certificate_hash_data: &'a RawValue,
    #[serde(borrow)]
    source: std::borrow::Cow<'a, str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChainStatusAnswer<'a> {
    certificate_status: Vec<ChainStatus<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChainStatus<'a> {
    certificate_hash_data: &'a RawValue,
    source: &'a str,
    status: &'static str,
    next_update: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignCertificateRequest<'a> {
    #[serde(borrow)]
    csr: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    certificate_type: Option<std::borrow::Cow<'a, str>>,
    /// 2.1: given back in CertificateSigned.
    request_id: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_info: Option<StatusInfo>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusInfo {
    reason_code: &'static str,
    additional_info: &'static str,
}

#[cfg(test)]
mod tests;
