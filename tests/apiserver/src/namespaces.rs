//! The namespace controller: a deleted namespace turns `Terminating` at once (as in
//! kube-apiserver); its contents are deleted shortly after, then the namespace itself.

use std::sync::Arc;
use std::time::Duration;

use crate::meta::text;
use crate::server::{ServerEvents, Shared, lock};
use crate::state::EventType;

/// How long after a namespace is marked for deletion its contents go.
const DELAY: Duration = Duration::from_millis(20);

/// Runs until the server shuts down.
pub async fn run(shared: Arc<Shared>) {
    let mut events = ServerEvents::subscribe(&shared, "namespace controller");
    while let Some(event) = events.next().await {
        let terminating = event.storage_key == "/namespaces"
            && event.event_type == EventType::Modified
            && event
                .object
                .pointer("/metadata/deletionTimestamp")
                .is_some();
        if terminating {
            let name = text(&event.object, "name").to_owned();
            let shared = shared.clone();
            tokio::spawn(async move {
                tokio::time::sleep(DELAY).await;
                lock(&shared.state).empty_namespace(&name);
            });
        }
    }
}
