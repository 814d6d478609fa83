//! Runs a Task through the plugin stages and checks what each stage returns.

use std::sync::Arc;

use k8s_openapi::api::{batch::v1::Job, core::v1::ConfigMap};
use kubetask_api::{Agent, Task};

use super::apply_invariants;
use super::egress::EgressSettings;
use super::error::RenderError;
use super::json::{decode, encode};
use super::lifecycle::LifecycleSettings;
use super::model_gateway::GatewaySettings;
use crate::plugin::{
    DEFAULT_PLUGIN_NAME, DEFAULT_PLUGIN_PRECOMPILED, DEFAULT_PLUGIN_WASM, Plugin, PluginError,
    PluginHost,
    bindings::{self, Draft, RenderRequest},
};

/// Controller settings that shape every render (the SDK's type, shared with plugins).
pub use kubetask_plugin::Settings;

/// The objects to create for a Task.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub job: Job,
    /// Created before the Job.
    pub config_maps: Vec<ConfigMap>,
    /// Created before the Job: the Task's egress Secret, when egress is on, and its model
    /// Secret, when the model gateway is on.
    pub secrets: Vec<k8s_openapi::api::core::v1::Secret>,
    /// Created before the Job: the policies of the Task's pod, when egress is on
    /// ([`super::network`]).
    pub policies: Vec<kube::api::DynamicObject>,
    /// Notes for the Task's owner, from every stage.
    pub warnings: Vec<String>,
    /// `(name, digest)` of every plugin that rendered the Job, in order.
    pub plugins: Vec<(String, String)>,
}

/// The render pipeline: the built-in default plugin, then any further stages.
pub struct Pipeline {
    host: Arc<PluginHost>,
    settings: Settings,
    lifecycle: LifecycleSettings,
    egress: Option<Arc<EgressSettings>>,
    gateway: Option<Arc<GatewaySettings>>,
    stages: Vec<Plugin>,
}

impl Pipeline {
    /// A pipeline of the built-in default plugin alone.
    pub fn new(host: Arc<PluginHost>, settings: Settings) -> Result<Self, PluginError> {
        let default = host.load_builtin(
            DEFAULT_PLUGIN_NAME,
            DEFAULT_PLUGIN_WASM,
            DEFAULT_PLUGIN_PRECOMPILED,
        )?;
        Ok(Self {
            host,
            settings,
            lifecycle: LifecycleSettings::default(),
            egress: None,
            gateway: None,
            stages: vec![default],
        })
    }

    /// A pipeline of this one's stages followed by `plugins` (the compiled default plugin is
    /// shared, not reloaded).
    pub fn extended(&self, plugins: impl IntoIterator<Item = Plugin>) -> Self {
        let mut stages = self.stages.clone();
        stages.extend(plugins);
        Self {
            host: self.host.clone(),
            settings: self.settings.clone(),
            lifecycle: self.lifecycle.clone(),
            egress: self.egress.clone(),
            gateway: self.gateway.clone(),
            stages,
        }
    }

    /// The same pipeline with the controller's lifecycle settings (timeout cap, default TTL).
    pub fn with_lifecycle(mut self, lifecycle: LifecycleSettings) -> Self {
        self.lifecycle = lifecycle;
        self
    }

    /// The same pipeline adding each Task's egress Secret and proxy variables
    /// ([`super::egress`]).
    pub fn with_egress(mut self, egress: Option<Arc<EgressSettings>>) -> Self {
        self.egress = egress;
        self
    }

    /// The same pipeline adding each Task's virtual model key and the gateway's URLs
    /// ([`super::model_gateway`]).
    pub fn with_gateway(mut self, gateway: Option<Arc<GatewaySettings>>) -> Self {
        self.gateway = gateway;
        self
    }

    /// The controller's lifecycle settings.
    pub fn lifecycle(&self) -> &LifecycleSettings {
        &self.lifecycle
    }

    /// Appends `plugins` as further stages, run in order after the built-in default plugin.
    pub fn with_plugins(mut self, plugins: impl IntoIterator<Item = Plugin>) -> Self {
        self.stages.extend(plugins);
        self
    }

