//! The pure rules of Budgets (docs/budgets.md): which Tasks a Budget governs, when its period
//! starts and ends, how much of it a Task may reserve when it is admitted, and how a finished
//! Task's reservation becomes what it spent. The executor (`budget_executor`) reads the cluster
//! and writes what these rules decide.

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};
use kube::ResourceExt;
use kubetask_api::{
    Budget, BudgetStatus, Limits, OnExceed, Period, PeriodType, Reservation, Task, Usage,
};

use std::sync::Arc;

use super::status;
use crate::egress::enforcement::selects;
use crate::render::needs;

/// Whether `budget` governs `task`: same namespace, its Agent (when `agentRef` is set) and
/// its labels (when `selector` is set).
pub fn governs(budget: &Budget, task: &Task) -> bool {
    budget.namespace() == task.namespace()
        && budget
            .spec
            .agent_ref
            .as_deref()
            .is_none_or(|agent| agent == needs::agent_name(task))
        && budget
            .spec
            .selector
            .as_ref()
            .is_none_or(|selector| selects(selector, task.labels()))
}

/// Whether `task` waits (`Pending/BudgetExhausted`) for `budget`. Every such message starts
/// with `Budget "<name>"`, the Budget that keeps the Task waiting (a Kubernetes name has no
/// quote to escape); a message of another shape counts as waiting for every Budget.
pub fn waits_for(task: &Task, budget: &str) -> bool {
    let Some(condition) = task
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == status::CONDITION))
        .filter(|c| c.reason == status::reason::BUDGET_EXHAUSTED)
    else {
        return false;
    };
    match condition
        .message
        .strip_prefix("Budget \"")
        .and_then(|rest| rest.split_once('"'))
    {
        Some((name, _)) => name == budget,
        None => true,
    }
}

/// The Tasks (by name, first created first) that `budget` governs, created before `task`,
/// waiting for this Budget (`Pending/BudgetExhausted`, see [`waits_for`]) and holding no
/// reservation in it: under `Queue` they start before `task`. One waiting for another Budget
/// does not hold up this one's line.
pub fn waiting_ahead(budget: &Budget, task: &Task, tasks: &[Arc<Task>]) -> Vec<String> {
    let key = |t: &Task| {
        (
            t.metadata.creation_timestamp.as_ref().map(|c| c.0),
            t.name_any(),
        )
    };
    let mine = key(task);
    let budget_name = budget.name_any();
    let holds = |uid: Option<String>| {
        budget
            .status
            .as_ref()
            .is_some_and(|s| s.reservations.iter().any(|r| Some(&r.uid) == uid.as_ref()))
    };
    let mut ahead: Vec<(_, String)> = tasks
        .iter()
        .filter(|t| t.uid() != task.uid() && governs(budget, t))
        .filter(|t| {
            t.metadata.deletion_timestamp.is_none()
                && t.spec.cancel.is_none()
                && waits_for(t, &budget_name)
        })
        .filter(|t| !holds(t.uid()))
        .map(|t| key(t))
        .filter(|k| *k < mine)
        .collect();
    ahead.sort();
    ahead.into_iter().map(|(_, name)| name).collect()
}

/// The period that holds `now`: from midnight of its first day in the Budget's time zone to
/// midnight of the next period's. `Err` says what is wrong with the time zone.
pub fn period_at(period: &Period, now: Timestamp) -> Result<(Timestamp, Timestamp), String> {
    let zone = match period.time_zone.as_deref() {
        None | Some("") => TimeZone::UTC,
        Some(name) => TimeZone::get(name).map_err(|_| {
            format!(
                "spec.period.timeZone: {name:?} is not a time zone of the IANA database (e.g. \"Europe/Paris\", \"UTC\")"
            )
        })?,
    };
    let here = now.to_zoned(zone);
    let first_day = match period.kind {
        PeriodType::Daily => here.date(),
        PeriodType::Weekly => here
            .date()
            .checked_sub(i64::from(here.weekday().to_monday_zero_offset()).days())
            .map_err(|e| e.to_string())?,
        PeriodType::Monthly => here.date().first_of_month(),
    };
    let length = match period.kind {
        PeriodType::Daily => 1.day(),
        PeriodType::Weekly => 1.week(),
        PeriodType::Monthly => 1.month(),
    };
    let next_day = first_day.checked_add(length).map_err(|e| e.to_string())?;
    let midnight = |date: jiff::civil::Date| -> Result<Zoned, String> {
        date.to_zoned(here.time_zone().clone())
            .map_err(|e| e.to_string())
    };
    Ok((
        midnight(first_day)?.timestamp(),
        midnight(next_day)?.timestamp(),
    ))
}

