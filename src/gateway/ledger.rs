//! The ledger: what each Task spent through the gateway, kept in the API server as the Task's
//! `status.usage` (`metered: true`), not in the gateway's memory. Each replica adds only what
//! it metered since its last write, with the Task's `resourceVersion` as a precondition (a
//! conflict re-reads and adds again), so two replicas never count a call twice and a restart
//! loses only what was metered since the last write (written at a bounded rate, and once
//! more when the gateway stops).

use kube::Api;
use kube::api::{Patch, PatchParams};
use kubetask_api::{Task, Usage};
use serde_json::json;

use super::keys::Caller;

/// The gateway's field manager on `tasks/status`.
pub const FIELD_MANAGER: &str = "kubetask-gateway";
/// Tries of one write against conflicting writers.
const TRIES: usize = 8;

/// What a Task spent, in the gateway's units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spent {
    /// Input tokens, cache reads and writes included.
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Cost in micro-dollars of the responses that could be priced.
    pub cost_micro: u64,
    /// Responses whose cost is unknown (no usage, or a model without a price).
    pub unpriced: u64,
}

impl Spent {
    /// The sum of two amounts.
    pub fn plus(self, other: Spent) -> Spent {
        Spent {
            input_tokens: self.input_tokens.saturating_add(other.input_tokens),
            output_tokens: self.output_tokens.saturating_add(other.output_tokens),
            cost_micro: self.cost_micro.saturating_add(other.cost_micro),
            unpriced: self.unpriced.saturating_add(other.unpriced),
        }
    }

    /// What is left of `self` once `other` is taken away (never below zero).
    pub fn minus(self, other: Spent) -> Spent {
        Spent {
            input_tokens: self.input_tokens.saturating_sub(other.input_tokens),
            output_tokens: self.output_tokens.saturating_sub(other.output_tokens),
            cost_micro: self.cost_micro.saturating_sub(other.cost_micro),
            unpriced: self.unpriced.saturating_sub(other.unpriced),
        }
    }

    pub fn is_zero(&self) -> bool {
        *self == Spent::default()
    }

    /// As `status.usage` records it.
    pub fn to_usage(self) -> Usage {
        let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Usage {
            input_tokens: Some(signed(self.input_tokens)),
            output_tokens: Some(signed(self.output_tokens)),
            cost: Some(format!(
                "{}.{:06}",
                self.cost_micro / 1_000_000,
                self.cost_micro % 1_000_000
            )),
            metered: Some(true),
            unpriced_responses: Some(signed(self.unpriced)),
        }
    }

    /// What a `status.usage` the gateway wrote records; zero for one it did not write.
    pub fn of_usage(usage: Option<&Usage>) -> Spent {
        let Some(usage) = usage.filter(|u| u.metered == Some(true)) else {
            return Spent::default();
        };
        let unsigned = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
        Spent {
            input_tokens: unsigned(usage.input_tokens),
            output_tokens: unsigned(usage.output_tokens),
            cost_micro: usage.cost.as_deref().and_then(micro_dollars).unwrap_or(0),
            unpriced: unsigned(usage.unpriced_responses),
        }
    }
}

/// `"1.5"` → 1,500,000 micro-dollars (digits past the sixth decimal dropped).
fn micro_dollars(text: &str) -> Option<u64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    if !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = fraction.chars().take(6).collect();
    while digits.len() < 6 {
        digits.push('0');
    }
    whole
        .checked_mul(1_000_000)?
        .checked_add(digits.parse::<u64>().ok()?)
}

/// How a write of the ledger ended.
#[derive(Debug)]
pub enum Written {
    /// The Task's ledger now holds this.
    Total(Spent),
    /// The Task is gone (or another Task has its name now): nothing to record it on.
    Gone,
}

/// Adds `delta` to the ledger of `caller`'s Task.
pub async fn add(client: &kube::Client, caller: &Caller, delta: Spent) -> kube::Result<Written> {
    let tasks: Api<Task> = Api::namespaced(client.clone(), &caller.namespace);
    let mut last = None;
    for _ in 0..TRIES {
        let Some(task) = tasks.get_opt(&caller.task).await? else {
            return Ok(Written::Gone);
        };
        if task.metadata.uid.as_deref() != Some(caller.uid.as_str()) {
            return Ok(Written::Gone);
        }
        let recorded = Spent::of_usage(task.status.as_ref().and_then(|s| s.usage.as_ref()));
        let total = recorded.plus(delta);
        let patch = json!({
            "metadata": {"resourceVersion": task.metadata.resource_version},
            "status": {"usage": total.to_usage()},
        });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        match tasks
            .patch_status(&caller.task, &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(Written::Total(total)),
            Err(kube::Error::Api(status)) if status.code == 409 => last = Some(status),
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(Written::Gone),
            Err(error) => return Err(error),
        }
    }
    Err(kube::Error::Api(last.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_reads_back_what_it_wrote() {
        let spent = Spent {
            input_tokens: 2120,
            output_tokens: 518,
            cost_micro: 14_130,
            unpriced: 1,
        };
        let usage = spent.to_usage();
        assert_eq!(usage.cost.as_deref(), Some("0.014130"));
        assert_eq!(usage.metered, Some(true));
        assert_eq!(Spent::of_usage(Some(&usage)), spent);
        // What an agent reported is not the ledger.
        let reported = Usage {
            metered: None,
            ..usage
        };
        assert_eq!(Spent::of_usage(Some(&reported)), Spent::default());
        assert_eq!(micro_dollars("12"), Some(12_000_000));
        assert_eq!(micro_dollars("0.1234567"), Some(123_456));
        assert_eq!(micro_dollars("1.x"), None);
        assert_eq!(spent.plus(spent).minus(spent), spent);
    }
}
