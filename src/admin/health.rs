//! `/health`: is every thread alive and answering? The admin thread sends each event loop and
//! each processor a numbered probe every [`Probes::interval`]; a thread stores the number when
//! it handles it. Each thread also bumps a progress counter as it works (a loop per turn, a
//! processor per message), because under overload a probe may find a full queue and be lost.
//! A thread that has left a probe unanswered *and* made no progress for `admin.stuck_after` is
//! stuck (or dead), and the gateway is then `unhealthy` (HTTP 503), so a load balancer or
//! orchestrator takes it out; a busy thread is not stuck. A failing journal makes it `degraded` (HTTP 200: charge points are still
//! served; the operator must look at the disk).
//!
//! The JSON keeps every field of the Go gateway's health endpoint (`status`, `timestamp`,
//! `uptime`, `connections`, `ping_service{...}`), so existing dashboards keep working.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use serde::Serialize;
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use super::http::Response;
use super::server::AdminLoop;
use crate::stats::StatsSnapshot;

/// Probes sent, oldest first.
#[derive(Debug)]
pub struct Probes {
    sent: VecDeque<(u64, Instant)>,
    /// Probes remembered: enough to cover `stuck_after` at the probe interval.
    remembered: usize,
    next_seq: u64,
    pub interval: Duration,
    stuck_after: Duration,
}

/// One thread's progress counter as last seen, and when it last moved.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    seen: u64,
    moved_at: Instant,
}

impl Probes {
    pub fn new(stuck_after: Duration) -> Probes {
        let interval = (stuck_after / 8).clamp(Duration::from_millis(25), Duration::from_secs(1));
        let remembered = (stuck_after.as_millis() / interval.as_millis().max(1)) as usize + 4;
        Probes {
            sent: VecDeque::with_capacity(remembered),
            remembered,
            next_seq: 1,
            interval,
            stuck_after,
        }
    }

    /// Numbers a new probe sent `now`.
    pub fn next(&mut self, now: Instant) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.sent.len() == self.remembered {
            self.sent.pop_front();
        }
        self.sent.push_back((seq, now));
        seq
    }

    /// Fresh progress records for `n` threads.
    pub fn progress(n: usize, now: Instant) -> Vec<Progress> {
        vec![
            Progress {
                seen: 0,
                moved_at: now
            };
            n
        ]
    }

    /// Notes the threads' progress counters as of `now`.
    pub fn observe(records: &mut [Progress], counters: &[CachePadded<AtomicU64>], now: Instant) {
        for (record, counter) in records.iter_mut().zip(counters) {
            let value = counter.load(Ordering::Relaxed);
            if value != record.seen {
                record.seen = value;
                record.moved_at = now;
            }
        }
    }

    /// Whether a thread whose last answered probe is `answered` is stuck at `now`: some probe
    /// after it was sent at least `stuck_after` ago.
    pub fn is_stuck(&self, answered: u64, now: Instant) -> bool {
        self.sent.iter().any(|&(seq, at)| {
            seq > answered && now.saturating_duration_since(at) >= self.stuck_after
        })
    }

    /// Stuck flags of a set of threads: a probe unanswered and no progress, both for
    /// `stuck_after`.
    pub fn stuck(
        &self,
        answers: &[CachePadded<AtomicU64>],
        progress: &[Progress],
        now: Instant,
    ) -> Vec<bool> {
        answers
            .iter()
            .zip(progress)
            .map(|(slot, p)| {
                self.is_stuck(slot.load(Ordering::Relaxed), now)
                    && now.saturating_duration_since(p.moved_at) >= self.stuck_after
            })
            .collect()
    }
}

