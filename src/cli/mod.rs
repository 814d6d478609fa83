//! The `kubetask` command line: one file per command group. `main.rs` only calls [`run`].
//!
//! | command | file |
//! |---|---|
//! | `kubetask controller` | [`controller`] |
//! | `kubetask render` | [`render`] (files read by [`files`]) |
//! | `kubetask plugin check/pack/precompile` | [`plugin`] |
//! | `kubetask cancel/logs/result/trigger` | [`cluster`] |
//! | `kubetask exit` | [`exit`] |
//! | `kubetask canary` | [`canary`] |
//! | `kubetask gateway serve/key` | [`gateway`] |
//! | `kubetask crds` | here ([`crate::crds`] makes them) |

pub mod canary;
pub mod cluster;
pub mod controller;
pub mod events;
pub mod exit;
pub mod files;
pub mod gateway;
pub mod plugin;
pub mod render;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

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
    Controller(Box<controller::ControllerArgs>),
    /// Render Tasks into the Jobs and ConfigMaps the controller would create, with no cluster.
    Render(render::RenderArgs),
    /// Print the CustomResourceDefinitions of Task, Agent, CronTask, TaskTrigger and Budget.
    Crds,
    /// Tools for plugin authors: check a component, pack it as a ConfigMap.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Stop a Task: a pending one never starts, a running agent gets SIGTERM and its grace
    /// period; the Task ends Failed/Cancelled and its logs stay readable.
    Cancel(cluster::CancelArgs),
    /// Print the agent's log (the last attempt's agent container, or --attempt N).
    Logs(cluster::LogsArgs),
    /// Print what the agent reported (summary, outputs, usage) as JSON, once the Task finished.
    Result(cluster::ResultArgs),
    /// Start a run now.
    #[command(subcommand)]
    Trigger(cluster::TriggerCommand),
    /// Run the egress exit: the proxy agent pods connect through, which allows each Task only
    /// its own domains (docs/security.md).
    Exit(Box<exit::ExitArgs>),
    /// Run the webhook receiver of TaskTriggers: GitHub, GitLab and signed webhook deliveries become Tasks
    /// (docs/triggers.md).
    Events(Box<events::EventsArgs>),
    /// The model gateway (docs/budgets.md): agents' model calls metered on their
    /// way to the provider.
    #[command(subcommand)]
    Gateway(gateway::GatewayCommand),
    /// Probe an address a Task pod's egress policy denies and report whether it was reached
    /// (the egress canary's init container; docs/security.md).
    Canary(canary::CanaryArgs),
}

/// `--default-egress-mode` (of the controller and the exit).
#[derive(Clone, Copy, ValueEnum)]
pub enum EgressModeArg {
    #[value(name = "Deny")]
    Deny,
    #[value(name = "AllowList")]
    AllowList,
    #[value(name = "Open")]
    Open,
}

impl From<EgressModeArg> for kubetask_api::EgressMode {
    fn from(mode: EgressModeArg) -> Self {
        match mode {
            EgressModeArg::Deny => Self::Deny,
            EgressModeArg::AllowList => Self::AllowList,
            EgressModeArg::Open => Self::Open,
        }
    }
}

/// The flags every long-running command (controller, exit, events, gateway) shares.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Log line format.
#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Parses the command line, runs the command, and turns its error into a message on stderr.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Controller(args) => init_logging("info", args.server.log_format),
        Command::Exit(args) => init_logging("info", args.server.log_format),
        Command::Events(args) => init_logging("info", args.server.log_format),
        Command::Gateway(command) if command.log_format().is_some() => {
            init_logging("info", command.log_format().unwrap_or(LogFormat::Text))
        }
        Command::Render(render::RenderArgs { verbose, .. })
        | Command::Plugin(plugin::PluginCommand::Check(plugin::CheckArgs { verbose, .. })) => {
            init_logging(offline_log_level(*verbose), LogFormat::Text)
        }
        _ => init_logging("warn", LogFormat::Text),
    }
    let result = match cli.command {
        Command::Controller(args) => controller::run(*args),
        Command::Exit(args) => exit::run(*args),
        Command::Canary(args) => canary::run(args),
        Command::Events(args) => events::run(*args),
        Command::Gateway(command) => gateway::run(command),
        Command::Render(args) => render::run(args),
        Command::Plugin(command) => plugin::run(command),
        Command::Cancel(args) => cluster::cancel_command(args),
        Command::Logs(args) => cluster::logs_command(args),
        Command::Result(args) => cluster::result_command(args),
        Command::Trigger(command) => cluster::trigger_command(command),
        Command::Crds => crate::crds::yaml()
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

/// A `--max-task-timeout`-style duration (`30m`, `2h`).
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    kubetask_api::lifecycle::parse_duration(text).map_err(|e| e.to_string())
}

/// Writes to stdout; a closed stdout (`kubetask crds | head`) ends the output quietly.
pub(crate) fn emit(text: &str) -> anyhow::Result<()> {
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

/// Prints input errors, one per line, and fails.
fn report(errors: &[files::InputError]) -> ExitCode {
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

/// A component file's bytes (decompressed when it ends in `.gz`).
fn read_component(file: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    if file.extension().is_some_and(|e| e == "gz") {
        crate::plugin::source::gunzip(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
    } else {
        Ok(bytes)
    }
}

/// A plugin's name from its file: `site-policy.wasm.gz` is `site-policy`.
fn plugin_name_of(file: &Path) -> String {
    file.file_name()
        .and_then(|n| n.to_str())
        .map(|n| {
            n.trim_end_matches(".gz")
                .trim_end_matches(".wasm")
                .to_owned()
        })
        .unwrap_or_else(|| "plugin".to_owned())
}
