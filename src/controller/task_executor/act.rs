//! Step 3, act: render and create the Job (and its ConfigMaps), stop an agent, write the status,
//! emit the Event, and say when to look again.

use super::*;

/// Stops the Job's agent, keeping its pod and logs: a bound pod's `activeDeadlineSeconds` is
/// lowered so the kubelet stops it with its grace period and keeps the pod; a pod not bound
/// to a node (it never ran) is deleted; the Job's `backoffLimit` is lowered to the failures it
/// has, so the stopped pod ends the Job without another attempt, and a Job-level deadline a
/// grace period later removes any pod created meanwhile. A Job with no pod yet is suspended.
async fn stop_agent(
    client: &kube::Client,
    namespace: &str,
    job: &Job,
    pods: &[Pod],
) -> Result<(), Failure> {
    let name = job.metadata.name.as_deref().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let now = k8s_openapi::jiff::Timestamp::now();
    let seconds_since =
        |time: Option<&Time>| time.map_or(0, |t| now.duration_since(t.0).as_secs().max(0));
    let mut longest_grace = 0;
    let mut live = 0;
    for pod in pods {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed"))
            || pod.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        live += 1;
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        longest_grace = longest_grace.max(spec.termination_grace_period_seconds.unwrap_or(30));
        let result = if spec.node_name.is_some() {
            let ran = seconds_since(pod.status.as_ref().and_then(|s| s.start_time.as_ref()));
            let deadline = ran.max(1);
            if spec.active_deadline_seconds.is_some_and(|d| d <= deadline) {
                continue;
            }
            pods_api
                .patch(
                    pod_name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"activeDeadlineSeconds": deadline}})),
                )
                .await
                .map(drop)
        } else {
            pods_api
                .delete(pod_name, &kube::api::DeleteParams::default())
                .await
                .map(drop)
        };
        match result {
            Ok(()) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => {
                return Err(Failure::from_api(
                    &error,
                    &format!("stop pod {pod_name:?} of Job {name:?} in namespace {namespace:?}"),
                ));
            }
        }
    }
    let failed = job.status.as_ref().and_then(|s| s.failed).unwrap_or(0);
    let started = seconds_since(job.status.as_ref().and_then(|s| s.start_time.as_ref()));
    let mut spec = json!({
        "backoffLimit": failed,
        "activeDeadlineSeconds": (started + longest_grace + 15).max(1),
    });
    if live == 0 {
        spec["suspend"] = json!(true);
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    match jobs
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(Failure::from_api(
            &error,
            &format!("stop Job {name:?} in namespace {namespace:?}"),
        )),
    }
}

/// Step 3a: render and create the Task's ConfigMaps and Job. Returns the new `start` and
/// updates the snapshot's child. A Task that got no Job gives its admission back.
pub(super) async fn create(
    this: Reconciling<'_>,
    agent: Option<Agent>,
    snapshot: &mut Snapshot,
) -> Result<Start, Error> {
    let start = render_and_create(this, agent, snapshot).await;
    if !matches!(start, Ok(Start::Created { .. })) {
        this.ctx.admitted.forget(this.uid);
    }
    start
}

async fn render_and_create(
    this: Reconciling<'_>,
    agent: Option<Agent>,
    snapshot: &mut Snapshot,
) -> Result<Start, Error> {
    let Reconciling {
        task,
        namespace,
        uid,
        ctx,
    } = this;
    let fingerprint = ctx.fingerprint(agent.as_ref());
    // Loading a plugin may compile it (seconds, once per digest) and rendering runs wasm:
    // both stay off the async workers.
    let registry = ctx.plugins.clone();
    let base = ctx.pipeline.clone();
    let to_render = task.clone();
    let started = Instant::now();
    let outcome = tokio::task::spawn_blocking(move || {
        let stages = registry.stages(agent.as_ref())?;
        Ok::<_, StageError>(base.extended(stages).render(&to_render, agent.as_ref()))
    })
    .await?;
    let mut rendered = match outcome {
        Ok(Ok(rendered)) => rendered,
        Ok(Err(error)) => {
            return Ok(ctx.failed(uid, Failure::from_render(&error), fingerprint));
        }
        Err(StageError::NotFound {
            agent,
            plugin,
            namespace,
        }) => {
            return Ok(Start::Waiting {
                reason: reason::PLUGIN_NOT_FOUND,
                message: format!(
                    "Agent {agent:?} spec.plugins: plugin {plugin:?} is not installed (no ConfigMap {plugin:?} labelled kubetask.io/plugin in namespace {namespace:?}); the Task starts when it is"
                ),
            });
        }
        Err(StageError::Unavailable(message)) => {
            return Ok(Start::Waiting {
                reason: reason::PLUGIN_UNAVAILABLE,
                message: format!(
                    "{message}; no Task is rendered without it (fail closed): the Task starts when it is fixed or removed"
                ),
            });
        }
    };
    ctx.metrics.render(started.elapsed().as_secs_f64());
    // What the Task's Budgets reserved for it is the most this run may spend: fixed on the
    // Job, where the gateway and the controller read it.
    let reserved = ctx
        .budget_caps
        .lock()
        .ok()
        .and_then(|mut caps| caps.remove(uid));
    if let Some(cap) = reserved {
        rendered
            .job
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(
                kubetask_api::budget::BUDGET_ANNOTATION.to_owned(),
                cap.to_annotation(),
            );
    }
    for warning in &rendered.warnings {
        publish(ctx, task, EventType::Normal, "RenderWarning", warning);
    }
    let task_name = task.name_any();
    let created = children::create(&ctx.client, namespace, &task_name, uid, &rendered).await;
    Ok(match created {
        Ok(Created::Owned(job)) => {
            ctx.wait_index.forget(&ObjectRef::from_obj(task.as_ref()));
            // A new Job has no pods: nothing to list until its status changes.
            if let Ok(mut seen) = ctx.seen_jobs.lock() {
                seen.insert(uid.to_owned(), JobCounts::of(&job));
            }
            snapshot.job = Child::Owned(Box::new(job));
            Start::Created {
                rendered_by: rendered
                    .plugins
                    .iter()
                    .map(|(name, digest)| PluginRef {
                        name: name.clone(),
                        digest: digest.clone(),
                    })
                    .collect(),
            }
        }
        Ok(Created::Conflict {
            kind,
            name,
            owner,
            previous,
        }) => {
            snapshot.job = if previous {
                Child::Previous { kind, name }
            } else {
                Child::Foreign { kind, name, owner }
            };
            Start::NotChecked
        }
        Err(children::CreateError { action, error }) => {
            ctx.failed(uid, Failure::from_api(&error, &action), fingerprint)
        }
    })
}

