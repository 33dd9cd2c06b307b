//! The coordinator: starts the fleet threads, moves the run through its phases, samples once a
//! second (progress line, time series, the gateway's and our own RSS and CPU), and assembles the
//! [`Report`].
//!
//! Phases: **ramp** (everyone connects and boots) -> for `storm`, **storm** (everyone dropped at
//! once, until everyone is booted again) -> **steady** (the measured phase, `--duration`) ->
//! stop. Threads say when all their charge points are booted (tagged with the storm epoch, so a
//! late message cannot end the wrong phase); the coordinator only ever waits on their channel,
//! with a timeout at the next second, phase deadline or global timeout, so the run always ends.
//!
//! Files: here the phases; `sampling` (once a second), `assembly` (the report at the end).

mod assembly;
mod sampling;

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
}
