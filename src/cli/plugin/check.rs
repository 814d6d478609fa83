//! `kubetask plugin check`: what a plugin author wants to know before shipping a component —
//! is it a component, which world it implements, what it imports, and what it does to a Task.

use std::{sync::Arc, time::Instant};

use kubetask_api::Task;
use serde_json::Value;

use crate::plugin::{Plugin, PluginError, PluginHost, source};
use crate::{
    cli::files::{AgentIndex, Inputs},
    render::{Pipeline, RenderError, Settings, resolve_agent},
};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// A check passed.
    Ok,
    /// Something to know; not a failure.
    Note,
    /// Something to fix before the plugin can be used.
    Error,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub text: String,
}

/// Everything `check` found, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether nothing needs fixing.
    pub fn passed(&self) -> bool {
        self.findings
            .iter()
            .all(|finding| finding.severity != Severity::Error)
    }

    fn push(&mut self, severity: Severity, text: impl Into<String>) {
        self.findings.push(Finding {
            severity,
            text: text.into(),
        });
    }
}

/// The Task rendered when the author passes none.
pub const SAMPLE_TASK: &str = r#"{
  "apiVersion": "kubetask.io/v1alpha1",
  "kind": "Task",
  "metadata": {"name": "sample", "namespace": "default"},
  "spec": {"contexts": [{"type": "File", "file": {"filePath": "/workspace/task.md", "source": {"inline": "Fix the failing test in ci/"}}}]}
}"#;

/// Most changed paths listed per trial render.
const MAX_LISTED_CHANGES: usize = 12;

/// Checks the component `bytes` (gzip allowed), naming it `name`, and trial-renders the Tasks
/// of `inputs` (the built-in sample Task when there are none) with it as the last stage.
pub fn check(
    host: &Arc<PluginHost>,
    name: &str,
    bytes: &[u8],
    inputs: &Inputs,
    settings: &Settings,
) -> Report {
    let mut report = Report::default();
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        match source::gunzip(bytes) {
            Ok(bytes) => bytes,
            Err(error) => {
                report.push(
                    Severity::Error,
                    format!("gzip data that does not decompress: {error}"),
                );
                return report;
            }
        }
    } else {
        bytes.to_vec()
    };
    let Some(plugin) = load(host, name, &bytes, &mut report) else {
        return report;
    };
    let (imports, exports) = host.interface(&plugin);
    let version = imports
        .iter()
        .find_map(|import| import.strip_prefix("kubetask:plugin/types@"))
        .unwrap_or("0.1.0");
    report.push(
        Severity::Ok,
        format!(
            "implements world kubetask:plugin/plugin@{version} (exports: {})",
            exports.join(", ")
        ),
    );
    report.push(
        Severity::Ok,
        if imports.is_empty() {
            "imports nothing".to_owned()
        } else {
            format!(
                "imports {} (all provided by the sandbox; no WASI)",
                imports.join(", ")
            )
        },
    );

    let sample;
    let tasks: Vec<&Task> = if inputs.tasks.is_empty() {
        match serde_json::from_str::<Task>(SAMPLE_TASK) {
            Ok(task) => {
                sample = task;
                report.push(
                    Severity::Note,
                    "no Task given (-f): trial render of the built-in sample Task default/sample",
                );
                vec![&sample]
            }
            Err(error) => {
                report.push(
                    Severity::Error,
                    format!("the built-in sample Task does not parse: {error}"),
                );
                return report;
            }
        }
    } else {
        inputs.tasks.iter().map(|task| &task.object).collect()
    };
    let baseline = match Pipeline::new(host.clone(), settings.clone()) {
        Ok(pipeline) => pipeline,
        Err(error) => {
            report.push(
                Severity::Error,
                format!("the built-in default plugin does not load: {error}"),
            );
            return report;
        }
    };
    let with_plugin = baseline.extended([plugin]);
    let agents = inputs.agent_index();
    for task in tasks {
        trial(&baseline, &with_plugin, task, &agents, &mut report);
    }
    report
}

/// Compiles and links the component, explaining failures.
fn load(host: &PluginHost, name: &str, bytes: &[u8], report: &mut Report) -> Option<Plugin> {
    let started = Instant::now();
    match load_component(host, name, bytes) {
        Ok(plugin) => {
            report.push(
                Severity::Ok,
                format!(
                    "a WebAssembly component ({} bytes, {}), compiled in {:.2} s",
                    bytes.len(),
                    plugin.digest(),
                    started.elapsed().as_secs_f64()
                ),
            );
            Some(plugin)
        }
        Err(message) => {
            report.push(Severity::Error, message);
            None
        }
    }
}

/// Compiles and links `bytes` as a plugin: `Err` says why they are not a component
/// implementing the plugin world, and what to do about it (`plugin check` and `plugin pack`
/// refuse with the same words).
pub fn load_component(host: &PluginHost, name: &str, bytes: &[u8]) -> Result<Plugin, String> {
    const MAGIC: &[u8] = b"\0asm";
    if !bytes.starts_with(MAGIC) || bytes.len() < 8 {
        return Err(
            "not WebAssembly (no \\0asm header): pass the .wasm component your build produced"
                .to_owned(),
        );
    }
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err("a core WebAssembly module, not a component: wrap it with \
             `wasm-tools component new module.wasm -o plugin.wasm` (the module must embed the \
             component type that wit-bindgen generates from wit/; the SDK's export_plugin! does)"
            .to_owned());
    }
    match host.load(name, bytes) {
        Ok(plugin) => Ok(plugin),
        Err(error @ PluginError::WrongWorld { .. }) => {
            let hint = if error.to_string().contains("wasi:") {
                ". The sandbox gives plugins no WASI: build Rust plugins for wasm32-unknown-unknown \
                 (not wasm32-wasip1/wasip2) without the WASI adapter; in C, link wasi-libc's \
                 malloc and string functions only (no stdio, time, files or environment)"
            } else {
                ". Generate bindings from this repository's wit/ (world `plugin`) and export `render`"
            };
            Err(format!("{error}{hint}"))
        }
        Err(error) => Err(error.to_string()),
    }
}

