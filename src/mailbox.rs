//! Every thread's inbox in one place: what other threads send an event loop ([`ToLoop`], through
//! a [`LoopHandle`]), what they send a processor ([`ToProcessor`], through a [`ProcessorHandle`])
//! and what processors send the cluster thread ([`Op`], through a [`ClusterSender`]). `net`,
//! `processor` and `cluster` all use this module and never each other.
//!
//! Backpressure without deadlock: a loop never blocks on a processor (it checks
//! [`ProcessorQueue::has_room`] and pauses the connection instead); processors may block on a
//! loop's channel, which the loop always drains. A processor's queue is bounded in messages and
//! in bytes, counted here by the loops that fill it and the processor that empties it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use crossbeam_utils::sync::{Parker, Unparker};
use mio::Waker;

use crate::batch::{FrameBatch, Pool, ReplyBatch};
use crate::call::OutboundCall;
use crate::events::ReplyRoute;
use crate::query::Query;
use crate::state::Saved;
use crate::stats::Stats;
use crate::types::{ChargePointId, CloseReason, ConnId};

/// What other threads ask of an event loop.
#[derive(Debug)]
pub enum ToLoop {
    /// Answers to write, each to its connection.
    Replies(ReplyBatch),
    /// Close the connection with a WebSocket close frame.
    Close { conn: ConnId, reason: CloseReason },
    /// Send a CALL of the central system to the connection (queued behind one in flight).
    Call { conn: ConnId, call: OutboundCall },
    /// A liveness probe from the admin thread: store `seq` in the loop's `alive` slot.
    Probe { seq: u64 },
    /// The CRLs were read again: close every connection whose client certificate they revoke.
    SweepRevoked,
}

/// What other threads ask of a processor.
#[derive(Debug)]
pub enum ToProcessor {
    /// What a loop read for this processor's charge points, in order.
    Batch(FrameBatch),
    /// A CALL of the central system for `cp`, wherever it is connected.
    Call {
        cp: ChargePointId,
        call: OutboundCall,
    },
    /// The operator API asks about (or acts on) the charge points this processor owns.
    Query(Query),
    /// A liveness probe from the admin thread: store `seq` in the processor's `alive` slot.
    Probe { seq: u64 },
    /// Another node holds `cp` since `at_ms` (cluster mode): close our connection of it if
    /// it is older.
    TakenOver { cp: ChargePointId, at_ms: u64 },
    /// What Redis knows of `cp`, which connected with `session` (cluster mode): its messages
    /// are held until this arrives.
    Loaded {
        cp: ChargePointId,
        session: u64,
        lookup: Lookup,
    },
    /// Test hook: block until the sender side is dropped (a stuck processor, for `/health`).
    #[cfg(feature = "test-hooks")]
    Stall(Receiver<()>),
}

/// The parts of a loop other threads may touch.
#[derive(Debug)]
pub struct LoopShared {
    pub waker: Waker,
    /// Set by the first sender after the loop last drained its channel; later senders skip the
    /// wake syscall (one wake per batch of messages, not per message).
    wake_pending: AtomicBool,
    shutdown: AtomicBool,
}

impl LoopShared {
    pub fn new(waker: Waker) -> LoopShared {
        LoopShared {
            waker,
            wake_pending: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
        }
    }

    /// Called by the loop just before it drains its channel.
    pub fn clear_wake(&self) {
        self.wake_pending.store(false, Ordering::SeqCst);
    }

    pub fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }
}

/// A sender's handle on one event loop: its channel plus its waker.
#[derive(Debug, Clone)]
pub struct LoopHandle {
    pub tx: Sender<ToLoop>,
    pub shared: Arc<LoopShared>,
}

impl LoopHandle {
    /// Queues `msg` (blocking while the loop's channel is full: loops never wait on their
    /// senders, so this always ends) and wakes the loop unless a wake is already pending.
    /// False when the loop has exited.
    pub fn send(&self, msg: ToLoop) -> bool {
        if self.tx.send(msg).is_err() {
            return false;
        }
        self.wake();
        true
    }

