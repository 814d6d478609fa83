//! What the controller's caches keep of each object: only what its decisions read. The
//! watches apply these before the reflector stores an object (`WatchStreamExt::modify`), so a
//! cluster's history of finished Tasks costs a few hundred bytes a Task, not their pod templates,
//! server-side-apply bookkeeping and context files.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::runtime::watcher;
use kubetask_api::{Agent, Task, TaskStatus};

use super::status;

/// The annotation `kubectl apply` (client-side) writes: a copy of the whole object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Metadata without `managedFields` and `kubectl apply`'s copy of the object.
fn trim_metadata(object: &mut impl ResourceExt) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// A Task as cached. An unfinished Task is rendered from its cached form, so its spec stays
/// whole. A finished Task's later decisions read only its phase and completion time (the
/// TTL), its Agent (the TTL's default, a freed queue slot), its name and uid (a delete) and
/// its usage (what its Budgets settle): its context files, labels, annotations and the status
/// details shown to users are dropped.
pub fn task(task: &mut Task) {
    trim_metadata(task);
    let finished = task.status.as_ref().is_some_and(status::is_finished);
    if !finished {
        return;
    }
    task.spec.contexts = Vec::new();
    // Labels and annotations are read by plugins when they render, never after.
    task.metadata.labels = None;
    task.metadata.annotations = None;
    if let Some(status) = task.status.take() {
        task.status = Some(TaskStatus {
            phase: status.phase,
            job_name: status.job_name,
            start_time: status.start_time,
            completion_time: status.completion_time,
            observed_generation: status.observed_generation,
            // What it spent: its Budgets settle from it (a few numbers).
            usage: status.usage,
            ..TaskStatus::default()
        });
    }
}

/// A finished Job leaves the cache: its Task's last reconcile reads it from the API server
/// (one GET), and nothing decides on it afterwards (a finished Task's Job holds no slot of its
/// Agent's queue). An update that finishes it reaches the reflector as a delete, and the
/// watch's consumers see it as before. A cached Job is 3–4 KiB in memory whatever is trimmed
/// (`k8s_openapi`'s `JobSpec` holds a whole `PodSpec` inline), so this is most of a finished
/// Task's cost.
pub fn job_event(event: watcher::Event<Job>) -> watcher::Event<Job> {
    match event {
        watcher::Event::Apply(job) | watcher::Event::InitApply(job)
            if status::job_finished(&job) =>
        {
            watcher::Event::Delete(job)
        }
        other => other,
    }
}

/// A Job as cached: metadata (owner, labels, the timeout annotation), status, and the spec
/// fields the controller reads (suspension, retries, deadlines, its pods' labels, which
/// NetworkPolicies select them by); never the rest of its pod template.
pub fn job(job: &mut Job) {
    trim_metadata(job);
    if let Some(spec) = job.spec.take() {
        let labels = spec
            .template
            .metadata
            .and_then(|metadata| metadata.labels)
            .map(|labels| ObjectMeta {
                labels: Some(labels),
                ..ObjectMeta::default()
            });
        job.spec = Some(JobSpec {
            template: PodTemplateSpec {
                metadata: labels,
                spec: None,
            },
            suspend: spec.suspend,
            backoff_limit: spec.backoff_limit,
            active_deadline_seconds: spec.active_deadline_seconds,
            ttl_seconds_after_finished: spec.ttl_seconds_after_finished,
            ..JobSpec::default()
        });
    }
    if let Some(status) = job.status.as_mut() {
        // Pod uids the Job controller has not counted yet: no decision reads them.
        status.uncounted_terminated_pods = None;
    }
}

/// An Agent as cached: whole but for `managedFields` and `kubectl apply`'s copy.
pub fn agent(agent: &mut Agent) {
    trim_metadata(agent);
}

/// A NetworkPolicy as cached: whole but for `managedFields` and `kubectl apply`'s copy.
pub fn network_policy(policy: &mut NetworkPolicy) {
    trim_metadata(policy);
}

