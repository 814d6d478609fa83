//! `kubetask-agent [-- COMMAND...]`: see the library's documentation and docs/agents.md.
//! `kubetask-agent --install DIR` copies this executable to `DIR/kubetask-agent` (the init
//! container of the agent-runner plugin puts the runner into any agent image that way).
//! `kubetask-agent publish` is a workspace's publish step (docs/workspaces.md).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use kubetask_agent::config::Config;
use kubetask_agent::{handoff, run};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|arg| arg == "--version") {
        println!("kubetask-agent {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if args.first().is_some_and(|arg| arg == "github-app-token") {
        return kubetask_agent::github_app::main(&args[1..]);
    }
    if args.first().is_some_and(|arg| arg == "publish") {
        return kubetask_agent::publish::main(&args[1..]);
    }
    if args.first().is_some_and(|arg| arg == "--install") {
        return match args.get(1) {
            Some(dir) if args.len() == 2 => install(std::path::Path::new(dir)),
            _ => {
                eprintln!("kubetask-agent: usage: kubetask-agent --install DIR");
                ExitCode::from(2)
            }
        };
    }
    let terminate = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(error) = signal_hook::flag::register(signal, terminate.clone()) {
            eprintln!("kubetask-agent: cannot handle signal {signal}: {error}");
        }
    }
    let config = match Config::from(|name| std::env::var(name).ok(), &args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("kubetask-agent: {error}");
            let report = kubetask_agent::report::render(
                &format!("kubetask-agent is misconfigured: {error}"),
                &Default::default(),
                None,
            );
            let path = std::env::var("KUBETASK_REPORT_PATH")
                .unwrap_or_else(|_| "/dev/termination-log".to_owned());
            let _ = std::fs::write(path, report);
            return ExitCode::from(3);
        }
    };
    // When the workspace publishes, the publish step waits for this run (handoff.rs).
    let handoff = std::env::var_os(kubetask_api::workspace::HANDOFF_ENV)
        .filter(|dir| !dir.is_empty())
        .map(|dir| handoff::hold(std::path::Path::new(&dir)));
    let held = match handoff {
        Some(Ok(held)) => Some(held),
        Some(Err(error)) => {
            eprintln!(
                "kubetask-agent: cannot take the handoff lock: {error}; nothing will be published"
            );
            None
        }
        None => None,
    };
    let finished = run::run(&config, &terminate);
    if let Some(held) = held {
        let exit = handoff::AgentExit {
            exit_code: finished.exit_code,
            report: finished.report.clone(),
        };
        if let Err(error) = held.finish(&exit) {
            eprintln!("kubetask-agent: cannot leave the exit for the publish step: {error}");
        }
    }
    ExitCode::from(u8::try_from(finished.exit_code).unwrap_or(1))
}

/// Copies this executable to `dir/kubetask-agent`, executable by everyone.
fn install(dir: &std::path::Path) -> ExitCode {
    let copied = std::env::current_exe().and_then(|exe| {
        std::fs::create_dir_all(dir)?;
        let target = dir.join("kubetask-agent");
        std::fs::copy(&exe, &target)?;
        let mut permissions = std::fs::metadata(&target)?.permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&target, permissions)?;
        Ok(target)
    });
    match copied {
        Ok(target) => {
            println!("kubetask-agent: installed {}", target.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "kubetask-agent: cannot install into {}: {error}",
                dir.display()
            );
            ExitCode::FAILURE
        }
    }
}
