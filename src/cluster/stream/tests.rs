//! Unit tests of the stream's buffer: its bound, a failed batch, the lost-writer rule, held
//! answers.

use super::*;
use crate::events::Held;
use crate::events::testing::Nowhere;
use crate::types::ConnId;

/// A sink whose Redis is never there (a port nothing listens on), and its thread, not
/// started: the test turns it by hand.
fn sink(max_lines: u64) -> (StreamSink, Thread, Arc<Stats>) {
    let stats = Arc::new(Stats::new(1, 1));
    let buffer = Arc::new(Buffer {
        queue: Mutex::new(Queue::default()),
        chunks: Pool::new(4),
        node: "gw".into(),
        max_lines,
        route: Arc::new(Nowhere),
        status: Arc::new(StreamStatus::default()),
        stats: Arc::clone(&stats),
    });
    let (doorbell, rung) = crossbeam_channel::bounded(1);
    let thread = Thread {
        buffer: Arc::clone(&buffer),
        rung,
        client: redis::Client::open("redis://127.0.0.1:1/").expect("a client"),
        key: "t:events".into(),
        maxlen: 100,
        ack_timeout: Duration::from_secs(10),
        con: None,
        retry_at: None,
        batch: Vec::new(),
        run: "r".into(),
        n: 0,
        script: redis::Script::new(super::super::scripts::EVENTS_BATCH),
        last_key: "t:events-batch:gw".into(),
    };
    (StreamSink::new(buffer, doorbell, true), thread, stats)
}

/// A chunk of writer `writer` with `lines` lines named `name-0`, `name-1`, ..., holding
/// `answer` if given.
fn chunk(
    (writer, name): (u16, &str),
    lines: u64,
    answer: Option<&crate::events::HeldAnswer>,
) -> Chunk {
    let mut chunk = Chunk {
        writer,
        ..Chunk::default()
    };
    for n in 0..lines {
        chunk
            .lines
            .extend_from_slice(format!("{name}-{n}\n").as_bytes());
    }
    chunk.count = lines;
    if let Some(answer) = answer {
        chunk.held.push(answer);
    }
    chunk
}

fn answer() -> crate::events::HeldAnswer {
    let conn = ConnId {
        loop_index: 0,
        key: 1,
        generation: 1,
    };
    Held::new(conn, b"[3,\"1\",{}]", 1)
}

