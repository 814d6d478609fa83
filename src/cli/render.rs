//! `kubetask render`: the controller's pipeline on local files, with no cluster.

use std::{collections::HashMap, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::ValueEnum;
use k8s_openapi::api::core::v1::ConfigMap;
use kubetask_api::DEFAULT_AGENT_IMAGE;
use serde_json::Value;

use super::{
    EgressModeArg, display_paths, emit, parse_duration, plugin_name_of, read_component, report,
};
use crate::{
    cli::files::{self, InputError, Inputs, Sourced},
    egress::token::TokenKey,
    plugin::{self, Limits, Plugin, PluginError, PluginHost, source},
    render::{
        LifecycleSettings, Pipeline, RenderError, Settings,
        egress::{self, EgressSettings},
        model_gateway::{self, GatewaySettings},
        needs, resolve_agent, stages,
    },
};

#[derive(clap::Args)]
pub struct RenderArgs {
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
    /// Render as a controller with egress on (`--egress-key-file`) would: the Task's proxy
    /// Secret (its token made with a throwaway key: it opens nothing), the proxy variables and
    /// the policies of its pod (docs/security.md).
    #[arg(long)]
    egress: bool,
    /// With --egress: the controller's --default-egress-mode.
    #[arg(long, value_enum, default_value_t = EgressModeArg::Open)]
    default_egress_mode: EgressModeArg,
    /// Render as a controller with the model gateway on (`--model-gateway-key-file`) would:
    /// the Task's model Secret (its virtual key signed with a throwaway key: it opens nothing)
    /// and the CLIs' API-key and base-URL variables (docs/budgets.md).
    #[arg(long)]
    model_gateway: bool,
    /// Show the plugins' log lines (`host.log`) on stderr; twice (`-vv`) for everything the
    /// host logs too, such as where each plugin was loaded from.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub(super) verbose: u8,
}

/// Output format.
#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Yaml,
    Json,
}

/// Runs `kubetask render`.
pub fn run(args: RenderArgs) -> anyhow::Result<ExitCode> {
    let (mut inputs, mut errors) = files::load(&args.files);
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
    let egress = egress_settings(&args)?;
    let gateway = gateway_settings(&args)?;
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
    let mut extra = Extra::default();
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
        })
        .with_egress(egress)
        .with_gateway(gateway);
    let output = match render_all(&pipeline, &host, &inputs, &extra, &controller_namespace) {
        Ok(output) => output,
        Err(errors) => return Ok(report(&errors)),
    };
    for warning in &output.warnings {
        eprintln!("warning: {warning}");
    }
    let text = match args.output {
        Format::Yaml => to_yaml_stream(&output.objects)?,
        Format::Json => to_json_list(&output.objects)? + "\n",
    };
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// What `--model-gateway` renders with: a throwaway signing key and the default install's URL.
fn gateway_settings(args: &RenderArgs) -> anyhow::Result<Option<Arc<GatewaySettings>>> {
    if !args.model_gateway {
        return Ok(None);
    }
    let mut key = vec![0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
        .map_err(|_| anyhow::anyhow!("cannot make a throwaway signing key"))?;
    let settings = GatewaySettings::new(key, model_gateway::DEFAULT_URL)
        .map_err(|why| anyhow::anyhow!("{why}"))?;
    Ok(Some(Arc::new(settings)))
}

/// What `--egress` renders with: a throwaway key and the default install's exit and DNS.
fn egress_settings(args: &RenderArgs) -> anyhow::Result<Option<Arc<EgressSettings>>> {
    if !args.egress {
        return Ok(None);
    }
    let key = TokenKey::throwaway().context("cannot make a throwaway egress key")?;
    let settings = EgressSettings::new(
        key,
        egress::DEFAULT_EXIT.to_owned(),
        args.default_egress_mode.into(),
    )
    .map_err(|why| anyhow::anyhow!("{why}"))?;
    Ok(Some(Arc::new(settings)))
}

/// Loads a plugin component from a file (gzip when it ends in `.gz`).
fn load_plugin(host: &PluginHost, file: &std::path::Path) -> anyhow::Result<Plugin> {
    let bytes = read_component(file)?;
    host.load(&plugin_name_of(file), &bytes)
        .with_context(|| format!("cannot load {}", file.display()))
}

/// Extra stages from the command line (`--plugin`, `--policy`) besides the installed ones.
#[derive(Default)]
pub struct Extra {
    /// Run after the Agent's plugins, before the cluster policies.
    pub plugins: Vec<Plugin>,
    /// Run last.
    pub policies: Vec<Plugin>,
}

/// The plugin ConfigMaps of the inputs as the controller would install them: only those in
/// its namespace, each loaded (compiled) once.
struct Installed<'a> {
    maps: Vec<&'a ConfigMap>,
    files: HashMap<String, &'a std::path::Path>,
    loaded: HashMap<String, Result<Plugin, String>>,
}

