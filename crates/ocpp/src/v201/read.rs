//! The fields of 2.0.1 station messages the gateway reads (its policies, its integration
//! events), borrowed from the payload's text. Read only after [`super::check`] passed, so a
//! field here is present and of its type whenever the schema requires it.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Reads `T` from a checked payload.
pub fn read<'a, T: Deserialize<'a>>(payload: &'a str) -> Result<T, serde_json::Error> {
    serde_json::from_str(payload)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootNotification<'a> {
    #[serde(borrow)]
    pub charging_station: ChargingStation<'a>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargingStation<'a> {
    #[serde(borrow)]
    pub vendor_name: Cow<'a, str>,
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    #[serde(borrow, default)]
    pub firmware_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub serial_number: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusNotification<'a> {
    #[serde(borrow)]
    pub timestamp: Cow<'a, str>,
    #[serde(borrow)]
    pub connector_status: Cow<'a, str>,
    pub evse_id: i64,
    pub connector_id: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorize<'a> {
    #[serde(borrow)]
    pub id_token: IdToken<'a>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdToken<'a> {
    #[serde(borrow)]
    pub id_token: Cow<'a, str>,
    #[serde(borrow, rename = "type")]
    pub kind: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionEvent<'a> {
    /// Started, Updated or Ended.
    #[serde(borrow)]
    pub event_type: Cow<'a, str>,
    #[serde(borrow)]
    pub timestamp: Cow<'a, str>,
    #[serde(borrow)]
    pub trigger_reason: Cow<'a, str>,
    /// An integer without bounds in the schema.
    pub seq_no: i64,
    #[serde(borrow)]
    pub transaction_info: TransactionInfo<'a>,
    #[serde(default)]
    pub offline: bool,
    #[serde(default)]
    pub evse: Option<Evse>,
    #[serde(borrow, default)]
    pub id_token: Option<IdToken<'a>>,
    #[serde(borrow, default)]
    pub meter_value: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionInfo<'a> {
    #[serde(borrow)]
    pub transaction_id: Cow<'a, str>,
    #[serde(borrow, default)]
    pub charging_state: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub stopped_reason: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evse {
    pub id: i64,
    #[serde(default)]
    pub connector_id: Option<i64>,
}
