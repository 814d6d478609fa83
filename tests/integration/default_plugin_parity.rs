//! The embedded component must be the current source: for every example, rendering through
//! wasm gives exactly what the plugin crate computes natively. (A stale committed
//! `kubetask_default.wasm` fails here; `make plugins` rebuilds it.)

use std::{path::PathBuf, sync::Arc};

use k8s_openapi::api::{batch::v1::Job, core::v1::ConfigMap};
use kubetask::{
    cli::files as inputs,
    plugin::{Limits, PluginHost},
    render::{Pipeline, Settings, resolve_agent},
};
use kubetask_default_plugin as native;

#[test]
fn wasm_and_native_renderings_agree_on_every_example() {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let (inputs, errors) =
        inputs::load(&[examples.clone(), examples.join("helm-batch/rendered.yaml")]);
    assert_eq!(errors, []);
    assert!(inputs.tasks.len() >= 5, "examples hold Tasks");
    let settings = Settings::default();
    let pipeline = Pipeline::new(
        Arc::new(PluginHost::new(Limits::default()).expect("host")),
        settings.clone(),
    )
    .expect("the default plugin loads");
    let native_settings = settings.clone();
    let agents = inputs.agent_index();
    for task in &inputs.tasks {
        let agent = resolve_agent(&task.object, |name| {
            agents.get(task.object.metadata.namespace.as_deref(), name)
        })
        .expect("the examples' Agents exist")
        .map(|agent| &agent.object);
        let wasm = pipeline.render(&task.object, agent).expect("wasm renders");
        let mut expected =
            native::render(&task.object, agent, &native_settings).expect("native renders");
        // The host applies the lifecycle after the last plugin, natively in both cases.
        let notes = kubetask::render::lifecycle::apply(
            &task.object,
            agent,
            &Default::default(),
            &mut expected.job,
        )
        .expect("the examples' lifecycle fields are valid");
        expected.warnings.extend(notes);
        assert_eq!(wasm.job, expected.job, "{:?}", task.object.metadata.name);
        let without_lifecycle = native::render(&task.object, agent, &native_settings)
            .expect("native renders")
            .job;
        assert_eq!(wasm.config_maps, expected.config_maps);
        assert_eq!(wasm.warnings, expected.warnings);

        let json = native::render_json(
            &serde_json::to_string(&task.object).expect("encodes"),
            agent
                .map(|agent| serde_json::to_string(agent).expect("encodes"))
                .as_deref(),
            &native_settings,
        )
        .expect("native JSON renders");
        assert_eq!(
            serde_json::from_str::<Job>(&json.job).expect("a Job"),
            without_lifecycle
        );
        let maps: Vec<ConfigMap> = json
            .config_maps
            .iter()
            .map(|map| serde_json::from_str(map).expect("a ConfigMap"))
            .collect();
        assert_eq!(maps, wasm.config_maps);
    }
}
