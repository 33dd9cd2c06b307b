//! What flows over an open connection: reading frames from the gateway (with the gateway's own
//! RFC 6455 code, client side), checking each answer against its CALL, answering the gateway's
//! CALLs, and sending what the scenario has due.

use log::debug;
use ocpp::Version;
use ocpp::rpc::{self, CallErrorCode, Frame, FrameError};
use ocpp::v16::{
    self, Action, AuthorizationStatus, AuthorizeResponse, BootNotificationResponse, Invalid,
    RegistrationStatus, StartTransactionResponse,
};
use ocpp::v201::{self, Edition, Part};
use serde::Deserialize;
use serde_json::value::RawValue;
use transport::{Held, Received, SendError, Transport, Wire};
use wire::websocket::{self, OpCode, Role};

use super::{FleetLoop, micros, micros_since};
use crate::answers::{self, Answer, ChargePointView, Effect};
use crate::charge_point::{Boot, ChargePoint, Link, Outstanding};
use crate::messages::{self, Outgoing, Writer};
use crate::scenario::Reply;
use crate::stats::{self, ErrorKind, ThreadCounters};

/// Bytes of a thread's read buffer.
pub const READ_BUFFER: usize = 64 * 1024;
/// Full reads from one connection per turn.
const READS_PER_TURN: usize = 4;
/// Unsent bytes per connection before the gateway counts as not reading.
pub(super) const MAX_WRITE_BUFFER: usize = 1 << 20;
/// Largest message accepted from the gateway.
const MAX_MESSAGE: usize = 1 << 20;

/// An open connection: its stream, an unfinished frame and an unfinished message (held only
/// while they are unfinished).
pub struct ClientConn {
    pub transport: Transport,
    pub input: Held,
    message: Held,
    assembling: bool,
    /// The gateway closed its side: read until EOF.
    pub hangup: bool,
}

impl ClientConn {
    pub fn new(transport: Transport) -> ClientConn {
        ClientConn {
            transport,
            input: Held::default(),
            message: Held::default(),
            assembling: false,
            hangup: false,
        }
    }

    /// Frees what it holds (it is being dropped).
    pub fn release(&mut self, wire: &mut Wire) {
        self.input.clear(&mut wire.buffered.read);
        self.message.clear(&mut wire.buffered.read);
        self.transport.release(wire);
    }
}

/// A CALLRESULT read for what the charge point does next.
enum Checked {
    Boot { accepted: bool, interval_secs: i64 },
    Plan(Reply),
}

/// Checks a CALLRESULT payload against what `msg`, sent in `version`, returns.
fn check_result(version: Version, msg: Outgoing, payload: &RawValue) -> Result<Checked, Invalid> {
    match version {
        Version::V16 => check_result_16(msg.action(), payload),
        Version::V201 => check_result_201(Edition::V201, msg, payload),
        Version::V21 => check_result_201(Edition::V21, msg, payload),
    }
}

fn check_result_16(action: Action, payload: &RawValue) -> Result<Checked, Invalid> {
    Ok(match action {
        Action::BootNotification => {
            let r: BootNotificationResponse = v16::decode(payload)?;
            Checked::Boot {
                accepted: r.status == RegistrationStatus::Accepted,
                interval_secs: r.interval,
            }
        }
        Action::Authorize => {
            let r: AuthorizeResponse = v16::decode(payload)?;
            Checked::Plan(Reply::Authorized {
                accepted: r.id_tag_info.status == AuthorizationStatus::Accepted,
            })
        }
        Action::StartTransaction => {
            let r: StartTransactionResponse = v16::decode(payload)?;
            Checked::Plan(Reply::Started {
                transaction: r.transaction_id,
                accepted: r.id_tag_info.status == AuthorizationStatus::Accepted,
            })
        }
        other => {
            v16::validate_response(other, payload)?;
            Checked::Plan(Reply::Done)
        }
    })
}

