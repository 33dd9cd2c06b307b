//! The network side: per-core event loops that own every charge point's socket.
//!
//! - [`event_loop`]: accept, poll, the slab, timer dispatch, the mailbox, the batches.
//! - [`session`]: one connection's behaviour, driven by the loop through transitions.
//! - [`transport`]: the byte stream (plain TCP; TLS slots in here) and held buffers.
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
pub mod records;
pub mod session;
pub mod timer;
pub mod tls;
pub mod transport;