impl<'a> Installed<'a> {
    fn new(inputs: &'a Inputs, namespace: &str, warnings: &mut Vec<String>) -> Self {
        let mut maps = Vec::new();
        let mut files = HashMap::new();
        for Sourced { file, object } in &inputs.plugins {
            let name = object.metadata.name.clone().unwrap_or_default();
            if object.metadata.namespace.as_deref() == Some(namespace) {
                maps.push(object);
                files.insert(name, file.as_path());
            } else {
                warnings.push(format!(
                    "{}: ConfigMap/{name}: not in the controller's namespace {namespace:?}, so the controller would not load it; ignored",
                    file.display()
                ));
            }
        }
        Self {
            maps,
            files,
            loaded: HashMap::new(),
        }
    }

    fn load(&mut self, host: &PluginHost, map: &ConfigMap) -> Result<Plugin, String> {
        let name = map.metadata.name.clone().unwrap_or_default();
        self.loaded
            .entry(name.clone())
            .or_insert_with(|| {
                source::component_of(map)
                    .and_then(|bytes| host.load(&name, &bytes).map_err(|e| e.to_string()))
            })
            .clone()
    }
}

/// What `kubetask render` prints: the objects to create, in creation order (each Task's
/// ConfigMaps, then its Job; a CronTask's next Task before them), and the warnings.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Output {
    pub objects: Vec<Value>,
    pub warnings: Vec<String>,
}

