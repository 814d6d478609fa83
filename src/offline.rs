//! `kubetask render`: the controller's pipeline on local files, with no cluster.

use serde_json::Value;

use crate::{
    inputs::{InputError, Inputs, Sourced},
    plugin::PluginError,
    render::{Pipeline, RenderError, resolve_agent},
};

/// What `kubetask render` prints: the objects to create, in creation order (each Task's
/// ConfigMaps, then its Job), and the warnings.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Output {
    pub objects: Vec<Value>,
    pub warnings: Vec<String>,
}

/// Renders every Task of `inputs`, resolving Agents as the controller does. Returns every
/// error, each naming its file, object and field.
pub fn render_all(pipeline: &Pipeline, inputs: &Inputs) -> Result<Output, Vec<InputError>> {
    let mut output = Output::default();
    let mut errors = Vec::new();
    for Sourced { file, object: task } in &inputs.tasks {
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
        let agent = match resolve_agent(task, |name| inputs.agent(namespace, name)) {
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
        match pipeline.render(task, agent.map(|agent| &agent.object)) {
            Ok(rendered) => {
                let encoded = rendered
                    .config_maps
                    .iter()
                    .map(serde_json::to_value)
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
