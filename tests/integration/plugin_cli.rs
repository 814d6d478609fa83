//! `kubetask plugin check` and `kubetask plugin pack` as a plugin author runs them, on every
//! example plugin, and `kubetask render --plugin/--policy` with the packed examples.

use crate::support;

use std::path::Path;

use support::kubetask;

struct Example {
    wasm: &'static str,
    name: &'static str,
    policy: Option<&'static str>,
    /// What `check` must report as changed by its trial render.
    changes: &'static str,
}

const EXAMPLES: &[Example] = &[
    Example {
        wasm: "plugins/examples/restricted-policy/restricted_policy.wasm",
        name: "restricted",
        policy: Some("100"),
        changes: "+Job.spec.template.spec.securityContext",
    },
    Example {
        wasm: "plugins/examples/git-clone/git_clone.wasm",
        name: "git-clone",
        policy: None,
        changes: "+Job.spec.template.spec.initContainers",
    },
    Example {
        wasm: "plugins/examples/deadline-c/deadline_policy.wasm",
        name: "job-deadline",
        policy: Some("200"),
        changes: "+Job.spec.activeDeadlineSeconds",
    },
    Example {
        wasm: "plugins/examples/agent-runner/agent_runner.wasm",
        name: "agent-runner",
        policy: None,
        changes: "+Job.spec.template.spec.initContainers",
    },
];

fn sample_of(example: &Example) -> Option<String> {
    let sample = Path::new(example.wasm).with_file_name("sample-task.yaml");
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(&sample)
        .exists()
        .then(|| sample.display().to_string())
}

#[test]
fn check_passes_on_every_example_and_reports_what_it_changes() {
    for example in EXAMPLES {
        let mut args = vec!["plugin", "check", example.wasm];
        let sample = sample_of(example);
        if let Some(sample) = &sample {
            args.extend(["-f", sample]);
        }
        let (code, stdout, stderr) = kubetask(&args);
        assert_eq!(code, 0, "{}: {stdout}{stderr}", example.wasm);
        assert!(stdout.contains("ok: a WebAssembly component"), "{stdout}");
        assert!(
            stdout.contains("implements world kubetask:plugin/plugin@0.1.0 (exports: render)"),
            "{stdout}"
        );
        assert!(stdout.contains("no WASI"), "{stdout}");
        assert!(
            stdout.contains(example.changes),
            "{}: {stdout}",
            example.wasm
        );
        assert!(!stdout.contains("error:"), "{stdout}");
    }
}

