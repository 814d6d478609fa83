//! Plugin costs, every row in one run and each measured in interleaved rounds (so a noisy
//! moment hits every row alike): the CLI's `render` wall time against `--version`; cold
//! compile, load from the compiled-artifact cache (deserialize) and in-memory cached load of
//! each example plugin; render latency of one Task with 0, 1 and 3 extra stages after the
//! built-in default (p50/p99) and the p50 each stage adds. Run with
//! `cargo bench --bench plugins`; results are in docs/performance.md.

use std::{
    hint::black_box,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use kubetask::{
    api::{Agent, Task},
    plugin::{ArtifactCache, Limits, PluginHost},
    render::{Pipeline, Settings},
};
use serde_json::json;

const WARMUP: usize = 200;
const SAMPLES: usize = 1_000;
const ROUNDS: usize = 7;

const EXAMPLES: [(&str, &[u8]); 3] = [
    (
        "git-clone (Rust)",
        include_bytes!("../plugins/examples/git-clone/git_clone.wasm"),
    ),
    (
        "restricted (Rust)",
        include_bytes!("../plugins/examples/restricted-policy/restricted_policy.wasm"),
    ),
    (
        "job-deadline (C)",
        include_bytes!("../plugins/examples/deadline-c/deadline_policy.wasm"),
    ),
];

/// Rounds of the CLI and plugin-load rows (each cold compile of an SDK plugin takes seconds).
const LOAD_ROUNDS: usize = 3;
/// CLI runs per command and round.
const CLI_RUNS: usize = 21;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Wall time of `kubetask render` of the simple example against `kubetask --version`, each run
/// with a fresh empty cache directory so no compiled plugin from an earlier run helps.
fn cli_start() {
    let binary = env!("CARGO_BIN_EXE_kubetask");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/simple-task.yaml");
    let run = |args: &[&str]| {
        let cache = tempfile::tempdir().expect("a cache directory");
        let start = Instant::now();
        let status = Command::new(binary)
            .args(args)
            .env("XDG_CACHE_HOME", cache.path())
            .stdout(Stdio::null())
            .status()
            .expect("kubetask runs");
        let elapsed = start.elapsed();
        assert!(status.success(), "kubetask {args:?} failed");
        elapsed
    };
    println!(
        "CLI start ({binary}): {LOAD_ROUNDS} interleaved rounds, median of {CLI_RUNS} runs per command and round"
    );
    for round in 1..=LOAD_ROUNDS {
        let mut render = Vec::new();
        let mut version = Vec::new();
        for _ in 0..CLI_RUNS {
            render.push(run(&["render", "-f", example]));
            version.push(run(&["--version"]));
        }
        let (render, version) = (median(render), median(version));
        println!(
            "round {round}: render {:>6.1} ms   --version {:>5.1} ms   ratio {:>5.1}×",
            ms(render),
            ms(version),
            render.as_secs_f64() / version.as_secs_f64()
        );
    }
}

/// Per example plugin: a cold compile (a fresh host, no artifact cache), a load from a filled
/// artifact cache by a fresh host (what a restarted controller or a second `render` does), and
/// a load of the same bytes again by the same host (in-memory).
fn plugin_loads() {
    let cache_dir = tempfile::tempdir().expect("a cache directory");
    let cached_host = || {
        PluginHost::new(Limits::default())
            .expect("host")
            .with_artifact_cache(ArtifactCache::new(cache_dir.path()).expect("cache"))
    };
    for (name, bytes) in EXAMPLES {
        cached_host().load(name, bytes).expect("loads");
    }
    println!(
        "\nplugin loads: {LOAD_ROUNDS} interleaved rounds; in-memory load p50 of 1,000 per round"
    );
    let mut rows = vec![(Vec::new(), Vec::new(), Vec::new()); EXAMPLES.len()];
    for _ in 0..LOAD_ROUNDS {
        for ((name, bytes), (cold, deserialize, memory)) in EXAMPLES.iter().zip(&mut rows) {
            let host = PluginHost::new(Limits::default()).expect("host");
            let start = Instant::now();
            host.load(name, bytes).expect("loads");
            cold.push(start.elapsed());

            let host = cached_host();
            let start = Instant::now();
            host.load(name, bytes).expect("loads");
            deserialize.push(start.elapsed());

            let samples = (0..1_000)
                .map(|_| {
                    let start = Instant::now();
                    black_box(host.load(name, bytes).expect("loads"));
                    start.elapsed()
                })
                .collect();
            memory.push(percentiles(samples).0);
        }
    }
    for ((name, bytes), (cold, deserialize, memory)) in EXAMPLES.iter().zip(rows) {
        println!(
            "{name:<20} {:>9} bytes   cold compile {:>7.1} ms   from the artifact cache {:>6.2} ms   in memory p50 {:>6.1} µs",
            bytes.len(),
            ms(median(cold)),
            ms(median(deserialize)),
            median(memory).as_secs_f64() * 1e6
        );
    }
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    (at(50), at(99))
}

fn measure(warmup: usize, mut call: impl FnMut()) -> Vec<Duration> {
    for _ in 0..warmup {
        call();
    }
    (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            call();
            start.elapsed()
        })
        .collect()
}

