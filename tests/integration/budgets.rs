//! Budgets end to end (docs/budgets.md): Tasks created together never reserve more than their
//! Budget's limit (the others wait, and start as running ones give back what they did not
//! spend), a finished Task's reservation becomes what it reported spending, a Task deleted
//! while it runs counts its whole reservation, `onExceed: Stop` fails a Task that would not
//! fit, a new period starts from nothing spent, and `kubectl get budgets` shows spent and
//! limit.

use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DeleteParams, ListParams};
use kubetask::api::{Budget, TaskPhase};
use kubetask_test_apiserver::Script;
use support::*;

const NS: &str = "team-a";

/// `hang-*` Jobs run until stopped; `spend-*` ones succeed reporting that they spent $0.20
/// and 1,000 tokens.
fn script(job: &serde_json::Value) -> Script {
    let name = job
        .pointer("/metadata/name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    if name.starts_with("spend-") {
        Script::succeed().with_termination_message(
            r#"{"summary": "done", "usage": {"inputTokens": 800, "outputTokens": 200, "cost": "0.20"}}"#,
        )
    } else {
        outcome_by_name(job)
    }
}

fn budget_yaml(name: &str, selector: &str, limits: &str, on_exceed: &str) -> String {
    format!(
        "apiVersion: kubetask.io/v1alpha1\nkind: Budget\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  selector: {{matchLabels: {{budget: {selector}}}}}\n  period: {{type: Daily, timeZone: Europe/Paris}}\n  limits: {limits}\n  onExceed: {on_exceed}\n"
    )
}

fn task_yaml(name: &str, budget: &str, cap: &str) -> String {
    format!(
        "apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {{name: {name}, namespace: {NS}, labels: {{budget: {budget}}}}}\nspec:\n  contexts: []\n{cap}"
    )
}

/// The Tasks labelled `budget=<label>`.
async fn labelled(cluster: &Cluster, label: &str) -> Vec<kubetask::api::Task> {
    cluster
        .tasks(NS)
        .list(&ListParams::default().labels(&format!("budget={label}")))
        .await
        .expect("list Tasks")
        .items
}

