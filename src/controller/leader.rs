//! Leader election on a `coordination.k8s.io/v1` Lease (kube-lease-manager): only the holder
//! reconciles; a replica that loses the lease stops at once.

use std::time::Duration;

use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    /// How long a lease is valid after its last renewal; a standby takes over after this.
    pub duration: Duration,
    /// Renew this long before expiry.
    pub grace: Duration,
}

/// A held lease. Dropping the receiver releases it.
pub struct Leadership {
    state: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

/// Waits until this replica holds the lease, or `shutdown` fires (`None`).
pub async fn acquire(
    client: kube::Client,
    options: &LeaseOptions,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<Option<Leadership>> {
    let manager = LeaseManagerBuilder::new(client, &options.name)
        .with_namespace(&options.namespace)
        .with_identity(&options.identity)
        .with_duration(options.duration.as_secs().max(2))
        .with_grace(options.grace.as_secs().max(1))
        .with_field_manager(format!("kubetask-controller-{}", options.identity))
        .build()
        .await?;
    let (mut state, task) = manager.watch().await;
    loop {
        if *state.borrow_and_update() {
            tracing::info!(lease = %options.name, identity = %options.identity, "acquired the leader lease");
            return Ok(Some(Leadership { state, task }));
        }
        tracing::info!(lease = %options.name, identity = %options.identity, "waiting for the leader lease");
        tokio::select! {
            changed = state.changed() => changed?,
            _ = shutdown.changed() => {
                drop(state);
                let _ = task.await;
                return Ok(None);
            }
        }
    }
}

impl Leadership {
    /// Resolves when the lease is lost.
    pub async fn lost(&mut self) {
        loop {
            if !*self.state.borrow_and_update() {
                return;
            }
            if self.state.changed().await.is_err() {
                return;
            }
        }
    }

    /// Releases the lease (so a standby takes over at once) and waits for the release.
    pub async fn release(self) {
        drop(self.state);
        match tokio::time::timeout(Duration::from_secs(5), self.task).await {
            Ok(Ok(Ok(_))) => tracing::info!("released the leader lease"),
            Ok(Ok(Err(error))) => tracing::warn!(%error, "releasing the leader lease"),
            Ok(Err(error)) => tracing::warn!(%error, "the lease task failed"),
            Err(_) => tracing::warn!("timed out releasing the leader lease"),
        }
    }
}
