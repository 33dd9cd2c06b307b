//! The families of where events and state go: the journal, the state file, the Redis cluster,
//! Kafka, and what waits for each of them.

use super::*;

/// The event journal.
pub(super) fn journal(o: &mut Out, s: &StatsSnapshot) {
    o.single(
        "ocpp_gateway_journal_lines_total",
        "counter",
        "Lines written to the event journal.",
        s.journal_lines,
    );
    o.single(
        "ocpp_gateway_journal_bytes_total",
        "counter",
        "Bytes written to the event journal.",
        s.journal_bytes,
    );
    o.single(
        "ocpp_gateway_journal_syncs_total",
        "counter",
        "fdatasync calls on the event journal.",
        s.journal_syncs,
    );
    o.single(
        "ocpp_gateway_journal_rotations_total",
        "counter",
        "Journal files rotated at events.max_file_bytes.",
        s.journal_rotations,
    );
    o.single(
        "ocpp_gateway_journal_errors_total",
        "counter",
        "Failed journal opens, writes, syncs and renames.",
        s.journal_errors,
    );
    o.single(
        "ocpp_gateway_journal_lines_lost_total",
        "counter",
        "Journal lines lost to write failures.",
        s.journal_lines_lost,
    );
    o.single(
        "ocpp_gateway_journal_backpressure_total",
        "counter",
        "Times a processor waited for room in the journal queue.",
        s.journal_backpressure,
    );
    o.single(
        "ocpp_gateway_journal_lines_suppressed_total",
        "counter",
        "Journal lines left out because their charge point spent its allowance (events.charge_point_rate).",
        s.journal_lines_suppressed,
    );
}

/// Remembered charge points and the state file.
pub(super) fn state_file(o: &mut Out, s: &StatsSnapshot) {
    o.single(
        "ocpp_gateway_registrations_forgotten_total",
        "counter",
        "Disconnected charge points forgotten past ocpp.max_disconnected (those seen longest ago; they boot again).",
        s.registrations_forgotten,
    );
    o.single(
        "ocpp_gateway_state_commits_total",
        "counter",
        "Transactions committed to the state file (ocpp.state_file).",
        s.state_commits,
    );
    o.single(
        "ocpp_gateway_state_records_written_total",
        "counter",
        "Charge point records written to or removed from the state file.",
        s.state_records_written,
    );
    o.single(
        "ocpp_gateway_state_errors_total",
        "counter",
        "Failed state file commits (their records are tried again).",
        s.state_errors,
    );
    o.single(
        "ocpp_gateway_state_refused_answers_total",
        "counter",
        "Billing answers refused (CALLERROR InternalError) because the state file could not commit their changes.",
        s.state_refused_answers,
    );
}

/// Cluster mode: the Redis registry and the calls between nodes.
pub(super) fn cluster(o: &mut Out, s: &StatsSnapshot) {
    o.single(
        "ocpp_gateway_cluster_ops_total",
        "counter",
        "Registry operations Redis answered (cluster mode).",
        s.cluster_ops,
    );
    o.single(
        "ocpp_gateway_cluster_ops_dropped_total",
        "counter",
        "Registry operations dropped because the buffer for an unreachable Redis was full.",
        s.cluster_ops_dropped,
    );
    o.single(
        "ocpp_gateway_cluster_errors_total",
        "counter",
        "Failed connects to Redis and failed pipelines.",
        s.cluster_errors,
    );
    o.single(
        "ocpp_gateway_cluster_ticket_keys_installed_total",
        "counter",
        "Times the fleet's TLS session-ticket keys were taken from Redis (first time and after each rotation).",
        s.cluster_ticket_keys_installed,
    );
    o.single(
        "ocpp_gateway_cluster_takeovers_total",
        "counter",
        "Charge points another node took over from this one.",
        s.cluster_takeovers,
    );
    o.single(
        "ocpp_gateway_cluster_calls_sent_total",
        "counter",
        "Operator calls sent to the node that holds the charge point.",
        s.cluster_calls_sent,
    );
    o.single(
        "ocpp_gateway_cluster_calls_run_total",
        "counter",
        "Calls from this node's command stream run here (other nodes, backends).",
        s.cluster_calls_run,
    );
    o.single(
        "ocpp_gateway_cluster_events_published_total",
        "counter",
        "Event lines appended to the Redis stream {prefix}events (cluster.events).",
        s.cluster_events_published,
    );
    o.single(
        "ocpp_gateway_cluster_events_lost_total",
        "counter",
        "Event lines that never reached {prefix}events (its buffer full, or the gateway stopping).",
        s.cluster_events_lost,
    );
    o.single(
        "ocpp_gateway_cluster_events_refused_total",
        "counter",
        "Billing answers held for {prefix}events refused: not taken within cluster.events_ack_timeout, dropped from a full buffer, or the gateway stopping.",
        s.cluster_events_refused,
    );
}

