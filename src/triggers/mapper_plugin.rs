//! Mapper plugins (`spec.mapper`, `wit/mapper.wit`): the wasm component of a ConfigMap in the
//! controller's namespace (packed by `kubetask plugin pack`, labelled `kubetask.io/plugin`),
//! compiled once by digest and called in the same sandbox and under the same limits as render
//! plugins — a fresh instance per event, no capability but `host.log`. The ConfigMap is read at
//! most once per [`CACHE_FOR`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kubetask_api::{Task, TaskTrigger, plugin_labels};

use super::event::Event;
use super::mapper::PluginOutcome;
use crate::plugin::mapper_bindings::{MapRequest, Outcome, Skip};
use crate::plugin::{Limits, Mapper, PluginHost, source};

/// How long a mapper plugin's ConfigMap, once read, serves events.
const CACHE_FOR: Duration = Duration::from_secs(2);

/// The mapper plugins of one receiver.
pub struct MapperPlugins {
    client: kube::Client,
    /// Where their ConfigMaps are.
    namespace: String,
    host: OnceLock<Result<Arc<PluginHost>, String>>,
    loaded: Mutex<HashMap<String, (Instant, Mapper)>>,
}

/// Why an event could not be mapped by its trigger's plugin: the reason counted, the message.
#[derive(Debug)]
pub struct MapperError {
    pub reason: &'static str,
    pub message: String,
}

impl MapperPlugins {
    pub fn new(client: kube::Client, namespace: String) -> Self {
        MapperPlugins {
            client,
            namespace,
            host: OnceLock::new(),
            loaded: Mutex::default(),
        }
    }

    fn host(&self) -> Result<Arc<PluginHost>, MapperError> {
        self.host
            .get_or_init(|| {
                PluginHost::new(Limits::default())
                    .map(Arc::new)
                    .map_err(|e| format!("{e:#}"))
            })
            .clone()
            .map_err(|message| MapperError {
                reason: "MapperFailed",
                message,
            })
    }

    /// The mapper plugin `name`, read from its ConfigMap and compiled (each at most once).
    pub async fn load(&self, name: &str) -> Result<Mapper, MapperError> {
        if let Ok(loaded) = self.loaded.lock()
            && let Some((at, mapper)) = loaded.get(name)
            && at.elapsed() < CACHE_FOR
        {
            return Ok(mapper.clone());
        }
        let missing = |message: String| MapperError {
            reason: "MapperMissing",
            message,
        };
        let map = Api::<ConfigMap>::namespaced(self.client.clone(), &self.namespace)
            .get_opt(name)
            .await
            .map_err(|e| missing(format!("cannot read the ConfigMap of spec.mapper: {e}")))?
            .ok_or_else(|| {
                missing(format!(
                    "spec.mapper names ConfigMap {}/{name}, which does not exist (pack the plugin with `kubetask plugin pack --name {name}`)",
                    self.namespace
                ))
            })?;
        let labelled = map
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(plugin_labels::PLUGIN));
        if !labelled {
            return Err(missing(format!(
                "ConfigMap {}/{name} has no label {}: it is not a plugin",
                self.namespace,
                plugin_labels::PLUGIN
            )));
        }
        let component = source::component_of(&map)
            .map_err(|e| missing(format!("ConfigMap {}/{name}: {e}", self.namespace)))?;
        let host = self.host()?;
        let owned = name.to_owned();
        let mapper = tokio::task::spawn_blocking(move || host.load_mapper(&owned, &component))
            .await
            .map_err(|e| missing(e.to_string()))?
            .map_err(|e| MapperError {
                reason: "MapperFailed",
                message: e.to_string(),
            })?;
        if let Ok(mut loaded) = self.loaded.lock() {
            loaded.insert(name.to_owned(), (Instant::now(), mapper.clone()));
        }
        Ok(mapper)
    }

    /// Runs `mapper` on `request`, off the async threads.
    pub async fn run(
        &self,
        mapper: Mapper,
        request: MapRequest,
    ) -> Result<PluginOutcome, MapperError> {
        let host = self.host()?;
        let outcome = tokio::task::spawn_blocking(move || host.map_event(&mapper, &request))
            .await
            .map_err(|e| MapperError {
                reason: "MapperFailed",
                message: e.to_string(),
            })?
            .map_err(|e| MapperError {
                reason: "MapperFailed",
                message: e.to_string(),
            })?;
        Ok(outcome_of(outcome))
    }
}

/// What a mapper plugin is asked about `event` (its `payload` as delivered), given the built-in
/// mapper's `draft` and the reason its filters skip the event, if they do.
pub fn request(
    trigger: &TaskTrigger,
    event: &Event,
    payload: &[u8],
    draft: &Task,
    filtered: Option<(String, String)>,
) -> MapRequest {
    MapRequest {
        trigger: serde_json::to_string(trigger).unwrap_or_default(),
        event: serde_json::to_string(event).unwrap_or_default(),
        payload: String::from_utf8_lossy(payload).into_owned(),
        task: serde_json::to_string(draft).unwrap_or_default(),
        builtin_skip: filtered.map(|(reason, message)| Skip { reason, message }),
    }
}

/// A plugin's outcome, for [`super::mapper::apply_plugin`].
pub fn outcome_of(outcome: Outcome) -> PluginOutcome {
    match outcome {
        Outcome::Task(task) => PluginOutcome::Task(task),
        Outcome::Skip(Skip { reason, message }) => PluginOutcome::Skip { reason, message },
    }
}
