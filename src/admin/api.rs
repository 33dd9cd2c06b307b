//! The operator API (`/api/v1/chargepoints...`): listings and details from the processors,
//! calls to charge points, closing a connection, frame traces. Requests that need a processor
//! park the client until the answer wakes the admin poll.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use log::{info, warn};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::http::{self, Response};
use super::server::{AdminLoop, Handled, Waiting};
use super::{DEFAULT_PAGE, MAX_PAGE, QUERY_TIMEOUT};
use crate::call::CallOutcome;
use crate::cluster::remote::{Reply, Request};
use crate::mailbox::{ToProcessor, shard_of};
use crate::query::{Answer, Filter, Query};
use crate::security::Security;
use crate::security::credentials::{CredentialsError, MAX_KEY_LEN, MIN_KEY_LEN, decode_hex};
use ocpp::AnyAction;
use ocpp::v16::Action;

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
        let (limit, after) = match page(query) {
            Ok(page) => page,
            Err(response) => return Handled::Respond(response),
        };
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
                    crate::trace::MAX_TRACED
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
        let Some(action) = AnyAction::named(&request.action) else {
            return Handled::Respond(Response::json(
                400,
                &json!({"error": format!("{:?} is not an OCPP 1.6, 2.0.1 or 2.1 action", request.action),
                        "code": "NotImplemented"}),
            ));
        };
        let new_key = match action {
            AnyAction::V16(Action::ChangeConfiguration) => {
                authorization_key(&request.payload).map(|key| (key, RotationKind::AuthorizationKey))
            }
            _ if crate::commands::sets_basic_auth_password(&request.payload) => {
                basic_auth_password(&request.payload).map(|key| (key, RotationKind::Password201))
            }
            _ => None,
        };
        let rotation = new_key.map(|(key, kind)| Rotation {
            id: id.to_owned(),
            kind,
            key,
        });
        // A key the credentials store would refuse is never sent: the charge point would take
        // it and be locked out at its next connect.
        if let Some(rotation) = &rotation
            && let Err(refusal) = storable_key(&self.parts.security, &rotation.key)
        {
            return Handled::Respond(Response::json(
                400,
                &json!({"error": refusal, "code": "PropertyConstraintViolation"}),
            ));
        }
        // Cluster mode: a charge point this node does not hold may be on another one (a key
        // rotation is not forwarded: the key is stored where the call was made).
        let forward = (self.parts.cluster_api.is_some() && rotation.is_none()).then(|| {
            Box::new(Forward {
                cp: id.to_owned(),
                action,
                payload: request.payload.clone(),
            })
        });
        let waker = Some(Arc::clone(&self.waker));
        match self
            .parts
            .commands
            .call(id, action, request.payload, waker, None)
        {
            Err(invalid) => Handled::Respond(Response::json(
                400,
                &json!({"error": invalid.description, "code": invalid.code.as_str()}),
            )),
            Ok(pending) => {
                // The outcome always arrives (each queued call ahead is answered or times
                // out); this bound only guards against a bug leaving the client hanging.
                let until =
                    Instant::now() + self.parts.config.ocpp.longest_call() + Duration::from_secs(5);
                Handled::Wait(Waiting::Call {
                    pending,
                    until,
                    rotation,
                    forward,
                })
            }
        }
    }
}

/// A listing's page: `?limit=` (1 to [`MAX_PAGE`]) and `?after=` (an identity).
fn page(query: &str) -> Result<(usize, Option<String>), Response> {
    let limit = match http::query_param(query, "limit") {
        None => DEFAULT_PAGE,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(Response::error(
                    400,
                    &format!("limit must be a number from 1 to {MAX_PAGE}"),
                ));
            }
        },
    };
    Ok((
        limit,
        http::query_param(query, "after").filter(|a| !a.is_empty()),
    ))
}

/// A call to send to the node that holds the charge point if this one does not.
pub(super) struct Forward {
    pub cp: String,
    pub action: AnyAction,
    pub payload: Box<RawValue>,
}

impl AdminLoop {
    /// Sends a call the processors could not deliver to the node that holds the charge point
    /// (`Err`: its answer comes there); without a cluster it was simply not connected.
    pub(super) fn forward(
        &self,
        forward: Option<Box<Forward>>,
    ) -> Result<Response, Receiver<Reply>> {
        let (Some(forward), Some(api)) = (forward, &self.parts.cluster_api) else {
            return Ok(outcome_response(CallOutcome::NotConnected));
        };
        let Forward {
            cp,
            action,
            payload,
        } = *forward;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let reply = Answer::new(tx, Arc::clone(&self.waker));
        match api.try_send(Request::Call {
            cp,
            action,
            payload,
            reply,
        }) {
            Ok(()) => Err(rx),
            Err(_) => Ok(
                Response::error(503, "the cluster thread is too busy; try again")
                    .with_header("Retry-After: 1".into()),
            ),
        }
    }

