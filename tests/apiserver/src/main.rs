//! `kubetask-test-apiserver`: run the test API server by hand and point kubectl at it.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kubetask_test_apiserver::{Config, JobSimulator, TestApiServer};

/// A Kubernetes API server on loopback for trying KubeTask without a cluster.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Where to write the kubeconfig (default: a temporary directory).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Simulate the Job controller: Jobs start, then complete (or fail with the label
    /// simulator.kubetask.io/outcome=fail).
    #[arg(long)]
    simulate_jobs: bool,
    /// How long a simulated Job runs, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    job_run_ms: u64,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut config = Config {
        port: args.port,
        kubeconfig_path: args.kubeconfig,
        ..Config::default()
    };
    if args.simulate_jobs {
        config.job_simulator = Some(JobSimulator {
            run_time: Duration::from_millis(args.job_run_ms),
            ..JobSimulator::default()
        });
    }
    let server = TestApiServer::start(config)?;
    println!("kubeconfig: {}", server.kubeconfig_path().display());
    println!("server: {}", server.url());
    println!(
        "try: KUBECONFIG={} kubectl get namespaces",
        server.kubeconfig_path().display()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(tokio::signal::ctrl_c())?;
    server.shutdown();
    Ok(())
}