/// A plugin ConfigMap as cached: whole (its component is loaded from it) but for
/// `managedFields` and `kubectl apply`'s copy, which would hold the component a second time.
pub fn plugin_map(map: &mut ConfigMap) {
    trim_metadata(map);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job_with_template() -> Job {
        serde_json::from_value(json!({
            "metadata": {
                "name": "t-job", "namespace": "team-a",
                "labels": {"app.kubernetes.io/managed-by": "kubetask"},
                "annotations": {"kubetask.io/timeout-seconds": "60", LAST_APPLIED: "{}"},
                "ownerReferences": [{"apiVersion": "kubetask.io/v1alpha1", "kind": "Task", "name": "t", "uid": "u1", "controller": true}],
                "managedFields": [{"manager": "kubetask", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}],
            },
            "spec": {
                "suspend": false, "backoffLimit": 2, "activeDeadlineSeconds": 90,
                "template": {"metadata": {"labels": {"kubetask.io/task": "t"}, "annotations": {"a": "b"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "agent", "image": "agent:1", "env": [{"name": "A", "value": "x"}]}]}},
                "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]},
            },
            "status": {"active": 1, "ready": 1, "startTime": "2026-01-01T00:00:00Z", "uncountedTerminatedPods": {"succeeded": ["p1"]}},
        }))
        .expect("a Job")
    }

    #[test]
    fn a_cached_job_keeps_what_decisions_read_and_no_pod_template() {
        let full = job_with_template();
        let mut cached = full.clone();
        job(&mut cached);
        let spec = cached.spec.clone().unwrap_or_default();
        assert_eq!(spec.template.spec, None, "no pod spec");
        let template = spec.template.metadata.clone().unwrap_or_default();
        assert_eq!(
            template.labels,
            Some([("kubetask.io/task".to_owned(), "t".to_owned())].into()),
            "the pods' labels"
        );
        assert_eq!(template.annotations, None);
        assert_eq!(spec.pod_failure_policy, None);
        assert_eq!(
            (
                spec.suspend,
                spec.backoff_limit,
                spec.active_deadline_seconds
            ),
            (Some(false), Some(2), Some(90))
        );
        assert!(
            cached
                .metadata
                .managed_fields
                .as_ref()
                .is_none_or(Vec::is_empty)
        );
        assert_eq!(
            cached.metadata.owner_references,
            full.metadata.owner_references
        );
        assert_eq!(cached.metadata.labels, full.metadata.labels);
        assert_eq!(
            cached
                .annotations()
                .get("kubetask.io/timeout-seconds")
                .map(String::as_str),
            Some("60")
        );
        assert!(!cached.annotations().contains_key(LAST_APPLIED));
        // Everything the status and the queue read of it is unchanged.
        assert_eq!(status::job_finished(&cached), status::job_finished(&full));
        assert_eq!(
            status::of_job(&cached, "t-job"),
            status::of_job(&full, "t-job")
        );
        let text = serde_json::to_string(&cached).unwrap_or_default();
        for dropped in [
            "containers",
            "podFailurePolicy",
            "managedFields",
            "uncountedTerminatedPods",
        ] {
            assert!(!text.contains(dropped), "{dropped} in {text}");
        }
    }

    #[test]
    fn a_finished_job_leaves_the_cache() {
        let mut running = job_with_template();
        job(&mut running);
        let mut finished = running.clone();
        finished.status = serde_json::from_value(json!({
            "succeeded": 1,
            "conditions": [{"type": "Complete", "status": "True"}],
        }))
        .ok();
        assert!(status::job_finished(&finished));
        for event in [
            watcher::Event::Apply(finished.clone()),
            watcher::Event::InitApply(finished.clone()),
        ] {
            assert!(matches!(job_event(event), watcher::Event::Delete(j) if j == finished));
        }
        assert!(matches!(
            job_event(watcher::Event::Apply(running.clone())),
            watcher::Event::Apply(_)
        ));
        assert!(matches!(
            job_event(watcher::Event::InitApply(running)),
            watcher::Event::InitApply(_)
        ));
        assert!(matches!(
            job_event(watcher::Event::InitDone),
            watcher::Event::InitDone
        ));
    }

    fn task_in(phase: &str) -> Task {
        serde_json::from_value(json!({
            "apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
            "metadata": {
                "name": "t", "namespace": "team-a", "uid": "u1", "generation": 1,
                "annotations": {LAST_APPLIED: "{\"spec\": {}}", "team": "a"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            },
            "spec": {
                "agentRef": "claude", "ttlSecondsAfterFinished": 600,
                "contexts": [{"type": "File", "file": {"filePath": "/workspace/task.md", "source": {"inline": "a long prompt"}}}],
            },
            "status": {
                "phase": phase, "jobName": "t-job",
                "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:10:00Z",
                "conditions": [{"type": "Ready", "status": "False", "reason": "Succeeded", "message": "done", "lastTransitionTime": "2026-01-01T00:10:00Z"}],
                "result": {"summary": "a long answer"},
            },
        }))
        .expect("a Task")
    }

    #[test]
    fn an_unfinished_task_keeps_its_spec_and_status() {
        let full = task_in("Running");
        let mut cached = full.clone();
        task(&mut cached);
        assert_eq!(cached.spec, full.spec);
        assert_eq!(cached.status, full.status);
        assert!(
            cached
                .metadata
                .managed_fields
                .as_ref()
                .is_none_or(Vec::is_empty)
        );
        assert!(!cached.annotations().contains_key(LAST_APPLIED));
        assert_eq!(
            cached.annotations().get("team").map(String::as_str),
            Some("a")
        );
    }

    #[test]
    fn a_finished_task_keeps_what_its_ttl_and_queue_read() {
        let full = task_in("Completed");
        let mut cached = full.clone();
        task(&mut cached);
        assert!(cached.spec.contexts.is_empty());
        assert_eq!(cached.spec.agent_ref.as_deref(), Some("claude"));
        assert_eq!(cached.spec.ttl_seconds_after_finished, Some(600));
        let (status, full_status) = (
            cached.status.clone().unwrap_or_default(),
            full.status.clone().unwrap_or_default(),
        );
        assert!(status::is_finished(&status));
        assert_eq!(status.completion_time, full_status.completion_time);
        assert_eq!(status.job_name, full_status.job_name);
        assert!(status.result.is_none() && status.conditions.is_empty());
        assert_eq!(cached.metadata.labels, None);
        assert_eq!(cached.metadata.annotations, None);
        assert_eq!(cached.metadata.uid, full.metadata.uid);
    }
}
