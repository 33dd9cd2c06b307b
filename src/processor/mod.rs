//! The processor pool: a fixed set of threads that own all charge point state, sharded by
//! identity. A charge point always maps to the same processor (`mailbox::shard_of`), so its
//! messages are handled in order and its state needs no lock. Loops hand messages over in
//! batches and never wait; processors answer in batches through the owning loop's handle.
//!
//! - [`shard`]: one processor's charge points and what it does with a batch (pure).
//! - [`pool`]: the threads around the shards.
//! - [`handlers`]: what each CALL is answered, following the files of `crate::policy`;
//!   [`handlers_v201`] the same for OCPP 2.0.1 stations.

pub mod handlers;
pub mod handlers_v201;
pub mod journal_budget;
pub mod pool;
pub mod shard;
