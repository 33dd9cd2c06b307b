//! What the gateway answers to each CALL from a charge point: the built-in Core profile policies
//! and the security extension's notifications. Pure: the time, the policies and the charge
//! point's state are passed in, so every answer is unit-tested without sockets or threads.
//! Answers are written straight into the caller's buffer (the reply batch, right behind the
//! envelope's head): a Heartbeat's by hand, the others by `serde_json`, none through an
//! intermediate value.
//!
//! Order of checks for a CALL: an action name OCPP 1.6 does not have is NotImplemented; one a
//! charge point never sends is NotSupported; before the charge point is Accepted anything but
//! BootNotification is SecurityError (errata 3.8); then the payload is validated against its
//! schema (the CallError names the field), and the policy answers.

use std::num::NonZeroI32;
use std::sync::Arc;
use std::time::SystemTime;

use log::{debug, info};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::policy::{IdTags, Identities, TransactionIds};
use crate::security::Auth;
use crate::security::signing::{self, CertificateAuthority, CsrRefusal, Signed};
use crate::state::State201;
use crate::types::{CloseReason, Version};
use ocpp::AnyAction;
use ocpp::rpc::CallErrorCode;
use ocpp::v16::{
    self, Action, AuthorizationStatus, ChargePointStatus, DataTransferStatus, DateTime, IdTagInfo,
    IdToken, Invalid, RegistrationStatus,
};

/// The policies handlers answer by (shared by all processors).
#[derive(Debug)]
pub struct Policy {
    /// `interval` of an accepted BootNotification, in seconds.
    pub heartbeat_interval_secs: u64,
    pub boot_status: RegistrationStatus,
    /// Identities allowed to boot (None: everyone).
    pub identities: Option<Arc<Identities>>,
    /// Authorized idTags (None: every idTag is Accepted).
    pub id_tags: Option<IdTags>,
    pub data_transfer_status: DataTransferStatus,
    pub transactions: Arc<TransactionIds>,
    /// A charge point that connected with a client certificate must boot with that
    /// certificate's CN (its identity) as `chargePointSerialNumber`, or be Rejected and closed.
    pub check_serial_number: bool,
    /// Who signs the certificates charge points ask for (SignCertificate).
    pub signing: Signer,
}

/// Who signs a charge point's certificate (`security.certificate_signing`).
#[derive(Debug, Clone, Default)]
pub enum Signer {
    /// Nobody: SignCertificate is Rejected.
    #[default]
    Off,
    /// The gateway's sub-CA: Accepted, then CertificateSigned with the chain.
    Ca(Arc<CertificateAuthority>),
    /// The backend: Accepted once the request passed the checks, published as
    /// `certificate.sign_requested`; the chain comes back as a CertificateSigned call.
    Backend,
}

/// A call the processor sends the charge point once the answer to its CALL is out
/// (CertificateSigned after SignCertificate).
#[derive(Debug, Clone)]
pub struct FollowUp {
    pub action: AnyAction,
    pub payload: Box<RawValue>,
}

impl PartialEq for FollowUp {
    fn eq(&self, other: &FollowUp) -> bool {
        self.action == other.action && self.payload.get() == other.payload.get()
    }
}

/// What the handlers make of a SignCertificate's `csr` (both versions): the request checked,
/// and with the gateway's CA signed. Ok(None): accepted for the backend to sign.
pub fn sign_certificate(
    policy: &Policy,
    (cp, auth): (&str, Auth),
    csr: &str,
    now: SystemTime,
) -> Result<Option<Signed>, CsrRefusal> {
    if matches!(policy.signing, Signer::Off) {
        return Err(CsrRefusal::NoAuthority);
    }
    // A connection that proved nothing (profile 0) must not obtain a certificate for the
    // identity it merely named: with it, it could take the identity over on profile 3.
    if auth == Auth::None {
        return Err(CsrRefusal::NotAuthenticated);
    }
    // The CA's pace bounds the work of checking and signing, whoever asks.
    if let Signer::Ca(ca) = &policy.signing {
        ca.admit(std::time::Instant::now())?;
    }
    let checked = signing::check_csr(csr, cp)?;
    let Signer::Ca(ca) = &policy.signing else {
        return Ok(None);
    };
    let mut serial = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial)
        .map_err(|_| CsrRefusal::Signing)?;
    let signed = ca.sign(&checked, now, serial)?;
    info!(
        "cp={cp} certificate signed: serial {}, notAfter {} (epoch s)",
        signed.serial, signed.not_after
    );
    Ok(Some(signed))
}

