//! `kubetask events` (the webhook receiver of TaskTriggers) and `kubetask trigger event`
//! (which Task an event would create, offline). docs/triggers.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::{LogFormat, emit};
use crate::triggers::{github, mapper, receiver};

#[derive(clap::Args)]
pub struct EventsArgs {
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Serve the TaskTriggers of this namespace only (default: all namespaces).
    #[arg(long)]
    namespace: Option<String>,
    /// Address deliveries are POSTed to (`/hooks/{namespace}/{trigger}`).
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8081")]
    metrics_address: SocketAddr,
    /// Largest body taken, in bytes (413 past it).
    #[arg(long, default_value_t = receiver::DEFAULT_MAX_BODY)]
    max_body_bytes: usize,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub(super) log_format: LogFormat,
}

/// Runs the receiver until SIGTERM.
pub fn run(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let options = receiver::Options {
        kubeconfig: args.kubeconfig,
        namespace: args.namespace,
        listen: args.listen,
        metrics_address: args.metrics_address,
        max_body: args.max_body_bytes,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(crate::triggers::run(options))?;
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct TriggerEventArgs {
    /// The TaskTrigger, as YAML.
    #[arg(short = 'f', long = "trigger")]
    trigger: PathBuf,
    /// The event's payload (a GitHub webhook body), as JSON.
    #[arg(long)]
    file: PathBuf,
    /// The event's type (`X-GitHub-Event`): issues, issue_comment, pull_request, ...
    #[arg(long)]
    event: String,
    /// The delivery's id (`X-GitHub-Delivery`), for the Task's annotation.
    #[arg(long, default_value = "offline")]
    delivery: String,
}

/// `kubetask trigger event`: prints the Task the event would create (as YAML), or why none.
pub fn trigger_event(args: TriggerEventArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.trigger)
        .with_context(|| format!("reading {}", args.trigger.display()))?;
    let trigger: kubetask_api::TaskTrigger = serde_yaml::from_str(&text)
        .with_context(|| format!("{}: not a TaskTrigger", args.trigger.display()))?;
    let body =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    if !trigger.spec.source.github.events.contains(&args.event) {
        anyhow::bail!(
            "{}: event {:?} is not one of spec.source.github.events {:?}",
            args.trigger.display(),
            args.event,
            trigger.spec.source.github.events
        );
    }
    let event = github::parse(&args.event, &body)
        .map_err(|message| anyhow::anyhow!("{}: {message}", args.file.display()))?;
    match mapper::map(&trigger, &event, &args.delivery) {
        mapper::Mapped::Task { task, .. } => {
            let yaml = serde_yaml::to_string(&task).context("encoding the Task")?;
            emit(&yaml)?;
            Ok(ExitCode::SUCCESS)
        }
        mapper::Mapped::Skip { reason, message } => {
            emit(&format!("skipped: {reason}: {message}\n"))?;
            Ok(ExitCode::from(2))
        }
    }
}