    /// As [`LoopHandle::send`] without waiting: false when the channel is full or closed.
    pub fn try_send(&self, msg: ToLoop) -> bool {
        if self.tx.try_send(msg).is_err() {
            return false;
        }
        self.wake();
        true
    }

    /// Asks the loop to stop accepting and drain its connections.
    pub fn request_shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.force_wake();
    }

    fn wake(&self) {
        if !self.shared.wake_pending.swap(true, Ordering::SeqCst) {
            self.force_wake();
        }
    }

    fn force_wake(&self) {
        if let Err(e) = self.shared.waker.wake() {
            log::error!("cannot wake an event loop: {e}");
        }
    }
}

/// Every loop, and the pool their answer batches come from and go back to.
#[derive(Debug, Clone)]
pub struct Loops {
    pub handles: Arc<[LoopHandle]>,
    pub replies: Pool<ReplyBatch>,
}

impl Loops {
    pub fn get(&self, index: u16) -> Option<&LoopHandle> {
        self.handles.get(usize::from(index))
    }

    /// Wakes the loops of `mask` ([`ProcessorQueue::take_room_wanted`]; its last bit wakes
    /// every loop from 63 on).
    pub fn wake_mask(&self, mask: u64) {
        for (index, handle) in self.handles.iter().enumerate() {
            if mask & (1 << index.min(63)) != 0 {
                handle.wake();
            }
        }
    }

    /// Sends `msg` to the loop of `conn` (false when that loop has exited).
    pub fn send(&self, conn: ConnId, msg: ToLoop) -> bool {
        self.get(conn.loop_index).is_some_and(|h| h.send(msg))
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }
}

impl ReplyRoute for Loops {
    fn deliver(&self, loop_index: u16, batch: ReplyBatch) {
        match self.get(loop_index) {
            // False only when the loop has exited (shutdown): nothing left to deliver to.
            Some(handle) => {
                handle.send(ToLoop::Replies(batch));
            }
            None => log::error!("answers for unknown loop {loop_index} dropped"),
        }
    }

    fn take_batch(&self) -> ReplyBatch {
        self.replies.take()
    }

    fn give_batch(&self, batch: ReplyBatch) {
        self.replies.give(batch);
    }
}

/// How much waits for a processor, counted by the loops that fill its queue and the processor
/// that empties it; bounded in messages (`processor.queue_capacity`) and in bytes
/// (`processor.queue_bytes`).
#[derive(Debug)]
pub struct ProcessorQueue {
    bytes: AtomicUsize,
    messages: AtomicUsize,
    max_bytes: usize,
    max_messages: usize,
    /// Connections the loops stopped reading until this queue has room for their message.
    waiters: AtomicUsize,
    /// Loops to wake when the processor takes messages out (bit `i`: loop `i`; the last bit
    /// stands for every loop from 63 on).
    room_wanted: AtomicU64,
}

impl ProcessorQueue {
    pub fn new(max_messages: usize, max_bytes: usize) -> ProcessorQueue {
        ProcessorQueue {
            bytes: AtomicUsize::new(0),
            messages: AtomicUsize::new(0),
            max_bytes,
            max_messages,
            waiters: AtomicUsize::new(0),
            room_wanted: AtomicU64::new(0),
        }
    }