/// The CertificateSigned call that delivers `signed` to a charge point of `version`, checked
/// against the action's schema (a CA chain too long for `certificateChain` fails here, and the
/// request is answered with an InternalError rather than Accepted and never followed).
pub fn certificate_signed(
    version: Version,
    signed: &Signed,
    request_id: Option<i64>,
) -> Result<Box<FollowUp>, Invalid> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Payload<'a> {
        certificate_chain: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        certificate_type: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<i64>,
    }
    let payload = Payload {
        certificate_chain: &signed.chain,
        certificate_type: (version != Version::V16).then_some("ChargingStationCertificate"),
        // 2.1 matches the certificate with its request by the request's id.
        request_id: request_id.filter(|_| version == Version::V21),
    };
    let text = serde_json::to_string(&payload)
        .map_err(|e| error(CallErrorCode::InternalError, format!("answer: {e}")))?;
    let payload = RawValue::from_string(text)
        .map_err(|e| error(CallErrorCode::InternalError, format!("answer: {e}")))?;
    let action = AnyAction::csms_call("CertificateSigned", &payload)
        .and_then(|action| action.for_version(version, &payload))
        .map_err(|invalid| {
            error(
                CallErrorCode::InternalError,
                format!(
                    "the signed chain does not fit CertificateSigned: {}",
                    invalid.description
                ),
            )
        })?;
    Ok(Box::new(FollowUp { action, payload }))
}

impl Policy {
    /// A policy that accepts everything, with ids in memory: for tests.
    #[cfg(test)]
    pub fn accept_all(heartbeat_interval_secs: u64) -> Policy {
        Policy {
            heartbeat_interval_secs,
            boot_status: RegistrationStatus::Accepted,
            identities: None,
            id_tags: None,
            data_transfer_status: DataTransferStatus::UnknownVendorId,
            transactions: Arc::new(TransactionIds::open(None).expect("an in-memory counter opens")),
            check_serial_number: false,
            signing: Signer::Off,
        }
    }
}

/// Where a charge point stands with us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Registration {
    /// No BootNotification seen (since this gateway started).
    #[default]
    Unknown,
    Pending,
    Rejected,
    Accepted,
}

/// Connectors a charge point may report, beyond which reports are still answered but not kept
/// (bounds the state a hostile charge point can make us hold).
pub const MAX_CONNECTORS: usize = 32;

/// What a processor keeps per charge point: a few dozen bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChargePointState {
    pub registration: Registration,
    /// (connectorId, last reported status), in order of first report (a boxed slice: a new
    /// connector is rare, and the map entry every message touches stays small).
    pub connectors: Box<[(u32, ChargePointStatus)]>,
    /// The transaction opened by the last StartTransaction, until its StopTransaction (ids
    /// given out start at 1, [`crate::policy::TransactionIds`]).
    pub open_transaction: Option<NonZeroI32>,
    /// How the live connection proved its identity.
    pub auth: Auth,
    /// The OCPP version it speaks (a reconnect with another one registers anew).
    pub version: Version,
    /// What a 2.0.1 station keeps: open transactions and the last ones ended (`seqNo`
    /// tracking), connector statuses per EVSE (boxed: a 1.6 charge point pays one pointer).
    pub v201: Option<Box<State201>>,
    /// What a handler asks to happen after its answer; the shard takes it (boxed: rare).
    pub after: Option<Box<AfterAnswer>>,
}

/// What an answer asks to happen once it is out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AfterAnswer {
    /// Close the connection (a BootNotification whose serial number is not the certificate's).
    pub close: Option<CloseReason>,
    /// A call of ours follows (CertificateSigned).
    pub call: Option<Box<FollowUp>>,
}

impl ChargePointState {
    fn after(&mut self) -> &mut AfterAnswer {
        self.after.get_or_insert_with(Box::default)
    }

    /// The connection closes once the answer is out.
    pub fn close_after_answer(&mut self, reason: CloseReason) {
        self.after().close = Some(reason);
    }

    /// A call of ours follows the answer (None: none does).
    pub fn follow_with(&mut self, call: Option<Box<FollowUp>>) {
        match call {
            Some(call) => self.after().call = Some(call),
            None => {
                if let Some(after) = &mut self.after {
                    after.call = None;
                }
            }
        }
    }

