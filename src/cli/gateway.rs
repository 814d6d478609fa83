//! `kubetask gateway serve` (the model gateway, docs/budgets.md) and
//! `kubetask gateway key` (mints a Task's virtual key).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use prometheus_client::registry::Registry;

use super::{LogFormat, ServerArgs, emit};
use crate::gateway::keys::{self, Caller};
use crate::gateway::prices::PriceTable;
use crate::gateway::proxy::{self, Gateway, Provider, Providers};

#[derive(clap::Subcommand)]
pub enum GatewayCommand {
    /// Run the gateway: model API requests with a Task's virtual key forwarded to the provider
    /// with the real key, their usage metered.
    Serve(Box<ServeArgs>),
    /// Print the virtual key of a Task (what the controller will mint per Task).
    Key(KeyArgs),
}

impl GatewayCommand {
    /// The log format the command asks for, if it runs as a server.
    pub fn log_format(&self) -> Option<LogFormat> {
        match self {
            GatewayCommand::Serve(args) => Some(args.server.log_format),
            GatewayCommand::Key(_) => None,
        }
    }
}

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub(super) server: ServerArgs,
    /// Address agents send model API requests to.
    #[arg(long, default_value = "0.0.0.0:8090")]
    listen: SocketAddr,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8091")]
    metrics_address: SocketAddr,
    /// File with the key virtual keys are signed with (shared with the controller).
    #[arg(long)]
    signing_key_file: PathBuf,
    /// Directory of the providers' real keys: files `anthropic`, `openai`, `gemini` (a
    /// provider without one is refused, 503).
    #[arg(long)]
    keys_dir: PathBuf,
    /// Price table (`prices.yaml`, docs/budgets.md); default, and while the file does not
    /// exist: the shipped table.
    #[arg(long)]
    prices_file: Option<PathBuf>,
    /// How often --prices-file is read again (a ConfigMap's edits reach the mounted file).
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    prices_reload_interval: std::time::Duration,
    #[arg(long, default_value = "https://api.anthropic.com")]
    anthropic_url: String,
    #[arg(long, default_value = "https://api.openai.com")]
    openai_url: String,
    #[arg(long, default_value = "https://generativelanguage.googleapis.com")]
    gemini_url: String,
    /// How often each Task's usage is added to its `status.usage` (the ledger budgets are
    /// enforced from), e.g. `2s`.
    #[arg(long, default_value = "2s", value_parser = super::parse_duration)]
    usage_write_interval: std::time::Duration,
    /// Largest request body taken, in bytes (413 past it).
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    max_body_bytes: usize,
}

#[derive(clap::Args)]
pub struct KeyArgs {
    /// File with the signing key.
    #[arg(long)]
    signing_key_file: PathBuf,
    #[arg(short = 'n', long)]
    namespace: String,
    /// The Task's name.
    #[arg(long)]
    task: String,
    /// The Task's uid (`kubectl get task NAME -o jsonpath='{.metadata.uid}'`).
    #[arg(long)]
    uid: String,
}

/// Runs a `kubetask gateway` command.
pub fn run(command: GatewayCommand) -> anyhow::Result<ExitCode> {
    match command {
        GatewayCommand::Key(args) => {
            let key = keys::mint(
                &keys::read_signing_key(&args.signing_key_file)?,
                &Caller {
                    namespace: args.namespace,
                    task: args.task,
                    uid: args.uid,
                },
            );
            emit(&format!("{key}\n"))?;
            Ok(ExitCode::SUCCESS)
        }
        GatewayCommand::Serve(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(serve(*args))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let signing_key = keys::read_signing_key(&args.signing_key_file)?;
    let provider_key = |name: &str| {
        std::fs::read_to_string(args.keys_dir.join(name))
            .ok()
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
    };
    let providers = Providers {
        anthropic: Provider {
            url: args.anthropic_url.clone(),
            key: provider_key("anthropic"),
        },
        openai: Provider {
            url: args.openai_url.clone(),
            key: provider_key("openai"),
        },
        gemini: Provider {
            url: args.gemini_url.clone(),
            key: provider_key("gemini"),
        },
    };
    let prices = match &args.prices_file {
        // An optional ConfigMap not created (yet): the shipped table, until the file appears.
        None => PriceTable::defaults(),
        Some(path) if !path.exists() => {
            tracing::info!(path = %path.display(), "no price table file: the shipped prices apply until it appears");
            PriceTable::defaults()
        }
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            PriceTable::parse(&text).with_context(|| format!("{}", path.display()))?
        }
    };
    let client = crate::client::connect(args.server.kubeconfig.as_deref(), None).await?;
    let gateway = Arc::new(Gateway::new(
        signing_key,
        providers,
        prices,
        client,
        args.max_body_bytes,
    )?);
    let mut registry = Registry::with_prefix("kubetask_gateway");
    let metrics = gateway.metrics.clone();
    registry.register(
        "tokens",
        "Tokens used, by namespace, Agent, model and kind",
        metrics.tokens,
    );
    registry.register(
        "cost_microdollars",
        "What the responses cost, in micro-dollars, by namespace, Agent and model",
        metrics.cost,
    );
    registry.register(
        "unpriced_responses",
        "Responses without usage or of a model without a price (counted, flagged)",
        metrics.unpriced,
    );
    registry.register("refusals", "Requests refused, by reason", metrics.refusals);
    registry.register(
        "upstream_errors",
        "The providers' error answers (passed to the CLI as they came, not metered), by status",
        metrics.upstream_errors,
    );
    registry.register(
        "clamped_requests",
        "Requests whose output limit was lowered to what their Task's budget has left",
        metrics.clamped,
    );
    registry.register(
        "price_table_errors",
        "Edits of the price table refused (the previous table stays in force)",
        metrics.price_table_errors,
    );
    let text: crate::controller::health::MetricsText = Arc::new(move || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .ok()
            .map(|()| text)
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let probes = crate::controller::health::serve_with(
        args.metrics_address,
        Arc::new(AtomicBool::new(true)),
        text,
        stopped,
    )
    .await
    .with_context(|| format!("binding {}", args.metrics_address))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, probes = %probes, "model gateway ready");
    let flushing = tokio::spawn(gateway.clone().flush_every(args.usage_write_interval));
    if let Some(path) = args.prices_file.clone() {
        // A mounted ConfigMap changes in place: edits take effect without a restart.
        tokio::spawn(
            gateway
                .clone()
                .reload_prices_every(path, args.prices_reload_interval),
        );
    }
    tokio::select! {
        () = proxy::serve(gateway.clone(), listener) => {}
        () = crate::controller::termination() => {}
    }
    // What was metered since the last write is recorded before the gateway goes.
    flushing.abort();
    gateway.flush().await;
    let _ = stop.send(true);
    Ok(())
}
