//! The coordinator: starts the fleet threads, moves the run through its phases, samples once a
//! second (progress line, time series, the gateway's and our own RSS and CPU), and assembles the
//! [`Report`].
//!
//! Phases: **ramp** (everyone connects and boots) -> for `storm`, **storm** (everyone dropped at
//! once, until everyone is booted again) -> **steady** (the measured phase, `--duration`) ->
//! stop. Threads say when all their charge points are booted (tagged with the storm epoch, so a
//! late message cannot end the wrong phase); the coordinator only ever waits on their channel,
//! with a timeout at the next second, phase deadline or global timeout, so the run always ends.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use log::warn;
use mio::{Poll, Waker};

use crate::cli::{RunConfig, Scenario};
use crate::fleet::{FleetLoop, FleetParts, FromFleet, ThreadResult, ToFleet, WAKER};
use crate::process::{self, ProcessError, Sample};
use crate::report::{
    BenchFigures, ConfigEcho, ConnectFigures, ErrorFigures, LatencyFigures, Outcome, PhaseCpu,
    Report, SeriesPoint, ServerFigures, StormFigures, Throughput,
};
use crate::sampler::{self, Drift, ServerSample};
use crate::stats::{self, Counts, ErrorKind, Latencies, Summary, ThreadCounters};

/// Open files a run needs besides one per connection: per thread an epoll instance and its
/// waker, and a margin for stdio, /proc reads and the JSON file.
const FD_MARGIN: u64 = 64;
const FDS_PER_THREAD: u64 = 4;
/// How long stopped threads get to close their connections and report.
const STOP_GRACE: Duration = Duration::from_secs(10);
const TICK: Duration = Duration::from_secs(1);

/// Why a run could not be carried out at all (a run that went badly is a failed [`Report`]).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// More connections than this process may have open files: raise the hard limit or split
    /// the fleet over processes.
    #[error(
        "--connections {connections} needs about {needed} open files, but RLIMIT_NOFILE allows \
         {limit} in this process (soft limit raised to the hard limit already). Use at most \
         {max} connections per process and run several processes, or raise the hard limit \
         (ulimit -Hn, LimitNOFILE=, fs.nr_open; see scripts/tune-host.sh)"
    )]
    TooManyConnections {
        connections: u32,
        needed: u64,
        limit: u64,
        max: u64,
    },
    #[error("cannot read the open-files limit: {0}")]
    Limit(std::io::Error),
    /// The OS refused a thread or a poll instance: the host is out of resources.
    #[error("cannot start fleet thread: {0}")]
    Spawn(std::io::Error),
    /// `--server-pid` names no readable process.
    #[error("--server-pid {pid}: {source}")]
    Server { pid: u32, source: ProcessError },
}

/// Raises the soft open-files limit to the hard one and checks the run fits under it.
pub fn check_open_files(connections: u32, threads: u16) -> Result<u64, RunError> {
    let limit = rlimit::increase_nofile_limit(u64::MAX).map_err(RunError::Limit)?;
    let overhead = FD_MARGIN + FDS_PER_THREAD * u64::from(threads);
    let needed = u64::from(connections) + overhead;
    if needed > limit {
        return Err(RunError::TooManyConnections {
            connections,
            needed,
            limit,
            max: limit.saturating_sub(overhead),
        });
    }
    Ok(limit)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ramp,
    Storm,
    Steady,
    Done,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Ramp => "ramp",
            Phase::Storm => "storm",
            Phase::Steady => "steady",
            Phase::Done => "done",
        }
    }
}

/// Samples of both processes at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Marks {
    server: Option<Sample>,
    bench: Option<Sample>,
}

struct Fleet {
    counters: Vec<Arc<ThreadCounters>>,
    commands: Vec<(Sender<ToFleet>, Waker)>,
    events: Receiver<FromFleet>,
    handles: Vec<JoinHandle<()>>,
}

impl Fleet {
    fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for block in &self.counters {
            counts.add(block);
        }
        counts
    }

    fn tell(&self, command: ToFleet) {
        for (tx, waker) in &self.commands {
            // A thread that is gone shows up as missing in the end.
            let _ = tx.send(command);
            let _ = waker.wake();
        }
    }
}

