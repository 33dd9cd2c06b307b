//! A fleet of charge points driven through the gateway's own code in one process, without
//! sockets: the `million_sessions` benchmark prints its figures, `tests/million_sessions_smoke.rs`
//! checks its counts at 1,000 sessions.
//!
//! Real: each charge point is a [`Connection`] in a slab, moved only through the methods the
//! event loop calls (`on_readable`, `deliver`, `on_timer`) with one [`LoopContext`] for all of
//! them (its batches to the processors, its reply handling, its timing wheel); the processors
//! are the real pool threads (`processor::pool::spawn`) with their shards; the state file is
//! the real state thread and redb file (`state::open`), on while the fleet runs and wired as
//! the server wires it with `ocpp.state_file` set (its commits run beside the phases: their
//! CPU is shown apart).
//!
//! Stand-ins: an in-memory stream per connection instead of a TCP socket (its bytes are put in
//! before a phase is timed and read after it); this thread plays the event loop's part without
//! `mio` (no readiness events: it serves every connection once per phase, hands the batches
//! over every [`TURN`] connections and delivers the answers as the loop does); the loop's clock
//! is virtual (frozen while messages flow, so every ping timer fires exactly once, then moved
//! tick by tick through the ping cycle); no journal (`events.sink = "none"`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};
use mio::{Poll, Token, Waker};
use serde_json::Value;
use slab::Slab;

use ocpp::v16::ChargePointStatus;
use ocpp_gateway::batch::Pool;
use ocpp_gateway::call::CallOutcome;
use ocpp_gateway::config::{self, Config};
use ocpp_gateway::events::{Events, HeldAnswers, ReplyRoute};
use ocpp_gateway::mailbox::{
    LoopHandle, LoopShared, Loops, Processors, ToLoop, ToProcessor, processor_channel,
};
use ocpp_gateway::net::context::{LoopContext, TimerEvent};
use ocpp_gateway::net::event_loop::{TIMER_SLOTS, TIMER_TICK};
use ocpp_gateway::net::session::{Connection, Transition};
use ocpp_gateway::net::timer::TimerWheel;
use ocpp_gateway::policy::TransactionIds;
use ocpp_gateway::processor::handlers::Policy;
use ocpp_gateway::processor::journal_budget::BudgetRule;
use ocpp_gateway::processor::pool::{self, PoolParts};
use ocpp_gateway::query::{Answer, Query};
use ocpp_gateway::security::{Profile, Security};
use ocpp_gateway::state::{self, StateBatch, StateSender};
use ocpp_gateway::stats::Stats;
use ocpp_gateway::trace::TraceList;
use ocpp_gateway::types::Protocols;
use ocpp_gateway::types::{CloseCause, ConnId};
use transport::Transport;
use transport::memory::MemoryStream;
use wire::websocket::{self, OpCode, Role};

/// The loop's inbox, sized as the server sizes it.
const LOOP_INBOX: usize = 1024;
/// Connections served before the turn's batches go to the processors and their answers are
/// taken: about what a loop reads in one turn of a connect storm.
const TURN: usize = 1024;
/// Messages handed over and not answered yet past which the next turn waits for answers (the
/// processors' queues hold 65,536 each by default: a connection never has to pause; pauses
/// are counted all the same).
const MAX_PENDING: u64 = 16 * 1024;
/// The longest any wait for a processor or the state thread may take before the run fails
/// (a watchdog instead of a hang).
const WATCHDOG: Duration = Duration::from_secs(120);
/// The connection an answer held by the state thread is addressed to when it is the fleet's
/// own marker: it comes back once everything the state thread had before it is committed.
const STATE_MARKER: ConnId = ConnId {
    loop_index: 0,
    key: u32::MAX,
    generation: u32::MAX,
};
/// The mask of every client frame (a real charge point picks one per frame; the cost is the
/// same).
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const BOOT_ID: &str = "0b7d3e9a-6c1f-4e28-a5d4-91f2c3b8e706";
const HEARTBEAT_ID: &str = "5f1c9a62-3d4e-4b7a-9c21-8e0f6d5b4a31";
const STATUS_ID: &str = "c3a1f0e2-7b6d-4c5a-8e9f-0a1b2c3d4e5f";

