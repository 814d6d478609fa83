//! The `kubetask` command: offline rendering and CRD generation.

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use kubetask::{
    crds, inputs, offline,
    plugin::{Limits, PluginHost},
    render::{Pipeline, Settings},
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
    /// Render Tasks into the Jobs and ConfigMaps the controller would create, with no cluster.
    Render(RenderArgs),
    /// Print the CustomResourceDefinitions of Task and Agent.
    Crds,
}

#[derive(clap::Args)]
struct RenderArgs {
    /// YAML/JSON file (multi-document allowed) or directory of them with Tasks and Agents.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Yaml)]
    output: Format,
    /// Agent image for Tasks whose Agent sets none.
    #[arg(long, default_value = DEFAULT_AGENT_IMAGE)]
    default_agent_image: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Yaml,
    Json,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Render(args) => render(args),
        Command::Crds => crds::yaml()
            .map(|yaml| {
                print!("{yaml}");
                ExitCode::SUCCESS
            })
            .context("cannot encode the CRDs"),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn render(args: RenderArgs) -> anyhow::Result<ExitCode> {
    let (inputs, errors) = inputs::load(&args.files);
    if !errors.is_empty() {
        return Ok(report(&errors));
    }
    if inputs.tasks.is_empty() {
        anyhow::bail!("no Task found in {}", display_paths(&args.files));
    }
    let host = Arc::new(PluginHost::new(Limits::default())?);
    let settings = Settings {
        default_agent_image: args.default_agent_image,
        ..Settings::default()
    };
    let pipeline =
        Pipeline::new(host, settings).context("cannot load the built-in default plugin")?;
    let output = match offline::render_all(&pipeline, &inputs) {
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
    print!("{text}");
    Ok(ExitCode::SUCCESS)
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
