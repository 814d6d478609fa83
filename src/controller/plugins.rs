//! The plugins installed in the cluster: ConfigMaps in the controller's namespace labelled
//! `kubetask.io/plugin`, watched into a store. A Task's pipeline is the built-in default, then
//! its Agent's `spec.plugins` in order, then every cluster policy by `kubetask.io/policy-order`.
//! Components are compiled once per digest; each ConfigMap version is decoded once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kubetask_api::Agent;

use crate::plugin::{Plugin, PluginHost, source};

/// Why a Task's pipeline cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageError {
    /// A plugin the Agent names is not installed (yet).
    NotFound {
        agent: String,
        plugin: String,
        namespace: String,
    },
    /// An installed plugin cannot be loaded (bad ConfigMap, pin mismatch, not a component,
    /// foreign imports); the message names it.
    Load(String),
}

/// The plugin ConfigMaps and their compiled components.
pub struct Registry {
    host: Arc<PluginHost>,
    maps: Store<ConfigMap>,
    namespace: String,
    /// (ConfigMap uid, resourceVersion) → loaded plugin.
    loaded: Mutex<HashMap<(String, String), Result<Plugin, String>>>,
}

impl Registry {
    pub fn new(host: Arc<PluginHost>, maps: Store<ConfigMap>, namespace: String) -> Self {
        Self {
            host,
            maps,
            namespace,
            loaded: Mutex::default(),
        }
    }

    fn load(&self, map: &ConfigMap) -> Result<Plugin, String> {
        let key = (
            map.uid().unwrap_or_default(),
            map.resource_version().unwrap_or_default(),
        );
        if let Some(found) = self.loaded.lock().ok().and_then(|l| l.get(&key).cloned()) {
            return found;
        }
        let name = map.name_any();
        let loaded = source::component_of(map)
            .map_err(|message| {
                format!(
                    "plugin {name:?} (ConfigMap {}/{name}): {message}",
                    self.namespace
                )
            })
            .and_then(|bytes| {
                self.host
                    .load(&name, &bytes)
                    .map_err(|error| error.to_string())
            });
        if let Ok(mut cache) = self.loaded.lock() {
            // Older versions of this ConfigMap are no longer needed.
            cache.retain(|(uid, _), _| *uid != key.0);
            cache.insert(key, loaded.clone());
        }
        loaded
    }

    /// Whether the plugin ConfigMaps have been listed once (waiting up to a second). Before
    /// that, no Task may be rendered: it could miss a cluster policy.
    pub async fn ready(&self) -> bool {
        let wait = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            self.maps.wait_until_ready(),
        );
        matches!(wait.await, Ok(Ok(())))
    }

    /// The stages after the built-in default for a Task run by `agent`.
    pub fn stages(&self, agent: Option<&Agent>) -> Result<Vec<Plugin>, StageError> {
        let mut stages = Vec::new();
        if let Some(agent) = agent {
            for name in &agent.spec.plugins {
                let map = self
                    .maps
                    .get(&ObjectRef::new(name).within(&self.namespace))
                    .ok_or_else(|| StageError::NotFound {
                        agent: agent.name_any(),
                        plugin: name.clone(),
                        namespace: self.namespace.clone(),
                    })?;
                stages.push(self.load(&map).map_err(StageError::Load)?);
            }
        }
        let mut policies = Vec::new();
        for map in self.maps.state() {
            match source::policy_order(&map) {
                None => {}
                Some(Ok(order)) => policies.push((order, map.name_any(), map)),
                Some(Err(message)) => {
                    return Err(StageError::Load(format!(
                        "plugin {:?}: {message}",
                        map.name_any()
                    )));
                }
            }
        }
        policies.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (_, _, map) in policies {
            stages.push(self.load(&map).map_err(StageError::Load)?);
        }
        Ok(stages)
    }
}