    /// The call that follows the answer, if one does (tests look at it).
    pub fn follow_up(&self) -> Option<&FollowUp> {
        self.after.as_ref().and_then(|a| a.call.as_deref())
    }

    /// Why the connection closes after the answer, if it does.
    pub fn closing_after(&self) -> Option<CloseReason> {
        self.after.as_ref().and_then(|a| a.close)
    }
}

/// Periodic event streams a 2.1 station may have open at once; beyond, OpenPeriodicEventStream
/// is Rejected (each stream's SENDs are journaled, and bounded by the rate limit).
pub const MAX_STREAMS: usize = 8;

/// The answer to one CALL, as the unit tests look at it ([`handle_call`]).
#[derive(Debug)]
pub enum Reply {
    /// A CALLRESULT with this payload (a JSON object).
    Result(Box<RawValue>),
    /// A CALLERROR.
    Error {
        code: CallErrorCode,
        description: String,
    },
}

/// The time a handler answers with: the clock and its RFC 3339 text ("" when the clock cannot
/// be written, and answers that need it then fail with InternalError).
#[derive(Debug, Clone, Copy)]
pub struct Now<'a> {
    pub time: SystemTime,
    pub text: &'a str,
}

/// Answers `action` with `payload` for charge point `cp` in `state` (for tests and tools: the
/// processor uses [`write_answer`]).
pub fn handle_call(
    policy: &Policy,
    cp: &str,
    state: &mut ChargePointState,
    action: &str,
    payload: &RawValue,
    now: Now<'_>,
) -> Reply {
    let mut out = Vec::new();
    match write_answer(
        policy,
        cp,
        state,
        action,
        Action::from_name(action),
        payload,
        now,
        &mut out,
    ) {
        Ok(()) => String::from_utf8(out)
            .ok()
            .and_then(|text| RawValue::from_string(text).ok())
            .map_or_else(
                || Reply::Error {
                    code: CallErrorCode::InternalError,
                    description: "the answer is not JSON".into(),
                },
                Reply::Result,
            ),
        Err(invalid) => Reply::Error {
            code: invalid.code,
            description: invalid.description,
        },
    }
}

/// Writes the CALLRESULT payload answering `name` (`action`: what [`Action::from_name`] gave
/// for it, so the hot path looks it up once) into `out`, or returns the CALLERROR to send
/// instead (`out` may then hold a partial answer: the caller cuts it off).
#[allow(clippy::too_many_arguments)]
pub fn write_answer(
    policy: &Policy,
    cp: &str,
    state: &mut ChargePointState,
    name: &str,
    action: Option<Action>,
    payload: &RawValue,
    now: Now<'_>,
    out: &mut Vec<u8>,
) -> Result<(), Invalid> {
    let Some(action) = action else {
        return Err(error(
            CallErrorCode::NotImplemented,
            format!("{} is not an OCPP 1.6 action", truncate(name, 64)),
        ));
    };
    if !action.sent_by_charge_point() {
        return Err(error(
            CallErrorCode::NotSupported,
            format!("{} is sent by a central system, not to it", action.name()),
        ));
    }
    if action != Action::BootNotification && state.registration != Registration::Accepted {
        return Err(error(
            CallErrorCode::SecurityError,
            format!("{} before the charge point was accepted", action.name()),
        ));
    }
    answer(policy, cp, state, action, payload, now, out)
}

