//! Question: does a session's cost stay flat from 10,000 to 1,000,000 sessions in one process?
//! Bytes per session (counted by jemalloc, the gateway's allocator), nanoseconds per message
//! (upgrade, BootNotification, Heartbeat, StatusNotification), the timing wheel's cost per tick
//! and per fired timer through one ping cycle, and the state file of every registration:
//! written, loaded back, its size.
//!
//! A host stops at its descriptor limit long before a million sockets (this machine's at
//! 20,000), so the sessions run over in-memory streams through the gateway's real code:
//! `fleet.rs` says what is real and what stands in.
//!
//! ```sh
//! cargo bench --bench million_sessions -- --sessions 1000000 [--processors 2]
//! ```

use std::process::ExitCode;

mod fleet;

use fleet::{Cost, Options, Report};

/// The gateway's allocator (`src/main.rs`), so bytes are counted as the gateway spends them.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const USAGE: &str = "usage: million_sessions [--sessions N (10000)] [--processors P (2)]";

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("million_sessions: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // As the gateway does: freed pages go back to the OS in the background.
    let _ = tikv_jemalloc_ctl::max_background_threads::write(1)
        .and_then(|()| tikv_jemalloc_ctl::background_thread::write(true));
    match fleet::run(&options) {
        Ok(report) => {
            print(&report);
            if complete(&report) {
                ExitCode::SUCCESS
            } else {
                eprintln!("million_sessions: some sessions did not complete (counts above)");
                ExitCode::FAILURE
            }
        }
        Err(message) => {
            eprintln!("million_sessions: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        sessions: 10_000,
        processors: 2,
        dir: std::env::temp_dir().join(format!("million-sessions-{}", std::process::id())),
        allocated,
    };
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<usize, String> {
            let value = args.next().ok_or(format!("{name} needs a value"))?;
            value
                .replace(['_', ','], "")
                .parse()
                .map_err(|_| format!("{name}: not a number: {value}"))
        };
        match arg.as_str() {
            "--sessions" => options.sessions = number("--sessions")?,
            "--processors" => options.processors = number("--processors")?,
            // `cargo bench` adds it to every bench binary.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if options.sessions == 0 || options.processors == 0 {
        return Err("--sessions and --processors must be > 0".into());
    }
    Ok(options)
}

/// jemalloc's count of bytes allocated and not freed (its statistics are refreshed first).
fn allocated() -> Option<u64> {
    tikv_jemalloc_ctl::epoch::advance().ok()?;
    tikv_jemalloc_ctl::stats::allocated::read()
        .ok()
        .map(|bytes| bytes as u64)
}

fn complete(r: &Report) -> bool {
    let n = r.sessions;
    [
        r.upgraded,
        r.boots_accepted,
        r.heartbeats_answered,
        r.pinged_once,
        r.statuses_answered,
        r.registrations_loaded,
        r.registrations_complete,
        r.registrations_reloaded,
    ]
    .iter()
    .all(|&count| count == n)
        && r.removed == 0
}

fn print(r: &Report) {
    let n = r.sessions;
    println!(
        "million_sessions: {} sessions in one process, no sockets",
        thousands(n as u64)
    );
    println!(
        "  real: net::session::Connection x N in a slab, one LoopContext (batches to the \
         processors, answers, timing wheel {} ms x {} slots), the processor pool ({} threads, \
         their shards), the state thread and its redb file",
        ocpp_gateway::net::event_loop::TIMER_TICK.as_millis(),
        ocpp_gateway::net::event_loop::TIMER_SLOTS,
        r.processors
    );
    println!(
        "  stand-ins: an in-memory stream per connection for its socket; this thread plays the \
         event loop without mio; the loop's clock is virtual; no journal"
    );
    println!();
    println!(
        "{:<10} {:>10} {:>12} {:>34}",
        "phase", "messages", "wall ns/msg", "CPU ns/msg: loop, processors, state"
    );
    let phases: [(&str, Option<Cost>); 4] = [
        ("upgrade", r.upgrade),
        ("boot", r.boot),
        ("heartbeat", r.heartbeat),
        ("status", r.status),
    ];
    for (name, cost) in phases {
        let Some(cost) = cost else { continue };
        let cpu = cost.cpu_ns_per_message().map_or("-".into(), |(l, p, s)| {
            format!("{:>8} {:>12} {:>12}", round(l), round(p), round(s))
        });
        println!(
            "{:<10} {:>10} {:>12} {:>34}",
            name,
            thousands(cost.messages),
            round(cost.wall_ns_per_message()),
            cpu,
        );
    }
    println!(
        "  (heartbeats answered by the loop itself: {}; the others by a processor)",
        thousands(r.heartbeats_by_loop)
    );
    let w = &r.wheel;
    let busy = w.ticks.saturating_sub(w.empty_ticks).max(1);
    println!();
    println!(
        "ping cycle: {} timers pending, {} ticks of {} ms until {} fired: {:.1} us per tick \
         ({:.2} us per tick that fired nothing, {:.1} us per tick that fired), {} ns per fired \
         timer (the wheel's walk, the ping written, the pong deadline armed)",
        thousands(w.pending as u64),
        thousands(w.ticks),
        ocpp_gateway::net::event_loop::TIMER_TICK.as_millis(),
        thousands(w.fired),
        micros(w.wall) / w.ticks.max(1) as f64,
        micros(w.empty_wall) / w.empty_ticks.max(1) as f64,
        micros(w.wall.saturating_sub(w.empty_wall)) / busy as f64,
        thousands((w.wall.as_nanos() / u128::from(w.fired.max(1))) as u64),
    );
    println!();
    println!(
        "memory per session since before the first connection (jemalloc allocated; RSS growth):"
    );
    for (phase, _) in r.memory.iter().skip(1) {
        println!(
            "  after {:<10} {:>7} B   RSS {:>7} B",
            phase,
            r.allocated_per_session(phase)
                .map_or("-".into(), |b| thousands(b.round() as u64)),
            r.rss_per_session(phase)
                .map_or("-".into(), |b| thousands(b.round() as u64)),
        );
    }
    println!(
        "  a Connection (its slab entry) is {} B; the in-memory stream standing in for the socket costs {} B of \
         it on the heap (a real socket's cost is the kernel's, ~3.3 KiB, not the process's)",
        r.connection_bytes, r.stream_bytes
    );
    if let Some(peak) = r.peak_rss {
        println!("  peak RSS: {:.1} MiB", peak as f64 / (1 << 20) as f64);
    }
    let s = &r.state;
    println!();
    println!(
        "state file: written by the running gateway in the background ({} commits, {} records, \
         {} offers deferred), {:.1} ms from the processors' stop to its last commit; {:.1} MiB",
        thousands(s.live_commits),
        thousands(s.live_records),
        thousands(s.live_deferred),
        millis(s.stop),
        s.live_bytes as f64 / (1 << 20) as f64,
    );
    println!(
        "  load: {:.1} ms ({:.0} ns per record), {} registrations, {} with their boot and connector",
        millis(s.load),
        s.load.as_nanos() as f64 / r.registrations_loaded.max(1) as f64,
        thousands(r.registrations_loaded as u64),
        thousands(r.registrations_complete as u64),
    );
    println!(
        "  all of them written again in one batch (one commit): {:.1} ms ({:.0} ns per record), \
         {:.1} MiB; loaded back in {:.1} ms ({} records)",
        millis(s.write),
        s.write.as_nanos() as f64 / r.registrations_loaded.max(1) as f64,
        s.written_bytes as f64 / (1 << 20) as f64,
        millis(s.reload),
        thousands(r.registrations_reloaded as u64),
    );
    println!();
    println!(
        "counts: upgraded {}, boots Accepted {}, heartbeats answered {}, pinged once {} ({} \
         timers fired), statuses answered {}, registrations loaded {}; paused {}, removed {}, \
         stale answers {}, unexpected messages {}, held batches {}",
        thousands(r.upgraded as u64),
        thousands(r.boots_accepted as u64),
        thousands(r.heartbeats_answered as u64),
        thousands(r.pinged_once as u64),
        thousands(r.timers_fired),
        thousands(r.statuses_answered as u64),
        thousands(r.registrations_loaded as u64),
        r.pauses,
        r.removed,
        r.stale_replies,
        r.unexpected,
        r.held_turns,
    );
}

fn round(x: f64) -> String {
    thousands(x.round() as u64)
}

fn micros(d: std::time::Duration) -> f64 {
    d.as_nanos() as f64 / 1e3
}

fn millis(d: std::time::Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

/// 1234567 -> "1,234,567".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
