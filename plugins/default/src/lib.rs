//! The built-in KubeTask renderer: turns a Task and its Agent into a Job (and a ConfigMap for
//! inline contexts), following the rules of `docs/rendering.md`.
//!
//! It is written with the plugin SDK like any other plugin: the crate builds natively, where its
//! logic is unit-tested, and as the WebAssembly component the controller embeds (`make
//! plugins`), where [`kubetask_plugin::export_plugin!`] exports [`DefaultRenderer`].
#![deny(unsafe_code)]

mod contexts;
mod credentials;
mod image;
mod job;
pub mod network;
mod paths;
#[cfg(test)]
mod tests;
pub mod workspace;

use std::collections::BTreeMap;

use k8s_openapi::api::{batch::v1::Job, core::v1::ConfigMap};
use kubetask_api::{Agent, Task, labels, names, naming};
use kubetask_plugin::{NetworkPlugin, NetworkRequest, Object, Plugin, Request};
use serde_json::Value;

pub use contexts::{TOOLS, WORKSPACE};
pub use job::{AGENT_CONTAINER, TOOLS_PATH};
pub use kubetask_plugin::{Draft, Error as RenderError, Settings, WireDraft};

pub use kubetask_api::MAX_CONFIG_MAP_BYTES;

/// Why kube-apiserver would refuse `value` as a `what` (`"object name"`), if `rule` (one of
/// [`kubetask_api::names`]) says it would.
pub(crate) fn refused(what: &str, value: &str, rule: fn(&str) -> Option<String>) -> Option<String> {
    rule(value).map(|why| {
        if value.is_empty() {
            "must not be empty".to_owned()
        } else {
            format!("{value:?} is not a valid {what}: {why}")
        }
    })
}

/// What the built-in renderer makes of a Task, typed (the pipeline's `kubetask::render::Rendered`
/// is what every stage together made).
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The agent Job.
    pub job: Job,
    /// The ConfigMap of the inline contexts, if any.
    pub config_maps: Vec<ConfigMap>,
    /// Notes for the Task's owner.
    pub warnings: Vec<String>,
}

impl Output {
    /// The rendering as a [`Draft`], what the next stage receives.
    pub fn into_draft(self) -> Result<Draft, RenderError> {
        Ok(Draft {
            job: Object::new(&self.job)?,
            config_maps: self
                .config_maps
                .iter()
                .map(Object::new)
                .collect::<Result<_, _>>()?,
            warnings: self.warnings,
        })
    }
}

/// [`render`] as the [`Draft`] the next stage receives: what a plugin's tests chain after.
pub fn draft(
    task: &Task,
    agent: Option<&Agent>,
    settings: &Settings,
) -> Result<Draft, RenderError> {
    render(task, agent, settings)?.into_draft()
}

