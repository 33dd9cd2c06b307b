//! Commands from Kafka, a command source beside the operator API: a thread consumes this
//! gateway's partitions of `kafka.commands_topic` ([`routing`]), runs each record as an
//! operator API call would ([`Commands::call`]: validation, one CALL in flight per charge
//! point, its queue, its timeout) and publishes the outcome as a `command.response` event with the record's `commandId`.
//!
//! At least once: a record's offset is committed only after its response was confirmed by the
//! broker (or, for a record without a `commandId`, once it was counted), in order per
//! partition. A restart runs the commands whose offsets were not committed again; `commandId`
//! lets a backend drop duplicates.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use log::{info, warn};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use slab::Slab;

use crate::call::{CallOutcome, PendingCall};
use crate::clock::WallClock;
use crate::commands::{Commands, SourceStatus, sets_authorization_key};
use crate::config::KafkaConfig;
use crate::kafka::integration::Envelope;
use crate::kafka::routing;
use crate::kafka::sink::producer_config;
use crate::stats::Stats;
use basics::WarnBudget;
use ocpp::AnyAction;
use ocpp::v16::Action;

/// Commands running or waiting for their response's confirmation; beyond, no more are read.
const MAX_IN_FLIGHT: usize = 10_000;
/// Records taken per turn.
const BATCH: usize = 256;
/// The longest `timeoutMs` a record may ask for.
const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// While commands run or their responses wait for the broker, the thread looks at their
/// outcomes this often: a call's outcome and librdkafka's queue cannot wake one wait together
/// (a thread of its own for the consumer would let it wait on both; not done yet).
const TICK: Duration = Duration::from_millis(10);
/// With nothing running or unconfirmed, the thread waits this long for a record (a record
/// ends the wait at once); it bounds how long a stop waits for it.
const IDLE: Duration = Duration::from_millis(250);

/// Delivery reports of the responses' producer: (slab key, delivered).
struct Reports {
    deliveries: std::sync::Mutex<Vec<(usize, bool)>>,
    stats: Arc<Stats>,
}

impl ClientContext for Reports {
    fn error(&self, error: KafkaError, reason: &str) {
        self.stats.kafka.kafka_errors.inc();
        log::debug!("kafka commands: {error}: {reason}");
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, key: usize) {
        if let Ok(mut d) = self.deliveries.lock() {
            d.push((key, result.is_ok()));
        }
    }
}

/// A `command.response` on its way: the record it answers, its key and value (kept until the
/// broker confirmed it, to send it again).
struct Response {
    at: Position,
    key: String,
    value: String,
}

/// A record's place in its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    partition: i32,
    offset: i64,
}

struct Running {
    at: Position,
    command_id: String,
    cp: String,
    action: AnyAction,
    pending: PendingCall,
}

fn response_producer(
    config: &KafkaConfig,
    stats: &Arc<Stats>,
) -> Result<BaseProducer<Reports>, KafkaError> {
    producer_config(config).create_with_context(Reports {
        deliveries: std::sync::Mutex::new(Vec::new()),
        stats: Arc::clone(stats),
    })
}

