//! ocpp-gateway: an OCPP 1.6J, 2.0.1 and 2.1 central-system gateway for extreme connection
//! counts.
//! Billing answers (Start/StopTransaction, MeterValues, TransactionEvent) go out only once every
//! place that keeps them (journal, Kafka, the Redis events stream, state file) has them.
//!
//! ```text
//!                 SO_REUSEPORT: the kernel spreads accepts over the loops
//!   charge points ──────────────┬──────────────────────┬─────────────
//!                               v                      v
//!                     ┌──────────────────┐   ┌──────────────────┐
//!                     │ event loop 0     │   │ event loop N-1   │  one per core, pinned;
//!                     │ listener, slab,  │   │ listener, slab,  │  mio, edge-triggered,
//!                     │ wheel, one read  │   │ wheel, one read  │  never blocks
//!                     │ buffer per loop  │   │ buffer per loop  │
//!                     └──┬───────────▲───┘   └──┬───────────▲───┘
//!   a batch per turn and │           │ answers, │           │  one channel send and at
//!   processor (hash of   v           │ framed,  v           │  most one wake per batch
//!   the identity)     ┌──────────────┴───┐   ┌──────────────┴───┐
//!                     │ processor 0      │   │ processor P-1    │  own their shard of charge
//!                     │ (bounded queue)  │   │ (bounded queue)  │  point state, no locks
//!                     └────────┬─────────┘   └────────┬─────────┘
//!                              │ rendered lines, in chunks (waits when full: backpressure)
//!                              v
//!                     ┌──────────────────┐   ┌──────────────────┐
//!                     │ journal          │   │ admin            │  /health, /metrics, API;
//!                     │ JSON lines, sync │   │ own mio poll     │  asks processors, never
//!                     └──────────────────┘   └──────────────────┘  blocks on them
//! ```
//!
//! ## Layers
//!
//! Below the gateway crate are crates of its workspace: two with no I/O at all, neither using the
//! other, `wire` (PROXY header, upgrade request, Basic credentials, WebSocket frames) and `ocpp`
//! (RPC envelope, CallErrors, typed and validated payloads, identity rules); `transport` on
//! `wire` (a connection's byte stream over mio, plain or TLS, buffers held only while needed);
//! and `basics` (seeded jitter, a log budget). ocpp-bench uses these, never this crate. Inside this crate, a
//! module may use only modules of a lower row of this table; modules of one row never use each
//! other (net, processor, cluster and the Kafka sink meet only through the seam's messages).
//! `tests/layers.rs` reads every path of the sources that reaches another module (`crate::`, a
//! `super::` chain to the root, an item re-exported here) against this table and fails on one
//! that goes up or sideways, so no cycle among these modules can form.
//!
//! | row | modules                                   | what they are                               |
//! |-----|-------------------------------------------|---------------------------------------------|
//! | 11  | server                                    | wires everything; nothing imports it        |
//! | 10  | admin, kafka_commands                     | command sources: HTTP API (/health, /metrics), Kafka |
//! | 9   | net, processor, cluster, kafka            | loops, processors, Redis, the Kafka sink: side by side |
//! | 8   | journal                                   | journal lines and their writer; the file sink |
//! | 7   | commands                                  | a command's way to its charge point         |
//! | 6   | mailbox                                   | every thread's inbox (loop, processor, cluster) |
//! | 5   | call, state                               | outbound calls; the state file and its record |
//! | 4   | events                                    | event types, the sink interface, held answers |
//! | 3   | batch, query                              | frames and answers in bulk; API questions   |
//! | 2   | security                                  | credentials, certificates, lockouts         |
//! | 1   | config, stats                             | validated configuration; counters           |
//! | 0   | types, clock, trace, policy               | leaves                                      |
//!
//! Backpressure without deadlock: loops never wait on processors (a full queue pauses reading
//! that one connection, TCP pushes back on the charge point); processors may block on a loop's
//! channel, which the loop always drains. A charge point that does not read its replies fills a
//! bounded write backlog and is closed.

#![forbid(unsafe_code)]
#![warn(rust_2018_idioms)]

pub mod admin;
pub mod batch;
pub mod call;
pub mod clock;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod events;
pub mod journal;
pub mod kafka;
pub mod kafka_commands;
pub mod mailbox;
pub mod net;
pub mod policy;
pub mod processor;
pub mod query;
pub mod security;
pub mod server;
pub mod state;
pub mod stats;
pub mod trace;
pub mod types;

pub use config::Config;
pub use server::{Server, ShutdownHandle};
