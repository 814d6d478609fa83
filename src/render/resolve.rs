//! Which Agent runs a Task.

use kubetask_api::Task;
use thiserror::Error;

/// The Task names an Agent that does not exist.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("spec.agentRef: Agent {name:?} does not exist in namespace {namespace:?}")]
pub struct AgentNotFound {
    pub name: String,
    pub namespace: String,
}

/// Resolves the Agent of `task`: its explicit `spec.agentRef` (which must exist), else the
/// Agent named `default` in its namespace, else none (built-in defaults). `find` looks an Agent
/// up by name in the Task's namespace; it may return the Agent or anything holding it.
pub fn resolve_agent<'a, A>(
    task: &Task,
    find: impl FnOnce(&str) -> Option<&'a A>,
) -> Result<Option<&'a A>, AgentNotFound> {
    let name = super::needs::agent_name(task);
    let explicit = task
        .spec
        .agent_ref
        .as_deref()
        .is_some_and(|n| !n.is_empty());
    match find(name) {
        Some(agent) => Ok(Some(agent)),
        None if explicit => Err(AgentNotFound {
            name: name.to_owned(),
            namespace: task.metadata.namespace.clone().unwrap_or_default(),
        }),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use kubetask_api::{Agent, AgentSpec, TaskSpec};

    use super::*;

    fn task(agent_ref: Option<&str>) -> Task {
        let mut task = Task::new(
            "t",
            TaskSpec {
                contexts: vec![],
                agent_ref: agent_ref.map(str::to_owned),
                ..TaskSpec::default()
            },
        );
        task.metadata.namespace = Some("ns".to_owned());
        task
    }

    #[test]
    fn resolution_order() {
        let default = Agent::new("default", AgentSpec::default());
        let claude = Agent::new("claude", AgentSpec::default());
        let agents = [&default, &claude];
        let find = |name: &str| {
            agents
                .iter()
                .copied()
                .find(|agent| agent.metadata.name.as_deref() == Some(name))
        };

        assert_eq!(
            resolve_agent(&task(Some("claude")), find),
            Ok(Some(&claude)),
            "explicit agentRef"
        );
        assert_eq!(
            resolve_agent(&task(None), find),
            Ok(Some(&default)),
            "no agentRef: the default Agent"
        );
        assert_eq!(
            resolve_agent(&task(Some("")), find),
            Ok(Some(&default)),
            "empty agentRef counts as none"
        );
        assert_eq!(
            resolve_agent::<Agent>(&task(None), |_| None),
            Ok(None),
            "no default Agent: built-in defaults"
        );
        assert_eq!(
            resolve_agent(&task(Some("missing")), find),
            Err(AgentNotFound {
                name: "missing".to_owned(),
                namespace: "ns".to_owned()
            }),
            "a missing explicit Agent is an error"
        );
    }
}
