//! Budgets (docs/budgets.md). A Task's own: [`Limits`], the most its agent's model calls may
//! spend, metered by the model gateway, which refuses the call past it; the controller then
//! ends the Task `Failed/BudgetExceeded` with its logs kept. One definition of "over budget"
//! for both. And a namespace's: the [`Budget`] resource, limits per period (a day, a week, a
//! month) for the Tasks it selects, against which each Task's cap is reserved when it is
//! admitted, so that Tasks running together cannot overshoot it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube_derive::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::lifecycle::Usage;
use crate::syntax::{MAX_SUBDOMAIN, SUBDOMAIN_PATTERN};

/// The annotation on a Task's Job holding the limits fixed when the Job was created (the
/// Task's, else its Agent's, lowered to what its Budgets reserved), as JSON: what the
/// controller and the gateway enforce.
pub const BUDGET_ANNOTATION: &str = "kubetask.io/budget";

/// Most that one run (or, in a [`Budget`], one period) may spend.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// US dollars, as the gateway's price table prices the calls (e.g. `0.5`).
    #[serde(
        default,
        rename = "maxCostUSD",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 0))]
    pub max_cost_usd: Option<f64>,
    /// Input and output tokens together (cache reads and writes count as input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_tokens: Option<i64>,
}

impl Limits {
    /// The effective limits of a Task: its own, else its Agent's.
    pub fn effective(task: Option<&Limits>, agent: Option<&Limits>) -> Option<Limits> {
        let set = |b: &&Limits| b.max_cost_usd.is_some() || b.max_tokens.is_some();
        task.filter(set).or(agent.filter(set)).cloned()
    }

    /// Why `usage` is at or past this budget (what it spent against which limit), or `None`.
    pub fn exceeded(&self, usage: &Usage) -> Option<String> {
        let tokens = usage.input_tokens.unwrap_or(0) + usage.output_tokens.unwrap_or(0);
        if let Some(max) = self.max_tokens
            && tokens >= max
        {
            return Some(format!(
                "its model calls used {tokens} tokens of its budget of {max}"
            ));
        }
        let cost = usage.cost.as_deref().and_then(|c| c.parse::<f64>().ok());
        if let (Some(max), Some(cost)) = (self.max_cost_usd, cost)
            && cost >= max
        {
            return Some(format!(
                "its model calls cost ${cost:.4} of its budget of ${max:.4}"
            ));
        }
        None
    }

    /// The budget as the Job annotation holds it.
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The limits of a Job's annotation; `None` when absent or unreadable.
    pub fn from_annotation(text: &str) -> Option<Limits> {
        serde_json::from_str(text).ok()
    }
}

/// A namespace's spending limit per period for the Tasks it selects. When a Task is admitted
/// its cap (its own limits, else what is left) is reserved here, so Tasks running together
/// cannot overshoot; when it finishes the reservation becomes what it really spent.
#[derive(CustomResource, Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "kubetask.io",
    version = "v1alpha1",
    kind = "Budget",
    namespaced,
    derive = "PartialEq",
    status = "BudgetStatus",
    category = "kubetask",
    printcolumn = r#"{"name":"Period","type":"string","jsonPath":".spec.period.type"}"#,
    printcolumn = r#"{"name":"Spent USD","type":"number","jsonPath":".status.spentUSD"}"#,
    printcolumn = r#"{"name":"Reserved USD","type":"number","jsonPath":".status.reservedUSD"}"#,
    printcolumn = r#"{"name":"Limit USD","type":"number","jsonPath":".spec.limits.maxCostUSD"}"#,
    printcolumn = r#"{"name":"Tokens","type":"integer","jsonPath":".status.spentTokens"}"#,
    printcolumn = r#"{"name":"Token Limit","type":"integer","jsonPath":".spec.limits.maxTokens"}"#,
    printcolumn = r#"{"name":"Since","type":"date","jsonPath":".status.periodStart"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    doc = "A Budget: what the Tasks it selects may spend on model calls per period.",
    crates(
        kube_core = "::kube_core",
        k8s_openapi = "::k8s_openapi",
        schemars = "::schemars",
        serde = "::serde",
        serde_json = "::serde_json"
    )
)]
#[x_kube(
    validation = Rule::new("has(self.limits.maxCostUSD) || has(self.limits.maxTokens)").message("spec.limits needs maxCostUSD or maxTokens").field_path(".limits"),
    crates(kube_core = "::kube_core", schemars = "::schemars", serde = "::serde")
)]
#[serde(rename_all = "camelCase")]
pub struct BudgetSpec {
    /// The Tasks it governs, by label (with `agentRef`, both must match). Unset: every Task
    /// of the namespace (of `agentRef`'s Agent, when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Only the Tasks of this Agent (by name, in the Budget's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SUBDOMAIN_PATTERN), length(max = MAX_SUBDOMAIN))]
    pub agent_ref: Option<String>,
    /// The period the limits apply to; spending starts again from zero at each new one.
    pub period: Period,
    /// The most the governed Tasks may spend together in one period.
    pub limits: Limits,
    /// What happens to a Task that would start when too little is left: `Queue` (the
    /// default: it waits `Pending/BudgetExhausted` until a running Task gives back what it
    /// did not spend, or the next period) or `Stop` (it ends `Failed/BudgetExceeded`).
    #[serde(default)]
    pub on_exceed: OnExceed,
}

