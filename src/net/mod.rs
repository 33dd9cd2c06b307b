//! The network side: per-core event loops that own every charge point's socket.
//!
//! - [`event_loop`]: accept, poll, the slab, timer dispatch, the mailbox, the batches.
//! - [`session`]: one connection's behaviour, driven by the loop through transitions.
//! - the byte stream (plain TCP or TLS, the PROXY header) and held buffers are the `transport`
//!   crate's; ocpp-bench's charge points use the same.
//! - the codecs of the bytes (PROXY header, upgrade request, RFC 6455 frames) are the `wire`
//!   crate's, sans-I/O.
//! - [`context`]: what a loop lends a connection. [`timer`]: the hashed timing wheel.
//! - [`outbound`]: a connection's queue of calls of the central system.
//!
//! A connection never leaves its loop; other threads name it by [`ConnId`] and post to the
//! loop's mailbox (`crate::mailbox`).
//!
//! [`ConnId`]: crate::types::ConnId

pub mod context;
pub mod event_loop;
pub mod outbound;
pub mod session;
pub mod timer;
