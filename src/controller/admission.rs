//! An Agent's `maxConcurrentTasks`: at most that many of its Tasks have a Job that has not
//! finished; the others wait `Pending/Queued`, first in, first out by creation time. The
//! queue is derived from the watch caches (the Tasks and Jobs the API server holds), plus
//! the Tasks this replica admitted whose Job the cache has not shown yet, so a restarted or
//! failed-over controller admits in the same order and never more than the limit.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kubetask_api::{Agent, Task, naming};

use super::status::{self, reason};
use crate::render::needs;

/// How often a queued Task looks again even if nothing woke it (a Task deleted while
/// running frees its slot without an event that names the Agent; a Budget may give money
/// back while a waiting Task's status is still being written).
pub const RECHECK: Duration = Duration::from_secs(30);

/// One Task in the queue: ordered by creation time, then name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub created: Option<i64>,
    pub name: String,
    pub uid: String,
}

/// The outcome of asking for a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// 1-based position among the waiting Tasks, with the count of active ones.
    Queued {
        position: usize,
        active: usize,
    },
}

/// Whether `me` may start: it is among the first `limit - active` waiting Tasks.
pub fn admit(limit: usize, active: usize, waiting: &mut [Entry], me: &str) -> Admission {
    waiting.sort();
    let position = waiting
        .iter()
        .position(|e| e.uid == me)
        .unwrap_or(waiting.len());
    if position < limit.saturating_sub(active) {
        Admission::Admitted
    } else {
        Admission::Queued {
            position: position + 1,
            active,
        }
    }
}

/// The Tasks this replica admitted, by uid (their Job may not be in the cache yet).
#[derive(Debug, Default)]
pub struct Admitted(Mutex<HashSet<String>>);

impl Admitted {
    /// Forgets a Task (its Job failed to be created, or the Task is gone).
    pub fn forget(&self, uid: &str) {
        if let Ok(mut admitted) = self.0.lock() {
            admitted.remove(uid);
        }
    }

    /// Drops the Tasks `live` says no longer exist.
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        if let Ok(mut admitted) = self.0.lock() {
            admitted.retain(|uid| live(uid));
        }
    }
}

/// Reasons of a Task that waits on the controller or the cluster, not on its owner: it keeps
/// its place in the queue, so a Task that met one of them right after a start (caches or
/// plugins still listing) is not overtaken by the Tasks created after it.
const TRANSIENT_WAITS: &[&str] = &[
    reason::QUEUED,
    reason::PUBLISH_LOCKED,
    reason::API_UNAVAILABLE,
    reason::PLUGIN_UNAVAILABLE,
    reason::PLUGIN_TIMEOUT,
    reason::PREVIOUS_TASK_CLEANUP,
];

/// Whether a Task without a Job holds a place in its Agent's queue: it has not been looked at
/// yet, or it waits for something that is not its owner's to fix. A Task waiting for its
/// owner (a missing ConfigMap, a refused spec) does not hold up the ones behind it.
fn keeps_place(status: &kubetask_api::TaskStatus) -> bool {
    *status == kubetask_api::TaskStatus::default()
        || status::condition_reason(status).is_some_and(|reason| TRANSIENT_WAITS.contains(&reason))
}

/// What the queue needs to see.
pub struct View<'a> {
    pub tasks: &'a Store<Task>,
    pub jobs: &'a Store<Job>,
    pub admitted: &'a Admitted,
    /// The status this replica last wrote (fresher than the cache).
    pub status_of: &'a dyn Fn(&Task) -> kubetask_api::TaskStatus,
}

fn created(task: &Task) -> Option<i64> {
    task.metadata
        .creation_timestamp
        .as_ref()
        .map(|t: &Time| t.0.as_millisecond())
}

/// Asks for a slot of `agent` for `task`; an admitted Task is recorded at once, under the
/// same lock, so concurrent reconciles never admit more than the limit.
pub fn request(view: &View<'_>, task: &Task, agent: &Agent) -> Option<Admission> {
    let limit = usize::try_from(agent.spec.max_concurrent_tasks?)
        .ok()?
        .max(1);
    let namespace = task.namespace().unwrap_or_default();
    let agent_name = needs::agent_name(task);
    let same = |other: &Task| {
        other.namespace().as_deref() == Some(namespace.as_str())
            && needs::agent_name(other) == agent_name
    };
    queue(view, task, limit, &same).map(|(admission, _)| admission)
}

/// Asks for the publish lock `key` (see [`publish_key`]) for `task`: one Task at a time, in
/// any namespace, runs with a workspace that publishes to that repository and branch; the
/// others wait in creation order. Also returns the Task that holds it or is ahead, by
/// `namespace/name`.
pub fn request_publish_lock(
    view: &View<'_>,
    agents: &Store<Agent>,
    task: &Task,
    key: &str,
) -> Option<(Admission, Option<String>)> {
    let same = |other: &Task| publish_key(other, agents).as_deref() == Some(key);
    queue(view, task, 1, &same)
}

/// The publish lock a Task needs (`host/path@branch`), when its workspace (its own, else its
/// Agent's in `agents`) publishes.
pub fn publish_key(task: &Task, agents: &Store<Agent>) -> Option<String> {
    let namespace = task.namespace().unwrap_or_default();
    let agent = agents.get(&ObjectRef::new(needs::agent_name(task)).within(&namespace));
    let agent_workspace = agent.as_ref().and_then(|a| a.spec.workspace.as_ref());
    kubetask_api::Workspace::merged(agent_workspace, task.spec.workspace.as_ref())?
        .publish_lock(&task.name_any(), &namespace)
}

