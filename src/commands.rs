//! The way in for calls of the central system (the operator API today; Redis streams and Kafka
//! later): checks the payload, then hands the call to the charge point's processor, which knows
//! where it is connected. Every call yields exactly one outcome (see [`crate::call`]).

use std::sync::Arc;
use std::time::Duration;

use mio::Waker;
use serde_json::value::RawValue;

use crate::call::{CallOutcome, OutboundCall, PendingCall};
use crate::events::Events;
use crate::mailbox::{Processors, ToProcessor};
use crate::stats::Stats;
use crate::types::ChargePointId;
use ocpp::rpc::CallErrorCode;
use ocpp::v16::{self, Action, Invalid};

#[derive(Clone)]
pub struct Commands {
    pub processors: Processors,
    pub stats: Arc<Stats>,
    pub events: Events,
}

impl Commands {
    /// Sends `action` with `payload` to `cp`. `Err`: the CallError a charge point would answer
    /// (never sent). `waker` is woken when the outcome arrives; `timeout` replaces
    /// `ocpp.message_timeout` for this call.
    pub fn call(
        &self,
        cp: &str,
        action: Action,
        payload: Box<RawValue>,
        waker: Option<Arc<Waker>>,
        timeout: Option<Duration>,
    ) -> Result<PendingCall, Invalid> {
        if !action.sent_by_central_system() {
            return Err(Invalid {
                code: CallErrorCode::NotSupported,
                description: format!("{} is not sent by a central system", action.name()),
            });
        }
        v16::validate_request(action, &payload)?;
        let cp: ChargePointId = cp.into();
        let (call, pending) = OutboundCall::new(action, payload);
        let mut call = call.with_timeout(timeout).reported(
            Arc::clone(&cp),
            Arc::clone(&self.stats),
            self.events.clone(),
        );
        if let Some(waker) = waker {
            call = call.wake(waker);
        }
        if let Err(ToProcessor::Call { call, .. }) = self
            .processors
            .of(&cp)
            .try_send(ToProcessor::Call { cp, call })
        {
            call.resolve(CallOutcome::Rejected);
        }
        Ok(pending)
    }
}

/// Whether a ChangeConfiguration payload sets AuthorizationKey: only the API of the node that
/// holds the charge point may send that (it stores the key once the charge point accepts it);
/// run from a stream or a topic, the charge point would be locked out.
pub fn sets_authorization_key(payload: &RawValue) -> bool {
    serde_json::from_str::<serde_json::Value>(payload.get()).is_ok_and(|v| {
        v["key"]
            .as_str()
            .is_some_and(|k| k.eq_ignore_ascii_case("AuthorizationKey"))
    })
}
