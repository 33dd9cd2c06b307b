//! The CALLs a simulated charge point sends ([`Outgoing`]) and their OCPP-J text in 1.6 or
//! 2.0.1. Every string that goes into a frame is ours (digits, action names, identities
//! restricted to URL-safe characters by the CLI), so frames are written directly, without a
//! JSON serializer; unit tests check each one against the gateway's 1.6 validation and the 2.0.1
//! schemas.
//!
//! An [`Outgoing`] names what happens at the charge point; the version decides the message. In
//! 2.0.1 a transaction's start, meter values and end are one action, TransactionEvent (Started,
//! Updated, Ended, numbered by `seqNo`), and the station names the transaction itself.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use ocpp::Version;
use ocpp::v16::Action;

/// Connector states a simulated charge point reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorStatus {
    Available,
    Preparing,
    Charging,
    Finishing,
}

impl ConnectorStatus {
    fn as_str(self) -> &'static str {
        match self {
            ConnectorStatus::Available => "Available",
            ConnectorStatus::Preparing => "Preparing",
            ConnectorStatus::Charging => "Charging",
            ConnectorStatus::Finishing => "Finishing",
        }
    }

    /// As 2.0.1 names it (its connector knows only free or occupied here).
    fn as_str_201(self) -> &'static str {
        match self {
            ConnectorStatus::Available => "Available",
            _ => "Occupied",
        }
    }
}

/// One CALL of a charge point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outgoing {
    BootNotification,
    Heartbeat,
    StatusNotification {
        connector: u8,
        status: ConnectorStatus,
    },
    Authorize,
    StartTransaction {
        connector: u8,
        meter_wh: u64,
        /// The station's own number for it (2.0.1 names its transactions; 1.6's central
        /// system assigns the id and this is not sent).
        transaction: i64,
    },
    MeterValues {
        connector: u8,
        transaction: Option<i64>,
        meter_wh: u64,
        /// 2.0.1: the TransactionEvent's seqNo (Started was 0).
        seq_no: u32,
    },
    StopTransaction {
        transaction: i64,
        meter_wh: u64,
        /// Ended by RemoteStopTransaction (reason "Remote"), else at the charge point ("Local").
        remote: bool,
        /// 2.0.1: the TransactionEvent's seqNo.
        seq_no: u32,
    },
    DiagnosticsStatusNotification,
    FirmwareStatusNotification,
    /// A DataTransfer carrying this many bytes of data (`--large-message`).
    LargeDataTransfer {
        bytes: u32,
    },
}

impl Outgoing {
    pub fn action(self) -> Action {
        match self {
            Outgoing::BootNotification => Action::BootNotification,
            Outgoing::Heartbeat => Action::Heartbeat,
            Outgoing::StatusNotification { .. } => Action::StatusNotification,
            Outgoing::Authorize => Action::Authorize,
            Outgoing::StartTransaction { .. } => Action::StartTransaction,
            Outgoing::MeterValues { .. } => Action::MeterValues,
            Outgoing::StopTransaction { .. } => Action::StopTransaction,
            Outgoing::DiagnosticsStatusNotification => Action::DiagnosticsStatusNotification,
            Outgoing::FirmwareStatusNotification => Action::FirmwareStatusNotification,
            Outgoing::LargeDataTransfer { .. } => Action::DataTransfer,
        }
    }
}

impl Outgoing {
    /// The action it is sent as in `version`.
    pub fn name(self, version: Version) -> &'static str {
        match (version, self) {
            (
                Version::V201 | Version::V21,
                Outgoing::StartTransaction { .. }
                | Outgoing::MeterValues {
                    transaction: Some(_),
                    ..
                }
                | Outgoing::StopTransaction { .. },
            ) => "TransactionEvent",
            (Version::V201 | Version::V21, Outgoing::DiagnosticsStatusNotification) => {
                "LogStatusNotification"
            }
            _ => self.action().name(),
        }
    }
}

