//! The CRDs' CEL validation rules, evaluated as the API server evaluates them (kube-core's
//! client-side CEL). Each case breaks one rule and must be refused with that rule's message.

use kube_core::cel::{validate_cel, validate_cel_update};
use kubetask_api::{Agent, Task};

fn task(spec: &str) -> Task {
    let yaml = format!(
        "apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {{name: t, namespace: ns}}\nspec:\n{spec}"
    );
    serde_yaml::from_str(&yaml).unwrap_or_else(|error| panic!("{error}: {yaml}"))
}

fn agent(spec: &str) -> Agent {
    let yaml = format!(
        "apiVersion: kubetask.io/v1alpha1\nkind: Agent\nmetadata: {{name: a, namespace: ns}}\nspec:\n  serviceAccountName: sa\n{spec}"
    );
    serde_yaml::from_str(&yaml).unwrap_or_else(|error| panic!("{error}: {yaml}"))
}

fn context(file: &str) -> String {
    format!("  contexts:\n  - type: File\n    file: {file}\n")
}

#[test]
fn valid_objects_pass() {
    for file in [
        "{filePath: /workspace/task.md, source: {inline: x}}",
        "{filePath: /workspace/guide.md, source: {configMapKeyRef: {name: g, key: k}}}",
        "{dirPath: /workspace/configs, source: {configMapRef: {name: c}}}",
    ] {
        let task = task(&context(file));
        assert!(
            validate_cel(&task).is_ok(),
            "{file}: {:?}",
            validate_cel(&task)
        );
    }
    let agent = agent(
        "  credentials:\n  - {name: k, secretRef: {name: s, key: k}, mountPath: /k, fileMode: 256}\n",
    );
    assert!(validate_cel(&agent).is_ok(), "{:?}", validate_cel(&agent));
}

#[test]
fn each_task_rule_refuses_what_it_should() {
    let cases = [
        (
            "{filePath: /a, dirPath: /b, source: {configMapRef: {name: c}}}",
            "exactly one of filePath or dirPath",
        ),
        (
            "{source: {inline: x}}",
            "exactly one of filePath or dirPath",
        ),
        (
            "{filePath: /a, source: {inline: x, configMapRef: {name: c}}}",
            "exactly one of inline, configMapKeyRef or configMapRef",
        ),
        (
            "{filePath: /a, source: {}}",
            "exactly one of inline, configMapKeyRef or configMapRef",
        ),
        (
            "{filePath: /a, source: {configMapRef: {name: c}}}",
            "dirPath goes with source.configMapRef",
        ),
        (
            "{dirPath: /a, source: {inline: x}}",
            "dirPath goes with source.configMapRef",
        ),
        (
            "{filePath: relative.md, source: {inline: x}}",
            "must be an absolute path",
        ),
        (
            "{filePath: /workspace/../etc/passwd, source: {inline: x}}",
            "must be an absolute path",
        ),
        (
            "{dirPath: configs, source: {configMapRef: {name: c}}}",
            "must be an absolute path",
        ),
    ];
    for (file, message) in cases {
        let result = validate_cel(&task(&context(file)));
        let error = format!("{:?}", result.expect_err(file));
        assert!(error.contains(message), "{file}: {error}");
    }
    let missing_file = task("  contexts:\n  - type: File\n");
    let error = format!(
        "{:?}",
        validate_cel(&missing_file).expect_err("file is required")
    );
    assert!(
        error.contains("file is required when type is File"),
        "{error}"
    );
}

#[test]
fn task_spec_is_immutable() {
    let old = task(&context(
        "{filePath: /workspace/task.md, source: {inline: x}}",
    ));
    let new = task(&context(
        "{filePath: /workspace/task.md, source: {inline: changed}}",
    ));
    let error = format!(
        "{:?}",
        validate_cel_update(&new, &old).expect_err("spec changes are refused")
    );
    assert!(error.contains("Task spec is immutable"), "{error}");
    let mut relabelled = old.clone();
    relabelled.metadata.labels = Some([("team".to_owned(), "a".to_owned())].into());
    assert!(
        validate_cel_update(&relabelled, &old).is_ok(),
        "metadata may change"
    );
}

#[test]
fn cancel_may_be_added_once_and_nothing_else_changes() {
    let base =
        "  contexts: [{type: File, file: {filePath: /workspace/task.md, source: {inline: x}}}]";
    let old = task(base);
    let cancelled = task(&format!("{base}\n  cancel: {{reason: stop}}"));
    assert!(
        validate_cel_update(&cancelled, &old).is_ok(),
        "adding spec.cancel is allowed"
    );
    let refused = |new: &Task, old: &Task, message: &str| {
        let error = format!(
            "{:?}",
            validate_cel_update(new, old).expect_err("the update is refused")
        );
        assert!(error.contains(message), "{error}");
    };
    let changed = task(&format!("{base}\n  cancel: {{reason: other}}"));
    refused(
        &changed,
        &cancelled,
        "spec.cancel cannot be changed or removed",
    );
    refused(&old, &cancelled, "spec.cancel cannot be changed or removed");
    for field in [
        "timeout: 5m",
        "retries: 2",
        "ttlSecondsAfterFinished: 60",
        "agentRef: other",
        "egress: {mode: Deny}",
        "workspace: {repository: 'https://github.com/org/repo'}",
    ] {
        let added = task(&format!("{base}\n  {field}"));
        refused(
            &added,
            &old,
            "Task spec is immutable (except adding spec.cancel)",
        );
        refused(
            &old,
            &added,
            "Task spec is immutable (except adding spec.cancel)",
        );
        let with_cancel = task(&format!("{base}\n  {field}\n  cancel: {{}}"));
        assert!(
            validate_cel_update(&with_cancel, &added).is_ok(),
            "cancel beside {field}"
        );
    }
    let egress = task(&format!(
        "{base}\n  egress: {{mode: AllowList, allowedDomains: [a.example.com]}}"
    ));
    let widened = task(&format!(
        "{base}\n  egress: {{mode: AllowList, allowedDomains: [a.example.com, evil.net]}}"
    ));
    refused(
        &widened,
        &egress,
        "Task spec is immutable (except adding spec.cancel)",
    );
    let workspace = task(&format!(
        "{base}\n  workspace: {{repository: 'https://github.com/org/repo', ref: main}}"
    ));
    let other_ref = task(&format!(
        "{base}\n  workspace: {{repository: 'https://github.com/org/repo', ref: evil}}"
    ));
    refused(
        &other_ref,
        &workspace,
        "Task spec is immutable (except adding spec.cancel)",
    );
}

#[test]
fn each_credential_rule_refuses_what_it_should() {
    let cases = [
        (
            "{name: k, secretRef: {name: s, key: k}}",
            "set env, mountPath or both",
        ),
        (
            "{name: k, secretRef: {name: s, key: k}, env: A, fileMode: 256}",
            "fileMode needs mountPath",
        ),
        (
            "{name: k, secretRef: {name: s, key: k}, mountPath: /k, fileMode: 512}",
            "must be a file mode between 0 and 0777",
        ),
        (
            "{name: k, secretRef: {name: s, key: k}, mountPath: k}",
            "must be an absolute path",
        ),
    ];
    for (credential, message) in cases {
        let result = validate_cel(&agent(&format!("  credentials:\n  - {credential}\n")));
        let error = format!("{:?}", result.expect_err(credential));
        assert!(error.contains(message), "{credential}: {error}");
    }
}
