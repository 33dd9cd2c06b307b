//! ocpp-gateway: an OCPP 1.6J central-system gateway for extreme connection counts.
//!
//! ```text
//!                 SO_REUSEPORT: the kernel spreads accepts over the loops
//!   charge points ──────────────┬──────────────────────┬─────────────
//!                               v                      v
//!                     ┌──────────────────┐   ┌──────────────────┐
//!                     │ event loop 0     │   │ event loop N-1   │  one per core, pinned;
//!                     │ listener, slab,  │   │ listener, slab,  │  mio, edge-triggered,
//!                     │ timing wheel     │   │ timing wheel     │  never blocks
//!                     └──┬───────────▲───┘   └──┬───────────▲───┘
//!        try_send frames │           │ replies  │           │  (channel + coalesced Waker)
//!       (hash of cp id)  v           │          v           │
//!                     ┌──────────────┴───┐   ┌──────────────┴───┐
//!                     │ processor 0      │   │ processor P-1    │  own their shard of charge
//!                     │ (bounded queue)  │   │ (bounded queue)  │  point state, no locks
//!                     └────────┬─────────┘   └────────┬─────────┘
//!                              │ events (blocking send: backpressure)
//!                              v
//!                     ┌──────────────────┐   ┌──────────────────┐
//!                     │ journal          │   │ admin            │  /health, /metrics, API;
//!                     │ JSON lines, sync │   │ own mio poll     │  asks processors, never
//!                     └──────────────────┘   └──────────────────┘  blocks on them
//! ```
//!
//! - [`net`]: the loops, the WebSocket upgrade, connections and the timing wheel.
//! - [`ocpp`]: the OCPP-J envelope and typed payloads.
//! - [`processor`]: the processor pool and what it answers.
//! - [`outbound`]: calls of the central system to charge points, and their outcomes.
//! - [`events`]: the event sink and its JSON-lines journal. [`admin`]: the admin listener.
//! - [`server`]: start, shutdown, join. [`config`]: `config.toml`. [`stats`]: counters.
//!
//! Backpressure without deadlock: loops never wait on processors (a full queue pauses reading
//! that one connection, TCP pushes back on the charge point); processors may block on a loop's
//! channel, which the loop always drains. A charge point that does not read its replies fills a
//! bounded write buffer and is closed.

#![forbid(unsafe_code)]
#![warn(rust_2018_idioms)]

pub mod admin;
pub mod config;
pub mod events;
pub mod net;
pub mod ocpp;
pub mod outbound;
pub mod processor;
pub mod server;
pub mod stats;

pub use config::Config;
pub use server::{Server, ShutdownHandle};
