//! The controller's watch caches (reflector stores) and the one way to wait for a cache's
//! first list, shared by the executors, the plugin registry and the health endpoints.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::runtime::reflector::Store;
use kubetask_api::{Agent, Task};

/// The controller's caches (the watches' reflector stores).
#[derive(Clone)]
pub struct Caches {
    pub tasks: Store<Task>,
    pub jobs: Store<Job>,
    pub agents: Store<Agent>,
}

/// How many objects each cache holds.
pub struct Counts {
    pub tasks: usize,
    pub jobs: usize,
    pub agents: usize,
}

impl Caches {
    pub fn counts(&self) -> Counts {
        Counts {
            tasks: self.tasks.len(),
            jobs: self.jobs.len(),
            agents: self.agents.len(),
        }
    }
}

/// Whether a watch cache has finished its first list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listed {
    Yes,
    /// Not within the wait.
    NotYet,
    /// The cache has no writer (in-process tests build stores without one): it never will be.
    NoWriter,
}

/// Waits up to `within` for a watch cache's first list. Each wait is a fresh short future:
/// kube 5's `Store::wait_until_ready` keeps one waker (its `DelayedInit` polls a oneshot
/// receiver, which remembers only the last task that polled it), so of several tasks waiting
/// at once only one is woken; a new wait after the list returns at once.
pub(crate) async fn listed<K>(store: &Store<K>, within: Duration) -> Listed
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    const STEP: Duration = Duration::from_millis(200);
    let mut waited = Duration::ZERO;
    loop {
        match tokio::time::timeout(STEP, store.wait_until_ready()).await {
            Ok(Ok(())) => return Listed::Yes,
            Ok(Err(_)) => return Listed::NoWriter,
            Err(_) if waited + STEP >= within => return Listed::NotYet,
            Err(_) => waited += STEP,
        }
    }
}
