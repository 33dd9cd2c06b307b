//! The operator API (`/api/v1/chargepoints...`): listings and details from the processors,
//! calls to charge points, closing a connection, frame traces. Requests that need a processor
//! park the client until the answer wakes the admin poll.

use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::http::{self, Response};
use super::server::{AdminLoop, Handled, Waiting};
use super::{DEFAULT_PAGE, MAX_PAGE, QUERY_TIMEOUT};
use crate::call::CallOutcome;
use crate::mailbox::{ToProcessor, shard_of};
use crate::ocpp::v16::Action;
use crate::query::{Answer, Filter, Query};
use crate::security::credentials::{CredentialsError, decode_hex};

impl AdminLoop {
    fn processor_of(&self, cp: &str) -> usize {
        shard_of(cp, self.parts.processors.len())
    }

    /// Sends a query to processor `index`; false when its queue is full or it is gone.
    fn ask(&self, index: usize, query: Query) -> bool {
        self.parts.processors.handles[index]
            .try_send(ToProcessor::Query(query))
            .is_ok()
    }

    fn busy() -> Handled {
        Handled::Respond(
            Response::error(503, "the gateway is too busy to answer; try again")
                .with_header("Retry-After: 1".into()),
        )
    }

    pub(super) fn list(&self, query: &str) -> Handled {
        let filter = match http::query_param(query, "status").as_deref() {
            None | Some("") | Some("all") => Filter::All,
            Some("connected") => Filter::Connected,
            Some("disconnected") => Filter::Disconnected,
            Some(other) => {
                return Handled::Respond(Response::error(
                    400,
                    &format!("status {other:?} is not one of all, connected, disconnected"),
                ));
            }
        };
        let limit = match http::query_param(query, "limit") {
            None => DEFAULT_PAGE,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
                _ => {
                    return Handled::Respond(Response::error(
                        400,
                        &format!("limit must be a number from 1 to {MAX_PAGE}"),
                    ));
                }
            },
        };
        let after = http::query_param(query, "after").filter(|a| !a.is_empty());
        let processors = self.parts.processors.len();
        let (tx, rx) = crossbeam_channel::bounded(processors);
        let mut asked = 0;
        for index in 0..processors {
            let query = Query::List {
                filter,
                after: after.clone(),
                // One more than a page tells whether there is a next one.
                limit: limit + 1,
                reply: Answer::new(tx.clone(), Arc::clone(&self.waker)),
            };
            if !self.ask(index, query) {
                return Self::busy();
            }
            asked += 1;
        }
        Handled::Wait(Waiting::List {
            rx,
            expected: asked,
            pages: Vec::new(),
            limit,
            until: Instant::now() + QUERY_TIMEOUT,
        })
    }

    pub(super) fn detail(&self, id: &str) -> Handled {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let query = Query::Detail {
            cp: id.into(),
            reply: Answer::new(tx, Arc::clone(&self.waker)),
        };
        if !self.ask(self.processor_of(id), query) {
            return Self::busy();
        }
        Handled::Wait(Waiting::Detail {
            rx,
            until: Instant::now() + QUERY_TIMEOUT,
        })
    }

    pub(super) fn disconnect(&self, id: &str) -> Handled {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let query = Query::Disconnect {
            cp: id.into(),
            reply: Answer::new(tx, Arc::clone(&self.waker)),
        };
        if !self.ask(self.processor_of(id), query) {
            return Self::busy();
        }
        Handled::Wait(Waiting::Disconnect {
            rx,
            until: Instant::now() + QUERY_TIMEOUT,
        })
    }

    pub(super) fn trace(&self, id: &str, on: bool) -> Response {
        if !self.parts.traces.set(id, on) {
            return Response::error(
                429,
                &format!(
                    "at most {} charge points can be traced at once",
                    crate::net::MAX_TRACED
                ),
            );
        }
        info!(
            "cp={id} frame trace turned {}",
            if on { "on" } else { "off" }
        );
        Response::json(200, &json!({"id": id, "trace": on}))
    }

    pub(super) fn call(&self, id: &str, body: &[u8]) -> Handled {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct CallRequest {
            action: String,
            payload: Box<RawValue>,
        }
        let request: CallRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return Handled::Respond(Response::error(
                    400,
                    &format!("body must be {{\"action\": \"...\", \"payload\": {{...}}}}: {e}"),
                ));
            }
        };
        let Some(action) = Action::from_name(&request.action) else {
            return Handled::Respond(Response::json(
                400,
                &json!({"error": format!("{:?} is not an OCPP 1.6 action", request.action),
                        "code": "NotImplemented"}),
            ));
        };
        let rotation = (action == Action::ChangeConfiguration)
            .then(|| authorization_key(&request.payload))
            .flatten()
            .map(|key| Rotation {
                id: id.to_owned(),
                key,
            });
        let waker = Some(Arc::clone(&self.waker));
        match self.parts.commands.call(id, action, request.payload, waker) {
            Err(invalid) => Handled::Respond(Response::json(
                400,
                &json!({"error": invalid.description, "code": invalid.code.as_str()}),
            )),
            Ok(pending) => {
                // The outcome always arrives (each queued call ahead is answered or times
                // out); this bound only guards against a bug leaving the client hanging.
                let ocpp = &self.parts.config.ocpp;
                let queued = u32::try_from(ocpp.max_queued_calls + 1).unwrap_or(u32::MAX);
                let until = Instant::now()
                    + ocpp.message_timeout.saturating_mul(queued)
                    + Duration::from_secs(5);
                Handled::Wait(Waiting::Call {
                    pending,
                    until,
                    rotation,
                })
            }
        }
    }
}

