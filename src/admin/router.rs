//! Which endpoint a request reaches, and the bearer-token check in front of all but `/health`.

use super::http::{self, Request, Response};
use super::server::{AdminLoop, Handled};
use crate::config::MAX_CHARGE_POINT_ID_LEN;

impl AdminLoop {
    pub(super) fn handle(&mut self, request: Request) -> Handled {
        let segments: Vec<String> = request
            .path
            .split('/')
            .skip(1)
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method = request.method.as_str();
        if segments != ["health"] && !self.authorized(&request) {
            return Handled::Respond(
                Response::error(401, "missing or wrong bearer token")
                    .with_header("WWW-Authenticate: Bearer realm=\"ocpp-gateway\"".into()),
            );
        }
        let allow = |methods: &str| {
            Handled::Respond(
                Response::error(405, &format!("use {methods}"))
                    .with_header(format!("Allow: {methods}")),
            )
        };
        match (method, segments.as_slice()) {
            ("GET", ["health"]) => Handled::Respond(self.health()),
            (_, ["health"]) => allow("GET"),
            ("GET", ["metrics"]) => Handled::Respond(self.metrics()),
            (_, ["metrics"]) => allow("GET"),
            ("GET", ["api", "v1", "chargepoints"]) => self.list(&request.query),
            (_, ["api", "v1", "chargepoints"]) => allow("GET"),
            ("GET", ["api", "v1", "security", "lockouts"]) => Handled::Respond(self.lockouts()),
            (_, ["api", "v1", "security", "lockouts"]) => allow("GET"),
            ("GET", ["api", "v1", "cluster", "chargepoints"]) => self.cluster_list(&request.query),
            (_, ["api", "v1", "cluster", "chargepoints"]) => allow("GET"),
            (method, ["api", "v1", "chargepoints", id, rest @ ..]) => {
                let rule = self.parts.config.ocpp.identity_charset;
                if !rule.allows(id) {
                    return Handled::Respond(Response::error(
                        400,
                        &format!(
                            "a charge point id has 1 to {MAX_CHARGE_POINT_ID_LEN} characters \
                             that ocpp.identity_charset ({}) allows",
                            rule.as_str()
                        ),
                    ));
                }
                match (method, rest) {
                    ("GET", []) => self.detail(id),
                    (_, []) => allow("GET"),
                    ("POST", ["calls"]) => self.call(id, &request.body),
                    (_, ["calls"]) => allow("POST"),
                    ("DELETE", ["connection"]) => self.disconnect(id),
                    (_, ["connection"]) => allow("DELETE"),
                    ("POST", ["trace"]) => Handled::Respond(self.trace(id, true)),
                    ("DELETE", ["trace"]) => Handled::Respond(self.trace(id, false)),
                    (_, ["trace"]) => allow("POST, DELETE"),
                    ("PUT", ["password"]) => Handled::Respond(self.set_password(id, &request.body)),
                    (_, ["password"]) => allow("PUT"),
                    _ => Handled::Respond(Response::error(404, "no such endpoint")),
                }
            }
            _ => Handled::Respond(Response::error(404, "no such endpoint")),
        }
    }

    fn authorized(&self, request: &Request) -> bool {
        match &self.token {
            None => true,
            Some(expected) => request
                .authorization
                .as_deref()
                .is_some_and(|got| http::same_secret(got.as_bytes(), expected)),
        }
    }
}