struct Coordinator {
    config: Arc<RunConfig>,
    origin: Instant,
    fleet: Fleet,
    phase: Phase,
    phase_started: Instant,
    epoch: u32,
    /// Per thread: when all its charge points were booted in the current epoch (µs).
    all_booted: Vec<Option<u64>>,
    time_to_all_booted: Option<f64>,
    storm_started_us: u64,
    storm_recovery: Option<f64>,
    storm_dropped: u64,
    failures: Vec<String>,
    /// A ramp or storm ended with charge points not booted (already in `failures`).
    boot_failed: bool,
    window: Histogram<u64>,
    series: Vec<SeriesPoint>,
    /// Round trips since the last gateway sample, the samples, and when the last one was
    /// taken with the counts and the gateway's CPU seconds then.
    sample_window: Histogram<u64>,
    samples: Vec<ServerSample>,
    last_server_sample: Option<(Instant, Counts, Option<f64>)>,
    last_sample: (Instant, Counts),
    server_warned: bool,
    before: Marks,
    ramp_end: Option<Marks>,
    storm_end: Option<Marks>,
    steady_start: Option<(Instant, Counts)>,
    steady_end: Option<(Instant, Counts, Marks)>,
    rss_all_booted: Option<u64>,
}

/// Runs the whole load test: the caller checked the open-files limit.
pub fn run(config: RunConfig) -> Result<Report, RunError> {
    let config = Arc::new(config);
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let server = match config.server_pid {
        Some(pid) => Some(process::sample(pid).map_err(|source| RunError::Server { pid, source })?),
        None => None,
    };
    let before = Marks {
        server,
        bench: process::sample_self().ok(),
    };
    let origin = Instant::now();
    let fleet = spawn_fleet(&config, origin)?;
    let threads = fleet.counters.len();
    let mut coordinator = Coordinator {
        config: Arc::clone(&config),
        origin,
        last_sample: (origin, Counts::default()),
        fleet,
        phase: Phase::Ramp,
        phase_started: origin,
        epoch: 0,
        all_booted: vec![None; threads],
        time_to_all_booted: None,
        storm_started_us: 0,
        storm_recovery: None,
        storm_dropped: 0,
        failures: Vec::new(),
        boot_failed: false,
        window: stats::histogram(),
        series: Vec::new(),
        sample_window: stats::histogram(),
        samples: Vec::new(),
        last_server_sample: None,
        server_warned: false,
        before,
        ramp_end: None,
        storm_end: None,
        steady_start: None,
        steady_end: None,
        rss_all_booted: None,
    };
    coordinator.drive();
    let latencies = coordinator.stop();
    Ok(coordinator.report(started_unix_s, &latencies))
}

fn spawn_fleet(config: &Arc<RunConfig>, origin: Instant) -> Result<Fleet, RunError> {
    let (events_tx, events) = mpsc::channel();
    let mut fleet = Fleet {
        counters: Vec::new(),
        commands: Vec::new(),
        events,
        handles: Vec::new(),
    };
    for thread in 0..config.threads {
        let poll = Poll::new().map_err(RunError::Spawn)?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(RunError::Spawn)?;
        let (tx, commands) = mpsc::channel();
        let counters = Arc::new(ThreadCounters::default());
        let parts = FleetParts {
            thread,
            poll,
            config: Arc::clone(config),
            counters: Arc::clone(&counters),
            events: events_tx.clone(),
            commands,
            origin,
        };
        let handle = std::thread::Builder::new()
            .name(format!("fleet-{thread}"))
            .spawn(move || FleetLoop::new(parts).run());
        match handle {
            Ok(handle) => fleet.handles.push(handle),
            Err(e) => {
                fleet.tell(ToFleet::Stop);
                return Err(RunError::Spawn(e));
            }
        }
        fleet.counters.push(counters);
        fleet.commands.push((tx, waker));
    }
    Ok(fleet)
}

