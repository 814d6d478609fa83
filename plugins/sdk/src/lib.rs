//! The Rust SDK for KubeTask plugins.
//!
//! A plugin is a type implementing [`Plugin`]: it receives a [`Request`] (the Task, its Agent,
//! the controller [`Settings`] and the previous stage's [`Draft`]) and returns the next
//! [`Draft`] or an [`Error`]. [`export_plugin!`] turns it into the `kubetask:plugin/plugin`
//! WebAssembly component when built for `wasm32-unknown-unknown`; on other targets the same
//! code builds natively, so a plugin is unit-tested with plain `cargo test` (see
//! [`render_wire`], which runs exactly the conversion the component runs).
//!
//! The Task, its Agent, the Job and the ConfigMaps arrive as [`Object`]s: JSON decoded only
//! where the plugin looks, into the `k8s-openapi` type of the part it reads or edits; what it
//! does not touch passes through as it came. So a plugin carries the decoders of the parts it
//! uses, not of the whole Job (a few hundred KB instead of megabytes, and microseconds a stage).
//!
//! ```
//! use std::collections::BTreeMap;
//!
//! use kubetask_plugin::{Draft, Error, Plugin, Request};
//!
//! /// Adds a label to every agent pod.
//! struct TeamLabel;
//!
//! impl Plugin for TeamLabel {
//!     fn render(request: Request) -> Result<Draft, Error> {
//!         let mut draft = request.draft()?;
//!         draft.job.edit("/spec/template/metadata/labels", |labels: &mut BTreeMap<String, String>| {
//!             labels.insert("team".into(), "platform".into());
//!         })?;
//!         Ok(draft)
//!     }
//! }
//!
//! kubetask_plugin::export_plugin!(TeamLabel);
//! ```
//!
//! The types are the ones the controller uses: [`Task`] and [`Agent`] come from
//! `kubetask-api`, [`Job`] and [`ConfigMap`] (and the types of their parts) from `k8s-openapi`.
#![deny(unsafe_code)]

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
#[doc(hidden)]
pub mod component;
pub mod containers;
mod error;
mod log;
pub mod mapper;
pub mod network;
mod object;
mod wire;

pub use error::Error;
pub use k8s_openapi::api::{batch::v1::Job, core::v1::ConfigMap};
pub use kubetask_api::{self as api, Agent, Task};
pub use log::{Level, log};
pub use network::{EgressPlan, NetworkPlugin, NetworkRequest, Peer};
pub use object::{Object, field_path};
pub use wire::{WireDraft, WireRequest, render_wire};
pub use {k8s_openapi, serde_json};

/// Controller settings a plugin may rely on (the WIT `settings` record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Agent image used when the Agent sets no `spec.agentImage` (or there is no Agent).
    pub default_agent_image: String,
    /// Namespace the controller runs in (not the Task's namespace).
    pub controller_namespace: String,
}

impl Default for Settings {
    /// The controller's defaults.
    fn default() -> Self {
        Self {
            default_agent_image: kubetask_api::DEFAULT_AGENT_IMAGE.to_owned(),
            controller_namespace: "kubetask-system".to_owned(),
        }
    }
}

/// What a stage is asked to render.
#[derive(Debug, Clone)]
pub struct Request {
    /// The Task; `metadata.namespace` is always set, `metadata.uid` is empty offline. Its name,
    /// labels and annotations are at hand ([`Request::task_label`] and the like); [`Request::task`]
    /// decodes all of it (a plugin that never does carries no Task decoder).
    pub task: Object<Task>,
    /// The resolved Agent, or none when the Task uses built-in defaults; decoded by
    /// [`Request::agent`] (a plugin that never reads it carries no Agent decoder).
    pub agent: Option<Object<Agent>>,
    /// Controller settings.
    pub settings: Settings,
    /// The previous stage's output; none only for the first stage (the built-in renderer).
    pub previous: Option<Draft>,
}

impl Request {
    /// A request for `task` after the stage that made `previous` (for tests: the host sends
    /// the Task as JSON).
    pub fn new(task: &Task, agent: Option<&Agent>, previous: Option<Draft>) -> Result<Self, Error> {
        Ok(Self {
            task: Object::new(task)?,
            agent: agent.map(Object::new).transpose()?,
            settings: Settings::default(),
            previous,
        })
    }

