//! A KubeTask plugin template: annotates every agent Job with the Task's namespace-qualified
//! name. Replace [`Template::render`] with what your plugin does; keep the unit tests running the
//! built-in renderer first, as the controller does.
//!
//! Test, build, check and pack (docs/plugins.md):
//! ```text
//! cargo test                                    # natively, after the built-in renderer
//! ./build.sh                                    # the component: kubetask_plugin_template.wasm
//! kubetask plugin check kubetask_plugin_template.wasm -v     # world, imports, a trial render
//! kubetask plugin pack kubetask_plugin_template.wasm --name my-plugin > my-plugin.yaml
//! ```
#![deny(unsafe_code)]

use std::collections::BTreeMap;

use kubetask_plugin::{Draft, Error, Level, Plugin, Request, log};

/// The annotation this template adds to the Job.
pub const ANNOTATION: &str = "example.com/task";

/// The plugin.
pub struct Template;

impl Plugin for Template {
    fn render(request: Request) -> Result<Draft, Error> {
        let task = format!("{}/{}", request.task_namespace(), request.task_name());
        let mut draft = request.draft()?;
        log(Level::Debug, &format!("annotating the Job of {task}"));
        // The Job is JSON decoded only where the plugin looks (kubetask_plugin::Object): edit
        // the part at a JSON pointer as its k8s-openapi type; the rest passes through.
        draft
            .job
            .edit("/metadata/annotations", |annotations: &mut BTreeMap<String, String>| {
                annotations.insert(ANNOTATION.to_owned(), task);
            })?;
        Ok(draft)
    }
}

kubetask_plugin::export_plugin!(Template);

#[cfg(test)]
mod tests {
    use kubetask_plugin::{Plugin, Request, Settings, Task, api::TaskSpec};

    use super::{ANNOTATION, Template};

    #[test]
    fn annotates_the_job_the_default_renderer_made() {
        let mut task = Task::new("fix-bug", TaskSpec::default());
        task.metadata.namespace = Some("team-a".to_owned());
        let draft =
            kubetask_default_plugin::draft(&task, None, &Settings::default()).expect("renders");
        let rendered =
            Template::render(Request::new(&task, None, Some(draft)).expect("encodes")).expect("renders");
        let job = rendered.job.typed().expect("a Job");
        let annotations = job.metadata.annotations.expect("annotations");
        assert_eq!(annotations[ANNOTATION], "team-a/fix-bug");
    }
}