impl Coordinator {
    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.origin).as_micros()).unwrap_or(u64::MAX)
    }

    fn marks(&mut self) -> Marks {
        let server = match self.config.server_pid {
            Some(pid) => match process::sample(pid) {
                Ok(sample) => Some(sample),
                Err(e) => {
                    if !self.server_warned {
                        warn!("--server-pid {pid}: {e}");
                        self.server_warned = true;
                    }
                    None
                }
            },
            None => None,
        };
        Marks {
            server,
            bench: process::sample_self().ok(),
        }
    }

    /// The phase deadline: when the current phase ends whatever happens.
    fn phase_deadline(&self) -> Instant {
        match self.phase {
            Phase::Ramp | Phase::Storm => self.phase_started + self.config.ramp_timeout,
            Phase::Steady => self.phase_started + self.config.duration,
            Phase::Done => self.phase_started,
        }
    }

    fn drive(&mut self) {
        self.sample(self.origin);
        let hard_stop = self.origin + self.config.timeout;
        let mut next_tick = self.origin + TICK;
        while self.phase != Phase::Done {
            let wake = next_tick.min(self.phase_deadline()).min(hard_stop);
            let wait = wake.saturating_duration_since(Instant::now());
            match self.fleet.events.recv_timeout(wait) {
                Ok(FromFleet::AllBooted {
                    thread,
                    epoch,
                    at_us,
                }) if epoch == self.epoch => {
                    if let Some(slot) = self.all_booted.get_mut(usize::from(thread)) {
                        slot.get_or_insert(at_us);
                    }
                    self.on_thread_booted();
                }
                Ok(FromFleet::AllBooted { .. }) => {}
                Ok(FromFleet::Window { round_trip }) => {
                    let _ = self.window.add(&*round_trip);
                    let _ = self.sample_window.add(&*round_trip);
                }
                Ok(FromFleet::Finished(result)) => {
                    self.failures
                        .push(format!("fleet thread {} ended early", result.thread));
                    self.finish();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.failures.push("every fleet thread is gone".into());
                    self.finish();
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                self.sample(now);
                next_tick += TICK;
                if next_tick <= now {
                    next_tick = now + TICK;
                }
            }
            if self.phase == Phase::Done {
                break;
            }
            if now >= hard_stop {
                self.failures.push(format!(
                    "global timeout ({:?}) reached in phase {}",
                    self.config.timeout,
                    self.phase.name()
                ));
                self.finish();
            } else if now >= self.phase_deadline() {
                match self.phase {
                    Phase::Ramp | Phase::Storm => {
                        let booted = self.fleet.counts().booted;
                        let what = if self.phase == Phase::Ramp {
                            "booted"
                        } else {
                            "booted again after the storm"
                        };
                        self.failures.push(format!(
                            "only {booted} of {} {what} within --ramp-timeout {:?}",
                            self.config.connections, self.config.ramp_timeout
                        ));
                        self.boot_failed = true;
                        self.finish();
                    }
                    Phase::Steady => self.finish(),
                    Phase::Done => {}
                }
            }
        }
    }

    fn on_thread_booted(&mut self) {
        if self.all_booted.iter().any(Option::is_none) {
            return;
        }
        let last = self.all_booted.iter().flatten().copied().max().unwrap_or(0);
        match self.phase {
            Phase::Ramp => {
                self.time_to_all_booted = Some(last as f64 / 1e6);
                self.ramp_end = Some(self.marks());
                self.rss_all_booted = self.ramp_end.and_then(|m| m.server).map(|s| s.rss_bytes);
                if self.config.scenario == Scenario::Storm {
                    self.begin_storm();
                } else {
                    self.begin_steady();
                }
            }
            Phase::Storm => {
                self.storm_recovery = Some(last.saturating_sub(self.storm_started_us) as f64 / 1e6);
                self.storm_end = Some(self.marks());
                self.begin_steady();
            }
            Phase::Steady | Phase::Done => {}
        }
    }

    fn begin_storm(&mut self) {
        self.sample(Instant::now());
        self.storm_dropped = self.fleet.counts().open;
        self.epoch += 1;
        self.all_booted.iter_mut().for_each(|t| *t = None);
        let now = Instant::now();
        self.storm_started_us = self.micros(now);
        self.phase = Phase::Storm;
        self.phase_started = now;
        self.fleet.tell(ToFleet::Storm);
    }

    fn begin_steady(&mut self) {
        self.sample(Instant::now());
        self.fleet.tell(ToFleet::Measure);
        let now = Instant::now();
        self.steady_start = Some((now, self.fleet.counts()));
        self.phase = Phase::Steady;
        self.phase_started = now;
    }

    /// Ends the run: the figures of the end of the measured phase are taken before anything
    /// is closed.
    fn finish(&mut self) {
        if self.phase == Phase::Done {
            return;
        }
        let counts = self.fleet.counts();
        let marks = self.marks();
        let now = Instant::now();
        self.sample_server(now, counts);
        self.steady_end = Some((now, counts, marks));
        self.phase = Phase::Done;
    }

    /// Stops the threads and collects their latencies (waiting at most [`STOP_GRACE`]).
    fn stop(&mut self) -> Latencies {
        self.fleet.tell(ToFleet::Stop);
        let mut latencies = Latencies::new();
        let mut finished = 0;
        let deadline = Instant::now() + STOP_GRACE;
        while finished < self.fleet.handles.len() {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.fleet.events.recv_timeout(wait) {
                Ok(FromFleet::Finished(result)) => {
                    let ThreadResult { latencies: l, .. } = *result;
                    latencies.merge(&l);
                    finished += 1;
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        if finished == self.fleet.handles.len() {
            for handle in self.fleet.handles.drain(..) {
                if handle.join().is_err() {
                    self.failures.push("a fleet thread panicked".into());
                }
            }
        } else {
            self.failures.push(format!(
                "{} fleet thread(s) did not stop within {STOP_GRACE:?}",
                self.fleet.handles.len() - finished
            ));
        }
        latencies
    }

    fn sample(&mut self, now: Instant) {
        let counts = self.fleet.counts();
        let (last_at, last) = self.last_sample;
        let dt = now.duration_since(last_at).as_secs_f64().max(1e-3);
        let round_trips = (counts.round_trips() - last.round_trips()) as f64 / dt;
        let messages = (counts.messages_in + counts.messages_out
            - last.messages_in
            - last.messages_out) as f64
            / dt;
        let p99 = if self.window.is_empty() {
            0
        } else {
            self.window.value_at_quantile(0.99)
        };
        self.window.reset();
        let marks = self.marks();
        let t_s = now.duration_since(self.origin).as_secs_f64();
        let point = SeriesPoint {
            t_s: (t_s * 1000.0).round() / 1000.0,
            phase: self.phase.name().into(),
            open: counts.open,
            booted: counts.booted,
            inflight: counts.inflight,
            round_trips_per_s: round_trips.round(),
            messages_per_s: messages.round(),
            round_trip_p99_us: p99,
            errors: counts.errors_total(),
            server_rss_bytes: marks.server.map(|s| s.rss_bytes),
            server_cpu_s: marks.server.map(|s| s.cpu_seconds),
            bench_rss_bytes: marks.bench.map(|s| s.rss_bytes),
            bench_cpu_s: marks.bench.map(|s| s.cpu_seconds),
        };
        if !self.config.quiet {
            eprintln!(
                "[{:>5.0}s] {:<6} open {}/{}  booted {}  connecting {} | {:.0} rt/s  {:.0} msg/s  \
                 p99 {:.2} ms | errors {}",
                t_s,
                point.phase,
                point.open,
                self.config.connections,
                point.booted,
                point.inflight,
                point.round_trips_per_s,
                point.messages_per_s,
                p99 as f64 / 1000.0,
                point.errors
            );
        }
        self.series.push(point);
        self.last_sample = (now, counts);
        let due = self
            .last_server_sample
            .is_none_or(|(at, ..)| now.duration_since(at) >= self.config.sample_every);
        if due {
            self.sample_server(now, counts);
        }
    }

    /// One [`ServerSample`] of the gateway (with `--server-pid`).
    fn sample_server(&mut self, now: Instant, counts: Counts) {
        let Some(pid) = self.config.server_pid else {
            return;
        };
        let (proc, open_files, threads) = sampler::proc_figures(pid);
        let cpu = proc.map(|p| p.cpu_seconds);
        let (round_trips, cpu_cores) = match self.last_server_sample {
            Some((at, last, last_cpu)) => (
                counts.round_trips() - last.round_trips(),
                cpu.zip(last_cpu)
                    .map(|(c, l)| (c - l) / now.duration_since(at).as_secs_f64().max(1e-3)),
            ),
            None => (0, None),
        };
        let health = self.config.admin.and_then(|admin| {
            sampler::fetch_health(admin)
                .inspect_err(|e| warn!("--admin {admin}: /health: {e}"))
                .ok()
        });
        let p99 = if self.sample_window.is_empty() {
            0
        } else {
            self.sample_window.value_at_quantile(0.99)
        };
        self.sample_window.reset();
        let t_s = now.duration_since(self.origin).as_secs_f64();
        self.samples.push(ServerSample {
            t_s: (t_s * 1000.0).round() / 1000.0,
            phase: self.phase.name().into(),
            open: counts.open,
            booted: counts.booted,
            rss_bytes: proc.map(|p| p.rss_bytes),
            cpu_cores: cpu_cores.map(|c| (c * 1000.0).round() / 1000.0),
            open_files,
            threads,
            round_trips,
            round_trip_p99_us: p99,
            errors: counts.errors_total(),
            health,
        });
        self.last_server_sample = Some((now, counts, cpu));
    }

    fn report(&mut self, started_unix_s: u64, latencies: &Latencies) -> Report {
        let config = Arc::clone(&self.config);
        let (end_at, end, end_marks) = self
            .steady_end
            .unwrap_or_else(|| (Instant::now(), self.fleet.counts(), Marks::default()));
        let total = self.fleet.counts(); // after stop: every counter final
        let n = u64::from(config.connections);
        self.check_counts(&end, &total, n);

        let (steady_s, steady_counts) = match self.steady_start {
            Some((at, counts)) => (end_at.duration_since(at).as_secs_f64(), Some(counts)),
            None => (0.0, None),
        };
        let steady_round_trips = steady_counts.map_or(0, |s| end.round_trips() - s.round_trips());
        let steady_messages = steady_counts.map_or(0, |s| {
            end.messages_in + end.messages_out - s.messages_in - s.messages_out
        });
        let per_s = |v: u64| {
            if steady_s > 0.0 {
                v as f64 / steady_s
            } else {
                0.0
            }
        };
        let server = self.server_figures(&end, &end_marks, (steady_s, steady_round_trips));
        let bench = self.bench_figures(&end, &end_marks, steady_s);

        let by_kind = ErrorKind::ALL
            .into_iter()
            .map(|k| (k.name().to_owned(), total.errors[k as usize]))
            .collect();
        let drift = self.checked_drift();
        let time_to_all_booted = self.time_to_all_booted;
        Report {
            tool: "ocpp-bench".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_unix_s,
            config: config_echo(&config),
            outcome: Outcome {
                passed: self.failures.is_empty(),
                failures: self.failures.clone(),
            },
            connect: ConnectFigures {
                target: config.connections,
                open_at_end: end.open,
                booted_at_end: end.booted,
                time_to_all_booted_s: time_to_all_booted,
                connect_boot_rate_per_s: time_to_all_booted
                    .filter(|t| *t > 0.0)
                    .map(|t| (n as f64 / t).round()),
                connect_attempts: total.connect_attempts,
                reconnect_attempts: total.connect_attempts.saturating_sub(n),
                handshakes: total.handshakes,
                boots: total.boots,
                reboots: total.reboots,
                resumes: total.resumes,
                resumes_refused: total.resumes_refused,
            },
            latency_us: LatencyFigures {
                connect: Summary::of(&latencies.connect),
                handshake: Summary::of(&latencies.handshake),
                handshake_boot: Summary::of(&latencies.boot),
                round_trip: Summary::of(&latencies.round_trip),
                stop_transaction: Summary::of(&latencies.stop_transaction),
                start_transaction: Summary::of(&latencies.start_transaction),
            },
            throughput: Throughput {
                measured_s: (steady_s * 1000.0).round() / 1000.0,
                round_trips: steady_round_trips,
                round_trips_per_s: per_s(steady_round_trips).round(),
                messages_per_s: per_s(steady_messages).round(),
                calls_sent: total.calls_sent,
                messages_in: total.messages_in,
                messages_out: total.messages_out,
                central_system_calls_answered: total.calls_answered,
                pings_received: total.pings,
            },
            errors: ErrorFigures {
                total: total.errors_total(),
                mismatches: total.errors_where(ErrorKind::is_mismatch),
                by_kind,
            },
            storm: (config.scenario == Scenario::Storm).then_some(StormFigures {
                dropped: self.storm_dropped,
                time_to_all_booted_s: self.storm_recovery,
            }),
            server,
            bench,
            series: std::mem::take(&mut self.series),
            drift,
            samples: std::mem::take(&mut self.samples),
        }
    }

    /// Fails the run when not everyone was booted at the end (unless booting already failed
    /// it) or when an error that fails runs happened.
    fn check_counts(&mut self, end: &Counts, total: &Counts, n: u64) {
        if end.booted < n && !self.boot_failed {
            self.failures.push(format!(
                "{} of {n} charge points were booted at the end",
                end.booted
            ));
        }
        for kind in ErrorKind::ALL.into_iter().filter(|k| k.fails_run()) {
            let count = total.errors[kind as usize];
            if count > 0 {
                self.failures.push(format!("{count} {}", kind.name()));
            }
        }
    }

    /// CPU seconds of one process (`pick`) per phase, from the marks taken between phases.
    fn phase_cpu(&self, pick: fn(&Marks) -> Option<Sample>, end_marks: &Marks) -> PhaseCpu {
        let before = pick(&self.before).map(|s| s.cpu_seconds);
        let ramp = self.ramp_end.as_ref().and_then(pick).map(|s| s.cpu_seconds);
        let storm = self
            .storm_end
            .as_ref()
            .and_then(pick)
            .map(|s| s.cpu_seconds);
        let end = pick(end_marks).map(|s| s.cpu_seconds);
        let diff = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(((b - a) * 1000.0).round() / 1000.0),
            _ => None,
        };
        let steady_from = storm.or(ramp);
        PhaseCpu {
            ramp: diff(before, ramp),
            storm: diff(ramp, storm),
            steady: if self.steady_start.is_some() {
                diff(steady_from, end)
            } else {
                None
            },
            total: diff(before, end),
        }
    }

    /// The gateway's memory, CPU and context switches (with `--server-pid` only), per
    /// connection and per round trip of the measured phase (`steady`: its seconds and round
    /// trips).
    fn server_figures(
        &self,
        end: &Counts,
        end_marks: &Marks,
        (steady_s, steady_round_trips): (f64, u64),
    ) -> Option<ServerFigures> {
        let config = &self.config;
        let server_cpu = self.phase_cpu(|m| m.server, end_marks);
        // Context switches of the gateway during the measured phase (its threads' sum).
        let switches_steady = self.steady_start.and(
            match (
                self.storm_end.or(self.ramp_end).and_then(|m| m.server),
                end_marks.server,
            ) {
                (Some(from), Some(to)) => {
                    Some(to.context_switches.saturating_sub(from.context_switches))
                }
                _ => None,
            },
        );
        let per_round_trip = |v: f64| {
            (steady_round_trips > 0)
                .then(|| ((v / steady_round_trips as f64) * 1000.0).round() / 1000.0)
        };
        match (config.server_pid, self.before.server) {
            (Some(pid), Some(before)) => {
                let end_rss = end_marks.server.map_or(0, |s| s.rss_bytes);
                // Memory per connection is read when all are booted, before the measured phase
                // grows buffers, and divided by the connections open then (the target).
                let booted_rss = self.rss_all_booted;
                Some(ServerFigures {
                    pid,
                    rss_before_bytes: before.rss_bytes,
                    rss_all_booted_bytes: self.rss_all_booted,
                    rss_end_bytes: end_rss,
                    bytes_per_connection: booted_rss.and_then(|rss| {
                        per_connection(before.rss_bytes, rss, config.connections as u64)
                    }),
                    bytes_per_connection_end: per_connection(before.rss_bytes, end_rss, end.booted),
                    cores_steady: cores_steady(&server_cpu, steady_s),
                    cpu_us_per_round_trip: server_cpu.steady.and_then(|c| per_round_trip(c * 1e6)),
                    context_switches_steady: switches_steady,
                    context_switches_per_round_trip: switches_steady
                        .and_then(|n| per_round_trip(n as f64)),
                    cpu_s: server_cpu,
                })
            }
            _ => None,
        }
    }

    /// This process's threads, CPU and memory.
    fn bench_figures(&self, end: &Counts, end_marks: &Marks, steady_s: f64) -> BenchFigures {
        let bench_cpu = self.phase_cpu(|m| m.bench, end_marks);
        let bench_before = self.before.bench.map_or(0, |s| s.rss_bytes);
        let bench_end = end_marks.bench.map_or(0, |s| s.rss_bytes);
        BenchFigures {
            threads: self.config.threads,
            cores_steady: cores_steady(&bench_cpu, steady_s),
            cpu_s: bench_cpu,
            rss_before_bytes: bench_before,
            rss_end_bytes: bench_end,
            peak_rss_bytes: process::peak_rss_self().unwrap_or(0),
            bytes_per_connection: per_connection(bench_before, bench_end, end.open),
        }
    }

    /// The gateway's RSS drift after the warm-up; fails the run past `--max-rss-spread`.
    fn checked_drift(&mut self) -> Option<Drift> {
        let config = &self.config;
        let drift = self.steady_start.and_then(|(at, _)| {
            let from = at.duration_since(self.origin) + config.warmup;
            sampler::drift(&self.samples, from.as_secs_f64())
        });
        if let Some(limit) = config.max_rss_spread {
            match &drift {
                Some(d) if d.rss_spread_percent > limit => self.failures.push(format!(
                    "gateway RSS moved {:.1}% after the warm-up (--max-rss-spread {limit})",
                    d.rss_spread_percent
                )),
                Some(_) => {}
                None => self.failures.push(
                    "no gateway sample after the warm-up to check --max-rss-spread against".into(),
                ),
            }
        }
        drift
    }
}

/// The flags that shaped the run, as the report echoes them.
fn config_echo(config: &RunConfig) -> ConfigEcho {
    ConfigEcho {
        url: config.target.url_prefix.clone(),
        connections: config.connections,
        threads: config.threads,
        scenario: config.scenario.name().into(),
        interval_s: match &config.scenario {
            Scenario::Heartbeat { interval } => Some(interval.as_secs_f64()),
            Scenario::Realistic(p) => Some(p.heartbeat.as_secs_f64()),
            _ => None,
        },
        rate: config.rate,
        connect_rate: config.connect_rate,
        max_inflight_handshakes: config.max_inflight_handshakes,
        source_ips: config.source_ips.len(),
        duration_s: config.duration.as_secs_f64(),
        ramp_timeout_s: config.ramp_timeout.as_secs_f64(),
        timeout_s: config.timeout.as_secs_f64(),
        read_buffer: crate::fleet::READ_BUFFER,
    }
}

/// Cores used on average in the measured phase (`steady_s` seconds).
fn cores_steady(cpu: &PhaseCpu, steady_s: f64) -> Option<f64> {
    cpu.steady
        .filter(|_| steady_s > 0.0)
        .map(|c| (c / steady_s * 1000.0).round() / 1000.0)
}

/// Bytes a process grew from `before` to `after`, per connection (None without connections).
fn per_connection(before: u64, after: u64, count: u64) -> Option<f64> {
    (count > 0).then(|| ((after as f64 - before as f64) / count as f64).round())
}
