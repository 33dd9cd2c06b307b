//! Work crosses threads in batches, and batch buffers are used again: a loop gathers every
//! message it read in one turn for a processor into one [`FrameBatch`] (one channel send, one
//! wake), the processor writes all its answers for a loop into one [`ReplyBatch`], already
//! framed for the wire, and the loop writes each answer from that buffer straight to its
//! socket. Empty batches go back to a [`Pool`], so once warm a round trip allocates nothing.
//!
//! Offsets are `u32`: a batch is bounded far below 4 GiB (by `processor.queue_bytes` and the
//! sizes checked where batches are filled).

use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};

use crate::security::{Auth, Profile};
use crate::types::{ChargePointId, CloseCause, ConnId, Version};
use ocpp::AnyAction;
use transport::tls::CertificateFacts;
use wire::websocket;

/// Room left in front of each answer for its frame header (written once the payload length
/// is known).
use websocket::HEADER_ROOM;

/// What one loop hands one processor, in the order it happened.
#[derive(Debug, Default)]
pub struct FrameBatch {
    /// The message texts, back to back.
    text: String,
    entries: Vec<Entry>,
    messages: usize,
}

/// One thing a processor learns from a loop.
#[derive(Debug)]
pub enum Entry {
    /// `seq` orders connections across loops: of two connections with one identity, the one
    /// with the higher `seq` connected later and wins, whichever message arrives first.
    Connected {
        conn: ConnId,
        cp: ChargePointId,
        seq: u64,
        peer: SocketAddr,
        /// How the connection proved its identity.
        auth: Auth,
        /// The listener's security profile.
        profile: Profile,
        /// The identity's credentials line pins its lowest profile: the one it authenticated
        /// at before does not apply.
        pinned: bool,
        /// The OCPP version negotiated.
        version: Version,
        /// The client certificate's serial and expiry (profile 3, a TLS handshake of ours).
        certificate: Option<Box<CertificateFacts>>,
    },
    /// A text message (an OCPP-J CALL, or something the processor must judge): its text is
    /// `text` in the batch. Every message gets exactly one [`Reply`], possibly empty.
    Message {
        conn: ConnId,
        cp: ChargePointId,
        text: Range<u32>,
        /// When the loop read it (for the processing-latency histogram).
        received: Instant,
    },
    Disconnected {
        conn: ConnId,
        cp: ChargePointId,
        cause: CloseCause,
    },
    /// A Heartbeat the loop answered itself: `call` is the message, `answer` the payload it
    /// got; the processor counts and journals the exchange as if it had answered it.
    Answered {
        conn: ConnId,
        cp: ChargePointId,
        call: Range<u32>,
        answer: Range<u32>,
        at: SystemTime,
        /// From the loop reading the message to the answer going out.
        took: Duration,
    },
    /// The connection went over `ocpp.max_calls_per_second` and was paused (for the API's
    /// per-charge-point count).
    Throttled { conn: ConnId, cp: ChargePointId },
    /// A line the loop wants journaled (a call of ours, its answer, its outcome). The
    /// charge point's processor renders it, so one thread renders all of a charge point's
    /// lines, in the order things happened.
    Stashed {
        cp: ChargePointId,
        at: SystemTime,
        event: Stashed,
    },
}

/// An event kind of the loop's, its texts kept as ranges of the batch's text.
#[derive(Debug)]
pub enum Stashed {
    CallOut {
        unique_id: Range<u32>,
        action: AnyAction,
        payload: Range<u32>,
    },
    ResultIn {
        unique_id: Range<u32>,
        action: AnyAction,
        payload: Range<u32>,
    },
    ErrorIn {
        unique_id: Range<u32>,
        action: AnyAction,
        code: Range<u32>,
        description: Range<u32>,
        details: Range<u32>,
    },
    Outcome {
        unique_id: Option<Range<u32>>,
        action: AnyAction,
        outcome: &'static str,
    },
    Refused {
        peer: SocketAddr,
        status: u16,
        reason: &'static str,
    },
}

impl FrameBatch {
    pub fn push_message(
        &mut self,
        conn: ConnId,
        cp: &ChargePointId,
        text: &str,
        received: Instant,
    ) {
        let start = self.text.len() as u32;
        self.text.push_str(text);
        self.entries.push(Entry::Message {
            conn,
            cp: ChargePointId::clone(cp),
            text: start..self.text.len() as u32,
            received,
        });
        self.messages += 1;
    }

    pub fn push(&mut self, entry: Entry) {
        if matches!(entry, Entry::Message { .. }) {
            self.messages += 1;
        }
        self.entries.push(entry);
    }