    /// The previous stage's draft, which every plugin after the built-in renderer receives.
    pub fn draft(self) -> Result<Draft, Error> {
        self.previous.ok_or_else(|| {
            Error::Internal(
                "no draft to work on: this plugin must run after the built-in renderer".to_owned(),
            )
        })
    }

    /// The Task, decoded; a field that does not decode is an [`Error::Invalid`] of the Task.
    pub fn task(&self) -> Result<Task, Error> {
        self.task.typed_input("Task")
    }

    /// The resolved Agent, decoded; a field that does not decode is an [`Error::Invalid`] of
    /// the Agent.
    pub fn agent(&self) -> Result<Option<Agent>, Error> {
        self.agent
            .as_ref()
            .map(|agent| agent.typed_input("Agent"))
            .transpose()
    }

    /// The Task's name (empty if unset, which the host never sends).
    pub fn task_name(&self) -> &str {
        self.task.str("/metadata/name").unwrap_or_default()
    }

    /// The Task's namespace (empty if unset, which the host never sends).
    pub fn task_namespace(&self) -> &str {
        self.task.str("/metadata/namespace").unwrap_or_default()
    }

    /// `Task/<name>`, the form [`Error::Invalid`] names objects in.
    pub fn task_object(&self) -> String {
        format!("Task/{}", self.task_name())
    }

    /// The Task's annotation `key`, if set.
    pub fn task_annotation(&self, key: &str) -> Option<&str> {
        self.task_metadata("annotations", key)
    }

    /// The Task's label `key`, if set.
    pub fn task_label(&self, key: &str) -> Option<&str> {
        self.task_metadata("labels", key)
    }

    /// The entry `key` of the Task's `metadata.<map>` (its labels or annotations).
    fn task_metadata(&self, map: &str, key: &str) -> Option<&str> {
        self.task
            .tree()
            .ok()?
            .get("metadata")?
            .get(map)?
            .get(key)?
            .as_str()
    }
}

/// The objects a Task turns into: what a stage returns and the next stage receives.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Draft {
    /// The `batch/v1` Job. The host restores its name, namespace, controller owner reference
    /// and KubeTask's labels after every stage.
    pub job: Object<Job>,
    /// ConfigMaps to create before the Job.
    pub config_maps: Vec<Object<ConfigMap>>,
    /// Notes for the Task's owner, recorded as Events and printed by `kubetask render`.
    pub warnings: Vec<String>,
}

/// A render or policy plugin.
pub trait Plugin {
    /// Whether the plugin works on the previous stage's draft (most do). A plugin that builds
    /// the Job from scratch, like the built-in renderer, sets this to `false`: it then never
    /// receives a draft.
    const READS_DRAFT: bool = true;

    /// Renders one stage: the new draft, or why there is none.
    fn render(request: Request) -> Result<Draft, Error>;
}

/// Exports a [`Plugin`] as the component's `render` function (on `wasm32` only; elsewhere it
/// expands to nothing, so the crate still builds and tests natively). Use it once per plugin.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type KubetaskPluginExport = $crate::component::Adapter<$plugin>;
            $crate::component::bindings::__export_kubetask_plugin_world!(
                KubetaskPluginExport with_types_in $crate::component::bindings
            );
        };
    };
}

/// Exports a [`mapper::Mapper`] as the component's `map-event` function (the `event-mapper`
/// world; on `wasm32` only, as [`export_plugin!`]). Use it once, in a crate of its own.
#[macro_export]
macro_rules! export_mapper {
    ($mapper:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type KubetaskMapperExport = $crate::component::Adapter<$mapper>;
            $crate::component::mapper_bindings::__export_kubetask_mapper_world!(
                KubetaskMapperExport with_types_in $crate::component::mapper_bindings
            );
        };
    };
}

/// Exports a [`NetworkPlugin`] as the component's `render` and `render-network` functions (on
/// `wasm32` only, as [`export_plugin!`]). Use it instead of [`export_plugin!`], once.
#[macro_export]
macro_rules! export_network_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type KubetaskPluginExport = $crate::component::Adapter<$plugin>;
            $crate::component::network_bindings::__export_kubetask_network_plugin_world!(
                KubetaskPluginExport with_types_in $crate::component::network_bindings
            );
        };
    };
}
