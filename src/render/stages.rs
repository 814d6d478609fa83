//! Which installed plugins render a Task, in order: its Agent's `spec.plugins` by name, then
//! every cluster policy by `kubetask.io/policy-order` (ties by name). One definition for the
//! controller (over its watch of plugin ConfigMaps) and `kubetask render` (over the packed
//! manifests given with `-f`), so offline is what the controller runs.

use std::ops::Deref;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kubetask_api::Agent;

use super::needs;
use crate::plugin::source;

/// Why a Task's stages cannot be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unchosen {
    /// A plugin the Agent names is not installed.
    NotFound { agent: String, plugin: String },
    /// A cluster policy's order annotation is not an integer; the message names it.
    BadOrder { policy: String, message: String },
}

/// The installed plugin ConfigMaps (those labelled `kubetask.io/plugin` in the controller's
/// namespace) that render a Task run by `agent`, in pipeline order after the built-in default.
pub fn select<M>(agent: Option<&Agent>, installed: &[M]) -> Result<Vec<M>, Unchosen>
where
    M: Deref<Target = ConfigMap> + Clone,
{
    let mut stages = Vec::new();
    for name in needs::plugin_names(agent) {
        let map = installed
            .iter()
            .find(|m| m.metadata.name.as_deref() == Some(name.as_str()))
            .ok_or_else(|| Unchosen::NotFound {
                agent: agent.map(ResourceExt::name_any).unwrap_or_default(),
                plugin: name.clone(),
            })?;
        stages.push(map.clone());
    }
    let mut policies = Vec::new();
    for map in installed {
        match source::policy_order(map) {
            None => {}
            Some(Ok(order)) => policies.push((order, map.name_any(), map.clone())),
            Some(Err(message)) => {
                return Err(Unchosen::BadOrder {
                    policy: map.name_any(),
                    message,
                });
            }
        }
    }
    policies.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    stages.extend(policies.into_iter().map(|(_, _, map)| map));
    Ok(stages)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use kubetask_api::AgentSpec;

    use super::*;

    fn map(name: &str, order: Option<&str>) -> Arc<ConfigMap> {
        let mut map = ConfigMap::default();
        map.metadata.name = Some(name.to_owned());
        if let Some(order) = order {
            map.metadata.annotations = Some(BTreeMap::from([(
                "kubetask.io/policy-order".to_owned(),
                order.to_owned(),
            )]));
        }
        Arc::new(map)
    }

    fn names(stages: &[Arc<ConfigMap>]) -> Vec<String> {
        stages.iter().map(|m| m.name_any()).collect()
    }

    #[test]
    fn agent_plugins_then_policies_by_order_and_name() {
        let installed = [
            map("late", Some("20")),
            map("git-clone", None),
            map("b-early", Some("10")),
            map("a-early", Some("10")),
            map("unused", None),
        ];
        let mut agent = Agent::new("claude", AgentSpec::default());
        agent.spec.plugins = vec!["git-clone".into()];
        assert_eq!(
            names(&select(Some(&agent), &installed).unwrap()),
            ["git-clone", "a-early", "b-early", "late"]
        );
        assert_eq!(
            names(&select(None, &installed).unwrap()),
            ["a-early", "b-early", "late"]
        );
        agent.spec.plugins = vec!["missing".into()];
        assert_eq!(
            select(Some(&agent), &installed),
            Err(Unchosen::NotFound {
                agent: "claude".into(),
                plugin: "missing".into()
            })
        );
        let broken = [map("p", Some("soon"))];
        assert!(matches!(
            select(None, &broken),
            Err(Unchosen::BadOrder { policy, .. }) if policy == "p"
        ));
    }
}
