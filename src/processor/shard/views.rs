//! What the operator API sees of this shard: the list and one charge point's view.

use super::*;

impl Shard {
    /// The charge points matching `filter` with an identity after `after`, at most `limit`,
    /// in identity order.
    pub fn list(
        &self,
        filter: Filter,
        after: Option<&str>,
        limit: usize,
        traced: &dyn Fn(&str) -> bool,
    ) -> Vec<ChargePointView> {
        let mut ids: Vec<&ChargePointId> = self
            .charge_points
            .iter()
            .filter(|(id, entry)| {
                let wanted = match filter {
                    Filter::All => true,
                    Filter::Connected => entry.conn.is_some(),
                    Filter::Disconnected => entry.conn.is_none(),
                };
                wanted && after.is_none_or(|after| &***id > after)
            })
            .map(|(id, _)| id)
            .collect();
        if ids.len() > limit {
            ids.select_nth_unstable(limit);
            ids.truncate(limit);
        }
        ids.sort_unstable();
        ids.iter()
            .filter_map(|id| self.view(id, traced(id)))
            .collect()
    }

    /// One charge point as the operator API shows it.
    pub fn view(&self, cp: &str, traced: bool) -> Option<ChargePointView> {
        let (id, entry) = self.charge_points.get_key_value(cp)?;
        let rfc3339 = |t: SystemTime| {
            if t >= UNIX_EPOCH {
                humantime::format_rfc3339_millis(t).to_string()
            } else {
                String::new()
            }
        };
        Some(ChargePointView {
            id: id.to_string(),
            connected: entry.conn.is_some(),
            since: rfc3339(super::at_ms(entry.seen.since_us / 1000)),
            remote_address: entry.seen.peer.map(|p| p.to_string()),
            loop_index: entry.conn.map(|c| c.loop_index),
            authenticated_by: entry.state.auth.as_str(),
            authenticated_profile: entry.profile.number(),
            journal_lines_suppressed: u64::from(entry.seen.journal_suppressed),
            rate_limited: u64::from(entry.seen.rate_limited),
            version: entry.state.version.as_str(),
            open_transactions_201: entry
                .state
                .v201
                .as_ref()
                .map(|t| t.open.iter().map(OpenTransactionView::from).collect())
                .unwrap_or_default(),
            registration: match entry.state.registration {
                Registration::Unknown => "unknown",
                Registration::Pending => "pending",
                Registration::Rejected => "rejected",
                Registration::Accepted => "accepted",
            },
            boot: entry.seen.boot.clone(),
            connectors: entry
                .state
                .connectors
                .iter()
                .map(|&(connector_id, status)| ConnectorView {
                    evse_id: None,
                    connector_id,
                    status: status.as_str(),
                })
                .chain(
                    entry
                        .state
                        .v201
                        .iter()
                        .flat_map(|v| &v.connectors)
                        .map(|c| ConnectorView {
                            evse_id: Some(c.evse_id),
                            connector_id: c.connector_id,
                            status: c.status.as_str(),
                        }),
                )
                .collect(),
            open_transaction: entry.state.open_transaction.map(std::num::NonZeroI32::get),
            last_message_at: entry
                .seen
                .last_message_ms
                .map(|ms| rfc3339(super::at_ms(ms.get()))),
            client_certificate: entry.seen.certificate.as_ref().map(|c| CertificateView {
                serial: c.facts.serial.to_string(),
                not_after: u64::try_from(c.facts.not_after)
                    .map(|secs| rfc3339(UNIX_EPOCH + std::time::Duration::from_secs(secs)))
                    .unwrap_or_default(),
                renewal_asked: c.renewal_asked,
            }),
            trace: traced,
        })
    }
}
