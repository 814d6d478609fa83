//! The one place a Task's egress policy is worked out, for the controller (which refuses a
//! Task whose `spec.egress` is invalid and renders the rest) and for the exit (which enforces
//! it): the Agent's `spec.egress` narrowed by the Task's, with the workspace's repository (and
//! its pull request's API) reachable too.

use kube::ResourceExt as _;
use kubetask_api::egress::{EgressMode, EgressPolicy, InvalidEgress, effective};
use kubetask_api::{Agent, Task, Workspace};

/// The policy of `task` run by `agent` (none: built-in defaults), `default_mode` when neither
/// sets a mode; an invalid `spec.egress` is refused naming the object and field.
pub fn task_policy(
    default_mode: EgressMode,
    agent: Option<&Agent>,
    task: &Task,
) -> Result<EgressPolicy, InvalidEgress> {
    let agent_object = agent.map(|a| format!("Agent/{}", a.name_any()));
    let task_object = format!("Task/{}", task.name_any());
    let policy = effective(
        default_mode,
        agent
            .zip(agent_object.as_deref())
            .and_then(|(a, object)| a.spec.egress.as_ref().map(|e| (object, e))),
        task.spec.egress.as_ref().map(|e| (task_object.as_str(), e)),
    )?;
    let workspace = Workspace::merged(
        agent.and_then(|a| a.spec.workspace.as_ref()),
        task.spec.workspace.as_ref(),
    );
    Ok(policy.with_workspace(workspace.as_ref()))
}