fn answer(
    policy: &Policy,
    cp: &str,
    state: &mut ChargePointState,
    action: Action,
    payload: &RawValue,
    now: Now<'_>,
    out: &mut Vec<u8>,
) -> Result<(), Invalid> {
    use v16::*;
    let mut empty = || {
        out.extend_from_slice(b"{}");
        Ok(())
    };
    match action {
        Action::BootNotification => boot_notification(policy, cp, state, payload, now, out),
        Action::Heartbeat => heartbeat(payload, now, out),
        Action::Authorize => {
            let request: AuthorizeRequest = decode(payload)?;
            result(
                out,
                &AuthorizeResponse {
                    id_tag_info: id_tag_info(policy, &request.id_tag, now),
                },
            )
        }
        Action::StartTransaction => start_transaction(policy, state, payload, now, out),
        Action::StopTransaction => stop_transaction(policy, state, payload, now, out),
        Action::StatusNotification => {
            status_notification(state, payload)?;
            empty()
        }
        Action::DataTransfer => {
            let _: DataTransferRequest = decode(payload)?;
            result(
                out,
                &DataTransferResponse {
                    status: policy.data_transfer_status,
                    data: None,
                },
            )
        }
        Action::MeterValues => decode::<MeterValuesRequest>(payload).and_then(|_| empty()),
        Action::DiagnosticsStatusNotification => {
            decode::<DiagnosticsStatusNotificationRequest>(payload).and_then(|_| empty())
        }
        Action::FirmwareStatusNotification => {
            decode::<FirmwareStatusNotificationRequest>(payload).and_then(|_| empty())
        }
        Action::SecurityEventNotification => {
            decode::<SecurityEventNotificationRequest>(payload).and_then(|_| empty())
        }
        Action::LogStatusNotification => {
            decode::<LogStatusNotificationRequest>(payload).and_then(|_| empty())
        }
        Action::SignedFirmwareStatusNotification => {
            decode::<SignedFirmwareStatusNotificationRequest>(payload).and_then(|_| empty())
        }
        Action::SignCertificate => {
            let request: SignCertificateRequest = decode(payload)?;
            let signed = sign_certificate(policy, (cp, state.auth), request.csr.as_str(), now.time);
            let status = match signed {
                Ok(signed) => {
                    let call = signed
                        .map(|signed| certificate_signed(Version::V16, &signed, None))
                        .transpose()?;
                    state.follow_with(call);
                    GenericStatus::Accepted
                }
                Err(refusal) => {
                    debug!("cp={cp} SignCertificate Rejected: {refusal}");
                    GenericStatus::Rejected
                }
            };
            result(out, &SignCertificateResponse { status })
        }
        other => Err(error(
            CallErrorCode::NotSupported,
            format!("{} is not handled by the gateway", other.name()),
        )),
    }
}

/// Accepted, Pending or Rejected by `policy` (Rejected for an identity it does not know, or a
/// serial number that is not the certificate's CN: that one is closed after the answer).
fn boot_notification(
    policy: &Policy,
    cp: &str,
    state: &mut ChargePointState,
    payload: &RawValue,
    now: Now<'_>,
    out: &mut Vec<u8>,
) -> Result<(), Invalid> {
    use v16::*;
    let request: BootNotificationRequest = decode(payload)?;
    let serial = request.charge_point_serial_number.as_deref();
    let status = registration(policy, cp, state, serial);
    let interval = policy.heartbeat_interval_secs as i64;
    result(
        out,
        &BootNotificationResponse {
            status,
            current_time: time(now)?,
            interval,
        },
    )
}

/// The answer to a boot of `cp` with `serial` as its serial number, in every version:
/// Accepted, Pending or Rejected by `policy` (Rejected for an identity it does not know, or a
/// serial number that is not the certificate's CN: that one is closed after the answer).
/// Sets the charge point's registration.
pub fn registration(
    policy: &Policy,
    cp: &str,
    state: &mut ChargePointState,
    serial: Option<&str>,
) -> RegistrationStatus {
    let allowed = policy
        .identities
        .as_ref()
        .is_none_or(|ids| ids.contains(cp));
    // The certificate's CN is the identity (the loop checked it at the upgrade).
    let serial_ok =
        !(policy.check_serial_number && state.auth == Auth::Certificate) || serial == Some(cp);
    if !serial_ok {
        state.close_after_answer(CloseReason::SerialMismatch);
    }
    let status = if allowed && serial_ok {
        policy.boot_status
    } else {
        RegistrationStatus::Rejected
    };
    state.registration = match status {
        RegistrationStatus::Accepted => Registration::Accepted,
        RegistrationStatus::Pending => Registration::Pending,
        RegistrationStatus::Rejected => Registration::Rejected,
    };
    status
}

fn heartbeat(payload: &RawValue, now: Now<'_>, out: &mut Vec<u8>) -> Result<(), Invalid> {
    use v16::*;
    let _: HeartbeatRequest = decode(payload)?;
    if now.text.is_empty() {
        return Err(no_clock(now));
    }
    // The loop writes the same answer when it answers a Heartbeat itself.
    heartbeat::write_conf(out, now.text);
    Ok(())
}