/// Dollars are kept to the micro-dollar (the gateway's unit), so sums do not drift.
fn dollars(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

/// What a Task spent, as its `status.usage` says: dollars (when priced) and tokens.
pub fn spent(usage: Option<&Usage>) -> (f64, i64) {
    let Some(usage) = usage else {
        return (0.0, 0);
    };
    let cost = usage
        .cost
        .as_deref()
        .and_then(|c| c.parse::<f64>().ok())
        .filter(|c| c.is_finite() && *c >= 0.0)
        .unwrap_or(0.0);
    let tokens = usage.input_tokens.unwrap_or(0).max(0) + usage.output_tokens.unwrap_or(0).max(0);
    (cost, tokens)
}

/// A status for the period `[start, end)`: a new period starts from nothing spent (the
/// reservations of Tasks still running are kept: they settle into the period they end in).
pub fn roll(status: &BudgetStatus, start: Timestamp, end: Timestamp) -> BudgetStatus {
    let mut next = status.clone();
    let start_time = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(start);
    if next.period_start.as_ref() != Some(&start_time) {
        next.period_start = Some(start_time);
        next.period_end = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(end));
        next.spent_usd = 0.0;
        next.spent_tokens = 0;
    }
    totals(&mut next);
    next
}

/// Recomputes `reservedUSD` and `reservedTokens` from the reservations.
fn totals(status: &mut BudgetStatus) {
    status.reserved_usd = dollars(status.reservations.iter().filter_map(|r| r.cost_usd).sum());
    status.reserved_tokens = status.reservations.iter().filter_map(|r| r.tokens).sum();
}

/// The outcome of asking a Budget for a Task's reservation.
#[derive(Debug, Clone, PartialEq)]
pub enum Reserve {
    /// The Task already holds this reservation: nothing to write.
    Held(Limits),
    /// Write this status: it holds the Task's new reservation (the caps it got).
    Reserved(Box<BudgetStatus>, Limits),
    /// Too little is left; why, and whether the Task ends (`onExceed: Stop`) or waits.
    Exhausted { why: String, stop: bool },
}

/// Reserves `cap` (the Task's own limits, if any) for Task `name`/`uid` in `status` (already
/// rolled to the current period). In each dimension the Budget limits: what is left is the
/// limit less what was spent and what other Tasks hold; the Task gets its own cap, or all
/// that is left when it has none. When its cap does not fit, a queued Task waits for the
/// running ones to give back what they did not spend; with none running, or under `Stop`, it
/// gets what is left. Nothing left: it waits, or ends under `Stop`.
pub fn reserve(
    budget: &Budget,
    status: &BudgetStatus,
    name: &str,
    uid: &str,
    cap: Option<&Limits>,
) -> Reserve {
    if let Some(held) = status.reservations.iter().find(|r| r.uid == uid) {
        return Reserve::Held(Limits {
            max_cost_usd: held.cost_usd,
            max_tokens: held.tokens,
        });
    }
    let limits = &budget.spec.limits;
    let stop = budget.spec.on_exceed == OnExceed::Stop;
    let others_running = !status.reservations.is_empty();
    let budget_name = budget.name_any();
    let mut reservation = Reservation {
        task: name.to_owned(),
        uid: uid.to_owned(),
        cost_usd: None,
        tokens: None,
    };
    let dollar_amount = |v: f64| format!("${v:.4}");
    let token_amount = |v: i64| format!("{v} tokens");
    if let Some(limit) = limits.max_cost_usd {
        let taken = take(
            Dimension {
                limit,
                spent: status.spent_usd,
                held: status.reserved_usd,
                left: dollars(limit - status.spent_usd - status.reserved_usd),
                want: cap.and_then(|c| c.max_cost_usd),
                show: &dollar_amount,
            },
            &budget_name,
            others_running,
            stop,
        );
        match taken {
            Ok(taken) => reservation.cost_usd = Some(dollars(taken)),
            Err(why) => return Reserve::Exhausted { why, stop },
        }
    }
    if let Some(limit) = limits.max_tokens {
        let taken = take(
            Dimension {
                limit,
                spent: status.spent_tokens,
                held: status.reserved_tokens,
                left: limit - status.spent_tokens - status.reserved_tokens,
                want: cap.and_then(|c| c.max_tokens),
                show: &token_amount,
            },
            &budget_name,
            others_running,
            stop,
        );
        match taken {
            Ok(taken) => reservation.tokens = Some(taken),
            Err(why) => return Reserve::Exhausted { why, stop },
        }
    }
    let caps = Limits {
        max_cost_usd: reservation.cost_usd,
        max_tokens: reservation.tokens,
    };
    let mut next = status.clone();
    next.reservations.push(reservation);
    totals(&mut next);
    Reserve::Reserved(Box::new(next), caps)
}