/// A Budget's period.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Period {
    /// `Daily`, `Weekly` (from Monday) or `Monthly`.
    #[serde(rename = "type")]
    pub kind: PeriodType,
    /// The IANA time zone whose midnight starts a period (e.g. `Europe/Paris`). Default: UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub time_zone: Option<String>,
}

/// How long a Budget's period is.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeriodType {
    Daily,
    Weekly,
    Monthly,
}

/// What a Budget does with a Task it has too little left for.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnExceed {
    /// The Task waits until enough is left.
    #[default]
    Queue,
    /// The Task ends `Failed/BudgetExceeded` without running.
    Stop,
}

/// What a Budget's period has spent and holds, written by the controller.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BudgetStatus {
    /// When the current period began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_start: Option<Time>,
    /// When it ends (and the next begins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_end: Option<Time>,
    /// What the period's finished Tasks spent, in US dollars.
    #[serde(default, rename = "spentUSD")]
    pub spent_usd: f64,
    /// The tokens they used.
    #[serde(default)]
    pub spent_tokens: i64,
    /// What the running Tasks may still spend: the sum of `reservations`, in US dollars.
    #[serde(default, rename = "reservedUSD")]
    pub reserved_usd: f64,
    /// The tokens they may still use.
    #[serde(default)]
    pub reserved_tokens: i64,
    /// One per admitted Task that has not finished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reservations: Vec<Reservation>,
    /// `Ready`: whether the Budget can be applied (`False` names what to fix).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation the status was written for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The cap reserved for one admitted Task.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    /// The Task's name.
    pub task: String,
    /// The Task's uid (a Task recreated under the same name is another Task).
    pub uid: String,
    /// US dollars reserved (when the Budget limits dollars).
    #[serde(default, rename = "costUSD", skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Tokens reserved (when the Budget limits tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: i64, output: i64, cost: &str) -> Usage {
        Usage {
            input_tokens: Some(input),
            output_tokens: Some(output),
            cost: Some(cost.to_owned()),
            ..Usage::default()
        }
    }

    #[test]
    fn over_budget_is_at_or_past_either_limit() {
        let tokens = Limits {
            max_tokens: Some(1000),
            ..Limits::default()
        };
        assert_eq!(tokens.exceeded(&usage(600, 399, "9")), None);
        assert!(tokens.exceeded(&usage(600, 400, "0")).is_some());
        let dollars = Limits {
            max_cost_usd: Some(0.5),
            ..Limits::default()
        };
        assert_eq!(dollars.exceeded(&usage(10_000_000, 1, "0.4999")), None);
        let why = dollars.exceeded(&usage(1, 1, "0.5")).unwrap_or_default();
        assert!(why.contains("$0.5000 of its budget of $0.5000"), "{why}");
        // Nothing spent yet, or nothing priced: not over a dollar budget.
        assert_eq!(dollars.exceeded(&Usage::default()), None);
    }

    #[test]
    fn a_tasks_own_budget_wins_over_its_agents() {
        let task = Limits {
            max_tokens: Some(5),
            ..Limits::default()
        };
        let agent = Limits {
            max_cost_usd: Some(1.0),
            ..Limits::default()
        };
        assert_eq!(Limits::effective(Some(&task), Some(&agent)), Some(task));
        assert_eq!(Limits::effective(None, Some(&agent)), Some(agent.clone()));
        assert_eq!(Limits::effective(Some(&Limits::default()), None), None);
        let annotation = agent.to_annotation();
        assert_eq!(annotation, r#"{"maxCostUSD":1.0}"#);
        assert_eq!(Limits::from_annotation(&annotation), Some(agent));
    }
}
