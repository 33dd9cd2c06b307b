//! A Kafka-protocol broker on loopback for the Kafka tests: `tansu` (crates.io; `.ci/run`
//! installs it into its cache), in-memory storage, killed when dropped. The backend side of the
//! tests is a real Kafka client: librdkafka through the `rdkafka` crate.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;

use super::{WATCHDOG, free_port, server_available, test_config, wait_until};
use ocpp_gateway::config::{Config, KafkaConfig, Sinks};

pub const EVENTS: &str = "ocpp-events-up";
pub const COMMANDS: &str = "commands-down";
pub const EVENT_PARTITIONS: i32 = 3;
pub const COMMAND_PARTITIONS: i32 = 4;

/// True when `tansu` can be run (see [`server_available`]).
pub fn available() -> bool {
    server_available("tansu", "cargo install tansu --features dynostore")
}

pub struct Tansu {
    pub port: u16,
    child: Child,
}

impl Tansu {
    pub fn start() -> Tansu {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new("tansu")
            .args(["broker", "--storage-engine", "memory://tansu/"])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let tansu = Tansu { port, child };
        wait_until("tansu listens", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        tansu
    }

    /// `host:port` for `kafka.brokers` and clients.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let status = Command::new("tansu")
            .args(["topic", "create", name])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .args(["--partitions", &partitions.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("tansu topic create runs");
        assert!(status.success(), "topic {name} created");
    }

    /// SIGSTOP (`true`) or SIGCONT: a broker that stops answering without closing anything.
    pub fn freeze(&self, frozen: bool) {
        super::freeze_process(self.child.id(), frozen);
    }

    /// A producer as a backend would use it.
    pub fn producer(&self) -> BaseProducer {
        ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("acks", "all")
            .create()
            .expect("producer")
    }

    /// Writes one record to `partition` of `topic` and waits until the broker has it.
    pub fn produce(&self, producer: &BaseProducer, topic: &str, partition: i32, value: &[u8]) {
        self.produce_at(producer, topic, partition, value, None);
    }

    /// The same, with the record's timestamp (ms since the epoch) set.
    pub fn produce_at(
        &self,
        producer: &BaseProducer,
        topic: &str,
        partition: i32,
        value: &[u8],
        timestamp_ms: Option<i64>,
    ) {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic)
            .partition(partition)
            .payload(value);
        if let Some(ms) = timestamp_ms {
            record = record.timestamp(ms);
        }
        producer
            .send(record)
            .map_err(|(e, _)| e)
            .expect("record queued");
        producer.flush(WATCHDOG).expect("record delivered");
    }

    /// Records on `topic` (every partition) from its start.
    pub fn reader(&self, topic: &str, partitions: i32) -> Reader {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("group.id", format!("test-reader-{}", free_port()))
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition_offset(topic, p, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&list).expect("assign");
        Reader {
            consumer,
            topic: topic.to_owned(),
            partitions,
            seen: Vec::new(),
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.freeze(false);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One record read back: its partition, key and JSON value.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub key: Option<String>,
    pub value: Value,
}

/// Reads a topic from the start and keeps what it read.
pub struct Reader {
    consumer: BaseConsumer,
    topic: String,
    partitions: i32,
    pub seen: Vec<Record>,
}

impl Reader {
    /// Reads until `done` holds for what was read so far (failing after [`WATCHDOG`]).
    pub fn until(&mut self, what: &str, mut done: impl FnMut(&[Record]) -> bool) -> &[Record] {
        let deadline = Instant::now() + WATCHDOG;
        while !done(&self.seen) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; read: {:#?}",
                self.seen
            );
            self.poll(Duration::from_millis(100));
        }
        &self.seen
    }

    /// Takes what arrives within `wait`.
    pub fn poll(&mut self, wait: Duration) {
        if let Some(result) = self.consumer.poll(wait) {
            let message = result.expect("a record");
            let value = serde_json::from_slice(message.payload().unwrap_or_default())
                .expect("every record is JSON");
            self.seen.push(Record {
                partition: message.partition(),
                key: message
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned()),
                value,
            });
        }
    }

    /// Records on the topic now (the sum of the partitions' high watermarks), asked of the
    /// broker directly.
    pub fn high_watermarks(&self) -> i64 {
        (0..self.partitions)
            .map(|p| {
                self.consumer
                    .fetch_watermarks(&self.topic, p, WATCHDOG)
                    .expect("watermarks")
                    .1
            })
            .sum()
    }

    /// The events of charge point `cp` read so far, by eventType (payload, in order).
    pub fn of(&self, cp: &str) -> Vec<&Value> {
        self.seen
            .iter()
            .filter(|r| r.key.as_deref() == Some(cp))
            .map(|r| &r.value)
            .collect()
    }
}

/// A broker with both topics.
pub fn broker() -> Tansu {
    let tansu = Tansu::start();
    tansu.create_topic(EVENTS, EVENT_PARTITIONS as u32);
    tansu.create_topic(COMMANDS, COMMAND_PARTITIONS as u32);
    tansu
}

/// Journal and Kafka both on, as in production.
pub fn gateway(tansu: &Tansu, node: &str, dir: &std::path::Path) -> Config {
    let mut config = test_config();
    config.server.node_id = node.into();
    config.events.sinks = Sinks {
        journal: true,
        kafka: true,
    };
    config.events.path = dir.join("events.jsonl");
    config.kafka = Some(KafkaConfig {
        brokers: tansu.brokers(),
        events_topic: EVENTS.into(),
        commands_topic: COMMANDS.into(),
        consume_commands: true,
        command_partitions: Vec::new(),
        group_id: format!("ocpp-gateway-{node}"),
        ack_timeout: Duration::from_millis(1500),
        degraded_after: Duration::from_secs(2),
        command_max_age: Duration::from_secs(300),
        raw_frames: false,
        buffer_messages: 100_000,
        buffer_bytes: 64 << 20,
        linger: Duration::from_millis(1),
        properties: Vec::new(),
    });
    config
}

/// Fails unless `event` is valid against `schemas/kafka/{eventType}.json`.
pub fn assert_schema(event: &Value) {
    let kind = event["eventType"].as_str().expect("an eventType");
    let path = format!("{}/schemas/kafka/{kind}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(event)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{event} is not a valid {kind}: {errors:?}"
    );
}

/// A fresh scratch directory for a Kafka test.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ocpp-kafka-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}
