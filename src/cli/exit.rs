//! `kubetask exit`: the egress proxy agent pods leave through (docs/security.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::{EgressModeArg, ServerArgs, parse_duration};
use crate::egress::{Limits, cluster};

#[derive(clap::Args)]
pub struct ExitArgs {
    #[command(flatten)]
    pub(super) server: ServerArgs,
    /// Serve the Tasks of this namespace only (default: all namespaces).
    #[arg(long)]
    namespace: Option<String>,
    /// Address of the proxy port (agents' HTTPS_PROXY).
    #[arg(long, default_value = "0.0.0.0:3128")]
    listen: SocketAddr,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8081")]
    metrics_address: SocketAddr,
    /// File holding the key of the per-Task tokens (at least 32 bytes; the
    /// `kubetask-egress-key` Secret, mounted).
    #[arg(long, env = "KUBETASK_EGRESS_KEY_FILE")]
    token_key_file: PathBuf,
    /// Egress mode of Tasks whose Agent and themselves set none.
    #[arg(long, value_enum, default_value_t = EgressModeArg::Open)]
    default_egress_mode: EgressModeArg,
    /// Longest wait for a whole request head (`10s`).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    header_timeout: Duration,
    /// Longest wait for resolving and connecting to a destination (`10s`).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    connect_timeout: Duration,
    /// After SIGTERM, how long open tunnels may finish (new connections are refused at once,
    /// so clients reconnect to another replica); keep it below the pod's grace period.
    #[arg(long, value_parser = parse_duration, default_value = "20s")]
    drain_timeout: Duration,
    /// Most tunnels open at once (more wait in the listen backlog).
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// This replica's name in its Events (default: $POD_NAME).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

/// Runs the exit until SIGTERM.
pub fn run(args: ExitArgs) -> anyhow::Result<ExitCode> {
    let options = cluster::Options {
        kubeconfig: args.server.kubeconfig,
        namespace: args.namespace,
        listen: args.listen,
        metrics_address: args.metrics_address,
        token_key_file: args.token_key_file,
        default_mode: args.default_egress_mode.into(),
        limits: Limits {
            header_timeout: args.header_timeout,
            hello_timeout: args.header_timeout,
            connect_timeout: args.connect_timeout,
            max_connections: args.max_connections,
            ..Limits::default()
        },
        identity: args.identity,
        drain: args.drain_timeout,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(cluster::run(options))?;
    Ok(ExitCode::SUCCESS)
}
