//! The table tests of [`super`]: each case a situation and the decision it must give.

use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use kubetask_api::TaskSpec;

use super::*;

fn time(seconds: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
}

fn task() -> Task {
    let mut task = Task::new("t", TaskSpec::default());
    task.metadata.generation = Some(1);
    task.metadata.namespace = Some("n".into());
    task
}

fn job(status: JobStatus) -> Child {
    Child::Owned(Box::new(Job {
        status: Some(status),
        ..Job::default()
    }))
}

fn job_condition(kind: &str, at: i64) -> JobCondition {
    JobCondition {
        type_: kind.to_owned(),
        status: "True".to_owned(),
        reason: Some("BackoffLimitExceeded".to_owned()),
        message: Some("Job has reached the specified backoff limit".to_owned()),
        last_transition_time: Some(time(at)),
        ..JobCondition::default()
    }
}

/// A Job started at 10 whose pod is ready.
fn ready_status() -> JobStatus {
    JobStatus {
        start_time: Some(time(10)),
        active: Some(1),
        ready: Some(1),
        ..JobStatus::default()
    }
}

/// A Job started at 10 that completed at 20.
fn complete_status() -> JobStatus {
    JobStatus {
        start_time: Some(time(10)),
        completion_time: Some(time(20)),
        conditions: Some(vec![job_condition("Complete", 20)]),
        ..JobStatus::default()
    }
}

/// A Job started at 10 whose one attempt failed it at 30.
fn failed_status() -> JobStatus {
    JobStatus {
        start_time: Some(time(10)),
        failed: Some(1),
        conditions: Some(vec![job_condition("Failed", 30)]),
        ..JobStatus::default()
    }
}

/// The status `decide` writes for this observation of a Task whose status was `status`.
fn after(status: &TaskStatus, job: Child, start: Start) -> TaskStatus {
    let snapshot = Snapshot {
        pods: None,
        ttl: None,
        egress: None,
        metered_usage: None,
        status: status.clone(),
        job,
        start,
    };
    decide(&task(), &snapshot, &time(1))
        .status
        .expect("a status is written")
}

/// The reason constants by value (test rows name reasons as strings).
fn reason_static(why: &str) -> &'static str {
    [
        reason::JOB_CREATED,
        reason::RUNNING,
        reason::COMPLETED,
        reason::JOB_FAILED,
        reason::JOB_MISSING,
        reason::AGENT_NOT_FOUND,
        reason::CONFIG_MAP_NOT_FOUND,
        reason::CONFIG_MAP_KEY_NOT_FOUND,
        reason::INVALID_SPEC,
        reason::POLICY_DENIED,
        reason::PLUGIN_ERROR,
        reason::PLUGIN_NOT_FOUND,
        reason::PLUGIN_UNAVAILABLE,
        reason::PLUGIN_TIMEOUT,
        reason::PREVIOUS_TASK_CLEANUP,
        reason::NAME_CONFLICT,
        reason::FORBIDDEN,
        reason::REJECTED,
        reason::API_UNAVAILABLE,
        reason::QUEUED,
        reason::BUDGET_EXHAUSTED,
        reason::TIMEOUT,
        reason::CANCELLED,
        reason::RETRYING,
    ]
    .into_iter()
    .find(|r| *r == why)
    .unwrap_or_else(|| panic!("unknown reason {why}"))
}

fn transient(why: &'static str) -> Failure {
    Failure {
        class: Class::Transient {
            retry_after: None,
            give_up_after: None,
        },
        reason: why,
        message: "the API server answered 503".into(),
    }
}

fn permanent(class: Class, why: &'static str) -> Failure {
    Failure {
        class,
        reason: why,
        message: format!("{why}: what to fix"),
    }
}

