//! Plain tools with no dependencies, shared by the gateway and `ocpp-bench`: [`Rng`], seeded
//! jitter (never for anything security-related), and [`WarnBudget`], a budget of log lines per
//! second so input from the network cannot flood the log.

#![forbid(unsafe_code)]

mod rng;
mod warn_budget;

pub use rng::Rng;
pub use warn_budget::WarnBudget;
