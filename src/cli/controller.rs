//! `kubetask controller`: the flags of the controller, turned into [`crate::controller::Options`].

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use kubetask_api::DEFAULT_AGENT_IMAGE;

use super::{EgressModeArg, ServerArgs, parse_duration};
use crate::render::egress::{CanarySettings, DNS_PORT, EgressSettings, PodPeer};
use crate::render::model_gateway::GatewaySettings;
use crate::{
    controller::{self, LeaseOptions},
    plugin::Limits,
    render::{LifecycleSettings, Settings},
};

#[derive(clap::Args)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub(super) server: ServerArgs,
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
    /// Turn egress on: the key of the per-Task exit tokens (the `kubetask-egress-key` Secret,
    /// mounted; the exit holds the same). Every Task then gets a Secret with its proxy URL and
    /// HTTPS_PROXY/HTTP_PROXY from it (docs/security.md).
    #[arg(long, env = "KUBETASK_EGRESS_KEY_FILE")]
    egress_key_file: Option<PathBuf>,
    /// The exit's host:port, as agent pods reach it.
    #[arg(long, default_value = crate::render::egress::DEFAULT_EXIT)]
    egress_exit: String,
    /// The exit's pods (`NAMESPACE/KEY=VALUE,...`): each Task pod's NetworkPolicy lets it reach
    /// them on the port of --egress-exit (the exit Service's port and target port must match).
    #[arg(long, default_value = crate::render::egress::DEFAULT_EXIT_PODS)]
    egress_exit_pods: String,
    /// The cluster DNS's pods (`NAMESPACE/KEY=VALUE,...`), reached on port 53 (UDP and TCP).
    #[arg(long, default_value = crate::render::egress::DEFAULT_DNS_PODS)]
    egress_dns_pods: String,
    /// Start every Task pod with the egress canary, an init container of this image (the
    /// kubetask image: it runs `/kubetask canary`) that probes an address the pod's policy denies;
    /// what it sees sets the Task's EgressEnforced condition (docs/security.md).
    #[arg(long, env = "KUBETASK_EGRESS_CANARY_IMAGE")]
    egress_canary_image: Option<String>,
    /// The canary's address (IP:port); default: the API server's Service.
    #[arg(long)]
    egress_canary_address: Option<std::net::SocketAddr>,
    /// Egress mode of Tasks whose Agent and themselves set none (checked here as the exit
    /// checks it: give both the same).
    #[arg(long, value_enum, default_value_t = EgressModeArg::Open)]
    default_egress_mode: EgressModeArg,
    /// Turn the model gateway on: the key virtual keys are signed with (the
    /// `kubetask-gateway-signing-key` Secret, mounted; the gateway holds the same). Every Task
    /// then gets a Secret with its virtual key, and its agent the CLIs' API-key and base-URL
    /// variables pointing at the gateway (docs/budgets.md).
    #[arg(long, env = "KUBETASK_MODEL_GATEWAY_KEY_FILE")]
    model_gateway_key_file: Option<PathBuf>,
    /// The gateway's URL as agent pods reach it.
    #[arg(long, default_value = crate::render::model_gateway::DEFAULT_URL)]
    model_gateway_url: String,
    /// The gateway's pods (NAMESPACE/KEY=VALUE[,KEY=VALUE...]): with egress on, each Task
    /// pod's policies let it reach them on --model-gateway-pod-port.
    #[arg(long, default_value = crate::render::model_gateway::DEFAULT_PODS)]
    model_gateway_pods: String,
    /// The port the gateway's pods listen on (its Service's target port).
    #[arg(long, default_value_t = crate::render::model_gateway::DEFAULT_POD_PORT)]
    model_gateway_pod_port: u16,
    /// Tests only: CronTask schedules read "now" from this file (an RFC 3339 time) instead of
    /// the system clock.
    #[arg(long, hide = true)]
    test_clock_file: Option<PathBuf>,
}

