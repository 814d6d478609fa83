//! What the controller's lifecycle needs of every Job, applied after the last plugin (no
//! plugin can take it away): the Task's retries as the Job's `backoffLimit`, a pod failure
//! policy (node disruption is not counted; exit code 3 means "do not retry"), the Task's
//! timeout as the pod's `activeDeadlineSeconds` (the kubelet's safety net; the controller
//! enforces the deadline itself), and termination messages that fall back to the log.

use std::time::Duration;

use k8s_openapi::api::batch::v1::{
    Job, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use kubetask_api::lifecycle::{NO_RETRY_EXIT_CODE, format_duration, parse_duration};
use kubetask_api::{Agent, Task, workspace};

/// The agent's container (the default plugin's name for it).
pub const AGENT_CONTAINER: &str = "agent";
/// Annotation on the Job: the Task's effective timeout in seconds, fixed when the Job is
/// created (a later change of the Agent's `defaultTimeout` does not move the deadline).
pub const TIMEOUT_ANNOTATION: &str = "kubetask.io/timeout-seconds";

/// Controller-wide lifecycle settings (`kubetask controller` flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LifecycleSettings {
    /// `--max-task-timeout`: no Task runs longer, whatever it asks for.
    pub max_task_timeout: Option<Duration>,
    /// `--default-ttl-seconds-after-finished`: TTL of Tasks whose Task and Agent set none.
    pub default_ttl: Option<Duration>,
}

/// A lifecycle field that does not parse (the CRD's pattern normally refuses it first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidLifecycle {
    pub field: &'static str,
    pub message: String,
}

/// The Task's timeout: its own, else its Agent's default, capped by the controller's limit.
pub fn timeout(
    task: &Task,
    agent: Option<&Agent>,
    settings: &LifecycleSettings,
) -> Result<Option<Duration>, InvalidLifecycle> {
    Ok(capped_timeout(task, agent, settings)?.0)
}

/// [`timeout`], and a note naming the field when the cap shortened what it asked for.
fn capped_timeout(
    task: &Task,
    agent: Option<&Agent>,
    settings: &LifecycleSettings,
) -> Result<(Option<Duration>, Option<String>), InvalidLifecycle> {
    let own = task.spec.timeout.as_deref().map(|t| ("spec.timeout", t));
    let inherited = agent
        .and_then(|a| a.spec.default_timeout.as_deref())
        .map(|t| ("Agent spec.defaultTimeout", t));
    let asked = own
        .or(inherited)
        .map(|(field, text)| {
            parse_duration(text)
                .map(|asked| (field, asked))
                .map_err(|e| InvalidLifecycle {
                    field,
                    message: e.to_string(),
                })
        })
        .transpose()?;
    Ok(match (asked, settings.max_task_timeout) {
        (Some((field, asked)), Some(max)) if asked > max => (
            Some(max),
            Some(format!(
                "{field} is capped at {} by the controller's --max-task-timeout",
                format_duration(max)
            )),
        ),
        (Some((_, asked)), _) => (Some(asked), None),
        (None, max) => (max, None),
    })
}

/// The Task's retries: its own, else its Agent's, else none (bounded to 0–10).
pub fn retries(task: &Task, agent: Option<&Agent>) -> i32 {
    task.spec
        .retries
        .or_else(|| agent.and_then(|a| a.spec.retries))
        .unwrap_or(0)
        .clamp(0, kubetask_api::lifecycle::MAX_RETRIES)
}

/// How long a finished Task is kept: its own TTL, else its Agent's, else the controller's.
pub fn ttl(task: &Task, agent: Option<&Agent>, settings: &LifecycleSettings) -> Option<Duration> {
    task.spec
        .ttl_seconds_after_finished
        .or_else(|| agent.and_then(|a| a.spec.ttl_seconds_after_finished))
        .map(|seconds| Duration::from_secs(seconds.max(0).unsigned_abs()))
        .or(settings.default_ttl)
}