/// 2.0.1: the response schema, then what the plan reads (an idTokenInfo's status; a
/// TransactionEvent Started keeps the station's own transaction number, which the answer does
/// not repeat).
fn check_result_201(
    edition: Edition,
    msg: Outgoing,
    payload: &RawValue,
) -> Result<Checked, Invalid> {
    #[derive(Deserialize)]
    struct Boot<'a> {
        status: &'a str,
        interval: i64,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct WithToken<'a> {
        #[serde(borrow)]
        id_token_info: Option<TokenInfo<'a>>,
    }
    #[derive(Deserialize)]
    struct TokenInfo<'a> {
        status: &'a str,
    }
    let name = msg.name(Version::V201);
    let action = v201::Action::parse(name).ok_or_else(|| Invalid {
        code: CallErrorCode::InternalError,
        description: format!("{name} is no 2.0.1 action"),
    })?;
    v201::check_in(edition, action, Part::Response, payload.get())?;
    let read = |e: serde_json::Error| Invalid {
        code: CallErrorCode::FormationViolation,
        description: e.to_string(),
    };
    let token_status = || {
        serde_json::from_str::<WithToken<'_>>(payload.get())
            .map(|r| r.id_token_info.map(|info| info.status))
            .map_err(read)
    };
    Ok(match msg {
        Outgoing::BootNotification => {
            let r: Boot<'_> = serde_json::from_str(payload.get()).map_err(read)?;
            Checked::Boot {
                accepted: r.status == "Accepted",
                interval_secs: r.interval,
            }
        }
        Outgoing::Authorize => Checked::Plan(Reply::Authorized {
            accepted: token_status()? == Some("Accepted"),
        }),
        Outgoing::StartTransaction { transaction, .. } => Checked::Plan(Reply::Started {
            transaction,
            // No idTokenInfo: the CSMS did not judge the token, the station goes on.
            accepted: matches!(token_status()?, None | Some("Accepted")),
        }),
        _ => Checked::Plan(Reply::Done),
    })
}

/// Why [`FleetLoop::pump`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pump {
    /// An answer just completed the outstanding CALL.
    AfterAnswer,
    /// A timer, a gateway CALL, a boot.
    Other,
}

impl FleetLoop {
    pub(super) fn serve_ready(&mut self) {
        for key in std::mem::take(&mut self.ready) {
            self.read_messages(key);
        }
    }

    /// Reads what the socket has (a read shorter than the buffer drained it), consuming
    /// complete frames where they lie and keeping only an unfinished one; after
    /// [`READS_PER_TURN`] full reads the charge point waits on the ready list.
    pub(super) fn read_messages(&mut self, key: u32) {
        if !self.consume_held(key) {
            return;
        }
        for _ in 0..READS_PER_TURN {
            let Some(ChargePoint {
                link: Link::Open(conn),
                ..
            }) = self.cps.get_mut(key as usize)
            else {
                return;
            };
            let hangup = conn.hangup;
            let mut buf = std::mem::take(&mut self.read_buf);
            let window = buf.len();
            let read = conn.transport.read(&mut self.wire, &mut buf, window);
            let more = match read {
                Ok(Received::Data { len, more }) => {
                    conn.input
                        .extend(&mut self.wire.buffered.read, &buf[..len], 0);
                    more || hangup
                }
                Ok(Received::Blocked) => false,
                Ok(Received::Closed) => {
                    self.read_buf = buf;
                    return self.fail(key, ErrorKind::Disconnected, &"closed by the gateway");
                }
                Err(e) => {
                    self.read_buf = buf;
                    return self.fail(key, ErrorKind::Disconnected, &e);
                }
            };
            self.read_buf = buf;
            if !self.consume_held(key) || !more {
                return;
            }
        }
        self.ready.push(key);
    }

