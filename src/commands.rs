//! The way in for calls of the central system (the operator API, the Kafka commands topic, the
//! Redis command stream of a cluster): checks the payload, then hands the call to the charge point's processor, which knows
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
use ocpp::AnyAction;
use ocpp::v16::Invalid;

#[derive(Clone)]
pub struct Commands {
    pub processors: Processors,
    pub stats: Arc<Stats>,
    pub events: Events,
}

impl Commands {
    /// Sends `action` with `payload` to `cp` (its processor makes it a call of the charge
    /// point's version, [`OutboundCall::retarget`]). `Err`: the CallError a charge point would
    /// answer (never sent). `waker` is woken when the outcome arrives; `timeout` replaces
    /// `ocpp.message_timeout` for this call.
    pub fn call(
        &self,
        cp: &str,
        action: AnyAction,
        payload: Box<RawValue>,
        waker: Option<Arc<Waker>>,
        timeout: Option<Duration>,
    ) -> Result<PendingCall, Invalid> {
        // The version in which the name is a central system's action and the payload valid
        // (a Reset of 2.0.1 has another payload than 1.6's); the charge point's processor then
        // makes it a call of the charge point's version.
        let action = AnyAction::csms_call(action.name(), &payload)?;
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

/// Whether a 2.0.1 SetVariables payload sets the station's `BasicAuthPassword` (any component:
/// the specification puts it under SecurityCtrlr, a station may name it elsewhere): like
/// 1.6's AuthorizationKey, only the API of the node holding the station sends that.
pub fn sets_basic_auth_password(payload: &RawValue) -> bool {
    serde_json::from_str::<serde_json::Value>(payload.get()).is_ok_and(|v| {
        v["setVariableData"].as_array().is_some_and(|data| {
            data.iter().any(|d| {
                d["variable"]["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case("BasicAuthPassword"))
            })
        })
    })
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

/// What `/health` reads about a command source that reads partitions (the Kafka commands
/// topic): which it reads, or why it reads none yet.
#[derive(Debug, Default)]
pub struct SourceStatus {
    /// The partitions read, once assigned.
    partitions: std::sync::Mutex<Option<Vec<i32>>>,
    /// Why it is not reading yet (no topic, no broker).
    problem: std::sync::Mutex<Option<String>>,
}

impl SourceStatus {
    pub fn partitions(&self) -> Option<Vec<i32>> {
        self.partitions.lock().ok().and_then(|p| p.clone())
    }

    pub fn problem(&self) -> Option<String> {
        self.problem.lock().ok().and_then(|p| p.clone())
    }

    pub fn set_problem(&self, problem: String) {
        if let Ok(mut p) = self.problem.lock() {
            *p = Some(problem);
        }
    }

    pub fn assigned(&self, partitions: Vec<i32>) {
        if let Ok(mut p) = self.partitions.lock() {
            *p = Some(partitions);
        }
        if let Ok(mut p) = self.problem.lock() {
            *p = None;
        }
    }
}
