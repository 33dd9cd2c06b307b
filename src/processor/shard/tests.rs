//! The shard driven directly, as its processor thread drives it: batches in, replies, closes,
//! state batches and cluster operations out. No sockets, no threads, no clock assertions.

use super::*;
use crate::batch::Reply;
use crate::mailbox::ClusterSender;
use crossbeam_channel::Receiver;
use wire::websocket;

const BOOT: &str = r#"[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]"#;
const HEARTBEAT: &str = r#"[2,"h","Heartbeat",{}]"#;
const STATUS: &str =
    r#"[2,"s","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Charging"}]"#;

fn conn(key: u32) -> ConnId {
    ConnId {
        loop_index: 0,
        key,
        generation: 1,
    }
}

fn shard(remember_limit: usize) -> Shard {
    Shard::new(
        0,
        Arc::new(Policy::accept_all(300)),
        Arc::new(Stats::new(1, 1)),
        remember_limit,
        false,
    )
}

/// What a sink's writer was given: the CALLs journaled, as `action uniqueId`.
#[derive(Default)]
struct Recorder {
    calls: Vec<String>,
    /// The answers held for it, not settled (a sink that has not confirmed yet).
    held: Vec<events::HeldAnswer>,
}

impl EventWriter for Recorder {
    fn record(&mut self, event: &Event<'_>) {
        if let EventKind::CallIn {
            unique_id, action, ..
        } = event.kind
        {
            self.calls.push(format!("{action} {unique_id}"));
        }
    }
    fn hold(&mut self, answer: &events::HeldAnswer) {
        self.held.push(events::HeldAnswer::clone(answer));
    }
    fn due(&self, _: Instant) -> bool {
        false
    }
    fn due_at(&self) -> Option<Instant> {
        None
    }
    fn flush(&mut self) -> bool {
        false
    }
}

/// A shard and what handling its batches produced.
struct Rig {
    shard: Shard,
    /// A sink's writer, when the test looks at what is journaled.
    writer: Option<Recorder>,
    /// One batch: every test connection is on loop 0.
    replies: Vec<ReplyBatch>,
    closes: Vec<(ConnId, CloseReason)>,
    calls: Vec<(ConnId, ChargePointId, Box<FollowUp>)>,
}

impl Rig {
    fn new(shard: Shard) -> Rig {
        Rig {
            shard,
            writer: None,
            replies: vec![ReplyBatch::default()],
            closes: Vec::new(),
            calls: Vec::new(),
        }
    }

