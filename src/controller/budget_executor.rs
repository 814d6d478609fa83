//! The Budget executor (docs/budgets.md): reserves a Task's cap in the Budgets that govern it
//! when the Task is admitted, settles the reservation into what it spent when it finishes,
//! and, per Budget, starts each new period and settles the reservations of Tasks deleted
//! before they finished. Every write is a merge patch of the Budget's status with its
//! `resourceVersion` as a precondition: Tasks admitted at the same time, by one replica or
//! several, never reserve from the same money twice. What to write is [`super::budget_rules`]'
//! to decide.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use kubetask_api::{Budget, BudgetStatus, Limits, OnExceed, Task};
use serde_json::json;
use tokio::sync::mpsc;

use super::budget_rules::{self, Reserve};
use super::{caches, failure};
use crate::cron::Clock;

/// How many times a Budget's status write is tried, each on a fresh read, while other writers
/// win the race (409).
const CONFLICT_RETRIES: usize = 8;
/// How often a Budget is looked at even if nothing changed (a missed event).
const SWEEP: Duration = Duration::from_secs(300);

/// What a Budget reconcile needs.
pub struct Context {
    pub client: kube::Client,
    /// The controller's Task cache: whose reservations are still running.
    pub tasks: Store<Task>,
    pub clock: Clock,
    /// Tasks to look again at: those waiting for a Budget that changed.
    wake: mpsc::Sender<ObjectRef<Task>>,
    /// Failed reconciles in a row, by Budget uid (for the backoff and the log's rate).
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        tasks: Store<Task>,
        clock: Clock,
        wake: mpsc::Sender<ObjectRef<Task>>,
    ) -> Self {
        Self {
            client,
            tasks,
            clock,
            wake,
            failures: Mutex::default(),
        }
    }
}

/// A request that failed; retried with backoff.
#[derive(Debug, thiserror::Error)]
#[error("write the status of Budget {name:?}: {source}")]
pub struct Error {
    name: String,
    #[source]
    source: kube::Error,
}

fn ready(
    status: &'static str,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: "Ready".to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time: Time(jiff::Timestamp::now()),
        observed_generation: generation,
    }
}

/// Keeps the transition time of an unchanged condition (a status that says the same thing is
/// not written again).
fn with_condition(status: &mut BudgetStatus, condition: Condition) {
    match status
        .conditions
        .iter_mut()
        .find(|c| c.type_ == condition.type_)
    {
        Some(old)
            if old.status == condition.status
                && old.reason == condition.reason
                && old.message == condition.message
                && old.observed_generation == condition.observed_generation => {}
        Some(old) => *old = condition,
        None => status.conditions.push(condition),
    }
}

