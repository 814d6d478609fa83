//! The asynchronous garbage collector (with `Admission::async_gc`): like
//! kube-controller-manager's, it deletes the dependents of a removed owner some time after
//! the owner is gone, a few at a time and in no particular order, so a client sees an owner's
//! Job and ConfigMap disappear separately and late.

use std::sync::Arc;
use std::time::Duration;

use crate::server::{Shared, lock};

/// The pause between rounds.
const ROUND: Duration = Duration::from_millis(25);
/// Dependents handled per round at most.
const PER_ROUND: usize = 4;

/// Runs until the server shuts down.
pub async fn run(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    let mut ticker = tokio::time::interval(ROUND);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                lock(&shared.state).collect_some_garbage(PER_ROUND);
            }
            _ = shutdown.changed() => return,
        }
    }
}
