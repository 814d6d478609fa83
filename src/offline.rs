//! `kubetask render`: the controller's pipeline on local files, with no cluster.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::Value;

use crate::{
    inputs::{InputError, Inputs, Sourced},
    plugin::{Plugin, PluginError, PluginHost, source},
    render::{Pipeline, RenderError, needs, resolve_agent, stages},
};

/// Extra stages from the command line (`--plugin`, `--policy`) besides the installed ones.
#[derive(Default)]
pub struct Extra {
    /// Run after the Agent's plugins, before the cluster policies.
    pub plugins: Vec<Plugin>,
    /// Run last.
    pub policies: Vec<Plugin>,
}

/// The plugin ConfigMaps of the inputs as the controller would install them: only those in
/// its namespace, each loaded (compiled) once.
struct Installed<'a> {
    maps: Vec<&'a ConfigMap>,
    files: HashMap<String, &'a std::path::Path>,
    loaded: HashMap<String, Result<Plugin, String>>,
}

impl<'a> Installed<'a> {
    fn new(inputs: &'a Inputs, namespace: &str, warnings: &mut Vec<String>) -> Self {
        let mut maps = Vec::new();
        let mut files = HashMap::new();
        for Sourced { file, object } in &inputs.plugins {
            let name = object.metadata.name.clone().unwrap_or_default();
            if object.metadata.namespace.as_deref() == Some(namespace) {
                maps.push(object);
                files.insert(name, file.as_path());
            } else {
                warnings.push(format!(
                    "{}: ConfigMap/{name}: not in the controller's namespace {namespace:?}, so the controller would not load it; ignored",
                    file.display()
                ));
            }
        }
        Self {
            maps,
            files,
            loaded: HashMap::new(),
        }
    }

    fn load(&mut self, host: &PluginHost, map: &ConfigMap) -> Result<Plugin, String> {
        let name = map.metadata.name.clone().unwrap_or_default();
        self.loaded
            .entry(name.clone())
            .or_insert_with(|| {
                source::component_of(map)
                    .and_then(|bytes| host.load(&name, &bytes).map_err(|e| e.to_string()))
            })
            .clone()
    }
}

/// What `kubetask render` prints: the objects to create, in creation order (each Task's
/// ConfigMaps, then its Job; a CronTask's next Task before them), and the warnings.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Output {
    pub objects: Vec<Value>,
    pub warnings: Vec<String>,
}