/// Who writes a CALL: the charge point's index (its identity is `{id_prefix}{index}`), its
/// version, and the run's tag (part of a 2.0.1 transaction id, so a second run against a
/// gateway that kept its state starts new transactions instead of resending old ones).
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    pub index: u32,
    pub id_prefix: &'a str,
    pub version: Version,
    pub run_tag: u32,
}

/// The 2.0.1 transactionId of the station's transaction number `n` in the run `run_tag`.
pub fn transaction_id_201(run_tag: u32, n: i64) -> String {
    format!("{run_tag:08x}-{n}")
}

/// The idTag a charge point's driver presents (a CiString20).
pub fn id_tag(index: u32) -> String {
    format!("TAG{index:08X}")
}

/// Writes the CALL `[2,"<unique_id>","<Action>",{...}]` for `msg` of `by` into `out` (cleared
/// first), in `by.version`'s form.
pub fn write_call(out: &mut String, unique_id: u32, msg: Outgoing, by: Writer<'_>) {
    out.clear();
    let _ = write!(out, "[2,\"{unique_id}\",\"{}\",", msg.name(by.version));
    match by.version {
        Version::V16 => write_16(out, msg, by),
        Version::V201 | Version::V21 => write_201(out, msg, by),
    }
    out.push(']');
}

