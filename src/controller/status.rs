//! Task status as a pure function of what the reconciler observed: the Job's conditions, or
//! the reason the Task cannot start. One condition, `Succeeded` (Unknown while pending or
//! running, True when the Job completed, False when the Task failed), carries the reason.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kubetask_api::{PluginRef, Task, TaskPhase, TaskStatus};

/// The type of the Task's single condition.
pub const CONDITION: &str = "Succeeded";

/// Condition reasons, one per situation a user may see.
pub mod reason {
    /// The Job exists; its pod does not run yet.
    pub const JOB_CREATED: &str = "JobCreated";
    /// The agent pod runs.
    pub const RUNNING: &str = "Running";
    /// The Job completed.
    pub const COMPLETED: &str = "Completed";
    /// The Job failed.
    pub const JOB_FAILED: &str = "JobFailed";
    /// The Job was deleted before it finished.
    pub const JOB_MISSING: &str = "JobMissing";
    /// The explicit `spec.agentRef` names no Agent (yet).
    pub const AGENT_NOT_FOUND: &str = "AgentNotFound";
    /// A referenced ConfigMap does not exist (yet).
    pub const CONFIG_MAP_NOT_FOUND: &str = "ConfigMapNotFound";
    /// A referenced ConfigMap lacks the key (yet).
    pub const CONFIG_MAP_KEY_NOT_FOUND: &str = "ConfigMapKeyNotFound";
    /// The Task (or its Agent) is invalid.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// A policy plugin refused the Task.
    pub const POLICY_DENIED: &str = "PolicyDenied";
    /// A plugin failed (trap, timeout, memory, invalid output).
    pub const PLUGIN_ERROR: &str = "PluginError";
    /// A plugin named by the Agent is not installed (yet).
    pub const PLUGIN_NOT_FOUND: &str = "PluginNotFound";
    /// The Job or ConfigMap name is still used by a deleted Task of the same name.
    pub const PREVIOUS_TASK_CLEANUP: &str = "PreviousTaskCleanup";
    /// An object with the Job's or ConfigMap's name exists and belongs to something else.
    pub const NAME_CONFLICT: &str = "NameConflict";
}

/// What the reconciler found out about a Task.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// The Task waits for something a user can provide (Agent, ConfigMap, plugin).
    Waiting {
        reason: &'static str,
        message: String,
    },
    /// The Task cannot run; terminal.
    Failed {
        reason: &'static str,
        message: String,
    },
    /// The Task's Job, as it is now.
    Job(Box<Job>),
    /// The Job just created, and the plugins (name, digest) that rendered it.
    Created {
        job: Box<Job>,
        rendered_by: Vec<PluginRef>,
    },
    /// The Job the Task had is gone.
    JobMissing { job_name: String },
}

