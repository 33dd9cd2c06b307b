//! The sink thread: chunks to librdkafka, delivery reports settled per writer, held answers
//! released or refused, the broker's liveness, a new producer after a fatal error.

use super::*;

pub(super) struct Thread {
    pub(super) rx: Receiver<Chunk>,
    pub(super) held_rx: Receiver<Barrier>,
    /// Rung by the producer's polling thread after delivery reports and errors, by side
    /// events and by the stop ([`KafkaStatus::ring`]).
    pub(super) delivered: Receiver<()>,
    pub(super) producer: ThreadedProducer<ArcReports>,
    pub(super) reports: Arc<Reports>,
    pub(super) config: KafkaConfig,
    pub(super) common: Arc<Common>,
    /// Per writer (by index).
    pub(super) flights: Vec<Flight>,
    /// In the order they came (per writer, the order they were held in).
    pub(super) barriers: VecDeque<Barrier>,
    /// A chunk librdkafka had no room for, and the first record it has not taken yet.
    pub(super) pending: Option<(Chunk, usize)>,
    pub(super) last_probe: Instant,
    /// When a delivery report last came, or nothing was waiting for one.
    pub(super) last_progress: Instant,
    /// When the gateway began to stop, as this thread saw it.
    pub(super) stopping_since: Option<Instant>,
    /// Stopping, and the broker took nothing for [`FINAL_FLUSH`]: what comes is dropped.
    pub(super) discarding: bool,
}

impl Thread {
    pub(super) fn run(&mut self) {
        let (rx, mut held_rx) = (self.rx.clone(), self.held_rx.clone());
        let delivered = self.delivered.clone();
        let mut open = true;
        while open || self.pending.is_some() {
            // A chunk is taken only when librdkafka took the last one; held answers always.
            let chunks = if self.pending.is_none() {
                &rx
            } else {
                &crossbeam_channel::never()
            };
            let wait = self.next_deadline().map_or(Duration::MAX, |at| {
                at.saturating_duration_since(Instant::now())
            });
            self.common.status.mark_waiting();
            crossbeam_channel::select! {
                recv(chunks) -> chunk => match chunk {
                    Ok(chunk) => self.pending = Some((chunk, 0)),
                    Err(_) => open = false,
                },
                recv(held_rx) -> barrier => match barrier {
                    Ok(barrier) => self.barriers.push_back(barrier),
                    // Every writer is gone: a closed channel must not wake every turn.
                    Err(_) => held_rx = crossbeam_channel::never(),
                },
                recv(delivered) -> _ => {}
                default(wait) => {}
            }
            self.common.status.mark_alive();
            while let Ok(barrier) = held_rx.try_recv() {
                self.barriers.push_back(barrier);
            }
            self.check_stopping();
            self.produce_pending();
            self.produce_side();
            self.round();
        }
        while let Ok(barrier) = held_rx.try_recv() {
            self.barriers.push_back(barrier);
        }
        self.finish();
    }

