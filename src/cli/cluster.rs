//! The commands that act on a Task in a cluster: `kubetask cancel`, `logs`, `result` and
//! `trigger cron`. They
//! use kubectl's conventions (kubeconfig, `--context`, `-n/--namespace`, the context's
//! namespace by default), so the same binary works as a kubectl plugin (`kubectl kubetask …`
//! when installed or linked as `kubectl-kubetask`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams, PostParams};
use kubetask_api::{CronTask, Task, TaskPhase};
use serde_json::json;

use super::emit;
use crate::controller::status;
use crate::render::lifecycle::AGENT_CONTAINER;

/// Where the Task is: the kubeconfig and namespace flags every command takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Target {
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster account).
    #[arg(long, env = "KUBECONFIG", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The Task's namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
}

impl Target {
    /// A client and the namespace to use.
    pub async fn connect(&self) -> anyhow::Result<(kube::Client, String)> {
        let config =
            crate::client::config(self.kubeconfig.as_deref(), self.context.as_deref()).await?;
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        Ok((kube::Client::try_from(config)?, namespace))
    }
}

#[derive(clap::Subcommand)]
pub enum TriggerCommand {
    /// Create one Task from a CronTask's template now (it shows in the CronTask's history),
    /// whatever its schedule, suspension and concurrency policy say.
    Cron(TriggerArgs),
    /// Show, offline, the Task a TaskTrigger would create for an event (or why none).
    Event(super::events::TriggerEventArgs),
}

#[derive(clap::Args)]
pub struct TriggerArgs {
    /// The CronTask's name.
    cron_task: String,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Args)]
pub struct CancelArgs {
    /// The Task's name.
    task: String,
    /// Why (shown in the Task's condition).
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Args)]
pub struct LogsArgs {
    /// The Task's name.
    task: String,
    /// Keep streaming while the agent runs.
    #[arg(short = 'f', long)]
    follow: bool,
    /// The attempt to show (1 is the first; default: the last).
    #[arg(long)]
    attempt: Option<usize>,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Args)]
pub struct ResultArgs {
    /// The Task's name.
    task: String,
    #[command(flatten)]
    target: Target,
}

/// Runs a command that talks to the cluster.
fn on_cluster(command: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(command)?;
    Ok(ExitCode::SUCCESS)
}

/// `kubetask cancel`.
pub fn cancel_command(args: CancelArgs) -> anyhow::Result<ExitCode> {
    on_cluster(async move {
        let said = cancel(&args.target, &args.task, args.reason.as_deref()).await?;
        emit(&format!("{said}\n"))
    })
}

/// `kubetask logs`.
pub fn logs_command(args: LogsArgs) -> anyhow::Result<ExitCode> {
    on_cluster(async move { logs(&args.target, &args.task, args.follow, args.attempt).await })
}

/// `kubetask result`.
pub fn result_command(args: ResultArgs) -> anyhow::Result<ExitCode> {
    on_cluster(async move { emit(&format!("{}\n", result(&args.target, &args.task).await?)) })
}

/// `kubetask trigger cron`.
pub fn trigger_command(command: TriggerCommand) -> anyhow::Result<ExitCode> {
    match command {
        TriggerCommand::Cron(args) => on_cluster(async move {
            let said = trigger_cron(&args.target, &args.cron_task).await?;
            emit(&format!("{said}\n"))
        }),
        TriggerCommand::Event(args) => super::events::trigger_event(args),
    }
}

async fn get_task(tasks: &Api<Task>, name: &str, namespace: &str) -> anyhow::Result<Task> {
    match tasks.get_opt(name).await {
        Ok(Some(task)) => Ok(task),
        Ok(None) => bail!("Task {name:?} not found in namespace {namespace:?}"),
        Err(error) => Err(error).with_context(|| format!("reading Task {name:?}")),
    }
}

/// `kubetask cancel TASK [--reason TEXT]`: sets `spec.cancel`.
pub async fn cancel(target: &Target, name: &str, reason: Option<&str>) -> anyhow::Result<String> {
    let (client, namespace) = target.connect().await?;
    let tasks: Api<Task> = Api::namespaced(client, &namespace);
    let task = get_task(&tasks, name, &namespace).await?;
    let status = task.status.clone().unwrap_or_default();
    if status::is_finished(&status) {
        let phase = status.phase.map_or("finished", TaskPhase::as_str);
        return Ok(format!(
            "Task {name:?} has already finished ({phase}); nothing to cancel"
        ));
    }
    if task.spec.cancel.is_some() {
        return Ok(format!("Task {name:?} is already being cancelled"));
    }
    let cancel = match reason {
        Some(reason) => json!({"reason": reason}),
        None => json!({}),
    };
    tasks
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cancel": cancel}})),
        )
        .await
        .with_context(|| format!("cancelling Task {name:?}"))?;
    Ok(format!("task.kubetask.io/{name} cancelled"))
}

