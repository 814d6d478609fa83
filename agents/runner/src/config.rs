//! What the runner reads from its environment and command line (docs/agents.md lists it).

use std::path::PathBuf;
use std::time::Duration;

/// The CLI the runner drives (`KUBETASK_AGENT_CLI`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cli {
    ClaudeCode,
    Gemini,
    Codex,
    OpenCode,
    /// The command after `--`.
    Command,
}

impl Cli {
    /// Every CLI, with the name `KUBETASK_AGENT_CLI` gives it.
    pub const ALL: [(&'static str, Cli); 5] = [
        ("claude-code", Cli::ClaudeCode),
        ("gemini", Cli::Gemini),
        ("codex", Cli::Codex),
        ("opencode", Cli::OpenCode),
        ("command", Cli::Command),
    ];

    /// The CLI named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, cli)| *cli)
    }

    /// The executable it runs by default (`KUBETASK_AGENT_BIN` overrides it).
    pub fn default_program(self) -> &'static str {
        match self {
            Cli::ClaudeCode => "claude",
            Cli::Gemini => "gemini",
            Cli::Codex => "codex",
            Cli::OpenCode => "opencode",
            Cli::Command => "",
        }
    }
}

/// The runner's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub cli: Cli,
    /// The executable; for `command`, the command's program.
    pub program: String,
    /// Extra arguments for the CLI (`KUBETASK_AGENT_ARGS`, split as a shell would); for
    /// `command`, the command's arguments.
    pub args: Vec<String>,
    /// `KUBETASK_AGENT_MODEL`: passed as the CLI's model flag.
    pub model: Option<String>,
    pub prompt_file: PathBuf,
    pub workspace: PathBuf,
    /// Where the CLI runs: `KUBETASK_WORKDIR` (the workspace's checkout), else the workspace.
    pub workdir: PathBuf,
    /// List the workspace's other files in the prompt (`KUBETASK_LIST_CONTEXT_FILES`).
    pub list_context_files: bool,
    pub report_path: PathBuf,
    /// How long the CLI gets after SIGTERM before SIGKILL (`KUBETASK_GRACE_SECONDS`).
    pub grace: Duration,
    /// The model gateway the CLI calls its models through (`KUBETASK_MODEL_GATEWAY`, set by the
    /// controller with the Task's virtual key: docs/budgets.md), without a trailing `/`.
    pub gateway: Option<String>,
}