/// Writes `next` as the status of `budget`, if `budget` is still the version read.
async fn write(api: &Api<Budget>, budget: &Budget, next: &BudgetStatus) -> kube::Result<()> {
    let mut patch = json!({
        "apiVersion": kubetask_api::API_VERSION,
        "kind": "Budget",
        "metadata": {"resourceVersion": budget.metadata.resource_version},
        "status": next,
    });
    // A merge patch keeps a field it does not name: the last reservation leaving must be
    // written as an empty list.
    patch["status"]["reservations"] = json!(next.reservations);
    api.patch_status(
        &budget.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(drop)
}

/// Reconciles one Budget: the current period, the reservations of Tasks that are gone.
pub async fn reconcile(budget: Arc<Budget>, ctx: Arc<Context>) -> Result<Action, Error> {
    if caches::listed(&ctx.tasks, Duration::from_secs(10)).await == caches::Listed::NotYet {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let namespace = budget.namespace().unwrap_or_default();
    let name = budget.name_any();
    let generation = budget.meta().generation;
    let status = budget.status.clone().unwrap_or_default();
    let now = ctx.clock.now();
    let (next, wait) = match budget_rules::period_at(&budget.spec.period, now) {
        Err(why) => {
            let mut next = status.clone();
            with_condition(
                &mut next,
                ready("False", "InvalidTimeZone", why, generation),
            );
            (next, None)
        }
        Ok((start, end)) => {
            let mut next = budget_rules::roll(&status, start, end);
            for reservation in &status.reservations {
                let task = ctx
                    .tasks
                    .get(&ObjectRef::new(&reservation.task).within(&namespace));
                let gone = task.is_none_or(|t| t.uid().as_deref() != Some(&reservation.uid));
                if gone
                    && let Some(settled) = budget_rules::settle(
                        &next,
                        &reservation.uid,
                        budget_rules::held(reservation),
                    )
                {
                    tracing::info!(budget = %name, %namespace, task = %reservation.task, "a Task deleted before it finished: its whole reservation counts as spent");
                    next = settled;
                }
            }
            let message = format!("period from {start} to {end}");
            with_condition(&mut next, ready("True", "PeriodOpen", message, generation));
            next.observed_generation = generation;
            let left = end.duration_since(now).unsigned_abs();
            (next, Some(left + Duration::from_secs(1)))
        }
    };
    if next != status {
        let api = Api::<Budget>::namespaced(ctx.client.clone(), &namespace);
        match write(&api, &budget, &next).await {
            Ok(()) => {}
            // Someone else wrote first: the watch brings the newer Budget.
            Err(kube::Error::Api(e)) if e.code == 409 => return Ok(Action::await_change()),
            Err(source) => return Err(Error { name, source }),
        }
    }
    if let Ok(mut failures) = ctx.failures.lock() {
        failures.remove(&budget.uid().unwrap_or_default());
    }
    // Whatever changed (a Task gave money back, a new period, a higher limit) may let the
    // Tasks waiting for this Budget start.
    for task in ctx.tasks.state() {
        let waiting = task.namespace().as_deref() == Some(namespace.as_str())
            && budget_rules::waits_for(&task, &name);
        if waiting {
            let _ = ctx.wake.try_send(ObjectRef::from_obj(task.as_ref()));
        }
    }
    let again = wait.map_or(SWEEP, |w| ctx.clock.wait(w).min(SWEEP));
    Ok(Action::requeue(again))
}

/// Retries a failed Budget reconcile with backoff; says so in the log after a few tries.
pub fn error_policy(budget: Arc<Budget>, error: &Error, ctx: Arc<Context>) -> Action {
    let uid = budget.uid().unwrap_or_default();
    let attempts = ctx.failures.lock().map_or(1, |mut failures| {
        let count = failures.entry(uid).or_insert(0);
        *count = count.saturating_add(1);
        *count
    });
    if attempts >= failure::VISIBLE_AFTER && attempts.is_power_of_two()
        || attempts == failure::VISIBLE_AFTER
    {
        tracing::warn!(budget = %budget.name_any(), namespace = ?budget.namespace(), attempts, %error, "Budget reconcile failing; retrying with backoff");
    } else {
        tracing::debug!(budget = %budget.name_any(), attempts, %error, "Budget reconcile failed");
    }
    Action::requeue(failure::backoff(attempts, None, 0.5))
}

/// The Budgets (as cached) holding a reservation of Task `uid` in `namespace`.
pub fn holding(budgets: &Store<Budget>, namespace: &str, uid: &str) -> Vec<Arc<Budget>> {
    budgets
        .state()
        .into_iter()
        .filter(|b| b.namespace().as_deref() == Some(namespace))
        .filter(|b| {
            b.status
                .as_ref()
                .is_some_and(|s| s.reservations.iter().any(|r| r.uid == uid))
        })
        .collect()
}

/// The caches a Task's admission reads.
#[derive(Clone, Copy)]
pub struct Caches<'a> {
    pub budgets: &'a Store<Budget>,
    /// Which Tasks wait for a Budget, and since when.
    pub tasks: &'a Store<Task>,
}

/// A Task's admission against its Budgets.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// It may start; its Job's limits (its own, lowered to what its Budgets reserved), if any.
    Admitted(Option<Limits>),
    /// Too little is left in a Budget whose `onExceed` is `Queue`: why.
    Waiting(String),
    /// Too little is left in a Budget whose `onExceed` is `Stop`: why.
    Refused(String),
}