/// Renders `task` without and with the plugin and reports what the plugin did.
fn trial(
    baseline: &Pipeline,
    with_plugin: &Pipeline,
    task: &Task,
    agents: &AgentIndex<'_>,
    report: &mut Report,
) {
    let label = format!(
        "Task {}/{}",
        task.metadata.namespace.as_deref().unwrap_or_default(),
        task.metadata.name.as_deref().unwrap_or_default()
    );
    let namespace = task.metadata.namespace.as_deref();
    let agent = match resolve_agent(task, |name| agents.get(namespace, name)) {
        Ok(agent) => agent.map(|agent| &agent.object),
        Err(missing) => {
            report.push(
                Severity::Error,
                format!(
                    "{label}: its Agent {:?} is not in the files given with -f",
                    missing.name
                ),
            );
            return;
        }
    };
    let before = match baseline.render(task, agent) {
        Ok(rendered) => rendered,
        Err(error) => {
            report.push(
                Severity::Error,
                format!("{label} does not render even without the plugin (fix the Task): {error}"),
            );
            return;
        }
    };
    match with_plugin.render(task, agent) {
        Ok(after) => {
            let mut changes = Vec::new();
            let encode = |job| serde_json::to_value(job).unwrap_or(Value::Null);
            changed_paths(&encode(&before.job), &encode(&after.job), "Job", &mut changes);
            let maps = |rendered: &crate::render::Rendered| {
                serde_json::to_value(&rendered.config_maps).unwrap_or(Value::Null)
            };
            changed_paths(&maps(&before), &maps(&after), "ConfigMaps", &mut changes);
            let summary = if changes.is_empty() {
                "no change (the draft passes unchanged)".to_owned()
            } else if changes.len() > MAX_LISTED_CHANGES {
                format!(
                    "changed {} and {} more",
                    changes[..MAX_LISTED_CHANGES].join(", "),
                    changes.len() - MAX_LISTED_CHANGES
                )
            } else {
                format!("changed {}", changes.join(", "))
            };
            report.push(Severity::Ok, format!("trial render of {label}: {summary}"));
            for warning in after.warnings.iter().skip(before.warnings.len()) {
                report.push(Severity::Note, format!("{label}: warning for the Task's owner: {warning}"));
            }
        }
        Err(RenderError::Plugin(PluginError::Denied { reason, .. })) => report.push(
            Severity::Note,
            format!("trial render of {label}: denied: {reason} (a policy may deny; is this the reason you expect?)"),
        ),
        Err(RenderError::Plugin(PluginError::InvalidInput { object, field, message, .. })) => report.push(
            Severity::Note,
            format!("trial render of {label}: rejected as invalid input: {object}: {field}: {message}"),
        ),
        Err(RenderError::Plugin(error)) => {
            let hint = match &error {
                PluginError::Timeout { .. } => " (an endless loop, or too slow: the controller's --plugin-timeout-ms bounds each call)",
                PluginError::Memory { .. } => " (the controller's --plugin-memory-mib bounds each call)",
                PluginError::Trap { .. } => " (a panic, an out-of-bounds access or a stack overflow)",
                PluginError::InvalidOutput { .. } => " (return the draft's Job as batch/v1 Job JSON and ConfigMaps as v1 ConfigMap JSON)",
                _ => "",
            };
            report.push(Severity::Error, format!("trial render of {label}: {error}{hint}"));
        }
        Err(error) => report.push(Severity::Error, format!("trial render of {label}: {error}")),
    }
}

/// Paths (`Job.spec.template...`) where `before` and `after` differ, most specific first found.
fn changed_paths(before: &Value, after: &Value, path: &str, out: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(old), Value::Object(new)) => {
            let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let child = format!("{path}.{key}");
                match (old.get(key), new.get(key)) {
                    (Some(old), Some(new)) => changed_paths(old, new, &child, out),
                    (None, Some(_)) => out.push(format!("+{child}")),
                    (Some(_), None) => out.push(format!("-{child}")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(old), Value::Array(new)) if old.len() == new.len() => {
            for (index, (old, new)) in old.iter().zip(new).enumerate() {
                changed_paths(old, new, &format!("{path}[{index}]"), out);
            }
        }
        _ if before != after => out.push(path.to_owned()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::changed_paths;

    #[test]
    fn changed_paths_name_added_removed_and_changed_fields() {
        let before = json!({"spec": {"a": 1, "b": [1, 2], "c": {"d": true}, "gone": 0}});
        let after = json!({"spec": {"a": 2, "b": [1, 2, 3], "c": {"d": true, "e": 1}}});
        let mut out = Vec::new();
        changed_paths(&before, &after, "Job", &mut out);
        assert_eq!(
            out,
            [
                "Job.spec.a",
                "Job.spec.b",
                "+Job.spec.c.e",
                "-Job.spec.gone"
            ]
        );
    }
}