/// What a row expects: create?, the phase and reason written (None: no write), an Event
/// (None: none; Some(warning)), and the retry.
struct Expect {
    create: bool,
    written: Option<(TaskPhase, &'static str)>,
    event: Option<bool>,
    retry: Retry,
}

const ON_CHANGE: Retry = Retry::OnChange;

fn expect(
    create: bool,
    written: Option<(TaskPhase, &'static str)>,
    event: Option<bool>,
    retry: Retry,
) -> Expect {
    Expect {
        create,
        written,
        event,
        retry,
    }
}

#[test]
fn every_phase_and_observation() {
    use TaskPhase::*;
    let none = TaskStatus::default();
    let waiting = |why: &'static str| Start::Waiting {
        reason: why,
        message: format!("{why}: waiting"),
    };
    let failed_now = |attempts: u32, failure: Failure| Start::Failed { attempts, failure };
    let pending_created = after(
        &none,
        job(JobStatus::default()),
        Start::Created {
            rendered_by: vec![],
        },
    );
    let waiting_agent = after(&none, Child::Absent, waiting(reason::AGENT_NOT_FOUND));
    let forbidden = after(
        &none,
        Child::Absent,
        failed_now(1, permanent(Class::Blocked, reason::FORBIDDEN)),
    );
    let retrying = after(
        &none,
        Child::Absent,
        failed_now(3, transient(reason::API_UNAVAILABLE)),
    );
    let started = JobStatus {
        ready: None,
        ..ready_status()
    };
    let (ready, complete, failed) = (ready_status(), complete_status(), failed_status());
    let running = after(&pending_created, job(ready.clone()), Start::NotChecked);
    let completed = after(&running, job(complete.clone()), Start::NotChecked);
    let job_failed = after(&running, job(failed.clone()), Start::NotChecked);
    let backoff = |attempts| Retry::Backoff {
        attempts,
        retry_after: None,
    };
    let rows: Vec<(&str, TaskStatus, Child, Start, Expect)> = vec![
        // A new Task.
        (
            "new, ready",
            none.clone(),
            Child::Absent,
            Start::Ready,
            expect(true, None, None, ON_CHANGE),
        ),
        (
            "new, Agent missing",
            none.clone(),
            Child::Absent,
            waiting(reason::AGENT_NOT_FOUND),
            expect(
                false,
                Some((Pending, reason::AGENT_NOT_FOUND)),
                Some(true),
                ON_CHANGE,
            ),
        ),
        (
            "new, ConfigMap missing",
            none.clone(),
            Child::Absent,
            waiting(reason::CONFIG_MAP_NOT_FOUND),
            expect(
                false,
                Some((Pending, reason::CONFIG_MAP_NOT_FOUND)),
                Some(true),
                ON_CHANGE,
            ),
        ),
        (
            "new, key missing",
            none.clone(),
            Child::Absent,
            waiting(reason::CONFIG_MAP_KEY_NOT_FOUND),
            expect(
                false,
                Some((Pending, reason::CONFIG_MAP_KEY_NOT_FOUND)),
                Some(true),
                ON_CHANGE,
            ),
        ),
        (
            "new, plugin missing",
            none.clone(),
            Child::Absent,
            waiting(reason::PLUGIN_NOT_FOUND),
            expect(
                false,
                Some((Pending, reason::PLUGIN_NOT_FOUND)),
                Some(true),
                ON_CHANGE,
            ),
        ),
        (
            "new, policy broken",
            none.clone(),
            Child::Absent,
            waiting(reason::PLUGIN_UNAVAILABLE),
            expect(
                false,
                Some((Pending, reason::PLUGIN_UNAVAILABLE)),
                Some(true),
                ON_CHANGE,
            ),
        ),
        (
            "waiting, still waiting",
            waiting_agent.clone(),
            Child::Absent,
            waiting(reason::AGENT_NOT_FOUND),
            expect(false, None, None, ON_CHANGE),
        ),
        (
            "waiting, now ready",
            waiting_agent.clone(),
            Child::Absent,
            Start::Ready,
            expect(true, None, None, ON_CHANGE),
        ),
        // Waits that no watch event is sure to end look again every 30 s as well: a slot of an
        // Agent's queue, a publish lock, a Budget's money (given back while the Task's own
        // status write was on its way).
        (
            "queued in its Agent's queue",
            none.clone(),
            Child::Absent,
            waiting(reason::QUEUED),
            expect(
                false,
                Some((Pending, reason::QUEUED)),
                Some(false),
                Retry::After(crate::controller::admission::RECHECK),
            ),
        ),
        (
            "its Budget has too little left",
            none.clone(),
            Child::Absent,
            waiting(reason::BUDGET_EXHAUSTED),
            expect(
                false,
                Some((Pending, reason::BUDGET_EXHAUSTED)),
                Some(false),
                Retry::After(crate::controller::admission::RECHECK),
            ),
        ),
        // Children that are not the Task's.
        (
            "old child",
            none.clone(),
            Child::Previous {
                kind: "ConfigMap",
                name: "t-contexts".into(),
            },
            Start::NotChecked,
            expect(
                false,
                Some((Pending, reason::PREVIOUS_TASK_CLEANUP)),
                Some(false),
                ON_CHANGE,
            ),
        ),
        (
            "foreign Job",
            none.clone(),
            Child::Foreign {
                kind: "Job",
                name: "t".into(),
                owner: "none".into(),
            },
            Start::NotChecked,
            expect(
                false,
                Some((Failed, reason::NAME_CONFLICT)),
                Some(true),
                ON_CHANGE,
            ),
        ),
        // Creating.
        (
            "created",
            none.clone(),
            job(JobStatus::default()),
            Start::Created {
                rendered_by: vec![],
            },
            expect(
                false,
                Some((Pending, reason::JOB_CREATED)),
                Some(false),
                ON_CHANGE,
            ),
        ),
        (
            "create failed once",
            none.clone(),
            Child::Absent,
            failed_now(1, transient(reason::API_UNAVAILABLE)),
            expect(false, None, None, backoff(1)),
        ),
        (
            "create failed 3 times",
            none.clone(),
            Child::Absent,
            failed_now(3, transient(reason::API_UNAVAILABLE)),
            expect(
                false,
                Some((Pending, reason::API_UNAVAILABLE)),
                Some(true),
                backoff(3),
            ),
        ),
        (
            "retrying, failed again",
            retrying.clone(),
            Child::Absent,
            failed_now(4, transient(reason::API_UNAVAILABLE)),
            expect(
                false,
                Some((Pending, reason::API_UNAVAILABLE)),
                None,
                backoff(4),
            ),
        ),
        (
            "retrying, now ready",
            retrying.clone(),
            Child::Absent,
            Start::Ready,
            expect(true, None, None, ON_CHANGE),
        ),
        (
            "plugin timed out once",
            none.clone(),
            Child::Absent,
            failed_now(1, transient(reason::PLUGIN_TIMEOUT)),
            expect(false, None, None, backoff(1)),
        ),
        (
            "403",
            none.clone(),
            Child::Absent,
            failed_now(1, permanent(Class::Blocked, reason::FORBIDDEN)),
            expect(
                false,
                Some((Pending, reason::FORBIDDEN)),
                Some(true),
                Retry::After(LONGEST_RETRY),
            ),
        ),
        (
            "403, nothing changed",
            forbidden.clone(),
            Child::Absent,
            Start::Blocked(permanent(Class::Blocked, reason::FORBIDDEN)),
            expect(false, None, None, Retry::After(LONGEST_RETRY)),
        ),
        (
            "403, then ready",
            forbidden.clone(),
            Child::Absent,
            Start::Ready,
            expect(true, None, None, ON_CHANGE),
        ),
        (
            "422",
            none.clone(),
            Child::Absent,
            failed_now(1, permanent(Class::Blocked, reason::REJECTED)),
            expect(
                false,
                Some((Pending, reason::REJECTED)),
                Some(true),
                Retry::After(LONGEST_RETRY),
            ),
        ),
        (
            "invalid spec",
            none.clone(),
            Child::Absent,
            failed_now(1, permanent(Class::Fatal, reason::INVALID_SPEC)),
            expect(
                false,
                Some((Failed, reason::INVALID_SPEC)),
                Some(true),
                ON_CHANGE,
            ),
        ),
        (
            "denied",
            none.clone(),
            Child::Absent,
            failed_now(1, permanent(Class::Fatal, reason::POLICY_DENIED)),
            expect(
                false,
                Some((Failed, reason::POLICY_DENIED)),
                Some(true),
                ON_CHANGE,
            ),
        ),
        (
            "plugin crashed",
            none.clone(),
            Child::Absent,
            failed_now(1, permanent(Class::Fatal, reason::PLUGIN_ERROR)),
            expect(
                false,
                Some((Failed, reason::PLUGIN_ERROR)),
                Some(true),
                ON_CHANGE,
            ),
        ),
        // The Job's life.
        (
            "Job pending",
            pending_created.clone(),
            job(JobStatus::default()),
            Start::NotChecked,
            expect(false, None, None, ON_CHANGE),
        ),
        (
            "Job started, pod not ready",
            pending_created.clone(),
            job(started.clone()),
            Start::NotChecked,
            expect(false, None, None, ON_CHANGE),
        ),
        (
            "pod ready",
            pending_created.clone(),
            job(ready.clone()),
            Start::NotChecked,
            expect(
                false,
                Some((Running, reason::RUNNING)),
                Some(false),
                ON_CHANGE,
            ),
        ),
        (
            "running, still",
            running.clone(),
            job(ready.clone()),
            Start::NotChecked,
            expect(false, None, None, ON_CHANGE),
        ),
        (
            "running, complete",
            running.clone(),
            job(complete.clone()),
            Start::NotChecked,
            expect(
                false,
                Some((Completed, reason::COMPLETED)),
                Some(false),
                ON_CHANGE,
            ),
        ),
        (
            "running, failed",
            running.clone(),
            job(failed.clone()),
            Start::NotChecked,
            expect(
                false,
                Some((Failed, reason::JOB_FAILED)),
                Some(true),
                ON_CHANGE,
            ),
        ),
        (
            "pending, complete at once",
            pending_created.clone(),
            job(complete.clone()),
            Start::NotChecked,
            expect(
                false,
                Some((Completed, reason::COMPLETED)),
                Some(false),
                ON_CHANGE,
            ),
        ),
        (
            "running, Job deleted",
            running.clone(),
            Child::Absent,
            Start::NotChecked,
            expect(
                false,
                Some((Failed, reason::JOB_MISSING)),
                Some(true),
                ON_CHANGE,
            ),
        ),
        (
            "running, API down",
            running.clone(),
            Child::Absent,
            failed_now(3, transient(reason::API_UNAVAILABLE)),
            expect(
                false,
                Some((Running, reason::API_UNAVAILABLE)),
                Some(true),
                backoff(3),
            ),
        ),
        // Finished Tasks stay as they are.
        (
            "completed",
            completed.clone(),
            Child::Absent,
            Start::NotChecked,
            expect(false, None, None, ON_CHANGE),
        ),
        (
            "failed",
            job_failed.clone(),
            job(ready.clone()),
            Start::NotChecked,
            expect(false, None, None, ON_CHANGE),
        ),
    ];
    for (name, status, child, start, expected) in rows {
        let snapshot = Snapshot {
            pods: None,
            ttl: None,
            egress: None,
            metered_usage: None,
            status: status.clone(),
            job: child,
            start,
        };
        let plan = decide(&task(), &snapshot, &time(100));
        assert_eq!(plan.create, expected.create, "{name}: create");
        let written = plan.status.as_ref().map(|s| {
            (
                s.phase.unwrap(),
                reason_static(status::condition_reason(s).unwrap()),
            )
        });
        assert_eq!(written, expected.written, "{name}: status");
        assert_eq!(
            plan.event.as_ref().map(|e| e.warning),
            expected.event,
            "{name}: event"
        );
        assert_eq!(plan.retry, expected.retry, "{name}: retry");
        if let Some(written) = &plan.status {
            assert_eq!(written.observed_generation, Some(1), "{name}");
            assert_eq!(written.conditions.len(), 1, "{name}");
        }
    }
}

#[test]
fn times_come_from_the_job_and_only_once_it_runs() {
    let snapshot = |status: TaskStatus, job_status: JobStatus| Snapshot {
        pods: None,
        ttl: None,
        egress: None,
        metered_usage: None,
        status,
        job: job(job_status),
        start: Start::NotChecked,
    };
    let pending = after(
        &TaskStatus::default(),
        job(JobStatus::default()),
        Start::Created {
            rendered_by: vec![],
        },
    );
    let started = JobStatus {
        start_time: Some(time(10)),
        ..JobStatus::default()
    };
    assert_eq!(
        decide(
            &task(),
            &snapshot(pending.clone(), started.clone()),
            &time(11)
        )
        .status,
        None,
        "a startTime alone while Pending is not written"
    );
    let running = decide(
        &task(),
        &snapshot(
            pending,
            JobStatus {
                ready: Some(1),
                ..started
            },
        ),
        &time(12),
    )
    .status
    .unwrap();
    assert_eq!(running.start_time, Some(time(10)));
    let done = decide(
        &task(),
        &snapshot(
            running.clone(),
            JobStatus {
                start_time: Some(time(10)),
                completion_time: Some(time(20)),
                conditions: Some(vec![job_condition("Complete", 21)]),
                ..JobStatus::default()
            },
        ),
        &time(30),
    )
    .status
    .unwrap();
    assert_eq!(
        (done.start_time, done.completion_time),
        (Some(time(10)), Some(time(20)))
    );
    assert_eq!(
        running.conditions[0].last_transition_time,
        time(1),
        "Unknown → Unknown keeps its time"
    );
    assert_eq!(done.conditions[0].last_transition_time, time(30));
    let failed = decide(
        &task(),
        &snapshot(
            running.clone(),
            JobStatus {
                conditions: Some(vec![job_condition("Failed", 30)]),
                ..JobStatus::default()
            },
        ),
        &time(40),
    )
    .status
    .unwrap();
    assert_eq!(
        failed.completion_time,
        Some(time(30)),
        "the Failed condition's time"
    );
    assert!(
        failed.conditions[0]
            .message
            .contains("BackoffLimitExceeded: Job has reached")
    );
}

#[test]
fn a_created_job_records_its_plugins_and_later_statuses_keep_them() {
    let plugins = vec![PluginRef {
        name: "builtin-default".into(),
        digest: "sha256:x".into(),
    }];
    let created = Snapshot {
        pods: None,
        ttl: None,
        egress: None,
        metered_usage: None,
        status: TaskStatus::default(),
        job: job(JobStatus::default()),
        start: Start::Created {
            rendered_by: plugins.clone(),
        },
    };
    let first = decide(&task(), &created, &time(1)).status.unwrap();
    assert_eq!(first.rendered_by, plugins);
    assert_eq!(first.job_name.as_deref(), Some("t"));
    let later = Snapshot {
        pods: None,
        ttl: None,
        egress: None,
        metered_usage: None,
        status: first,
        job: job(JobStatus {
            ready: Some(1),
            ..JobStatus::default()
        }),
        start: Start::NotChecked,
    };
    assert_eq!(
        decide(&task(), &later, &time(2))
            .status
            .unwrap()
            .rendered_by,
        plugins
    );
}

#[test]
fn deleted_and_newer_generations() {
    let mut deleted = task();
    deleted.metadata.deletion_timestamp = Some(time(5));
    let snapshot = Snapshot {
        pods: None,
        ttl: None,
        egress: None,
        metered_usage: None,
        status: TaskStatus::default(),
        job: Child::Absent,
        start: Start::Ready,
    };
    assert_eq!(decide(&deleted, &snapshot, &time(6)), Plan::idle());
    let mut newer = task();
    newer.metadata.generation = Some(2);
    let running = after(
        &TaskStatus::default(),
        job(JobStatus {
            ready: Some(1),
            ..JobStatus::default()
        }),
        Start::NotChecked,
    );
    let finished = Snapshot {
        pods: None,
        ttl: None,
        egress: None,
        metered_usage: None,
        status: after(
            &running,
            job(JobStatus {
                conditions: Some(vec![job_condition("Complete", 3)]),
                ..JobStatus::default()
            }),
            Start::NotChecked,
        ),
        job: job(JobStatus::default()),
        start: Start::NotChecked,
    };
    assert_eq!(
        decide(&newer, &finished, &time(6)),
        Plan::idle(),
        "a finished status is final, also for a newer generation (spec.cancel added late)"
    );
}

/// A Job created at `created` with a `timeout_seconds` fixed on it, in `status`.
fn timed_job(created: i64, timeout_seconds: Option<u64>, status: JobStatus) -> Child {
    let mut job = Job {
        status: Some(status),
        ..Job::default()
    };
    job.metadata.creation_timestamp = Some(time(created));
    if let Some(seconds) = timeout_seconds {
        job.metadata.annotations = Some(
            [(
                crate::render::lifecycle::TIMEOUT_ANNOTATION.to_owned(),
                seconds.to_string(),
            )]
            .into(),
        );
    }
    Child::Owned(Box::new(job))
}

fn pod(name: &str, phase: &str, reason: Option<&str>, message: Option<&str>) -> Pod {
    let state = if phase == "Running" {
        serde_json::json!({"running": {}})
    } else {
        serde_json::json!({"terminated": {"exitCode": if phase == "Succeeded" { 0 } else { 1 }, "message": message, "finishedAt": "1970-01-01T00:00:20Z"}})
    };
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "status": {"phase": phase, "reason": reason, "startTime": "1970-01-01T00:00:10Z",
            "containerStatuses": [{"name": "agent", "image": "i", "ready": false, "restartCount": 0, "state": state}]},
    }))
    .unwrap()
}