fn write_16(
    out: &mut String,
    msg: Outgoing,
    Writer {
        index, id_prefix, ..
    }: Writer<'_>,
) {
    match msg {
        Outgoing::BootNotification => {
            out.push_str(r#"{"chargePointVendor":"OcppBench","chargePointModel":"SimCP-1""#);
            // The identity is the serial number; CiString25: one too long for it is left out.
            let digits = index.checked_ilog10().unwrap_or(0) as usize + 1;
            if id_prefix.len() + digits <= 25 {
                let _ = write!(out, r#","chargePointSerialNumber":"{id_prefix}{index}""#);
            }
            out.push_str(r#","firmwareVersion":"ocpp-bench-0.1"}"#);
        }
        Outgoing::Heartbeat => out.push_str("{}"),
        Outgoing::StatusNotification { connector, status } => {
            let _ = write!(
                out,
                r#"{{"connectorId":{connector},"errorCode":"NoError","status":"{}","timestamp":""#,
                status.as_str()
            );
            push_utc_now(out);
            out.push_str("\"}");
        }
        Outgoing::Authorize => {
            let _ = write!(out, r#"{{"idTag":"{}"}}"#, id_tag(index));
        }
        Outgoing::StartTransaction {
            connector,
            meter_wh,
            ..
        } => {
            let _ = write!(
                out,
                r#"{{"connectorId":{connector},"idTag":"{}","meterStart":{meter_wh},"timestamp":""#,
                id_tag(index)
            );
            push_utc_now(out);
            out.push_str("\"}");
        }
        Outgoing::MeterValues {
            connector,
            transaction,
            meter_wh,
            ..
        } => {
            let _ = write!(out, r#"{{"connectorId":{connector},"#);
            if let Some(tx) = transaction {
                let _ = write!(out, r#""transactionId":{tx},"#);
            }
            out.push_str(r#""meterValue":[{"timestamp":""#);
            push_utc_now(out);
            let _ = write!(
                out,
                r#"","sampledValue":[{{"value":"{meter_wh}","context":"Sample.Periodic","measurand":"Energy.Active.Import.Register","unit":"Wh"}}]}}]}}"#
            );
        }
        Outgoing::StopTransaction {
            transaction,
            meter_wh,
            remote,
            ..
        } => {
            let reason = if remote { "Remote" } else { "Local" };
            let _ = write!(
                out,
                r#"{{"idTag":"{}","meterStop":{meter_wh},"timestamp":""#,
                id_tag(index)
            );
            push_utc_now(out);
            let _ = write!(
                out,
                r#"","transactionId":{transaction},"reason":"{reason}"}}"#
            );
        }
        Outgoing::DiagnosticsStatusNotification => out.push_str(r#"{"status":"Idle"}"#),
        Outgoing::FirmwareStatusNotification => out.push_str(r#"{"status":"Idle"}"#),
        Outgoing::LargeDataTransfer { bytes } => {
            out.push_str(r#"{"vendorId":"ocpp-bench","data":""#);
            out.extend(std::iter::repeat_n('d', bytes as usize));
            out.push_str("\"}");
        }
    }
}

/// 2.0.1's form: its own BootNotification, StatusNotification (per EVSE and connector),
/// Authorize (an idToken object) and LogStatusNotification; a transaction's life as
/// TransactionEvents; Heartbeat, FirmwareStatusNotification and DataTransfer as in 1.6.
fn write_201(out: &mut String, msg: Outgoing, by: Writer<'_>) {
    let Writer {
        index,
        id_prefix,
        run_tag,
        ..
    } = by;
    match msg {
        Outgoing::BootNotification => {
            out.push_str(r#"{"reason":"PowerUp","chargingStation":{"model":"SimCP-1","vendorName":"OcppBench""#);
            // The identity is the serial number; string(25): one too long for it is left out.
            let digits = index.checked_ilog10().unwrap_or(0) as usize + 1;
            if id_prefix.len() + digits <= 25 {
                let _ = write!(out, r#","serialNumber":"{id_prefix}{index}""#);
            }
            out.push_str(r#","firmwareVersion":"ocpp-bench-0.1"}}"#);
        }
        Outgoing::StatusNotification { connector, status } => {
            // Connector 0 (the whole station in 1.6) is EVSE 0 here, whose connector is 0 too.
            let connector_id = u8::from(connector > 0);
            let _ = write!(
                out,
                r#"{{"evseId":{connector},"connectorId":{connector_id},"connectorStatus":"{}","timestamp":""#,
                status.as_str_201()
            );
            push_utc_now(out);
            out.push_str("\"}");
        }
        Outgoing::Authorize => {
            let _ = write!(
                out,
                r#"{{"idToken":{{"idToken":"{}","type":"ISO14443"}}}}"#,
                id_tag(index)
            );
        }
        Outgoing::StartTransaction {
            connector,
            meter_wh,
            transaction,
        } => transaction_event(
            out,
            Event {
                kind: "Started",
                trigger: "Authorized",
                seq_no: 0,
                transaction,
                run_tag,
                meter_wh,
            },
            |out| {
                let _ = write!(
                    out,
                    r#","evse":{{"id":{connector},"connectorId":1}},"idToken":{{"idToken":"{}","type":"ISO14443"}}"#,
                    id_tag(index)
                );
                out.push_str(r#","transactionInfo":{"chargingState":"Charging""#);
            },
        ),
        Outgoing::MeterValues {
            connector,
            transaction: Some(transaction),
            meter_wh,
            seq_no,
        } => transaction_event(
            out,
            Event {
                kind: "Updated",
                trigger: "MeterValuePeriodic",
                seq_no,
                transaction,
                run_tag,
                meter_wh,
            },
            |out| {
                let _ = write!(out, r#","evse":{{"id":{connector}}}"#);
                out.push_str(r#","transactionInfo":{"chargingState":"Charging""#);
            },
        ),
        Outgoing::MeterValues {
            connector,
            transaction: None,
            meter_wh,
            ..
        } => {
            let _ = write!(out, r#"{{"evseId":{connector},"meterValue":["#);
            push_meter_value(out, meter_wh, "Sample.Periodic");
            out.push_str("]}");
        }
        Outgoing::StopTransaction {
            transaction,
            meter_wh,
            remote,
            seq_no,
        } => transaction_event(
            out,
            Event {
                kind: "Ended",
                trigger: if remote {
                    "RemoteStop"
                } else {
                    "StopAuthorized"
                },
                seq_no,
                transaction,
                run_tag,
                meter_wh,
            },
            |out| {
                let reason = if remote { "Remote" } else { "Local" };
                let _ = write!(
                    out,
                    r#","transactionInfo":{{"chargingState":"Idle","stoppedReason":"{reason}""#
                );
            },
        ),
        Outgoing::DiagnosticsStatusNotification => out.push_str(r#"{"status":"Idle"}"#),
        Outgoing::Heartbeat
        | Outgoing::FirmwareStatusNotification
        | Outgoing::LargeDataTransfer { .. } => write_16(out, msg, by),
    }
}

/// The parts of a TransactionEvent that vary.
struct Event {
    kind: &'static str,
    trigger: &'static str,
    seq_no: u32,
    transaction: i64,
    run_tag: u32,
    meter_wh: u64,
}

/// `{"eventType":..,"timestamp":..,"triggerReason":..,"seqNo":..,<middle>,"transactionId":..},
/// "meterValue":[..]}`: `middle` writes the event's own fields and opens `transactionInfo`
/// (its last field), which this closes with the id.
fn transaction_event(out: &mut String, event: Event, middle: impl FnOnce(&mut String)) {
    let _ = write!(out, r#"{{"eventType":"{}","timestamp":""#, event.kind);
    push_utc_now(out);
    let _ = write!(
        out,
        r#"","triggerReason":"{}","seqNo":{}"#,
        event.trigger, event.seq_no
    );
    middle(out);
    let _ = write!(
        out,
        r#","transactionId":"{}"}},"meterValue":["#,
        transaction_id_201(event.run_tag, event.transaction)
    );
    let context = match event.kind {
        "Started" => "Transaction.Begin",
        "Ended" => "Transaction.End",
        _ => "Sample.Periodic",
    };
    push_meter_value(out, event.meter_wh, context);
    out.push_str("]}");
}

/// One meterValue object: the energy register in Wh, now.
fn push_meter_value(out: &mut String, meter_wh: u64, context: &str) {
    out.push_str(r#"{"timestamp":""#);
    push_utc_now(out);
    let _ = write!(
        out,
        r#"","sampledValue":[{{"value":{meter_wh},"context":"{context}","measurand":"Energy.Active.Import.Register","unitOfMeasure":{{"unit":"Wh"}}}}]}}"#
    );
}

/// Appends the current UTC time as RFC 3339 with a `Z` (`2026-01-31T23:59:59Z`).
pub fn push_utc_now(out: &mut String) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    push_utc(out, secs);
}

/// Appends `secs` since the Unix epoch as RFC 3339 UTC.
pub fn push_utc(out: &mut String, secs: u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
}

/// Days since 1970-01-01 -> (year, month, day) in the proleptic Gregorian calendar, counted
/// in 400-year eras of 146,097 days starting on March 1st (so the leap day ends a year).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use ocpp::rpc::{Frame, parse_frame};
    use ocpp::v16::validate_request;

    use super::*;

    fn utc(secs: u64) -> String {
        let mut s = String::new();
        push_utc(&mut s, secs);
        s
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(utc(1_735_689_600), "2025-01-01T00:00:00Z");
        assert_eq!(utc(4_107_542_400), "2100-03-01T00:00:00Z");
    }

    /// Every message a charge point sends, in each shape it takes.
    fn every_outgoing() -> Vec<Outgoing> {
        use ConnectorStatus::*;
        vec![
            Outgoing::BootNotification,
            Outgoing::Heartbeat,
            Outgoing::StatusNotification {
                connector: 0,
                status: Available,
            },
            Outgoing::StatusNotification {
                connector: 1,
                status: Preparing,
            },
            Outgoing::StatusNotification {
                connector: 1,
                status: Charging,
            },
            Outgoing::StatusNotification {
                connector: 1,
                status: Finishing,
            },
            Outgoing::Authorize,
            Outgoing::StartTransaction {
                connector: 1,
                meter_wh: 12,
                transaction: 3,
            },
            Outgoing::MeterValues {
                connector: 1,
                transaction: Some(7),
                meter_wh: 1234,
                seq_no: 1,
            },
            Outgoing::MeterValues {
                connector: 1,
                transaction: None,
                meter_wh: 0,
                seq_no: 0,
            },
            Outgoing::StopTransaction {
                transaction: 7,
                meter_wh: 99,
                remote: true,
                seq_no: 2,
            },
            Outgoing::StopTransaction {
                transaction: 7,
                meter_wh: 99,
                remote: false,
                seq_no: 2,
            },
            Outgoing::DiagnosticsStatusNotification,
            Outgoing::FirmwareStatusNotification,
            Outgoing::LargeDataTransfer { bytes: 300 },
        ]
    }

    fn writer(prefix: &str, version: Version) -> Writer<'_> {
        Writer {
            index: 0xABCD,
            id_prefix: prefix,
            version,
            run_tag: 0x5EED,
        }
    }

    #[test]
    fn every_outgoing_call_is_a_valid_request() {
        let mut text = String::new();
        for prefix in ["bench-", "a-very-long-prefix-of-twenty-nine"] {
            for (i, msg) in every_outgoing().into_iter().enumerate() {
                write_call(&mut text, i as u32 + 1, msg, writer(prefix, Version::V16));
                if msg == Outgoing::BootNotification && prefix == "bench-" {
                    assert!(
                        text.contains(r#""chargePointSerialNumber":"bench-43981""#),
                        "{text}"
                    );
                }
                let Ok(Frame::Call {
                    unique_id,
                    action,
                    payload,
                }) = parse_frame(&text)
                else {
                    panic!("not a CALL: {text}");
                };
                assert_eq!(unique_id, (i + 1).to_string());
                assert_eq!(action, msg.action().name());
                validate_request(msg.action(), payload).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            }
        }
    }

    #[test]
    fn the_201_calls_are_valid_against_the_201_schemas() {
        let mut text = String::new();
        for prefix in ["bench-", "a-very-long-prefix-of-twenty-nine"] {
            for msg in every_outgoing() {
                write_call(&mut text, 1, msg, writer(prefix, Version::V201));
                let Ok(Frame::Call {
                    action, payload, ..
                }) = parse_frame(&text)
                else {
                    panic!("not a CALL: {text}");
                };
                assert_eq!(action, msg.name(Version::V201));
                ocpp::v201::check_request(&action, payload.get())
                    .unwrap_or_else(|e| panic!("{text}: {e:?}"));
            }
        }
    }

    #[test]
    fn a_transaction_is_one_string_id_with_numbered_events() {
        let mut text = String::new();
        let events = [
            (every_outgoing()[7], "Started", 0),
            (every_outgoing()[8], "Updated", 1),
            (every_outgoing()[10], "Ended", 2),
        ];
        for (msg, kind, seq_no) in events {
            write_call(&mut text, 1, msg, writer("cp", Version::V201));
            let payload: serde_json::Value =
                serde_json::from_str::<Vec<serde_json::Value>>(&text).unwrap()[3].clone();
            assert_eq!(payload["eventType"], kind);
            assert_eq!(payload["seqNo"], seq_no);
            let n = match msg {
                Outgoing::StartTransaction { transaction, .. } => transaction,
                _ => 7,
            };
            assert_eq!(
                payload["transactionInfo"]["transactionId"],
                transaction_id_201(0x5EED, n)
            );
        }
        assert_eq!(transaction_id_201(0x5EED, 3), "00005eed-3");
        let stop = &every_outgoing()[10];
        write_call(&mut text, 1, *stop, writer("cp", Version::V201));
        assert!(text.contains(r#""triggerReason":"RemoteStop""#), "{text}");
        assert!(text.contains(r#""stoppedReason":"Remote""#), "{text}");
    }
}
