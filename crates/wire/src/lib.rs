//! Sans-I/O codecs of a charge point's connection, in the order its bytes meet them: the PROXY
//! protocol header ([`proxy`]), the HTTP upgrade request ([`upgrade`]) with its Basic
//! credentials ([`basic`]), then RFC 6455 frames ([`websocket`]).
//!
//! The bottom layer of the gateway: bytes in, decisions and bytes out. No sockets, threads,
//! clocks or OCPP (the caller names the subprotocols and judges identities), so each codec is
//! tested as a pure function, fuzzed against a reference implementation, and reused by the load
//! generator.

#![forbid(unsafe_code)]
#![warn(rust_2018_idioms)]

pub mod basic;
pub mod proxy;
pub mod upgrade;
pub mod websocket;