/// Renders `task` (and its resolved `agent`, if any) into the objects to create.
pub fn render(
    task: &Task,
    agent: Option<&Agent>,
    settings: &Settings,
) -> Result<Output, RenderError> {
    let name = task.metadata.name.as_deref().unwrap_or_default();
    if name.is_empty() {
        return Err(RenderError::invalid("Task", "metadata.name", "is required"));
    }
    let task_object = format!("Task/{name}");
    let Some(namespace) = task
        .metadata
        .namespace
        .as_deref()
        .filter(|namespace| !namespace.is_empty())
    else {
        return Err(RenderError::invalid(
            &task_object,
            "metadata.namespace",
            "is required",
        ));
    };
    let agent_object = agent.map(|agent| {
        format!(
            "Agent/{}",
            agent.metadata.name.as_deref().unwrap_or_default()
        )
    });
    let agent_spec = agent.map(|agent| &agent.spec);

    let (contexts, mut warnings) = contexts::merge(
        agent_object
            .as_ref()
            .zip(agent_spec)
            .map(|(object, spec)| contexts::Layer {
                object: object.clone(),
                field: "spec.defaultContexts",
                contexts: &spec.default_contexts,
            }),
        contexts::Layer {
            object: task_object.clone(),
            field: "spec.contexts",
            contexts: &task.spec.contexts,
        },
    )?;
    check_inline_size(&contexts)?;

    let mut image = settings.default_agent_image.clone();
    let mut tools_image = None;
    let mut credentials = credentials::CredentialMounts::default();
    let mut pod_labels = BTreeMap::new();
    if let (Some(object), Some(spec)) = (&agent_object, agent_spec) {
        if let Some(agent_image) = &spec.agent_image {
            if let Some(message) = image::image_error(agent_image) {
                return Err(RenderError::invalid(object, "spec.agentImage", message));
            }
            image.clone_from(agent_image);
        }
        if let Some(tools) = &spec.tools_image {
            if let Some(message) = image::image_error(tools) {
                return Err(RenderError::invalid(object, "spec.toolsImage", message));
            }
            tools_image = Some(tools.as_str());
        }
        let reserved: &[&str] = if tools_image.is_some() {
            &["TASK_NAME", "TASK_NAMESPACE", "PATH"]
        } else {
            &["TASK_NAME", "TASK_NAMESPACE"]
        };
        credentials = credentials::plan(object, &spec.credentials, reserved, &contexts)?;
        for (key, value) in &spec.pod_labels {
            let field = format!("spec.podLabels[{key}]");
            if let Some(message) = refused("label key", key, names::qualified_name_error)
                .or_else(|| refused("label value", value, names::label_value_error))
            {
                return Err(RenderError::invalid(object, field, message));
            }
            if key == labels::MANAGED_BY || key == labels::TASK {
                warnings.push(format!(
                    "{object} {field} is ignored: KubeTask sets {key} itself"
                ));
            }
        }
        pod_labels.clone_from(&spec.pod_labels);
        if spec.service_account_name.is_empty() {
            return Err(RenderError::invalid(
                object,
                "spec.serviceAccountName",
                "must not be empty",
            ));
        }
    }
    if let Some(message) = image::image_error(&image) {
        return Err(RenderError::Internal(format!(
            "the default agent image is unusable: {message}"
        )));
    }

    let workspace = kubetask_api::Workspace::merged(
        agent_spec.and_then(|spec| spec.workspace.as_ref()),
        task.spec.workspace.as_ref(),
    );
    let workspace = match &workspace {
        Some(workspace) => {
            let none = kubetask_api::Workspace::default();
            let sources = workspace::Sources {
                task: task.spec.workspace.as_ref().unwrap_or(&none),
                task_object: &task_object,
                agent_object: agent_object.as_deref(),
                task_name: name,
                namespace,
            };
            Some(workspace::plan(
                workspace,
                &sources,
                &image,
                &job::workspace_mount(),
            )?)
        }
        None => None,
    };
    let (job, config_map) = job::assemble(job::JobParts {
        task,
        namespace,
        job_name: naming::job_name(name),
        image,
        tools_image,
        contexts,
        credentials,
        pod_labels,
        scheduling: agent_spec.and_then(|spec| spec.scheduling.as_ref()),
        service_account_name: agent_spec.map(|spec| spec.service_account_name.as_str()),
        workspace,
    });
    Ok(Output {
        job,
        config_maps: config_map.into_iter().collect(),
        warnings,
    })
}

/// The generated ConfigMap must stay within the Kubernetes size limit.
fn check_inline_size(contexts: &[contexts::PlacedContext<'_>]) -> Result<(), RenderError> {
    let mut total = 0;
    for context in contexts {
        if let contexts::ContextSource::Inline(content) = context.source {
            total += content.len();
            if total > MAX_CONFIG_MAP_BYTES {
                return Err(RenderError::invalid(
                    &context.object,
                    context.path_field.replace(".filePath", ".source.inline"),
                    format!(
                        "inline contexts add up to more than 1 MiB ({total} bytes so far), the most a ConfigMap holds; \
                         put large files in ConfigMaps of their own and use configMapKeyRef"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// [`render`] on JSON text, exactly as the component runs it: parses the Task and Agent
/// (errors name the offending field), renders, and serializes the result.
pub fn render_json(
    task: &str,
    agent: Option<&str>,
    settings: &Settings,
) -> Result<WireDraft, RenderError> {
    kubetask_plugin::render_wire::<DefaultRenderer>(kubetask_plugin::WireRequest {
        task: task.to_owned(),
        agent: agent.map(str::to_owned),
        settings: settings.clone(),
        draft: None,
    })
}

/// The built-in renderer as a [`Plugin`]: the first stage of every pipeline.
pub struct DefaultRenderer;

impl Plugin for DefaultRenderer {
    /// The first stage: it builds the Job from the Task and Agent alone.
    const READS_DRAFT: bool = false;

    fn render(request: Request) -> Result<Draft, RenderError> {
        render(
            &request.task()?,
            request.agent()?.as_ref(),
            &request.settings,
        )?
        .into_draft()
    }
}

impl NetworkPlugin for DefaultRenderer {
    /// The first network stage: the default-deny NetworkPolicy of [`network`].
    fn network(request: NetworkRequest) -> Result<Vec<Object<Value>>, RenderError> {
        network::policies(&request)
    }
}

kubetask_plugin::export_network_plugin!(DefaultRenderer);
