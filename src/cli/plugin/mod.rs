//! `kubetask plugin check|pack|precompile`: the tools of plugin authors and of `make plugins`.

pub mod check;
pub mod pack;

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Context as _;

use super::{emit, files, plugin_name_of, read_component, report};
use crate::plugin::{Limits, PluginHost, precompiled};
use crate::render::Settings;

#[derive(clap::Subcommand)]
pub enum PluginCommand {
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
pub struct PrecompileArgs {
    /// The component (.wasm).
    file: PathBuf,
    /// Where to write the artifact.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The component (.wasm, or gzip .wasm.gz).
    file: PathBuf,
    /// Tasks (and their Agents) to trial-render, as for `kubetask render -f`.
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    /// Show the plugins' log lines (`host.log`) on stderr; twice (`-vv`) for everything the
    /// host logs too, such as where each plugin was loaded from.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub(in crate::cli) verbose: u8,
}

#[derive(clap::Args)]
pub struct PackArgs {
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

/// Runs one `kubetask plugin` command.
pub fn run(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::Check(args) => check_command(args),
        PluginCommand::Pack(args) => pack_command(args),
        PluginCommand::Precompile(args) => precompile_command(args),
    }
}

fn check_command(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let (inputs, errors) = files::load(&args.files);
    if !errors.is_empty() {
        return Ok(report(&errors));
    }
    let bytes = read_component(&args.file)?;
    let host = Arc::new(PluginHost::new(Limits::default())?);
    let report = check::check(
        &host,
        &plugin_name_of(&args.file),
        &bytes,
        &inputs,
        &Settings::default(),
    );
    let mut text = format!("{}:\n", args.file.display());
    for finding in &report.findings {
        let tag = match finding.severity {
            check::Severity::Ok => "ok",
            check::Severity::Note => "note",
            check::Severity::Error => "error",
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

fn pack_command(args: PackArgs) -> anyhow::Result<ExitCode> {
    let bytes = read_component(&args.file)?;
    // Only a component the controller can load is worth installing.
    let host = PluginHost::new(Limits::default())?;
    let mut mapper = false;
    if let Err(message) = check::load_component(&host, &args.name, &bytes) {
        // A mapper plugin (TaskTriggers' `spec.mapper`) is not a render plugin.
        if bytes.starts_with(b"\0asm") && host.load_mapper(&args.name, &bytes).is_ok() {
            mapper = true;
            if args.policy_order.is_some() {
                anyhow::bail!(
                    "cannot pack {}: it is a mapper plugin (the event-mapper world), which a TaskTrigger names in spec.mapper; it cannot be a cluster policy (--policy)",
                    args.file.display()
                );
            }
        } else {
            anyhow::bail!("cannot pack {}: {message}", args.file.display());
        }
    }
    let yaml = pack::yaml(
        &bytes,
        &pack::PackOptions {
            name: args.name,
            namespace: args.namespace,
            policy_order: args.policy_order,
            mapper,
        },
    )
    .with_context(|| format!("cannot pack {}", args.file.display()))?;
    emit(&yaml)?;
    Ok(ExitCode::SUCCESS)
}

/// Compiles a component ahead of time (how `make plugins` makes the built-in artifact).
fn precompile_command(args: PrecompileArgs) -> anyhow::Result<ExitCode> {
    let component = read_component(&args.file)?;
    let artifact = precompiled::precompile(&component)
        .with_context(|| format!("cannot precompile {}", args.file.display()))?;
    std::fs::write(&args.output, artifact)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    Ok(ExitCode::SUCCESS)
}
