//! An example mapper plugin (a TaskTrigger's `spec.mapper`, docs/plugins.md): routes issues
//! by their labels, which only people with triage access can set.
//!
//! - `wontfix` or `duplicate`: no Task (skipped as `WontFix`).
//! - `agent:<name>`: the Task runs with that Agent — if the trigger allows it in its
//!   annotation `label-router.kubetask.io/agents` (comma-separated); another name is skipped
//!   as `AgentNotAllowed`, so a label cannot pick an Agent the admin did not offer.
//! - `team:<name>`: the Task gets the label `kubetask.io/team: <name>` (a valid label value).
//! - Events the built-in filters skip stay skipped, with the built-in reason.
//!
//! Install: `kubetask plugin pack label_router.wasm --name label-router > configmap.yaml`,
//! then `spec.mapper: label-router` on the trigger.
#![deny(unsafe_code)]

use kubetask_plugin::Error;
use kubetask_plugin::mapper::{MapRequest, Mapper, Outcome};

/// The trigger annotation listing the Agents an `agent:` label may pick.
pub const AGENTS_ANNOTATION: &str = "label-router.kubetask.io/agents";
/// The Task label a `team:` label sets.
pub const TEAM_LABEL: &str = "kubetask.io/team";

/// The mapper.
pub struct LabelRouter;

impl Mapper for LabelRouter {
    fn map(request: MapRequest) -> Result<Outcome, Error> {
        if let Some(skip) = request.builtin_skip {
            return Ok(Outcome::Skip(skip));
        }
        let labels = &request.event.labels;
        if let Some(label) = labels.iter().find(|l| *l == "wontfix" || *l == "duplicate") {
            return Ok(Outcome::skip(
                "WontFix",
                format!("{} is labelled {label:?}", request.event.url),
            ));
        }
        let mut task = request.task;
        if let Some(agent) = labels.iter().find_map(|l| l.strip_prefix("agent:")) {
            let offered: Vec<&str> = request
                .trigger
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(AGENTS_ANNOTATION))
                .map(|list| list.split(',').map(str::trim).collect())
                .unwrap_or_default();
            if !offered.contains(&agent) {
                return Ok(Outcome::skip(
                    "AgentNotAllowed",
                    format!(
                        "label agent:{agent} names an Agent the trigger does not offer (annotation {AGENTS_ANNOTATION}: {offered:?})"
                    ),
                ));
            }
            task.spec.agent_ref = Some(agent.to_owned());
        }
        if let Some(team) = labels.iter().find_map(|l| l.strip_prefix("team:"))
            && is_label_value(team)
        {
            task.metadata
                .labels
                .get_or_insert_default()
                .insert(TEAM_LABEL.to_owned(), team.to_owned());
        }
        Ok(Outcome::Task(Box::new(task)))
    }
}

/// Whether `value` may be a Kubernetes label value.
fn is_label_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric())
}

kubetask_plugin::export_mapper!(LabelRouter);

#[cfg(test)]
mod tests;