/// Applies the lifecycle to the rendered Job. Returns a note when the timeout was capped.
pub fn apply(
    task: &Task,
    agent: Option<&Agent>,
    settings: &LifecycleSettings,
    job: &mut Job,
) -> Result<Vec<String>, InvalidLifecycle> {
    let (timeout, note) = capped_timeout(task, agent, settings)?;
    let notes: Vec<String> = note.into_iter().collect();
    let spec = job.spec.get_or_insert_default();
    spec.backoff_limit = Some(retries(task, agent));
    let mut rules = vec![
        PodFailurePolicyRule {
            action: "Ignore".to_owned(),
            on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                type_: "DisruptionTarget".to_owned(),
                status: "True".to_owned(),
            }]),
            on_exit_codes: None,
        },
        PodFailurePolicyRule {
            action: "FailJob".to_owned(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: Some(AGENT_CONTAINER.to_owned()),
                operator: "In".to_owned(),
                values: vec![NO_RETRY_EXIT_CODE],
            }),
            on_pod_conditions: None,
        },
    ];
    // A clone refused for its credentials is not retried either.
    let clones = spec
        .template
        .spec
        .as_ref()
        .and_then(|pod| pod.init_containers.as_ref())
        .is_some_and(|init| init.iter().any(|c| c.name == workspace::CLONE_CONTAINER));
    if clones {
        rules.push(PodFailurePolicyRule {
            action: "FailJob".to_owned(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: Some(workspace::CLONE_CONTAINER.to_owned()),
                operator: "In".to_owned(),
                values: vec![workspace::CREDENTIALS_EXIT_CODE],
            }),
            on_pod_conditions: None,
        });
    }
    // Nor a publish step that was refused (a push rejected, a 4xx of the provider's API).
    let publishes = spec.template.spec.as_ref().is_some_and(|pod| {
        pod.containers
            .iter()
            .any(|c| c.name == workspace::PUBLISH_CONTAINER)
    });
    if publishes {
        rules.push(PodFailurePolicyRule {
            action: "FailJob".to_owned(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: Some(workspace::PUBLISH_CONTAINER.to_owned()),
                operator: "In".to_owned(),
                values: vec![workspace::PUBLISH_REFUSED_EXIT_CODE],
            }),
            on_pod_conditions: None,
        });
    }
    let ours = rules.len();
    // A plugin's own rules run after ours (the API server allows 20).
    if let Some(policy) = spec.pod_failure_policy.take() {
        rules.extend(
            policy
                .rules
                .into_iter()
                .filter(|r| !rules_contain(r))
                .take(20 - ours),
        );
    }
    spec.pod_failure_policy = Some(PodFailurePolicy { rules });
    let pod = spec.template.spec.get_or_insert_default();
    // A pod failure policy needs pods that are not restarted in place.
    pod.restart_policy = Some("Never".to_owned());
    if let Some(timeout) = timeout {
        let seconds = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX).max(1);
        pod.active_deadline_seconds = Some(
            pod.active_deadline_seconds
                .map_or(seconds, |set| set.min(seconds)),
        );
        job.metadata
            .annotations
            .get_or_insert_default()
            .insert(TIMEOUT_ANNOTATION.to_owned(), seconds.to_string());
    }
    // The budget, fixed when the Job is created, as the timeout is: what the gateway and the
    // controller enforce for this run.
    let budget = kubetask_api::Limits::effective(
        task.spec.budget.as_ref(),
        agent.and_then(|a| a.spec.budget.as_ref()),
    );
    if let Some(budget) = budget {
        job.metadata.annotations.get_or_insert_default().insert(
            kubetask_api::budget::BUDGET_ANNOTATION.to_owned(),
            budget.to_annotation(),
        );
    }
    if let Some(agent) = pod
        .containers
        .iter_mut()
        .find(|c| c.name == AGENT_CONTAINER)
        && agent.termination_message_policy.is_none()
    {
        agent.termination_message_policy = Some("FallbackToLogsOnError".to_owned());
    }
    Ok(notes)
}

/// Whether `rule` is one of the two rules [`apply`] puts first (a re-render keeps one copy).
fn rules_contain(rule: &PodFailurePolicyRule) -> bool {
    let disruption = rule.action == "Ignore"
        && rule
            .on_pod_conditions
            .as_ref()
            .is_some_and(|c| c.iter().any(|p| p.type_ == "DisruptionTarget"));
    let no_retry = rule.action == "FailJob"
        && rule
            .on_exit_codes
            .as_ref()
            .is_some_and(|c| c.values == [NO_RETRY_EXIT_CODE]);
    disruption || no_retry
}

/// The budget fixed on a Job when it was created (the Task's, else its Agent's).
pub fn job_budget(job: &Job) -> Option<kubetask_api::Limits> {
    job.metadata
        .annotations
        .as_ref()?
        .get(kubetask_api::budget::BUDGET_ANNOTATION)
        .and_then(|text| kubetask_api::Limits::from_annotation(text))
}