/// The Task's status after `observation`, keeping condition transition times when the
/// condition's status does not change. `now` stamps new transitions.
pub fn next_status(
    task: &Task,
    job_name: &str,
    observation: &Observation,
    now: &Time,
) -> TaskStatus {
    if let Observation::Created { job, rendered_by } = observation {
        let mut task = task.clone();
        task.status
            .get_or_insert_with(TaskStatus::default)
            .rendered_by = rendered_by.clone();
        return next_status(&task, job_name, &Observation::Job(job.clone()), now);
    }
    let previous = task.status.clone().unwrap_or_default();
    let generation = task.metadata.generation;
    let mut status = TaskStatus {
        observed_generation: generation,
        rendered_by: previous.rendered_by.clone(),
        job_name: previous.job_name.clone(),
        ..TaskStatus::default()
    };
    let (phase, condition_status, reason, message) = match observation {
        Observation::Waiting { reason, message } => {
            (TaskPhase::Pending, "Unknown", *reason, message.clone())
        }
        Observation::Failed { reason, message } => {
            status.completion_time = Some(now.clone());
            (TaskPhase::Failed, "False", *reason, message.clone())
        }
        Observation::JobMissing { job_name } => {
            status.start_time = previous.start_time.clone();
            status.completion_time = Some(now.clone());
            let message = format!("Job {job_name:?} was deleted before it finished");
            (TaskPhase::Failed, "False", reason::JOB_MISSING, message)
        }
        Observation::Job(job) | Observation::Created { job, .. } => {
            status.job_name = Some(job_name.to_owned());
            let job_status = job.status.clone().unwrap_or_default();
            status.start_time = job_status.start_time.clone();
            let true_condition = |kind: &str| {
                job_status.conditions.as_ref().and_then(|conditions| {
                    conditions
                        .iter()
                        .find(|c| c.type_ == kind && c.status == "True")
                        .cloned()
                })
            };
            if let Some(complete) = true_condition("Complete") {
                status.completion_time = job_status
                    .completion_time
                    .clone()
                    .or(complete.last_transition_time);
                (
                    TaskPhase::Completed,
                    "True",
                    reason::COMPLETED,
                    format!("Job {job_name:?} completed"),
                )
            } else if let Some(failed) = true_condition("Failed") {
                status.completion_time = failed
                    .last_transition_time
                    .clone()
                    .or_else(|| Some(now.clone()));
                let why = [failed.reason.as_deref(), failed.message.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": ");
                (
                    TaskPhase::Failed,
                    "False",
                    reason::JOB_FAILED,
                    format!("Job {job_name:?} failed: {why}"),
                )
            } else if job_status.ready.unwrap_or(0) > 0 {
                (
                    TaskPhase::Running,
                    "Unknown",
                    reason::RUNNING,
                    format!("the agent runs in Job {job_name:?}"),
                )
            } else {
                (
                    TaskPhase::Pending,
                    "Unknown",
                    reason::JOB_CREATED,
                    format!("Job {job_name:?} created; waiting for its pod to run"),
                )
            }
        }
    };
    status.phase = Some(phase);
    let unchanged = previous
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION)
        .filter(|c| c.status == condition_status)
        .map(|c| c.last_transition_time.clone());
    status.conditions = vec![Condition {
        type_: CONDITION.to_owned(),
        status: condition_status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: unchanged.unwrap_or_else(|| now.clone()),
    }];
    // Times never go backwards once known (a Job status read from a stale cache).
    status.start_time = status.start_time.or(previous.start_time);
    status
}

/// Whether the Task has finished (nothing more will happen to it).
pub fn is_finished(task: &Task) -> bool {
    let status = task.status.as_ref();
    matches!(
        status.and_then(|s| s.phase),
        Some(TaskPhase::Completed | TaskPhase::Failed)
    ) && status.and_then(|s| s.observed_generation) == task.metadata.generation
}