/// A new AuthorizationKey sent to a charge point, stored once the charge point accepts it.
pub(super) struct Rotation {
    pub id: String,
    pub key: Vec<u8>,
}

impl AdminLoop {
    /// `PUT /api/v1/chargepoints/{id}/password`: stores a new key for Basic auth (the charge
    /// point must already use it; to change it on the charge point too, send ChangeConfiguration
    /// of AuthorizationKey through `/calls`). Body: `{"password": "text"}` or
    /// `{"password_hex": "hex of the key's bytes"}`.
    pub(super) fn set_password(&self, id: &str, body: &[u8]) -> Response {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct PasswordRequest {
            password: Option<String>,
            password_hex: Option<String>,
        }
        let Some(credentials) = &self.parts.security.credentials else {
            return Response::error(
                409,
                "no credentials file: set security.credentials (profiles 1 and 2)",
            );
        };
        let key = match serde_json::from_slice::<PasswordRequest>(body) {
            Ok(PasswordRequest {
                password: Some(text),
                password_hex: None,
            }) => text.into_bytes(),
            Ok(PasswordRequest {
                password: None,
                password_hex: Some(hex),
            }) => match decode_hex(hex.as_bytes()) {
                Some(bytes) => bytes,
                None => return Response::error(400, "password_hex is not hex"),
            },
            _ => {
                return Response::error(
                    400,
                    "body must be {\"password\": \"...\"} or {\"password_hex\": \"...\"}",
                );
            }
        };
        match credentials.set(id, &key) {
            Ok(()) => {
                info!("cp={id} Basic auth key set through the API");
                Response::json(200, &json!({"id": id, "stored": true}))
            }
            Err(e @ CredentialsError::KeyLength) => Response::error(400, &e.to_string()),
            Err(e) => {
                warn!("cp={id} cannot store a key: {e}");
                Response::error(500, &format!("cannot store the key: {e}"))
            }
        }
    }

    /// The answer to a ChangeConfiguration of AuthorizationKey: the key is stored only when
    /// the charge point answered Accepted (it uses the new key from then on).
    pub(super) fn rotated(&self, rotation: Rotation, outcome: CallOutcome) -> Response {
        let accepted = matches!(&outcome, CallOutcome::Result(payload)
            if serde_json::from_str::<serde_json::Value>(payload.get())
                .is_ok_and(|v| v["status"] == "Accepted"));
        let mut response = outcome_response(outcome);
        if !accepted {
            return response;
        }
        let Rotation { id, key } = rotation;
        let stored = match &self.parts.security.credentials {
            None => "not stored: no security.credentials".to_owned(),
            Some(credentials) => match credentials.set(&id, &key) {
                Ok(()) => {
                    info!("cp={id} AuthorizationKey changed on the charge point and stored");
                    "stored".to_owned()
                }
                Err(e) => {
                    // The charge point now uses a key we could not store: it will be refused
                    // until an operator sets it (PUT .../password) or fixes the file.
                    log::error!(
                        "cp={id} accepted a new AuthorizationKey that could not be stored: {e}"
                    );
                    format!("NOT stored: {e}")
                }
            },
        };
        response.merge_json(json!({"credentials": stored}));
        response
    }
}

/// The key of a ChangeConfiguration payload that sets AuthorizationKey: the value's bytes as
/// hex-decoded (the whitepaper's form), else as text.
fn authorization_key(payload: &RawValue) -> Option<Vec<u8>> {
    #[derive(Deserialize)]
    struct ChangeConfiguration {
        key: String,
        value: String,
    }
    let change: ChangeConfiguration = serde_json::from_str(payload.get()).ok()?;
    if !change.key.eq_ignore_ascii_case("AuthorizationKey") {
        return None;
    }
    Some(decode_hex(change.value.as_bytes()).unwrap_or_else(|| change.value.into_bytes()))
}

/// The HTTP answer for a call's outcome.
pub(super) fn outcome_response(outcome: CallOutcome) -> Response {
    match outcome {
        CallOutcome::Result(payload) => {
            Response::json(200, &json!({"outcome": "result", "payload": payload}))
        }
        CallOutcome::Error {
            code,
            description,
            details,
        } => Response::json(
            200,
            &json!({"outcome": "error", "code": code, "description": description,
                    "details": details}),
        ),
        CallOutcome::InvalidResult(invalid) => Response::json(
            502,
            &json!({"outcome": "invalid_result", "code": invalid.code.as_str(),
                    "error": invalid.description}),
        ),
        CallOutcome::Timeout => Response::json(
            504,
            &json!({"outcome": "timeout", "error": "the charge point did not answer in time"}),
        ),
        CallOutcome::NotConnected => Response::json(
            404,
            &json!({"outcome": "not_connected", "error": "the charge point is not connected"}),
        ),
        CallOutcome::Rejected => Response::json(
            429,
            &json!({"outcome": "rejected",
                    "error": "too many calls wait for this charge point; try again later"}),
        )
        .with_header("Retry-After: 1".into()),
    }
}