#[test]
fn check_explains_denials_and_what_is_not_a_plugin() {
    // The sample Task names no team: the policy's denial is reported, not a failure.
    let (code, stdout, _) = kubetask(&["plugin", "check", EXAMPLES[0].wasm]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("note: trial render of Task default/sample: denied: every Task must name its owning team"), "{stdout}");

    let dir = tempfile::tempdir().expect("a temp dir");
    let cases = [
        ("not-wasm.wasm", b"hello".to_vec(), "not WebAssembly"),
        (
            "module.wasm",
            wat::parse_str("(module)").expect("WAT"),
            "a core WebAssembly module, not a component",
        ),
        (
            "wasi.wasm",
            wat::parse_str(r#"(component (import "wasi:cli/environment@0.2.0" (instance)))"#)
                .expect("WAT"),
            "The sandbox gives plugins no WASI",
        ),
        (
            "empty.wasm",
            wat::parse_str("(component)").expect("WAT"),
            "export `render`",
        ),
    ];
    for (file, bytes, expected) in cases {
        let path = dir.path().join(file);
        std::fs::write(&path, bytes).expect("writes");
        let (code, stdout, _) = kubetask(&["plugin", "check", path.to_str().expect("UTF-8 path")]);
        assert_eq!(code, 1, "{file}: {stdout}");
        assert!(
            stdout.contains("error: ") && stdout.contains(expected),
            "{file}: {stdout}"
        );
    }
    // A hostile plugin fails its trial render with the reason and a hint.
    let task = dir.path().join("loop.yaml");
    std::fs::write(
        &task,
        "apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {name: spin, namespace: default, annotations: {test.kubetask.io/behavior: loop}}\nspec: {contexts: []}\n",
    )
    .expect("writes");
    let (code, stdout, _) = kubetask(&[
        "plugin",
        "check",
        "plugins/testing/hostile.wasm",
        "-f",
        task.to_str().expect("UTF-8 path"),
    ]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("ran longer than its deadline") && stdout.contains("--plugin-timeout-ms"),
        "{stdout}"
    );
}

#[test]
fn pack_prints_the_committed_manifest_of_every_example() {
    for example in EXAMPLES {
        let mut args = vec!["plugin", "pack", example.wasm, "--name", example.name];
        if let Some(order) = example.policy {
            args.extend(["--policy", order]);
        }
        let (code, stdout, stderr) = kubetask(&args);
        assert_eq!(code, 0, "{stderr}");
        let committed = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(Path::new(example.wasm).with_file_name("configmap.yaml"));
        let committed =
            std::fs::read_to_string(&committed).expect("the packed manifest is committed");
        assert_eq!(
            stdout, committed,
            "{} is stale: run `kubetask plugin pack` again (docs/plugins.md)",
            example.wasm
        );
    }
    let (code, _, stderr) = kubetask(&["plugin", "pack", EXAMPLES[0].wasm, "--name", "Not_A_Name"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("--name \"Not_A_Name\" is not a valid ConfigMap name"),
        "{stderr}"
    );
    let (code, _, stderr) = kubetask(&[
        "plugin",
        "pack",
        EXAMPLES[0].wasm,
        "--name",
        "ok",
        "--namespace",
        "Team.A",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("--namespace \"Team.A\" is not a valid namespace"),
        "{stderr}"
    );
}

#[test]
fn pack_refuses_what_is_not_a_plugin_component_as_check_does() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let cases: [(&str, &[u8], &str); 3] = [
        (
            "random.wasm",
            b"\x13\x37 not a plugin at all",
            "not WebAssembly",
        ),
        (
            "module.wasm",
            b"\0asm\x01\0\0\0",
            "a core WebAssembly module, not a component",
        ),
        (
            "truncated.wasm",
            b"\0asm\x0d\0\x01\0\x07",
            "is not a valid WebAssembly component",
        ),
    ];
    for (file, bytes, expected) in cases {
        let path = dir.path().join(file);
        std::fs::write(&path, bytes).expect("writes");
        let path = path.to_str().expect("UTF-8 path");
        let (code, stdout, stderr) = kubetask(&["plugin", "pack", path, "--name", "x"]);
        assert_eq!((code, stdout.as_str()), (1, ""), "{file}: {stderr}");
        assert!(stderr.contains(expected), "{file}: {stderr}");
        let (_, check, _) = kubetask(&["plugin", "check", path]);
        assert!(
            check.contains(expected),
            "the same words as `plugin check`: {check}"
        );
    }
}

#[test]
fn render_runs_the_examples_offline_including_gzip() {
    let dir = tempfile::tempdir().expect("a temp dir");
    // A gzip component, as it sits in the packed ConfigMap.
    let gz = dir.path().join("job-deadline.wasm.gz");
    let bytes =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(EXAMPLES[2].wasm)).expect("reads");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, &bytes).expect("compresses");
    std::fs::write(&gz, encoder.finish().expect("compresses")).expect("writes");
    let (code, stdout, stderr) = kubetask(&[
        "render",
        "-f",
        "plugins/examples/git-clone/sample-task.yaml",
        "--plugin",
        EXAMPLES[1].wasm,
        "--policy",
        gz.to_str().expect("UTF-8 path"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("name: git-clone"), "{stdout}");
    assert!(stdout.contains("activeDeadlineSeconds: 3600"), "{stdout}");
}

#[test]
fn verbose_shows_the_plugins_log_lines_and_quiet_does_not() {
    // The hostile plugin, passing the draft through, logs `behaving as pass` at info level.
    let run = |extra: &[&str]| {
        let mut args = vec![
            "render",
            "-f",
            "examples/simple-task.yaml",
            "--plugin",
            "plugins/testing/hostile.wasm",
        ];
        args.extend_from_slice(extra);
        let (code, _, stderr) = kubetask(&args);
        assert_eq!(code, 0, "{stderr}");
        stderr
    };
    let quiet = run(&[]);
    assert!(!quiet.contains("behaving as pass"), "{quiet}");
    let verbose = run(&["-v"]);
    assert!(
        verbose.contains("behaving as pass") && verbose.contains("plugin=\"hostile\""),
        "{verbose}"
    );
    assert!(
        !verbose.contains("plugin loaded"),
        "-v is the plugins' lines only: {verbose}"
    );
    let very = run(&["-vv"]);
    assert!(
        very.contains("behaving as pass") && very.contains("plugin loaded"),
        "{very}"
    );

    let (code, _, stderr) = kubetask(&["plugin", "check", "plugins/testing/hostile.wasm", "-v"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("behaving as pass"), "{stderr}");
}
