//! The model gateway (issue 37, in progress): every agent's model calls metered on their way to
//! the provider. Built so far, and tested: reading the usage of every response of the four APIs
//! it will front, whole or streamed ([`usage`]), and pricing it from an admin's price table
//! ([`prices`]). Not built yet: the proxy itself (`kubetask gateway`), virtual keys, budgets.

pub mod keys;
pub mod ledger;
pub mod prices;
pub mod proxy;
pub mod usage;
