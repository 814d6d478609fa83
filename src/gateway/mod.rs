//! The model gateway (`kubetask gateway serve`, docs/budgets.md): every agent's model calls
//! metered on their way to the provider. A request's virtual key names its Task ([`keys`]); the
//! proxy swaps it for the provider's real key and passes the answer back as it comes
//! ([`proxy`]), reading its usage as the bytes pass ([`usage`]), pricing it ([`prices`]) and
//! adding it to the Task's ledger in the API server ([`ledger`]), against which budgets are
//! enforced — a call near a budget with its output limit lowered to what is left ([`clamp`]).

pub mod clamp;
pub mod keys;
pub mod ledger;
pub mod prices;
pub mod proxy;
pub mod usage;