/// How to run the fleet.
pub struct Options {
    pub sessions: usize,
    pub processors: usize,
    /// Where the state files go (created, and removed at the end).
    pub dir: PathBuf,
    /// Bytes the allocator has handed out and not taken back (None: not measured).
    pub allocated: fn() -> Option<u64>,
}

/// What one phase cost: `messages` through the gateway in `wall` time, and the CPU time of
/// the process's threads by role.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    pub messages: u64,
    pub wall: Duration,
    pub cpu: Option<Cpu>,
}

/// CPU time by thread: the loop's (this thread), the processors', the state thread's (its
/// commits of the phase's changes, and of earlier ones still going), any other.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub event_loop: Duration,
    pub processors: Duration,
    pub state: Duration,
    pub other: Duration,
}

impl Cpu {
    /// Read from the scheduler's per-thread account (Linux); None where it cannot be.
    fn now() -> Option<Cpu> {
        let main = std::process::id().to_string();
        let mut cpu = Cpu::default();
        for task in std::fs::read_dir("/proc/self/task").ok()? {
            let dir = task.ok()?.path();
            // A thread that ended meanwhile is left out.
            let Ok(schedstat) = std::fs::read_to_string(dir.join("schedstat")) else {
                continue;
            };
            let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            let ns = schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
            let slot = if dir.file_name().is_some_and(|f| f == main.as_str()) {
                &mut cpu.event_loop
            } else if name.starts_with("processor-") {
                &mut cpu.processors
            } else if name.trim_end() == "state" {
                &mut cpu.state
            } else {
                &mut cpu.other
            };
            *slot += Duration::from_nanos(ns);
        }
        Some(cpu)
    }

    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            event_loop: self.event_loop.saturating_sub(before.event_loop),
            processors: self.processors.saturating_sub(before.processors),
            state: self.state.saturating_sub(before.state),
            other: self.other.saturating_sub(before.other),
        }
    }
}

impl Cost {
    pub fn wall_ns_per_message(&self) -> f64 {
        per(self.wall, self.messages)
    }

    /// Nanoseconds per message of (loop, processors, state thread).
    pub fn cpu_ns_per_message(&self) -> Option<(f64, f64, f64)> {
        self.cpu.map(|cpu| {
            (
                per(cpu.event_loop, self.messages),
                per(cpu.processors, self.messages),
                per(cpu.state, self.messages),
            )
        })
    }
}

fn per(time: Duration, count: u64) -> f64 {
    time.as_nanos() as f64 / count.max(1) as f64
}

/// The ping cycle: the loop's clock moved one wheel tick at a time until every session's ping
/// timer fired.
#[derive(Debug, Clone, Copy, Default)]
pub struct WheelCost {
    pub ticks: u64,
    pub fired: u64,
    /// The whole cycle: the wheel's walk plus each fired connection writing its ping and
    /// arming its pong deadline.
    pub wall: Duration,
    /// Ticks at which nothing fired (their slot held only later revolutions, or nothing).
    pub empty_ticks: u64,
    pub empty_wall: Duration,
    /// Timers pending when the cycle started.
    pub pending: usize,
}

/// Memory after each phase: allocator bytes and resident set size.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub allocated: Option<u64>,
    pub rss: Option<u64>,
}

/// The state file's figures.
#[derive(Debug, Clone, Default)]
pub struct StateCost {
    /// Written by the running gateway (its state thread, in the background).
    pub live_commits: u64,
    pub live_records: u64,
    /// Offers a processor made when the state thread's channel was full (offered again later).
    pub live_deferred: u64,
    /// From the processors' stop to the state thread's last commit.
    pub stop: Duration,
    pub live_bytes: u64,
    /// Opening the live file and reading every record (what a restart does).
    pub load: Duration,
    /// Every loaded record written again into a new file in one batch through the state
    /// thread (one commit, fsync'd).
    pub write: Duration,
    pub written_bytes: u64,
    /// Reading that new file back.
    pub reload: Duration,
}