/// The Kafka sink and the commands consumer.
pub(super) fn kafka(o: &mut Out, s: &StatsSnapshot, g: &Gauges) {
    let kafka = [
        (
            "ocpp_gateway_kafka_events_produced_total",
            "Integration events given to librdkafka (kafka.events_topic).",
            s.kafka_events_produced,
        ),
        (
            "ocpp_gateway_kafka_events_confirmed_total",
            "Integration events the Kafka broker confirmed (acks=all).",
            s.kafka_events_confirmed,
        ),
        (
            "ocpp_gateway_kafka_events_failed_total",
            "Integration events the Kafka broker refused for good.",
            s.kafka_events_failed,
        ),
        (
            "ocpp_gateway_kafka_events_lost_total",
            "Integration events lost (side buffer full, unconfirmed at shutdown).",
            s.kafka_events_lost,
        ),
        (
            "ocpp_gateway_kafka_backpressure_total",
            "Times librdkafka's buffer was full and the Kafka sink waited.",
            s.kafka_backpressure,
        ),
        (
            "ocpp_gateway_kafka_refused_total",
            "Billing answers refused with InternalError: their events were not confirmed in kafka.ack_timeout.",
            s.kafka_refused,
        ),
        (
            "ocpp_gateway_kafka_errors_total",
            "Errors librdkafka reported (broker unreachable, ...).",
            s.kafka_errors,
        ),
        (
            "ocpp_gateway_kafka_commands_received_total",
            "Records read from kafka.commands_topic.",
            s.kafka_commands_received,
        ),
        (
            "ocpp_gateway_kafka_commands_invalid_total",
            "Command records that could not run (answered Invalid when they had a commandId).",
            s.kafka_commands_invalid,
        ),
        (
            "ocpp_gateway_kafka_commands_not_connected_total",
            "Commands for charge points not connected here (answered NotConnected).",
            s.kafka_commands_not_connected,
        ),
        (
            "ocpp_gateway_kafka_commands_expired_total",
            "Commands older than kafka.command_max_age (answered Expired, not run).",
            s.kafka_commands_expired,
        ),
        (
            "ocpp_gateway_kafka_command_responses_total",
            "command.response events the Kafka broker confirmed.",
            s.kafka_command_responses,
        ),
    ];
    for (name, help, value) in kafka {
        o.single(name, "counter", help, value);
    }
    o.single(
        "ocpp_gateway_kafka_events_waiting",
        "gauge",
        "Integration events given to librdkafka and not yet confirmed or failed (0 without Kafka).",
        g.kafka_waiting.unwrap_or(0),
    );
    o.single(
        "ocpp_gateway_kafka_failing",
        "gauge",
        "1 while the Kafka broker is unreachable or does not confirm within kafka.ack_timeout.",
        u8::from(g.kafka_failing),
    );
}

/// Work kept for later because the state thread or the journal was behind.
pub(super) fn backlogs(o: &mut Out, s: &StatsSnapshot, g: &Gauges) {
    o.single(
        "ocpp_gateway_state_deferred_total",
        "counter",
        "Times a processor kept changed charge points for later because the state thread was behind.",
        s.state_deferred,
    );
    o.single(
        "ocpp_gateway_journal_overflow_total",
        "counter",
        "Journal events of event loops parked in the side queue because the journal was full.",
        s.journal_overflow,
    );
    if let Some(depth) = g.journal_queue_depth {
        o.single(
            "ocpp_gateway_journal_queue_depth",
            "gauge",
            "Events waiting to be written to the journal.",
            depth,
        );
    }
    o.single(
        "ocpp_gateway_journal_failing",
        "gauge",
        "1 while the journal cannot write.",
        u8::from(g.journal_failing),
    );
}