/// The condition's reason, if any.
pub fn condition_reason(status: &TaskStatus) -> Option<&str> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION)
        .map(|c| c.reason.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use kubetask_api::TaskSpec;

    fn time(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    fn task(status: Option<TaskStatus>) -> Task {
        let mut task = Task::new("t", TaskSpec::default());
        task.metadata.generation = Some(1);
        task.status = status;
        task
    }

    fn job(status: JobStatus) -> Observation {
        Observation::Job(Box::new(Job {
            status: Some(status),
            ..Job::default()
        }))
    }

    fn condition(kind: &str, at: i64) -> JobCondition {
        JobCondition {
            type_: kind.to_owned(),
            status: "True".to_owned(),
            reason: Some("BackoffLimitExceeded".to_owned()),
            message: Some("Job has reached the specified backoff limit".to_owned()),
            last_transition_time: Some(time(at)),
            ..JobCondition::default()
        }
    }

    #[test]
    fn phases_follow_the_job() {
        let now = time(100);
        let cases = [
            (
                JobStatus::default(),
                TaskPhase::Pending,
                reason::JOB_CREATED,
                "Unknown",
            ),
            (
                JobStatus {
                    active: Some(1),
                    ..JobStatus::default()
                },
                TaskPhase::Pending,
                reason::JOB_CREATED,
                "Unknown",
            ),
            (
                JobStatus {
                    active: Some(1),
                    ready: Some(1),
                    start_time: Some(time(10)),
                    ..JobStatus::default()
                },
                TaskPhase::Running,
                reason::RUNNING,
                "Unknown",
            ),
            (
                JobStatus {
                    start_time: Some(time(10)),
                    completion_time: Some(time(20)),
                    conditions: Some(vec![condition("Complete", 20)]),
                    ..JobStatus::default()
                },
                TaskPhase::Completed,
                reason::COMPLETED,
                "True",
            ),
            (
                JobStatus {
                    start_time: Some(time(10)),
                    conditions: Some(vec![condition("Failed", 30)]),
                    ..JobStatus::default()
                },
                TaskPhase::Failed,
                reason::JOB_FAILED,
                "False",
            ),
        ];
        for (job_status, phase, why, condition_status) in cases {
            let status = next_status(&task(None), "t", &job(job_status.clone()), &now);
            assert_eq!(status.phase, Some(phase), "{job_status:?}");
            assert_eq!(status.conditions[0].reason, why);
            assert_eq!(status.conditions[0].status, condition_status);
            assert_eq!(status.job_name.as_deref(), Some("t"));
            assert_eq!(status.observed_generation, Some(1));
        }
        let failed = next_status(
            &task(None),
            "t",
            &job(JobStatus {
                conditions: Some(vec![condition("Failed", 30)]),
                ..JobStatus::default()
            }),
            &now,
        );
        assert_eq!(
            failed.completion_time,
            Some(time(30)),
            "a failed Job's time is its Failed condition's"
        );
        assert!(
            failed.conditions[0]
                .message
                .contains("BackoffLimitExceeded: Job has reached")
        );
        let done = next_status(
            &task(None),
            "t",
            &job(JobStatus {
                start_time: Some(time(10)),
                completion_time: Some(time(20)),
                conditions: Some(vec![condition("Complete", 21)]),
                ..JobStatus::default()
            }),
            &now,
        );
        assert_eq!(
            (done.start_time, done.completion_time),
            (Some(time(10)), Some(time(20)))
        );
    }

    #[test]
    fn waiting_failing_and_missing() {
        let now = time(100);
        let waiting = next_status(
            &task(None),
            "t",
            &Observation::Waiting {
                reason: reason::AGENT_NOT_FOUND,
                message: "spec.agentRef: no".into(),
            },
            &now,
        );
        assert_eq!(
            (waiting.phase, waiting.conditions[0].status.as_str()),
            (Some(TaskPhase::Pending), "Unknown")
        );
        assert_eq!(waiting.conditions[0].message, "spec.agentRef: no");
        let failed = next_status(
            &task(None),
            "t",
            &Observation::Failed {
                reason: reason::INVALID_SPEC,
                message: "x".into(),
            },
            &now,
        );
        assert_eq!(
            (failed.phase, failed.completion_time.clone()),
            (Some(TaskPhase::Failed), Some(now.clone()))
        );
        let running = TaskStatus {
            job_name: Some("t".into()),
            start_time: Some(time(5)),
            ..TaskStatus::default()
        };
        let missing = next_status(
            &task(Some(running)),
            "t",
            &Observation::JobMissing {
                job_name: "t".into(),
            },
            &now,
        );
        assert_eq!(missing.conditions[0].reason, reason::JOB_MISSING);
        assert_eq!(
            (missing.start_time, missing.job_name.as_deref()),
            (Some(time(5)), Some("t"))
        );
    }

    #[test]
    fn transition_time_changes_only_with_the_condition_status() {
        let first = next_status(&task(None), "t", &job(JobStatus::default()), &time(1));
        let running = job(JobStatus {
            ready: Some(1),
            ..JobStatus::default()
        });
        let second = next_status(&task(Some(first.clone())), "t", &running, &time(2));
        assert_eq!(
            second.conditions[0].last_transition_time,
            time(1),
            "Unknown → Unknown keeps its time"
        );
        let done = job(JobStatus {
            conditions: Some(vec![condition("Complete", 3)]),
            ..JobStatus::default()
        });
        let third = next_status(&task(Some(second)), "t", &done, &time(3));
        assert_eq!(third.conditions[0].last_transition_time, time(3));
        let mut finished = task(Some(third));
        assert!(is_finished(&finished));
        finished.metadata.generation = Some(2);
        assert!(
            !is_finished(&finished),
            "a newer generation is not finished"
        );
    }
}

#[cfg(test)]
mod created_tests {
    use super::*;
    use kubetask_api::TaskSpec;

    #[test]
    fn a_created_job_records_its_plugins_and_later_statuses_keep_them() {
        let mut task = Task::new("t", TaskSpec::default());
        task.metadata.generation = Some(1);
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(1).unwrap());
        let plugins = vec![PluginRef {
            name: "builtin-default".into(),
            digest: "sha256:x".into(),
        }];
        let created = Observation::Created {
            job: Box::default(),
            rendered_by: plugins.clone(),
        };
        let first = next_status(&task, "t", &created, &now);
        assert_eq!(first.rendered_by, plugins);
        task.status = Some(first);
        let later = next_status(&task, "t", &Observation::Job(Box::default()), &now);
        assert_eq!(later.rendered_by, plugins);
    }
}
