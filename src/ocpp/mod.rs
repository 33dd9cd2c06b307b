//! OCPP-J 1.6: the RPC envelope ([`rpc`]) and the typed payloads of the actions the gateway
//! handles ([`v16`]).

pub mod rpc;
pub mod v16;

/// The WebSocket subprotocol of OCPP-J 1.6, offered by charge points and selected by us.
pub const SUBPROTOCOL: &str = "ocpp1.6";