/// One row per lifecycle rule: cancel, timeout, queue, retries, reports, TTL.
#[test]
fn lifecycle_rules() {
    use TaskPhase::*;
    let mut cancelled = task();
    cancelled.spec.cancel = Some(kubetask_api::Cancel {
        reason: Some("wrong repo".into()),
    });
    let plain = task();
    let none = TaskStatus::default();
    let running_status = after(
        &none,
        job(JobStatus {
            ready: Some(1),
            start_time: Some(time(10)),
            ..JobStatus::default()
        }),
        Start::NotChecked,
    );
    let (ready, complete, failed) = (ready_status(), complete_status(), failed_status());
    let finished = after(&running_status, job(complete.clone()), Start::NotChecked);
    let good = r#"{"summary": "done", "usage": {"cost": "0.10"}}"#;
    struct Row {
        name: &'static str,
        task: Task,
        status: TaskStatus,
        job: Child,
        pods: Option<Vec<Pod>>,
        ttl: Option<u64>,
        now: i64,
        written: Option<(TaskPhase, &'static str)>,
        stop: Option<Stop>,
        delete: bool,
        retry: Retry,
    }
    let row = |name, task: &Task, status: &TaskStatus, job, now| Row {
        name,
        task: task.clone(),
        status: status.clone(),
        job,
        pods: None,
        ttl: None,
        now,
        written: None,
        stop: None,
        delete: false,
        retry: Retry::OnChange,
    };
    let rows = vec![
        Row {
            written: Some((Failed, reason::CANCELLED)),
            ..row(
                "cancelled before a Job",
                &cancelled,
                &none,
                Child::Absent,
                1,
            )
        },
        Row {
            written: Some((Failed, reason::CANCELLED)),
            stop: Some(Stop::Cancelled),
            ..row(
                "cancelled while running",
                &cancelled,
                &running_status,
                timed_job(5, None, ready.clone()),
                30,
            )
        },
        row(
            "cancelled after finishing",
            &cancelled,
            &finished,
            job(complete.clone()),
            30,
        ),
        Row {
            retry: Retry::After(Duration::from_millis(5100)),
            ..row(
                "running, deadline ahead",
                &plain,
                &running_status,
                timed_job(5, Some(30), ready.clone()),
                30,
            )
        },
        Row {
            written: Some((Failed, reason::TIMEOUT)),
            stop: Some(Stop::Timeout),
            ..row(
                "running, deadline passed",
                &plain,
                &running_status,
                timed_job(5, Some(30), ready.clone()),
                35,
            )
        },
        Row {
            written: Some((Failed, reason::TIMEOUT)),
            pods: Some(vec![pod("p", "Failed", Some("DeadlineExceeded"), None)]),
            ..row(
                "the kubelet's deadline stopped the pod",
                &plain,
                &running_status,
                timed_job(5, Some(30), failed.clone()),
                34,
            )
        },
        Row {
            written: Some((Failed, reason::JOB_FAILED)),
            pods: Some(vec![pod("p", "Failed", None, None)]),
            ..row(
                "failed before its deadline",
                &plain,
                &running_status,
                timed_job(5, Some(30), failed.clone()),
                34,
            )
        },
        Row {
            written: Some((Pending, reason::QUEUED)),
            ..row(
                "suspended by a queue: no deadline",
                &plain,
                &none,
                {
                    let Child::Owned(mut job) = timed_job(5, Some(30), JobStatus::default()) else {
                        unreachable!()
                    };
                    job.spec = Some(k8s_openapi::api::batch::v1::JobSpec {
                        suspend: Some(true),
                        ..Default::default()
                    });
                    Child::Owned(job)
                },
                100,
            )
        },
        Row {
            written: Some((Running, reason::RETRYING)),
            ..row(
                "an attempt failed, retries left",
                &plain,
                &running_status,
                job(JobStatus {
                    active: Some(1),
                    failed: Some(1),
                    start_time: Some(time(10)),
                    ..JobStatus::default()
                }),
                30,
            )
        },
        Row {
            written: Some((Completed, reason::COMPLETED)),
            pods: Some(vec![pod("p", "Succeeded", None, Some(good))]),
            ..row(
                "completed with a report",
                &plain,
                &running_status,
                job(complete.clone()),
                30,
            )
        },
        Row {
            written: Some((Completed, reason::COMPLETED)),
            pods: Some(vec![pod("p", "Succeeded", None, Some("{bad"))]),
            ..row(
                "completed with a bad report",
                &plain,
                &running_status,
                job(complete.clone()),
                30,
            )
        },
        Row {
            written: Some((Completed, reason::COMPLETED)),
            ttl: Some(60),
            retry: Retry::After(Duration::from_secs(60)),
            ..row(
                "completed, TTL starts",
                &plain,
                &running_status,
                job(complete.clone()),
                30,
            )
        },
        Row {
            written: Some((Failed, reason::JOB_FAILED)),
            ttl: Some(60),
            retry: Retry::After(Duration::from_secs(60)),
            pods: Some(vec![pod("p", "Failed", None, None)]),
            ..row(
                "failed, TTL starts",
                &plain,
                &running_status,
                timed_job(5, Some(30), failed.clone()),
                34,
            )
        },
        Row {
            ttl: Some(60),
            retry: Retry::After(Duration::from_millis(50_100)),
            ..row(
                "finished, TTL ahead",
                &plain,
                &finished,
                job(complete.clone()),
                30,
            )
        },
        Row {
            ttl: Some(5),
            delete: true,
            ..row(
                "finished, TTL passed",
                &plain,
                &finished,
                job(complete.clone()),
                30,
            )
        },
    ];
    for row in rows {
        let snapshot = Snapshot {
            status: row.status.clone(),
            job: row.job,
            start: Start::NotChecked,
            pods: row.pods,
            ttl: row.ttl.map(Duration::from_secs),
            egress: None,
            metered_usage: None,
        };
        let plan = decide(&row.task, &snapshot, &time(row.now));
        let written = plan.status.as_ref().map(|s| {
            (
                s.phase.expect("a phase"),
                reason_static(status::condition_reason(s).unwrap_or_default()),
            )
        });
        assert_eq!(written, row.written, "{}: written", row.name);
        assert_eq!(plan.stop, row.stop, "{}: stop", row.name);
        assert_eq!(plan.delete, row.delete, "{}: delete", row.name);
        assert_eq!(plan.retry, row.retry, "{}: retry", row.name);
        assert!(!plan.create, "{}", row.name);
        let next = plan.status.unwrap_or_default();
        match row.name {
            "completed with a report" => {
                assert_eq!(
                    next.result.as_ref().map(|r| r.summary.as_str()),
                    Some("done")
                );
                assert_eq!(next.usage.and_then(|u| u.cost).as_deref(), Some("0.10"));
                assert_eq!(next.attempts.len(), 1);
                assert!(plan.report_warning.is_none());
            }
            "completed with a bad report" => {
                assert!(next.result.is_none());
                let warning = plan.report_warning.expect("a warning Event");
                assert_eq!(warning.reason, reason::INVALID_RESULT);
                assert!(
                    next.conditions
                        .iter()
                        .any(|c| c.type_ == status::REPORT_CONDITION)
                );
            }
            "cancelled while running" | "cancelled before a Job" => {
                let message = &next.conditions[0].message;
                assert!(message.contains("wrong repo"), "{message}");
            }
            _ => {}
        }
    }
    // A Task that fails before it has a Job waits for its TTL too.
    let invalid = Snapshot {
        status: none.clone(),
        job: Child::Absent,
        start: Start::Failed {
            attempts: 1,
            failure: permanent(Class::Fatal, reason::INVALID_SPEC),
        },
        pods: None,
        ttl: Some(Duration::from_secs(60)),
        egress: None,
        metered_usage: None,
    };
    let plan = decide(&plain, &invalid, &time(30));
    assert_eq!(plan.retry, Retry::After(Duration::from_secs(60)));
    assert_eq!(plan.status.and_then(|s| s.phase), Some(Failed));
}

/// (name, the condition's reason before, the policies' answer, whether the canary got
/// through, the expected (status, reason)).
type EgressRow = (
    &'static str,
    Option<&'static str>,
    Option<Enforcement>,
    Option<bool>,
    Option<(&'static str, &'static str)>,
);

/// `EgressEnforced`: the policies' answer, overruled by a canary that got through and
/// confirmed by one that was stopped; a canary's verdict stands while pods are not listed
/// again, and a finished or unchecked Task keeps its last answer.
#[test]
fn egress_enforced_from_the_policies_and_the_canary() {
    // The running pod, its canary ended with what it saw.
    let canary_pod = |reached: bool| -> Pod {
        let probe = enforcement::Probe {
            address: "10.96.0.1:443".to_owned(),
            reached,
            error: (!reached).then(|| "timed out after 3s".to_owned()),
        };
        let mut pod = pod("p", "Running", None, None);
        pod.status.get_or_insert_default().init_container_statuses =
            serde_json::from_value(serde_json::json!([{
                "name": crate::egress::canary::CONTAINER, "image": "i", "ready": true,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "message": probe.message()}},
            }]))
            .unwrap();
        pod
    };
    let widened = Enforcement::Widened(vec!["allow-all".to_owned()]);
    let rows: Vec<EgressRow> = vec![
        ("no egress, none before", None, None, None, None),
        (
            "enforced",
            None,
            Some(Enforcement::Enforced),
            None,
            Some(("True", "PolicyEnforced")),
        ),
        (
            "no policy",
            None,
            Some(Enforcement::NoPolicy),
            None,
            Some(("False", "NoPolicy")),
        ),
        (
            "widened",
            None,
            Some(widened.clone()),
            None,
            Some(("False", "PolicyWidened")),
        ),
        (
            "canary stopped",
            None,
            Some(Enforcement::Enforced),
            Some(false),
            Some(("True", "CanaryBlocked")),
        ),
        (
            "canary through",
            None,
            Some(Enforcement::Enforced),
            Some(true),
            Some(("False", "CanaryReached")),
        ),
        (
            "canary stopped, policy widened",
            None,
            Some(widened.clone()),
            Some(false),
            Some(("False", "PolicyWidened")),
        ),
        (
            "a reached canary stands",
            Some("CanaryReached"),
            Some(Enforcement::Enforced),
            None,
            Some(("False", "CanaryReached")),
        ),
        (
            "a stopped canary stands",
            Some("CanaryBlocked"),
            Some(Enforcement::Enforced),
            None,
            Some(("True", "CanaryBlocked")),
        ),
        (
            "but not over a wider policy",
            Some("CanaryBlocked"),
            Some(widened),
            None,
            Some(("False", "PolicyWidened")),
        ),
        (
            "unchecked keeps the last",
            Some("NoPolicy"),
            None,
            None,
            Some(("False", "NoPolicy")),
        ),
    ];
    for (name, before, policies, canary, expected) in rows {
        let mut status = after(
            &TaskStatus::default(),
            job(ready_status()),
            Start::NotChecked,
        );
        if let Some(reason) = before {
            status
                .conditions
                .push(k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                    type_: enforcement::CONDITION.to_owned(),
                    status: if reason == "CanaryBlocked" {
                        "True"
                    } else {
                        "False"
                    }
                    .to_owned(),
                    reason: reason.to_owned(),
                    message: "before".to_owned(),
                    observed_generation: Some(1),
                    last_transition_time: time(5),
                });
        }
        let snapshot = Snapshot {
            status: status.clone(),
            job: job(ready_status()),
            start: Start::NotChecked,
            pods: canary.map(|reached| vec![canary_pod(reached)]),
            ttl: None,
            egress: policies,
            metered_usage: None,
        };
        let plan = decide(&task(), &snapshot, &time(100));
        let written = plan.status.unwrap_or(status);
        let got = written
            .conditions
            .iter()
            .find(|c| c.type_ == enforcement::CONDITION)
            .map(|c| (c.status.as_str(), c.reason.as_str()));
        assert_eq!(got, expected, "{name}");
        assert_eq!(
            written.conditions[0].type_,
            status::CONDITION,
            "{name}: Succeeded stays first"
        );
    }
}