    /// Consumes the complete frames the connection holds; false when the connection is gone.
    fn consume_held(&mut self, key: u32) -> bool {
        let Some(ChargePoint {
            link: Link::Open(conn),
            ..
        }) = self.cps.get_mut(key as usize)
        else {
            return false;
        };
        if conn.input.is_empty() {
            return true;
        }
        let mut input = conn.input.take(&mut self.wire.buffered.read);
        let consumed = self.consume(key, &mut input);
        let Some(ChargePoint {
            link: Link::Open(conn),
            ..
        }) = self.cps.get_mut(key as usize)
        else {
            return false;
        };
        conn.input.put(&mut self.wire.buffered.read, input);
        match consumed {
            Some(used) => {
                conn.input.consume(&mut self.wire.buffered.read, used);
                true
            }
            None => false,
        }
    }

    /// Handles the complete frames at the start of `data`: how many bytes they took, or None
    /// when the connection is gone.
    fn consume(&mut self, key: u32, data: &mut [u8]) -> Option<usize> {
        let mut used = 0;
        while used < data.len() {
            let header = match websocket::parse_header(&data[used..], Role::Client, MAX_MESSAGE) {
                Ok(Some(header)) if header.frame_len() <= data.len() - used => header,
                Ok(_) => return Some(used),
                Err(violation) => {
                    self.fail(key, ErrorKind::WebSocketProtocol, &violation);
                    return None;
                }
            };
            let payload = &mut data[used + header.header_len..used + header.frame_len()];
            used += header.frame_len();
            if !self.on_frame(key, header.opcode, header.fin, payload) {
                return None;
            }
        }
        Some(used)
    }