/// What the fleet did (counts) and what it cost (figures).
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub sessions: usize,
    pub processors: usize,
    /// Connections open after the upgrade, with a 101 written.
    pub upgraded: usize,
    /// BootNotifications answered CALLRESULT Accepted.
    pub boots_accepted: usize,
    /// Heartbeats answered CALLRESULT with a currentTime ...
    pub heartbeats_answered: usize,
    /// ... of which the loop answered (accepted, nothing in flight).
    pub heartbeats_by_loop: u64,
    /// Sessions whose ping timer fired exactly once and wrote one ping.
    pub pinged_once: usize,
    pub timers_fired: u64,
    /// StatusNotifications answered with an empty CALLRESULT.
    pub statuses_answered: usize,
    /// Records read back from the live state file, and of those, the ones with the boot
    /// payload and connector 1 Available.
    pub registrations_loaded: usize,
    pub registrations_complete: usize,
    /// Records read back from the rewritten file.
    pub registrations_reloaded: usize,
    /// Connections that paused, were removed, answers for no connection, other messages.
    pub pauses: u64,
    pub removed: u64,
    pub stale_replies: u64,
    pub unexpected: u64,
    /// Turns whose batch did not fit a processor's channel at once.
    pub held_turns: u64,
    pub upgrade: Option<Cost>,
    pub boot: Option<Cost>,
    pub heartbeat: Option<Cost>,
    pub status: Option<Cost>,
    pub wheel: WheelCost,
    /// Before any connection existed, then after each phase.
    pub memory: Vec<(&'static str, Memory)>,
    pub peak_rss: Option<u64>,
    pub state: StateCost,
    /// Bytes of a `Connection` (its slab entry) and of the in-memory stream standing in for
    /// the socket.
    pub connection_bytes: usize,
    pub stream_bytes: usize,
}

impl Report {
    /// Allocator bytes per session from before the first connection to after `phase`.
    pub fn allocated_per_session(&self, phase: &str) -> Option<f64> {
        let base = self.memory.first()?.1.allocated?;
        let at = self.memory.iter().find(|(p, _)| *p == phase)?.1.allocated?;
        Some(at.saturating_sub(base) as f64 / self.sessions.max(1) as f64)
    }

    /// Resident-set growth per session, likewise.
    pub fn rss_per_session(&self, phase: &str) -> Option<f64> {
        let base = self.memory.first()?.1.rss?;
        let at = self.memory.iter().find(|(p, _)| *p == phase)?.1.rss?;
        Some(at.saturating_sub(base) as f64 / self.sessions.max(1) as f64)
    }
}

