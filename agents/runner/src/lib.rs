//! `kubetask-agent`: runs an AI coding CLI (Claude Code, Gemini CLI, Codex, OpenCode) or any
//! command non-interactively in a KubeTask agent pod, streams its progress to the log, and
//! writes the report of docs/agent-image.md (summary, outputs, usage) to the termination
//! message, within the kubelet's 4 KiB. Exit code 3 marks a failure no retry can fix
//! (authentication, configuration); SIGTERM is forwarded and a partial report still written.
// One `unsafe` call: `kill(2)` to forward a signal to the CLI's process group (`run::signal`).
#![deny(unsafe_code)]

pub mod adapters;
pub mod config;
pub mod github_app;
pub mod handoff;
pub mod http;
pub mod prompt;
pub mod publish;
pub mod report;
pub mod run;

pub use adapters::{Adapter, Failure, Outcome};
pub use config::{Cli, Config};