    /// A loop that holds a batch or paused connections for this queue asks to be woken when
    /// the processor takes messages out. It must look for room once more after asking: room
    /// made before the ask that look sees, room made after it wakes the loop.
    pub fn want_room(&self, loop_index: u16) {
        self.room_wanted
            .fetch_or(1 << loop_index.min(63), Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// The processor took messages out: the loops that asked to be woken (each ask is
    /// answered once), as a mask for [`Loops::wake_mask`]; 0, for one load, when none asked.
    pub fn take_room_wanted(&self) -> u64 {
        fence(Ordering::SeqCst);
        if self.room_wanted.load(Ordering::SeqCst) == 0 {
            return 0;
        }
        self.room_wanted.swap(0, Ordering::SeqCst)
    }

    /// A loop stopped reading a connection until there is room here ...
    pub fn wait(&self) {
        self.waiters.fetch_add(1, Ordering::Relaxed);
    }

    /// ... and took it off its waiting list.
    pub fn unwait(&self) {
        self.waiters.fetch_sub(1, Ordering::Relaxed);
    }

    /// Connections waiting for room here.
    pub fn waiters(&self) -> usize {
        self.waiters.load(Ordering::Relaxed)
    }

    /// Whether `messages` more messages of `bytes` in all fit (a single message always fits an
    /// empty queue, whatever its size; more than one only within the bounds: a loop's batch
    /// that grows while the queue is empty is still bounded by it).
    pub fn has_room(&self, messages: usize, bytes: usize) -> bool {
        let (queued_messages, queued_bytes) = self.depth();
        queued_messages + messages <= self.max_messages
            && (queued_bytes + bytes <= self.max_bytes || (queued_messages == 0 && messages == 1))
    }

    pub fn add(&self, messages: usize, bytes: usize) {
        self.messages.fetch_add(messages, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn sub(&self, messages: usize, bytes: usize) {
        self.messages.fetch_sub(messages, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// (messages, bytes) waiting.
    pub fn depth(&self) -> (usize, usize) {
        (
            self.messages.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// True when the queue is at either bound, or connections wait for room in it.
    pub fn is_saturated(&self) -> bool {
        let (messages, bytes) = self.depth();
        messages >= self.max_messages || bytes >= self.max_bytes || self.waiters() > 0
    }
}

/// A sender's handle on one processor: its channel, its queue counters and its doorbell.
///
/// A processor sleeps on a parker rather than in the channel's blocking receive: that receive
/// spins and yields the CPU several times before it sleeps, which on a busy host turns every
/// hand-over into extra context switches. A sender rings the bell after each message; ringing
/// a processor that is awake costs one atomic swap.
#[derive(Debug, Clone)]
pub struct ProcessorHandle {
    pub tx: Sender<ToProcessor>,
    pub queue: Arc<ProcessorQueue>,
    bell: Unparker,
}

impl ProcessorHandle {
    /// Sends `msg` unless the channel is full (or the processor is gone).
    pub fn try_send(&self, msg: ToProcessor) -> Result<(), ToProcessor> {
        match self.tx.try_send(msg) {
            Ok(()) => {
                self.bell.unpark();
                Ok(())
            }
            Err(TrySendError::Full(msg) | TrySendError::Disconnected(msg)) => Err(msg),
        }
    }

    /// Sends `msg`, waiting while the channel is full; false when the processor is gone.
    pub fn send(&self, msg: ToProcessor) -> bool {
        let sent = self.tx.send(msg).is_ok();
        self.bell.unpark();
        sent
    }

    /// The processor's doorbell alone (it holds no sender: ringing it after the last sender
    /// is dropped lets the processor see at once that its channel closed).
    pub fn bell(&self) -> Unparker {
        self.bell.clone()
    }
}

/// Every processor, and the pool of frame batches loops fill and processors empty.
#[derive(Debug, Clone)]
pub struct Processors {
    pub handles: Arc<[ProcessorHandle]>,
    pub batches: Pool<FrameBatch>,
}

impl Processors {
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The handle of the processor that owns `cp`.
    pub fn of(&self, cp: &str) -> &ProcessorHandle {
        &self.handles[shard_of(cp, self.handles.len())]
    }
}

/// The processor that owns `cp`, stable for the life of the process (and across processes with
/// the same thread count, since the hash is unkeyed).
pub fn shard_of(cp: &str, processors: usize) -> usize {
    // FNV-1a: tiny, unkeyed, good enough spread for identities that differ in a few characters.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in cp.as_bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % processors.max(1) as u64) as usize
}

/// The receiving end of a processor's channel, its queue counters and where it sleeps.
pub struct ProcessorInbox {
    pub rx: Receiver<ToProcessor>,
    pub queue: Arc<ProcessorQueue>,
    pub parker: Parker,
}

/// A processor's channel: the handle for senders and the inbox for the processor.
pub fn processor_channel(
    slots: usize,
    max_messages: usize,
    max_bytes: usize,
) -> (ProcessorHandle, ProcessorInbox) {
    let (tx, rx) = crossbeam_channel::bounded(slots.max(1));
    let queue = Arc::new(ProcessorQueue::new(max_messages, max_bytes));
    let parker = Parker::new();
    (
        ProcessorHandle {
            tx,
            queue: Arc::clone(&queue),
            bell: parker.unparker().clone(),
        },
        ProcessorInbox { rx, queue, parker },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("CP1", 4), shard_of("CP1", 4));
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            counts[shard_of(&format!("CP{i}"), 4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
        assert_eq!(shard_of("anything", 1), 0);
    }

    #[test]
    fn a_queue_is_bounded_in_messages_and_bytes() {
        let queue = ProcessorQueue::new(3, 100);
        assert!(
            queue.has_room(1, 1000),
            "one message always fits an empty queue"
        );
        assert!(
            !queue.has_room(2, 1000),
            "a batch of two past the bound does not: it grows with the loop's batch"
        );
        queue.add(1, 60);
        assert!(queue.has_room(1, 40));
        assert!(!queue.has_room(1, 41));
        queue.add(2, 10);
        assert!(!queue.has_room(1, 1) && queue.is_saturated());
        queue.sub(3, 70);
        assert_eq!(queue.depth(), (0, 0));
    }
}

// ---- the cluster thread's inbox ----

/// What a processor tells the cluster.
#[derive(Debug, Clone)]
pub enum Op {
    /// This node now holds `cp` with a connection made at `at_ms`.
    Connected {
        cp: ChargePointId,
        session: u64,
        at_ms: u64,
    },
    /// The connection made at `at_ms` is gone.
    Disconnected { cp: ChargePointId, at_ms: u64 },
    /// What is kept of `cp` now (None: it is no longer accepted): shared with the other nodes.
    Saved { cp: Box<str>, record: Option<Saved> },
    /// A Basic-auth credential set on this node (its credentials-file line): for every node.
    Credential { line: String },
    /// The gateway is stopping: let go of the processors (they cannot stop while we hold a
    /// sender to them).
    Release,
    /// The processors have stopped: write what is left and end (other holders of senders,
    /// such as the credentials, may outlive the thread).
    Finish,
}

/// What Redis knows of a charge point that just connected, for its processor.
#[derive(Debug)]
pub enum Lookup {
    /// Its shared state (accepted on some node before).
    Found(Saved),
    /// Redis has no record of it.
    Absent,
    /// Redis could not be asked: go on with what this node knows.
    Unavailable,
}

/// A processor's end of the cluster thread's channel.
#[derive(Debug, Clone)]
pub struct ClusterSender {
    tx: Sender<Op>,
    stats: Arc<Stats>,
}

impl ClusterSender {
    /// The sending end of the cluster thread's channel; drops are counted in `stats`.
    pub fn new(tx: Sender<Op>, stats: Arc<Stats>) -> ClusterSender {
        ClusterSender { tx, stats }
    }

    /// Hands `op` over without waiting; when the channel is full it is dropped and counted
    /// (the channel holds a minute of a storm of connects; the buffer behind it holds more).
    /// False when it was dropped.
    pub fn send(&self, op: Op) -> bool {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(op) {
            self.stats.cluster.cluster_ops_dropped.inc();
            return false;
        }
        true
    }

    /// Tells the cluster thread to let go of the processors (waits for room).
    pub fn release(&self) {
        let _ = self.tx.send(Op::Release);
    }

    /// Tells the cluster thread that nothing more will come (waits for room).
    pub fn finish(&self) {
        let _ = self.tx.send(Op::Finish);
    }
}