/// One dimension a Budget limits (dollars or tokens), as [`reserve`] weighs it.
struct Dimension<'a, T> {
    limit: T,
    spent: T,
    /// What running Tasks hold.
    held: T,
    /// What is left: the limit less what was spent and what is held.
    left: T,
    /// The Task's own cap in this dimension, if any.
    want: Option<T>,
    /// An amount as messages write it.
    show: &'a dyn Fn(T) -> String,
}

/// What a Task takes of one dimension: its cap, or all that is left when it has none, or when
/// its cap does not fit and nothing else is held (or under `Stop`); `Err` says why it may not
/// start: nothing left, or its cap does not fit while running Tasks hold some.
fn take<T: Copy + PartialOrd + Default>(
    dimension: Dimension<'_, T>,
    budget_name: &str,
    others_running: bool,
    stop: bool,
) -> Result<T, String> {
    let Dimension {
        limit,
        spent,
        held,
        left,
        want,
        show,
    } = dimension;
    if left <= T::default() {
        return Err(format!(
            "Budget {budget_name:?} has nothing left this period: {} spent and {} held by running Tasks of {}",
            show(spent),
            show(held),
            show(limit)
        ));
    }
    let want = want.unwrap_or(left);
    if want > left && others_running && !stop {
        return Err(format!(
            "Budget {budget_name:?} has {} left this period, less than this Task's cap of {}, while running Tasks hold {}",
            show(left),
            show(want),
            show(held)
        ));
    }
    Ok(if want < left { want } else { left })
}

/// The status once Task `uid`'s reservation is settled: it leaves the reservations and what
/// it spent (`spent`: dollars and tokens) is added to the period. `None` when it holds none.
pub fn settle(status: &BudgetStatus, uid: &str, spent: (f64, i64)) -> Option<BudgetStatus> {
    let index = status.reservations.iter().position(|r| r.uid == uid)?;
    let mut next = status.clone();
    next.reservations.remove(index);
    next.spent_usd = dollars(next.spent_usd + spent.0);
    next.spent_tokens += spent.1;
    totals(&mut next);
    Some(next)
}

/// What a reservation settles for when its Task is gone before the controller saw it finish:
/// all of it (what the Task spent can no longer be read; it may have spent its whole cap).
pub fn held(reservation: &Reservation) -> (f64, i64) {
    (
        reservation.cost_usd.unwrap_or(0.0),
        reservation.tokens.unwrap_or(0),
    )
}

/// The lower of two limits, dimension by dimension (a Task's own and what a Budget reserved).
pub fn lower(a: Option<&Limits>, b: &Limits) -> Limits {
    let min_f = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    let min_i = |x: Option<i64>, y: Option<i64>| match (x, y) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    Limits {
        max_cost_usd: min_f(a.and_then(|a| a.max_cost_usd), b.max_cost_usd),
        max_tokens: min_i(a.and_then(|a| a.max_tokens), b.max_tokens),
    }
}

#[cfg(test)]
mod tests;
