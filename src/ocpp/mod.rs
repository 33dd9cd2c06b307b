//! OCPP-J 1.6: the RPC envelope ([`rpc`]) and the typed payloads of the actions the gateway
//! handles ([`v16`]).

pub mod rpc;
pub mod v16;