    /// A Heartbeat the loop answered itself, for the processor to count and journal.
    pub fn push_answered(
        &mut self,
        conn: ConnId,
        cp: &ChargePointId,
        call: &str,
        answer: &str,
        at: SystemTime,
        took: Duration,
    ) {
        let call = self.push_text(call);
        let answer = self.push_text(answer);
        self.entries.push(Entry::Answered {
            conn,
            cp: ChargePointId::clone(cp),
            call,
            answer,
            at,
            took,
        });
    }

    /// Copies `text` in (for a stashed event) and returns where it lies.
    pub fn push_text(&mut self, text: &str) -> Range<u32> {
        let start = self.text.len() as u32;
        self.text.push_str(text);
        start..self.text.len() as u32
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn text(&self, range: &Range<u32>) -> &str {
        self.text
            .get(range.start as usize..range.end as usize)
            .unwrap_or("")
    }

    /// Bytes of message text held.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// Messages held (control entries not counted).
    pub fn messages(&self) -> usize {
        self.messages
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Answers for connections of one loop: complete WebSocket frames in one buffer.
#[derive(Debug, Default)]
pub struct ReplyBatch {
    frames: Vec<u8>,
    replies: Vec<Reply>,
}

/// One answer: the frame to write to `conn` (empty: the message needed no answer, but it is
/// accounted for, so the connection's count of messages in flight goes down), and whether the
/// charge point is Accepted once its message was handled (the loop answers such a charge
/// point's Heartbeats itself).
#[derive(Debug, Clone)]
pub struct Reply {
    pub conn: ConnId,
    pub frame: Range<u32>,
    pub accepted: bool,
}

/// An answer being written into a [`ReplyBatch`]: `payload()` is where its text goes.
pub struct Draft {
    start: usize,
}

/// A complete frame in a [`ReplyBatch`], not yet recorded as anyone's answer.
pub struct Sealed {
    start: usize,
    frame: Range<u32>,
}

impl ReplyBatch {
    /// Starts a text frame; write its payload into [`ReplyBatch::payload`], then call
    /// [`ReplyBatch::finish`] (or [`ReplyBatch::abandon`]).
    pub fn begin(&mut self) -> Draft {
        let start = self.frames.len();
        self.frames.extend_from_slice(&[0; HEADER_ROOM]);
        Draft { start }
    }

    /// Where the draft's payload is written.
    pub fn payload(&mut self) -> &mut Vec<u8> {
        &mut self.frames
    }

    /// The payload written since `draft` began.
    pub fn draft_text(&self, draft: &Draft) -> &[u8] {
        &self.frames[draft.start + HEADER_ROOM..]
    }

    /// Cuts what was written of the draft's payload, to write it anew.
    pub fn rewind(&mut self, draft: &Draft) {
        self.frames.truncate(draft.start + HEADER_ROOM);
    }

    /// Puts the frame header in front of the payload: the frame is complete.
    pub fn seal(&mut self, draft: Draft) -> Sealed {
        let at = websocket::seal_text(&mut self.frames, draft.start);
        Sealed {
            start: draft.start,
            frame: at as u32..self.frames.len() as u32,
        }
    }

    /// The bytes of a sealed frame.
    pub fn sealed(&self, sealed: &Sealed) -> &[u8] {
        &self.frames[sealed.frame.start as usize..sealed.frame.end as usize]
    }

    /// Records a sealed frame as the answer for `conn`.
    pub fn commit(&mut self, sealed: Sealed, conn: ConnId, accepted: bool) {
        self.replies.push(Reply {
            conn,
            frame: sealed.frame,
            accepted,
        });
    }

    /// Forgets a sealed frame that went elsewhere (its bytes are cut off).
    pub fn discard(&mut self, sealed: Sealed) {
        self.frames.truncate(sealed.start);
    }

    /// Seals the draft and records it as the answer for `conn`.
    pub fn finish(&mut self, draft: Draft, conn: ConnId, accepted: bool) {
        let sealed = self.seal(draft);
        self.commit(sealed, conn, accepted);
    }

    /// Forgets a draft (its bytes are cut off).
    pub fn abandon(&mut self, draft: Draft) {
        self.frames.truncate(draft.start);
    }

    /// Records that a message of `conn` was consumed without an answer.
    pub fn none(&mut self, conn: ConnId, accepted: bool) {
        let at = self.frames.len() as u32;
        self.replies.push(Reply {
            conn,
            frame: at..at,
            accepted,
        });
    }

    /// Copies a complete frame (written elsewhere) in as the answer for `conn`.
    pub fn push_frame(&mut self, conn: ConnId, frame: &[u8], accepted: bool) {
        let start = self.frames.len() as u32;
        self.frames.extend_from_slice(frame);
        self.replies.push(Reply {
            conn,
            frame: start..self.frames.len() as u32,
            accepted,
        });
    }

    pub fn replies(&self) -> &[Reply] {
        &self.replies
    }

    pub fn frame(&self, reply: &Reply) -> &[u8] {
        self.frames
            .get(reply.frame.start as usize..reply.frame.end as usize)
            .unwrap_or(&[])
    }

    pub fn is_empty(&self) -> bool {
        self.replies.is_empty()
    }

    /// Bytes of frames held.
    pub fn len_bytes(&self) -> usize {
        self.frames.len()
    }
}

/// A buffer that can be emptied for use again.
pub trait Recycle: Default {
    /// Empties it, keeping its capacity; false when it grew too big to keep (a burst must
    /// not pin its peak memory for ever).
    fn recycle(&mut self) -> bool;
}

/// Capacity beyond which a batch buffer is freed instead of kept: a burst must not leave
/// buffers of its peak size behind.
const KEEP_BYTES: usize = 64 * 1024;
const KEEP_ENTRIES: usize = 2048;

impl Recycle for FrameBatch {
    fn recycle(&mut self) -> bool {
        self.text.clear();
        self.entries.clear();
        self.messages = 0;
        self.text.capacity() <= KEEP_BYTES && self.entries.capacity() <= KEEP_ENTRIES
    }
}

impl Recycle for ReplyBatch {
    fn recycle(&mut self) -> bool {
        self.frames.clear();
        self.replies.clear();
        self.frames.capacity() <= KEEP_BYTES && self.replies.capacity() <= KEEP_ENTRIES
    }
}

/// Emptied buffers waiting to be used again, shared by the threads that fill and drain them.
#[derive(Debug)]
pub struct Pool<T> {
    tx: Sender<T>,
    rx: Receiver<T>,
}

impl<T> Clone for Pool<T> {
    fn clone(&self) -> Self {
        Pool {
            tx: self.tx.clone(),
            rx: self.rx.clone(),
        }
    }
}

impl<T: Recycle> Pool<T> {
    /// Keeps at most `capacity` buffers.
    pub fn new(capacity: usize) -> Pool<T> {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        Pool { tx, rx }
    }

    /// An empty buffer: a kept one when there is one.
    pub fn take(&self) -> T {
        self.rx.try_recv().unwrap_or_default()
    }

    /// Gives `buffer` back (it is dropped when the pool is full or it grew too big).
    pub fn give(&self, mut buffer: T) {
        if buffer.recycle() {
            let _ = self.tx.try_send(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::websocket::{Role, parse_header};

    fn conn(key: u32) -> ConnId {
        ConnId {
            loop_index: 0,
            key,
            generation: 1,
        }
    }

    #[test]
    fn answers_are_framed_in_place() {
        let mut batch = ReplyBatch::default();
        for len in [0usize, 5, 125, 126, 300, 70_000] {
            let draft = batch.begin();
            batch.payload().extend(std::iter::repeat_n(b'a', len));
            assert_eq!(batch.draft_text(&draft).len(), len);
            batch.finish(draft, conn(len as u32), true);
        }
        batch.none(conn(9), false);
        let abandoned = batch.begin();
        batch.payload().extend_from_slice(b"gone");
        batch.abandon(abandoned);
        assert_eq!(batch.replies().len(), 7);
        for reply in &batch.replies()[..6] {
            let frame = batch.frame(reply);
            let header = parse_header(frame, Role::Client, usize::MAX)
                .unwrap()
                .unwrap();
            assert_eq!(header.frame_len(), frame.len());
            assert_eq!(header.payload_len, reply.conn.key as usize);
            assert!(frame[header.payload()].iter().all(|&b| b == b'a'));
        }
        assert!(batch.frame(&batch.replies()[6]).is_empty());
    }

    #[test]
    fn a_pool_hands_buffers_back_with_their_capacity() {
        let pool: Pool<FrameBatch> = Pool::new(2);
        let mut batch = pool.take();
        batch.push_message(
            conn(1),
            &"CP1".into(),
            "[2,\"1\",\"Heartbeat\",{}]",
            Instant::now(),
        );
        assert_eq!((batch.messages(), batch.text_len()), (1, 22));
        let capacity = batch.text.capacity();
        pool.give(batch);
        let again = pool.take();
        assert!(again.is_empty() && again.text.capacity() == capacity);
        let mut huge = FrameBatch::default();
        huge.text.reserve(KEEP_BYTES + 1);
        pool.give(huge);
        assert_eq!(
            pool.take().text.capacity(),
            0,
            "a burst's buffer is not kept"
        );
    }
}
