//! The librdkafka producer: its settings (nothing acknowledged may be lost) and the callbacks
//! its polling thread runs (delivery reports, errors), which ring the sink thread.

use super::*;

/// librdkafka's callbacks (run inside `poll`, on the sink's thread).
pub(super) struct Reports {
    /// (writer << 48 | number, delivered)
    pub(super) deliveries: Mutex<Vec<(usize, bool)>>,
    pub(super) status: Arc<KafkaStatus>,
    pub(super) stats: Arc<Stats>,
    pub(super) fatal: AtomicBool,
}

impl Reports {
    pub(super) fn on_error(&self, error: KafkaError, reason: &str) {
        self.stats.kafka.kafka_errors.inc();
        let code = error.rdkafka_error_code();
        if code == Some(RDKafkaErrorCode::Fatal) {
            self.fatal.store(true, Ordering::Relaxed);
        }
        if matches!(
            code,
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure)
                | Some(RDKafkaErrorCode::Fatal)
        ) {
            self.status.fail(format!("{error}: {reason}"));
        }
        warn!("kafka: {error}: {reason}");
        // A fatal error needs a new producer; the thread also waits for nothing else.
        self.status.ring();
    }

    pub(super) fn on_delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        if let Err((e, _)) = result {
            warn!("kafka: an event was not delivered: {e}");
        }
        if let Ok(mut deliveries) = self.deliveries.lock() {
            deliveries.push((opaque, result.is_ok()));
        }
        // The thread takes every report there is when it wakes.
        self.status.ring();
    }
}

pub(super) const NUMBER_BITS: u32 = 48;

pub(super) fn opaque(writer: u16, n: u64) -> usize {
    ((writer as usize) << NUMBER_BITS) | (n as usize & ((1 << NUMBER_BITS) - 1))
}

pub(super) fn unpack(opaque: usize) -> (u16, u64) {
    (
        (opaque >> NUMBER_BITS) as u16,
        (opaque & ((1 << NUMBER_BITS) - 1)) as u64,
    )
}

/// librdkafka settings for the gateway's producers: nothing acknowledged may be lost.
pub fn producer_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        // Never dropped by librdkafka: while the broker is away, events wait in the buffer
        // and, once it is full, the processors wait (held answers time out on our side).
        .set("message.timeout.ms", "0")
        .set(
            "queue.buffering.max.messages",
            config.buffer_messages.to_string(),
        )
        .set(
            "queue.buffering.max.kbytes",
            (config.buffer_bytes / 1024).max(1).to_string(),
        )
        .set("linger.ms", config.linger.as_millis().to_string());
    for (key, value) in &config.properties {
        c.set(key, value);
    }
    c
}

pub(super) fn create_producer(
    config: &KafkaConfig,
    reports: &Arc<Reports>,
) -> Result<ThreadedProducer<ArcReports>, KafkaError> {
    producer_config(config).create_with_context(ArcReports(Arc::clone(reports)))
}

/// The callbacks, shared with the producer that replaces one a fatal error ended.
pub(super) struct ArcReports(Arc<Reports>);

impl ClientContext for ArcReports {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.on_error(error, reason);
    }
}

impl ProducerContext for ArcReports {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        self.0.on_delivery(result, opaque);
    }
}
