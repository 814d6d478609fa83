//! `kubetask events` (the webhook receiver of TaskTriggers) and `kubetask trigger event`
//! (which Task an event would create, offline). docs/triggers.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::{ServerArgs, emit};
use kubetask_api::task_trigger::SourceKind;

use crate::triggers::event::Provider;
use crate::triggers::{mapper, mapper_plugin, receiver};

#[derive(clap::Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub(super) server: ServerArgs,
    /// Serve the TaskTriggers of this namespace only (default: all namespaces).
    #[arg(long)]
    namespace: Option<String>,
    /// Address deliveries are POSTed to (`/hooks/{namespace}/{trigger}`).
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8081")]
    metrics_address: SocketAddr,
    /// The namespace of the mapper plugins' ConfigMaps (the controller's).
    #[arg(long, env = "POD_NAMESPACE", default_value = "kubetask-system")]
    plugin_namespace: String,
    /// Largest body taken, in bytes (413 past it).
    #[arg(long, default_value_t = receiver::DEFAULT_MAX_BODY)]
    max_body_bytes: usize,
}

/// Runs the receiver until SIGTERM.
pub fn run(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let options = receiver::Options {
        kubeconfig: args.server.kubeconfig,
        namespace: args.namespace,
        listen: args.listen,
        metrics_address: args.metrics_address,
        plugin_namespace: args.plugin_namespace,
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
    /// The event's payload (the webhook's body), as JSON.
    #[arg(long)]
    file: PathBuf,
    /// The event's type: GitHub's `X-GitHub-Event` (issues, issue_comment, pull_request, ...),
    /// GitLab's `X-Gitlab-Event` (`Issue Hook`, `Note Hook`, `Merge Request Hook`); none for a
    /// generic webhook.
    #[arg(long)]
    event: Option<String>,
    /// The delivery's id, for the Task's annotation.
    #[arg(long, default_value = "offline")]
    delivery: String,
    /// GitLab: the actor's role as `spec.filter.authorAssociation` counts it (OWNER, MEMBER,
    /// CONTRIBUTOR, NONE). The receiver reads it from GitLab's API; offline it is NONE unless
    /// given.
    #[arg(long, default_value = "NONE")]
    actor_association: String,
    /// GitHub, with `spec.checkout: PullRequest`: the branch of the pull request a comment is
    /// on (a comment's payload does not say it; the receiver reads it from GitHub's API).
    #[arg(long)]
    pull_request_branch: Option<String>,
    /// Decide with this mapper plugin (a `.wasm` component of the event-mapper world), as
    /// `spec.mapper` would, in the same sandbox.
    #[arg(long)]
    mapper: Option<PathBuf>,
}

/// `kubetask trigger event`: prints the Task the event would create (as YAML), or why none.
/// Signatures are not checked (there is no secret offline).
pub fn trigger_event(args: TriggerEventArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.trigger)
        .with_context(|| format!("reading {}", args.trigger.display()))?;
    let trigger: kubetask_api::TaskTrigger = serde_yaml::from_str(&text)
        .with_context(|| format!("{}: not a TaskTrigger", args.trigger.display()))?;
    let body =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let mut headers = hyper::HeaderMap::new();
    let header = match trigger.spec.source.kind() {
        Some(SourceKind::GitHub(_)) => Some("x-github-event"),
        Some(SourceKind::GitLab(_)) => Some("x-gitlab-event"),
        Some(SourceKind::Webhook(_)) => None,
        None => anyhow::bail!(
            "{}: spec.source sets none of github, gitlab and webhook",
            args.trigger.display()
        ),
    };
    if let Some(name) = header {
        let Some(event) = &args.event else {
            anyhow::bail!("--event is needed: the {name} header the event would come with");
        };
        let value = match trigger.spec.source.kind() {
            Some(SourceKind::GitLab(_)) => gitlab_header(event),
            _ => event.clone(),
        };
        headers.insert(
            name,
            value
                .parse()
                .with_context(|| format!("--event {event:?} is not a header value"))?,
        );
    }
    let delivery = receiver::Delivery {
        headers,
        body: body.into(),
    };
    let mut event = match receiver::parse(&trigger, &delivery, None) {
        Ok(receiver::Parsed::Event(event)) => *event,
        Ok(receiver::Parsed::Ping) => {
            emit("skipped: Ping: a webhook's ping makes no Task\n")?;
            return Ok(ExitCode::from(2));
        }
        Err((_, "EventNotTaken", message)) => {
            anyhow::bail!("{}: {message}", args.trigger.display())
        }
        Err((_, _, message)) => anyhow::bail!("{}: {message}", args.file.display()),
    };
    if event.provider == Provider::GitLab {
        event.set_actor_association(&args.actor_association);
    }
    if let Some(branch) = args.pull_request_branch
        && event.pull_request
        && event.head_fork.is_none()
    {
        event.branch = Some(branch);
        event.head_fork = Some(false);
    }
    let mapped = match &args.mapper {
        None => mapper::map(&trigger, &event, &args.delivery),
        Some(path) => with_plugin(path, &trigger, &event, &delivery.body, &args.delivery)?,
    };
    match mapped {
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

/// What the mapper plugin at `path` makes of `event`, as the receiver runs it.
fn with_plugin(
    path: &std::path::Path,
    trigger: &kubetask_api::TaskTrigger,
    event: &crate::triggers::event::Event,
    payload: &[u8],
    delivery: &str,
) -> anyhow::Result<mapper::Mapped> {
    let (draft, key, filtered) = match mapper::decide(trigger, event, delivery) {
        mapper::Decision::Refused(mapped) => return Ok(mapped),
        mapper::Decision::Drafted {
            task,
            key,
            filtered,
        } => (task, key, filtered),
    };
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let host = crate::plugin::PluginHost::new(crate::plugin::Limits::default())?;
    let name = path
        .file_stem()
        .map_or("mapper".into(), |s| s.to_string_lossy());
    let plugin = host
        .load_mapper(&name, &bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let request = mapper_plugin::request(trigger, event, payload, &draft, filtered);
    let outcome = host
        .map_event(&plugin, &request)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(mapper::apply_plugin(
        &draft,
        &key,
        mapper_plugin::outcome_of(outcome),
    ))
}

/// GitLab's header for an event named by its kind (`issue`) or by the header itself.
fn gitlab_header(event: &str) -> String {
    match event {
        "issue" => "Issue Hook".to_owned(),
        "note" => "Note Hook".to_owned(),
        "merge_request" => "Merge Request Hook".to_owned(),
        other => other.to_owned(),
    }
}
