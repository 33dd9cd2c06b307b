//! The CALLs a simulated charge point sends ([`Outgoing`]) and their OCPP-J text. Every string
//! that goes into a frame is ours (digits, action names, identities restricted to URL-safe
//! characters by the CLI), so frames are written directly, without a JSON serializer; a unit
//! test checks each one against the gateway's 1.6 request validation.

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
    },
    MeterValues {
        connector: u8,
        transaction: Option<i64>,
        meter_wh: u64,
    },
    StopTransaction {
        transaction: i64,
        meter_wh: u64,
        /// Ended by RemoteStopTransaction (reason "Remote"), else at the charge point ("Local").
        remote: bool,
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

/// The idTag a charge point's driver presents (a CiString20).
pub fn id_tag(index: u32) -> String {
    format!("TAG{index:08X}")
}

/// Writes the CALL `[2,"<unique_id>","<Action>",{...}]` for `msg` of charge point `index`,
/// whose identity is `{id_prefix}{index}`, into `out` (cleared first), in `version`'s form.
/// 2.0.1 has its own BootNotification and StatusNotification; Heartbeat is the same; the CLI
/// lets no other message be sent in 2.0.1.
pub fn write_call(
    out: &mut String,
    unique_id: u32,
    msg: Outgoing,
    (index, id_prefix): (u32, &str),
    version: Version,
) {
    out.clear();
    let action = msg.action().name();
    let _ = write!(out, "[2,\"{unique_id}\",\"{action}\",");
    match (version, msg) {
        (Version::V201, Outgoing::BootNotification) => {
            out.push_str(r#"{"reason":"PowerUp","chargingStation":{"model":"SimCP-1","vendorName":"OcppBench""#);
            // The identity is the serial number; string(25): one too long for it is left out.
            let digits = index.checked_ilog10().unwrap_or(0) as usize + 1;
            if id_prefix.len() + digits <= 25 {
                let _ = write!(out, r#","serialNumber":"{id_prefix}{index}""#);
            }
            out.push_str(r#","firmwareVersion":"ocpp-bench-0.1"}}"#);
            out.push(']');
            return;
        }
        (Version::V201, Outgoing::StatusNotification { connector, status }) => {
            let _ = write!(
                out,
                r#"{{"evseId":{connector},"connectorId":1,"connectorStatus":"{}","timestamp":""#,
                status.as_str_201()
            );
            push_utc_now(out);
            out.push_str("\"}]");
            return;
        }
        _ => {}
    }
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
    out.push(']');
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

    #[test]
    fn every_outgoing_call_is_a_valid_request() {
        use ConnectorStatus::*;
        let all = [
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
            },
            Outgoing::MeterValues {
                connector: 1,
                transaction: Some(7),
                meter_wh: 1234,
            },
            Outgoing::MeterValues {
                connector: 1,
                transaction: None,
                meter_wh: 0,
            },
            Outgoing::StopTransaction {
                transaction: 7,
                meter_wh: 99,
                remote: true,
            },
            Outgoing::DiagnosticsStatusNotification,
            Outgoing::FirmwareStatusNotification,
            Outgoing::LargeDataTransfer { bytes: 300 },
        ];
        let mut text = String::new();
        for prefix in ["bench-", "a-very-long-prefix-of-twenty-nine"] {
            for (i, msg) in all.into_iter().enumerate() {
                write_call(&mut text, i as u32 + 1, msg, (0xABCD, prefix), Version::V16);
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
        let all = [
            Outgoing::BootNotification,
            Outgoing::Heartbeat,
            Outgoing::StatusNotification {
                connector: 1,
                status: ConnectorStatus::Available,
            },
            Outgoing::StatusNotification {
                connector: 2,
                status: ConnectorStatus::Charging,
            },
        ];
        let mut text = String::new();
        for prefix in ["bench-", "a-very-long-prefix-of-twenty-nine"] {
            for msg in all {
                write_call(&mut text, 1, msg, (0xABCD, prefix), Version::V201);
                let Ok(Frame::Call {
                    action, payload, ..
                }) = parse_frame(&text)
                else {
                    panic!("not a CALL: {text}");
                };
                ocpp::v201::check_request(&action, payload.get())
                    .unwrap_or_else(|e| panic!("{text}: {e:?}"));
            }
        }
    }
}
