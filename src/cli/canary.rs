//! `kubetask canary`: the egress canary's init container ([`crate::egress::canary`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::parse_duration;
use crate::egress::canary;

#[derive(clap::Args)]
pub struct CanaryArgs {
    /// The address the pod's policy denies (IP:port).
    #[arg(long)]
    address: SocketAddr,
    /// How long to wait for the connection.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    timeout: Duration,
    /// Where the result goes (the container's termination message).
    #[arg(long, default_value = "/dev/termination-log")]
    termination_log: PathBuf,
}

/// Probes once, writes the result to the termination log and stdout, and exits 0 either way:
/// the Task's condition reports it; the agent still runs.
pub fn run(args: CanaryArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let probe = runtime.block_on(canary::probe(args.address, args.timeout));
    let message = probe.message();
    println!("{message}");
    if let Err(error) = std::fs::write(&args.termination_log, &message) {
        eprintln!(
            "warning: cannot write {}: {error}",
            args.termination_log.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
