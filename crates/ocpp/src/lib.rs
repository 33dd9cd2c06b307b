//! OCPP-J without I/O: the RPC envelope ([`rpc`]), the typed and validated payloads of OCPP 1.6
//! ([`v16`]) and the rules for charge point identities ([`identity`]).
//!
//! The bottom layer of the gateway with `wire`: serde only, no sockets, threads, clocks or
//! channels, so every rule here is tested as a pure function and reused by the load generator.

#![forbid(unsafe_code)]
#![warn(rust_2018_idioms)]

pub mod identity;
pub mod rpc;
pub mod v16;

pub use identity::{IdentityRule, MAX_CHARGE_POINT_ID_LEN, is_valid_identity};

/// The WebSocket subprotocol of OCPP-J 1.6, offered by charge points and selected by us.
pub const SUBPROTOCOL: &str = "ocpp1.6";