/// Starts the consumer thread; it stops once `stop` is set.
pub fn start(
    config: &KafkaConfig,
    node: &str,
    commands: Commands,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> Result<(JoinHandle<()>, Arc<SourceStatus>), KafkaError> {
    let mut consumer_config = producer_config(config);
    // The producer's settings do not apply to a consumer; librdkafka only warns about them.
    for key in [
        "acks",
        "enable.idempotence",
        "message.timeout.ms",
        "queue.buffering.max.messages",
        "queue.buffering.max.kbytes",
        "linger.ms",
    ] {
        consumer_config.remove(key);
    }
    consumer_config
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    if consumer_config.get("auto.offset.reset").is_none() {
        consumer_config.set("auto.offset.reset", "earliest");
    }
    let consumer: BaseConsumer = consumer_config.create()?;
    let producer = response_producer(config, &stats)?;
    let started_ms = crate::clock::epoch_ms(SystemTime::now());
    let status = Arc::new(SourceStatus::default());
    status.set_problem("not assigned its partitions yet".into());
    let mut thread = Thread {
        status: Arc::clone(&status),
        consumer,
        producer,
        config: config.clone(),
        node: node.to_owned(),
        id_prefix: format!("{node}-{started_ms:x}-commands-"),
        n: 0,
        clock: WallClock::default(),
        commands,
        stats,
        stop,
        running: Vec::new(),
        publishing: Slab::new(),
        unsent: Vec::new(),
        warnings: WarnBudget::new(1),
        origin: Instant::now(),
        open: BTreeMap::new(),
        assigned: false,
        last_assign_try: None,
    };
    let handle = std::thread::Builder::new()
        .name("kafka-commands".into())
        .spawn(move || thread.run())
        .map_err(|e| KafkaError::ClientCreation(e.to_string()))?;
    Ok((handle, status))
}

struct Thread {
    status: Arc<SourceStatus>,
    consumer: BaseConsumer,
    producer: BaseProducer<Reports>,
    config: KafkaConfig,
    node: String,
    id_prefix: String,
    n: u64,
    clock: WallClock,
    commands: Commands,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    running: Vec<Running>,
    /// Responses given to the producer, by delivery key.
    publishing: Slab<Response>,
    /// Keys of responses to send (again): refused by librdkafka, or not delivered.
    unsent: Vec<usize>,
    /// Log lines of records and responses: at most one a second.
    warnings: WarnBudget,
    origin: Instant,
    /// Per partition, the records taken and not yet committed, in offset order, and whether
    /// each is finished.
    open: BTreeMap<i32, VecDeque<(i64, bool)>>,
    assigned: bool,
    last_assign_try: Option<Instant>,
}

impl Thread {
    fn run(&mut self) {
        while !self.stop.load(Ordering::Relaxed) {
            if !self.assigned {
                self.assign();
                if !self.assigned {
                    self.producer.poll(Duration::from_millis(100));
                    continue;
                }
            }
            // Records taken and not yet committed (running, publishing, or finished behind an
            // older one) are bounded: beyond, nothing more is read.
            let open: usize = self.open.values().map(VecDeque::len).sum();
            if open == 0 && self.running.is_empty() {
                self.take(IDLE);
            } else if open < MAX_IN_FLIGHT {
                self.take(TICK);
            } else {
                self.producer.poll(TICK);
            }
            self.collect();
            self.producer.poll(Duration::ZERO);
            self.settle();
            self.send_unsent();
            self.commit(CommitMode::Async);
        }
        // Commands still running are not committed: they run again after a restart.
        let _ = self.producer.flush(Duration::from_secs(5));
        self.settle();
        // Async: a broker that hangs must not hold the stop (what is not committed runs again).
        self.commit(CommitMode::Async);
        info!("kafka commands: stopped");
    }

    /// Assigns this gateway's partitions (from the configuration, or derived from its id
    /// and the topic's partition count), reading from their committed offsets.
    fn assign(&mut self) {
        if self
            .last_assign_try
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.last_assign_try = Some(Instant::now());
        let topic = self.config.commands_topic.as_str();
        let partitions = if self.config.command_partitions.is_empty() {
            let count = match self
                .consumer
                .fetch_metadata(Some(topic), Duration::from_secs(2))
            {
                Ok(metadata) => metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic && t.error().is_none())
                    .map_or(0, |t| t.partitions().len()),
                Err(e) => {
                    let problem = format!("no metadata for {topic}: {e}");
                    self.warn(format_args!("{problem}"));
                    return self.status.set_problem(problem);
                }
            };
            if count == 0 {
                let problem = format!("topic {topic} does not exist (or has no partitions) yet");
                self.warn(format_args!("{problem}; trying again"));
                return self.status.set_problem(problem);
            }
            vec![routing::partition_of(&self.node, count as i32)]
        } else {
            self.config.command_partitions.clone()
        };
        let mut list = TopicPartitionList::new();
        for &p in &partitions {
            if let Err(e) = list.add_partition_offset(topic, p, Offset::Stored) {
                warn!("kafka commands: partition {p}: {e}");
                return;
            }
        }
        match self.consumer.assign(&list) {
            Ok(()) => {
                self.assigned = true;
                self.status.assigned(partitions.clone());
                info!(
                    "kafka commands: consuming {topic} partition(s) {partitions:?} as {} (group {})",
                    self.node, self.config.group_id
                );
            }
            Err(e) => warn!("kafka commands: cannot assign {topic}: {e}"),
        }
    }

    /// Takes the records that arrived (waiting up to `wait` for the first).
    fn take(&mut self, wait: Duration) {
        let mut wait = wait;
        for _ in 0..BATCH {
            let Some(result) = self.consumer.poll(wait) else {
                return;
            };
            wait = Duration::ZERO;
            let message = match result {
                Ok(message) => message,
                Err(e) => {
                    warn!("kafka commands: {e}");
                    return;
                }
            };
            let at = Position {
                partition: message.partition(),
                offset: message.offset(),
            };
            let payload = message.payload().unwrap_or_default().to_vec();
            // How long ago the record was written (the producer's or the broker's time).
            let age_ms = message.timestamp().to_millis().map(|written| {
                let now = crate::clock::epoch_ms(SystemTime::now());
                (now as i64).saturating_sub(written)
            });
            self.open
                .entry(at.partition)
                .or_default()
                .push_back((at.offset, false));
            self.stats.kafka.kafka_commands_received.inc();
            self.start_command(at, &payload, age_ms);
        }
    }

    /// Runs one record, or answers it at once when it cannot run.
    fn start_command(&mut self, at: Position, payload: &[u8], age_ms: Option<i64>) {
        let command = match parse(payload) {
            Ok(command) => command,
            Err(Unusable {
                command_id,
                cp,
                reason,
            }) => {
                self.stats.kafka.kafka_commands_invalid.inc();
                self.warn(format_args!(
                    "record {}@{} refused: {reason}",
                    at.partition, at.offset
                ));
                return match command_id {
                    Some(id) => {
                        let details = json!({"reason": reason});
                        self.respond(at, &id, &cp, None, "Invalid", details);
                    }
                    None => self.finish(at),
                };
            }
        };
        let Command {
            command_id,
            cp,
            action,
            payload,
            timeout,
        } = command;
        // A command older than kafka.command_max_age (a gateway that was down, a new consumer
        // group reading a partition from its start) is answered, not run.
        let max_age = self.config.command_max_age;
        if !max_age.is_zero()
            && let Some(age) = age_ms.filter(|&age| age > max_age.as_millis() as i64)
        {
            self.stats.kafka.kafka_commands_expired.inc();
            let reason = format!(
                "written {:.1} s ago, more than kafka.command_max_age ({max_age:?}): not run",
                age as f64 / 1000.0
            );
            let details = json!({"reason": reason});
            return self.respond(at, &command_id, &cp, Some(action), "Expired", details);
        }
        match self.commands.call(&cp, action, payload, None, timeout) {
            Ok(pending) => self.running.push(Running {
                at,
                command_id,
                cp,
                action,
                pending,
            }),
            Err(invalid) => {
                self.stats.kafka.kafka_commands_invalid.inc();
                let details = json!({"reason": invalid.description, "code": invalid.code.as_str()});
                self.respond(at, &command_id, &cp, Some(action), "Invalid", details);
            }
        }
    }

    /// Publishes the outcomes of calls that ended.
    fn collect(&mut self) {
        let mut index = 0;
        while index < self.running.len() {
            let Some(outcome) = self.running[index].pending.try_outcome() else {
                index += 1;
                continue;
            };
            let done = self.running.swap_remove(index);
            if outcome == CallOutcome::NotConnected {
                self.stats.kafka.kafka_commands_not_connected.inc();
            }
            let (status, details) = response(&outcome);
            self.respond(
                done.at,
                &done.command_id,
                &done.cp,
                Some(done.action),
                status,
                details,
            );
        }
    }

    /// Gives a `command.response` to the producer; the record is finished once it is confirmed.
    fn respond(
        &mut self,
        at: Position,
        command_id: &str,
        cp: &str,
        action: Option<AnyAction>,
        status: &str,
        details: Value,
    ) {
        let value = {
            let envelope = Envelope {
                id_prefix: &self.id_prefix,
                n: self.n,
                gateway: &self.node,
                timestamp: self.clock.text(SystemTime::now()),
            };
            json!({
                "eventId": format!("{}{}", envelope.id_prefix, envelope.n),
                "eventType": "command.response",
                "chargePointId": cp,
                "gatewayId": envelope.gateway,
                "timestamp": envelope.timestamp,
                "payload": {
                    "commandId": command_id,
                    "commandName": action.map(AnyAction::name),
                    "status": status,
                    "details": details,
                },
            })
            .to_string()
        };
        self.n += 1;
        let key = self.publishing.insert(Response {
            at,
            key: cp.to_owned(),
            value,
        });
        self.send(key);
    }

    /// Gives response `key` to the producer; if it is refused, it waits in `unsent`.
    fn send(&mut self, key: usize) {
        let Some(response) = self.publishing.get(key) else {
            return;
        };
        let mut record =
            BaseRecord::with_opaque_to(&self.config.events_topic, key).payload(&response.value);
        if !response.key.is_empty() {
            record = record.key(&response.key);
        }
        if let Err((e, _)) = self.producer.send(record) {
            // Full, or refused: sent again next turn (the offset waits for it).
            if !matches!(
                e,
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull)
            ) {
                self.warn(format_args!(
                    "a command.response was refused: {e}; sending it again"
                ));
            }
            self.unsent.push(key);
        }
    }

    fn send_unsent(&mut self) {
        for key in std::mem::take(&mut self.unsent) {
            self.send(key);
        }
    }

    /// Applies the responses' delivery reports: a confirmed one finishes its record; one that
    /// was not delivered is sent again (after a fatal error, by a new producer).
    fn settle(&mut self) {
        let reports = match self.producer.context().deliveries.lock() {
            Ok(mut d) if !d.is_empty() => std::mem::take(&mut *d),
            _ => return,
        };
        let mut failed = false;
        for (key, ok) in reports {
            if !ok {
                failed = true;
                self.unsent.push(key);
                continue;
            }
            let Some(response) = self.publishing.try_remove(key) else {
                continue;
            };
            self.stats.kafka.kafka_command_responses.inc();
            self.finish(response.at);
        }
        if failed {
            self.warn(format_args!(
                "a command.response was not delivered; sending it again"
            ));
            if let Some((code, reason)) = self.producer.client().fatal_error() {
                warn!(
                    "kafka commands: the producer stopped ({code}: {reason}); a new one takes over"
                );
                match response_producer(&self.config, &self.stats) {
                    Ok(producer) => self.producer = producer,
                    Err(e) => warn!("kafka commands: cannot create a producer: {e}"),
                }
            }
        }
    }

    fn warn(&mut self, message: std::fmt::Arguments<'_>) {
        if self
            .warnings
            .allow(self.origin.elapsed().as_millis() as u64)
        {
            warn!("kafka commands: {message}");
        }
    }

    fn finish(&mut self, at: Position) {
        let Some(open) = self.open.get_mut(&at.partition) else {
            return;
        };
        if let Ok(i) = open.binary_search_by_key(&at.offset, |(offset, _)| *offset) {
            open[i].1 = true;
        }
    }

    /// Commits, per partition, past the finished records at its front.
    fn commit(&mut self, mode: CommitMode) {
        let mut list = TopicPartitionList::new();
        for (&partition, open) in &mut self.open {
            let mut next = None;
            while open.front().is_some_and(|(_, done)| *done) {
                next = open.pop_front().map(|(offset, _)| offset + 1);
            }
            if let Some(next) = next {
                let _ = list.add_partition_offset(
                    &self.config.commands_topic,
                    partition,
                    Offset::Offset(next),
                );
            }
        }
        if list.count() == 0 {
            return;
        }
        if let Err(e) = self.consumer.commit(&list, mode) {
            warn!("kafka commands: commit failed: {e} (the records may run again after a restart)");
        }
    }
}

