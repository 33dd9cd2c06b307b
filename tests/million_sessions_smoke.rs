//! The `million_sessions` benchmark's fleet at 1,000 sessions, for its counts only: every
//! upgrade answered 101, every BootNotification Accepted, every Heartbeat and
//! StatusNotification answered, every ping timer fired exactly once, every registration in
//! the state file and loaded back. Its figures (times, bytes) are the benchmark's, never
//! asserted here.

#[allow(dead_code)]
#[path = "../benches/million_sessions/fleet.rs"]
mod fleet;

const SESSIONS: usize = 1_000;

#[test]
fn a_thousand_sessions_through_the_real_code_without_sockets() {
    let dir = std::env::temp_dir().join(format!("million-sessions-smoke-{}", std::process::id()));
    let report = fleet::run(&fleet::Options {
        sessions: SESSIONS,
        processors: 2,
        dir,
        allocated: || None,
    })
    .expect("the fleet runs");
    assert_eq!(report.upgraded, SESSIONS, "upgrades answered 101");
    assert_eq!(report.boots_accepted, SESSIONS, "boots Accepted");
    assert_eq!(report.heartbeats_answered, SESSIONS, "heartbeats answered");
    assert_eq!(
        report.heartbeats_by_loop, SESSIONS as u64,
        "an accepted charge point's Heartbeat is the loop's to answer"
    );
    assert_eq!(report.timers_fired, SESSIONS as u64, "one ping timer each");
    assert_eq!(
        report.pinged_once, SESSIONS,
        "each fired once and wrote a ping"
    );
    assert_eq!(report.statuses_answered, SESSIONS, "statuses answered");
    assert_eq!(
        report.registrations_loaded, SESSIONS,
        "registrations in the file"
    );
    assert_eq!(
        report.registrations_complete, SESSIONS,
        "with boot and status"
    );
    assert_eq!(
        report.registrations_reloaded, SESSIONS,
        "written again and read"
    );
    assert_eq!(
        (
            report.pauses,
            report.removed,
            report.stale_replies,
            report.unexpected
        ),
        (0, 0, 0, 0),
        "no session paused, closed or misdirected"
    );
}