/// Runs the whole fleet: upgrade, boot, heartbeat, ping cycle, status, state file.
pub fn run(options: &Options) -> Result<Report, String> {
    let _dir = Scratch::create(&options.dir)?;
    let live_path = options.dir.join("live.state");
    let mut report = Report {
        sessions: options.sessions,
        processors: options.processors,
        connection_bytes: std::mem::size_of::<Connection>(),
        stream_bytes: std::mem::size_of::<MemoryStream>(),
        ..Report::default()
    };
    let mut fleet = Fleet::start(options, &live_path)?;
    let measure = || Memory {
        allocated: (options.allocated)(),
        rss: proc_status_kib("VmRSS:").map(|kib| kib * 1024),
    };
    fleet.barrier()?;
    report.memory.push(("start", measure()));
    fleet.conns.reserve_exact(options.sessions);

    let mut upgrade = fleet.phase(|key, stream| {
        let request = format!(
            "GET /ocpp/{} HTTP/1.1\r\nHost: gateway\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n",
            identity(key, options.sessions)
        );
        stream.input.extend(request.as_bytes());
    })?;
    upgrade.messages = options.sessions as u64; // no OCPP message: each request counts once
    report.upgrade = Some(upgrade);
    report.upgraded =
        fleet.check(|_, conn, output| conn.is_open() && output.starts_with(b"HTTP/1.1 101 "));
    report.memory.push(("upgrade", measure()));

    let boot = client_text(&format!(
        concat!(
            r#"[2,"{}","BootNotification",{{"chargePointVendor":"VendorX","#,
            r#""chargePointModel":"ModelY","chargePointSerialNumber":"SN-0001","#,
            r#""firmwareVersion":"1.2.3","meterType":"DZG DVH4013"}}]"#
        ),
        BOOT_ID
    ));
    report.boot = Some(fleet.phase(|_, stream| stream.input.extend(&boot))?);
    report.boots_accepted = fleet.check(|_, _, output| {
        answer(output, BOOT_ID).is_some_and(|payload| payload["status"] == "Accepted")
    });
    report.memory.push(("boot", measure()));

    let heartbeat = client_text(&format!(r#"[2,"{HEARTBEAT_ID}","Heartbeat",{{}}]"#));
    let by_loop = fleet.cx.stats().heartbeats_answered.get();
    report.heartbeat = Some(fleet.phase(|_, stream| stream.input.extend(&heartbeat))?);
    report.heartbeats_by_loop = fleet.cx.stats().heartbeats_answered.get() - by_loop;
    report.heartbeats_answered = fleet.check(|_, _, output| {
        answer(output, HEARTBEAT_ID).is_some_and(|payload| payload["currentTime"].is_string())
    });
    report.memory.push(("heartbeat", measure()));

    let (wheel, fired) = fleet.ping_cycle()?;
    report.wheel = wheel;
    report.timers_fired = wheel.fired;
    report.pinged_once = fleet.check(|key, conn, output| {
        fired.get(key) == Some(&1)
            && conn.is_open()
            && frames(output).is_some_and(|f| f == [(OpCode::Ping, &[][..])])
    });
    drop(fired);
    report.memory.push(("ping", measure()));

    let status = client_text(&format!(
        r#"[2,"{STATUS_ID}","StatusNotification",{{"connectorId":1,"errorCode":"NoError","status":"Available"}}]"#
    ));
    report.status = Some(fleet.phase(|_, stream| stream.input.extend(&status))?);
    report.statuses_answered = fleet.check(|_, _, output| {
        answer(output, STATUS_ID)
            .is_some_and(|payload| payload.as_object().is_some_and(|o| o.is_empty()))
    });
    report.memory.push(("status", measure()));
    report.peak_rss = proc_status_kib("VmHWM:").map(|kib| kib * 1024);

    report.pauses = fleet.pauses;
    report.removed = fleet.removed;
    report.stale_replies = fleet.stale_replies;
    report.unexpected = fleet.unexpected;
    report.held_turns = fleet.held_turns;
    report.state.live_commits = fleet.cx.stats.state.state_commits.get();
    report.state.live_records = fleet.cx.stats.state.state_records_written.get();
    report.state.live_deferred = fleet.cx.stats.state.state_deferred.get();
    let stats = Arc::clone(&fleet.cx.stats);

    // Stop: the processors' last senders go with the loop's context; each processor offers
    // what is left to the state thread and ends, and the state thread commits it and ends.
    let Fleet {
        cx,
        conns,
        processors,
        state,
        processor_threads,
        state_thread,
        ..
    } = fleet;
    drop(state);
    drop(conns);
    // Rung after their last sender is gone, the processors see at once that their inbox
    // closed (as the server does at shutdown).
    let bells: Vec<_> = processors.handles.iter().map(|h| h.bell()).collect();
    let stopping = Instant::now();
    drop((cx, processors));
    for bell in bells {
        bell.unpark();
    }
    for thread in processor_threads {
        thread.join().map_err(|_| "a processor panicked")?;
    }
    state_thread
        .join()
        .map_err(|_| "the state thread panicked")?;
    report.state.stop = stopping.elapsed();
    report.state.live_bytes = file_len(&live_path)?;

    let started = Instant::now();
    let live = state::open(&live_path, None, Arc::clone(&stats)).map_err(|e| e.to_string())?;
    report.state.load = started.elapsed();
    let loaded = stop_store(live)?;
    report.registrations_loaded = loaded.len();
    report.registrations_complete = loaded
        .iter()
        .filter(|(_, saved)| {
            saved.boot.is_some() && saved.connectors == [(1, ChargePointStatus::Available)]
        })
        .count();

    let written_path = options.dir.join("written.state");
    let store = state::open(&written_path, None, Arc::clone(&stats)).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let changes = loaded
        .into_iter()
        .map(|(cp, saved)| (cp, Some(saved)))
        .collect();
    let batch = StateBatch {
        changes,
        held: HeldAnswers::default(),
    };
    store
        .sender
        .send(batch)
        .map_err(|_| "the state thread is gone")?;
    stop_store(store)?;
    report.state.write = started.elapsed();
    report.state.written_bytes = file_len(&written_path)?;

    let started = Instant::now();
    let written = state::open(&written_path, None, stats).map_err(|e| e.to_string())?;
    report.state.reload = started.elapsed();
    report.registrations_reloaded = stop_store(written)?.len();
    Ok(report)
}

/// The identity of the session at `key`: CP000001 onwards, as wide as the fleet needs.
pub fn identity(key: usize, sessions: usize) -> String {
    let width = sessions.to_string().len().max(6);
    format!("CP{:0width$}", key + 1)
}

/// The loop's side of the fleet: its context, its slab of connections, its inbox.
struct Fleet {
    cx: LoopContext,
    conns: Slab<Connection>,
    sessions: usize,
    inbox: Receiver<ToLoop>,
    loops: Loops,
    /// For barriers: a query to each processor, answered after everything sent before it ...
    processors: Processors,
    /// ... and an answer held by the state thread, sent on once what it had is committed.
    state: StateSender,
    processor_threads: Vec<JoinHandle<()>>,
    state_thread: JoinHandle<()>,
    barrier_waker: Arc<Waker>,
    _barrier_poll: Poll,
    _loop_poll: Poll,
    /// Messages handed to the processors and not answered yet.
    pending: u64,
    /// The state thread's marker came back.
    state_settled: bool,
    /// Connections paused until the next turn.
    paused: Vec<usize>,
    pauses: u64,
    removed: u64,
    stale_replies: u64,
    unexpected: u64,
    held_turns: u64,
}

impl Fleet {
    /// The loop's context, the processor pool and the state thread, wired as the server wires
    /// them for one loop (with `ocpp.state_file` at `live_path` and no event sink).
    fn start(options: &Options, live_path: &Path) -> Result<Fleet, String> {
        let mut config = Config::default();
        config.server.max_connections = options.sessions;
        config.processor.threads =
            std::num::NonZeroUsize::new(options.processors).ok_or("--processors must be > 0")?;
        config.events.sinks = config::Sinks::NONE;
        config.ocpp.state_file = Some(live_path.to_owned());
        let threads = options.processors;
        let stats = Arc::new(Stats::new(1, threads));

        let loop_poll = Poll::new().map_err(|e| e.to_string())?;
        let waker = Waker::new(loop_poll.registry(), Token(0)).map_err(|e| e.to_string())?;
        let (tx, inbox) = crossbeam_channel::bounded(LOOP_INBOX);
        let pooled = (2 * threads).max(8);
        let loops = Loops {
            handles: vec![LoopHandle {
                tx,
                shared: Arc::new(LoopShared::new(waker)),
            }]
            .into(),
            replies: Pool::new(pooled),
        };
        let (handles, inboxes): (Vec<_>, Vec<_>) = (0..threads)
            .map(|_| {
                processor_channel(
                    256,
                    config.processor.queue_capacity.get(),
                    config.processor.queue_bytes,
                )
            })
            .unzip();
        let processors = Processors {
            handles: handles.into(),
            batches: Pool::new(pooled),
        };
        let policy = Policy {
            heartbeat_interval_secs: config.ocpp.heartbeat_interval.as_secs(),
            boot_status: config.ocpp.boot_status,
            identities: None,
            id_tags: None,
            data_transfer_status: config.ocpp.data_transfer_status,
            transactions: Arc::new(TransactionIds::open(None).map_err(|e| e.to_string())?),
            check_serial_number: config.security.check_serial_number,
            signing: ocpp_gateway::processor::handlers::Signer::Off,
        };
        // As the server wires it with `events.ack_after_write` and no event sink: billing
        // answers wait for their commit and go straight to the loops.
        let route: Arc<dyn ReplyRoute> = Arc::new(loops.clone());
        let store =
            state::open(live_path, Some(route), Arc::clone(&stats)).map_err(|e| e.to_string())?;
        let state = store.sender.clone();
        let traces = Arc::new(TraceList::default());
        let processor_threads = pool::spawn(PoolParts {
            inboxes,
            processors: processors.clone(),
            loops: loops.clone(),
            policy: Arc::new(policy),
            remember_limit: config.server.max_connections / threads + 1024,
            stats: Arc::clone(&stats),
            events: Events::none(),
            traces: Arc::clone(&traces),
            journal_rule: BudgetRule {
                per_second: config.events.charge_point_rate,
                burst: config.events.charge_point_burst,
            },
            state: Some((store.sender, store.loaded)),
            cluster: None,
            renewal: (
                config.security.renew_before,
                config.security.renewals_per_scan,
                config.security.certificate_scan,
            ),
        })
        .map_err(|e| e.to_string())?;
        let wheel = TimerWheel::new(Instant::now(), TIMER_TICK, TIMER_SLOTS);
        let cx = LoopContext::new(
            0,
            &config,
            stats,
            processors.clone(),
            None,
            Events::none(),
            traces,
            Arc::new(Security::default()),
            wheel,
        );
        let barrier_poll = Poll::new().map_err(|e| e.to_string())?;
        let barrier_waker =
            Arc::new(Waker::new(barrier_poll.registry(), Token(0)).map_err(|e| e.to_string())?);
        Ok(Fleet {
            cx,
            conns: Slab::new(),
            sessions: options.sessions,
            inbox,
            loops,
            processors,
            state,
            processor_threads,
            state_thread: store.thread,
            barrier_waker,
            _barrier_poll: barrier_poll,
            _loop_poll: loop_poll,
            pending: 0,
            state_settled: false,
            paused: Vec::new(),
            pauses: 0,
            removed: 0,
            stale_replies: 0,
            unexpected: 0,
            held_turns: 0,
        })
    }

    /// One message (or the upgrade request) from every session: `fill` puts each session's
    /// bytes into its stream (untimed, the charge point's side), then every connection is
    /// served and every answer delivered (timed), up to a barrier behind the last of them.
    /// The first phase creates the connections.
    fn phase(&mut self, mut fill: impl FnMut(usize, &mut MemoryStream)) -> Result<Cost, String> {
        if self.conns.is_empty() {
            let peer = "192.0.2.1:40000".parse().map_err(|_| "peer address")?;
            for generation in 0..self.sessions {
                let transport = Transport::memory(MemoryStream::default());
                let conn = Connection::new(
                    generation as u32 + 1,
                    transport,
                    peer,
                    (Profile::Unsecured, Protocols::V16, false),
                    false,
                );
                let key = self.conns.insert(conn);
                let timeout = self.cx.limits.handshake_timeout;
                self.conns[key].arm(&mut self.cx, key, timeout);
            }
        }
        for key in 0..self.sessions {
            if let Some(conn) = self.conns.get_mut(key) {
                fill(key, conn.transport.memory_mut());
            }
        }
        let before = self.cx.stats().messages_in.get();
        let (wall, cpu) = (Instant::now(), Cpu::now());
        for key in 0..self.sessions {
            self.serve(key);
            if (key + 1) % TURN == 0 {
                self.turn(false)?;
                while self.pending > MAX_PENDING {
                    self.turn(true)?;
                }
            }
        }
        while self.pending > 0 || !self.paused.is_empty() {
            self.turn(self.pending > 0)?;
        }
        self.barrier()?;
        let wall = wall.elapsed();
        // The state thread's commits of the phase's changes belong to its CPU (not to its
        // time: nothing waits for them), and memory is measured with nothing left to commit.
        self.state_barrier()?;
        let cpu = Cpu::now()
            .zip(cpu)
            .map(|(after, before)| after.since(before));
        Ok(Cost {
            messages: self.cx.stats().messages_in.get() - before,
            wall,
            cpu,
        })
    }

    /// What the loop does when a connection is readable, and with its transition.
    fn serve(&mut self, key: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let before = in_flight(conn);
            let transition = conn.on_readable(&mut self.cx, key);
            self.pending += u64::from(in_flight(conn).saturating_sub(before));
            if transition != Transition::Again {
                return self.act(key, transition);
            }
        }
    }

    fn act(&mut self, key: usize, transition: Transition) {
        match transition {
            Transition::Continue => {}
            Transition::Again => self.serve(key),
            Transition::Pause(pause) => {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.paused = Some(pause);
                    self.paused.push(key);
                    self.pauses += 1;
                }
            }
            Transition::Remove(cause) => self.remove(key, cause),
            // The fleet's sessions hold nothing before their upgrade between reads: a session
            // asking for room is one this driver does not expect; it goes, as an error.
            Transition::MakeRoom { .. } => self.remove(key, CloseCause::ConnectionLost),
        }
    }

    fn remove(&mut self, key: usize, cause: CloseCause) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            conn.finish(&mut self.cx, key, cause);
            self.removed += 1;
        }
    }

    /// The end of a loop turn: the batches go to the processors, the answers that came back
    /// are delivered (`wait`: waiting for at least one message), paused connections are served
    /// again.
    fn turn(&mut self, wait: bool) -> Result<(), String> {
        self.hand_over()?;
        self.loops.handles[0].shared.clear_wake();
        if wait {
            let msg = self
                .inbox
                .recv_timeout(WATCHDOG)
                .map_err(|_| format!("no answer from the processors within {WATCHDOG:?}"))?;
            self.on_message(msg);
        }
        while let Ok(msg) = self.inbox.try_recv() {
            self.on_message(msg);
        }
        for key in std::mem::take(&mut self.paused) {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.paused = None;
                self.serve(key);
            }
        }
        Ok(())
    }

    /// Hands every open batch over; one that does not fit its processor's channel is offered
    /// again once a processor's answer came (a processor that answers has taken a batch out:
    /// the loop waits for the processor's wake the same way), taking answers meanwhile.
    fn hand_over(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + WATCHDOG;
        while self.cx.links.flush(self.cx.now, true) {
            self.held_turns += 1;
            if Instant::now() > deadline {
                return Err("a batch could not be handed to its processor".into());
            }
            match self.inbox.recv_timeout(Duration::from_millis(1)) {
                Ok(msg) => self.on_message(msg),
                Err(_) => continue,
            }
        }
        Ok(())
    }

    /// A message of a processor, handled as the loop handles it.
    fn on_message(&mut self, msg: ToLoop) {
        match msg {
            ToLoop::Replies(batch) => {
                for reply in batch.replies() {
                    if reply.conn == STATE_MARKER {
                        self.state_settled = true;
                        continue;
                    }
                    self.pending = self.pending.saturating_sub(1);
                    let key = reply.conn.key as usize;
                    let Some(conn) = self
                        .conns
                        .get_mut(key)
                        .filter(|c| c.generation == reply.conn.generation)
                    else {
                        self.stale_replies += 1;
                        continue;
                    };
                    let transition = conn.deliver(&mut self.cx, batch.frame(reply), reply.accepted);
                    self.act(key, transition);
                }
                self.loops.replies.give(batch);
            }
            ToLoop::Call { call, .. } => {
                self.unexpected += 1;
                call.resolve(CallOutcome::NotConnected);
            }
            ToLoop::Close { .. } | ToLoop::Probe { .. } | ToLoop::SweepRevoked => {
                self.unexpected += 1
            }
        }
    }

    /// Returns once every processor has handled everything handed to it so far: a query to
    /// each, which it answers after what came before it in its inbox.
    fn barrier(&mut self) -> Result<(), String> {
        self.hand_over()?;
        let (tx, answers) = crossbeam_channel::bounded(self.processors.len());
        for handle in self.processors.handles.iter() {
            let query = Query::Detail {
                cp: "barrier".into(),
                reply: Answer::new(tx.clone(), Arc::clone(&self.barrier_waker)),
            };
            if !handle.send(ToProcessor::Query(query)) {
                return Err("a processor is gone".into());
            }
        }
        let inbox = self.inbox.clone();
        let mut answered = 0;
        while answered < self.processors.len() {
            select! {
                recv(answers) -> answer => {
                    answer.map_err(|_| "a processor dropped a query")?;
                    answered += 1;
                }
                recv(inbox) -> msg => {
                    if let Ok(msg) = msg {
                        self.on_message(msg);
                    }
                }
                default(WATCHDOG) => return Err("a processor did not answer a query".into()),
            }
        }
        Ok(())
    }

    /// Returns once the state thread has committed every change it had: a marker answer it
    /// holds until then (it sends one that waits for nothing unwritten on at once).
    fn state_barrier(&mut self) -> Result<(), String> {
        let mut held = HeldAnswers::default();
        self.state.hold(
            &mut held,
            &ocpp_gateway::events::Held::new(STATE_MARKER, b"", 1),
        );
        let batch = StateBatch {
            changes: Vec::new(),
            held,
        };
        self.state
            .send(batch)
            .map_err(|_| "the state thread is gone")?;
        self.state_settled = false;
        while !self.state_settled {
            let msg = self
                .inbox
                .recv_timeout(WATCHDOG)
                .map_err(|_| format!("the state thread did not commit within {WATCHDOG:?}"))?;
            self.on_message(msg);
        }
        Ok(())
    }

    /// The ping cycle: the loop's clock moves one wheel tick at a time and every due timer is
    /// handed to its connection, as the loop does, until every session's ping timer fired.
    /// Returns the figures and how often each session's timer fired.
    fn ping_cycle(&mut self) -> Result<(WheelCost, Vec<u8>), String> {
        let mut fired = vec![0u8; self.sessions];
        let mut cost = WheelCost {
            pending: self.cx.wheel.len(),
            ..WheelCost::default()
        };
        let interval = self.cx.limits.ping_interval;
        // A ping timer is due within the interval plus its jitter (1/16) of the last message.
        let last = interval + interval / 16 + TIMER_TICK * 2;
        let max_ticks = last.as_nanos().div_ceil(TIMER_TICK.as_nanos()) as u64;
        let start = self.cx.now;
        let wall = Instant::now();
        for tick in 1..=max_ticks {
            self.cx.now = start + TIMER_TICK * tick as u32;
            let tick_started = Instant::now();
            let mut any = false;
            while let Some(event) = self.cx.wheel.poll_expired(self.cx.now) {
                any = true;
                let TimerEvent::Connection { key, generation } = event else {
                    continue;
                };
                let key = key as usize;
                let Some(conn) = self
                    .conns
                    .get_mut(key)
                    .filter(|c| c.generation == generation)
                else {
                    continue;
                };
                fired[key] = fired[key].saturating_add(1);
                cost.fired += 1;
                let transition = conn.on_timer(&mut self.cx, key);
                self.act(key, transition);
            }
            cost.ticks = tick;
            if !any {
                cost.empty_ticks += 1;
                cost.empty_wall += tick_started.elapsed();
            }
            if cost.fired >= self.sessions as u64 {
                break;
            }
        }
        cost.wall = wall.elapsed();
        // Pings are written by the loop alone; nothing went to the processors.
        self.turn(false)?;
        Ok((cost, fired))
    }

    /// Counts the sessions whose connection and output (what the charge point would read)
    /// pass `ok` (given the slab key too), and empties every stream (a socket's buffers are
    /// the kernel's, not ours).
    fn check(&mut self, mut ok: impl FnMut(usize, &Connection, &[u8]) -> bool) -> usize {
        let mut passed = 0;
        for (key, conn) in self.conns.iter_mut() {
            let output = std::mem::take(&mut conn.transport.memory_mut().output);
            if ok(key, conn, &output) {
                passed += 1;
            }
            *conn.transport.memory_mut() = MemoryStream::default();
        }
        passed
    }
}

