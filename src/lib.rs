//! ocpp-gateway: an OCPP 1.6J central-system gateway for extreme connection counts.
//! Billing answers (Start/StopTransaction, MeterValues) go out only once every place that keeps
//! them (journal, Kafka, state file) has them.
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
//! Dependencies are meant to point one way (not yet true: `net` and `processor` still import a
//! type of each other, and most top-level modules form one import cycle, which the "Layers"
//! step removes): [`types`] (identity, connection handle, close cause) and
//! [`ocpp`] at the bottom; [`batch`], [`call`] and [`events`] above them; [`mailbox`] (both
//! mailboxes); then [`net`] and [`processor`]; [`commands`],
//! [`admin`]; [`server`] on top. [`state`] (what one node keeps across restarts) sits beside
//! [`events`]: processors hand it changes, it never calls them; so does [`cluster`] (Redis). [`config`], [`stats`], [`clock`], [`rng`] and
//! [`warn_budget`] are leaves used throughout.
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
pub mod kafka;
pub mod mailbox;
pub mod net;
pub mod processor;
pub mod query;
pub mod rng;
pub mod security;
pub mod server;
pub mod state;
pub mod stats;
pub mod types;
pub mod warn_budget;

pub use config::Config;
pub use server::{Server, ShutdownHandle};