    /// Renders `task` with its resolved `agent` (none: built-in defaults). The Task's
    /// `metadata.namespace` must be set.
    ///
    /// Both are objects the CRD admits: the controller's come from the API server, which
    /// checked them against the installed CRD; `kubetask render` and `plugin check` read them
    /// with [`crate::cli::files`], which checks them against the same CRD
    /// ([`super::validation::problems`]). The CRD's rules are not evaluated again per render
    /// (they cost more than the built-in plugin: docs/performance.md).
    pub fn render(&self, task: &Task, agent: Option<&Agent>) -> Result<Rendered, RenderError> {
        let task_json = encode("Task", task)?;
        let agent_json = agent.map(|agent| encode("Agent", agent)).transpose()?;
        let settings = bindings::Settings {
            default_agent_image: self.settings.default_agent_image.clone(),
            controller_namespace: self.settings.controller_namespace.clone(),
        };
        // The last stage's objects (invariants restored); the next stage's draft is encoded
        // from them only when there is a next stage.
        let mut rendered: Option<(Job, Vec<ConfigMap>)> = None;
        // Every stage's new warnings, once: a stage gets the warnings so far in its draft and
        // usually returns them with its own, so only what it adds is appended (a stage cannot
        // hide an earlier warning by dropping it either).
        let mut warnings: Vec<String> = Vec::new();
        let mut plugins = Vec::with_capacity(self.stages.len());
        for stage in &self.stages {
            let draft = rendered
                .as_ref()
                .map(|(job, config_maps)| encode_draft(job, config_maps, &warnings))
                .transpose()?;
            let request = RenderRequest {
                task: task_json.clone(),
                agent: agent_json.clone(),
                settings: settings.clone(),
                draft,
            };
            let output = self.host.render(stage, &request)?;
            let (mut job, mut config_maps) = decode_draft(stage, &output)?;
            apply_invariants(task, &mut job, &mut config_maps).map_err(|message| {
                PluginError::InvalidOutput {
                    name: stage.name().to_owned(),
                    digest: stage.short_digest(),
                    message,
                }
            })?;
            let mut earlier: Vec<&String> = warnings.iter().collect();
            let mut added = Vec::new();
            for warning in &output.warnings {
                match earlier.iter().position(|e| *e == warning) {
                    Some(at) => {
                        earlier.swap_remove(at);
                    }
                    None => added.push(warning.clone()),
                }
            }
            warnings.extend(added);
            plugins.push((stage.name().to_owned(), stage.digest().to_owned()));
            rendered = Some((job, config_maps));
        }
        let Some((mut job, config_maps)) = rendered else {
            return Err(RenderError::Plugin(PluginError::Internal {
                name: "pipeline".to_owned(),
                digest: String::new(),
                message: "the pipeline has no stages".to_owned(),
            }));
        };
        warnings.extend(super::lifecycle::apply(
            task,
            agent,
            &self.lifecycle,
            &mut job,
        )?);
        let (mut secrets, mut policies) = match &self.egress {
            Some(egress) => {
                let (secret, policy) = super::egress::apply(task, agent, egress, &mut job)?;
                let input = super::network::NetworkInput {
                    task,
                    task_json: &task_json,
                    agent_json: agent_json.as_deref(),
                    settings: &settings,
                    job: &job,
                    policy: &policy,
                    egress,
                };
                let policies = super::network::render(&self.host, &self.stages, &input)?;
                (vec![secret], policies)
            }
            None => (Vec::new(), Vec::new()),
        };
        if let Some(gateway) = &self.gateway {
            let (secret, notes) = super::model_gateway::apply(task, gateway, &mut job);
            secrets.push(secret);
            warnings.extend(notes);
            if self.egress.is_some() {
                let policy = super::model_gateway::network_policy(task, &job, gateway).map_err(
                    |message| {
                        RenderError::Plugin(PluginError::Internal {
                            name: "model-gateway".to_owned(),
                            digest: String::new(),
                            message,
                        })
                    },
                )?;
                policies.push(policy);
            }
        }
        Ok(Rendered {
            job,
            config_maps,
            secrets,
            policies,
            warnings,
            plugins,
        })
    }
}

fn encode_draft(
    job: &Job,
    config_maps: &[ConfigMap],
    warnings: &[String],
) -> Result<Draft, RenderError> {
    Ok(Draft {
        job: encode("Job", job)?,
        config_maps: config_maps
            .iter()
            .map(|map| encode("ConfigMap", map))
            .collect::<Result<_, _>>()?,
        warnings: warnings.to_vec(),
    })
}

/// Parses a stage's output; anything that is not a Job and ConfigMaps is the plugin's fault.
fn decode_draft(stage: &Plugin, draft: &Draft) -> Result<(Job, Vec<ConfigMap>), PluginError> {
    let invalid = |message: String| PluginError::InvalidOutput {
        name: stage.name().to_owned(),
        digest: stage.short_digest(),
        message,
    };
    let job: Job = decode(&draft.job).map_err(|error| invalid(format!("job: {error}")))?;
    let config_maps = draft
        .config_maps
        .iter()
        .enumerate()
        .map(|(index, json)| {
            decode(json).map_err(|error| invalid(format!("configMaps[{index}]: {error}")))
        })
        .collect::<Result<Vec<ConfigMap>, _>>()?;
    if job
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .is_none_or(|pod| pod.containers.is_empty())
    {
        return Err(invalid(
            "job: spec.template.spec.containers is empty; a Job needs a container".to_owned(),
        ));
    }
    Ok((job, config_maps))
}
