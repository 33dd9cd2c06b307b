//! The processor pool: a fixed set of threads that own all charge point state, sharded by
//! identity. A charge point always maps to the same processor ([`shard_of`]), so its messages
//! are handled in order and its state needs no lock. Loops hand frames over with `try_send` on a
//! bounded channel and never wait; processors answer through the owning loop's [`LoopHandle`].
//!
//! [`LoopHandle`]: crate::net::LoopHandle

pub mod handlers;
pub mod policy;
pub mod pool;
pub mod query;

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::time::Instant;

use crossbeam_channel::Receiver;

use crate::net::handshake::ChargePointId;
use crate::net::{CloseCause, ConnId};
use crate::ocpp::rpc::Frame;
use crate::outbound::OutboundCall;
use crate::processor::query::Query;

/// What a loop tells a processor. A connection's messages arrive in the order it sent them:
/// `Connected`, its frames, then `Disconnected`.
#[derive(Debug)]
pub enum Inbound {
    /// `seq` orders connections across loops: of two connections with one identity, the one
    /// with the higher `seq` connected later and wins, whichever message arrives first.
    Connected {
        conn: ConnId,
        cp: ChargePointId,
        seq: u64,
        peer: SocketAddr,
    },
    Frame {
        conn: ConnId,
        cp: ChargePointId,
        frame: Frame,
        /// When the loop read it (for the processing-latency histogram).
        received: Instant,
    },
    Disconnected {
        conn: ConnId,
        cp: ChargePointId,
        cause: CloseCause,
    },
    /// A CALL of the central system for `cp`, wherever it is connected.
    Call {
        cp: ChargePointId,
        call: OutboundCall,
    },
    /// The operator API asks about (or acts on) the charge points this processor owns.
    Query(Query),
    /// A liveness probe from the admin thread: store `seq` in the processor's `alive` slot.
    Probe { seq: u64 },
    /// Test hook: block until the sender side is dropped (a stuck processor, for `/health`).
    Stall(Receiver<()>),
}

/// The processor that owns `cp`, stable for the life of the process (and across processes with
/// the same thread count, since the hasher is unkeyed).
pub fn shard_of(cp: &str, processors: usize) -> usize {
    // FNV-1a: tiny, unkeyed, good enough spread for identities that differ in a few characters.
    let mut hasher = Fnv1a(0xcbf2_9ce4_8422_2325);
    cp.hash(&mut hasher);
    (hasher.finish() % processors.max(1) as u64) as usize
}

struct Fnv1a(u64);

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shard_of;

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
}