impl ControllerArgs {
    /// The canary, when `--egress-canary-image` is set: it probes `--egress-canary-address`,
    /// else the API server's Service as pods see it (`KUBERNETES_SERVICE_HOST`/`_PORT`).
    fn canary(&self) -> anyhow::Result<Option<CanarySettings>> {
        let Some(image) = self.egress_canary_image.clone() else {
            return Ok(None);
        };
        let address = match &self.egress_canary_address {
            Some(address) => *address,
            None => {
                let host = std::env::var("KUBERNETES_SERVICE_HOST").ok();
                let port = std::env::var("KUBERNETES_SERVICE_PORT").ok();
                host.zip(port)
                    .and_then(|(host, port)| {
                        let host: std::net::IpAddr = host.parse().ok()?;
                        Some(std::net::SocketAddr::new(host, port.parse().ok()?))
                    })
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "--egress-canary-image needs --egress-canary-address outside a cluster (no KUBERNETES_SERVICE_HOST/PORT)"
                        )
                    })?
            }
        };
        Ok(Some(CanarySettings { image, address }))
    }

    /// The controller's options from its flags.
    fn options(self) -> anyhow::Result<controller::Options> {
        let egress = self
            .egress_key_file
            .as_deref()
            .map(|path| {
                let key = crate::egress::cluster::read_key(path)?;
                let exit_port = crate::render::egress::exit_port(&self.egress_exit)
                    .map_err(|why| anyhow::anyhow!("--egress-exit: {why}"))?;
                Ok::<_, anyhow::Error>(std::sync::Arc::new(EgressSettings {
                    key,
                    exit: self.egress_exit.clone(),
                    default_mode: self.default_egress_mode.into(),
                    exit_pods: PodPeer::parse(&self.egress_exit_pods, exit_port)
                        .map_err(|why| anyhow::anyhow!("--egress-exit-pods: {why}"))?,
                    dns_pods: PodPeer::parse(&self.egress_dns_pods, DNS_PORT)
                        .map_err(|why| anyhow::anyhow!("--egress-dns-pods: {why}"))?,
                    canary: self.canary()?,
                }))
            })
            .transpose()?;
        let gateway = self
            .model_gateway_key_file
            .as_deref()
            .map(|path| {
                let key = crate::gateway::keys::read_signing_key(path)?;
                let pods = PodPeer::parse(&self.model_gateway_pods, self.model_gateway_pod_port)
                    .map_err(|why| anyhow::anyhow!("--model-gateway-pods: {why}"))?;
                let settings = GatewaySettings::new(key, &self.model_gateway_url)
                    .map_err(|why| anyhow::anyhow!("--model-gateway-url: {why}"))?
                    .with_pods(pods);
                Ok::<_, anyhow::Error>(std::sync::Arc::new(settings))
            })
            .transpose()?;
        let identity = self.identity.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "kubetask".to_owned());
            format!("{host}-{}", std::process::id())
        });
        let lease = self.leader_elect.then(|| LeaseOptions {
            name: self.lease_name.clone(),
            namespace: self.controller_namespace.clone(),
            identity,
            duration: Duration::from_secs(self.lease_duration_seconds),
            grace: Duration::from_secs(self.lease_renew_grace_seconds),
        });
        Ok(controller::Options {
            kubeconfig: self.server.kubeconfig,
            namespace: self.namespace,
            settings: Settings {
                default_agent_image: self.default_agent_image,
                controller_namespace: self.controller_namespace,
            },
            lease,
            metrics_address: self.metrics_address,
            concurrency: self.concurrency,
            limits: Limits {
                memory_bytes: self.plugin_memory_mib * 1024 * 1024,
                deadline: Duration::from_millis(self.plugin_timeout_ms),
                output_bytes: self.plugin_output_kib * 1024,
            },
            plugin_cache_dir: self.plugin_cache_dir,
            lifecycle: LifecycleSettings {
                max_task_timeout: self.max_task_timeout,
                default_ttl: self
                    .default_ttl_seconds_after_finished
                    .map(Duration::from_secs),
            },
            clock: self
                .test_clock_file
                .map_or(crate::cron::Clock::System, crate::cron::Clock::File),
            egress,
            gateway,
        })
    }
}

/// Runs the controller until SIGTERM.
pub fn run(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(controller::run(args.options()?))?;
    Ok(ExitCode::SUCCESS)
}
