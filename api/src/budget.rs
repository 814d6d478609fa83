//! A Task's budget: the most its agent's model calls may spend, metered by the model gateway
//! (docs/budgets.md). The gateway refuses the call past it; the controller ends the Task
//! `Failed/BudgetExceeded` with its logs kept. One definition of "over budget" for both.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::lifecycle::Usage;

/// The annotation on a Task's Job holding the budget fixed when the Job was created (the
/// Task's, else its Agent's), as JSON: what the controller and the gateway enforce.
pub const BUDGET_ANNOTATION: &str = "kubetask.io/budget";

/// Most that one run may spend.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
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

impl Budget {
    /// The effective budget of a Task: its own, else its Agent's.
    pub fn effective(task: Option<&Budget>, agent: Option<&Budget>) -> Option<Budget> {
        let set = |b: &&Budget| b.max_cost_usd.is_some() || b.max_tokens.is_some();
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

    /// The budget of a Job's annotation; `None` when absent or unreadable.
    pub fn from_annotation(text: &str) -> Option<Budget> {
        serde_json::from_str(text).ok()
    }
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
        let tokens = Budget {
            max_tokens: Some(1000),
            ..Budget::default()
        };
        assert_eq!(tokens.exceeded(&usage(600, 399, "9")), None);
        assert!(tokens.exceeded(&usage(600, 400, "0")).is_some());
        let dollars = Budget {
            max_cost_usd: Some(0.5),
            ..Budget::default()
        };
        assert_eq!(dollars.exceeded(&usage(10_000_000, 1, "0.4999")), None);
        let why = dollars.exceeded(&usage(1, 1, "0.5")).unwrap_or_default();
        assert!(why.contains("$0.5000 of its budget of $0.5000"), "{why}");
        // Nothing spent yet, or nothing priced: not over a dollar budget.
        assert_eq!(dollars.exceeded(&Usage::default()), None);
    }

    #[test]
    fn a_tasks_own_budget_wins_over_its_agents() {
        let task = Budget {
            max_tokens: Some(5),
            ..Budget::default()
        };
        let agent = Budget {
            max_cost_usd: Some(1.0),
            ..Budget::default()
        };
        assert_eq!(Budget::effective(Some(&task), Some(&agent)), Some(task));
        assert_eq!(Budget::effective(None, Some(&agent)), Some(agent.clone()));
        assert_eq!(Budget::effective(Some(&Budget::default()), None), None);
        let annotation = agent.to_annotation();
        assert_eq!(annotation, r#"{"maxCostUSD":1.0}"#);
        assert_eq!(Budget::from_annotation(&annotation), Some(agent));
    }
}