/// A record that can run.
#[derive(Debug)]
struct Command {
    command_id: String,
    cp: String,
    action: AnyAction,
    payload: Box<RawValue>,
    timeout: Option<Duration>,
}

/// A record that cannot run, and what is known to answer it.
#[derive(Debug, PartialEq)]
struct Unusable {
    command_id: Option<String>,
    cp: String,
    reason: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCommand {
    command_id: Option<Value>,
    charge_point_id: Option<Value>,
    action: Option<Value>,
    payload: Option<Box<RawValue>>,
    timeout_ms: Option<Value>,
}

/// Reads a record: `{"commandId","chargePointId","action","payload"[,"timeoutMs"]}`.
fn parse(bytes: &[u8]) -> Result<Command, Unusable> {
    let unusable = |command_id: Option<String>, cp: String, reason: String| Unusable {
        command_id,
        cp,
        reason,
    };
    let raw: RawCommand = serde_json::from_slice(bytes)
        .map_err(|e| unusable(None, String::new(), format!("not a command object: {e}")))?;
    let command_id = match raw.command_id {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= 256 => id,
        _ => {
            return Err(unusable(
                None,
                String::new(),
                "commandId must be a string of 1 to 256 characters".into(),
            ));
        }
    };
    let id = Some(command_id.clone());
    let cp = match raw.charge_point_id {
        Some(Value::String(cp)) if crate::types::is_valid_identity(&cp) => cp,
        other => {
            return Err(unusable(
                id,
                String::new(),
                format!(
                    "chargePointId {} is not a charge point identity",
                    shown(other)
                ),
            ));
        }
    };
    let action = match &raw.action {
        Some(Value::String(name)) => AnyAction::named(name),
        _ => None,
    };
    let Some(action) = action else {
        return Err(unusable(
            id,
            cp,
            format!(
                "action {} is not an OCPP 1.6, 2.0.1 or 2.1 action",
                shown(raw.action)
            ),
        ));
    };
    let Some(payload) = raw.payload.filter(|p| p.get().starts_with('{')) else {
        return Err(unusable(id, cp, "payload must be a JSON object".into()));
    };
    let sets_key = (action == AnyAction::V16(Action::ChangeConfiguration)
        && sets_authorization_key(&payload))
        || crate::commands::sets_basic_auth_password(&payload);
    if sets_key {
        return Err(unusable(
            id,
            cp,
            "a ChangeConfiguration of AuthorizationKey (1.6) or SetVariables of \
             BasicAuthPassword (2.0.1) goes through the API of the gateway holding the charge \
             point, which stores the key"
                .into(),
        ));
    }
    let timeout = match raw.timeout_ms {
        None | Some(Value::Null) => None,
        Some(Value::Number(n))
            if n.as_u64()
                .is_some_and(|ms| (1..=MAX_TIMEOUT_MS).contains(&ms)) =>
        {
            n.as_u64().map(Duration::from_millis)
        }
        Some(other) => {
            return Err(unusable(
                id,
                cp,
                format!(
                    "timeoutMs {other} is not a number of milliseconds from 1 to {MAX_TIMEOUT_MS}"
                ),
            ));
        }
    };
    Ok(Command {
        command_id,
        cp,
        action,
        payload,
        timeout,
    })
}

/// A field's value in a refusal (short).
fn shown(value: Option<Value>) -> String {
    let text = value.map_or_else(|| "(missing)".to_owned(), |v| v.to_string());
    text.chars().take(64).collect()
}

/// A call's outcome as `command.response` `status` and `details`.
fn response(outcome: &CallOutcome) -> (&'static str, Value) {
    match outcome {
        CallOutcome::Result(payload) => ("Completed", json!({"response": payload})),
        CallOutcome::Error {
            code,
            description,
            details,
        } => (
            "CallError",
            json!({"errorCode": code, "errorDescription": description, "errorDetails": details}),
        ),
        CallOutcome::InvalidResult(invalid) => (
            "InvalidResponse",
            json!({"reason": invalid.description, "code": invalid.code.as_str()}),
        ),
        CallOutcome::Timeout => (
            "Timeout",
            json!({"reason": "the charge point did not answer in time"}),
        ),
        CallOutcome::NotConnected => (
            "NotConnected",
            json!({"reason": "the charge point is not connected to this gateway"}),
        ),
        CallOutcome::Rejected => (
            "Busy",
            json!({"reason": "too many calls wait for this charge point; send it again later"}),
        ),
        CallOutcome::Invalid(invalid) => (
            "Invalid",
            json!({"reason": invalid.description, "code": invalid.code.as_str()}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_record_runs() {
        let c = parse(
            br#"{"commandId":"c1","chargePointId":"CP-1","action":"Reset","payload":{"type":"Soft"},"timeoutMs":5000}"#,
        )
        .unwrap();
        assert_eq!(
            (
                c.command_id.as_str(),
                c.cp.as_str(),
                c.action,
                c.payload.get()
            ),
            ("c1", "CP-1", Action::Reset.into(), r#"{"type":"Soft"}"#)
        );
        assert_eq!(c.timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn bad_records_say_why_and_keep_their_id() {
        let cases: [(&[u8], Option<&str>, &str); 9] = [
            (b"not json", None, "not a command object"),
            (br#"{"chargePointId":"CP-1"}"#, None, "commandId"),
            (br#"{"commandId":"c2","action":"Reset","payload":{}}"#, Some("c2"), "chargePointId"),
            (br#"{"commandId":"c3","chargePointId":"a/b","action":"Reset","payload":{}}"#, Some("c3"), "chargePointId"),
            (br#"{"commandId":"c4","chargePointId":"CP","action":"Dance","payload":{}}"#, Some("c4"), "not an OCPP 1.6, 2.0.1 or 2.1 action"),
            (br#"{"commandId":"c5","chargePointId":"CP","action":"Reset","payload":[1]}"#, Some("c5"), "payload"),
            (br#"{"commandId":"c6","chargePointId":"CP","action":"Reset","payload":{},"timeoutMs":0}"#, Some("c6"), "timeoutMs"),
            (br#"{"commandId":"c7","chargePointId":"CP","action":"ChangeConfiguration","payload":{"key":"AuthorizationKey","value":"x"}}"#, Some("c7"), "AuthorizationKey"),
            (br#"{"commandId":"c8","chargePointId":"CP","action":"SetVariables","payload":{"setVariableData":[{"component":{"name":"SecurityCtrlr"},"variable":{"name":"BasicAuthPassword"},"attributeValue":"x"}]}}"#, Some("c8"), "BasicAuthPassword"),
        ];
        for (bytes, id, reason) in cases {
            let e = parse(bytes).unwrap_err();
            assert_eq!(
                e.command_id.as_deref(),
                id,
                "{}",
                String::from_utf8_lossy(bytes)
            );
            assert!(
                e.reason.contains(reason),
                "{} -> {}",
                String::from_utf8_lossy(bytes),
                e.reason
            );
        }
    }

    #[test]
    fn outcomes_map_to_statuses() {
        let result =
            CallOutcome::Result(RawValue::from_string(r#"{"status":"Accepted"}"#.into()).unwrap());
        assert_eq!(response(&result).0, "Completed");
        assert_eq!(response(&result).1["response"]["status"], "Accepted");
        assert_eq!(response(&CallOutcome::NotConnected).0, "NotConnected");
        assert_eq!(response(&CallOutcome::Timeout).0, "Timeout");
        assert_eq!(response(&CallOutcome::Rejected).0, "Busy");
    }
}