/// Renders every Task of `inputs`, resolving Agents and choosing plugins as the controller
/// does: the built-in default, the Agent's `spec.plugins` and the cluster policies among the
/// inputs' plugin ConfigMaps (packed manifests), plus the `extra` stages. Returns every error,
/// each naming its file, object and field.
pub fn render_all(
    pipeline: &Pipeline,
    host: &PluginHost,
    inputs: &Inputs,
    extra: &Extra,
    controller_namespace: &str,
) -> Result<Output, Vec<InputError>> {
    let mut output = Output::default();
    let mut errors = Vec::new();
    let mut installed = Installed::new(inputs, controller_namespace, &mut output.warnings);
    let agents = inputs.agent_index();
    let runs = inputs.cron_runs.iter().map(|run| (run, true));
    for (Sourced { file, object: task }, is_run) in
        inputs.tasks.iter().map(|task| (task, false)).chain(runs)
    {
        let namespace = task.metadata.namespace.as_deref();
        let task_object = format!("Task/{}", task.metadata.name.as_deref().unwrap_or_default());
        let error = |file: &std::path::Path,
                     object: String,
                     field: Option<String>,
                     message: String| InputError {
            file: file.to_owned(),
            object: Some(object),
            field,
            message,
        };
        let agent = match resolve_agent(task, |name| agents.get(namespace, name)) {
            Ok(agent) => agent,
            Err(not_found) => {
                errors.push(error(
                    file,
                    task_object,
                    Some("spec.agentRef".to_owned()),
                    format!(
                        "Agent {:?} does not exist in namespace {:?} (pass the file that defines it with -f)",
                        not_found.name, not_found.namespace
                    ),
                ));
                continue;
            }
        };
        // With --plugin stages given, they stand in for the Agent's plugins that are not
        // among the inputs (a plugin author trying a component before packing it).
        let mut choosing = agent.map(|a| a.object.clone());
        if let Some(choosing) = choosing.as_mut().filter(|_| !extra.plugins.is_empty()) {
            choosing.spec.plugins.retain(|name| {
                let present = installed
                    .maps
                    .iter()
                    .any(|m| m.metadata.name.as_deref() == Some(name.as_str()));
                if !present {
                    output.warnings.push(format!(
                        "{}: Agent/{}: spec.plugins names {name:?}, which is not among the inputs; the --plugin stages run in its place",
                        agent.map_or(file, |a| &a.file).display(),
                        choosing.metadata.name.as_deref().unwrap_or_default()
                    ));
                }
                present
            });
        }
        let chosen = match stages::select(choosing.as_ref(), &installed.maps) {
            Ok(chosen) => chosen,
            Err(stages::Unchosen::NotFound {
                agent: name,
                plugin,
            }) => {
                let source = agent.map_or(file, |a| &a.file);
                let elsewhere = inputs
                    .plugins
                    .iter()
                    .find(|p| p.object.metadata.name.as_deref() == Some(plugin.as_str()))
                    .map(|p| {
                        format!(
                            " (the ConfigMap of {} is in namespace {:?}, not in the controller's namespace {controller_namespace:?})",
                            p.file.display(),
                            p.object.metadata.namespace.as_deref().unwrap_or_default()
                        )
                    })
                    .unwrap_or_default();
                errors.push(error(
                    source,
                    format!("Agent/{name}"),
                    Some("spec.plugins".to_owned()),
                    format!(
                        "plugin {plugin:?} is not installed{elsewhere}: pass its packed manifest (kubetask plugin pack) with -f"
                    ),
                ));
                continue;
            }
            Err(stages::Unchosen::BadOrder { policy, message }) => {
                let source = installed.files.get(&policy).copied().unwrap_or(file);
                errors.push(error(source, format!("ConfigMap/{policy}"), None, message));
                continue;
            }
        };
        let mut loaded = Vec::with_capacity(chosen.len());
        let mut unloadable = None;
        for map in &chosen {
            match installed.load(host, map) {
                Ok(plugin) => loaded.push(plugin),
                Err(message) => {
                    unloadable = Some((map.metadata.name.clone().unwrap_or_default(), message));
                    break;
                }
            }
        }
        if let Some((name, message)) = unloadable {
            let source = installed.files.get(&name).copied().unwrap_or(file);
            errors.push(error(source, format!("ConfigMap/{name}"), None, message));
            continue;
        }
        // The Agent's plugins, the --plugin stages, the cluster policies, the --policy stages.
        let policies = loaded.split_off(needs::plugin_names(choosing.as_ref()).len());
        let plugins = loaded
            .into_iter()
            .chain(extra.plugins.iter().cloned())
            .chain(policies)
            .chain(extra.policies.iter().cloned());
        let pipeline = pipeline.extended(plugins);
        match pipeline.render(task, agent.map(|agent| &agent.object)) {
            Ok(rendered) => {
                // A CronTask's run: the Task it creates, then what the Task becomes.
                let run = is_run.then(|| serde_json::to_value(task));
                let encoded = run
                    .into_iter()
                    .chain(rendered.config_maps.iter().map(serde_json::to_value))
                    .chain(std::iter::once(serde_json::to_value(&rendered.job)))
                    .collect::<Result<Vec<_>, _>>();
                match encoded {
                    Ok(objects) => output.objects.extend(objects),
                    Err(encode) => errors.push(error(file, task_object, None, encode.to_string())),
                }
                output.warnings.extend(
                    rendered
                        .warnings
                        .into_iter()
                        .map(|warning| format!("{}: {warning}", file.display())),
                );
            }
            Err(RenderError::Plugin(PluginError::InvalidInput {
                object,
                field,
                message,
                ..
            })) => {
                // The field may belong to the Agent, which can live in another file.
                let source = match agent.filter(|_| object.starts_with("Agent/")) {
                    Some(agent) => &agent.file,
                    None => file,
                };
                errors.push(error(
                    source,
                    object,
                    Some(field).filter(|field| !field.is_empty()),
                    message,
                ));
            }
            Err(other) => errors.push(error(file, task_object, None, other.to_string())),
        }
    }
    if errors.is_empty() {
        Ok(output)
    } else {
        Err(errors)
    }
}

/// The objects as one `v1` `List`, as `kubectl get -o json` prints several objects.
pub fn to_json_list(objects: &[Value]) -> Result<String, serde_json::Error> {
    let list =
        serde_json::json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": objects});
    serde_json::to_string_pretty(&list)
}

/// The objects as a multi-document YAML stream.
pub fn to_yaml_stream(objects: &[Value]) -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(object)?);
    }
    Ok(out)
}
