//! Reads of Agents the watch cache does not hold, shared by the reconciles that need the same
//! answer.
//!
//! A Task created right after its Agent can reach the controller before the Agent's watch
//! event does, so a miss in the cache is confirmed with a GET, which the API server answers
//! from its current state. A GET sent after a reconcile started therefore sees every Agent
//! created before that reconcile's Task, whichever Task asked for it: the reconciles that need
//! the same Agent queue on one lock, and each either reuses the answer of a GET sent after it
//! started or sends one for itself and those behind it. A burst of Tasks without an Agent then
//! sends a GET per wave of reconciles instead of one per Task (`docs/performance.md`), and a
//! single Task still gets a GET of its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use kube::api::Api;
use kubetask_api::Agent;

use super::failure::Failure;

/// What a GET of one Agent answered, and when it was sent.
struct Answer {
    sent: Instant,
    agent: Result<Option<Agent>, Failure>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Answer>>>;

/// The Agent reads in flight or just answered, by namespace and name.
#[derive(Default)]
pub struct AgentReads {
    slots: Mutex<HashMap<(String, String), Slot>>,
}

impl AgentReads {
    /// The Agent `name` in `namespace` as the API server has it at some moment after `since`
    /// (the start of the reconcile that asks): `None` when it does not exist.
    pub async fn get(
        &self,
        client: &kube::Client,
        namespace: &str,
        name: &str,
        since: Instant,
    ) -> Result<Option<Agent>, Failure> {
        let key = (namespace.to_owned(), name.to_owned());
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .clone();
        let agent = {
            let mut last = slot.lock().await;
            match &*last {
                Some(answer) if answer.sent >= since => answer.agent.clone(),
                _ => {
                    let sent = Instant::now();
                    let agent = Api::<Agent>::namespaced(client.clone(), namespace)
                        .get_opt(name)
                        .await
                        .map_err(|error| {
                            let action = format!("read Agent {name:?} in namespace {namespace:?}");
                            Failure::from_api(&error, &action)
                        });
                    *last = Some(Answer {
                        sent,
                        agent: agent.clone(),
                    });
                    agent
                }
            }
        };
        // An answer is of use only to the reconciles waiting for it (later ones started after
        // it was sent): the last one out drops the slot, if the map still holds that one.
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if Arc::strong_count(&slot) == 2
            && slots.get(&key).is_some_and(|held| Arc::ptr_eq(held, &slot))
        {
            slots.remove(&key);
        }
        agent
    }

    /// How many Agents have reads in flight or waiting (for tests).
    #[cfg(test)]
    fn slots(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;
    use kube::api::PostParams;
    use kubetask_test_apiserver::{Config, TestApiServer};

    async fn client(server: &TestApiServer) -> kube::Client {
        let client = server.client().await.expect("client");
        let crds: Api<
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        > = Api::all(client.clone());
        crds.create(&PostParams::default(), &Agent::crd())
            .await
            .expect("Agent CRD");
        client
    }

    fn agent_gets(server: &TestApiServer) -> usize {
        server
            .requests()
            .iter()
            .filter(|r| r.verb == "get" && r.resource == "agents")
            .count()
    }

    #[tokio::test]
    async fn reconciles_started_before_a_get_share_it_and_later_ones_send_their_own() {
        let server = TestApiServer::start(Config::default()).expect("server");
        let client = client(&server).await;
        let reads = AgentReads::default();
        let before = agent_gets(&server);
        let since = Instant::now();
        let answers = futures::future::join_all(
            (0..16).map(|_| reads.get(&client, "default", "default", since)),
        )
        .await;
        assert!(answers.iter().all(|a| matches!(a, Ok(None))), "{answers:?}");
        assert_eq!(agent_gets(&server) - before, 1, "one GET for 16 reconciles");
        assert_eq!(reads.slots(), 0, "nothing kept once answered");

        // An Agent created after that GET: a reconcile that starts now must see it.
        let agent: Agent = serde_json::from_value(serde_json::json!({
            "apiVersion": "kubetask.io/v1alpha1", "kind": "Agent",
            "metadata": {"name": "default", "namespace": "default"},
            "spec": {"serviceAccountName": "default"},
        }))
        .expect("an Agent");
        Api::<Agent>::namespaced(client.clone(), "default")
            .create(&PostParams::default(), &agent)
            .await
            .expect("created");
        let found = reads
            .get(&client, "default", "default", Instant::now())
            .await
            .expect("read");
        assert!(found.is_some(), "a later reconcile sends its own GET");
        assert_eq!(agent_gets(&server) - before, 2);
    }
}