/// Messages of `conn` handed to its processor and not answered yet.
fn in_flight(conn: &Connection) -> u16 {
    conn.session().map_or(0, |s| s.in_flight)
}

/// A masked text frame, as a charge point sends it.
fn client_text(text: &str) -> Vec<u8> {
    let mut frame = Vec::new();
    websocket::encode(&mut frame, OpCode::Text, text.as_bytes(), Some(MASK));
    frame
}

/// The frames in what the gateway wrote: (opcode, payload); None if anything is malformed.
fn frames(output: &[u8]) -> Option<Vec<(OpCode, &[u8])>> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at < output.len() {
        let header = websocket::parse_header(&output[at..], Role::Client, usize::MAX).ok()??;
        let frame = output.get(at..at + header.frame_len())?;
        frames.push((header.opcode, &frame[header.payload()]));
        at += header.frame_len();
    }
    Some(frames)
}

/// The payload of the one CALLRESULT for `unique_id` that `output` must hold, alone.
fn answer(output: &[u8], unique_id: &str) -> Option<Value> {
    let frames = frames(output)?;
    let [(OpCode::Text, text)] = frames.as_slice() else {
        return None;
    };
    let value: Value = serde_json::from_slice(text).ok()?;
    (value[0] == 3 && value[1] == unique_id).then(|| value[2].clone())
}

/// Stops a state store's thread (nothing more will be sent) and returns what it read at open.
fn stop_store(store: state::StateStore) -> Result<state::Restored, String> {
    let state::StateStore {
        loaded,
        sender,
        thread,
    } = store;
    drop(sender);
    thread.join().map_err(|_| "the state thread panicked")?;
    Ok(loaded)
}

fn file_len(path: &Path) -> Result<u64, String> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A `VmRSS:`-style line of the process's status, in KiB.
fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The run's directory, removed when the run ends (also on failure).
struct Scratch(PathBuf);

impl Scratch {
    fn create(dir: &Path) -> Result<Scratch, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Scratch(dir.to_owned()))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
