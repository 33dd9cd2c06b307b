//! Kafka, the bus the platform's services talk through (`[kafka]`, off unless `brokers` is
//! set): integration events up to `kafka.events_topic` ([`sink`], an event sink beside the
//! journal); commands down from `kafka.commands_topic` are a command source of their own, a row
//! above (`crate::kafka_commands`, which uses what is here). Threads of their own, through
//! librdkafka's synchronous API (no async runtime).
//!
//! - [`integration`]: what an event looks like to the backend.
//! - [`flight`]: which events the broker confirmed, for answers held until it did.
//! - [`routing`]: which partition of the commands topic a gateway reads.

pub mod flight;
pub mod integration;
pub mod routing;
pub mod sink;

pub use sink::{KafkaSink, KafkaStatus};
