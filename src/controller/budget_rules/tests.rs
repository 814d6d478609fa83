use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kubetask_api::{BudgetSpec, TaskSpec};

use super::*;
use std::sync::Arc;

fn budget(limits: Limits, on_exceed: OnExceed) -> Budget {
    let mut budget = Budget::new(
        "team",
        BudgetSpec {
            selector: None,
            agent_ref: None,
            period: Period {
                kind: PeriodType::Daily,
                time_zone: None,
            },
            limits,
            on_exceed,
        },
    );
    budget.metadata.namespace = Some("ns".to_owned());
    budget
}

fn dollars_limit(max: f64) -> Limits {
    Limits {
        max_cost_usd: Some(max),
        max_tokens: None,
    }
}

fn task(namespace: &str, agent: Option<&str>, labels: &[(&str, &str)]) -> Task {
    let mut task = Task::new(
        "t",
        TaskSpec {
            agent_ref: agent.map(str::to_owned),
            ..TaskSpec::default()
        },
    );
    task.metadata.namespace = Some(namespace.to_owned());
    task.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    task
}

#[test]
fn a_budget_governs_the_tasks_of_its_namespace_agent_and_selector() {
    let mut all = budget(dollars_limit(1.0), OnExceed::Queue);
    assert!(governs(&all, &task("ns", None, &[])));
    assert!(!governs(&all, &task("other", None, &[])), "namespaced");
    all.spec.agent_ref = Some("claude".to_owned());
    assert!(governs(&all, &task("ns", Some("claude"), &[])));
    assert!(
        !governs(&all, &task("ns", None, &[])),
        "the default Agent is another"
    );
    all.spec.selector = Some(LabelSelector {
        match_labels: Some(BTreeMap::from([("team".to_owned(), "a".to_owned())])),
        match_expressions: None,
    });
    assert!(governs(&all, &task("ns", Some("claude"), &[("team", "a")])));
    assert!(
        !governs(&all, &task("ns", Some("claude"), &[("team", "b")])),
        "both must match"
    );
    all.spec.agent_ref = None;
    assert!(governs(&all, &task("ns", Some("gemini"), &[("team", "a")])));
}