/// Whether `task` is among the first `limit` of the Tasks `same` picks that run or wait (an
/// admitted Task is recorded at once); with the first of those that runs or waits ahead of it.
fn queue(
    view: &View<'_>,
    task: &Task,
    limit: usize,
    same: &dyn Fn(&Task) -> bool,
) -> Option<(Admission, Option<String>)> {
    let me = task.uid().unwrap_or_default();
    let Ok(mut admitted) = view.admitted.0.lock() else {
        return None;
    };
    let mut active = 0;
    let mut holder = None;
    let mut waiting = Vec::new();
    let mut seen_me = false;
    for other in view.tasks.state() {
        if !same(&other) {
            continue;
        }
        let namespace = other.namespace().unwrap_or_default();
        let uid = other.uid().unwrap_or_default();
        let job = view
            .jobs
            .get(&ObjectRef::new(&naming::job_name(&other.name_any())).within(&namespace));
        let own_job = job.filter(|job| {
            job.owner_references()
                .iter()
                .any(|o| o.uid == uid && o.controller == Some(true))
        });
        let name = format!("{namespace}/{}", other.name_any());
        if let Some(job) = own_job {
            if !status::job_finished(&job) {
                active += 1;
                holder.get_or_insert(name);
            }
            continue;
        }
        let status = (view.status_of)(&other);
        // Admitted, its Job not in the cache yet (a finished Job leaves the cache, and a
        // finished Task holds no slot).
        if admitted.contains(&uid) && uid != me && !status::is_finished(&status) {
            active += 1;
            holder.get_or_insert(name);
            continue;
        }
        let eligible = other.metadata.deletion_timestamp.is_none()
            && other.spec.cancel.is_none()
            && !status::is_finished(&status)
            && status.job_name.is_none()
            && (keeps_place(&status) || uid == me);
        if eligible {
            seen_me |= uid == me;
            waiting.push(Entry {
                created: created(&other),
                name: name.clone(),
                uid,
            });
        }
    }
    if !seen_me {
        waiting.push(Entry {
            created: created(task),
            name: format!(
                "{}/{}",
                task.namespace().unwrap_or_default(),
                task.name_any()
            ),
            uid: me.clone(),
        });
    }
    let admission = admit(limit, active, &mut waiting, &me);
    if admission == Admission::Admitted {
        admitted.insert(me);
    } else if holder.is_none() {
        holder = waiting.first().map(|e| e.name.clone());
    }
    Some((admission, holder))
}

/// The first queued Tasks of `agent` (as many as its limit), by creation: the ones a freed
/// slot concerns.
pub fn heads(
    tasks: &Store<Task>,
    waiting: Vec<ObjectRef<Task>>,
    limit: usize,
) -> Vec<ObjectRef<Task>> {
    let mut entries: Vec<(Entry, ObjectRef<Task>)> = waiting
        .into_iter()
        .filter_map(|reference| {
            let task = tasks.get(&reference)?;
            Some((
                Entry {
                    created: created(&task),
                    name: task.name_any(),
                    uid: task.uid().unwrap_or_default(),
                },
                reference,
            ))
        })
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
        .into_iter()
        .take(limit.max(1))
        .map(|(_, r)| r)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(created: i64, name: &str) -> Entry {
        Entry {
            created: Some(created),
            name: name.to_owned(),
            uid: format!("uid-{name}"),
        }
    }

    fn waiting_for(reason: &str) -> kubetask_api::TaskStatus {
        kubetask_api::TaskStatus {
            conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: status::CONDITION.to_owned(),
                status: "Unknown".to_owned(),
                reason: reason.to_owned(),
                message: String::new(),
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                observed_generation: None,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_task_waiting_on_the_cluster_keeps_its_place_and_one_waiting_on_its_owner_does_not() {
        assert!(
            keeps_place(&kubetask_api::TaskStatus::default()),
            "not looked at yet"
        );
        for reason in TRANSIENT_WAITS {
            assert!(keeps_place(&waiting_for(reason)), "{reason}");
        }
        for reason in [
            reason::AGENT_NOT_FOUND,
            reason::CONFIG_MAP_NOT_FOUND,
            reason::CONFIG_MAP_KEY_NOT_FOUND,
            reason::INVALID_SPEC,
            reason::POLICY_DENIED,
            reason::FORBIDDEN,
            reason::REJECTED,
            reason::NAME_CONFLICT,
        ] {
            assert!(!keeps_place(&waiting_for(reason)), "{reason}");
        }
    }

    #[test]
    fn first_in_first_out_within_the_free_slots() {
        let mut waiting = vec![entry(3, "c"), entry(1, "a"), entry(2, "b"), entry(2, "a2")];
        assert_eq!(admit(2, 0, &mut waiting, "uid-a"), Admission::Admitted);
        assert_eq!(
            admit(2, 0, &mut waiting, "uid-a2"),
            Admission::Admitted,
            "same time: by name"
        );
        assert_eq!(
            admit(2, 0, &mut waiting, "uid-b"),
            Admission::Queued {
                position: 3,
                active: 0
            }
        );
        assert_eq!(
            admit(2, 1, &mut waiting, "uid-a2"),
            Admission::Queued {
                position: 2,
                active: 1
            }
        );
        assert_eq!(
            admit(2, 2, &mut waiting, "uid-a"),
            Admission::Queued {
                position: 1,
                active: 2
            },
            "no slot free"
        );
        assert_eq!(
            admit(2, 5, &mut waiting, "uid-a"),
            Admission::Queued {
                position: 1,
                active: 5
            },
            "over the limit (the limit was lowered)"
        );
    }
}
