//! `GET /api/v1/security/lockouts`: which source addresses are locked out for failed
//! authentications now, and what the brake has done since the start (`security::lockout`).

use std::time::Instant;

use serde_json::json;

use super::http::Response;
use super::server::AdminLoop;

/// Addresses listed at most (the longest waits first).
const MAX_LISTED: usize = 1000;

impl AdminLoop {
    pub(super) fn lockouts(&self) -> Response {
        let lockouts = &self.parts.security.lockouts;
        let locked: Vec<_> = lockouts
            .list(Instant::now(), MAX_LISTED)
            .into_iter()
            .map(|l| {
                json!({
                    "address": l.address.to_string(),
                    "retry_after_secs": l.retry_after_secs,
                    "lockouts": l.lockouts,
                })
            })
            .collect();
        let stats = self.parts.stats.snapshot();
        let rule = &self.parts.config.security.lockout;
        Response::json(
            200,
            &json!({
                "locked": locked,
                "addresses_tracked": lockouts.len(),
                "lockouts_total": stats.auth_lockouts,
                "locked_out_refusals_total": stats.locked_out_refusals,
                "refusals_unjournaled_total": stats.refusals_unjournaled,
                "evicted_total": lockouts.counts.evicted.load(std::sync::atomic::Ordering::Relaxed),
                "rule": {
                    "failures": rule.failures,
                    "window_secs": rule.window.as_secs(),
                    "first_secs": rule.first.as_secs(),
                    "max_secs": rule.max.as_secs(),
                },
            }),
        )
    }
}