#[derive(Debug, Serialize)]
pub struct Health {
    /// "healthy", "degraded" (journal failing) or "unhealthy" (a thread is stuck or dead).
    pub status: &'static str,
    pub timestamp: String,
    /// Go duration syntax ("1h2m3.5s"), as the Go gateway printed it.
    pub uptime: String,
    pub uptime_seconds: f64,
    pub connections: usize,
    pub ping_service: PingService,
    pub loops: Vec<LoopHealth>,
    pub processors: Vec<ProcessorHealth>,
    pub journal: JournalHealth,
    /// Present when events go to Kafka.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaHealth>,
    /// Present when commands are read from Kafka.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka_commands: Option<CommandsHealth>,
    /// Present with `cluster.events`: the Redis stream's sink.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_stream: Option<StreamHealth>,
    pub open_files_limit: OpenFiles,
    /// What is wrong, in words, when the status is not healthy.
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PingService {
    pub active_connections: usize,
    pub ping_interval: String,
    pub total_pings: u64,
    pub skipped_pings: u64,
}

#[derive(Debug, Serialize)]
pub struct LoopHealth {
    pub index: usize,
    pub connections: usize,
    pub queue_depth: usize,
    pub alive: bool,
}

#[derive(Debug, Serialize)]
pub struct ProcessorHealth {
    pub index: usize,
    /// Messages waiting.
    pub queue_depth: usize,
    /// Bytes of messages waiting.
    pub queue_bytes: usize,
    /// The queue is at `processor.queue_capacity` or `processor.queue_bytes`: loops are
    /// holding charge points back.
    pub saturated: bool,
    pub alive: bool,
}

/// A sink's state for `/health`: "stuck" (its thread does not answer: `stuck_problem`),
/// "failing" (`failing` says why; the gateway is degraded) or "ok".
fn sink_state(
    stuck: bool,
    failing: Option<String>,
    stuck_problem: &str,
    (problems, degraded): (&mut Vec<String>, &mut bool),
) -> &'static str {
    if stuck {
        problems.push(stuck_problem.into());
        return "stuck";
    }
    match failing {
        Some(problem) => {
            *degraded = true;
            problems.push(problem);
            "failing"
        }
        None => "ok",
    }
}

#[derive(Debug, Serialize)]
pub struct CommandsHealth {
    /// "reading" or "waiting" (not assigned its partitions: no topic, no broker).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<Vec<i32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct KafkaHealth {
    /// "ok", "failing" (the broker is unreachable or did not confirm within
    /// kafka.ack_timeout) or "stuck" (the sink's thread does not answer).
    pub status: &'static str,
    pub topic: String,
    /// Events given to librdkafka and not yet confirmed.
    pub waiting: u64,
    pub confirmed: u64,
    pub refused_answers: u64,
    /// How long the oldest billing answer still held for the broker has waited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_held_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct StreamHealth {
    /// "ok", "failing" (Redis does not take the lines: they wait in the buffer) or "stuck".
    pub status: &'static str,
    /// Lines waiting for Redis.
    pub buffered: u64,
    pub published: u64,
    pub lines_lost: u64,
    pub refused_answers: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct JournalHealth {
    /// "ok", "failing", "stuck" or "off".
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub queue_depth: u64,
    pub errors: u64,
    pub lines_lost: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct OpenFiles {
    pub soft: u64,
    pub hard: u64,
}

/// Go's `time.Duration.String()`: "0s", "1.5s", "2m3s", "1h0m0s".
pub fn go_duration(d: Duration) -> String {
    let total = d.as_secs_f64();
    if total == 0.0 {
        return "0s".into();
    }
    let hours = d.as_secs() / 3600;
    let minutes = (d.as_secs() % 3600) / 60;
    let seconds = (d.as_secs() % 60) as f64 + f64::from(d.subsec_nanos()) / 1e9;
    let seconds = format!("{seconds:.3}");
    let seconds = seconds.trim_end_matches('0').trim_end_matches('.');
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, m) => format!("{m}m{seconds}s"),
        (h, m) => format!("{h}h{m}m{seconds}s"),
    }
}

/// What makes the gateway degraded, in the order it was found (`problems` in the JSON).
struct Findings {
    problems: Vec<String>,
    degraded: bool,
}

