//! The plugins installed in the cluster: ConfigMaps in the controller's namespace labelled
//! `kubetask.io/plugin`, watched into a store. A Task's pipeline is the built-in default, then
//! its Agent's `spec.plugins` in order, then every cluster policy by `kubetask.io/policy-order`.
//! Components are compiled once per digest; each ConfigMap version is decoded once; versions
//! no longer installed are evicted from the plugin host's cache.
//!
//! A plugin that cannot be loaded fails closed: the Tasks that need it wait (a policy may be
//! security), an Event on its ConfigMap says why, once per version.
//!
//! The store is a watch, which may lag: before a Task is first rendered, a fresh list of the
//! plugin ConfigMaps (metadata only, one at a time, shared by every Task older than it) shows
//! whether the store holds every plugin installed before the Task was last written. A policy
//! created just before a Task therefore governs it, however late its watch event arrives.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use kubetask_api::Agent;

use crate::plugin::{Plugin, PluginHost, source};
use crate::render::stages;

/// Why a Task's pipeline cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageError {
    /// A plugin the Agent names is not installed (yet).
    NotFound {
        agent: String,
        plugin: String,
        namespace: String,
    },
    /// An installed plugin or policy cannot be loaded (bad ConfigMap, pin mismatch, not a
    /// component, foreign imports, bad order annotation); the message names it.
    Unavailable(String),
}

/// (ConfigMap uid, resourceVersion).
type Version = (String, String);