/// An event of a thread that never waits.
fn loop_event(cp: &'static str) -> Event<'static> {
    Event {
        at: std::time::SystemTime::now(),
        cp,
        kind: crate::events::EventKind::Disconnected {
            cause: crate::types::CloseCause::PongTimeout,
        },
    }
}

/// The lines waiting, in the order they will go: the thread's batch, the side lines,
/// the buffer's chunks.
fn buffered(thread: &Thread) -> Vec<String> {
    let queue = thread.buffer.lock();
    let batch = thread.batch.iter().map(|w| &w.chunk);
    let chunks = queue.chunks.iter().map(|w| &w.chunk);
    batch
        .chain(std::iter::once(&queue.side))
        .chain(chunks)
        .flat_map(|c| {
            let text = String::from_utf8_lossy(&c.lines).into_owned();
            text.lines().map(str::to_owned).collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_buffer_drops_its_oldest_lines_beyond_its_bound_and_refuses_their_answers() {
    let (sink, thread, stats) = sink(4);
    let held = answer();
    assert!(
        !sink.producers.hand_over(chunk((1, "a"), 3, Some(&held))),
        "never waits"
    );
    assert!(held.is_owed());
    sink.producers.hand_over(chunk((2, "b"), 2, None));
    assert_eq!(buffered(&thread), ["b-0", "b-1"], "the oldest chunk went");
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.cluster_events_lost, 3);
    assert_eq!(snapshot.cluster_events_refused, 1);
    assert!(!held.is_owed(), "its answer went out (refused)");
    assert_eq!(thread.buffer.status.buffered(), 2);
}

#[test]
fn a_batch_redis_did_not_take_is_sent_again_as_it_is_and_its_answers_wait() {
    let (sink, mut thread, stats) = sink(100);
    let held = answer();
    sink.producers.hand_over(chunk((1, "a"), 2, Some(&held)));
    sink.producers.hand_over(chunk((2, "b"), 1, None));
    let side = loop_event("CP-1");
    assert!(sink.record_nowait(&side));
    assert!(thread.rung.try_recv().is_ok(), "the thread was rung");

    // Nothing listens on Redis's port: the batch fails and waits to go again as it is.
    thread.send_all();
    let n = thread.n;
    let lines = buffered(&thread);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[..3], ["a-0", "a-1", "b-0"]);
    assert!(
        lines[3].contains("\"cp\":\"CP-1\""),
        "the side line behind what came before it: {lines:?}"
    );
    assert!(thread.buffer.status.failing());
    let retry_at = thread.retry_at.expect("a retry is due");
    assert_eq!(
        thread.deadline(),
        Some(retry_at),
        "the retry comes before the answer's timeout"
    );
    assert!(held.is_owed(), "the answer still waits for Redis");
    sink.producers.hand_over(chunk((3, "c"), 1, None));
    thread.send_all();
    assert_eq!(thread.n, n, "the same batch, under its number");
    assert_eq!(buffered(&thread)[4..], ["c-0"]);
    assert_eq!(stats.snapshot().cluster_events_lost, 0);

    // Past `cluster.events_ack_timeout` the answer is refused; its lines stay.
    thread.refuse_overdue(Instant::now() + thread.ack_timeout);
    assert!(!held.is_owed());
    assert_eq!(stats.snapshot().cluster_events_refused, 1);
    assert_eq!(buffered(&thread).len(), 5);

    // At the stop, what is left is counted as lost.
    thread.give_up();
    assert_eq!(stats.snapshot().cluster_events_lost, 5);
    assert_eq!(thread.buffer.status.buffered(), 0);
}

#[test]
fn a_dropped_chunk_takes_the_answers_of_its_writers_next_chunk_and_loops_never_refuse() {
    let (sink, thread, stats) = sink(3);
    // Writer 1's lines filled a chunk; the answer covering them came in its next one.
    let first = answer();
    sink.producers.hand_over(chunk((1, "a"), 3, None));
    sink.producers.hand_over(chunk((1, "h"), 0, Some(&first)));
    assert!(first.is_owed());
    sink.producers.hand_over(chunk((2, "b"), 1, None));
    assert!(!first.is_owed(), "refused with the lines it covers");
    assert_eq!(stats.snapshot().cluster_events_lost, 3);

    // Writer 2's chunk is dropped before its next one came: that one is refused on arrival.
    sink.producers.hand_over(chunk((3, "x"), 3, None));
    assert_eq!(stats.snapshot().cluster_events_lost, 4);
    let second = answer();
    sink.producers.hand_over(chunk((2, "y"), 0, Some(&second)));
    assert!(!second.is_owed());
    let third = answer();
    sink.producers.hand_over(chunk((2, "z"), 0, Some(&third)));
    assert!(third.is_owed(), "only the chunk right after the lost one");
    assert_eq!(stats.snapshot().cluster_events_refused, 2);

    // The buffer is full: a loop's line is the one left out; nothing is refused.
    let side = loop_event("CP-1");
    assert!(!sink.record_nowait(&side));
    assert_eq!(stats.snapshot().cluster_events_lost, 5);
    assert!(third.is_owed());
    assert_eq!(buffered(&thread), ["x-0", "x-1", "x-2"]);
}

#[test]
fn the_oldest_held_answer_is_found_without_a_walk() {
    let (sink, mut thread, stats) = sink(1_000_000);
    let (first, second) = (answer(), answer());
    for n in 0..1_000 {
        sink.producers
            .hand_over(chunk((1, &format!("a{n}")), 1, None));
    }
    sink.producers.hand_over(chunk((2, "h"), 0, Some(&first)));
    for n in 0..1_000 {
        sink.producers
            .hand_over(chunk((1, &format!("b{n}")), 1, None));
    }
    sink.producers.hand_over(chunk((2, "i"), 0, Some(&second)));
    let since = {
        let mut queue = thread.buffer.lock();
        assert_eq!(queue.holders.len(), 2, "only holding chunks are listed");
        // The second answer came a second later.
        let since = queue.chunks[1_000].since;
        queue.chunks[2_001].since = since + Duration::from_secs(1);
        since
    };
    let timeout = thread.ack_timeout;
    assert_eq!(thread.deadline(), Some(since + timeout));

    thread.refuse_overdue(since + timeout);
    assert!(!first.is_owed() && second.is_owed());
    assert_eq!(stats.snapshot().cluster_events_refused, 1);
    let later = since + Duration::from_secs(1) + timeout;
    assert_eq!(
        thread.deadline(),
        Some(later),
        "the next one, its entry left"
    );
    assert_eq!(thread.buffer.lock().holders.len(), 1);

    // Sent (popped): nothing is listed any more.
    let mut queue = thread.buffer.lock();
    while queue.pop().is_some() {}
    assert!(queue.holders.is_empty() && queue.oldest_holding().is_none());
}