impl AdminLoop {
    pub(super) fn health(&mut self) -> Response {
        let now = Instant::now();
        let snapshot = self.parts.stats.snapshot();
        let (loops_stuck, processors_stuck) = self.stuck(now);
        let mut problems = Vec::new();
        let loops = self.loop_health(&snapshot, &loops_stuck, &mut problems);
        let processors = self.processor_health(&processors_stuck, &mut problems);
        let mut findings = Findings {
            problems,
            degraded: processors.iter().any(|p| p.saturated),
        };
        let journal = self.journal_health(&snapshot, &mut findings);
        let kafka = self.kafka_health(&snapshot, &mut findings);
        let kafka_commands = self.commands_health(&mut findings);
        let events_stream = self.stream_health(&snapshot, &mut findings);
        self.shared_resource_problems(&mut findings);
        let Findings { problems, degraded } = findings;
        let unhealthy = loops_stuck.iter().chain(&processors_stuck).any(|&s| s)
            || journal.status == "stuck"
            || kafka.as_ref().is_some_and(|k| k.status == "stuck")
            || events_stream.as_ref().is_some_and(|s| s.status == "stuck");
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((0, 0));
        let uptime = self.started.elapsed();
        let health = Health {
            status: if unhealthy {
                "unhealthy"
            } else if degraded {
                "degraded"
            } else {
                "healthy"
            },
            timestamp: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            uptime: go_duration(uptime),
            uptime_seconds: uptime.as_secs_f64(),
            connections: snapshot.connections,
            ping_service: PingService {
                active_connections: snapshot.connections,
                ping_interval: go_duration(self.parts.config.websocket.ping_interval),
                total_pings: snapshot.pings_sent,
                skipped_pings: snapshot.pings_skipped,
            },
            loops,
            processors,
            journal,
            kafka,
            kafka_commands,
            events_stream,
            open_files_limit: OpenFiles { soft, hard },
            problems,
        };
        Response::json(if unhealthy { 503 } else { 200 }, &health)
    }

    /// Each event loop; a stuck one is a problem.
    fn loop_health(
        &self,
        snapshot: &StatsSnapshot,
        loops_stuck: &[bool],
        problems: &mut Vec<String>,
    ) -> Vec<LoopHealth> {
        self.parts
            .loops
            .handles
            .iter()
            .enumerate()
            .map(|(index, handle)| {
                if loops_stuck[index] {
                    problems.push(format!("event loop {index} does not answer"));
                }
                LoopHealth {
                    index,
                    connections: snapshot.loop_connections.get(index).copied().unwrap_or(0),
                    queue_depth: handle.tx.len(),
                    alive: !loops_stuck[index],
                }
            })
            .collect()
    }

    /// Each processor; a stuck or a saturated one is a problem.
    fn processor_health(
        &self,
        processors_stuck: &[bool],
        problems: &mut Vec<String>,
    ) -> Vec<ProcessorHealth> {
        self.parts
            .processors
            .handles
            .iter()
            .enumerate()
            .map(|(index, handle)| {
                let saturated = handle.queue.is_saturated();
                if processors_stuck[index] {
                    problems.push(format!("processor {index} does not answer"));
                } else if saturated {
                    problems.push(format!(
                        "processor {index} is saturated (its queue is full): its charge points \
                         are read more slowly"
                    ));
                }
                ProcessorHealth {
                    index,
                    queue_depth: handle.queue.depth().0,
                    queue_bytes: handle.queue.depth().1,
                    saturated,
                    alive: !processors_stuck[index],
                }
            })
            .collect()
    }

    /// The journal: off, ok, failing (degraded) or stuck.
    fn journal_health(&self, snapshot: &StatsSnapshot, findings: &mut Findings) -> JournalHealth {
        match &self.parts.journal {
            None => JournalHealth {
                status: "off",
                path: None,
                queue_depth: 0,
                errors: snapshot.journal_errors,
                lines_lost: snapshot.journal_lines_lost,
                last_error: None,
            },
            Some(status) => {
                let state = sink_state(
                    status.silent_for() >= self.parts.config.admin.stuck_after,
                    status.failing().then(|| {
                        format!(
                            "the journal cannot write: {}",
                            status.last_error().unwrap_or_default()
                        )
                    }),
                    "the journal thread does not answer",
                    (&mut findings.problems, &mut findings.degraded),
                );
                JournalHealth {
                    status: state,
                    path: Some(status.path.display().to_string()),
                    queue_depth: status.queue_depth(),
                    errors: snapshot.journal_errors,
                    lines_lost: snapshot.journal_lines_lost,
                    last_error: status.last_error(),
                }
            }
        }
    }