/// The plugin ConfigMaps and their compiled components.
pub struct Registry {
    host: Arc<PluginHost>,
    maps: Store<ConfigMap>,
    namespace: String,
    loaded: Mutex<HashMap<Version, Result<Plugin, String>>>,
    /// Versions whose failure has been reported with an Event.
    reported: Mutex<HashSet<Version>>,
    /// Bumped on every plugin ConfigMap event.
    generation: AtomicU64,
    recorder: Option<Recorder>,
    /// Where fresh lists come from (none in unit tests: the store is taken as current).
    client: Option<kube::Client>,
    /// The resourceVersion of the newest fresh list the store was seen to hold in full.
    confirmed: AtomicU64,
    /// One fresh list at a time; the Tasks waiting on it reuse its answer.
    checking: tokio::sync::Mutex<()>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn version_of(map: &ConfigMap) -> Version {
    (
        map.uid().unwrap_or_default(),
        map.resource_version().unwrap_or_default(),
    )
}

impl Registry {
    /// `recorder`: where the Events about plugins that cannot be loaded go; `client`: where
    /// the store is checked against a fresh list (both none in unit tests).
    pub fn new(
        host: Arc<PluginHost>,
        maps: Store<ConfigMap>,
        namespace: String,
        recorder: Option<Recorder>,
        client: Option<kube::Client>,
    ) -> Self {
        Self {
            host,
            maps,
            namespace,
            loaded: Mutex::default(),
            reported: Mutex::default(),
            generation: AtomicU64::new(0),
            recorder,
            client,
            confirmed: AtomicU64::new(0),
            checking: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether the store holds every plugin ConfigMap written before `resource_version` (a
    /// Task's): `Ok(false)` while its watch has not caught up with a fresh list. An object
    /// version that is not a number (never from an etcd-backed server) is always checked.
    pub async fn current_for(&self, resource_version: Option<&str>) -> Result<bool, kube::Error> {
        let Some(client) = &self.client else {
            return Ok(true);
        };
        let wanted = resource_version.and_then(|rv| rv.parse::<u64>().ok());
        let covered = || wanted.is_some_and(|w| self.confirmed.load(Ordering::Acquire) >= w);
        if covered() {
            return Ok(true);
        }
        let _one_at_a_time = self.checking.lock().await;
        if covered() {
            return Ok(true);
        }
        // No resourceVersion: a consistent read, newer than the Task.
        let listed = Api::<ConfigMap>::namespaced(client.clone(), &self.namespace)
            .list_metadata(&ListParams::default().labels(kubetask_api::plugin_labels::PLUGIN))
            .await?;
        let fresh: HashSet<Version> = listed
            .items
            .iter()
            .map(|m| {
                (
                    m.uid().unwrap_or_default(),
                    m.resource_version().unwrap_or_default(),
                )
            })
            .collect();
        let cached = self.installed_versions();
        if fresh != cached {
            return Ok(false);
        }
        if let Some(rv) = listed
            .metadata
            .resource_version
            .and_then(|rv| rv.parse::<u64>().ok())
        {
            self.confirmed.fetch_max(rv, Ordering::AcqRel);
        }
        Ok(true)
    }

    /// The versions of the plugin ConfigMaps in the store.
    fn installed_versions(&self) -> HashSet<Version> {
        self.maps.state().iter().map(|m| version_of(m)).collect()
    }

    fn load(&self, map: &ConfigMap) -> Result<Plugin, String> {
        let key = version_of(map);
        if let Some(found) = locked(&self.loaded).get(&key).cloned() {
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
        locked(&self.loaded).insert(key, loaded.clone());
        self.evict_unused();
        if let Err(message) = &loaded {
            self.report(map, message);
        }
        loaded
    }

    /// Drops the loaded versions that are no longer the installed ones, and evicts their
    /// compiled components unless an installed version has the same digest.
    fn evict_unused(&self) {
        let installed = self.installed_versions();
        let mut loaded = locked(&self.loaded);
        let stale: Vec<Version> = loaded
            .keys()
            .filter(|v| !installed.contains(*v))
            .cloned()
            .collect();
        let mut dropped = Vec::new();
        for version in stale {
            if let Some(Ok(plugin)) = loaded.remove(&version) {
                dropped.push(plugin.digest().to_owned());
            }
        }
        let kept: HashSet<&str> = loaded
            .values()
            .filter_map(|l| l.as_ref().ok())
            .map(Plugin::digest)
            .collect();
        for digest in dropped.iter().filter(|d| !kept.contains(d.as_str())) {
            self.host.evict(digest);
        }
    }

    /// An Event on the plugin's ConfigMap, once per version.
    fn report(&self, map: &ConfigMap, message: &str) {
        if !locked(&self.reported).insert(version_of(map)) {
            return;
        }
        tracing::warn!(plugin = %map.name_any(), %message, "a plugin cannot be loaded; the Tasks that need it wait");
        let Some(recorder) = self.recorder.clone() else {
            return;
        };
        let event = Event {
            type_: EventType::Warning,
            reason: "PluginUnavailable".to_owned(),
            note: Some(message.chars().take(1024).collect()),
            action: "Load".to_owned(),
            secondary: None,
        };
        let reference = map.object_ref(&());
        tokio::spawn(async move {
            if let Err(error) = recorder.publish(&event, &reference).await {
                tracing::warn!(%error, "publishing an Event about a plugin");
            }
        });
    }

    /// A plugin ConfigMap changed: forget what is no longer installed.
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.evict_unused();
        let installed = self.installed_versions();
        locked(&self.reported).retain(|v| installed.contains(v));
    }

    /// A counter that changes whenever a plugin ConfigMap does.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether the plugin ConfigMaps have been listed once (waiting up to a second, in short
    /// fresh waits: one long wait that began before the list may never be woken, and the
    /// Task that met it, typically the first one after a start, would fall behind the
    /// others). Before that, no Task may be rendered: it could miss a cluster policy.
    pub async fn ready(&self) -> bool {
        let within = std::time::Duration::from_secs(1);
        super::caches::listed(&self.maps, within).await == super::caches::Listed::Yes
    }

    /// The stages after the built-in default for a Task run by `agent`.
    pub fn stages(&self, agent: Option<&Agent>) -> Result<Vec<Plugin>, StageError> {
        let installed = self.maps.state();
        let chosen = stages::select(agent, &installed).map_err(|unchosen| match unchosen {
            stages::Unchosen::NotFound { agent, plugin } => StageError::NotFound {
                agent,
                plugin,
                namespace: self.namespace.clone(),
            },
            stages::Unchosen::BadOrder { policy, message } => {
                let message = format!(
                    "cluster policy {policy:?} (ConfigMap {}/{policy}): {message}",
                    self.namespace
                );
                if let Some(map) = installed.iter().find(|m| m.name_any() == policy) {
                    self.report(map, &message);
                }
                StageError::Unavailable(message)
            }
        })?;
        chosen
            .iter()
            .map(|map| self.load(map).map_err(StageError::Unavailable))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use kube::runtime::watcher;

    use super::*;
    use crate::plugin::Limits;

    /// The hostile test plugin (it passes drafts through) with a custom section that makes
    /// each `seed` a different component.
    fn component(seed: u32) -> Vec<u8> {
        let mut bytes = include_bytes!("../../plugins/testing/hostile.wasm").to_vec();
        let name = b"seed";
        let payload = seed.to_le_bytes();
        bytes.push(0); // a custom section
        bytes.push((1 + name.len() + payload.len()) as u8);
        bytes.push(name.len() as u8);
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(&payload);
        bytes
    }

    fn map(name: &str, rv: u32, bytes: Vec<u8>) -> ConfigMap {
        let mut map = ConfigMap {
            binary_data: Some(BTreeMap::from([(
                "plugin.wasm".to_owned(),
                ByteString(bytes),
            )])),
            ..ConfigMap::default()
        };
        map.metadata.name = Some(name.to_owned());
        map.metadata.namespace = Some("sys".to_owned());
        map.metadata.uid = Some(format!("uid-{name}"));
        map.metadata.resource_version = Some(rv.to_string());
        map.metadata.annotations = Some(BTreeMap::from([(
            "kubetask.io/policy-order".to_owned(),
            "1".to_owned(),
        )]));
        map
    }

    #[test]
    fn updates_evict_old_versions_and_broken_policies_fail_closed() {
        let host = Arc::new(PluginHost::new(Limits::default()).expect("host"));
        let (store, mut writer) = kube::runtime::reflector::store::<ConfigMap>();
        let registry = Registry::new(host.clone(), store, "sys".into(), None, None);
        for version in 1..=50 {
            writer.apply_watcher_event(&watcher::Event::Apply(map(
                "policy",
                version,
                component(version),
            )));
            registry.changed();
            let stages = registry.stages(None).expect("the policy loads");
            assert_eq!(stages.len(), 1);
            assert!(
                host.cached_components() <= 1,
                "version {version}: {} compiled components cached",
                host.cached_components()
            );
        }
        writer.apply_watcher_event(&watcher::Event::Apply(map(
            "policy",
            51,
            b"not wasm".to_vec(),
        )));
        registry.changed();
        match registry.stages(None) {
            Err(StageError::Unavailable(message)) => {
                assert!(message.contains("plugin policy"), "{message}")
            }
            other => panic!("a broken policy must fail closed: {other:?}"),
        }
        assert_eq!(
            host.cached_components(),
            0,
            "the last good version is evicted"
        );
        writer.apply_watcher_event(&watcher::Event::Delete(map("policy", 51, vec![])));
        registry.changed();
        assert_eq!(registry.stages(None).map(|s| s.len()), Ok(0));
        assert!(registry.generation() >= 52);
    }
}