/// The timeout fixed on a Job when it was created.
pub fn job_timeout(job: &Job) -> Option<Duration> {
    job.metadata
        .annotations
        .as_ref()?
        .get(TIMEOUT_ANNOTATION)?
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Container;
    use kubetask_api::{AgentSpec, TaskSpec};

    use super::*;

    fn task(timeout: Option<&str>, retries: Option<i32>) -> Task {
        Task::new(
            "t",
            TaskSpec {
                timeout: timeout.map(str::to_owned),
                retries,
                ..TaskSpec::default()
            },
        )
    }

    fn agent(timeout: Option<&str>, retries: Option<i32>) -> Agent {
        Agent::new(
            "a",
            AgentSpec {
                default_timeout: timeout.map(str::to_owned),
                retries,
                ..AgentSpec::default()
            },
        )
    }

    fn job() -> Job {
        let mut job = Job::default();
        let pod = job
            .spec
            .get_or_insert_default()
            .template
            .spec
            .get_or_insert_default();
        pod.containers = vec![Container {
            name: AGENT_CONTAINER.to_owned(),
            ..Container::default()
        }];
        job
    }

    #[test]
    fn the_task_wins_over_the_agent_and_the_cap_wins_over_both() {
        let none = LifecycleSettings::default();
        let capped = LifecycleSettings {
            max_task_timeout: Some(Duration::from_secs(600)),
            ..LifecycleSettings::default()
        };
        let agent = agent(Some("1h"), Some(2));
        let minutes = |m: u64| Ok(Some(Duration::from_secs(m * 60)));
        assert_eq!(
            timeout(&task(Some("5m"), None), Some(&agent), &none),
            minutes(5)
        );
        assert_eq!(timeout(&task(None, None), Some(&agent), &none), minutes(60));
        assert_eq!(
            timeout(&task(None, None), Some(&agent), &capped),
            minutes(10)
        );
        assert_eq!(timeout(&task(None, None), None, &capped), minutes(10));
        assert_eq!(timeout(&task(None, None), None, &none), Ok(None));
        let note = |task: &Task, agent| capped_timeout(task, agent, &capped).map(|(_, note)| note);
        assert_eq!(
            note(&task(None, None), Some(&agent)),
            Ok(Some(
                "Agent spec.defaultTimeout is capped at 10m by the controller's --max-task-timeout"
                    .to_owned()
            ))
        );
        assert_eq!(note(&task(Some("10m"), None), Some(&agent)), Ok(None));
        let error = timeout(&task(Some("5 minutes"), None), None, &none).unwrap_err();
        assert_eq!(error.field, "spec.timeout");
        assert_eq!(retries(&task(None, Some(1)), Some(&agent)), 1);
        assert_eq!(retries(&task(None, None), Some(&agent)), 2);
        assert_eq!(retries(&task(None, Some(99)), None), 10);
    }

    #[test]
    fn the_job_gets_retries_deadline_and_failure_policy() {
        let mut rendered = job();
        let notes = apply(
            &task(Some("2h"), Some(3)),
            None,
            &LifecycleSettings {
                max_task_timeout: Some(Duration::from_secs(3600)),
                ..LifecycleSettings::default()
            },
            &mut rendered,
        )
        .unwrap();
        assert_eq!(
            notes,
            ["spec.timeout is capped at 1h by the controller's --max-task-timeout"]
        );
        let spec = rendered.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(3));
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.active_deadline_seconds, Some(3600));
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(
            pod.containers[0].termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
        let rules = &spec.pod_failure_policy.as_ref().unwrap().rules;
        assert_eq!(rules.len(), 2);
        assert_eq!(job_timeout(&rendered), Some(Duration::from_secs(3600)));
        // Applying again (a re-render) keeps one copy of each rule.
        apply(
            &task(None, None),
            None,
            &LifecycleSettings::default(),
            &mut rendered,
        )
        .unwrap();
        let rules = &rendered.spec.unwrap().pod_failure_policy.unwrap().rules;
        assert_eq!(rules.len(), 2);
    }

    #[test]
    fn a_clone_refused_for_its_credentials_is_not_retried() {
        let mut rendered = job();
        if let Some(pod) = rendered
            .spec
            .as_mut()
            .and_then(|s| s.template.spec.as_mut())
        {
            pod.init_containers = Some(vec![Container {
                name: workspace::CLONE_CONTAINER.to_owned(),
                ..Container::default()
            }]);
        }
        for _ in 0..2 {
            apply(
                &task(None, Some(3)),
                None,
                &LifecycleSettings::default(),
                &mut rendered,
            )
            .unwrap();
        }
        let rules = rendered.spec.unwrap().pod_failure_policy.unwrap().rules;
        let fail_job: Vec<Option<String>> = rules
            .iter()
            .filter(|r| r.action == "FailJob")
            .map(|r| {
                r.on_exit_codes
                    .as_ref()
                    .and_then(|c| c.container_name.clone())
            })
            .collect();
        assert_eq!(
            fail_job,
            [
                Some(AGENT_CONTAINER.to_owned()),
                Some(workspace::CLONE_CONTAINER.to_owned())
            ],
            "one copy each, after a re-render too"
        );
    }

    #[test]
    fn a_lower_plugin_deadline_is_kept() {
        let mut rendered = job();
        rendered
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .active_deadline_seconds = Some(60);
        apply(
            &task(Some("1h"), None),
            None,
            &LifecycleSettings::default(),
            &mut rendered,
        )
        .unwrap();
        let pod = rendered.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.active_deadline_seconds, Some(60));
    }
}