/// `kubetask trigger cron NAME`: creates one run of the CronTask now, from its template,
/// named `<name>-manual-<seconds>`, annotated `kubetask.io/trigger: manual` and owned by the
/// CronTask (so it shows in its status and history), whatever its schedule, suspension and
/// concurrency policy say.
pub async fn trigger_cron(target: &Target, name: &str) -> anyhow::Result<String> {
    let (client, namespace) = target.connect().await?;
    let cron_tasks: Api<CronTask> = Api::namespaced(client.clone(), &namespace);
    let cron_task = match cron_tasks.get_opt(name).await {
        Ok(Some(cron_task)) => cron_task,
        Ok(None) => bail!("CronTask {name:?} not found in namespace {namespace:?}"),
        Err(error) => return Err(error).with_context(|| format!("reading CronTask {name:?}")),
    };
    let run_name = crate::cron::manual_name(name, jiff::Timestamp::now());
    crate::cron::check_name(&run_name)?;
    let task =
        crate::cron::task_for_run(&cron_task, run_name.clone(), crate::cron::Trigger::Manual);
    let tasks: Api<Task> = Api::namespaced(client, &namespace);
    match tasks.create(&PostParams::default(), &task).await {
        Ok(_) => Ok(format!("task.kubetask.io/{run_name} created")),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            bail!("Task {run_name:?} exists already (triggered within the same second): try again")
        }
        Err(error) => Err(error).with_context(|| format!("creating Task {run_name:?}")),
    }
}

/// `kubetask result TASK`: the agent's report (`summary`, `outputs`, `usage`) with the phase
/// and reason, and the pull request and branch its workspace published, as JSON. Fails while
/// the Task has not finished.
pub async fn result(target: &Target, name: &str) -> anyhow::Result<String> {
    let (client, namespace) = target.connect().await?;
    let tasks: Api<Task> = Api::namespaced(client, &namespace);
    let task = get_task(&tasks, name, &namespace).await?;
    let status = task.status.unwrap_or_default();
    if !status::is_finished(&status) {
        let phase = status.phase.map_or("Pending", TaskPhase::as_str);
        bail!("Task {name:?} is {phase}: it has no result until it finishes");
    }
    let reason = status::condition_reason(&status).map(str::to_owned);
    let result = status.result.unwrap_or_default();
    let mut report = json!({
        "phase": status.phase.map(TaskPhase::as_str),
        "reason": reason,
        "summary": result.summary,
        "outputs": result.outputs,
        "usage": status.usage,
    });
    // What the workspace's publish step did (docs/workspaces.md).
    if let Some(pull_request) = result.pull_request {
        report["pullRequest"] = json!(pull_request);
    }
    if let Some(published) = status.workspace.and_then(|w| w.published) {
        report["branch"] = json!(published.branch);
    }
    Ok(serde_json::to_string_pretty(&report)?)
}

/// `kubetask logs TASK [-f] [--attempt N]`: the agent container's log of the last attempt (or
/// attempt N, from 1), written to stdout.
pub async fn logs(
    target: &Target,
    name: &str,
    follow: bool,
    attempt: Option<usize>,
) -> anyhow::Result<()> {
    let (client, namespace) = target.connect().await?;
    let tasks: Api<Task> = Api::namespaced(client.clone(), &namespace);
    let task = get_task(&tasks, name, &namespace).await?;
    let status = task.status.unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let pod = match attempt {
        Some(n) => match n.checked_sub(1).and_then(|i| status.attempts.get(i)) {
            Some(attempt) => attempt.pod_name.clone(),
            None => bail!(
                "Task {name:?} has {} attempt(s); there is no attempt {n}",
                status.attempts.len()
            ),
        },
        None => latest_pod(&pods, &status).await?.with_context(|| {
            format!(
                "Task {name:?} has no agent pod yet (phase {:?})",
                status.phase
            )
        })?,
    };
    let params = LogParams {
        container: Some(AGENT_CONTAINER.to_owned()),
        follow,
        ..LogParams::default()
    };
    let mut lines = pods
        .log_stream(&pod, &params)
        .await
        .with_context(|| format!("reading the log of pod {pod:?}"))?
        .lines();
    let mut stdout = std::io::stdout().lock();
    while let Some(line) = lines.try_next().await? {
        if writeln!(stdout, "{line}").is_err() {
            // stdout closed (e.g. `| head`): stop quietly.
            return Ok(());
        }
    }
    Ok(())
}

/// The pod of the newest attempt: from the Job's pods (the newest), else the last recorded.
async fn latest_pod(
    pods: &Api<Pod>,
    status: &kubetask_api::TaskStatus,
) -> anyhow::Result<Option<String>> {
    if let Some(job) = &status.job_name {
        let listed = pods
            .list(&ListParams::default().labels(&kubetask_api::naming::job_pods_selector(job)))
            .await
            .context("listing the Job's pods")?;
        let newest = listed.items.into_iter().max_by_key(|p| {
            (
                p.metadata.creation_timestamp.clone(),
                p.metadata.name.clone(),
            )
        });
        if let Some(pod) = newest.and_then(|p| p.metadata.name) {
            return Ok(Some(pod));
        }
    }
    Ok(status.attempts.last().map(|a| a.pod_name.clone()))
}
