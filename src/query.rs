//! What the operator API may ask a processor about the charge points it owns, and the answers.
//! Answers travel on a channel plus a `mio::Waker`, so the admin thread waits in its own poll
//! and never blocks on a processor (a stuck one must not stop `/health` from answering).

use std::sync::Arc;

use crossbeam_channel::Sender;
use mio::Waker;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::types::{ChargePointId, OpenTransaction};

/// An open 2.0.1 transaction as the API shows it: what the state keeps, with the `seqNo`s that
/// were skipped listed (the state keeps them as a bitmap).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenTransactionView {
    #[serde(flatten)]
    pub kept: OpenTransaction,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_seq_nos: Vec<u64>,
}

impl From<&OpenTransaction> for OpenTransactionView {
    fn from(open: &OpenTransaction) -> OpenTransactionView {
        let missing_seq_nos = (0..64u64)
            .rev()
            .filter(|i| open.missing & (1 << i) != 0)
            .filter_map(|i| open.next_seq.checked_sub(1 + i))
            .collect();
        OpenTransactionView {
            kept: OpenTransaction {
                missing: 0,
                ..open.clone()
            },
            missing_seq_nos,
        }
    }
}

/// A one-shot answer to a thread waiting in a `mio::Poll`.
#[derive(Debug)]
pub struct Answer<T> {
    tx: Sender<T>,
    waker: Arc<Waker>,
}

impl<T> Answer<T> {
    pub fn new(tx: Sender<T>, waker: Arc<Waker>) -> Answer<T> {
        Answer { tx, waker }
    }

    /// Never blocks: the asker sizes its channel for every answer it asked for.
    pub fn send(self, value: T) {
        if self.tx.try_send(value).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// Which charge points a listing wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    All,
    Connected,
    Disconnected,
}

#[derive(Debug)]
pub enum Query {
    /// Up to `limit` charge points with an identity after `after`, in identity order.
    List {
        filter: Filter,
        after: Option<String>,
        limit: usize,
        reply: Answer<Vec<ChargePointView>>,
    },
    Detail {
        cp: ChargePointId,
        reply: Answer<Option<ChargePointView>>,
    },
    /// Close the charge point's connection (code 1000); answers whether it was connected.
    Disconnect {
        cp: ChargePointId,
        reply: Answer<bool>,
    },
}

/// One charge point as the operator API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ChargePointView {
    pub id: String,
    pub connected: bool,
    /// RFC 3339: when it connected (connected) or disconnected (otherwise).
    pub since: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_address: Option<String>,
    #[serde(rename = "loop", skip_serializing_if = "Option::is_none")]
    pub loop_index: Option<u16>,
    /// How its (last) connection proved the identity: none, password or certificate.
    pub authenticated_by: &'static str,
    /// The highest security profile it authenticated at: it is not served below it again.
    pub authenticated_profile: u8,
    /// Journal lines of its exchanges left out over its allowance (`events.charge_point_rate`).
    pub journal_lines_suppressed: u64,
    /// Times its connection was paused for going over `ocpp.max_calls_per_second`.
    pub rate_limited: u64,
    /// unknown, pending, rejected or accepted.
    pub registration: &'static str,
    /// The OCPP version its (last) connection spoke: "1.6" or "2.0.1".
    #[serde(rename = "ocppVersion")]
    pub version: &'static str,
    /// The BootNotification payload it last booted with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot: Option<Box<RawValue>>,
    pub connectors: Vec<ConnectorView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_transaction: Option<i32>,
    /// A 2.0.1 station's open transactions (its ids, EVSEs, tokens, meter starts, next seqNo,
    /// the seqNos skipped).
    #[serde(rename = "openTransactions201", skip_serializing_if = "Vec::is_empty")]
    pub open_transactions_201: Vec<OpenTransactionView>,
    /// RFC 3339: when its last CALL arrived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message_at: Option<String>,
    /// The client certificate its live (or last) connection showed (profile 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<CertificateView>,
    pub trace: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CertificateView {
    /// Hex.
    pub serial: String,
    /// RFC 3339.
    pub not_after: String,
    /// The gateway asked the charge point to renew it.
    pub renewal_asked: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectorView {
    /// 2.0.1: the EVSE the connector belongs to.
    #[serde(rename = "evseId", skip_serializing_if = "Option::is_none")]
    pub evse_id: Option<u32>,
    pub connector_id: u32,
    pub status: &'static str,
}