/// Reserves `task`'s cap (`own`: its limits, else its Agent's) in every Budget of `budgets`
/// that governs it, in name order. A Task that may not start gives back what it took in the
/// Budgets before. Each Budget is read fresh from the API server (the cache may be behind a
/// reservation just made) and written with its `resourceVersion` as a precondition.
pub async fn admit(
    client: &kube::Client,
    caches: Caches<'_>,
    clock: &Clock,
    task: &Task,
    own: Option<&Limits>,
) -> kube::Result<Admission> {
    let Caches { budgets, tasks } = caches;
    let namespace = task.namespace().unwrap_or_default();
    let mut governing: Vec<Arc<Budget>> = budgets
        .state()
        .into_iter()
        .filter(|b| budget_rules::governs(b, task))
        .collect();
    if governing.is_empty() {
        return Ok(Admission::Admitted(own.cloned()));
    }
    governing.sort_by_key(|b| b.name_any());
    let name = task.name_any();
    let uid = task.uid().unwrap_or_default();
    // Under `Queue`, first in, first out: a Task waits while one created before it waits for
    // the same Budget (a waiting Task that got its reservation since is not waiting).
    for budget in &governing {
        if budget.spec.on_exceed != OnExceed::Queue {
            continue;
        }
        let ahead = budget_rules::waiting_ahead(budget, task, &tasks.state());
        if let Some(first) = ahead.first() {
            return Ok(Admission::Waiting(format!(
                "Budget {:?} serves the Tasks waiting for it first in, first out: {} created before this one wait{} (the first: Task {first:?}); this one starts after them",
                budget.name_any(),
                ahead.len(),
                if ahead.len() == 1 { "s" } else { "" },
            )));
        }
    }
    // A queued Task the cache already shows too little for waits without a request: every
    // waiting Task is woken when its Budget changes, and only those it may now fit ask the
    // API server. (Under `Stop` the cache, which may be behind, never fails a Task.)
    for budget in &governing {
        if let Ok((start, end)) = budget_rules::period_at(&budget.spec.period, clock.now()) {
            let status = budget_rules::roll(&budget.status.clone().unwrap_or_default(), start, end);
            if let Reserve::Exhausted { why, stop: false } =
                budget_rules::reserve(budget, &status, &name, &uid, own)
            {
                return Ok(Admission::Waiting(waiting(&why, end)));
            }
        }
    }
    let governing: Vec<String> = governing.iter().map(|b| b.name_any()).collect();
    let api = Api::<Budget>::namespaced(client.clone(), &namespace);
    let mut cap = own.cloned();
    let mut taken = Vec::new();
    for budget_name in &governing {
        let outcome = reserve_in(&api, budget_name, clock, &name, &uid, own).await;
        let refused = match outcome {
            Ok(Some(Ok((caps, newly_taken)))) => {
                cap = Some(budget_rules::lower(cap.as_ref(), &caps));
                if newly_taken {
                    taken.push(budget_name.clone());
                }
                continue;
            }
            // Deleted since the cache saw it: it governs nothing.
            Ok(None) => continue,
            Ok(Some(Err(refused))) => Ok(refused),
            Err(error) => Err(error),
        };
        for earlier in &taken {
            if let Err(error) = settle_in(&api, earlier, &uid, (0.0, 0)).await {
                tracing::warn!(budget = %earlier, %namespace, task = %name, %error, "could not give back a reservation (it is settled when the Task finishes)");
            }
        }
        return refused;
    }
    Ok(Admission::Admitted(cap))
}