/// Gives out the next transaction id and remembers it as the open transaction.
fn start_transaction(
    policy: &Policy,
    state: &mut ChargePointState,
    payload: &RawValue,
    now: Now<'_>,
    out: &mut Vec<u8>,
) -> Result<(), Invalid> {
    use v16::*;
    let request: StartTransactionRequest = decode(payload)?;
    let id_tag_info = id_tag_info(policy, &request.id_tag, now);
    // The charge point gets an id even for a refused idTag: it then stops the
    // transaction itself, referring to it by this id.
    let transaction_id = policy.transactions.next().map_err(|e| Invalid {
        code: CallErrorCode::InternalError,
        description: format!("no transaction id: {e}"),
    })?;
    state.open_transaction = NonZeroI32::new(transaction_id);
    result(
        out,
        &StartTransactionResponse {
            id_tag_info,
            transaction_id: transaction_id.into(),
        },
    )
}

/// Closes the open transaction if it is the one stopped.
fn stop_transaction(
    policy: &Policy,
    state: &mut ChargePointState,
    payload: &RawValue,
    now: Now<'_>,
    out: &mut Vec<u8>,
) -> Result<(), Invalid> {
    use v16::*;
    let request: StopTransactionRequest = decode(payload)?;
    // An unknown transaction is acknowledged too: an error would only make the charge
    // point resend it forever.
    if state
        .open_transaction
        .is_some_and(|open| i64::from(open.get()) == request.transaction_id)
    {
        state.open_transaction = None;
    }
    let id_tag_info = request
        .id_tag
        .as_ref()
        .map(|tag| id_tag_info(policy, tag, now));
    result(out, &StopTransactionResponse { id_tag_info })
}

/// Records the connector's status (up to [`MAX_CONNECTORS`] connectors); the answer is empty.
fn status_notification(state: &mut ChargePointState, payload: &RawValue) -> Result<(), Invalid> {
    use v16::*;
    let request: StatusNotificationRequest = decode(payload)?;
    let connector = u32::try_from(request.connector_id).unwrap_or(u32::MAX);
    let known = state.connectors.iter().position(|(id, _)| *id == connector);
    match known {
        Some(i) => state.connectors[i].1 = request.status,
        None if state.connectors.len() < MAX_CONNECTORS => {
            let mut connectors = std::mem::take(&mut state.connectors).into_vec();
            connectors.push((connector, request.status));
            state.connectors = connectors.into_boxed_slice();
        }
        None => {}
    }
    Ok(())
}

fn id_tag_info(policy: &Policy, id_tag: &IdToken, now: Now<'_>) -> IdTagInfo {
    let Some(tags) = &policy.id_tags else {
        return IdTagInfo {
            status: AuthorizationStatus::Accepted,
            expiry_date: None,
            parent_id_tag: None,
        };
    };
    let verdict = tags.check(id_tag.as_str(), now.time);
    IdTagInfo {
        status: verdict.status,
        expiry_date: verdict.expiry.and_then(|e| DateTime::parse(e).ok()),
        parent_id_tag: verdict.parent.and_then(|p| IdToken::new(p).ok()),
    }
}

fn time(now: Now<'_>) -> Result<DateTime, Invalid> {
    DateTime::parse(now.text.to_owned()).map_err(|_| no_clock(now))
}

fn no_clock(now: Now<'_>) -> Invalid {
    error(
        CallErrorCode::InternalError,
        format!("the clock reads {:?}, not an RFC 3339 time", now.time),
    )
}

fn result(out: &mut Vec<u8>, value: &impl Serialize) -> Result<(), Invalid> {
    serde_json::to_writer(out, value).map_err(|e| Invalid {
        code: CallErrorCode::InternalError,
        description: format!("cannot write the answer: {e}"),
    })
}

fn error(code: CallErrorCode, description: String) -> Invalid {
    Invalid { code, description }
}