/// Renders every Task of `inputs`, resolving Agents and choosing plugins as the controller
/// does: the built-in default, the Agent's `spec.plugins` and the cluster policies among the
/// inputs' plugin ConfigMaps (packed manifests), plus the `extra` stages. Returns every error,
/// each naming its file, object and field.
pub fn render_all(
    pipeline: &Pipeline,
    host: &PluginHost,
    inputs: &Inputs,
    extra: &Extra,
    controller_namespace: &str,
) -> Result<Output, Vec<InputError>> {
    let mut output = Output::default();
    let mut errors = Vec::new();
    let mut installed = Installed::new(inputs, controller_namespace, &mut output.warnings);
    let agents = inputs.agent_index();
    let runs = inputs.cron_runs.iter().map(|run| (run, true));
    for (Sourced { file, object: task }, is_run) in
        inputs.tasks.iter().map(|task| (task, false)).chain(runs)
    {
        let namespace = task.metadata.namespace.as_deref();
        let task_object = format!("Task/{}", task.metadata.name.as_deref().unwrap_or_default());
        let error = |file: &std::path::Path,
                     object: String,
                     field: Option<String>,
                     message: String| InputError {
            file: file.to_owned(),
            object: Some(object),
            field,
            message,
        };
        let agent = match resolve_agent(task, |name| agents.get(namespace, name)) {
            Ok(agent) => agent,
            Err(not_found) => {
                errors.push(error(
                    file,
                    task_object,
                    Some("spec.agentRef".to_owned()),
                    format!(
                        "Agent {:?} does not exist in namespace {:?} (pass the file that defines it with -f)",
                        not_found.name, not_found.namespace
                    ),
                ));
                continue;
            }
        };
        // With --plugin stages given, they stand in for the Agent's plugins that are not
        // among the inputs (a plugin author trying a component before packing it).
        let mut choosing = agent.map(|a| a.object.clone());
        if let Some(choosing) = choosing.as_mut().filter(|_| !extra.plugins.is_empty()) {
            choosing.spec.plugins.retain(|name| {
                let present = installed
                    .maps
                    .iter()
                    .any(|m| m.metadata.name.as_deref() == Some(name.as_str()));
                if !present {
                    output.warnings.push(format!(
                        "{}: Agent/{}: spec.plugins names {name:?}, which is not among the inputs; the --plugin stages run in its place",
                        agent.map_or(file, |a| &a.file).display(),
                        choosing.metadata.name.as_deref().unwrap_or_default()
                    ));
                }
                present
            });
        }
        let chosen = match stages::select(choosing.as_ref(), &installed.maps) {
            Ok(chosen) => chosen,
            Err(stages::Unchosen::NotFound {
                agent: name,
                plugin,
            }) => {
                let source = agent.map_or(file, |a| &a.file);
                let elsewhere = inputs
                    .plugins
                    .iter()
                    .find(|p| p.object.metadata.name.as_deref() == Some(plugin.as_str()))
                    .map(|p| {
                        format!(
                            " (the ConfigMap of {} is in namespace {:?}, not in the controller's namespace {controller_namespace:?})",
                            p.file.display(),
                            p.object.metadata.namespace.as_deref().unwrap_or_default()
                        )
                    })
                    .unwrap_or_default();
                errors.push(error(
                    source,
                    format!("Agent/{name}"),
                    Some("spec.plugins".to_owned()),
                    format!(
                        "plugin {plugin:?} is not installed{elsewhere}: pass its packed manifest (kubetask plugin pack) with -f"
                    ),
                ));
                continue;
            }
            Err(stages::Unchosen::BadOrder { policy, message }) => {
                let source = installed.files.get(&policy).copied().unwrap_or(file);
                errors.push(error(source, format!("ConfigMap/{policy}"), None, message));
                continue;
            }
        };
        let mut loaded = Vec::with_capacity(chosen.len());
        let mut unloadable = None;
        for map in &chosen {
            match installed.load(host, map) {
                Ok(plugin) => loaded.push(plugin),
                Err(message) => {
                    unloadable = Some((map.metadata.name.clone().unwrap_or_default(), message));
                    break;
                }
            }
        }
        if let Some((name, message)) = unloadable {
            let source = installed.files.get(&name).copied().unwrap_or(file);
            errors.push(error(source, format!("ConfigMap/{name}"), None, message));
            continue;
        }
        // The Agent's plugins, the --plugin stages, the cluster policies, the --policy stages.
        let policies = loaded.split_off(needs::plugin_names(choosing.as_ref()).len());
        let plugins = loaded
            .into_iter()
            .chain(extra.plugins.iter().cloned())
            .chain(policies)
            .chain(extra.policies.iter().cloned());
        let pipeline = pipeline.extended(plugins);
        match pipeline.render(task, agent.map(|agent| &agent.object)) {
            Ok(rendered) => {
                // A CronTask's run: the Task it creates, then what the Task becomes.
                let run = is_run.then(|| serde_json::to_value(task));
                let encoded = run
                    .into_iter()
                    .chain(rendered.secrets.iter().map(serde_json::to_value))
                    .chain(rendered.policies.iter().map(serde_json::to_value))
                    .chain(rendered.config_maps.iter().map(serde_json::to_value))
                    .chain(std::iter::once(serde_json::to_value(&rendered.job)))
                    .collect::<Result<Vec<_>, _>>();
                match encoded {
                    Ok(objects) => output.objects.extend(objects),
                    Err(encode) => errors.push(error(file, task_object, None, encode.to_string())),
                }
                output.warnings.extend(
                    rendered
                        .warnings
                        .into_iter()
                        .map(|warning| format!("{}: {warning}", file.display())),
                );
            }
            Err(RenderError::Plugin(PluginError::InvalidInput {
                object,
                field,
                message,
                ..
            })) => {
                // The field may belong to the Agent, which can live in another file.
                let source = match agent.filter(|_| object.starts_with("Agent/")) {
                    Some(agent) => &agent.file,
                    None => file,
                };
                errors.push(error(
                    source,
                    object,
                    Some(field).filter(|field| !field.is_empty()),
                    message,
                ));
            }
            Err(other) => errors.push(error(file, task_object, None, other.to_string())),
        }
    }
    if errors.is_empty() {
        Ok(output)
    } else {
        Err(errors)
    }
}

/// The objects as one `v1` `List`, as `kubectl get -o json` prints several objects.
pub fn to_json_list(objects: &[Value]) -> Result<String, serde_json::Error> {
    let list =
        serde_json::json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": objects});
    serde_json::to_string_pretty(&list)
}

/// The objects as a multi-document YAML stream.
pub fn to_yaml_stream(objects: &[Value]) -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(object)?);
    }
    Ok(out)
}
