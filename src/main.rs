//! The `kubetask` command: the controller, offline rendering and CRD generation.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use kubetask::{
    cluster_commands,
    controller::{self, LeaseOptions},
    crds, inputs, offline,
    plugin::{self, Limits, PluginHost},
    render::{LifecycleSettings, Pipeline, Settings},
};
use kubetask_api::DEFAULT_AGENT_IMAGE;

/// Run AI agents on Kubernetes: Tasks become Jobs, shaped by sandboxed WebAssembly plugins.
#[derive(Parser)]
#[command(name = "kubetask", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller: reconcile Tasks into Jobs on a cluster.
    Controller(Box<ControllerArgs>),
    /// Render Tasks into the Jobs and ConfigMaps the controller would create, with no cluster.
    Render(RenderArgs),
    /// Print the CustomResourceDefinitions of Task, Agent and CronTask.
    Crds,
    /// Tools for plugin authors: check a component, pack it as a ConfigMap.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Stop a Task: a pending one never starts, a running agent gets SIGTERM and its grace
    /// period; the Task ends Failed/Cancelled and its logs stay readable.
    Cancel(CancelArgs),
    /// Print the agent's log (the last attempt's agent container, or --attempt N).
    Logs(LogsArgs),
    /// Print what the agent reported (summary, outputs, usage) as JSON, once the Task finished.
    Result(ResultArgs),
    /// Start a run now.
    #[command(subcommand)]
    Trigger(TriggerCommand),
}

#[derive(Subcommand)]
enum TriggerCommand {
    /// Create one Task from a CronTask's template now (it shows in the CronTask's history),
    /// whatever its schedule, suspension and concurrency policy say.
    Cron(TriggerArgs),
}

#[derive(clap::Args)]
struct TriggerArgs {
    /// The CronTask's name.
    cron_task: String,
    #[command(flatten)]
    target: cluster_commands::Target,
}

#[derive(clap::Args)]
struct CancelArgs {
    /// The Task's name.
    task: String,
    /// Why (shown in the Task's condition).
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    target: cluster_commands::Target,
}

#[derive(clap::Args)]
struct LogsArgs {
    /// The Task's name.
    task: String,
    /// Keep streaming while the agent runs.
    #[arg(short = 'f', long)]
    follow: bool,
    /// The attempt to show (1 is the first; default: the last).
    #[arg(long)]
    attempt: Option<usize>,
    #[command(flatten)]
    target: cluster_commands::Target,
}

#[derive(clap::Args)]
struct ResultArgs {
    /// The Task's name.
    task: String,
    #[command(flatten)]
    target: cluster_commands::Target,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Check a plugin component: is it a component, which world and version it implements,
    /// what it imports, and a trial render of Tasks (a built-in sample, or those of -f).
    Check(CheckArgs),
    /// Print the ConfigMap that installs a plugin (gzip when smaller, pinned by sha256).
    Pack(PackArgs),
    /// Compile the built-in default plugin ahead of time (`make plugins` runs it; CI checks
    /// that the committed artifact is what this prints).
    #[command(hide = true)]
    Precompile(PrecompileArgs),
}

#[derive(clap::Args)]
struct PrecompileArgs {
    /// The component (.wasm).
    file: PathBuf,
    /// Where to write the artifact.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
}