/// A setting that cannot be used; the runner exits 3 (a retry cannot fix it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Config {
    /// Reads the settings from `env` (a lookup) and the arguments after the program name.
    pub fn from(
        env: impl Fn(&str) -> Option<String>,
        args: &[String],
    ) -> Result<Self, ConfigError> {
        let text = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        let command: Vec<String> = match args.iter().position(|arg| arg == "--") {
            Some(at) => args[at + 1..].to_vec(),
            None if args.is_empty() => Vec::new(),
            None => {
                return Err(ConfigError(format!(
                    "unexpected arguments {args:?}: a command goes after `--` (KUBETASK_AGENT_CLI=command)"
                )));
            }
        };
        let cli = match text("KUBETASK_AGENT_CLI") {
            Some(name) => Cli::from_name(name.trim()).ok_or_else(|| {
                let known: Vec<&str> = Cli::ALL.iter().map(|(name, _)| *name).collect();
                ConfigError(format!(
                    "KUBETASK_AGENT_CLI={name:?} is not one of {}",
                    known.join(", ")
                ))
            })?,
            None if !command.is_empty() => Cli::Command,
            None => {
                return Err(ConfigError(
                    "KUBETASK_AGENT_CLI is not set (claude-code, gemini, codex, opencode, or command with the command after `--`)".to_owned(),
                ));
            }
        };
        let extra = match text("KUBETASK_AGENT_ARGS") {
            Some(line) => shlex::split(&line).ok_or_else(|| {
                ConfigError(format!(
                    "KUBETASK_AGENT_ARGS={line:?} is not a shell-quoted argument list"
                ))
            })?,
            None => Vec::new(),
        };
        let (program, args) = if cli == Cli::Command {
            let Some((program, rest)) = command.split_first() else {
                return Err(ConfigError(
                    "KUBETASK_AGENT_CLI=command needs the command after `--`".to_owned(),
                ));
            };
            let mut args = rest.to_vec();
            args.extend(extra);
            (program.clone(), args)
        } else {
            if !command.is_empty() {
                return Err(ConfigError(format!(
                    "a command after `--` is only run with KUBETASK_AGENT_CLI=command (not {:?})",
                    text("KUBETASK_AGENT_CLI").unwrap_or_default()
                )));
            }
            let program =
                text("KUBETASK_AGENT_BIN").unwrap_or_else(|| cli.default_program().to_owned());
            (program, extra)
        };
        let workspace = PathBuf::from(text("KUBETASK_WORKSPACE").unwrap_or("/workspace".into()));
        let prompt_file =
            text("KUBETASK_PROMPT_FILE").map_or_else(|| workspace.join("task.md"), PathBuf::from);
        let workdir = text("KUBETASK_WORKDIR").map_or_else(|| workspace.clone(), PathBuf::from);
        let list_context_files = match text("KUBETASK_LIST_CONTEXT_FILES").as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(ConfigError(format!(
                    "KUBETASK_LIST_CONTEXT_FILES={other:?}: use true or false"
                )));
            }
        };
        let grace = match text("KUBETASK_GRACE_SECONDS") {
            None => Duration::from_secs(20),
            Some(seconds) => Duration::from_secs(seconds.trim().parse().map_err(|_| {
                ConfigError(format!(
                    "KUBETASK_GRACE_SECONDS={seconds:?} is not a whole number of seconds"
                ))
            })?),
        };
        Ok(Self {
            cli,
            program,
            args,
            model: text("KUBETASK_AGENT_MODEL"),
            prompt_file,
            workspace,
            workdir,
            list_context_files,
            report_path: PathBuf::from(
                text("KUBETASK_REPORT_PATH").unwrap_or("/dev/termination-log".into()),
            ),
            grace,
            gateway: text("KUBETASK_MODEL_GATEWAY")
                .map(|url| url.trim().trim_end_matches('/').to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(env: &[(&str, &str)], args: &[&str]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        Config::from(|name| env.get(name).cloned(), &args)
    }

    #[test]
    fn defaults_follow_the_agent_image_contract() {
        let config = config(&[("KUBETASK_AGENT_CLI", "claude-code")], &[]).expect("valid");
        assert_eq!(config.cli, Cli::ClaudeCode);
        assert_eq!(config.program, "claude");
        assert_eq!(config.prompt_file, PathBuf::from("/workspace/task.md"));
        assert_eq!(config.report_path, PathBuf::from("/dev/termination-log"));
        assert!(config.list_context_files);
        assert_eq!(config.grace, Duration::from_secs(20));
    }

    #[test]
    fn extra_arguments_are_split_as_a_shell_would() {
        let config = config(
            &[
                ("KUBETASK_AGENT_CLI", "codex"),
                ("KUBETASK_AGENT_ARGS", "--model 'gpt 5' -c x=1"),
            ],
            &[],
        )
        .expect("valid");
        assert_eq!(config.args, ["--model", "gpt 5", "-c", "x=1"]);
    }

    #[test]
    fn a_command_follows_the_double_dash() {
        let config = config(&[], &["--", "python3", "agent.py", "--fast"]).expect("valid");
        assert_eq!(config.cli, Cli::Command);
        assert_eq!((config.program.as_str(), config.args.len()), ("python3", 2));
    }

    #[test]
    fn bad_settings_say_what_to_fix() {
        for (env, args, expected) in [
            (vec![], vec![], "KUBETASK_AGENT_CLI is not set"),
            (
                vec![("KUBETASK_AGENT_CLI", "cursor")],
                vec![],
                "is not one of claude-code",
            ),
            (
                vec![("KUBETASK_AGENT_CLI", "command")],
                vec![],
                "needs the command after `--`",
            ),
            (
                vec![("KUBETASK_AGENT_CLI", "gemini")],
                vec!["--", "x"],
                "only run with KUBETASK_AGENT_CLI=command",
            ),
            (
                vec![
                    ("KUBETASK_AGENT_CLI", "gemini"),
                    ("KUBETASK_AGENT_ARGS", "'open"),
                ],
                vec![],
                "not a shell-quoted",
            ),
            (
                vec![
                    ("KUBETASK_AGENT_CLI", "gemini"),
                    ("KUBETASK_GRACE_SECONDS", "soon"),
                ],
                vec![],
                "KUBETASK_GRACE_SECONDS",
            ),
            (
                vec![("KUBETASK_AGENT_CLI", "gemini")],
                vec!["stray"],
                "unexpected arguments",
            ),
        ] {
            let error = config(&env, &args).expect_err(expected);
            assert!(error.0.contains(expected), "{error}");
        }
    }
}
