//! Client certificates coming due: the connected charge points whose certificate (seen at
//! their profile 3 handshake) expires within `security.renew_before` are counted, and with
//! `security.renewals_per_scan` asked to renew it, a few at a time: ExtendedTriggerMessage
//! SignChargePointCertificate (1.6 security extension), TriggerMessage
//! SignChargingStationCertificate (2.0.1). The charge point then sends SignCertificate, which
//! the handlers answer as any other.
//!
//! A certificate is asked about once, and only when its renewal can gain something: not when
//! it ends with the gateway's own CA, which cannot sign past its end; and not before half its
//! life, so a certificate living less than twice `renew_before` (a backend that signs short
//! ones) is not asked on its first day and its renewal again on the renewal's first day.

use super::*;

/// The call that asks a charge point of `version` to renew its certificate.
pub fn renewal_call(version: Version) -> Box<FollowUp> {
    let (action, payload) = match version {
        Version::V16 => (
            AnyAction::V16(Action::ExtendedTriggerMessage),
            r#"{"requestedMessage":"SignChargePointCertificate"}"#,
        ),
        Version::V201 | Version::V21 => (
            match version {
                Version::V21 => AnyAction::V21(v201::Action::TriggerMessage),
                _ => AnyAction::V201(v201::Action::TriggerMessage),
            },
            r#"{"requestedMessage":"SignChargingStationCertificate"}"#,
        ),
    };
    let payload = RawValue::from_string(payload.to_owned()).expect("constant JSON");
    Box::new(FollowUp { action, payload })
}

impl Shard {
    /// Counts the connected charge points whose certificate expires within `renew_before` of
    /// `now` (seconds, since the epoch) into the `certificates_expiring` gauge, and returns the
    /// renewal calls for at most `budget` of the accepted ones not asked yet (each is asked
    /// once per certificate, when renewing it gains something: see the module doc).
    pub fn certificates_due(
        &mut self,
        now: i64,
        renew_before: i64,
        mut budget: usize,
    ) -> Vec<(ConnId, ChargePointId, Box<FollowUp>)> {
        let due = now.saturating_add(renew_before);
        // A CA that ends within the window signs certificates that end with it, due at once:
        // asking those again would go round after every renewal until the CA is replaced. So
        // only certificates ending before the CA are asked (a renewal takes them to its end;
        // `renew_before` is shorter than the validity, checked at load); the rest are counted.
        let mut ask_before = i64::MAX;
        if let handlers::Signer::Ca(ca) = &self.policy.signing {
            let ca_end = ca
                .not_after()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let ca_end = i64::try_from(ca_end).unwrap_or(i64::MAX);
            if ca_end <= due {
                // Once it has ended it signs nothing (`CAExpired`): nobody is asked.
                ask_before = if ca_end <= now { i64::MIN } else { ca_end };
                if !self.ca_ending_told {
                    self.ca_ending_told = true;
                    warn!(
                        "processor={} security.ca_cert ends within security.renew_before: \
                         renewals are asked only of certificates ending before it (the \
                         certificates it signs cannot outlive it), none once it has ended; give \
                         the gateway a new sub-CA",
                        self.index
                    );
                }
            }
        }
        let mut expiring = 0;
        let mut calls = Vec::new();
        for (cp, entry) in &mut self.charge_points {
            let Some(conn) = entry.conn else {
                continue;
            };
            let Some(shown) = &mut entry.seen.certificate else {
                continue;
            };
            let certificate = &shown.facts;
            if certificate.not_after > due {
                continue;
            }
            expiring += 1;
            if budget == 0
                || shown.renewal_asked
                || certificate.not_after >= ask_before
                || entry.state.registration != Registration::Accepted
            {
                continue;
            }
            // Not before half its life: a renewal as short would be due again at once.
            let life = certificate.not_after.saturating_sub(certificate.not_before);
            if certificate.not_after.saturating_sub(now) > life / 2 {
                if !self.short_lived_told {
                    self.short_lived_told = true;
                    warn!(
                        "cp={cp} client certificate {} lives {life} s, less than twice \
                         security.renew_before: certificates like it are asked to renew at half \
                         their life (processor={}; said once)",
                        certificate.serial, self.index
                    );
                }
                continue;
            }
            budget -= 1;
            shown.renewal_asked = true;
            info!(
                "cp={cp} client certificate {} expires at {}: renewal asked",
                certificate.serial, certificate.not_after
            );
            calls.push((
                conn,
                ChargePointId::clone(cp),
                renewal_call(entry.state.version),
            ));
        }
        self.stats().certificates_expiring.set(expiring);
        self.stats().renewals_triggered.add(calls.len() as u64);
        calls
    }
}