fn truncate(s: &str, max_chars: usize) -> &str {
    s.char_indices().nth(max_chars).map_or(s, |(i, _)| &s[..i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn now() -> Now<'static> {
        Now {
            time: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
            text: "2027-01-15T08:00:00.000Z",
        }
    }

    fn call(policy: &Policy, state: &mut ChargePointState, action: &str, payload: Value) -> Reply {
        let raw = RawValue::from_string(payload.to_string()).unwrap();
        handle_call(policy, "CP1", state, action, &raw, now())
    }

    fn ok(reply: Reply) -> Value {
        match reply {
            Reply::Result(json) => serde_json::from_str(json.get()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    fn code(reply: Reply) -> CallErrorCode {
        match reply {
            Reply::Error { code, .. } => code,
            other => panic!("{other:?}"),
        }
    }

    fn boot() -> Value {
        json!({"chargePointVendor": "V", "chargePointModel": "M"})
    }

    #[test]
    fn sign_certificate_by_signer() {
        use crate::security::signing::testing;
        let mut policy = Policy::accept_all(300);
        let mut state = ChargePointState {
            auth: Auth::Password,
            ..ChargePointState::default()
        };
        ok(call(&policy, &mut state, "BootNotification", boot()));
        let request = json!({"csr": testing::csr("CP1")});
        // No signer: Rejected, nothing follows.
        let reply = ok(call(
            &policy,
            &mut state,
            "SignCertificate",
            request.clone(),
        ));
        assert_eq!(reply["status"], "Rejected");
        assert!(state.follow_up().is_none());
        // The gateway's CA: Accepted, then CertificateSigned with the chain.
        policy.signing = Signer::Ca(Arc::new(testing::authority("handlers-v16")));
        let reply = ok(call(
            &policy,
            &mut state,
            "SignCertificate",
            request.clone(),
        ));
        assert_eq!(reply["status"], "Accepted");
        let follow_up = state
            .after
            .take()
            .and_then(|a| a.call)
            .expect("CertificateSigned follows");
        assert_eq!(follow_up.action, AnyAction::V16(Action::CertificateSigned));
        let payload: Value = serde_json::from_str(follow_up.payload.get()).unwrap();
        let chain = payload["certificateChain"].as_str().unwrap();
        assert_eq!(chain.matches("-----BEGIN CERTIFICATE-----").count(), 2);
        assert_eq!(
            payload.as_object().unwrap().len(),
            1,
            "1.6 has no certificateType"
        );
        // A request for another identity is Rejected.
        let other = json!({"csr": testing::csr("CP2")});
        let reply = ok(call(&policy, &mut state, "SignCertificate", other.clone()));
        assert_eq!(reply["status"], "Rejected");
        assert!(state.follow_up().is_none());
        // The backend signs: Accepted when the request is good, nothing follows here.
        policy.signing = Signer::Backend;
        assert_eq!(
            ok(call(
                &policy,
                &mut state,
                "SignCertificate",
                request.clone()
            ))["status"],
            "Accepted"
        );
        assert!(state.follow_up().is_none());
        assert_eq!(
            ok(call(&policy, &mut state, "SignCertificate", other))["status"],
            "Rejected"
        );
        // A connection that did not authenticate gets nothing, whoever signs.
        for signer in [
            Signer::Backend,
            Signer::Ca(Arc::new(testing::authority("anon"))),
        ] {
            policy.signing = signer;
            state.auth = Auth::None;
            let reply = ok(call(
                &policy,
                &mut state,
                "SignCertificate",
                request.clone(),
            ));
            assert_eq!(reply["status"], "Rejected");
            assert!(state.follow_up().is_none());
        }
    }

    #[test]
    fn boot_then_heartbeat_with_policy_interval_and_time() {
        let policy = Policy::accept_all(300);
        let mut state = ChargePointState::default();
        let reply = ok(call(&policy, &mut state, "BootNotification", boot()));
        assert_eq!(reply["status"], "Accepted");
        assert_eq!(reply["interval"], 300);
        assert_eq!(reply["currentTime"], now().text);
        assert_eq!(state.registration, Registration::Accepted);
        assert_eq!(
            ok(call(&policy, &mut state, "Heartbeat", json!({})))["currentTime"],
            now().text
        );
    }

    #[test]
    fn before_acceptance_only_boot_is_answered() {
        let mut policy = Policy::accept_all(300);
        policy.boot_status = RegistrationStatus::Pending;
        let mut state = ChargePointState::default();
        assert_eq!(
            code(call(&policy, &mut state, "Heartbeat", json!({}))),
            CallErrorCode::SecurityError
        );
        assert_eq!(
            ok(call(&policy, &mut state, "BootNotification", boot()))["status"],
            "Pending"
        );
        assert_eq!(
            code(call(&policy, &mut state, "Heartbeat", json!({}))),
            CallErrorCode::SecurityError
        );
        // A remembered acceptance (a reconnect without a new boot) is enough.
        state.registration = Registration::Accepted;
        assert!(matches!(
            call(&policy, &mut state, "Heartbeat", json!({})),
            Reply::Result(_)
        ));
    }

    #[test]
    fn identities_outside_the_allow_list_are_rejected() {
        let mut policy = Policy::accept_all(300);
        policy.identities = Some(Arc::new(Identities::parse("CP2\n")));
        let mut state = ChargePointState::default();
        assert_eq!(
            ok(call(&policy, &mut state, "BootNotification", boot()))["status"],
            "Rejected"
        );
    }

    #[test]
    fn unknown_and_wrong_direction_actions() {
        let policy = Policy::accept_all(300);
        let mut state = ChargePointState {
            registration: Registration::Accepted,
            ..Default::default()
        };
        assert_eq!(
            code(call(&policy, &mut state, "Bogus", json!({}))),
            CallErrorCode::NotImplemented
        );
        let reset = call(&policy, &mut state, "Reset", json!({"type": "Hard"}));
        assert_eq!(code(reset), CallErrorCode::NotSupported);
    }

    #[test]
    fn transactions_start_and_stop_with_tag_checks() {
        let mut policy = Policy::accept_all(300);
        policy.id_tags = Some(
            IdTags::parse("[[tag]]\nid = \"GOOD\"\nstatus = \"Accepted\"\n[[tag]]\nid = \"BAD\"\nstatus = \"Blocked\"\n")
                .unwrap(),
        );
        let mut state = ChargePointState {
            registration: Registration::Accepted,
            ..Default::default()
        };
        let start = |tag: &str| json!({"connectorId": 1, "idTag": tag, "meterStart": 0, "timestamp": "2026-11-24T10:00:00Z"});
        let first = ok(call(&policy, &mut state, "StartTransaction", start("GOOD")));
        assert_eq!(first["idTagInfo"]["status"], "Accepted");
        let id = first["transactionId"].as_i64().unwrap();
        assert_eq!(state.open_transaction.map(NonZeroI32::get), Some(id as i32));
        let second = ok(call(&policy, &mut state, "StartTransaction", start("BAD")));
        assert_eq!(second["idTagInfo"]["status"], "Blocked");
        assert!(
            second["transactionId"].as_i64().unwrap() > id,
            "ids increase"
        );
        assert_eq!(
            ok(call(
                &policy,
                &mut state,
                "Authorize",
                json!({"idTag": "NOPE"})
            ))["idTagInfo"]["status"],
            "Invalid"
        );
        let stop =
            json!({"transactionId": 999_999, "meterStop": 5, "timestamp": "2026-11-24T11:00:00Z"});
        assert_eq!(
            ok(call(&policy, &mut state, "StopTransaction", stop)),
            json!({})
        );
    }

    #[test]
    fn connector_statuses_are_kept_and_bounded() {
        let policy = Policy::accept_all(300);
        let mut state = ChargePointState {
            registration: Registration::Accepted,
            ..Default::default()
        };
        for connector in 0..100 {
            let status =
                json!({"connectorId": connector, "errorCode": "NoError", "status": "Available"});
            ok(call(&policy, &mut state, "StatusNotification", status));
        }
        let charging = json!({"connectorId": 1, "errorCode": "NoError", "status": "Charging"});
        ok(call(&policy, &mut state, "StatusNotification", charging));
        assert_eq!(state.connectors.len(), MAX_CONNECTORS);
        assert_eq!(state.connectors[1], (1, ChargePointStatus::Charging));
    }

    #[test]
    fn invalid_payloads_name_the_field() {
        let policy = Policy::accept_all(300);
        let mut state = ChargePointState::default();
        let Reply::Error { code, description } = call(
            &policy,
            &mut state,
            "BootNotification",
            json!({"chargePointVendor": "V"}),
        ) else {
            panic!()
        };
        assert_eq!(code, CallErrorCode::OccurenceConstraintViolation);
        assert!(description.contains("chargePointModel"), "{description}");
    }

    #[test]
    fn a_broken_clock_is_an_internal_error_not_a_panic() {
        let policy = Policy::accept_all(300);
        let mut state = ChargePointState {
            registration: Registration::Accepted,
            ..Default::default()
        };
        let before_1970 = Now {
            time: SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(1),
            text: "",
        };
        let raw = RawValue::from_string("{}".to_owned()).unwrap();
        let reply = handle_call(&policy, "CP1", &mut state, "Heartbeat", &raw, before_1970);
        assert_eq!(code(reply), CallErrorCode::InternalError);
    }
}
