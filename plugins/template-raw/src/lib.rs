//! A KubeTask plugin without the SDK: annotates the agent Job with the Task's
//! namespace-qualified name, and warns when the Task has no `kubetask.io/team` label.
//!
//! The logic is plain Rust over JSON text ([`annotate`]), tested natively with `cargo test`;
//! the `component` module, compiled only for wasm32, binds it to the WIT world with the names
//! wit-bindgen generates from `wit/plugin.wit`:
//! - `Guest` (the trait to implement, one `render` function) and `export!` (exports it);
//! - `RenderRequest { task, agent, settings, draft }`, `Draft { job, config_maps, warnings }`,
//!   `RenderError::{InvalidInput(InvalidField), Denied(String), Internal(String)}`;
//! - `kubetask::plugin::host::{log, Level}` and `kubetask::plugin::types::{InvalidField, Settings}`.
//!
//! A stage must pass on what it does not change: the draft's ConfigMaps (inline context files)
//! and the warnings of earlier stages (the host shows each warning once).
//!
//! ```text
//! cargo test
//! ./build.sh                                        # kubetask_plugin_template_raw.wasm
//! kubetask plugin check kubetask_plugin_template_raw.wasm -v
//! ```
#![deny(unsafe_code)]

use serde_json::Value;

/// The annotation this template adds to the Job.
pub const ANNOTATION: &str = "example.com/task";

/// What a stage returns: the Job's new JSON, and warnings to add.
#[derive(Debug, PartialEq, Eq)]
pub struct Output {
    /// The Job, as JSON.
    pub job: String,
    /// New warnings for the Task's owner.
    pub warnings: Vec<String>,
}

/// Annotates the Job (`job`, JSON) of the Task (`task`, JSON); `Err` is an internal error.
pub fn annotate(task: &str, job: &str) -> Result<Output, String> {
    let task: Value = serde_json::from_str(task).map_err(|error| format!("the Task: {error}"))?;
    let mut job: Value = serde_json::from_str(job).map_err(|error| format!("the Job: {error}"))?;
    let metadata = &task["metadata"];
    let name = format!(
        "{}/{}",
        metadata["namespace"].as_str().unwrap_or_default(),
        metadata["name"].as_str().unwrap_or_default()
    );
    let annotations = job
        .pointer_mut("/metadata")
        .and_then(Value::as_object_mut)
        .ok_or("the Job has no metadata")?
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    if !annotations.is_object() {
        *annotations = Value::Object(Default::default());
    }
    annotations[ANNOTATION] = Value::String(name);
    let mut warnings = Vec::new();
    if metadata["labels"]["kubetask.io/team"].is_null() {
        warnings.push("the Task has no kubetask.io/team label".to_owned());
    }
    Ok(Output {
        job: job.to_string(),
        warnings,
    })
}

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, reason = "the glue wit-bindgen generates; this crate's own code has none")]
mod component {
    // The path is relative to Cargo.toml: KubeTask's `wit/` directory, copied.
    wit_bindgen::generate!({ path: "wit", world: "plugin" });

    use kubetask::plugin::host::{Level, log};

    struct Template;

    impl Guest for Template {
        fn render(request: RenderRequest) -> Result<Draft, RenderError> {
            // A stage after the built-in renderer always gets a draft.
            let mut draft = request
                .draft
                .ok_or_else(|| RenderError::Internal("no draft to annotate".to_owned()))?;
            let output = super::annotate(&request.task, &draft.job).map_err(RenderError::Internal)?;
            log(Level::Debug, "annotated the Job");
            draft.job = output.job;
            // draft.config_maps passes through unchanged; earlier warnings stay, ours follow.
            draft.warnings.extend(output.warnings);
            Ok(draft)
        }
    }

    export!(Template);
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = r#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"fix-bug-x"},"spec":{}}"#;

    #[test]
    fn annotates_the_job_and_warns_without_a_team() {
        let task = r#"{"metadata":{"name":"fix-bug","namespace":"team-a"}}"#;
        let output = annotate(task, JOB).expect("annotates");
        let job: Value = serde_json::from_str(&output.job).expect("JSON");
        assert_eq!(job["metadata"]["annotations"][ANNOTATION], "team-a/fix-bug");
        assert_eq!(job["metadata"]["name"], "fix-bug-x", "the rest is kept");
        assert_eq!(output.warnings, ["the Task has no kubetask.io/team label"]);

        let team = r#"{"metadata":{"name":"t","namespace":"n","labels":{"kubetask.io/team":"a"}}}"#;
        assert!(annotate(team, JOB).expect("annotates").warnings.is_empty());
    }

    #[test]
    fn a_job_that_is_not_json_is_an_internal_error() {
        assert!(annotate("{}", "not JSON").is_err());
    }
}
