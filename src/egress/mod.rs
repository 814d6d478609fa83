//! Egress of agent pods: the exit proxy every connection leaves through
//! ([`exit`]), the per-Task credentials it checks ([`token`]), the addresses it refuses
//! ([`addresses`]) and the TLS server name it holds to the CONNECT host ([`sni`]).
//! docs/security.md is the threat model and what each mode guarantees.

pub mod addresses;
pub mod audit;
pub mod canary;
pub mod cluster;
pub mod enforcement;
pub mod exit;
pub mod policy;
pub mod sni;
pub mod token;

pub use exit::{Audit, Decision, Exit, Grant, Limits, Resolve, SystemResolver, Tasks, Verdict};
pub use token::TokenKey;