#[test]
fn a_running_task_whose_metered_usage_reaches_its_budget_is_stopped() {
    let budgeted = |annotation: Option<&str>| {
        let mut job = Job {
            status: Some(ready_status()),
            ..Job::default()
        };
        if let Some(text) = annotation {
            job.metadata.annotations = Some(
                [(
                    kubetask_api::budget::BUDGET_ANNOTATION.to_owned(),
                    text.to_owned(),
                )]
                .into(),
            );
        }
        Child::Owned(Box::new(job))
    };
    let usage = |tokens: i64| kubetask_api::Usage {
        input_tokens: Some(tokens),
        output_tokens: Some(0),
        metered: Some(true),
        ..kubetask_api::Usage::default()
    };
    let running = after(
        &TaskStatus::default(),
        job(ready_status()),
        Start::NotChecked,
    );
    let rows = [
        (
            "at the budget",
            Some(r#"{"maxTokens":100}"#),
            Some(usage(100)),
            true,
        ),
        (
            "under it",
            Some(r#"{"maxTokens":100}"#),
            Some(usage(99)),
            false,
        ),
        ("no budget", None, Some(usage(1_000_000)), false),
        ("gateway off", Some(r#"{"maxTokens":100}"#), None, false),
    ];
    for (name, annotation, metered_usage, stopped) in rows {
        let snapshot = Snapshot {
            status: running.clone(),
            job: budgeted(annotation),
            start: Start::NotChecked,
            pods: None,
            ttl: None,
            egress: None,
            metered_usage,
        };
        let plan = decide(&task(), &snapshot, &time(30));
        assert_eq!(
            plan.stop == Some(Stop::BudgetExceeded),
            stopped,
            "{name}: {plan:?}"
        );
        if stopped {
            let status = plan.status.unwrap_or_default();
            assert_eq!(status.phase, Some(TaskPhase::Failed), "{name}");
            assert_eq!(
                status::condition_reason(&status),
                Some(reason::BUDGET_EXCEEDED)
            );
            assert!(
                status.conditions[0]
                    .message
                    .contains("100 tokens of its budget of 100"),
                "{name}: {:?}",
                status.conditions
            );
        }
    }
}