/// Settles a finished Task's reservations in its Budgets (those the cache shows holding one;
/// no request when none does) with what it spent: the gateway's meter, else what its agent
/// reported.
async fn settle_budgets(this: Reconciling<'_>, snapshot: &Snapshot) -> Result<(), Failure> {
    let Reconciling {
        task,
        namespace,
        uid,
        ctx,
    } = this;
    let Some((budgets, _)) = &ctx.budgets else {
        return Ok(());
    };
    let status = ctx.current_status(task, uid);
    if !status::is_finished(&status) {
        return Ok(());
    }
    let usage = match &snapshot.metered_usage {
        Some(metered) => Some(metered),
        None => status.usage.as_ref(),
    };
    budget_executor::settle(&ctx.client, budgets, task, uid, usage)
        .await
        .map_err(|error| {
            let action = format!(
                "settle the Budgets of the finished Task {:?} in namespace {namespace:?}",
                task.name_any()
            );
            Failure::from_api(&error, &action)
        })
}

/// Step 3b: write the status, emit the Event, and say when to look again.
pub(super) async fn act(this: Reconciling<'_>, snapshot: &Snapshot, plan: Plan) -> Action {
    let Reconciling {
        task,
        namespace,
        uid,
        ctx,
    } = this;
    let task: &Task = task;
    match &snapshot.start {
        Start::Failed { attempts, failure } => log_failure(task, *attempts, failure, ctx),
        Start::Blocked(_) => {}
        _ => ctx.attempts.succeeded(uid),
    }
    if plan.delete {
        let tasks: Api<Task> = Api::namespaced(ctx.client.clone(), namespace);
        let params = kube::api::DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..kube::api::DeleteParams::background()
        };
        return match tasks.delete(&task.name_any(), &params).await {
            Ok(_) => {
                publish(
                    ctx,
                    task,
                    EventType::Normal,
                    "Expired",
                    "deleted: its ttlSecondsAfterFinished has passed",
                );
                Action::await_change()
            }
            Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => {
                Action::await_change()
            }
            Err(error) => {
                let action = format!(
                    "delete the finished Task {:?} in namespace {namespace:?}",
                    task.name_any()
                );
                retry_after_failure(task, uid, &Failure::from_api(&error, &action), ctx)
            }
        };
    }
    if plan.stop.is_some()
        && let Child::Owned(job) = &snapshot.job
    {
        let pods = snapshot.pods.as_deref().unwrap_or_default();
        if let Err(failure) = stop_agent(&ctx.client, namespace, job, pods).await {
            return retry_after_failure(task, uid, &failure, ctx);
        }
    }
    if let Some(note) = &plan.report_warning {
        publish(ctx, task, EventType::Warning, &note.reason, &note.message);
    }
    if let Some(next) = plan.status {
        let tasks: Api<Task> = Api::namespaced(ctx.client.clone(), namespace);
        let mut patch = json!({"apiVersion": API_VERSION, "kind": "Task", "status": next});
        if ctx.metered {
            // The gateway's ledger: never applied by the controller, so never owned by it
            // (an apply with a stale copy would undo what the gateway counted since).
            if let Some(status) = patch["status"].as_object_mut() {
                status.remove("usage");
            }
        }
        let written = tasks
            .patch_status(
                &task.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(patch),
            )
            .await;
        if let Err(error) = written {
            let action = format!(
                "write the status of Task {:?} in namespace {namespace:?}",
                task.name_any()
            );
            return retry_after_failure(task, uid, &Failure::from_api(&error, &action), ctx);
        }
        ctx.remember(uid, next);
    }
    if let Err(failure) = settle_budgets(this, snapshot).await {
        return retry_after_failure(task, uid, &failure, ctx);
    }
    // What the pods showed is in the status now: list them again only when the Job changes.
    if snapshot.pods.is_some()
        && let Child::Owned(job) = &snapshot.job
        && let Ok(mut seen) = ctx.seen_jobs.lock()
    {
        seen.insert(uid.to_owned(), JobCounts::of(job));
    }
    if let Some(note) = plan.event {
        if note.warning {
            ctx.metrics.error(&note.reason);
        }
        let kind = if note.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        publish(ctx, task, kind, &note.reason, &note.message);
    }
    match plan.retry {
        Retry::OnChange => Action::await_change(),
        Retry::After(delay) => Action::requeue(delay),
        Retry::Backoff {
            attempts,
            retry_after,
        } => Action::requeue(failure::backoff(
            attempts,
            retry_after,
            ctx.attempts.jitter(uid, attempts),
        )),
    }
}