/// The Tasks labelled `budget=<label>` by their condition's reason.
async fn reasons(cluster: &Cluster, label: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for task in labelled(cluster, label).await {
        *counts.entry(reason(&task)).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_created_together_never_reserve_more_than_their_budget() {
    let cluster = Cluster::start_scripted(Duration::from_millis(100), Arc::new(script)).await;
    let controller = cluster.controller(&[]);
    let budgets: Api<Budget> = Api::namespaced(cluster.client.clone(), NS);
    cluster
        .apply_yaml(&budget_yaml("team", "team", "{maxCostUSD: 1}", "Queue"))
        .await;
    // 20 Tasks at once, each capped at $0.25: 4 fit in $1.
    let tasks: Vec<String> = (0..20)
        .map(|i| {
            task_yaml(
                &format!("hang-{i:02}"),
                "team",
                "  budget: {maxCostUSD: 0.25}\n",
            )
        })
        .collect();
    futures::future::join_all(tasks.iter().map(|yaml| cluster.apply_yaml(yaml))).await;
    let status = wait_budget(&budgets, "team", "4 reservations", |s| {
        s.reservations.len() == 4
    })
    .await;
    assert_eq!(status.reserved_usd, 1.0);
    for _ in 0..1200 {
        let counts = reasons(&cluster, "team").await;
        if counts.get("BudgetExhausted") == Some(&16) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counts = reasons(&cluster, "team").await;
    assert_eq!(counts.get("BudgetExhausted"), Some(&16), "{counts:?}");
    let jobs = cluster.jobs(NS).list(&ListParams::default()).await.unwrap();
    assert_eq!(jobs.items.len(), 4, "only the admitted Tasks have a Job");
    for job in &jobs.items {
        let annotations = job.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations.get("kubetask.io/budget").map(String::as_str),
            Some(r#"{"maxCostUSD":0.25}"#),
            "the reservation is the Job's cap"
        );
    }
    // The waiting Tasks, first created first: the first says why it waits.
    let mut waiting: Vec<(Option<jiff::Timestamp>, String, String)> = labelled(&cluster, "team")
        .await
        .into_iter()
        .filter(|t| reason(t) == "BudgetExhausted")
        .map(|t| {
            (
                t.metadata.creation_timestamp.as_ref().map(|c| c.0),
                t.metadata.name.clone().unwrap_or_default(),
                t.status.as_ref().unwrap().conditions[0].message.clone(),
            )
        })
        .collect();
    waiting.sort();
    let message = &waiting[0].2;
    assert!(
        message.contains("Budget \"team\" has nothing left this period")
            && message.contains("the period ends at"),
        "{message}"
    );

    // Two running Tasks cancelled: they spent nothing, so the two waiting ones created first
    // start (first in, first out).
    let running: Vec<String> = status.reservations.iter().map(|r| r.task.clone()).collect();
    let first_two: std::collections::BTreeSet<String> = waiting
        .iter()
        .take(2)
        .map(|(_, name, _)| name.clone())
        .collect();
    cluster.cancel(NS, &running[0], "enough").await;
    cluster.cancel(NS, &running[1], "enough").await;
    let status = wait_budget(&budgets, "team", "two Tasks settled, two admitted", |s| {
        s.reservations.len() == 4
            && !s
                .reservations
                .iter()
                .any(|r| r.task == running[0] || r.task == running[1])
    })
    .await;
    assert_eq!((status.spent_usd, status.reserved_usd), (0.0, 1.0));
    let admitted: std::collections::BTreeSet<String> = status
        .reservations
        .iter()
        .map(|r| r.task.clone())
        .filter(|name| !running.contains(name))
        .collect();
    assert_eq!(admitted, first_two, "the first two waiting started");
    // A running Task deleted: what it spent can no longer be read, so all it held counts.
    let deleted = status.reservations[0].task.clone();
    cluster
        .tasks(NS)
        .delete(&deleted, &DeleteParams::default())
        .await
        .unwrap();
    let status = wait_budget(&budgets, "team", "the deleted Task's hold spent", |s| {
        s.spent_usd == 0.25
    })
    .await;
    assert!(status.reserved_usd <= 0.75, "{status:?}");
    assert!(
        status.spent_usd + status.reserved_usd <= 1.0,
        "never more than the limit: {status:?}"
    );

    // The controller's metrics: spent, reserved and limit per Budget, read from its cache
    // (which sees the settlement just written a moment later).
    let spent = r#"kubetask_budget_spent_usd{namespace="team-a",budget="team"} 0.25"#;
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = controller.http_get("/metrics").unwrap_or_default();
        if metrics.contains(spent) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for line in [
        r#"kubetask_budget_spent_usd{namespace="team-a",budget="team"} 0.25"#,
        r#"kubetask_budget_limit_usd{namespace="team-a",budget="team"} 1.0"#,
        r#"kubetask_budget_spent_tokens{namespace="team-a",budget="team"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
    assert!(
        !metrics.contains("kubetask_budget_limit_tokens{"),
        "no token limit, no gauge"
    );

    // The example Budget is accepted as the API server would, and applied.
    cluster
        .apply_yaml(include_str!("../../examples/team-budget.yaml"))
        .await;
    wait_budget(&budgets, "team-a-daily", "a period open", |s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
    .await;

    // `kubectl get budgets`: spent, reserved and limit per period.
    let table = table(&cluster.client, NS, "budgets").await;
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "Name",
            "Period",
            "Spent USD",
            "Reserved USD",
            "Limit USD",
            "Tokens",
            "Token Limit",
            "Since",
            "Age"
        ]
    );
    let row = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["cells"][0] == "team")
        .unwrap();
    let cells = &row["cells"];
    assert_eq!(cells[0], "team");
    assert_eq!(cells[1], "Daily");
    assert_eq!(cells[2], 0.25);
    assert_eq!(cells[4], 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spending_is_settled_stop_refuses_and_a_new_period_starts_from_nothing() {
    let cluster = Cluster::start_scripted(Duration::from_millis(100), Arc::new(script)).await;
    // Noon in Paris.
    let clock = TestClock::at("2030-01-01T11:00:00Z");
    let _controller = cluster.controller(&clock.flag());
    let budgets: Api<Budget> = Api::namespaced(cluster.client.clone(), NS);
    cluster
        .apply_yaml(&budget_yaml(
            "strict",
            "strict",
            "{maxCostUSD: 0.3, maxTokens: 100000}",
            "Stop",
        ))
        .await;
    // No cap of its own: it gets all that is left, and reports $0.20.
    cluster
        .apply_yaml(&task_yaml("spend-1", "strict", ""))
        .await;
    cluster
        .wait_phase(NS, "spend-1", TaskPhase::Completed)
        .await;
    let status = wait_budget(&budgets, "strict", "spend-1 settled", |s| {
        s.reservations.is_empty() && s.spent_usd > 0.0
    })
    .await;
    assert_eq!((status.spent_usd, status.spent_tokens), (0.2, 1000));
    assert_eq!(
        status.period_start.as_ref().map(|t| t.0.to_string()),
        Some("2029-12-31T23:00:00Z".to_owned()),
        "midnight in Paris"
    );
    let job = cluster.jobs(NS).get("spend-1").await.unwrap();
    assert_eq!(
        job.metadata.annotations.unwrap_or_default()["kubetask.io/budget"],
        r#"{"maxCostUSD":0.3,"maxTokens":100000}"#,
        "all that was left"
    );
    // Its cap ($0.50) does not fit in what is left ($0.10) and no Task runs: it runs on
    // what is left.
    cluster
        .apply_yaml(&task_yaml(
            "spend-2",
            "strict",
            "  budget: {maxCostUSD: 0.5}\n",
        ))
        .await;
    cluster
        .wait_phase(NS, "spend-2", TaskPhase::Completed)
        .await;
    let job = cluster.jobs(NS).get("spend-2").await.unwrap();
    assert_eq!(
        job.metadata.annotations.unwrap_or_default()["kubetask.io/budget"],
        r#"{"maxCostUSD":0.1,"maxTokens":99000}"#
    );
    // It reported $0.20 against a cap of $0.10 (no gateway stopped it): what it reported
    // is what counts.
    wait_budget(&budgets, "strict", "spend-2 settled", |s| {
        s.reservations.is_empty() && s.spent_usd == 0.4
    })
    .await;
    // Nothing left, onExceed Stop: the next Task fails without running.
    cluster
        .apply_yaml(&task_yaml("spend-3", "strict", ""))
        .await;
    let refused = cluster.wait_phase(NS, "spend-3", TaskPhase::Failed).await;
    assert_eq!(reason(&refused), "BudgetExceeded");
    let message = &refused.status.as_ref().unwrap().conditions[0].message;
    assert!(
        message.contains("not started") && message.contains("onExceed is Stop"),
        "{message}"
    );
    assert!(cluster.jobs(NS).get_opt("spend-3").await.unwrap().is_none());
    // The next day in Paris: nothing spent yet, and a new Task runs.
    clock.set("2030-01-01T23:30:00Z");
    let status = wait_budget(&budgets, "strict", "a new period", |s| {
        s.period_start.as_ref().map(|t| t.0.to_string()) == Some("2030-01-01T23:00:00Z".into())
    })
    .await;
    assert_eq!((status.spent_usd, status.spent_tokens), (0.0, 0));
    cluster
        .apply_yaml(&task_yaml("spend-4", "strict", ""))
        .await;
    cluster
        .wait_phase(NS, "spend-4", TaskPhase::Completed)
        .await;
}

/// A Task governed by two Budgets waits in the line of the one that keeps it waiting only: a
/// later Task of the other Budget, which has room, starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_waiting_for_one_budget_does_not_hold_up_anothers_line() {
    let cluster = Cluster::start_scripted(Duration::from_millis(100), Arc::new(script)).await;
    let _controller = cluster.controller(&[]);
    let budgets: Api<Budget> = Api::namespaced(cluster.client.clone(), NS);
    cluster
        .apply_yaml(&budget_yaml("tight", "tight", "{maxCostUSD: 0.1}", "Queue"))
        .await;
    // Governs every Task of the namespace, with room for all of them.
    cluster
        .apply_yaml(&format!(
            "apiVersion: kubetask.io/v1alpha1\nkind: Budget\nmetadata: {{name: all, namespace: {NS}}}\nspec:\n  period: {{type: Daily}}\n  limits: {{maxCostUSD: 10}}\n"
        ))
        .await;
    let cap = "  budget: {maxCostUSD: 0.1}\n";
    cluster.apply_yaml(&task_yaml("hang-0", "tight", cap)).await;
    wait_budget(&budgets, "tight", "the first Task's hold", |s| {
        s.reservations.len() == 1
    })
    .await;
    // Named so that it comes first in any line even if created in the same second.
    cluster.apply_yaml(&task_yaml("hang-1", "tight", cap)).await;
    let waiting = cluster
        .wait_reason(NS, "hang-1", "BudgetExhausted", Duration::from_secs(30))
        .await;
    let message = &waiting.status.as_ref().unwrap().conditions[0].message;
    assert!(message.starts_with("Budget \"tight\""), "{message}");
    cluster.apply_yaml(&task_yaml("hang-2", "other", cap)).await;
    let all = wait_budget(&budgets, "all", "the other Budget's Task admitted", |s| {
        s.reservations.iter().any(|r| r.task == "hang-2")
    })
    .await;
    assert!(
        !all.reservations.iter().any(|r| r.task == "hang-1"),
        "{all:?}"
    );
    let still = cluster.tasks(NS).get("hang-1").await.unwrap();
    assert_eq!(reason(&still), "BudgetExhausted");
}