fn main() {
    let agent: Agent = serde_json::from_value(json!({
        "apiVersion": "kubetask.io/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "coder", "namespace": "payments"},
        "spec": {"agentImage": "quay.io/acme/coder:v1", "serviceAccountName": "coder", "plugins": ["git-clone"]},
    }))
    .expect("an Agent");
    let task: Task = serde_json::from_value(json!({
        "apiVersion": "kubetask.io/v1alpha1",
        "kind": "Task",
        "metadata": {
            "name": "fix-bug", "namespace": "payments", "uid": "6f1c1e8e-0000-4000-8000-000000000001",
            "labels": {"kubetask.io/team": "payments"},
            "annotations": {"git.kubetask.io/repository": "https://github.com/acme/api.git"},
        },
        "spec": {"agentRef": "coder", "contexts": [
            {"type": "File", "file": {"filePath": "/workspace/task.md", "source": {"inline": "Fix the flaky test"}}},
            {"type": "File", "file": {"filePath": "/workspace/guide.md", "source": {"configMapKeyRef": {"name": "guides", "key": "guide.md"}}}},
        ]},
    }))
    .expect("a Task");

    cli_start();
    plugin_loads();

    let host = Arc::new(PluginHost::new(Limits::default()).expect("host"));
    let plugins: Vec<_> = EXAMPLES
        .iter()
        .map(|(name, bytes)| host.load(name, bytes).expect("loads"))
        .collect();
    // The hostile test plugin without a behavior annotation passes the draft's JSON through
    // without decoding it: the cost of a Rust stage that does no work.
    let pass = host
        .load(
            "pass-through",
            include_bytes!("../plugins/testing/hostile.wasm"),
        )
        .expect("loads");
    let base = Pipeline::new(host.clone(), Settings::default()).expect("pipeline");
    let configurations = [
        ("0 extra stages (built-in default only)", base.extended([])),
        (
            "1 extra stage: job-deadline (C)",
            base.extended([plugins[2].clone()]),
        ),
        (
            "1 extra stage: pass-through (Rust, no decoding)",
            base.extended([pass]),
        ),
        (
            "1 extra stage: restricted (Rust SDK policy)",
            base.extended([plugins[1].clone()]),
        ),
        (
            "1 extra stage: git-clone (Rust SDK render)",
            base.extended([plugins[0].clone()]),
        ),
        (
            "3 extra stages: git-clone, restricted, job-deadline",
            base.extended(plugins.iter().cloned()),
        ),
    ];
    println!(
        "\nrender latency of one Task: {ROUNDS} interleaved rounds of {SAMPLES} renders per configuration \
         (after {WARMUP} warm-up renders); p50 = median of the rounds' p50s, p99 over all samples"
    );
    let mut round_p50s = vec![Vec::new(); configurations.len()];
    let mut all_samples = vec![Vec::new(); configurations.len()];
    for round in 0..ROUNDS {
        for (index, (_, pipeline)) in configurations.iter().enumerate() {
            let warmup = if round == 0 { WARMUP } else { 0 };
            let samples = measure(warmup, || {
                black_box(
                    pipeline
                        .render(black_box(&task), Some(&agent))
                        .expect("renders"),
                );
            });
            round_p50s[index].push(percentiles(samples.clone()).0);
            all_samples[index].extend(samples);
        }
    }
    let mut p50s = Vec::new();
    for (index, (label, _)) in configurations.iter().enumerate() {
        round_p50s[index].sort();
        let p50 = round_p50s[index][ROUNDS / 2];
        let (_, p99) = percentiles(std::mem::take(&mut all_samples[index]));
        println!(
            "{label:<52} p50 {:>8.1} µs   p99 {:>8.1} µs",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6
        );
        p50s.push(p50);
    }
    let (none, c, pass, rust, render, three) =
        (p50s[0], p50s[1], p50s[2], p50s[3], p50s[4], p50s[5]);
    let per_stage =
        |with: Duration, stages: u32| (with.saturating_sub(none) / stages).as_secs_f64() * 1e6;
    println!(
        "added p50 per extra stage: C {:.1} µs, Rust pass-through {:.1} µs, Rust SDK policy {:.1} µs, Rust SDK render {:.1} µs, mean of 3 {:.1} µs",
        per_stage(c, 1),
        per_stage(pass, 1),
        per_stage(rust, 1),
        per_stage(render, 1),
        per_stage(three, 3)
    );
}