fn at(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

#[test]
fn periods_start_at_midnight_in_their_time_zone() {
    let period = |kind, zone: Option<&str>| Period {
        kind,
        time_zone: zone.map(str::to_owned),
    };
    let now = at("2026-03-29T10:30:00Z"); // a Sunday; Paris moves to summer time that night
    assert_eq!(
        period_at(&period(PeriodType::Daily, None), now),
        Ok((at("2026-03-29T00:00:00Z"), at("2026-03-30T00:00:00Z")))
    );
    assert_eq!(
        period_at(&period(PeriodType::Daily, Some("Europe/Paris")), now),
        Ok((at("2026-03-28T23:00:00Z"), at("2026-03-29T22:00:00Z"))),
        "a 23-hour day"
    );
    assert_eq!(
        period_at(&period(PeriodType::Weekly, None), now),
        Ok((at("2026-03-23T00:00:00Z"), at("2026-03-30T00:00:00Z"))),
        "from Monday"
    );
    assert_eq!(
        period_at(&period(PeriodType::Monthly, Some("America/New_York")), now),
        Ok((at("2026-03-01T05:00:00Z"), at("2026-04-01T04:00:00Z")))
    );
    let bad = period_at(&period(PeriodType::Daily, Some("Mars/Olympus")), now);
    assert!(
        bad.as_ref()
            .is_err_and(|e| e.contains("spec.period.timeZone") && e.contains("Mars/Olympus")),
        "{bad:?}"
    );
}

#[test]
fn reservations_never_add_up_past_the_limit() {
    let budget = budget(dollars_limit(1.0), OnExceed::Queue);
    let mut status = BudgetStatus::default();
    let cap = dollars_limit(0.15);
    let mut admitted = 0;
    for i in 0..20 {
        match reserve(
            &budget,
            &status,
            &format!("t{i}"),
            &format!("u{i}"),
            Some(&cap),
        ) {
            Reserve::Reserved(next, caps) => {
                admitted += 1;
                assert_eq!(caps.max_cost_usd, Some(0.15));
                status = *next;
            }
            Reserve::Exhausted { why, stop } => {
                assert!(!stop);
                assert!(why.contains("less than this Task's cap"), "{why}");
            }
            Reserve::Held(_) => unreachable!("a new uid each time"),
        }
    }
    assert_eq!(admitted, 6, "6 × $0.15 fit in $1, a 7th would not");
    assert_eq!(status.reserved_usd, 0.9);
    // Asked again, a Task keeps what it holds.
    assert_eq!(
        reserve(&budget, &status, "t0", "u0", Some(&cap)),
        Reserve::Held(cap.clone())
    );
    // Settled for less than its cap: what it did not spend is free for the next.
    let settled = settle(&status, "u0", (0.05, 1000)).expect("held");
    assert_eq!((settled.spent_usd, settled.spent_tokens), (0.05, 1000));
    assert_eq!(settled.reserved_usd, 0.75);
    assert_eq!(settle(&settled, "u0", (1.0, 1)), None, "settled once");
    assert!(matches!(
        reserve(&budget, &settled, "t7", "u7", Some(&cap)),
        Reserve::Reserved(..)
    ));
}

#[test]
fn a_task_without_a_cap_or_alone_gets_what_is_left_and_nothing_left_waits_or_stops() {
    let queue = budget(dollars_limit(1.0), OnExceed::Queue);
    let spent = BudgetStatus {
        spent_usd: 0.7,
        ..BudgetStatus::default()
    };
    match reserve(&queue, &spent, "t", "u", None) {
        Reserve::Reserved(status, caps) => {
            assert_eq!(caps.max_cost_usd, Some(0.3), "no cap: all that is left");
            assert_eq!(status.reserved_usd, 0.3);
        }
        other => panic!("{other:?}"),
    }
    match reserve(&queue, &spent, "t", "u", Some(&dollars_limit(0.5))) {
        Reserve::Reserved(_, caps) => {
            assert_eq!(caps.max_cost_usd, Some(0.3), "alone: runs on what is left")
        }
        other => panic!("{other:?}"),
    }
    let empty = BudgetStatus {
        spent_usd: 1.0,
        ..BudgetStatus::default()
    };
    let Reserve::Exhausted { why, stop } = reserve(&queue, &empty, "t", "u", None) else {
        panic!("nothing left");
    };
    assert!(!stop);
    assert!(why.contains("\"team\" has nothing left"), "{why}");
    let stopping = budget(dollars_limit(1.0), OnExceed::Stop);
    assert!(matches!(
        reserve(&stopping, &empty, "t", "u", None),
        Reserve::Exhausted { stop: true, .. }
    ));
}

#[test]
fn tokens_are_reserved_beside_dollars_and_a_task_keeps_its_own_other_limits() {
    let both = budget(
        Limits {
            max_cost_usd: Some(2.0),
            max_tokens: Some(1000),
        },
        OnExceed::Queue,
    );
    let cap = Limits {
        max_cost_usd: None,
        max_tokens: Some(400),
    };
    let Reserve::Reserved(status, caps) =
        reserve(&both, &BudgetStatus::default(), "t", "u", Some(&cap))
    else {
        panic!("fits");
    };
    assert_eq!(
        caps,
        Limits {
            max_cost_usd: Some(2.0),
            max_tokens: Some(400)
        }
    );
    assert_eq!((status.reserved_usd, status.reserved_tokens), (2.0, 400));
    let tokens_only = budget(
        Limits {
            max_cost_usd: None,
            max_tokens: Some(1000),
        },
        OnExceed::Queue,
    );
    let own = Limits {
        max_cost_usd: Some(0.25),
        max_tokens: Some(5000),
    };
    let Reserve::Reserved(_, caps) =
        reserve(&tokens_only, &BudgetStatus::default(), "t", "u", Some(&own))
    else {
        panic!("fits");
    };
    assert_eq!(
        lower(Some(&own), &caps),
        Limits {
            max_cost_usd: Some(0.25),
            max_tokens: Some(1000)
        },
        "the Job's cap: the lower of each"
    );
    let used_up = BudgetStatus {
        spent_tokens: 990,
        reserved_tokens: 10,
        ..BudgetStatus::default()
    };
    let Reserve::Exhausted { why, stop: false } =
        reserve(&tokens_only, &used_up, "t", "u", Some(&own))
    else {
        panic!("no tokens left");
    };
    assert!(
        why.contains("nothing left this period: 990 tokens spent and 10 tokens held by running Tasks of 1000 tokens"),
        "{why}"
    );
}

#[test]
fn a_new_period_forgets_what_was_spent_but_not_what_runs() {
    let start = at("2026-12-07T00:00:00Z");
    let end = at("2026-12-08T00:00:00Z");
    let old = BudgetStatus {
        period_start: Some(Time(at("2026-12-06T00:00:00Z"))),
        spent_usd: 0.9,
        spent_tokens: 99,
        reservations: vec![Reservation {
            task: "t".to_owned(),
            uid: "u".to_owned(),
            cost_usd: Some(0.1),
            tokens: None,
        }],
        ..BudgetStatus::default()
    };
    let rolled = roll(&old, start, end);
    assert_eq!((rolled.spent_usd, rolled.spent_tokens), (0.0, 0));
    assert_eq!(rolled.period_start, Some(Time(start)));
    assert_eq!(rolled.period_end, Some(Time(end)));
    assert_eq!(rolled.reserved_usd, 0.1, "the running Task's hold stays");
    assert_eq!(roll(&rolled, start, end), rolled, "same period: unchanged");
}

#[test]
fn what_a_task_spent_is_read_from_its_usage() {
    let usage = Usage {
        input_tokens: Some(100),
        output_tokens: Some(20),
        cost: Some("0.0123".to_owned()),
        ..Usage::default()
    };
    assert_eq!(spent(Some(&usage)), (0.0123, 120));
    assert_eq!(spent(None), (0.0, 0));
    let garbage = Usage {
        cost: Some("-1".to_owned()),
        ..Usage::default()
    };
    assert_eq!(spent(Some(&garbage)), (0.0, 0), "never negative");
}

#[test]
fn queued_tasks_wait_behind_the_ones_created_before_them() {
    let waiting_status = |message: &str| kubetask_api::TaskStatus {
        conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: "Succeeded".to_owned(),
            status: "Unknown".to_owned(),
            reason: status::reason::BUDGET_EXHAUSTED.to_owned(),
            message: message.to_owned(),
            last_transition_time: Time(at("2030-01-01T00:00:00Z")),
            observed_generation: None,
        }],
        ..kubetask_api::TaskStatus::default()
    };
    // What `reserve` says of this test's Budget when it keeps a Task waiting.
    let exhausted = BudgetStatus {
        spent_usd: 1.0,
        ..BudgetStatus::default()
    };
    let mut budget = budget(dollars_limit(1.0), OnExceed::Queue);
    let Reserve::Exhausted { why: here, .. } = reserve(&budget, &exhausted, "t", "u", None) else {
        panic!("nothing left");
    };
    let elsewhere = here.replace("\"team\"", "\"other-team\"");
    let made = |name: &str, second: u32, waiting: Option<&str>| {
        let mut task = task("ns", None, &[]);
        task.metadata.name = Some(name.to_owned());
        task.metadata.uid = Some(format!("uid-{name}"));
        task.metadata.creation_timestamp =
            Some(Time(at(&format!("2030-01-01T00:00:{second:02}Z"))));
        task.status = waiting.map(waiting_status);
        Arc::new(task)
    };
    let tasks = vec![
        made("c", 3, Some(&here)),
        made("a", 1, Some(&here)),
        made("b", 2, None), // running, or not looked at yet
        made("a2", 1, Some("a message of another shape")),
        made("me", 2, Some(&here)),
        made("later", 9, Some(&here)),
        // Waits for another Budget that also governs it: not in this Budget's line.
        made("other", 0, Some(&elsewhere)),
    ];
    assert!(waits_for(&tasks[0], "team") && !waits_for(&tasks[6], "team"));
    assert!(waits_for(&tasks[6], "other-team") && !waits_for(&tasks[2], "team"));
    let me = tasks[4].clone();
    assert_eq!(waiting_ahead(&budget, &me, &tasks), ["a", "a2"]);
    // One that got its reservation since is not waiting any more.
    budget.status = Some(BudgetStatus {
        reservations: vec![Reservation {
            task: "a".to_owned(),
            uid: "uid-a".to_owned(),
            cost_usd: Some(0.1),
            tokens: None,
        }],
        ..BudgetStatus::default()
    });
    assert_eq!(waiting_ahead(&budget, &me, &tasks), ["a2"]);
    // Nobody is ahead of the first.
    assert!(waiting_ahead(&budget, &tasks[3], &tasks).is_empty());
}