/// The message of a Task waiting for a Budget.
fn waiting(why: &str, end: jiff::Timestamp) -> String {
    format!(
        "{why}; the Task starts when enough is left (a running Task finishes and gives back what it did not spend, the limit is raised, or the period ends at {end})"
    )
}

/// What to do with a Budget read fresh from the API server.
enum Change<R> {
    /// Write this status; the answer once it is written.
    Write(BudgetStatus, R),
    /// Nothing to write; the answer.
    Keep(R),
}

/// Reads Budget `budget_name`, asks `decide` what to do, and writes the status it decides with
/// the `resourceVersion` read as a precondition; a write that lost a race (409) is decided
/// again on a fresh read, up to [`CONFLICT_RETRIES`] times. `None` when the Budget is gone.
async fn change_status<R>(
    api: &Api<Budget>,
    budget_name: &str,
    decide: impl Fn(&Budget) -> Change<R>,
) -> kube::Result<Option<R>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(budget) = api.get_opt(budget_name).await? else {
            return Ok(None);
        };
        let (next, answer) = match decide(&budget) {
            Change::Keep(answer) => return Ok(Some(answer)),
            Change::Write(next, answer) => (next, answer),
        };
        match write(api, &budget, &next).await {
            Ok(()) => return Ok(Some(answer)),
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < CONFLICT_RETRIES => {}
            Err(error) => return Err(error),
        }
    }
}

/// Reserves in one Budget: `Ok((caps, newly_taken))`, or `Err(admission)` when the Task may
/// not start.
async fn reserve_in(
    api: &Api<Budget>,
    budget_name: &str,
    clock: &Clock,
    task_name: &str,
    uid: &str,
    own: Option<&Limits>,
) -> kube::Result<Option<Result<(Limits, bool), Admission>>> {
    change_status(api, budget_name, |budget| {
        let (start, end) = match budget_rules::period_at(&budget.spec.period, clock.now()) {
            Ok(period) => period,
            Err(why) => {
                return Change::Keep(Err(Admission::Waiting(format!(
                    "Budget {budget_name:?} cannot be applied: {why}"
                ))));
            }
        };
        let status = budget_rules::roll(&budget.status.clone().unwrap_or_default(), start, end);
        match budget_rules::reserve(budget, &status, task_name, uid, own) {
            Reserve::Held(caps) => Change::Keep(Ok((caps, false))),
            Reserve::Reserved(next, caps) => Change::Write(*next, Ok((caps, true))),
            Reserve::Exhausted { why, stop: true } => Change::Keep(Err(Admission::Refused(
                format!("{why}; its onExceed is Stop"),
            ))),
            Reserve::Exhausted { why, stop: false } => {
                Change::Keep(Err(Admission::Waiting(waiting(&why, end))))
            }
        }
    })
    .await
}

/// Settles Task `uid`'s reservation in Budget `budget_name`: it leaves, `spent` is added.
async fn settle_in(
    api: &Api<Budget>,
    budget_name: &str,
    uid: &str,
    spent: (f64, i64),
) -> kube::Result<()> {
    change_status(api, budget_name, |budget| {
        let status = budget.status.clone().unwrap_or_default();
        match budget_rules::settle(&status, uid, spent) {
            Some(next) => Change::Write(next, ()),
            None => Change::Keep(()),
        }
    })
    .await
    .map(drop)
}

/// Settles a finished Task's reservations (the Budgets `budgets` shows holding one) with
/// what it spent (`usage`: its `status.usage`).
pub async fn settle(
    client: &kube::Client,
    budgets: &Store<Budget>,
    task: &Task,
    uid: &str,
    usage: Option<&kubetask_api::Usage>,
) -> kube::Result<()> {
    let namespace = task.namespace().unwrap_or_default();
    let api = Api::<Budget>::namespaced(client.clone(), &namespace);
    for budget in holding(budgets, &namespace, uid) {
        settle_in(&api, &budget.name_any(), uid, budget_rules::spent(usage)).await?;
    }
    Ok(())
}
