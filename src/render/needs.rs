//! What a Task needs before its Job can be rendered and created: its Agent (by name), the
//! ConfigMaps its contexts and its Agent's default contexts read, and the render plugins its
//! Agent names. One definition for the controller and `kubetask render`.

use kubetask_api::{Agent, Context, DEFAULT_AGENT_NAME, FileContext, Task};

/// A ConfigMap a context reads, with the field that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMapUse {
    /// `spec.contexts[0].file.source.configMapKeyRef` (prefixed with the Agent for
    /// `defaultContexts`).
    pub field: String,
    pub name: String,
    /// The key a `configMapKeyRef` reads; `None` for a whole-ConfigMap `configMapRef`.
    pub key: Option<String>,
    pub optional: bool,
}

/// The ConfigMaps one file context reads: (field, name, key, optional). The key is `None` for a
/// whole-ConfigMap `configMapRef`.
fn file_references(
    file: &FileContext,
) -> impl Iterator<Item = (&'static str, &str, Option<&str>, bool)> {
    let source = &file.source;
    let key_ref = source.config_map_key_ref.as_ref().map(|selector| {
        let optional = selector.optional.unwrap_or(false);
        (
            "configMapKeyRef",
            selector.name.as_str(),
            Some(selector.key.as_str()),
            optional,
        )
    });
    let map_ref = source.config_map_ref.as_ref().map(|reference| {
        let optional = reference.optional.unwrap_or(false);
        ("configMapRef", reference.name.as_str(), None, optional)
    });
    key_ref.into_iter().chain(map_ref)
}

fn uses_of(contexts: &[Context], prefix: &str) -> Vec<ConfigMapUse> {
    let mut uses = Vec::new();
    for (index, context) in contexts.iter().enumerate() {
        let Some(file) = &context.file else { continue };
        for (kind, name, key, optional) in file_references(file) {
            uses.push(ConfigMapUse {
                field: format!("{prefix}[{index}].file.source.{kind}"),
                name: name.to_owned(),
                key: key.map(str::to_owned),
                optional,
            });
        }
    }
    uses
}

/// Every ConfigMap the Task's contexts and its Agent's default contexts read.
pub fn config_map_uses(task: &Task, agent: Option<&Agent>) -> Vec<ConfigMapUse> {
    let mut uses = Vec::new();
    if let Some(agent) = agent {
        let name = agent.metadata.name.as_deref().unwrap_or_default();
        uses.extend(uses_of(
            &agent.spec.default_contexts,
            &format!("Agent {name:?} spec.defaultContexts"),
        ));
    }
    uses.extend(uses_of(&task.spec.contexts, "spec.contexts"));
    uses
}

/// The Agent name a Task runs with (explicit `agentRef`, else `default`).
pub fn agent_name(task: &Task) -> &str {
    task.spec
        .agent_ref
        .as_deref()
        .filter(|name| !name.is_empty())
        .unwrap_or(DEFAULT_AGENT_NAME)
}

/// The render plugins the Agent names, in order (cluster policies follow them for every Task).
pub fn plugin_names(agent: Option<&Agent>) -> &[String] {
    agent.map_or(&[], |agent| agent.spec.plugins.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(yaml: &str) -> Task {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn finds_every_config_map_with_its_field() {
        let task = task(
            "apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {name: t, namespace: n}\nspec:\n  contexts:\n  - {type: File, file: {filePath: /workspace/a, source: {inline: x}}}\n  - {type: File, file: {filePath: /workspace/b, source: {configMapKeyRef: {name: guide, key: k}}}}\n  - {type: File, file: {dirPath: /workspace/c, source: {configMapRef: {name: dir, optional: true}}}}\n",
        );
        let agent: Agent = serde_yaml::from_str(
            "apiVersion: kubetask.io/v1alpha1\nkind: Agent\nmetadata: {name: a, namespace: n}\nspec:\n  serviceAccountName: s\n  defaultContexts:\n  - {type: File, file: {filePath: /workspace/d, source: {configMapKeyRef: {name: base, key: b}}}}\n",
        )
        .unwrap();
        let uses = config_map_uses(&task, Some(&agent));
        let summary: Vec<(&str, &str, Option<&str>, bool)> = uses
            .iter()
            .map(|u| {
                (
                    u.field.as_str(),
                    u.name.as_str(),
                    u.key.as_deref(),
                    u.optional,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "Agent \"a\" spec.defaultContexts[0].file.source.configMapKeyRef",
                    "base",
                    Some("b"),
                    false
                ),
                (
                    "spec.contexts[1].file.source.configMapKeyRef",
                    "guide",
                    Some("k"),
                    false
                ),
                (
                    "spec.contexts[2].file.source.configMapRef",
                    "dir",
                    None,
                    true
                ),
            ]
        );
        assert_eq!(agent_name(&task), "default");
        assert!(plugin_names(Some(&agent)).is_empty());
        assert!(plugin_names(None).is_empty());
    }
}
