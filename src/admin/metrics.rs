//! `/metrics`: the counters of [`crate::stats`] in the Prometheus text exposition format
//! (version 0.0.4). Rendered from a snapshot at scrape time, so the hot paths keep bumping their
//! own cache-padded relaxed atomics and pay nothing for the exposition. Names follow the
//! Prometheus conventions: `ocpp_gateway_` prefix, `_total` for counters, base units (seconds,
//! bytes).

use std::fmt::{Display, Write as _};

mod sinks;

use sinks::{backlogs, cluster, journal, kafka, state_file};

use super::http::Response;
use super::server::AdminLoop;
use crate::stats::{HistogramSnapshot, OUTCOMES, StatsSnapshot};
use crate::types::CloseCause;
use ocpp::rpc::CallErrorCode;
use ocpp::v16::Action;
use std::time::Instant;

/// Gauges read at scrape time that are not counters.
#[derive(Debug, Default)]
pub struct Gauges {
    /// (messages, bytes) queued for each processor.
    pub processor_queue_depths: Vec<(usize, usize)>,
    /// Messages queued for each loop.
    pub loop_queue_depths: Vec<usize>,
    /// None without a journal.
    pub journal_queue_depth: Option<u64>,
    pub journal_failing: bool,
    /// None without the Kafka sink: events not yet confirmed, and whether it is failing.
    pub kafka_waiting: Option<u64>,
    pub kafka_failing: bool,
    pub open_files_limit: u64,
    /// Transaction ids StartTransaction can still give out.
    pub transaction_ids_remaining: u64,
    pub uptime_seconds: f64,
    pub healthy: bool,
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{key}=\"{}\"", escape(val));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot) {
        self.family(name, "histogram", help);
        let mut cumulative = 0;
        for (i, bound) in h.bounds.iter().enumerate() {
            cumulative += h.buckets.get(i).copied().unwrap_or(0);
            self.sample(
                &format!("{name}_bucket"),
                &[("le", &bound.to_string())],
                cumulative,
            );
        }
        self.sample(&format!("{name}_bucket"), &[("le", "+Inf")], h.count());
        self.sample(&format!("{name}_sum"), &[], h.sum_seconds);
        self.sample(&format!("{name}_count"), &[], h.count());
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The whole exposition.
pub fn render(s: &StatsSnapshot, g: &Gauges) -> String {
    let mut out = Out(String::with_capacity(16 * 1024));
    let o = &mut out;
    connections(o, s);
    tls_and_proxy(o, s);
    authentication(o, s);
    messages(o, s);
    liveness(o, s);
    flow_control(o, s);
    queues(o, g);
    processing(o, s);
    journal(o, s);
    state_file(o, s);
    cluster(o, s);
    kafka(o, s, g);
    backlogs(o, s, g);
    process_gauges(o, g);
    out.0
}

/// Connections, upgrades and the checks charge points must pass to open one.
fn connections(o: &mut Out, s: &StatsSnapshot) {
    o.family(
        "ocpp_gateway_connections",
        "gauge",
        "Connections held (handshaking, open or closing), per event loop.",
    );
    for (i, n) in s.loop_connections.iter().enumerate() {
        o.sample("ocpp_gateway_connections", &[("loop", &i.to_string())], n);
    }
    o.single(
        "ocpp_gateway_connections_accepted_total",
        "counter",
        "TCP connections accepted.",
        s.accepted,
    );
    o.single(
        "ocpp_gateway_accept_errors_total",
        "counter",
        "Accept errors other than WouldBlock (EMFILE and friends).",
        s.accept_errors,
    );
    o.family(
        "ocpp_gateway_handshakes_total",
        "counter",
        "WebSocket upgrades by outcome.",
    );
    for (outcome, n) in [
        ("accepted", s.handshakes_ok),
        ("rejected", s.handshakes_rejected),
        ("over_capacity", s.over_capacity),
        ("timeout", s.handshake_timeouts),
        ("over_budget", s.upgrades_over_budget),
    ] {
        o.sample("ocpp_gateway_handshakes_total", &[("outcome", outcome)], n);
    }
    o.family(
        "ocpp_gateway_handshakes_by_version_total",
        "counter",
        "Upgrades accepted, by the OCPP version negotiated.",
    );
    for (version, n) in [
        ("1.6", s.handshakes_v16),
        ("2.0.1", s.handshakes_v201),
        ("2.1", s.handshakes_v21),
    ] {
        o.sample(
            "ocpp_gateway_handshakes_by_version_total",
            &[("version", version)],
            n,
        );
    }
}

/// TLS handshakes and resumptions, and PROXY protocol headers.
fn tls_and_proxy(o: &mut Out, s: &StatsSnapshot) {
    o.single(
        "ocpp_gateway_tls_handshakes_total",
        "counter",
        "TLS handshakes completed (security profiles 2 and 3).",
        s.tls_handshakes,
    );
    o.single(
        "ocpp_gateway_handshakes_deferred_total",
        "counter",
        "Turns of connections still in their handshake put off to the loop's next iteration (server.handshakes_per_turn spent).",
        s.handshakes_deferred,
    );
    o.single(
        "ocpp_gateway_tls_resumptions_total",
        "counter",
        "TLS handshakes resumed from a session ticket (part of ocpp_gateway_tls_handshakes_total).",
        s.tls_resumptions,
    );
    o.single(
        "ocpp_gateway_tls_failures_total",
        "counter",
        "TLS connections that failed: bad handshakes (plaintext on a TLS port, no or a refused client certificate, no common suite) and bad records.",
        s.tls_failures,
    );
    o.single(
        "ocpp_gateway_proxy_header_errors_total",
        "counter",
        "Connections closed for a missing or malformed PROXY protocol header.",
        s.proxy_header_errors,
    );
    o.single(
        "ocpp_gateway_proxy_untrusted_total",
        "counter",
        "Connections to a PROXY-protocol listener closed unread because they did not come from server.trusted_proxies.",
        s.proxy_untrusted,
    );
}

/// Identities proved or refused: authentication failures, lockouts, security profile floors,
/// takeovers, client certificates near their expiry.
fn authentication(o: &mut Out, s: &StatsSnapshot) {
    o.family(
        "ocpp_gateway_auth_failures_total",
        "counter",
        "Upgrades refused because the charge point did not prove its identity, by how.",
    );
    for (kind, n) in [
        ("basic_auth", s.auth_failures),
        ("certificate", s.certificate_mismatches),
        ("certificate_revoked", s.certificates_revoked),
        ("tls_offload", s.tls_offload_refusals),
        ("serial_number", s.serial_mismatches),
    ] {
        o.sample("ocpp_gateway_auth_failures_total", &[("kind", kind)], n);
    }
    o.single(
        "ocpp_gateway_client_certificates_expiring",
        "gauge",
        "Connected charge points whose client certificate (profile 3) expires within security.renew_before; recounted every minute.",
        s.certificates_expiring,
    );
    o.single(
        "ocpp_gateway_certificate_renewals_triggered_total",
        "counter",
        "Certificate renewals the gateway asked of charge points (security.renewals_per_scan).",
        s.renewals_triggered,
    );
    o.single(
        "ocpp_gateway_auth_lockouts_total",
        "counter",
        "Times an address was locked out for too many failed authentications (security.lockout_*).",
        s.auth_lockouts,
    );
    o.single(
        "ocpp_gateway_locked_out_refusals_total",
        "counter",
        "Upgrades refused with 429 because their address was locked out.",
        s.locked_out_refusals,
    );
    o.single(
        "ocpp_gateway_refusals_unjournaled_total",
        "counter",
        "Refused upgrades over their address's journal allowance (security.journaled_refusals): counted, not journaled.",
        s.refusals_unjournaled,
    );
    o.single(
        "ocpp_gateway_profile_refusals_total",
        "counter",
        "Identities refused (403) or closed (1008) on a listener below the security profile they must use.",
        s.profile_refusals,
    );
    o.single(
        "ocpp_gateway_takeovers_refused_total",
        "counter",
        "Unauthenticated connections closed because an authenticated one holds the identity.",
        s.takeovers_refused,
    );
}

/// Frames and OCPP messages, by direction, action and error code.
fn messages(o: &mut Out, s: &StatsSnapshot) {
    o.family(
        "ocpp_gateway_frames_total",
        "counter",
        "WebSocket text messages, by direction (in: from charge points).",
    );
    o.sample(
        "ocpp_gateway_frames_total",
        &[("direction", "in")],
        s.messages_in,
    );
    o.sample(
        "ocpp_gateway_frames_total",
        &[("direction", "out")],
        s.messages_out,
    );
    o.single(
        "ocpp_gateway_heartbeats_answered_by_loop_total",
        "counter",
        "Heartbeats of accepted charge points answered by their event loop (still counted and journaled by the processor).",
        s.heartbeats_answered,
    );
    o.family(
        "ocpp_gateway_messages_total",
        "counter",
        "OCPP CALLs by action and direction (in: from charge points, out: to them).",
    );
    for action in Action::ALL {
        if action.sent_by_charge_point() {
            let n = s
                .calls_in_by_action
                .get(action.index())
                .copied()
                .unwrap_or(0);
            o.sample(
                "ocpp_gateway_messages_total",
                &[("direction", "in"), ("action", action.name())],
                n,
            );
        }
    }
    let unknown = s
        .calls_in_by_action
        .get(Action::ALL.len())
        .copied()
        .unwrap_or(0);
    o.sample(
        "ocpp_gateway_messages_total",
        &[("direction", "in"), ("action", "unknown")],
        unknown,
    );
    for action in Action::ALL {
        if action.sent_by_central_system() {
            let n = s
                .calls_out_by_action
                .get(action.index())
                .copied()
                .unwrap_or(0);
            o.sample(
                "ocpp_gateway_messages_total",
                &[("direction", "out"), ("action", action.name())],
                n,
            );
        }
    }
    messages_v201(o, s);
    o.family(
        "ocpp_gateway_call_errors_sent_total",
        "counter",
        "CALLERRORs sent to charge points, by code.",
    );
    for code in CallErrorCode::ALL {
        let n = s
            .call_errors_by_code
            .get(code.index())
            .copied()
            .unwrap_or(0);
        o.sample(
            "ocpp_gateway_call_errors_sent_total",
            &[("code", code.as_str())],
            n,
        );
    }
    o.family(
        "ocpp_gateway_unusable_frames_total",
        "counter",
        "Messages that were not answerable OCPP-J: unanswerable, or of an unknown message type.",
    );
    o.sample(
        "ocpp_gateway_unusable_frames_total",
        &[("kind", "unanswerable")],
        s.unanswerable_frames,
    );
    o.sample(
        "ocpp_gateway_unusable_frames_total",
        &[("kind", "unknown_type")],
        s.ignored_frames,
    );
}

/// CALLs of OCPP 2.0.1 and 2.1 stations by action, 2.1's own among them (`unknown`: a name
/// neither has).
fn messages_v201(o: &mut Out, s: &StatsSnapshot) {
    use ocpp::v201::Action as V201;
    o.family(
        "ocpp_gateway_v201_messages_total",
        "counter",
        "OCPP 2.0.1 and 2.1 CALLs (and 2.1 SENDs) from stations by action.",
    );
    let count = |slot: usize| s.calls_in_by_action_v201.get(slot).copied().unwrap_or(0);
    for action in V201::ALL.into_iter().filter(|a| a.from_station()) {
        let labels = [("action", action.as_str())];
        o.sample(
            "ocpp_gateway_v201_messages_total",
            &labels,
            count(action.index()),
        );
    }
    let unknown = count(V201::ALL.len());
    o.sample(
        "ocpp_gateway_v201_messages_total",
        &[("action", "unknown")],
        unknown,
    );
    o.family(
        "ocpp_gateway_v201_calls_sent_total",
        "counter",
        "OCPP 2.0.1 and 2.1 CALLs sent to stations (operator API, commands topic) by action.",
    );
    for action in V201::ALL.into_iter().filter(|a| a.from_csms()) {
        let n = s
            .calls_out_by_action_v201
            .get(action.index())
            .copied()
            .unwrap_or(0);
        let labels = [("action", action.as_str())];
        o.sample("ocpp_gateway_v201_calls_sent_total", &labels, n);
    }
    o.single(
        "ocpp_gateway_transaction_events_resent_total",
        "counter",
        "OCPP 2.0.1 TransactionEvents sent again after they were answered: answered, not journaled or published twice.",
        s.transaction_events_resent,
    );
    o.single(
        "ocpp_gateway_transaction_seq_gaps_total",
        "counter",
        "OCPP 2.0.1 TransactionEvents whose seqNo skipped some of their transaction's (journaled as seq_gap).",
        s.transaction_seq_gaps,
    );
    o.single(
        "ocpp_gateway_sends_received_total",
        "counter",
        "OCPP 2.1 SENDs (NotifyPeriodicEventStream) received valid, for a stream the station opened, and journaled.",
        s.sends_received,
    );
    o.single(
        "ocpp_gateway_call_result_errors_received_total",
        "counter",
        "OCPP 2.1 CALLRESULTERRORs received: a station could not process one of the gateway's answers.",
        s.call_result_errors_received,
    );
}

/// Pings, pongs and why connections closed.
fn liveness(o: &mut Out, s: &StatsSnapshot) {
    o.single(
        "ocpp_gateway_pings_sent_total",
        "counter",
        "WebSocket pings sent to idle connections.",
        s.pings_sent,
    );
    o.single(
        "ocpp_gateway_pings_skipped_total",
        "counter",
        "Pings skipped because the write buffer was over websocket.ping_skip_threshold.",
        s.pings_skipped,
    );
    o.single(
        "ocpp_gateway_pongs_received_total",
        "counter",
        "WebSocket pongs received.",
        s.pongs_received,
    );
    o.single(
        "ocpp_gateway_pong_timeouts_total",
        "counter",
        "Connections closed because nothing came back within websocket.pong_timeout.",
        s.pong_timeouts,
    );
    o.family(
        "ocpp_gateway_closes_total",
        "counter",
        "Upgraded connections closed, by reason.",
    );
    for cause in CloseCause::ALL {
        let n = s.closes.get(cause.index()).copied().unwrap_or(0);
        o.sample(
            "ocpp_gateway_closes_total",
            &[("reason", cause.as_str())],
            n,
        );
    }
}

/// Why connections stopped being read, and what they buffer.
fn flow_control(o: &mut Out, s: &StatsSnapshot) {
    o.single(
        "ocpp_gateway_backpressure_pauses_total",
        "counter",
        "Times a connection stopped being read because its processor queue was full.",
        s.backpressure_pauses,
    );
    o.single(
        "ocpp_gateway_pipelining_pauses_total",
        "counter",
        "Times a connection stopped being read because ocpp.max_pipelined_calls of its CALLs waited for answers.",
        s.pipelining_pauses,
    );
    o.single(
        "ocpp_gateway_rate_limited_total",
        "counter",
        "Times a connection stopped being read because its charge point went over ocpp.max_calls_per_second (per charge point: rate_limited in the API).",
        s.rate_limited,
    );
    o.single(
        "ocpp_gateway_budget_pauses_total",
        "counter",
        "Times a connection stopped being read because the loop's partial-message budget was spent.",
        s.budget_pauses,
    );
    o.family(
        "ocpp_gateway_buffered_bytes",
        "gauge",
        "Bytes connections hold: unfinished input (read) and write backlogs (write).",
    );
    o.sample(
        "ocpp_gateway_buffered_bytes",
        &[("kind", "read")],
        s.buffered_read_bytes,
    );
    o.sample(
        "ocpp_gateway_buffered_bytes",
        &[("kind", "write")],
        s.buffered_write_bytes,
    );
}

/// What waits in the processors' and the loops' queues.
fn queues(o: &mut Out, g: &Gauges) {
    o.family(
        "ocpp_gateway_processor_queue_depth",
        "gauge",
        "Messages waiting in each processor's queue.",
    );
    for (i, (n, _)) in g.processor_queue_depths.iter().enumerate() {
        o.sample(
            "ocpp_gateway_processor_queue_depth",
            &[("processor", &i.to_string())],
            n,
        );
    }
    o.family(
        "ocpp_gateway_processor_queue_bytes",
        "gauge",
        "Bytes of messages waiting in each processor's queue.",
    );
    for (i, (_, bytes)) in g.processor_queue_depths.iter().enumerate() {
        o.sample(
            "ocpp_gateway_processor_queue_bytes",
            &[("processor", &i.to_string())],
            bytes,
        );
    }
    o.family(
        "ocpp_gateway_loop_queue_depth",
        "gauge",
        "Messages waiting in each event loop's channel.",
    );
    for (i, n) in g.loop_queue_depths.iter().enumerate() {
        o.sample(
            "ocpp_gateway_loop_queue_depth",
            &[("loop", &i.to_string())],
            n,
        );
    }
}

/// Calls handled, calls sent to charge points, and how long both took.
fn processing(o: &mut Out, s: &StatsSnapshot) {
    o.single(
        "ocpp_gateway_calls_handled_total",
        "counter",
        "CALLs from charge points handled by the processors.",
        s.calls_handled,
    );
    o.family(
        "ocpp_gateway_outbound_calls_total",
        "counter",
        "Calls of the central system to charge points, by outcome.",
    );
    for (i, outcome) in OUTCOMES.iter().enumerate() {
        let n = s.outbound.get(i).copied().unwrap_or(0);
        o.sample(
            "ocpp_gateway_outbound_calls_total",
            &[("outcome", outcome)],
            n,
        );
    }
    o.single(
        "ocpp_gateway_unexpected_responses_total",
        "counter",
        "CALLRESULT/CALLERROR frames that matched no call of ours.",
        s.unexpected_responses,
    );
    o.histogram(
        "ocpp_gateway_processing_seconds",
        "From reading a CALL to handing its answer back, queueing included.",
        &s.processing,
    );
    o.histogram(
        "ocpp_gateway_outbound_call_seconds",
        "Round trip of calls to charge points, sent to answered.",
        &s.round_trip,
    );
}

/// The process as a whole.
fn process_gauges(o: &mut Out, g: &Gauges) {
    o.single(
        "ocpp_gateway_open_files_limit",
        "gauge",
        "The process's soft limit on open file descriptors.",
        g.open_files_limit,
    );
    o.single(
        "ocpp_gateway_transaction_ids_remaining",
        "gauge",
        "Transaction ids StartTransaction can still give out (0: refused with InternalError).",
        g.transaction_ids_remaining,
    );
    o.single(
        "ocpp_gateway_uptime_seconds",
        "gauge",
        "Seconds since the gateway started.",
        g.uptime_seconds,
    );
    o.single(
        "ocpp_gateway_healthy",
        "gauge",
        "1 when every event loop and processor answers its liveness probe.",
        u8::from(g.healthy),
    );
}

impl AdminLoop {
    pub(super) fn metrics(&mut self) -> Response {
        let now = Instant::now();
        let (loops_stuck, processors_stuck) = self.stuck(now);
        let stats = &self.parts.stats;
        let journal_stuck = self
            .parts
            .journal
            .as_ref()
            .is_some_and(|status| status.silent_for() >= self.parts.config.admin.stuck_after);
        let healthy = !loops_stuck.iter().chain(&processors_stuck).any(|&s| s) && !journal_stuck;
        let gauges = Gauges {
            processor_queue_depths: self
                .parts
                .processors
                .handles
                .iter()
                .map(|h| h.queue.depth())
                .collect(),
            loop_queue_depths: self
                .parts
                .loops
                .handles
                .iter()
                .map(|l| l.tx.len())
                .collect(),
            journal_queue_depth: self
                .parts
                .journal
                .as_ref()
                .map(|status| status.queue_depth()),
            journal_failing: self
                .parts
                .journal
                .as_ref()
                .is_some_and(|status| status.failing()),
            kafka_waiting: self.parts.kafka.as_ref().map(|k| k.waiting()),
            kafka_failing: self.parts.kafka.as_ref().is_some_and(|k| k.failing()),
            open_files_limit: rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(s, _)| s),
            transaction_ids_remaining: self.parts.transactions.remaining(),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            healthy,
        };
        Response::text(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            render(&stats.snapshot(), &gauges),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;

    #[test]
    fn every_sample_line_follows_its_own_family_declaration() {
        let stats = Stats::new(2, 2);
        let settlement = ocpp::v201::Action::NotifySettlement;
        stats.processor_labelled[0].calls_by_action_v201[settlement.index()].add(2);
        stats.loops[0].pings_sent.add(3);
        stats.processor_labelled[1]
            .processing
            .observe(std::time::Duration::from_micros(70));
        let text = render(
            &stats.snapshot(),
            &Gauges {
                processor_queue_depths: vec![(0, 0), (1, 100)],
                loop_queue_depths: vec![0, 0],
                ..Gauges::default()
            },
        );
        let mut declared = std::collections::HashSet::new();
        // Exposition format: a family's samples follow its declaration, all together.
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(declared.insert(name.to_owned()), "{name} declared twice");
                current = name.to_owned();
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|base| declared.contains(*base))
                })
                .unwrap_or(name);
            assert_eq!(family, current, "{line}: not under its own # TYPE");
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        assert!(text.contains("ocpp_gateway_pings_sent_total 3\n"), "{text}");
        // 2.1's own actions are counted too.
        assert!(
            text.contains("ocpp_gateway_v201_messages_total{action=\"NotifySettlement\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("ocpp_gateway_processing_seconds_bucket{le=\"0.0001\"} 1\n"));
        assert!(text.contains("ocpp_gateway_processing_seconds_bucket{le=\"0.00005\"} 0\n"));
        assert!(text.contains("ocpp_gateway_processing_seconds_count 1\n"));
    }
}