    fn handle(&mut self, batch: &FrameBatch) {
        let mut out = Outputs {
            replies: &mut self.replies,
            writer: self
                .writer
                .as_mut()
                .map(|w| w as &mut (dyn EventWriter + 'static)),
            closes: &mut self.closes,
            calls: &mut self.calls,
        };
        self.shard.handle_batch(batch, &mut out);
    }

    /// Connects `cp` as an OCPP 2.0.1 station.
    fn connect_v201(&mut self, cp: &str, conn: ConnId, seq: u64) {
        let unsecured = (Auth::None, Profile::Unsecured);
        self.connect_speaking(cp, conn, seq, unsecured, (Version::V201, None));
    }

    fn connect_as(&mut self, cp: &str, conn: ConnId, seq: u64, auth: Auth, profile: Profile) {
        self.connect_with(cp, conn, seq, (auth, profile), None);
    }

    fn connect_with(
        &mut self,
        cp: &str,
        conn: ConnId,
        seq: u64,
        (auth, profile): (Auth, Profile),
        certificate: Option<CertificateFacts>,
    ) {
        let version = (Version::V16, certificate);
        self.connect_speaking(cp, conn, seq, (auth, profile), version);
    }

    fn connect_speaking(
        &mut self,
        cp: &str,
        conn: ConnId,
        seq: u64,
        (auth, profile): (Auth, Profile),
        (version, certificate): (Version, Option<CertificateFacts>),
    ) {
        let mut batch = FrameBatch::default();
        batch.push(Entry::Connected {
            conn,
            cp: ChargePointId::from(cp),
            seq,
            peer: "192.0.2.1:40000".parse().unwrap(),
            auth,
            profile,
            pinned: false,
            version,
            certificate: certificate.map(Box::new),
        });
        self.handle(&batch);
    }

    /// Connects `cp` over profile 3 with a certificate of `serial` expiring at `not_after`
    /// (valid since long ago).
    fn connect_certified(
        &mut self,
        cp: &str,
        conn: ConnId,
        seq: u64,
        (serial, not_after): (&str, i64),
    ) {
        let facts = CertificateFacts {
            serial: serial.into(),
            not_before: LONG_AGO,
            not_after,
        };
        self.connect_with(
            cp,
            conn,
            seq,
            (Auth::Certificate, Profile::MutualTls),
            Some(facts),
        );
    }

    fn connect(&mut self, cp: &str, conn: ConnId, seq: u64) {
        self.connect_as(cp, conn, seq, Auth::None, Profile::Unsecured);
    }

    fn disconnect(&mut self, cp: &str, conn: ConnId) {
        let mut batch = FrameBatch::default();
        batch.push(Entry::Disconnected {
            conn,
            cp: ChargePointId::from(cp),
            cause: CloseCause::PeerClosed,
        });
        self.handle(&batch);
    }

    /// Hands `text` over as a message of `conn`; the replies of earlier messages are dropped.
    fn send(&mut self, cp: &str, conn: ConnId, text: &str) {
        self.replies = vec![ReplyBatch::default()];
        let mut batch = FrameBatch::default();
        batch.push_message(conn, &ChargePointId::from(cp), text, Instant::now());
        self.handle(&batch);
    }

    /// The replies to the messages of the last `send`.
    fn replies(&self) -> &[Reply] {
        self.replies[0].replies()
    }

    /// The text of the last reply (empty: nothing is sent back).
    fn answer(&self) -> String {
        let reply = self.replies().last().expect("every message gets a reply");
        let frame = self.replies[0].frame(reply);
        String::from_utf8(websocket::payload_of(frame).to_vec()).unwrap()
    }

    fn boot(&mut self, cp: &str, conn: ConnId) {
        self.send(cp, conn, BOOT);
        assert!(self.answer().contains("\"Accepted\""), "{}", self.answer());
    }

    fn loaded(&mut self, cp: &str, session: u64, lookup: Lookup) {
        self.replies = vec![ReplyBatch::default()];
        let mut out = Outputs {
            replies: &mut self.replies,
            writer: None,
            closes: &mut self.closes,
            calls: &mut self.calls,
        };
        self.shard
            .loaded(&ChargePointId::from(cp), session, lookup, &mut out);
    }

    fn view(&self, cp: &str) -> ChargePointView {
        self.shard.view(cp, false).expect("the shard knows it")
    }
}

fn state_channel() -> (StateSender, Receiver<StateBatch>) {
    StateSender::channel(4)
}

/// A record as the state file (or Redis) holds it.
fn saved(profile: u8, open_transaction: Option<i32>, seen_ms: u64) -> Saved {
    Saved {
        profile,
        boot: None,
        connectors: Vec::new(),
        open_transaction,
        version: Version::V16,
        v201: None,
        seen_ms,
    }
}

/// A shard that remembers `records` (disconnected, accepted), as after a restart.
fn restored(records: &[(&str, Saved)]) -> Shard {
    let restored = records
        .iter()
        .map(|(cp, saved)| (Box::from(*cp), saved.clone()))
        .collect();
    shard(100).with_state(None, restored)
}

fn ids(shard: &Shard) -> Vec<String> {
    shard
        .list(Filter::All, None, usize::MAX, &|_| false)
        .into_iter()
        .map(|view| view.id)
        .collect()
}

// The registry.

#[test]
fn a_connection_makes_its_charge_point_connected() {
    let mut rig = Rig::new(shard(10));
    rig.connect("CP1", conn(1), 1);
    assert_eq!(rig.shard.connection_of("CP1"), Some(conn(1)));
    let view = rig.view("CP1");
    assert!(view.connected);
    assert_eq!(view.registration, "unknown");
    assert_eq!(view.remote_address.as_deref(), Some("192.0.2.1:40000"));
}

#[test]
fn an_accepted_charge_point_that_reconnects_is_still_accepted() {
    let mut rig = Rig::new(shard(10));
    rig.connect("CP1", conn(1), 1);
    rig.boot("CP1", conn(1));
    rig.disconnect("CP1", conn(1));
    assert!(!rig.view("CP1").connected);
    rig.connect("CP1", conn(2), 2);
    rig.send("CP1", conn(2), HEARTBEAT);
    assert!(rig.answer().starts_with("[3,\"h\""), "{}", rig.answer());
    assert!(rig.replies()[0].accepted);
}

#[test]
fn a_charge_point_that_never_booted_is_forgotten_when_it_disconnects() {
    let mut rig = Rig::new(shard(10));
    rig.connect("CP1", conn(1), 1);
    rig.disconnect("CP1", conn(1));
    assert!(rig.shard.view("CP1", false).is_none());
}

#[test]
fn a_newer_session_takes_over_and_the_older_connection_is_closed() {
    let mut rig = Rig::new(shard(10));
    rig.connect("CP1", conn(1), 1);
    rig.connect("CP1", conn(2), 2);
    assert_eq!(rig.closes, vec![(conn(1), CloseReason::Takeover)]);
    assert_eq!(rig.shard.connection_of("CP1"), Some(conn(2)));
}

#[test]
fn an_older_session_arriving_late_loses_to_the_one_held() {
    let mut rig = Rig::new(shard(10));
    rig.connect("CP1", conn(2), 2);
    rig.connect("CP1", conn(1), 1);
    assert_eq!(rig.closes, vec![(conn(1), CloseReason::Takeover)]);
    assert_eq!(rig.shard.connection_of("CP1"), Some(conn(2)));
}

#[test]
fn the_disconnect_of_a_replaced_connection_changes_nothing() {
    let mut rig = Rig::new(shard(10));
    rig.connect("CP1", conn(1), 1);
    rig.connect("CP1", conn(2), 2);
    rig.disconnect("CP1", conn(1));
    assert_eq!(rig.shard.connection_of("CP1"), Some(conn(2)));
}

#[test]
fn an_unauthenticated_connection_cannot_take_over_an_authenticated_one() {
    let mut rig = Rig::new(shard(10));
    rig.connect_as("CP1", conn(1), 1, Auth::Password, Profile::BasicAuth);
    rig.connect_as("CP1", conn(2), 2, Auth::None, Profile::BasicAuth);
    assert_eq!(rig.closes, vec![(conn(2), CloseReason::IdentityInUse)]);
    assert_eq!(rig.shard.connection_of("CP1"), Some(conn(1)));
}

#[test]
fn a_connection_below_the_profile_authenticated_at_before_is_closed() {
    let mut rig = Rig::new(shard(10));
    rig.connect_as("CP1", conn(1), 1, Auth::Password, Profile::BasicAuth);
    rig.boot("CP1", conn(1));
    rig.disconnect("CP1", conn(1));
    rig.connect("CP1", conn(2), 2);
    assert_eq!(rig.closes, vec![(conn(2), CloseReason::ProfileTooLow)]);
    assert_eq!(rig.shard.connection_of("CP1"), None);
}

/// A certificate's notBefore long before any time these tests use (1938).
const LONG_AGO: i64 = -1_000_000_000;

// Messages.

#[test]
fn certificates_coming_due_are_counted_and_each_asked_about_once() {
    let mut rig = Rig::new(shard(10));
    rig.connect_certified("CP1", conn(1), 1, ("01", 1_000));
    rig.boot("CP1", conn(1));
    rig.connect_certified("CP2", conn(2), 2, ("02", 9_000));
    rig.boot("CP2", conn(2));
    // Due but not accepted yet: counted, not asked.
    rig.connect_certified("CP3", conn(3), 3, ("03", 2_000));
    let asked = |calls: &[(ConnId, ChargePointId, Box<FollowUp>)]| -> Vec<String> {
        calls.iter().map(|(_, cp, _)| cp.to_string()).collect()
    };
    let calls = rig.shard.certificates_due(0, 5_000, 0);
    assert!(calls.is_empty(), "no budget, nobody asked");
    assert_eq!(rig.shard.stats().certificates_expiring.get(), 2);
    let calls = rig.shard.certificates_due(0, 5_000, 10);
    assert_eq!(asked(&calls), ["CP1"]);
    assert_eq!(
        calls[0].2.action,
        AnyAction::V16(Action::ExtendedTriggerMessage)
    );
    assert!(rig.view("CP1").client_certificate.unwrap().renewal_asked);
    assert!(
        rig.shard.certificates_due(0, 5_000, 10).is_empty(),
        "asked once"
    );
    // A new connection with a new certificate is a new question; with the same one it is not.
    rig.connect_certified("CP1", conn(4), 4, ("01", 1_000));
    assert!(rig.shard.certificates_due(0, 5_000, 10).is_empty());
    rig.connect_certified("CP1", conn(5), 5, ("04", 3_000));
    assert_eq!(asked(&rig.shard.certificates_due(0, 5_000, 10)), ["CP1"]);
    // Disconnected: no longer counted.
    rig.disconnect("CP1", conn(5));
    rig.shard.certificates_due(0, 5_000, 10);
    assert_eq!(rig.shard.stats().certificates_expiring.get(), 1);
    assert_eq!(rig.shard.stats().renewals_triggered.get(), 2);
}

#[test]
fn while_the_ca_ends_within_the_window_only_certificates_ending_before_it_are_asked() {
    let mut policy = Policy::accept_all(300);
    let ca = crate::security::signing::testing::authority("renewal-window");
    policy.signing = handlers::Signer::Ca(Arc::new(ca));
    let shard = Shard::new(0, Arc::new(policy), Arc::new(Stats::new(1, 1)), 10, false);
    let mut rig = Rig::new(shard);
    let ca_end = ca_end_secs(&rig);
    // One certificate ends with the CA (as those it signs do when the CA ends first), one
    // before it.
    rig.connect_certified("CP1", conn(1), 1, ("01", ca_end));
    rig.boot("CP1", conn(1));
    rig.connect_certified("CP2", conn(2), 2, ("02", ca_end - 86_400));
    rig.boot("CP2", conn(2));
    // A window reaching past the CA's end.
    let (now, beyond_the_ca) = (ca_end - 1_000, 2_000);
    let calls = rig.shard.certificates_due(now, beyond_the_ca, 10);
    let asked: Vec<String> = calls.iter().map(|(_, cp, _)| cp.to_string()).collect();
    assert_eq!(
        asked,
        ["CP2"],
        "renewing CP2 gains a day; CP1 would gain nothing"
    );
    assert_eq!(
        rig.shard.stats().certificates_expiring.get(),
        2,
        "both counted"
    );
    // CP2 renewed: its new certificate ends with the CA; no more questions.
    rig.connect_certified("CP2", conn(3), 3, ("03", ca_end));
    assert!(
        rig.shard
            .certificates_due(now, beyond_the_ca, 10)
            .is_empty()
    );
    // Once the CA has ended, nobody is asked (it could not sign the renewal), not even a
    // certificate that ended before it while its connection stayed open.
    rig.connect_certified("CP4", conn(5), 5, ("05", ca_end - 3_600));
    rig.boot("CP4", conn(5));
    assert!(
        rig.shard
            .certificates_due(ca_end, 2 * 86_400, 10)
            .is_empty()
    );
    assert_eq!(
        rig.shard.stats().certificates_expiring.get(),
        3,
        "still counted"
    );
    assert_eq!(rig.shard.stats().renewals_triggered.get(), 1);
}

#[test]
fn a_certificate_living_less_than_twice_the_window_is_asked_at_half_its_life() {
    const DAY: i64 = 86_400;
    let mut rig = Rig::new(shard(10));
    let (start, renew_before) = (1_000_000_000, 30 * DAY);
    // A backend signs 7-day certificates; another charge point has a 60-day one.
    let week = |serial: &str, from: i64| CertificateFacts {
        serial: serial.into(),
        not_before: from,
        not_after: from + 7 * DAY,
    };
    rig.connect_with(
        "CP1",
        conn(1),
        1,
        (Auth::Certificate, Profile::MutualTls),
        Some(week("01", start)),
    );
    rig.boot("CP1", conn(1));
    let long = CertificateFacts {
        serial: "02".into(),
        not_before: start - 40 * DAY,
        not_after: start + 20 * DAY,
    };
    let mutual = (Auth::Certificate, Profile::MutualTls);
    rig.connect_with("CP2", conn(2), 2, mutual, Some(long));
    rig.boot("CP2", conn(2));
    // A day longer than the window: due from its first day, asked at its half.
    let month = CertificateFacts {
        serial: "05".into(),
        not_before: start,
        not_after: start + 31 * DAY,
    };
    rig.connect_with("CP3", conn(4), 4, mutual, Some(month));
    rig.boot("CP3", conn(4));
    let asked = |calls: Vec<(ConnId, ChargePointId, Box<FollowUp>)>| -> Vec<String> {
        calls.iter().map(|(_, cp, _)| cp.to_string()).collect()
    };
    // All due; the 60-day one is asked at once, the others only at half their life.
    let now = start + DAY;
    assert_eq!(
        asked(rig.shard.certificates_due(now, renew_before, 10)),
        ["CP2"]
    );
    assert_eq!(rig.shard.stats().certificates_expiring.get(), 3);
    let now = start + 4 * DAY;
    assert_eq!(
        asked(rig.shard.certificates_due(now, renew_before, 10)),
        ["CP1"]
    );
    // Renewed for another week: not asked again the moment it is shown, but at its half.
    rig.connect_with("CP1", conn(3), 3, mutual, Some(week("03", now)));
    assert!(rig.shard.certificates_due(now, renew_before, 10).is_empty());
    let later = now + 3 * DAY + DAY / 2;
    assert_eq!(
        asked(rig.shard.certificates_due(later, renew_before, 10)),
        ["CP1"]
    );
    let half_a_month = start + 15 * DAY + DAY / 2;
    let mut due = |at| rig.shard.certificates_due(at, renew_before, 10);
    assert!(due(half_a_month - 1).is_empty());
    assert_eq!(asked(due(half_a_month)), ["CP3"]);
    assert_eq!(rig.shard.stats().renewals_triggered.get(), 4);
}

/// When the shard's signing CA ends, in seconds since the epoch.
fn ca_end_secs(rig: &Rig) -> i64 {
    let handlers::Signer::Ca(ca) = &rig.shard.policy.signing else {
        panic!("a shard signing with a CA")
    };
    let end = ca.not_after().duration_since(UNIX_EPOCH).unwrap().as_secs();
    i64::try_from(end).unwrap()
}

#[test]
fn a_boot_notification_is_answered_and_accepts_the_charge_point() {
    let mut rig = Rig::new(shard(10));
    rig.connect("CP1", conn(1), 1);
    rig.send("CP1", conn(1), BOOT);
    assert!(rig.answer().starts_with("[3,\"b\",{"), "{}", rig.answer());
    assert!(rig.replies()[0].accepted);
    assert_eq!(rig.view("CP1").registration, "accepted");
}

#[test]
fn a_call_of_an_accepted_charge_point_is_answered() {
    let mut rig = Rig::new(shard(10));
    rig.connect("CP1", conn(1), 1);
    rig.boot("CP1", conn(1));
    rig.send("CP1", conn(1), STATUS);
    assert_eq!(rig.answer(), "[3,\"s\",{}]");
    let connectors = rig.view("CP1").connectors;
    assert_eq!(connectors.len(), 1);
    assert_eq!(
        (connectors[0].connector_id, connectors[0].status),
        (1, "Charging")
    );
}

#[test]
fn a_call_before_the_boot_is_answered_with_a_security_error() {
    let mut rig = Rig::new(shard(10));
    rig.connect("CP1", conn(1), 1);
    rig.send("CP1", conn(1), HEARTBEAT);
    assert!(
        rig.answer().starts_with("[4,\"h\",\"SecurityError\""),
        "{}",
        rig.answer()
    );
    assert!(!rig.replies()[0].accepted);
}

#[test]
fn a_message_of_a_replaced_connection_gets_an_empty_reply() {
    let mut rig = Rig::new(shard(10));
    rig.connect("CP1", conn(1), 1);
    rig.connect("CP1", conn(2), 2);
    rig.send("CP1", conn(1), BOOT);
    assert_eq!(rig.replies().len(), 1);
    assert_eq!(rig.replies()[0].conn, conn(1));
    assert_eq!(rig.answer(), "");
    assert_eq!(rig.view("CP1").registration, "unknown");
}

#[test]
fn an_answer_from_the_charge_point_gets_an_empty_reply() {
    let mut rig = Rig::new(shard(10));
    rig.connect("CP1", conn(1), 1);
    rig.send("CP1", conn(1), r#"[3,"x",{}]"#);
    assert_eq!(rig.replies().len(), 1);
    assert_eq!(rig.answer(), "");
}

#[test]
fn a_call_with_a_malformed_payload_is_answered_with_a_call_error() {
    let mut rig = Rig::new(shard(10));
    rig.connect("CP1", conn(1), 1);
    rig.send(
        "CP1",
        conn(1),
        r#"[2,"m","BootNotification",{"chargePointVendor":1}]"#,
    );
    assert!(rig.answer().starts_with("[4,\"m\","), "{}", rig.answer());
    assert_eq!(rig.view("CP1").registration, "unknown");
}

// Cluster mode: messages wait for what Redis knows.

fn clustered() -> (Rig, Receiver<ClusterOp>) {
    let stats = Arc::new(Stats::new(1, 1));
    let (tx, rx) = crossbeam_channel::bounded(16);
    let shard = shard(10).with_cluster(Some(ClusterSender::new(tx, stats)));
    (Rig::new(shard), rx)
}

#[test]
fn in_cluster_mode_a_connect_is_told_to_the_registry() {
    let (mut rig, ops) = clustered();
    rig.connect("CP1", conn(1), 7);
    match ops.try_recv() {
        Ok(ClusterOp::Connected { cp, session, .. }) => {
            assert_eq!((&*cp, session), ("CP1", 7));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn in_cluster_mode_messages_wait_until_the_registry_answers() {
    let (mut rig, _ops) = clustered();
    rig.connect("CP1", conn(1), 1);
    rig.send("CP1", conn(1), BOOT);
    assert!(rig.replies().is_empty());
    rig.loaded("CP1", 1, Lookup::Absent);
    assert_eq!(rig.replies().len(), 1);
    assert!(rig.answer().starts_with("[3,\"b\""), "{}", rig.answer());
}

#[test]
fn a_registry_record_makes_the_charge_point_accepted_without_a_boot() {
    let (mut rig, _ops) = clustered();
    rig.connect("CP1", conn(1), 1);
    rig.send("CP1", conn(1), HEARTBEAT);
    rig.loaded("CP1", 1, Lookup::Found(saved(0, Some(42), 1)));
    assert!(rig.answer().starts_with("[3,\"h\""), "{}", rig.answer());
    assert_eq!(rig.view("CP1").open_transaction, Some(42));
}

#[test]
fn a_registry_answer_for_an_older_session_releases_nothing() {
    let (mut rig, _ops) = clustered();
    rig.connect("CP1", conn(1), 1);
    rig.connect("CP1", conn(2), 2);
    rig.send("CP1", conn(2), BOOT);
    rig.loaded("CP1", 1, Lookup::Absent);
    assert!(rig.replies().is_empty());
    rig.loaded("CP1", 2, Lookup::Absent);
    assert_eq!(rig.replies().len(), 1);
}

#[test]
fn a_registry_record_at_a_higher_profile_closes_a_lower_connection() {
    let (mut rig, _ops) = clustered();
    rig.connect("CP1", conn(1), 1);
    rig.send("CP1", conn(1), BOOT);
    rig.loaded("CP1", 1, Lookup::Found(saved(2, None, 1)));
    assert_eq!(rig.closes, vec![(conn(1), CloseReason::ProfileTooLow)]);
    assert!(rig.replies().is_empty());
}

// The state file.

#[test]
fn an_accepted_boot_is_offered_to_the_state_file() {
    let (sender, batches) = state_channel();
    let mut rig = Rig::new(shard(10).with_state(Some(sender), Vec::new()));
    rig.connect("CP1", conn(1), 1);
    rig.boot("CP1", conn(1));
    rig.shard.offer_state(false);
    let batch = batches.try_recv().expect("a batch");
    assert_eq!(batch.changes.len(), 1);
    let (cp, record) = &batch.changes[0];
    assert_eq!(&**cp, "CP1");
    assert!(record.as_ref().is_some_and(|r| r.boot.is_some()));
}

#[test]
fn a_heartbeat_changes_nothing_in_the_state_file() {
    let (sender, batches) = state_channel();
    let mut rig = Rig::new(shard(10).with_state(Some(sender), Vec::new()));
    rig.connect("CP1", conn(1), 1);
    rig.boot("CP1", conn(1));
    rig.shard.offer_state(false);
    batches.try_recv().expect("the boot");
    rig.send("CP1", conn(1), HEARTBEAT);
    rig.shard.offer_state(false);
    assert!(batches.try_recv().is_err());
}

#[test]
fn a_disconnect_offers_the_record_again_for_its_seen_time() {
    let (sender, batches) = state_channel();
    let mut rig = Rig::new(shard(10).with_state(Some(sender), Vec::new()));
    rig.connect("CP1", conn(1), 1);
    rig.boot("CP1", conn(1));
    rig.shard.offer_state(false);
    batches.try_recv().expect("the boot");
    rig.disconnect("CP1", conn(1));
    rig.shard.offer_state(false);
    let batch = batches.try_recv().expect("the disconnect");
    assert_eq!(batch.changes.len(), 1);
    assert!(batch.changes[0].1.as_ref().is_some_and(|r| r.seen_ms > 0));
}

#[test]
fn changes_the_state_thread_has_no_room_for_are_offered_with_the_next_round() {
    let (sender, batches) = StateSender::channel(1);
    let mut rig = Rig::new(shard(10).with_state(Some(sender), Vec::new()));
    rig.connect("CP1", conn(1), 1);
    rig.boot("CP1", conn(1));
    rig.shard.offer_state(false);
    rig.connect("CP2", conn(2), 2);
    rig.boot("CP2", conn(2));
    rig.shard.offer_state(false); // the channel is full
    assert_eq!(rig.shard.stats.state.state_deferred.get(), 1);
    batches.try_recv().expect("CP1's boot");
    rig.shard.offer_state(false);
    let batch = batches.try_recv().expect("CP2's boot, offered again");
    assert_eq!(&*batch.changes[0].0, "CP2");
}

#[test]
fn restored_records_come_back_disconnected_and_accepted() {
    let shard = restored(&[("CP1", saved(0, Some(5), 1_000))]);
    let view = shard.view("CP1", false).expect("restored");
    assert!(!view.connected);
    assert_eq!(view.registration, "accepted");
    assert_eq!(view.open_transaction, Some(5));
}

// The operator API's views.

#[test]
fn list_filters_by_connection() {
    let mut rig = Rig::new(shard(10));
    for (i, cp) in ["CP1", "CP2", "CP3"].into_iter().enumerate() {
        let key = i as u32 + 1;
        rig.connect(cp, conn(key), u64::from(key));
        rig.boot(cp, conn(key));
    }
    rig.disconnect("CP2", conn(2));
    let listed = |filter| {
        rig.shard
            .list(filter, None, 10, &|_| false)
            .into_iter()
            .map(|v| v.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(listed(Filter::Connected), ["CP1", "CP3"]);
    assert_eq!(listed(Filter::Disconnected), ["CP2"]);
}

#[test]
fn list_pages_in_identity_order_after_the_given_identity() {
    let shard = restored(&[
        ("CP4", saved(0, None, 1)),
        ("CP2", saved(0, None, 1)),
        ("CP1", saved(0, None, 1)),
        ("CP3", saved(0, None, 1)),
    ]);
    let page: Vec<String> = shard
        .list(Filter::All, Some("CP1"), 2, &|_| false)
        .into_iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(page, ["CP2", "CP3"]);
}

#[test]
fn view_marks_a_traced_charge_point() {
    let shard = restored(&[("CP1", saved(0, None, 1))]);
    let listed = shard.list(Filter::All, None, 10, &|cp| cp == "CP1");
    assert!(listed[0].trace);
    assert!(!shard.view("CP1", false).unwrap().trace);
}

#[test]
fn view_of_an_unknown_charge_point_is_none() {
    assert!(shard(10).view("nobody", false).is_none());
}

// Forgetting disconnected charge points.

#[test]
fn forget_oldest_forgets_those_seen_longest_ago() {
    let mut shard = restored(&[
        ("new", saved(0, None, 3_000)),
        ("old", saved(0, None, 1_000)),
        ("mid", saved(0, None, 2_000)),
    ]);
    shard.forget_oldest(2);
    assert_eq!(ids(&shard), ["new"]);
}

#[test]
fn forget_oldest_never_forgets_an_entry_above_profile_0() {
    let mut shard = restored(&[
        ("secured", saved(2, None, 1_000)),
        ("plain", saved(0, None, 2_000)),
    ]);
    shard.forget_oldest(2);
    assert_eq!(ids(&shard), ["secured"]);
}

#[test]
fn forget_oldest_forgets_open_transactions_after_all_others() {
    let mut shard = restored(&[
        ("charging", saved(0, Some(1), 1_000)),
        ("idle", saved(0, None, 2_000)),
        ("idle-too", saved(0, None, 3_000)),
    ]);
    shard.forget_oldest(2);
    assert_eq!(ids(&shard), ["charging"]);
    shard.forget_oldest(1);
    assert!(ids(&shard).is_empty());
}

#[test]
fn forget_oldest_never_forgets_a_connected_charge_point() {
    let mut rig = Rig::new(restored(&[("old", saved(0, None, 1_000))]));
    rig.connect("old", conn(1), 1);
    rig.shard.forget_oldest(1);
    assert_eq!(ids(&rig.shard), ["old"]);
}

#[test]
fn forgotten_records_are_removed_from_the_state_file() {
    let (sender, batches) = state_channel();
    let restored = vec![(Box::from("old"), saved(0, None, 1_000))];
    let mut shard = shard(100).with_state(Some(sender), restored);
    shard.forget_oldest(1);
    shard.offer_state(false);
    let batch = batches.try_recv().expect("a batch");
    assert_eq!(batch.changes.len(), 1);
    assert_eq!(&*batch.changes[0].0, "old");
    assert!(batch.changes[0].1.is_none());
}

#[test]
fn restoring_more_than_the_limit_forgets_the_oldest() {
    let restored = vec![
        (Box::from("old"), saved(0, None, 1_000)),
        (Box::from("new"), saved(0, None, 2_000)),
    ];
    let shard = shard(1).with_state(None, restored);
    assert_eq!(ids(&shard), ["new"]);
}

#[test]
fn a_csr_for_the_backend_is_kept_like_billing() {
    let payload = RawValue::from_string(r#"{"csr":"x"}"#.to_owned()).unwrap();
    let call = |known, known201| CallIn {
        at: SystemTime::now(),
        unique_id: "1",
        action: "SignCertificate",
        known,
        known201,
        previous201: None,
        version: Version::V16,
        payload: &payload,
    };
    let mut policy = Policy::accept_all(300);
    let v16 = call(Some(Action::SignCertificate), None);
    let v201 = call(None, Some(v201::Action::SignCertificate));
    assert!(!messages::kept_like_billing(&policy, &v16), "signing off");
    policy.signing = handlers::Signer::Backend;
    assert!(messages::kept_like_billing(&policy, &v16));
    assert!(messages::kept_like_billing(&policy, &v201));
    let heartbeat = call(Some(Action::Heartbeat), None);
    assert!(!messages::kept_like_billing(&policy, &heartbeat));
    assert!(messages::kept_like_billing(
        &policy,
        &call(Some(Action::StopTransaction), None)
    ));
}

/// Station CS1's TransactionEvent Started of T1, seqNo 0, as CALL `id`.
fn started_t1(id: &str) -> String {
    format!(
        r#"[2,"{id}","TransactionEvent",{{"eventType":"Started","timestamp":"2026-12-06T10:00:00Z","triggerReason":"Authorized","seqNo":0,"transactionInfo":{{"transactionId":"T1"}}}}]"#
    )
}

/// The TransactionEvents the rig's writer journaled.
fn journaled_events(rig: &Rig) -> Vec<String> {
    let calls = &rig.writer.as_ref().unwrap().calls;
    calls
        .iter()
        .filter(|c| c.starts_with("TransactionEvent"))
        .cloned()
        .collect()
}

/// Station CS1 connects over 2.0.1 on conn(1) and boots.
fn boot_station_cs1(rig: &mut Rig) {
    rig.connect_v201("CS1", conn(1), 1);
    rig.send(
        "CS1",
        conn(1),
        r#"[2,"b","BootNotification",{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}]"#,
    );
}

#[test]
fn a_resent_event_is_kept_again_only_when_a_holder_refused_an_answer_since() {
    let mut rig = Rig::new(shard(10));
    rig.writer = Some(Recorder::default());
    boot_station_cs1(&mut rig);
    assert!(rig.answer().contains("Accepted"), "{}", rig.answer());
    rig.send("CS1", conn(1), &started_t1("e1"));
    // Its answer was lost: sent again, recognised, not journaled twice.
    rig.send("CS1", conn(1), &started_t1("e2"));
    assert_eq!(journaled_events(&rig), ["TransactionEvent e1"]);
    // A holder refused an answer (the broker did not confirm): the station was told to send
    // again, so its resend is kept again.
    rig.shard.stats.kafka.kafka_refused.inc();
    rig.send("CS1", conn(1), &started_t1("e3"));
    assert_eq!(
        journaled_events(&rig),
        ["TransactionEvent e1", "TransactionEvent e3"]
    );
    // Kept now: a further resend is a resend.
    rig.send("CS1", conn(1), &started_t1("e4"));
    assert_eq!(journaled_events(&rig).len(), 2);
    assert_eq!(rig.shard.stats().transaction_events_resent.get(), 3);
}

#[test]
fn a_resend_while_the_first_answer_is_still_held_is_kept_again() {
    let shard = Shard::new(
        0,
        Arc::new(Policy::accept_all(300)),
        Arc::new(Stats::new(1, 1)),
        10,
        true, // answers wait for the sink
    );
    let mut rig = Rig::new(shard);
    rig.writer = Some(Recorder::default());
    boot_station_cs1(&mut rig);
    rig.send("CS1", conn(1), &started_t1("e1"));
    // Sent again while the sink still holds e1's answer: e1 may yet be refused, and the
    // sink's verdict on it would not reach e2's answer, so e2 is kept too.
    rig.send("CS1", conn(1), &started_t1("e2"));
    assert_eq!(
        journaled_events(&rig),
        ["TransactionEvent e1", "TransactionEvent e2"]
    );
    // Once the held answers are gone (settled), a resend is a resend again.
    rig.writer.as_mut().unwrap().held.clear();
    rig.send("CS1", conn(1), &started_t1("e3"));
    assert_eq!(
        journaled_events(&rig).len(),
        2,
        "{:?}",
        journaled_events(&rig)
    );
}

#[test]
fn what_each_charge_point_keeps_stays_in_its_allocation_classes() {
    // The boxed operator view fits jemalloc's 80-byte class; the map entry every message
    // touches (with its 16-byte key) stays at two cache lines, as before 2.0.1 and 2.1.
    assert_eq!(std::mem::size_of::<super::Seen>(), 80);
    assert!(std::mem::size_of::<super::ChargePoint>() <= 112);
}