    /// The Kafka sink (None without one): failing when the broker does not confirm, or when
    /// billing answers have waited past `kafka.degraded_after`.
    fn kafka_health(
        &self,
        snapshot: &StatsSnapshot,
        findings: &mut Findings,
    ) -> Option<KafkaHealth> {
        self.parts.kafka.as_ref().map(|status| {
            let oldest_held = status.oldest_held();
            let degraded_after = self
                .parts
                .config
                .kafka
                .as_ref()
                .map_or(Duration::MAX, |k| k.degraded_after);
            let failing = if status.failing() {
                Some(format!(
                    "Kafka does not confirm events (held billing answers become \
                     InternalError after kafka.ack_timeout): {}",
                    status.last_error().unwrap_or_default()
                ))
            } else {
                oldest_held.filter(|age| *age >= degraded_after).map(|age| {
                    format!(
                        "billing answers have waited {} for Kafka's confirmation \
                         (kafka.degraded_after {})",
                        go_duration(age),
                        go_duration(degraded_after)
                    )
                })
            };
            let state = sink_state(
                status.silent_for() >= self.parts.config.admin.stuck_after,
                failing,
                "the Kafka sink's thread does not answer",
                (&mut findings.problems, &mut findings.degraded),
            );
            KafkaHealth {
                status: state,
                topic: status.topic.clone(),
                waiting: status.waiting(),
                confirmed: snapshot.kafka_events_confirmed,
                refused_answers: snapshot.kafka_refused,
                oldest_held_ms: oldest_held.map(|age| age.as_millis() as u64),
                last_error: status.last_error(),
            }
        })
    }

    /// The Redis events stream (None without `cluster.events`): failing while Redis does not
    /// take its lines.
    fn stream_health(
        &self,
        snapshot: &StatsSnapshot,
        findings: &mut Findings,
    ) -> Option<StreamHealth> {
        self.parts.events_stream.as_ref().map(|status| {
            let state = sink_state(
                status.silent_for() >= self.parts.config.admin.stuck_after,
                status.failing().then(|| {
                    format!(
                        "Redis does not take the events stream's lines ({} buffered): {}",
                        status.buffered(),
                        status.last_error().unwrap_or_default()
                    )
                }),
                "the events stream's thread does not answer",
                (&mut findings.problems, &mut findings.degraded),
            );
            StreamHealth {
                status: state,
                buffered: status.buffered(),
                published: snapshot.cluster_events_published,
                lines_lost: snapshot.cluster_events_lost,
                refused_answers: snapshot.cluster_events_refused,
                last_error: status.last_error(),
            }
        })
    }

    /// The Kafka commands consumer (None without one): degraded while it cannot read.
    fn commands_health(&self, findings: &mut Findings) -> Option<CommandsHealth> {
        self.parts.kafka_commands.as_ref().map(|status| {
            let partitions = status.partitions();
            let problem = status.problem();
            if let Some(problem) = problem.as_ref().filter(|_| partitions.is_none()) {
                findings.degraded = true;
                findings
                    .problems
                    .push(format!("Kafka commands are not read: {problem}"));
            }
            CommandsHealth {
                status: if partitions.is_some() {
                    "reading"
                } else {
                    "waiting"
                },
                partitions,
                problem,
            }
        })
    }

    /// What degrades every charge point at once: Redis out of reach, StartTransaction refused.
    fn shared_resource_problems(&self, findings: &mut Findings) {
        if let Some(reachable) = &self.parts.redis_reachable
            && !reachable.load(std::sync::atomic::Ordering::Relaxed)
        {
            findings.degraded = true;
            findings.problems.push(
                "Redis is unreachable (cluster mode): charge points are served, registry \
                 updates wait in a bounded buffer"
                    .into(),
            );
        }
        if let Some(refusal) = self.parts.transactions.refusal() {
            findings.degraded = true;
            findings
                .problems
                .push(format!("StartTransaction is refused: {refusal}"));
        }
        if self.parts.transactions.remaining() == 0 {
            findings.degraded = true;
            findings.problems.push(
                "transaction ids exhausted: StartTransaction is refused; write a new start into \
                 ocpp.transaction_id_file and restart"
                    .into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(go_duration(Duration::from_secs(7200)), "2h0m0s");
    }

    #[test]
    fn a_probe_left_unanswered_for_stuck_after_means_stuck() {
        let start = Instant::now();
        let mut probes = Probes::new(Duration::from_secs(4));
        assert!(!probes.is_stuck(0, start), "nothing sent yet");
        let first = probes.next(start);
        assert!(!probes.is_stuck(0, start + Duration::from_secs(3)));
        assert!(probes.is_stuck(0, start + Duration::from_secs(4)));
        assert!(!probes.is_stuck(first, start + Duration::from_secs(4)));
        let second = probes.next(start + Duration::from_secs(1));
        assert!(!probes.is_stuck(first, start + Duration::from_secs(4)));
        assert!(probes.is_stuck(first, start + Duration::from_secs(5)));
        assert!(!probes.is_stuck(second, start + Duration::from_secs(60)));
    }
}