    /// One frame from the gateway; false when the connection is gone.
    fn on_frame(&mut self, key: u32, opcode: OpCode, fin: bool, payload: &mut [u8]) -> bool {
        let Some(ChargePoint {
            link: Link::Open(conn),
            ..
        }) = self.cps.get_mut(key as usize)
        else {
            return false;
        };
        let text = match opcode {
            OpCode::Text if fin && !conn.assembling => payload.to_vec(),
            OpCode::Text if !conn.assembling => {
                conn.assembling = true;
                conn.message
                    .extend(&mut self.wire.buffered.read, payload, 0);
                return true;
            }
            OpCode::Continuation if conn.assembling => {
                if conn.message.len() + payload.len() > MAX_MESSAGE {
                    self.fail(key, ErrorKind::WebSocketProtocol, &"message too big");
                    return false;
                }
                conn.message
                    .extend(&mut self.wire.buffered.read, payload, 0);
                if !fin {
                    return true;
                }
                conn.assembling = false;
                conn.message.take(&mut self.wire.buffered.read)
            }
            OpCode::Ping => {
                ThreadCounters::inc(&self.counters.pings);
                let mask = self.rng.next_u64().to_ne_bytes();
                let mut frame = std::mem::take(&mut self.frame);
                frame.clear();
                websocket::encode(
                    &mut frame,
                    OpCode::Pong,
                    payload,
                    Some([mask[0], mask[1], mask[2], mask[3]]),
                );
                let sent = self.send_frame(key, &frame);
                self.frame = frame;
                return sent;
            }
            OpCode::Pong => return true,
            OpCode::Close => {
                let why = match websocket::parse_close(payload) {
                    Ok(Some((code, reason))) => format!("closed by the gateway: {code} {reason}"),
                    _ => "closed by the gateway".to_owned(),
                };
                self.send_close(key);
                self.fail(key, ErrorKind::Disconnected, &why);
                return false;
            }
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                self.fail(
                    key,
                    ErrorKind::WebSocketProtocol,
                    &format!("unexpected {opcode:?} frame"),
                );
                return false;
            }
        };
        match std::str::from_utf8(&text) {
            Ok(text) => {
                ThreadCounters::inc(&self.counters.messages_in);
                // Fresh time for each reply: a batch of events must not flatter latency.
                self.tick();
                self.on_text(key, text);
                matches!(self.cps[key as usize].link, Link::Open(_))
            }
            Err(_) => {
                self.fail(
                    key,
                    ErrorKind::WebSocketProtocol,
                    &"invalid UTF-8 from the gateway",
                );
                false
            }
        }
    }

    pub(super) fn on_text(&mut self, key: u32, text: &str) {
        match rpc::parse_frame(text) {
            Ok(Frame::CallResult { unique_id, payload }) => {
                self.on_answer(key, &unique_id, Ok(payload));
            }
            Ok(Frame::CallError {
                unique_id,
                code,
                description,
                ..
            }) => self.on_answer(key, &unique_id, Err((&code, &description))),
            Ok(Frame::Call {
                unique_id,
                action,
                payload,
            }) => self.on_call(key, &unique_id, &action, payload),
            // Only 2.1 has these (read by `parse_frame_21`): not spoken here.
            Ok(Frame::Send { .. } | Frame::CallResultError { .. }) => {}
            Err(FrameError::Answer {
                unique_id,
                code,
                description,
            }) => {
                self.counters.error(ErrorKind::InvalidCallReceived);
                self.warn_limited(
                    key,
                    format_args!("malformed CALL from the gateway: {description}"),
                );
                let mut answer = std::mem::take(&mut self.answer);
                answer.clear();
                rpc::write_call_error(&mut answer, &unique_id, code, &description);
                self.send_text(key, &answer);
                self.answer = answer;
            }
            Err(FrameError::Unanswerable { reason }) => {
                self.counters.error(ErrorKind::Unparsable);
                self.warn_limited(key, format_args!("{reason}"));
            }
            Err(FrameError::UnknownMessageType { message_type, .. }) => {
                debug!("thread={} ignored message type {message_type}", self.thread);
            }
        }
    }

    /// A CALLRESULT (`Ok`) or CALLERROR (`Err((code, description))`) from the gateway.
    fn on_answer(&mut self, key: u32, unique_id: &str, answer: Result<&RawValue, (&str, &str)>) {
        let cp = &mut self.cps[key as usize];
        let Some(call) = cp.call.filter(|c| unique_id.parse() == Ok(c.unique_id)) else {
            let expected = cp.call.map(|c| c.unique_id);
            self.counters.error(ErrorKind::WrongUniqueId);
            self.warn_limited(
                key,
                format_args!("answer to {unique_id:?}, outstanding: {expected:?}"),
            );
            return;
        };
        cp.call = None;
        let version = cp.version;
        let latency = self.now.saturating_sub(call.planned_us);
        let action = call.msg.action();
        let checked = match answer {
            Ok(payload) => match check_result(version, call.msg, payload) {
                Ok(checked) => {
                    ThreadCounters::inc(&self.counters.results_ok);
                    Some(checked)
                }
                Err(invalid) => {
                    self.counters.error(ErrorKind::InvalidPayload);
                    let name = call.msg.name(version);
                    self.warn_limited(
                        key,
                        format_args!("invalid {name} result: {}", invalid.description),
                    );
                    None
                }
            },
            Err((code, description)) => {
                self.counters.error(ErrorKind::CallError);
                let name = call.msg.name(version);
                self.warn_limited(key, format_args!("{name} answered {code}: {description}"));
                None
            }
        };
        if action != Action::BootNotification {
            let interval = self.timings.fixed_interval_us();
            stats::record_with_skipped(&mut self.latencies.round_trip, latency, interval);
            stats::record_with_skipped(&mut self.window, latency, interval);
        }
        // 2.0.1's TransactionEvent Started and Ended count as the start and the stop.
        match action {
            Action::StopTransaction => {
                let _ = self.latencies.stop_transaction.record(latency);
            }
            Action::StartTransaction => {
                let _ = self.latencies.start_transaction.record(latency);
            }
            _ => {}
        }
        if self.cps[key as usize].boot == Boot::Sent && action == Action::StatusNotification {
            return self.on_resume_answer(key, checked.is_some());
        }
        match checked {
            Some(Checked::Boot {
                accepted,
                interval_secs,
            }) => self.on_boot_answer(key, accepted, interval_secs),
            Some(Checked::Plan(reply)) => self.reply_to_plan(key, reply),
            None if action == Action::BootNotification => {
                self.retry_boot(key, micros(self.config.backoff_min));
            }
            None => self.reply_to_plan(key, Reply::Failed),
        }
        self.pump(key, Pump::AfterAnswer);
    }

    pub(super) fn reply_to_plan(&mut self, key: u32, reply: Reply) {
        let cp = &mut self.cps[key as usize];
        cp.plan
            .on_reply(reply, &self.timings, self.now, &mut self.rng);
    }

    fn on_boot_answer(&mut self, key: u32, accepted: bool, interval_secs: i64) {
        let cp = &self.cps[key as usize];
        if cp.boot == Boot::Accepted {
            return; // a triggered BootNotification: nothing changes
        }
        if !accepted {
            self.counters.error(ErrorKind::BootNotAccepted);
            self.warn_limited(key, format_args!("BootNotification not accepted"));
            let wait = u64::try_from(interval_secs.clamp(1, 300)).unwrap_or(1) * 1_000_000;
            return self.retry_boot(key, wait);
        }
        stats::record(&mut self.latencies.boot, self.now - cp.connect_started_us);
        ThreadCounters::inc(&self.counters.boots);
        if cp.ever_booted {
            ThreadCounters::inc(&self.counters.reboots);
        }
        let offset = self.timings.slot_offset(cp.index, self.config.connections);
        self.set_booted(key, true);
        let cp = &mut self.cps[key as usize];
        cp.ever_booted = true;
        cp.failures = 0;
        cp.plan.on_booted(self.now, offset);
        if let Some(bytes) = self.config.large_message {
            cp.triggered = Some(Outgoing::LargeDataTransfer { bytes });
        }
        self.report_if_all_booted();
    }

    /// `--resume`: the answer to a reconnected charge point's first StatusNotification.
    fn on_resume_answer(&mut self, key: u32, accepted: bool) {
        if !accepted {
            ThreadCounters::inc(&self.counters.resumes_refused);
            self.send_call(key, Outgoing::BootNotification, self.now);
            return self.pump(key, Pump::AfterAnswer);
        }
        ThreadCounters::inc(&self.counters.resumes);
        let offset = self
            .timings
            .slot_offset(self.cps[key as usize].index, self.config.connections);
        self.set_booted(key, true);
        let cp = &mut self.cps[key as usize];
        cp.failures = 0;
        cp.plan.on_booted(self.now, offset);
        self.report_if_all_booted();
        self.pump(key, Pump::AfterAnswer);
    }

    pub(super) fn retry_boot(&mut self, key: u32, after_us: u64) {
        let cp = &mut self.cps[key as usize];
        if cp.boot != Boot::Accepted {
            cp.boot = Boot::RetryAt(self.now + after_us);
        }
    }

    /// A CALL of the gateway: answer it, then do what the answer implies.
    fn on_call(&mut self, key: u32, unique_id: &str, action: &str, payload: &RawValue) {
        let cp = &self.cps[key as usize];
        let view = ChargePointView {
            can_start: cp.boot == Boot::Accepted && cp.plan.can_start(),
            transaction: cp.plan.transaction(),
            run_tag: self.config.run_tag,
        };
        let version = cp.version;
        let mut answer = std::mem::take(&mut self.answer);
        answer.clear();
        let effect = match answers::answer_in(version, action, payload, view) {
            Answer::Result { payload, effect } => {
                ThreadCounters::inc(&self.counters.calls_answered);
                rpc::write_call_result(&mut answer, unique_id, payload.get());
                effect
            }
            Answer::Error {
                code,
                description,
                peer_fault,
            } => {
                if peer_fault {
                    self.counters.error(ErrorKind::InvalidCallReceived);
                    self.warn_limited(key, format_args!("{action} refused: {code}: {description}"));
                }
                rpc::write_call_error_in(&mut answer, version, unique_id, code, &description);
                Effect::None
            }
        };
        let sent = self.send_text(key, &answer);
        self.answer = answer;
        if !sent {
            return;
        }
        let cp = &mut self.cps[key as usize];
        match effect {
            Effect::None => {}
            Effect::StartSession => cp.plan.remote_start(),
            Effect::StopSession => cp.plan.remote_stop(self.now),
            Effect::Send(msg) => cp.triggered = Some(msg),
            Effect::Reboot if cp.plan.reboots_on_reset() => return self.reboot(key),
            Effect::Reboot => {}
        }
        self.pump(key, Pump::Other);
    }

    /// Reset accepted: close (our answer already written), reconnect at once, boot again.
    fn reboot(&mut self, key: u32) {
        self.send_close(key);
        ThreadCounters::inc(&self.counters.dropped_on_purpose);
        self.disconnect(key);
        self.cps[key as usize].failures = 0;
        self.reconnect_now(key);
    }

    /// Writes one text message (masked, as a client must); false when the connection failed
    /// on it.
    pub(super) fn send_text(&mut self, key: u32, text: &[u8]) -> bool {
        let mask = self.rng.next_u64().to_ne_bytes();
        let mut frame = std::mem::take(&mut self.frame);
        frame.clear();
        websocket::encode(
            &mut frame,
            OpCode::Text,
            text,
            Some([mask[0], mask[1], mask[2], mask[3]]),
        );
        ThreadCounters::inc(&self.counters.messages_out);
        let sent = self.send_frame(key, &frame);
        self.frame = frame;
        sent
    }

    fn send_frame(&mut self, key: u32, frame: &[u8]) -> bool {
        let Some(ChargePoint {
            link: Link::Open(conn),
            ..
        }) = self.cps.get_mut(key as usize)
        else {
            return false;
        };
        match conn.transport.send(&mut self.wire, frame) {
            Ok(()) => true,
            Err(SendError::Backlog) => {
                self.fail(
                    key,
                    ErrorKind::Disconnected,
                    &"write buffer full: gateway not reading",
                );
                false
            }
            Err(e) => {
                self.fail(key, ErrorKind::Disconnected, &e);
                false
            }
        }
    }

    /// Sends a close frame, best effort (no wait for the answer).
    pub(super) fn send_close(&mut self, key: u32) {
        let mask = self.rng.next_u64().to_ne_bytes();
        let mut frame = std::mem::take(&mut self.frame);
        frame.clear();
        websocket::encode_close(
            &mut frame,
            1000,
            "",
            Some([mask[0], mask[1], mask[2], mask[3]]),
        );
        if let Some(ChargePoint {
            link: Link::Open(conn),
            ..
        }) = self.cps.get_mut(key as usize)
        {
            let _ = conn.transport.send(&mut self.wire, &frame);
        }
        self.frame = frame;
    }

    /// Sends `msg` as the charge point's next CALL, planned at `planned_us`.
    pub(super) fn send_call(&mut self, key: u32, msg: Outgoing, planned_us: u64) {
        let cp = &mut self.cps[key as usize];
        debug_assert!(cp.call.is_none(), "one CALL outstanding at a time");
        let unique_id = cp.take_unique_id();
        let by = Writer {
            index: cp.index,
            id_prefix: &self.config.id_prefix,
            version: cp.version,
            run_tag: self.config.run_tag,
        };
        messages::write_call(&mut self.text, unique_id, msg, by);
        cp.call = Some(Outstanding {
            unique_id,
            msg,
            planned_us,
            deadline_us: self.now + micros(self.config.call_timeout),
        });
        let text = std::mem::take(&mut self.text);
        if self.send_text(key, text.as_bytes()) {
            ThreadCounters::inc(&self.counters.calls_sent);
        }
        self.text = text;
    }

    /// Sends what is due, if nothing is outstanding, and re-arms the timer.
    ///
    /// Latency counts from the planned time only when the gateway made the send late: when it
    /// is sent right after an answer (`Pump::AfterAnswer`) and its slot passed while that answer
    /// was awaited. A send that is late because of our own timer resolution or load counts from
    /// now, so the bench's lateness is not blamed on the gateway.
    pub(super) fn pump(&mut self, key: u32, why: Pump) {
        // A fresh reading: timers fire in batches, and a send stamped with the batch's start
        // would charge our own batch time to the gateway's round trip.
        self.now = micros_since(self.origin);
        let cp = &mut self.cps[key as usize];
        if matches!(cp.link, Link::Open(_)) && cp.call.is_none() {
            match cp.boot {
                Boot::Accepted => {
                    let due = match cp.triggered.take() {
                        Some(msg) => Some((msg, self.now)),
                        None => cp.plan.poll(&self.timings, self.now, &mut self.rng),
                    };
                    if let Some((msg, planned)) = due {
                        let planned = match why {
                            Pump::AfterAnswer => planned,
                            Pump::Other => self.now,
                        };
                        self.send_call(key, msg, planned);
                    }
                }
                Boot::RetryAt(at) if at <= self.now => {
                    cp.boot = Boot::Sent;
                    self.send_call(key, Outgoing::BootNotification, self.now);
                }
                Boot::RetryAt(_) | Boot::NotSent | Boot::Sent => {}
            }
        }
        self.rearm(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn results_are_checked_against_their_action() {
        let v16 = |msg, payload: &str| check_result(Version::V16, msg, &raw(payload));
        let boot = r#"{"status":"Pending","currentTime":"2026-01-01T00:00:00Z","interval":30}"#;
        assert!(matches!(
            v16(Outgoing::BootNotification, boot),
            Ok(Checked::Boot {
                accepted: false,
                interval_secs: 30
            })
        ));
        let start = Outgoing::StartTransaction {
            connector: 1,
            meter_wh: 0,
            transaction: 77,
        };
        assert!(matches!(
            v16(
                start,
                r#"{"idTagInfo":{"status":"Accepted"},"transactionId":5}"#
            ),
            Ok(Checked::Plan(Reply::Started {
                transaction: 5,
                accepted: true
            }))
        ));
        // A Heartbeat answered with a StatusNotification result is a mismatch.
        assert!(v16(Outgoing::Heartbeat, "{}").is_err());
        let status = Outgoing::StatusNotification {
            connector: 1,
            status: crate::messages::ConnectorStatus::Available,
        };
        assert!(v16(status, "{}").is_ok());
    }

    #[test]
    fn results_201_are_checked_against_the_201_schemas() {
        let v201 = |msg, payload: &str| check_result(Version::V201, msg, &raw(payload));
        let boot = r#"{"status":"Accepted","currentTime":"2026-01-01T00:00:00Z","interval":300}"#;
        assert!(matches!(
            v201(Outgoing::BootNotification, boot),
            Ok(Checked::Boot {
                accepted: true,
                interval_secs: 300
            })
        ));
        // The station's own number: the answer does not name the transaction.
        let start = Outgoing::StartTransaction {
            connector: 1,
            meter_wh: 0,
            transaction: 77,
        };
        assert!(matches!(
            v201(start, "{}"),
            Ok(Checked::Plan(Reply::Started {
                transaction: 77,
                accepted: true
            }))
        ));
        assert!(matches!(
            v201(start, r#"{"idTokenInfo":{"status":"Blocked"}}"#),
            Ok(Checked::Plan(Reply::Started {
                accepted: false,
                ..
            }))
        ));
        assert!(matches!(
            v201(
                Outgoing::Authorize,
                r#"{"idTokenInfo":{"status":"Accepted"}}"#
            ),
            Ok(Checked::Plan(Reply::Authorized { accepted: true }))
        ));
        // 1.6's shape is not 2.0.1's.
        assert!(
            v201(
                Outgoing::Authorize,
                r#"{"idTagInfo":{"status":"Accepted"}}"#
            )
            .is_err()
        );
        assert!(v201(start, r#"{"idTokenInfo":{"status":"Fine"}}"#).is_err());
    }
}