#[derive(clap::Args)]
struct CheckArgs {
    /// The component (.wasm, or gzip .wasm.gz).
    file: PathBuf,
    /// Tasks (and their Agents) to trial-render, as for `kubetask render -f`.
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    /// Show the plugins' log lines (`host.log`) on stderr; twice (`-vv`) for everything the
    /// host logs too, such as where each plugin was loaded from.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(clap::Args)]
struct PackArgs {
    /// The component (.wasm, or gzip .wasm.gz).
    file: PathBuf,
    /// The plugin's name: the ConfigMap's name, and what Agents list in spec.plugins.
    #[arg(long)]
    name: String,
    /// Make it a cluster policy, run for every Task in this order (lower first).
    #[arg(long = "policy", value_name = "ORDER", allow_negative_numbers = true)]
    policy_order: Option<i64>,
    /// The controller's namespace (plugins elsewhere are never loaded).
    #[arg(long, default_value = "kubetask-system")]
    namespace: String,
}

#[derive(clap::Args)]
struct RenderArgs {
    /// YAML/JSON file (multi-document allowed) or directory of them with Tasks, Agents and
    /// installed plugins (the ConfigMaps `kubetask plugin pack` prints): each Task is rendered
    /// by its Agent's `spec.plugins` and the cluster policies among them, as the controller does.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Yaml)]
    output: Format,
    /// Agent image for Tasks whose Agent sets none.
    #[arg(long, default_value = DEFAULT_AGENT_IMAGE)]
    default_agent_image: String,
    /// The controller's namespace: plugin ConfigMaps elsewhere are ignored, as the controller
    /// ignores them.
    #[arg(long, default_value = "kubetask-system")]
    controller_namespace: String,
    /// A render plugin component (.wasm, or gzip .wasm.gz) to run after the Agent's plugins,
    /// for every Task (repeatable, in order). Named after its file.
    #[arg(long = "plugin", value_name = "FILE")]
    plugins: Vec<PathBuf>,
    /// A policy plugin component to run last, after the installed cluster policies, for every
    /// Task (repeatable, in order).
    #[arg(long = "policy", value_name = "FILE")]
    policies: Vec<PathBuf>,
    /// Where compiled plugins are kept between runs (default: ~/.cache/kubetask/plugins).
    #[arg(long, env = "KUBETASK_PLUGIN_CACHE_DIR")]
    plugin_cache_dir: Option<PathBuf>,
    /// The controller's --max-task-timeout, to render what it would create.
    #[arg(long, value_parser = parse_duration)]
    max_task_timeout: Option<Duration>,
    /// Show the plugins' log lines (`host.log`) on stderr; twice (`-vv`) for everything the
    /// host logs too, such as where each plugin was loaded from.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(clap::Args)]
struct ControllerArgs {
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Watch Tasks in this namespace only (default: all namespaces).
    #[arg(long)]
    namespace: Option<String>,
    /// The namespace the controller runs in (plugins and the leader Lease live there).
    #[arg(long, env = "POD_NAMESPACE", default_value = "kubetask-system")]
    controller_namespace: String,
    /// Agent image for Tasks whose Agent sets none.
    #[arg(long, default_value = DEFAULT_AGENT_IMAGE)]
    default_agent_image: String,
    /// Elect a leader on a Lease so that only one replica acts.
    #[arg(long)]
    leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(long, default_value = "kubetask-controller")]
    lease_name: String,
    /// Seconds a leader's lease is valid after its last renewal; a standby takes over after it.
    #[arg(long, default_value_t = 15)]
    lease_duration_seconds: u64,
    /// Seconds before expiry the leader renews its lease.
    #[arg(long, default_value_t = 5)]
    lease_renew_grace_seconds: u64,
    /// This replica's identity in the Lease (default: $POD_NAME, else host name and pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_address: SocketAddr,
    /// Tasks reconciled at once (at least 1).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Memory limit of one plugin call, in MiB.
    #[arg(long, default_value_t = 64)]
    plugin_memory_mib: usize,
    /// Wall-clock deadline of one plugin call, in milliseconds.
    #[arg(long, default_value_t = 500)]
    plugin_timeout_ms: u64,
    /// Largest output of one plugin call, in KiB.
    #[arg(long, default_value_t = 4096)]
    plugin_output_kib: usize,
    /// Keep compiled plugins in this directory (an emptyDir in the Deployment), so that a
    /// restart or a fail-over does not compile them again.
    #[arg(long, env = "KUBETASK_PLUGIN_CACHE_DIR")]
    plugin_cache_dir: Option<PathBuf>,
    /// No Task runs longer than this (`30m`, `2h`), whatever its timeout says.
    #[arg(long, value_parser = parse_duration)]
    max_task_timeout: Option<Duration>,
    /// Delete finished Tasks this many seconds after they finished, unless the Task or its
    /// Agent sets `ttlSecondsAfterFinished` (default: keep them).
    #[arg(long)]
    default_ttl_seconds_after_finished: Option<u64>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Tests only: CronTask schedules read "now" from this file (an RFC 3339 time) instead of
    /// the system clock.
    #[arg(long, hide = true)]
    test_clock_file: Option<PathBuf>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    kubetask_api::lifecycle::parse_duration(text).map_err(|e| e.to_string())
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Yaml,
    Json,
}

fn init_logging(default_level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_level.into());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// The log filter of an offline command run with `-v` this many times (`RUST_LOG` wins).
fn offline_log_level(verbose: u8) -> &'static str {
    match verbose {
        0 => "warn",
        1 => "warn,plugin=debug",
        _ => "debug",
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Controller(args) => init_logging("info", args.log_format),
        Command::Render(RenderArgs { verbose, .. })
        | Command::Plugin(PluginCommand::Check(CheckArgs { verbose, .. })) => {
            init_logging(offline_log_level(*verbose), LogFormat::Text)
        }
        _ => init_logging("warn", LogFormat::Text),
    }
    let result = match cli.command {
        Command::Controller(args) => run_controller(*args),
        Command::Render(args) => render(args),
        Command::Plugin(PluginCommand::Check(args)) => check_plugin(args),
        Command::Plugin(PluginCommand::Pack(args)) => pack_plugin(args),
        Command::Plugin(PluginCommand::Precompile(args)) => precompile_plugin(args),
        Command::Cancel(args) => on_cluster(async move {
            let said =
                cluster_commands::cancel(&args.target, &args.task, args.reason.as_deref()).await?;
            emit(&format!("{said}\n"))?;
            Ok(())
        }),
        Command::Logs(args) => on_cluster(async move {
            cluster_commands::logs(&args.target, &args.task, args.follow, args.attempt).await
        }),
        Command::Result(args) => on_cluster(async move {
            emit(&format!(
                "{}\n",
                cluster_commands::result(&args.target, &args.task).await?
            ))?;
            Ok(())
        }),
        Command::Trigger(TriggerCommand::Cron(args)) => on_cluster(async move {
            let said = cluster_commands::trigger_cron(&args.target, &args.cron_task).await?;
            emit(&format!("{said}\n"))?;
            Ok(())
        }),
        Command::Crds => crds::yaml()
            .context("cannot encode the CRDs")
            .and_then(|yaml| emit(&yaml).map(|()| ExitCode::SUCCESS)),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Compiles a component ahead of time (how `make plugins` makes the built-in artifact).
fn precompile_plugin(args: PrecompileArgs) -> anyhow::Result<ExitCode> {
    let component = read_component(&args.file)?;
    let artifact = plugin::precompiled::precompile(&component)
        .with_context(|| format!("cannot precompile {}", args.file.display()))?;
    std::fs::write(&args.output, artifact)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// Runs a command that talks to the cluster.
fn on_cluster(
    command: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(command)?;
    Ok(ExitCode::SUCCESS)
}

fn run_controller(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "kubetask".to_owned());
        format!("{host}-{}", std::process::id())
    });
    let lease = args.leader_elect.then(|| LeaseOptions {
        name: args.lease_name.clone(),
        namespace: args.controller_namespace.clone(),
        identity,
        duration: Duration::from_secs(args.lease_duration_seconds),
        grace: Duration::from_secs(args.lease_renew_grace_seconds),
    });
    let options = controller::Options {
        kubeconfig: args.kubeconfig,
        namespace: args.namespace,
        settings: Settings {
            default_agent_image: args.default_agent_image,
            controller_namespace: args.controller_namespace,
        },
        lease,
        metrics_address: args.metrics_address,
        concurrency: args.concurrency,
        limits: Limits {
            memory_bytes: args.plugin_memory_mib * 1024 * 1024,
            deadline: Duration::from_millis(args.plugin_timeout_ms),
            output_bytes: args.plugin_output_kib * 1024,
        },
        plugin_cache_dir: args.plugin_cache_dir,
        lifecycle: LifecycleSettings {
            max_task_timeout: args.max_task_timeout,
            default_ttl: args
                .default_ttl_seconds_after_finished
                .map(Duration::from_secs),
        },
        clock: args
            .test_clock_file
            .map_or(kubetask::cron::Clock::System, kubetask::cron::Clock::File),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(controller::run(options))?;
    Ok(ExitCode::SUCCESS)
}

fn render(args: RenderArgs) -> anyhow::Result<ExitCode> {
    let (mut inputs, mut errors) = inputs::load(&args.files);
    // A CronTask renders as the Task it creates next.
    errors.extend(inputs.schedule_runs(jiff::Timestamp::now()));
    if !errors.is_empty() {
        return Ok(report(&errors));
    }
    if inputs.tasks.is_empty() && inputs.cron_runs.is_empty() {
        anyhow::bail!(
            "no Task or CronTask found in {}",
            display_paths(&args.files)
        );
    }
    let mut host = PluginHost::new(Limits::default())?;
    // A cache that cannot be used only costs a compilation.
    if let Some(cache) = args
        .plugin_cache_dir
        .or_else(plugin::ArtifactCache::user_dir)
        .and_then(|dir| plugin::ArtifactCache::new(dir).ok())
    {
        host = host.with_artifact_cache(cache);
    }
    let host = Arc::new(host);
    let settings = Settings {
        default_agent_image: args.default_agent_image,
        controller_namespace: args.controller_namespace,
    };
    let mut extra = offline::Extra::default();
    for file in &args.plugins {
        extra.plugins.push(load_plugin(&host, file)?);
    }
    for file in &args.policies {
        extra.policies.push(load_plugin(&host, file)?);
    }
    let controller_namespace = settings.controller_namespace.clone();
    let pipeline = Pipeline::new(host.clone(), settings)
        .context("cannot load the built-in default plugin")?
        .with_lifecycle(LifecycleSettings {
            max_task_timeout: args.max_task_timeout,
            default_ttl: None,
        });
    let output = match offline::render_all(&pipeline, &host, &inputs, &extra, &controller_namespace)
    {
        Ok(output) => output,
        Err(errors) => return Ok(report(&errors)),
    };
    for warning in &output.warnings {
        eprintln!("warning: {warning}");
    }
    let text = match args.output {
        Format::Yaml => offline::to_yaml_stream(&output.objects)?,
        Format::Json => offline::to_json_list(&output.objects)? + "\n",
    };
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn check_plugin(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let (inputs, errors) = inputs::load(&args.files);
    if !errors.is_empty() {
        return Ok(report(&errors));
    }
    let bytes = read_component(&args.file)?;
    let host = Arc::new(PluginHost::new(Limits::default())?);
    let report = plugin::check::check(
        &host,
        &plugin_name_of(&args.file),
        &bytes,
        &inputs,
        &Settings::default(),
    );
    let mut text = format!("{}:\n", args.file.display());
    for finding in &report.findings {
        let tag = match finding.severity {
            plugin::check::Severity::Ok => "ok",
            plugin::check::Severity::Note => "note",
            plugin::check::Severity::Error => "error",
        };
        text.push_str(&format!("  {tag}: {}\n", finding.text));
    }
    emit(&text)?;
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn pack_plugin(args: PackArgs) -> anyhow::Result<ExitCode> {
    let bytes = read_component(&args.file)?;
    // Only a component the controller can load is worth installing.
    let host = PluginHost::new(Limits::default())?;
    if let Err(message) = plugin::check::load_component(&host, &args.name, &bytes) {
        anyhow::bail!("cannot pack {}: {message}", args.file.display());
    }
    let yaml = plugin::pack::yaml(
        &bytes,
        &plugin::pack::PackOptions {
            name: args.name,
            namespace: args.namespace,
            policy_order: args.policy_order,
        },
    )
    .with_context(|| format!("cannot pack {}", args.file.display()))?;
    emit(&yaml)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes to stdout; a closed stdout (`kubetask crds | head`) ends the output quietly.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(error).context("writing to stdout")
        }
        _ => Ok(()),
    }
}

/// A component file's bytes (decompressed when it ends in `.gz`).
fn read_component(file: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    if file.extension().is_some_and(|e| e == "gz") {
        plugin::source::gunzip(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
    } else {
        Ok(bytes)
    }
}

/// A plugin's name from its file: `site-policy.wasm.gz` is `site-policy`.
fn plugin_name_of(file: &std::path::Path) -> String {
    file.file_name()
        .and_then(|n| n.to_str())
        .map(|n| {
            n.trim_end_matches(".gz")
                .trim_end_matches(".wasm")
                .to_owned()
        })
        .unwrap_or_else(|| "plugin".to_owned())
}

/// Loads a plugin component from a file (gzip when it ends in `.gz`).
fn load_plugin(
    host: &PluginHost,
    file: &std::path::Path,
) -> anyhow::Result<kubetask::plugin::Plugin> {
    let bytes = read_component(file)?;
    host.load(&plugin_name_of(file), &bytes)
        .with_context(|| format!("cannot load {}", file.display()))
}

fn report(errors: &[inputs::InputError]) -> ExitCode {
    for error in errors {
        eprintln!("error: {error}");
    }
    ExitCode::FAILURE
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
