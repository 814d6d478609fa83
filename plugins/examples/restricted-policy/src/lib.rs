//! An example cluster policy: every agent pod runs under the Kubernetes *restricted* pod
//! security profile, every container gets default resource requests and limits, every Task
//! names its owning team, and no Task or Agent asks for `Open` egress.
//!
//! What it can fix it fixes (unset fields get the restricted value); what it cannot fix — a
//! field explicitly set to something the profile forbids, or a Task without a team — it denies,
//! naming the field. Install it as a cluster policy:
//! `kubetask plugin pack restricted_policy.wasm --name restricted --policy 100`.
#![deny(unsafe_code)]

mod pod_security;
mod resources;

use std::collections::BTreeMap;

use kubetask_plugin::{Draft, Error, Plugin, Request};

/// The pod spec in the Job, as a JSON pointer.
const POD: &str = "/spec/template/spec";

/// The Task label that names the owning team; copied onto the Job and its pods.
pub const TEAM_LABEL: &str = "kubetask.io/team";

/// The policy.
pub struct RestrictedPolicy;

impl Plugin for RestrictedPolicy {
    fn render(request: Request) -> Result<Draft, Error> {
        let team = request
            .task_label(TEAM_LABEL)
            .filter(|team| !team.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::denied(format!(
                    "every Task must name its owning team: set the label {TEAM_LABEL} \
                     (metadata.labels[{TEAM_LABEL}])"
                ))
            })?;
        refuse_open_egress(&request)?;
        let mut draft = request.draft()?;
        let job = &mut draft.job;
        // Only the parts the policy reads are decoded (kubetask_plugin::Object); the rest of
        // the Job passes through as it came.
        for labels in ["/metadata/labels", "/spec/template/metadata/labels"] {
            job.edit(labels, |labels: &mut BTreeMap<String, String>| {
                labels.insert(TEAM_LABEL.to_owned(), team.clone());
            })?;
        }
        pod_security::enforce(job)?;
        resources::apply_defaults(job)?;
        Ok(draft)
    }
}

/// `spec.egress.mode: Open` on the Task or its Agent is denied: on this cluster agent pods
/// reach listed domains only (docs/security.md). A Task that sets no mode gets the
/// controller's `--default-egress-mode`, which a plugin cannot see: set it to `AllowList` or
/// `Deny` beside this policy.
fn refuse_open_egress(request: &Request) -> Result<(), Error> {
    // Read at its pointer, not decoded: decoding the whole Task would carry its decoder
    // (three times the plugin's size).
    const MODE: &str = "/spec/egress/mode";
    let message = |object: String| {
        Error::denied(format!(
            "{object}: spec.egress.mode Open is not allowed on this cluster: \
             use AllowList with the domains the agent needs (spec.egress.allowedDomains)"
        ))
    };
    if request.task.str(MODE) == Some("Open") {
        return Err(message(request.task_object()));
    }
    if let Some(agent) = &request.agent
        && agent.str(MODE) == Some("Open")
    {
        let name = agent.str("/metadata/name").unwrap_or_default();
        return Err(message(format!("Agent/{name}")));
    }
    Ok(())
}

kubetask_plugin::export_plugin!(RestrictedPolicy);

#[cfg(test)]
mod tests;