    /// `GET /api/v1/cluster/chargepoints`: every charge point in the registry, in identity
    /// order, with the node that holds it (`?after=` and `?limit=` page it).
    pub(super) fn cluster_list(&self, query: &str) -> Handled {
        let Some(api) = &self.parts.cluster_api else {
            return Handled::Respond(Response::error(
                404,
                "not in cluster mode: set [cluster] redis_url",
            ));
        };
        let (limit, after) = match page(query) {
            Ok(page) => page,
            Err(response) => return Handled::Respond(response),
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        let reply = Answer::new(tx, Arc::clone(&self.waker));
        if api
            .try_send(Request::List {
                after,
                limit,
                reply,
            })
            .is_err()
        {
            return Self::busy();
        }
        Handled::Wait(Waiting::Remote {
            rx,
            until: Instant::now() + QUERY_TIMEOUT,
        })
    }
}

/// A new AuthorizationKey (1.6) or BasicAuthPassword (2.0.1) sent to a charge point, stored
/// once the charge point accepts it.
pub(super) struct Rotation {
    pub id: String,
    pub kind: RotationKind,
    pub key: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RotationKind {
    /// ChangeConfiguration of AuthorizationKey: Accepted is `{"status":"Accepted"}`.
    AuthorizationKey,
    /// SetVariables of BasicAuthPassword: Accepted is that variable's `attributeStatus`.
    Password201,
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
            Ok(line) => {
                self.share_credential(line);
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

    /// Cluster mode: a key stored here goes to the other nodes (`{prefix}credentials`).
    fn share_credential(&self, line: String) {
        if let Some(cluster) = &self.parts.cluster {
            cluster.send(crate::mailbox::Op::Credential { line });
        }
    }

    /// The answer to a ChangeConfiguration of AuthorizationKey: the key is stored only when
    /// the charge point answered Accepted (it uses the new key from then on).
    pub(super) fn rotated(&self, rotation: Rotation, outcome: CallOutcome) -> Response {
        let accepted = matches!(&outcome, CallOutcome::Result(payload)
        if serde_json::from_str::<serde_json::Value>(payload.get())
            .is_ok_and(|v| match rotation.kind {
                RotationKind::AuthorizationKey => v["status"] == "Accepted",
                RotationKind::Password201 => v["setVariableResult"]
                    .as_array()
                    .is_some_and(|results| results.iter().any(|r| {
                        r["attributeStatus"] == "Accepted"
                            && r["variable"]["name"]
                                .as_str()
                                .is_some_and(|n| n.eq_ignore_ascii_case("BasicAuthPassword"))
                    })),
            }));
        let mut response = outcome_response(outcome);
        if !accepted {
            return response;
        }
        let Rotation { id, key, .. } = rotation;
        let stored = match &self.parts.security.credentials {
            None => "not stored: no security.credentials".to_owned(),
            Some(credentials) => match credentials.set(&id, &key) {
                Ok(line) => {
                    self.share_credential(line);
                    info!("cp={id} its Basic auth key changed on the charge point and stored");
                    "stored".to_owned()
                }
                Err(e) => {
                    // The charge point now uses a key we could not store: it will be refused
                    // until an operator sets it (PUT .../password) or fixes the file.
                    log::error!("cp={id} accepted a new key that could not be stored: {e}");
                    format!("NOT stored: {e}")
                }
            },
        };
        response.merge_json(json!({"credentials": stored}));
        response
    }
}

/// Whether `key` (a new AuthorizationKey) can be stored once the charge point accepts it: a
/// credentials file is configured and the key's length is one it takes.
fn storable_key(security: &Security, key: &[u8]) -> Result<(), String> {
    if security.credentials.is_none() {
        return Err(
            "no credentials file (security.credentials): the new key (AuthorizationKey, \
                    BasicAuthPassword) could not be stored, so it is not sent"
                .into(),
        );
    }
    if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len()) {
        return Err(format!(
            "the new key is {} bytes; the gateway stores keys of {MIN_KEY_LEN} to \
             {MAX_KEY_LEN} bytes (the value as hex, or as text), so it is not sent",
            key.len()
        ));
    }
    Ok(())
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

/// The new password of a 2.0.1 SetVariables of BasicAuthPassword: its text's bytes (2.0.1's
/// password is a passwordString, used as is in Basic auth).
fn basic_auth_password(payload: &RawValue) -> Option<Vec<u8>> {
    let value: serde_json::Value = serde_json::from_str(payload.get()).ok()?;
    value["setVariableData"].as_array()?.iter().find_map(|d| {
        let named = d["variable"]["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case("BasicAuthPassword"));
        named
            .then(|| d["attributeValue"].as_str().map(|v| v.as_bytes().to_vec()))
            .flatten()
    })
}

/// The HTTP answer for a call's outcome.
pub(super) fn outcome_response(outcome: CallOutcome) -> Response {
    reply_response(outcome.http())
}

/// An HTTP answer from a status and a JSON body (a 429 says when to try again).
pub(super) fn reply_response((status, body): (u16, serde_json::Value)) -> Response {
    let response = Response::json(status, &body);
    if status == 429 {
        return response.with_header("Retry-After: 1".into());
    }
    response
}