    /// When something is due that no ring announces: the oldest held answer's
    /// `kafka.ack_timeout`, the broker's silence about waiting events (`watch`), the next
    /// probe while it seems away, the final flush's end while stopping. None: nothing is.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let status = &self.common.status;
        let timeout = self.config.ack_timeout;
        let waiting = status.waiting() > 0;
        [
            // Barriers come in hand-over order, not quite in the order they were held.
            self.barriers
                .iter()
                .map(|b| b.held_at)
                .min()
                .map(|at| at + timeout),
            // librdkafka frees room in its queue after the delivery callback that rings us, so
            // a chunk it had no room for is offered again a little later too.
            (self.pending.is_some() && !self.discarding).then(|| Instant::now() + QUEUE_FULL_RETRY),
            (waiting && !status.failing()).then(|| self.last_progress + timeout),
            (!waiting && status.failing()).then(|| self.last_probe + PROBE_EVERY),
            self.stopping_since
                .filter(|_| self.pending.is_some() && !self.discarding)
                .map(|since| since + FINAL_FLUSH),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Once the gateway stops and the broker has taken nothing for [`FINAL_FLUSH`], what is
    /// pending and whatever comes is dropped (counted as lost), so no processor waits for a
    /// broker that is away.
    pub(super) fn check_stopping(&mut self) {
        if self.discarding || !self.common.status.stopping.load(Ordering::Relaxed) {
            return;
        }
        let since = *self.stopping_since.get_or_insert_with(Instant::now);
        if self.pending.is_some() && since.elapsed() >= FINAL_FLUSH {
            self.discarding = true;
            error!("kafka: stopping while the broker takes nothing: events still to send are lost");
        }
    }

    /// One turn's bookkeeping: reports, releases, timeouts, liveness.
    pub(super) fn round(&mut self) {
        let reported = self.settle();
        self.watch(reported);
        self.release(Instant::now());
        self.recover();
        self.probe();
        let status = &self.common.status;
        // Barriers are kept in the order they were held: the first is the oldest.
        let oldest = self
            .barriers
            .front()
            .map_or(0, |b| status.ms_at(b.held_at).saturating_add(1));
        status.oldest_held_ms.store(oldest, Ordering::Relaxed);
        status.mark_alive();
    }

    pub(super) fn flight(&mut self, writer: u16) -> &mut Flight {
        let index = usize::from(writer);
        // Only writers that hold answers need their failures remembered.
        let holds = self.common.ack_after_write;
        while self.flights.len() <= index {
            let keeps_failures = holds && self.flights.len() != usize::from(SIDE);
            self.flights.push(Flight::new(keeps_failures));
        }
        &mut self.flights[index]
    }

    /// Gives the pending chunk's records to librdkafka.
    pub(super) fn produce_pending(&mut self) {
        let Some((chunk, mut next)) = self.pending.take() else {
            return;
        };
        if self.discarding {
            let lost = (chunk.records.len() - next) as u64;
            self.common.stats.kafka.kafka_events_lost.add(lost);
            return self.common.chunks.give(chunk);
        }
        let was_waiting = next > 0;
        while next < chunk.records.len() {
            if !self.send(&chunk, next) {
                if !was_waiting {
                    // Counted once per chunk that had to wait, not per retry.
                    self.common.stats.kafka.kafka_backpressure.inc();
                }
                self.pending = Some((chunk, next));
                return;
            }
            next += 1;
        }
        self.common.chunks.give(chunk);
    }

    /// Gives one record to librdkafka: false when its buffer is full (try again later).
    pub(super) fn send(&mut self, chunk: &Chunk, index: usize) -> bool {
        let record = &chunk.records[index];
        let key = &chunk.bytes[record.key.start as usize..record.key.end as usize];
        let value = &chunk.bytes[record.value.start as usize..record.value.end as usize];
        // Numbered only once taken, so numbers follow the order librdkafka got them in.
        let flight = self.flight(chunk.writer);
        let n = flight.push();
        let sent = self.producer.send(
            BaseRecord::with_opaque_to(&self.config.events_topic, opaque(chunk.writer, n))
                .key(key)
                .payload(value),
        );
        let common = Arc::clone(&self.common);
        let stats = &common.stats.kafka;
        match sent {
            Ok(()) => {
                stats.kafka_events_produced.inc();
                if self.common.status.waiting.fetch_add(1, Ordering::Relaxed) == 0 {
                    // The broker's silence is counted from the first event it owes.
                    self.last_progress = Instant::now();
                }
                true
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                self.flight(chunk.writer).unpush();
                false
            }
            Err((e, _)) => {
                // Refused for good (too large, unknown topic, ...): failed, not retried.
                self.flight(chunk.writer).settle(n, false);
                stats.kafka_events_failed.inc();
                self.common.warn(format_args!(
                    "an event of {} bytes was refused: {e}",
                    value.len()
                ));
                true
            }
        }
    }

    /// The side buffer's events, as one chunk of writer [`SIDE`].
    pub(super) fn produce_side(&mut self) {
        if self.pending.is_some() {
            return;
        }
        let mut fresh = self.common.chunks.take();
        fresh.writer = SIDE;
        let chunk = match self.common.side.lock() {
            Ok(mut side) if !side.chunk.records.is_empty() => {
                std::mem::replace(&mut side.chunk, fresh)
            }
            _ => {
                self.common.chunks.give(fresh);
                return;
            }
        };
        self.pending = Some((chunk, 0));
        self.produce_pending();
    }

    /// Applies the delivery reports `poll` gathered; true if there were any.
    pub(super) fn settle(&mut self) -> bool {
        let reports = match self.reports.deliveries.lock() {
            Ok(mut d) if !d.is_empty() => std::mem::take(&mut *d),
            _ => return false,
        };
        let common = Arc::clone(&self.common);
        let stats = &common.stats.kafka;
        let mut delivered = false;
        for &(opaque, ok) in &reports {
            let (writer, n) = unpack(opaque);
            if ok {
                stats.kafka_events_confirmed.inc();
                delivered = true;
            } else {
                stats.kafka_events_failed.inc();
            }
            self.common.status.waiting.fetch_sub(1, Ordering::Relaxed);
            self.flight(writer).settle(n, ok);
        }
        if delivered && self.common.status.recovered() {
            info!("kafka: the broker confirms events again");
        }
        true
    }

    /// Sends on the answers whose events are settled; refuses those past their deadline.
    /// One writer's answers go in order: a waiting one keeps the later ones waiting.
    pub(super) fn release(&mut self, now: Instant) {
        if self.barriers.is_empty() {
            return;
        }
        let mut blocked: Vec<u16> = Vec::new();
        let mut kept = VecDeque::with_capacity(self.barriers.len());
        let mut timed_out = 0u64;
        while let Some(barrier) = self.barriers.pop_front() {
            let verdict = if blocked.contains(&barrier.writer) {
                Verdict::Waiting
            } else {
                self.flight(barrier.writer).verdict(barrier.count)
            };
            let ok = match verdict {
                Verdict::Confirmed => true,
                Verdict::Failed => false,
                Verdict::Waiting if now >= barrier.held_at + self.config.ack_timeout => {
                    timed_out += 1;
                    false
                }
                Verdict::Waiting => {
                    blocked.push(barrier.writer);
                    kept.push_back(barrier);
                    continue;
                }
            };
            let mut held = barrier.held;
            let refused = &self.common.stats.kafka.kafka_refused;
            held.release(&*self.common.route, ok, refused);
        }
        self.barriers = kept;
        if timed_out > 0 {
            self.common.status.fail(format!(
                "the broker did not confirm events within kafka.ack_timeout ({:?})",
                self.config.ack_timeout
            ));
            self.common.warn(format_args!(
                "{timed_out} held answer batch(es) refused: the broker did not confirm within {:?} (the charge points send again)",
                self.config.ack_timeout
            ));
        }
    }

    /// A fatal error (the idempotent producer lost its state, e.g. the broker lost its log)
    /// ends a producer: its messages fail, and a new one takes over.
    pub(super) fn recover(&mut self) {
        if !self.reports.fatal.swap(false, Ordering::Relaxed) {
            return;
        }
        let reason = self.producer.client().fatal_error().map_or_else(
            || "fatal error".to_owned(),
            |(code, text)| format!("{code}: {text}"),
        );
        error!(
            "kafka: the producer stopped ({reason}); its unconfirmed events fail, a new producer starts"
        );
        self.producer
            .purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
        self.producer.poll(Duration::from_millis(100));
        self.settle();
        match create_producer(&self.config, &self.reports) {
            Ok(producer) => self.producer = producer,
            Err(e) => self
                .common
                .status
                .fail(format!("cannot create a producer: {e}")),
        }
    }

    /// Events waiting longer than `kafka.ack_timeout` with no report at all: the broker hangs
    /// (no answer is held to time out, but `/health` must say so).
    pub(super) fn watch(&mut self, reported: bool) {
        let status = &self.common.status;
        let waiting = status.waiting();
        if reported || waiting == 0 {
            self.last_progress = Instant::now();
        } else if self.last_progress.elapsed() >= self.config.ack_timeout && !status.failing() {
            status.fail(format!(
                "no delivery report for {:?}; {waiting} events wait",
                self.config.ack_timeout
            ));
            self.common.warn(format_args!(
                "the broker confirms nothing; events wait in librdkafka's buffer"
            ));
        }
    }

    /// While failing with nothing to deliver, asks the broker for metadata now and then, so
    /// `/health` clears once it is back.
    pub(super) fn probe(&mut self) {
        let status = &self.common.status;
        if !status.failing() || status.waiting() > 0 || self.last_probe.elapsed() < PROBE_EVERY {
            return;
        }
        self.last_probe = Instant::now();
        let topic = self.config.events_topic.as_str();
        if self
            .producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_millis(500))
            .is_ok()
        {
            status.recovered();
            info!("kafka: the broker answers again");
        }
    }

    /// Every writer is gone: what is buffered gets a last chance, then held answers are
    /// settled either way.
    pub(super) fn finish(&mut self) {
        let last_chance = if self.discarding {
            Duration::ZERO
        } else {
            FINAL_FLUSH
        };
        let _ = self.producer.flush(last_chance);
        self.producer.poll(Duration::ZERO);
        self.settle();
        let far = Instant::now() + self.config.ack_timeout + Duration::from_secs(3600);
        self.release(far);
        let lost = self.common.status.waiting();
        if lost > 0 {
            self.common.stats.kafka.kafka_events_lost.add(lost);
            error!("kafka: {lost} events were not confirmed before shutdown");
        }
        info!("kafka: events sink stopped");
    }
}
