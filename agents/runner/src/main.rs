//! `kubetask-agent [-- COMMAND...]`: see the library's documentation and docs/agents.md.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use kubetask_agent::config::Config;
use kubetask_agent::run;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|arg| arg == "--version") {
        println!("kubetask-agent {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
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
    let finished = run::run(&config, &terminate);
    ExitCode::from(u8::try_from(finished.exit_code).unwrap_or(1))
}
