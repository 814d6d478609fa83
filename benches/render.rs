//! Render latency of one Task: through the embedded wasm default plugin (a fresh instance per
//! call) and natively, with their ratio. Run with `cargo bench --bench render`.
//!
//! `KUBETASK_BENCH_PLUGIN=FILE.wasm` measures another build of the default plugin (for
//! comparing build settings without rebuilding the benchmark).

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use kubetask::{
    api::{Agent, Task},
    cli::files as inputs,
    plugin::{DEFAULT_PLUGIN_NAME, DEFAULT_PLUGIN_WASM, Limits, PluginHost, bindings},
    render::{Pipeline, Settings},
};
use kubetask_default_plugin as native;

const WARMUP: usize = 200;
const SAMPLES: usize = 5_000;

fn measure(label: &str, mut call: impl FnMut()) -> Duration {
    for _ in 0..WARMUP {
        call();
    }
    let mut samples: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            call();
            start.elapsed()
        })
        .collect();
    samples.sort();
    let percentile = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    println!(
        "{label:<44} p50 {:>9.1} µs   p99 {:>9.1} µs",
        percentile(50).as_secs_f64() * 1e6,
        percentile(99).as_secs_f64() * 1e6
    );
    percentile(50)
}

fn main() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let (inputs, errors) = inputs::load(&[
        format!("{examples}/multi-context-task.yaml").into(),
        format!("{examples}/agent-claude-workspace.yaml").into(),
    ]);
    assert!(errors.is_empty(), "{errors:?}");
    let task: &Task = &inputs.tasks[0].object;
    let agent: &Agent = &inputs.agents[0].object;
    let settings = Settings::default();
    println!(
        "Task: examples/multi-context-task.yaml with Agent claude-workspace ({SAMPLES} samples)"
    );

    let override_path = std::env::var_os("KUBETASK_BENCH_PLUGIN");
    let component = match &override_path {
        Some(path) => std::fs::read(path).expect("KUBETASK_BENCH_PLUGIN is readable"),
        None => DEFAULT_PLUGIN_WASM.to_vec(),
    };
    if let Some(path) = &override_path {
        println!(
            "plugin: {} instead of the embedded component",
            path.to_string_lossy()
        );
    }
    let host = Arc::new(PluginHost::new(Limits::default()).expect("host"));
    let start = Instant::now();
    let plugin = host.load(DEFAULT_PLUGIN_NAME, &component).expect("loads");
    println!(
        "{:<44} {:>9.1} ms ({} bytes)",
        "compile component (cold)",
        start.elapsed().as_secs_f64() * 1e3,
        component.len()
    );
    let start = Instant::now();
    host.load(DEFAULT_PLUGIN_NAME, &component).expect("loads");
    println!(
        "{:<44} {:>9.1} µs",
        "load again (cached by digest)",
        start.elapsed().as_secs_f64() * 1e6
    );

    let task_json = serde_json::to_string(task).expect("encodes");
    let agent_json = serde_json::to_string(agent).expect("encodes");
    let request = bindings::RenderRequest {
        task: task_json.clone(),
        agent: Some(agent_json.clone()),
        settings: bindings::Settings {
            default_agent_image: settings.default_agent_image.clone(),
            controller_namespace: settings.controller_namespace.clone(),
        },
        draft: None,
    };
    let wasm = measure("wasm: instantiate + render (JSON in/out)", || {
        black_box(host.render(&plugin, black_box(&request)).expect("renders"));
    });

    let pipeline = Pipeline::new(host.clone(), settings.clone()).expect("pipeline");
    measure("pipeline (embedded): wasm + decode + invariants", || {
        black_box(
            pipeline
                .render(black_box(task), Some(agent))
                .expect("renders"),
        );
    });

    // With egress on: the proxy Secret and variables, then the network stage (a second call
    // of the default plugin, which renders the pod's NetworkPolicy).
    let key = kubetask::egress::TokenKey::new(&[7; 32]).expect("key");
    let egress = kubetask::render::egress::EgressSettings::new(
        key,
        kubetask::render::egress::DEFAULT_EXIT.to_owned(),
        kubetask::api::EgressMode::AllowList,
    )
    .expect("egress settings");
    let with_egress = Pipeline::new(host.clone(), settings.clone())
        .expect("pipeline")
        .with_egress(Some(Arc::new(egress)));
    let mut with_task = task.clone();
    with_task.metadata.uid = Some("bench-uid".to_owned());
    let plain = measure("pipeline, egress off (same Task with a uid)", || {
        black_box(
            pipeline
                .render(black_box(&with_task), Some(agent))
                .expect("renders"),
        );
    });
    let rendered_plain = pipeline.render(&with_task, Some(agent)).expect("renders");
    let egress_on = measure("pipeline, egress on: + Secret + network stage", || {
        let rendered = with_egress
            .render(black_box(&with_task), Some(agent))
            .expect("renders");
        assert_eq!(rendered.policies.len(), 1);
        black_box(rendered);
    });
    println!(
        "egress on adds p50 {:.1} µs per render (goal: ≤ 50 µs, one extra plugin stage)",
        (egress_on.as_secs_f64() - plain.as_secs_f64()) * 1e6
    );
    let egress_settings = Arc::new(
        kubetask::render::egress::EgressSettings::new(
            kubetask::egress::TokenKey::new(&[7; 32]).expect("key"),
            kubetask::render::egress::DEFAULT_EXIT.to_owned(),
            kubetask::api::EgressMode::AllowList,
        )
        .expect("egress settings"),
    );
    measure("  of which the Secret and proxy variables", || {
        let mut job = rendered_plain.job.clone();
        black_box(
            kubetask::render::egress::apply(&with_task, Some(agent), &egress_settings, &mut job)
                .expect("applies"),
        );
    });
    let policy_json = serde_json::to_string(
        &with_egress
            .render(&with_task, Some(agent))
            .expect("renders")
            .policies[0],
    )
    .expect("encodes");
    measure("  of which decoding the policy (dynamic)", || {
        black_box(
            serde_json::from_str::<kube::api::DynamicObject>(black_box(&policy_json))
                .expect("decodes"),
        );
    });
    measure("  of which decoding the policy (typed)", || {
        black_box(
            serde_json::from_str::<k8s_openapi::api::networking::v1::NetworkPolicy>(black_box(
                &policy_json,
            ))
            .expect("decodes"),
        );
    });
    measure("  of which encoding the Job for the stage", || {
        black_box(serde_json::to_string(black_box(&rendered_plain.job)).expect("encodes"));
    });
    // Of which the network stage's wasm call (instance, the Job's JSON in, the policy out).
    let rendered = with_egress
        .render(&with_task, Some(agent))
        .expect("renders");
    let network_request = kubetask::plugin::network_bindings::NetworkRequest {
        task: serde_json::to_string(&with_task).expect("encodes"),
        agent: Some(agent_json.clone()),
        settings: request.settings.clone(),
        job: serde_json::to_string(&rendered.job).expect("encodes"),
        egress: kubetask::plugin::network_bindings::EgressPlan {
            mode: kubetask::plugin::network_bindings::EgressMode::AllowList,
            allowed_domains: vec!["api.github.com".to_owned()],
            allowed_cidrs: Vec::new(),
            ports: vec![443],
            exit: kubetask::plugin::network_bindings::Peer {
                namespace: "kubetask-system".to_owned(),
                pod_labels: vec![("app.kubernetes.io/component".to_owned(), "exit".to_owned())],
                port: 3128,
            },
            dns: kubetask::plugin::network_bindings::Peer {
                namespace: "kube-system".to_owned(),
                pod_labels: vec![("k8s-app".to_owned(), "kube-dns".to_owned())],
                port: 53,
            },
        },
        policies: Vec::new(),
    };
    measure("  of which the network stage's wasm call", || {
        black_box(
            host.render_network(&plugin, black_box(&network_request))
                .expect("renders"),
        );
    });

    let native_settings = settings.clone();
    let native = measure("native: render_json (same logic, no wasm)", || {
        black_box(
            native::render_json(black_box(&task_json), Some(&agent_json), &native_settings)
                .expect("renders"),
        );
    });
    println!(
        "wasm/native p50 ratio: {:.1}x",
        wasm.as_secs_f64() / native.as_secs_f64()
    );
}
